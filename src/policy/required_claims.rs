//! Which claims would turn a denial into a grant, derived from the policies themselves.
//!
//! Method: Cedar's type-aware partial evaluation (TPE, feature `tpe`). The request is evaluated
//! again with everything known except the requesting party's attributes; the permits left
//! undecided (the residuals) are exactly those that some claims could satisfy, and their residual
//! conditions name those claims (`principal has npi && principal.npi …`). A claim the party already
//! presented is never asked for again. `principal.iss == "…"` in a residual becomes the issuer of
//! the claims that permit asks for.
//!
//! Limits: TPE treats the party's attributes as all unknown or all known, so a permit that a
//! presented claim already contradicts (a `role` of "nurse" where "physician" is required) can still
//! cause its missing claims to be asked for; the next assessment then denies. TPE is experimental in
//! cedar-policy (the version is pinned); if it fails on a request, the fallback reads the same
//! attribute references from the full text of the permits that apply to the scope: coarser (it
//! cannot fold away resource conditions) but still derived from the policies, never hand-kept.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use cedar_policy::{EntityUid, PartialEntityUid, PartialRequest, Policy, PolicySet, Schema};
use serde::{Deserialize, Serialize};

use super::decision::{NeededClaim, PolicyId};
use super::entities::{PARTY, RequestData};
use super::load::LoadedPolicies;

/// What a permit could ever need from the party, read from its text at load: the scopes its action
/// constraint admits (`None`: all) and the party attributes it reads.
#[derive(Debug, Clone)]
pub(crate) struct PermitNeeds {
    pub attrs: BTreeSet<String>,
}

impl PermitNeeds {
    pub fn of(p: &Policy) -> Self {
        let mut refs = Refs::default();
        if let Ok(json) = p.to_json() {
            walk(&json, None, &mut refs);
        }
        PermitNeeds { attrs: refs.attrs }
    }
}

/// Whether some permit of `sets` for `scope` reads a claim the party has not presented. If none
/// does, no claim can change the answer (the residuals of partial evaluation only ever read a
/// subset of what the permit's text reads), and partial evaluation is skipped.
pub(crate) fn may_need_claims(
    loaded: &LoadedPolicies,
    sets: &[&PolicySet],
    scope: &str,
    presented: &BTreeSet<String>,
) -> bool {
    sets.iter().flat_map(|s| s.policies()).any(|p| {
        super::load::admits(p, scope, &loaded.action_groups)
            && loaded
                .permit_needs
                .get(p.id())
                .is_some_and(|n| n.attrs.iter().any(|a| a != "iss" && !presented.contains(a)))
    })
}

/// What partial evaluation concluded for one scope.
#[derive(Debug, Default)]
pub(crate) struct Gated {
    /// A `forbid` holds whatever claims are added, or a policy errors: denied.
    pub forbidden: Vec<PolicyId>,
    /// Claim-gated permits without `@approval`, with the claims each still needs.
    pub permits: BTreeMap<PolicyId, BTreeSet<NeededClaim>>,
    /// Claim-gated `@approval("owner")` permits.
    pub approvals: BTreeMap<PolicyId, BTreeSet<NeededClaim>>,
}

/// Runs TPE over `sets` for one scope.
pub(crate) fn derive(
    loaded: &LoadedPolicies,
    schema: &Schema,
    sets: &[&PolicySet],
    data: &RequestData,
    action: &EntityUid,
    presented: &BTreeSet<String>,
) -> Gated {
    let mut gated = Gated::default();
    let request = PartialRequest::new(
        PartialEntityUid::from_concrete(data.party.clone()),
        action.clone(),
        PartialEntityUid::from_concrete(data.resource.clone()),
        Some(data.context.clone()),
        schema,
    );
    let entities = data.partial_entities(schema);
    let (request, entities) = match (request, entities) {
        (Ok(r), Ok(e)) => (r, e),
        (Err(e), _) => return fallback(loaded, sets, action, presented, &e.to_string()),
        (_, Err(e)) => return fallback(loaded, sets, action, presented, &e.to_string()),
    };
    for set in sets {
        let response = match set.tpe(&request, &entities, schema) {
            Ok(r) => r,
            Err(e) => return fallback(loaded, sets, action, presented, &e.to_string()),
        };
        // Fail closed: a forbid that holds, or errors, denies whatever the party adds.
        gated.forbidden.extend(response.true_forbids().map(PolicyId::from));
        gated.forbidden.extend(response.error_forbids().map(PolicyId::from));
        let residual_permits: HashSet<&cedar_policy::PolicyId> = response.residual_permits().collect();
        for residual in response.residual_policies() {
            if !residual_permits.contains(residual.id()) {
                continue;
            }
            add_permit(loaded, &mut gated, &residual, Some(&data.party), presented);
        }
    }
    gated
}

