//! What an assessment answers, per resource and scope, and how Cedar's answers become that answer.
//!
//! Fail closed: Cedar skips a policy whose evaluation errors, so an erroring `forbid` would silently
//! stop forbidding. Here any evaluation error on a request denies that scope, names the erroring
//! policies and is logged.

use std::collections::BTreeSet;

use cedar_policy::{Decision, Response};
use serde::Serialize;

/// A policy id as the audit trail records it: `<file>#<@id>` for file policies,
/// `share:<share id>:<scope>` for resource-owner shares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PolicyId(String);

impl PolicyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&cedar_policy::PolicyId> for PolicyId {
    fn from(id: &cedar_policy::PolicyId) -> Self {
        PolicyId(id.to_string())
    }
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claim that, once presented, could turn a denial into a grant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NeededClaim {
    pub name: String,
    /// The issuer the policy wants it from (`principal.iss == "…"`), when it says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Why a scope was not granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DenyReason {
    /// More claims could grant it (UMA `need_info`): exactly these, missing from the party.
    NeedClaims { claims: Vec<NeededClaim> },
    /// A permit applies but is marked `@approval("owner")` (UMA `request_submitted`).
    NeedsApproval,
    /// Nothing the requesting party can add would grant it (UMA `request_denied`).
    Denied,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Outcome {
    Granted,
    Denied(DenyReason),
}

/// The answer for one scope of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeDecision {
    pub scope: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The determining policies: the permits that granted, the forbids that denied, the approval
    /// permits or claim-gated permits behind a reason, the policies whose evaluation failed.
    pub policies: Vec<PolicyId>,
}

impl ScopeDecision {
    pub fn is_granted(&self) -> bool {
        self.outcome == Outcome::Granted
    }

    pub(crate) fn denied(scope: &str, reason: DenyReason, policies: impl IntoIterator<Item = PolicyId>) -> Self {
        let policies: BTreeSet<PolicyId> = policies.into_iter().collect();
        ScopeDecision {
            scope: scope.to_owned(),
            outcome: Outcome::Denied(reason),
            policies: policies.into_iter().collect(),
        }
    }
}

/// The answer for one resource: one decision per requested scope, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceDecision {
    pub resource_id: String,
    pub scopes: Vec<ScopeDecision>,
}

impl ResourceDecision {
    pub fn granted_scopes(&self) -> Vec<&str> {
        self.scopes.iter().filter(|s| s.is_granted()).map(|s| s.scope.as_str()).collect()
    }

    pub fn denied(&self) -> impl Iterator<Item = (&str, &DenyReason)> {
        self.scopes.iter().filter_map(|s| match &s.outcome {
            Outcome::Denied(r) => Some((s.scope.as_str(), r)),
            Outcome::Granted => None,
        })
    }

    /// Every policy that determined any scope, for the audit record.
    pub fn determining_policies(&self) -> BTreeSet<&PolicyId> {
        self.scopes.iter().flat_map(|s| s.policies.iter()).collect()
    }
}

/// Cedar's answers for one (party, scope, resource), combined across the sets evaluated.
#[derive(Debug, Default)]
pub(crate) struct Combined {
    pub errors: Vec<(PolicyId, String)>,
    pub forbids: Vec<PolicyId>,
    pub permits: Vec<PolicyId>,
}

impl Combined {
    /// Adds one set's response.
    pub fn add(&mut self, response: &Response) {
        let d = response.diagnostics();
        for e in d.errors() {
            let id = match e {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => PolicyId::from(e.policy_id()),
            };
            self.errors.push((id, e.to_string()));
        }
        let reasons = d.reason().map(PolicyId::from);
        match response.decision() {
            Decision::Allow => self.permits.extend(reasons),
            // A deny with determining policies is a satisfied forbid; without, nothing applied.
            Decision::Deny => self.forbids.extend(reasons),
        }
    }

    /// Cedar's rule over the union of the sets, failing closed on any error.
    // INVARIANT (forbid-wins): one set's decision says nothing of another's, so a set that allowed
    // may be overruled by a forbid satisfied in another set: forbids are checked before permits.
    pub fn verdict(&self) -> Verdict {
        if !self.errors.is_empty() {
            Verdict::Error
        } else if !self.forbids.is_empty() {
            Verdict::Forbidden
        } else if !self.permits.is_empty() {
            Verdict::Permitted
        } else {
            Verdict::NothingApplies
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Error,
    Forbidden,
    Permitted,
    NothingApplies,
}
