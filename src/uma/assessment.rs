//! The authorization assessment of Grant §3.3.4 as plain functions: which scopes are requested on
//! each resource, and what the policy engine's per-scope decisions add up to.
//!
//! RequestedScopes(resource) = TicketScopes(resource) ∪ (ClientRegisteredScopes ∩ ClientRequestedScopes),
//! each client-requested scope applied only where the resource offers it (checklist A-5).

use std::collections::BTreeSet;

use crate::clock::UnixTime;
use crate::policy::{DenyReason, NeededClaim, Outcome, PolicyId, ResourceDecision};
use crate::uma::permission::Permission;
use crate::uma::rpt::{GrantedPermission, add};

/// A ticket's resource as registered now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredResource {
    pub resource_id: String,
    pub scopes: Vec<String>,
}

/// The scopes to assess on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub resource_id: String,
    pub scopes: Vec<String>,
}

/// Why the request cannot be assessed: `invalid_scope` (checklist ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// A client-requested scope that no resource of the ticket offers.
    Unknown(String),
    /// A resource with nothing to assess: a zero-scope permission and no usable client scope.
    NothingToAssess(String),
}

/// A (resource id, scope) pair the ticket asked for that can no longer be granted.
pub type Unavailable = (String, String);

/// The requested scopes per resource, plus the (resource, scope) pairs the ticket asked for that can no
/// longer be granted (the resource was deleted, or the scope unregistered, since the ticket was
/// issued): those count as denied.
pub fn requested_scopes(
    ticket: &[Permission],
    registered: &[RegisteredResource],
    client_registered: &[&str],
    client_requested: Option<&str>,
) -> Result<(Vec<Requested>, Vec<Unavailable>), ScopeError> {
    let asked: Vec<&str> =
        client_requested.map(|s| s.split(' ').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    for s in &asked {
        if !registered.iter().any(|r| r.scopes.iter().any(|x| x == s)) {
            return Err(ScopeError::Unknown((*s).to_owned()));
        }
    }
    let mut out = Vec::new();
    let mut unavailable = Vec::new();
    for p in ticket {
        let Some(r) = registered.iter().find(|r| r.resource_id == p.resource_id) else {
            unavailable.extend(p.resource_scopes.iter().map(|s| (p.resource_id.clone(), s.clone())));
            continue;
        };
        let mut scopes: Vec<String> = Vec::new();
        for s in &p.resource_scopes {
            if r.scopes.contains(s) {
                scopes.push(s.clone());
            } else {
                unavailable.push((p.resource_id.clone(), s.clone()));
            }
        }
        for s in &asked {
            let offered = r.scopes.iter().any(|x| x == s);
            if offered && client_registered.contains(s) && !scopes.iter().any(|x| x == s) {
                scopes.push((*s).to_owned());
            } else if offered && !client_registered.contains(s) {
                tracing::debug!(scope = %s, "client-requested scope not registered for the client; not considered");
            }
        }
        if scopes.is_empty() && p.resource_scopes.is_empty() {
            return Err(ScopeError::NothingToAssess(p.resource_id.clone()));
        }
        if !scopes.is_empty() {
            out.push(Requested { resource_id: p.resource_id.clone(), scopes });
        }
    }
    Ok((out, unavailable))
}

/// The owner's answer to a request for approval, as far as it is known.
pub trait Approvals {
    /// `Some(Ok(exp))`: approved (until `exp`, if set); `Some(Err(()))`: refused; `None`: undecided.
    fn decision(&self, resource_id: &str, scope: &str) -> Option<Result<Option<UnixTime>, ()>>;
}

/// No approval asked yet.
pub struct NoApprovals;

impl Approvals for NoApprovals {
    fn decision(&self, _: &str, _: &str) -> Option<Result<Option<UnixTime>, ()>> {
        None
    }
}

/// What the assessment adds up to (Grant §3.3.4, §3.3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Rpt(Vec<GrantedPermission>),
    NeedInfo(Vec<NeededClaim>),
    /// The permissions that wait for the owner.
    Submitted(Vec<Permission>),
    Denied,
}