fn add_permit(
    loaded: &LoadedPolicies,
    gated: &mut Gated,
    policy: &Policy,
    party: Option<&EntityUid>,
    presented: &BTreeSet<String>,
) {
    let Ok(json) = policy.to_json() else {
        return;
    };
    let mut refs = Refs::default();
    walk(&json, party, &mut refs);
    let needed: BTreeSet<NeededClaim> = refs
        .attrs
        .iter()
        .filter(|a| a.as_str() != "iss" && !presented.contains(a.as_str()))
        .map(|a| NeededClaim { name: a.clone(), issuer: refs.issuer.clone() })
        .collect();
    if needed.is_empty() {
        // Every claim it reads is already presented: more claims cannot change its answer.
        return;
    }
    let id = PolicyId::from(policy.id());
    if loaded.approval.contains(policy.id()) {
        gated.approvals.insert(id, needed);
    } else {
        gated.permits.insert(id, needed);
    }
}

/// Used only when TPE fails: the party attributes read anywhere in the permits that apply to the
/// scope.
fn fallback(
    loaded: &LoadedPolicies,
    sets: &[&PolicySet],
    action: &EntityUid,
    presented: &BTreeSet<String>,
    why: &str,
) -> Gated {
    tracing::warn!(error = why, "partial evaluation failed; required claims read from the policy text instead");
    let mut gated = Gated::default();
    let scope = action.id().unescaped();
    for set in sets {
        for p in set.policies() {
            if p.effect() != cedar_policy::Effect::Permit {
                continue;
            }
            if !super::load::admits(p, scope, &loaded.action_groups) {
                continue;
            }
            // In the full text the party is the `principal` variable.
            add_permit(loaded, &mut gated, p, None, presented);
        }
    }
    gated
}

#[derive(Debug, Default)]
struct Refs {
    attrs: BTreeSet<String>,
    issuer: Option<String>,
}

/// Whether an EST node is the party: the `principal` variable, or (in a residual) its entity.
fn is_party(node: Option<&serde_json::Value>, party: Option<&EntityUid>) -> bool {
    let (Some(node), Some(party)) = (node, party) else {
        return node.and_then(|n| n.get("Var")).and_then(|v| v.as_str()) == Some("principal");
    };
    if node.get("Var").and_then(|v| v.as_str()) == Some("principal") {
        return true;
    }
    let Some(e) = node.get("Value").and_then(|v| v.get("__entity")) else { return false };
    e.get("type").and_then(|t| t.as_str()) == Some(PARTY)
        && e.get("id").and_then(|i| i.as_str()) == Some(party.id().unescaped())
}

/// Collects `P.attr` and `P has attr` on the party, and `P.iss == "…"`, from a policy's JSON form.
fn walk(v: &serde_json::Value, party: Option<&EntityUid>, refs: &mut Refs) {
    match v {
        serde_json::Value::Object(m) => {
            for op in [".", "has"] {
                if let Some(inner) = m.get(op)
                    && is_party(inner.get("left"), party)
                    && let Some(attr) = inner.get("attr").and_then(|a| a.as_str())
                {
                    refs.attrs.insert(attr.to_owned());
                }
            }
            if let Some(eq) = m.get("==") {
                let (l, r) = (eq.get("left"), eq.get("right"));
                for (a, b) in [(l, r), (r, l)] {
                    if let (Some(a), Some(b)) = (a, b)
                        && let Some(dot) = a.get(".")
                        && is_party(dot.get("left"), party)
                        && dot.get("attr").and_then(|x| x.as_str()) == Some("iss")
                        && let Some(iss) = b.get("Value").and_then(|x| x.as_str())
                    {
                        refs.issuer = Some(iss.to_owned());
                    }
                }
            }
            for child in m.values() {
                walk(child, party, refs);
            }
        }
        serde_json::Value::Array(a) => {
            for child in a {
                walk(child, party, refs);
            }
        }
        _ => {}
    }
}

/// A UMA `required_claims` entry (UMA 2.0 Grant §3.3.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredClaim {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub claim_token_format: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub issuer: Vec<String>,
}

/// Who can supply a claim: the claim verifiers. Given a claim the policies need (and the issuer
/// they want it from, if they say), describe how a client can present it.
pub trait ClaimSources: Send + Sync {
    /// The `required_claims` entries for one needed claim; empty if no verifier supplies it.
    fn describe(&self, claim: &NeededClaim) -> Vec<RequiredClaim>;
}

/// No verifier is registered yet (the claim verifiers issue fills the registry): nothing is known
/// about any claim's format or issuer, so [`required_claims`] falls back to name (and issuer).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoClaimSources;

impl ClaimSources for NoClaimSources {
    fn describe(&self, _claim: &NeededClaim) -> Vec<RequiredClaim> {
        Vec::new()
    }
}

/// The UMA `required_claims` for a `NeedClaims` reason: what the sources say, or, for a claim no
/// source describes, its name and the issuer the policy asks for.
pub fn required_claims(claims: &[NeededClaim], sources: &dyn ClaimSources) -> Vec<RequiredClaim> {
    let mut out = Vec::new();
    for c in claims {
        let described = sources.describe(c);
        if described.is_empty() {
            out.push(RequiredClaim {
                name: c.name.clone(),
                friendly_name: None,
                claim_type: None,
                claim_token_format: Vec::new(),
                issuer: c.issuer.iter().cloned().collect(),
            });
        } else {
            out.extend(described);
        }
    }
    out
}