/// Combines per-scope decisions. All or nothing by default (checklist A-4): one hard denial denies
/// the request; otherwise missing claims come first (need_info), then the owner's approval
/// (request_submitted); an RPT only when every scope is granted. With `partial`, an RPT with what was
/// granted as soon as anything was.
pub fn combine(
    decisions: &[ResourceDecision],
    unavailable: &[Unavailable],
    approvals: &dyn Approvals,
    partial: bool,
) -> (Verdict, Vec<PolicyId>) {
    let mut granted: Vec<GrantedPermission> = Vec::new();
    let mut claims: BTreeSet<NeededClaim> = BTreeSet::new();
    let mut awaiting: Vec<Permission> = Vec::new();
    let mut denied = !unavailable.is_empty();
    let mut policies: BTreeSet<PolicyId> = BTreeSet::new();
    for d in decisions {
        for s in &d.scopes {
            policies.extend(s.policies.iter().cloned());
            match &s.outcome {
                Outcome::Granted => add(&mut granted, &d.resource_id, &s.scope, None),
                Outcome::Denied(DenyReason::Denied) => denied = true,
                Outcome::Denied(DenyReason::NeedClaims { claims: c }) => claims.extend(c.iter().cloned()),
                Outcome::Denied(DenyReason::NeedsApproval) => match approvals.decision(&d.resource_id, &s.scope) {
                    Some(Ok(exp)) => add(&mut granted, &d.resource_id, &s.scope, exp),
                    Some(Err(())) => denied = true,
                    None => match awaiting.iter_mut().find(|p| p.resource_id == d.resource_id) {
                        Some(p) => p.resource_scopes.push(s.scope.clone()),
                        None => awaiting.push(Permission {
                            resource_id: d.resource_id.clone(),
                            resource_scopes: vec![s.scope.clone()],
                        }),
                    },
                },
            }
        }
    }
    let policies = policies.into_iter().collect();
    let verdict = if partial && !granted.is_empty() {
        Verdict::Rpt(granted)
    } else if denied && !partial {
        Verdict::Denied
    } else if !claims.is_empty() {
        Verdict::NeedInfo(claims.into_iter().collect())
    } else if !awaiting.is_empty() {
        Verdict::Submitted(awaiting)
    } else if granted.is_empty() {
        Verdict::Denied
    } else {
        Verdict::Rpt(granted)
    };
    (verdict, policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ScopeDecision;

    fn perm(r: &str, scopes: &[&str]) -> Permission {
        Permission { resource_id: r.into(), resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect() }
    }

    fn reg(r: &str, scopes: &[&str]) -> RegisteredResource {
        RegisteredResource { resource_id: r.into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() }
    }

    fn req(r: &str, scopes: &[&str]) -> Requested {
        Requested { resource_id: r.into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() }
    }

    #[test]
    fn client_scopes_join_only_where_offered_and_pre_registered() {
        let regs = [reg("r1", &["view", "print"]), reg("r2", &["view"])];
        let ticket = [perm("r1", &["view"]), perm("r2", &["view"])];
        let (out, gone) = requested_scopes(&ticket, &regs, &["print"], Some("print")).unwrap();
        assert_eq!(out, [req("r1", &["view", "print"]), req("r2", &["view"])]);
        assert!(gone.is_empty());
        // Not pre-registered for the client: ignored.
        let (out, _) = requested_scopes(&ticket, &regs, &[], Some("print")).unwrap();
        assert_eq!(out, [req("r1", &["view"]), req("r2", &["view"])]);
    }

    #[test]
    fn unknown_or_miscased_client_scopes_are_invalid() {
        let regs = [reg("r1", &["view"])];
        let ticket = [perm("r1", &["view"])];
        assert_eq!(
            requested_scopes(&ticket, &regs, &["x"], Some("teleport")),
            Err(ScopeError::Unknown("teleport".into()))
        );
        assert_eq!(requested_scopes(&ticket, &regs, &["VIEW"], Some("VIEW")), Err(ScopeError::Unknown("VIEW".into())));
    }

    #[test]
    fn a_zero_scope_permission_needs_a_client_scope() {
        let regs = [reg("r1", &["view", "print"])];
        let ticket = [perm("r1", &[])];
        assert_eq!(requested_scopes(&ticket, &regs, &[], None), Err(ScopeError::NothingToAssess("r1".into())));
        let (out, _) = requested_scopes(&ticket, &regs, &["print"], Some("print")).unwrap();
        assert_eq!(out, [req("r1", &["print"])]);
    }

    #[test]
    fn deleted_resources_and_unregistered_scopes_are_unavailable() {
        let regs = [reg("r1", &["view"])];
        let ticket = [perm("r1", &["view", "print"]), perm("gone", &["view"])];
        let (out, gone) = requested_scopes(&ticket, &regs, &[], None).unwrap();
        assert_eq!(out, [req("r1", &["view"])]);
        assert_eq!(gone, [("r1".into(), "print".into()), ("gone".into(), "view".into())]);
    }

    fn decision(r: &str, scopes: &[(&str, Outcome)]) -> ResourceDecision {
        ResourceDecision {
            resource_id: r.into(),
            scopes: scopes
                .iter()
                .map(|(s, o)| ScopeDecision { scope: (*s).to_owned(), outcome: o.clone(), policies: vec![] })
                .collect(),
        }
    }

    fn need(name: &str) -> Outcome {
        Outcome::Denied(DenyReason::NeedClaims { claims: vec![NeededClaim { name: name.into(), issuer: None }] })
    }

    #[test]
    fn all_or_nothing_by_default() {
        let d = [decision("r1", &[("view", Outcome::Granted), ("edit", Outcome::Denied(DenyReason::Denied))])];
        assert_eq!(combine(&d, &[], &NoApprovals, false).0, Verdict::Denied);
        let (v, _) = combine(&d, &[], &NoApprovals, true);
        assert_eq!(
            v,
            Verdict::Rpt(vec![GrantedPermission {
                resource_id: "r1".into(),
                resource_scopes: vec!["view".into()],
                exp: None
            }])
        );
        // Something that can no longer be granted denies too.
        let ok = [decision("r1", &[("view", Outcome::Granted)])];
        assert_eq!(combine(&ok, &[("r2".into(), "view".into())], &NoApprovals, false).0, Verdict::Denied);
    }

    #[test]
    fn claims_first_then_approval_then_rpt() {
        let d = [decision("r1", &[("view", need("npi")), ("print", Outcome::Denied(DenyReason::NeedsApproval))])];
        assert!(matches!(combine(&d, &[], &NoApprovals, false).0, Verdict::NeedInfo(c) if c[0].name == "npi"));
        let d = [decision("r1", &[("view", Outcome::Granted), ("print", Outcome::Denied(DenyReason::NeedsApproval))])];
        assert_eq!(combine(&d, &[], &NoApprovals, false).0, Verdict::Submitted(vec![perm("r1", &["print"])]));

        struct Approved;
        impl Approvals for Approved {
            fn decision(&self, _: &str, _: &str) -> Option<Result<Option<UnixTime>, ()>> {
                Some(Ok(Some(99)))
            }
        }
        struct Refused;
        impl Approvals for Refused {
            fn decision(&self, _: &str, _: &str) -> Option<Result<Option<UnixTime>, ()>> {
                Some(Err(()))
            }
        }
        let (v, _) = combine(&d, &[], &Approved, false);
        let Verdict::Rpt(perms) = v else { panic!("{v:?}") };
        assert_eq!(perms.len(), 2);
        assert_eq!(perms[1].exp, Some(99));
        assert_eq!(combine(&d, &[], &Refused, false).0, Verdict::Denied);
    }

    #[test]
    fn nothing_granted_is_never_an_empty_rpt() {
        assert_eq!(combine(&[], &[], &NoApprovals, true).0, Verdict::Denied);
        let d = [decision("r1", &[("view", Outcome::Denied(DenyReason::Denied))])];
        assert_eq!(combine(&d, &[], &NoApprovals, true).0, Verdict::Denied);
    }
}
