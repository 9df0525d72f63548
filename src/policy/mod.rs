//! The policy engine: every authorization assessment is decided by Cedar policies. This module is
//! the only one that imports `cedar_policy`; the rest of Tessera sees [`PolicyEngine`], plain input
//! types and [`ResourceDecision`]s.
//!
//! ```text
//! policies/**/*.cedar ─┐
//! schemas/…cedarschema ┴─ load (strict validation, stable ids, slices) ─► LoadedPolicies ─┐ hot reload:
//!                                                                                         │ whole set or
//! party claims, client, (resource, scopes)…, active shares, now ─► assess ◄───────────────┘ nothing
//!     per scope: Granted | Denied(NeedClaims{claims} | NeedsApproval | Denied) + policy ids
//! ```
//!
//! Fail closed, always: an evaluation error, an undeclared scope, a mistyped claim or entities that
//! cannot be built deny the scope; a `forbid` anywhere wins over every permit and every share; a
//! reload that does not validate leaves the previous set serving. docs/policies.md is the guide.

pub mod cli;
pub mod decision;
pub mod entities;
pub mod load;
pub mod required_claims;
pub mod sharing;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use cedar_policy::{Authorizer, PolicySet, Request};

use crate::clock::UnixTime;
use decision::{Combined, Verdict};
pub use decision::{DenyReason, NeededClaim, Outcome, PolicyId, ResourceDecision, ScopeDecision};
use entities::{ACTION, RequestData, presented_claims, uid};
pub use entities::{ClaimSource, ClientInfo, RequestingParty, ResourceInfo};
pub use load::{LoadError, Located};
use load::{LoadedPolicies, Snapshot};
pub use required_claims::{ClaimSources, NoClaimSources, RequiredClaim, required_claims};
use sharing::Match;
pub use sharing::{NewShare, PartyMatcher, Share, ShareError};

/// One resource and the scopes requested on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRequest {
    pub resource: ResourceInfo,
    pub scopes: Vec<String>,
}

/// Everything one assessment needs. Time is an input: the engine never reads the clock.
#[derive(Debug, Clone, Copy)]
pub struct AssessmentRequest<'a> {
    pub party: &'a RequestingParty,
    pub client: &'a ClientInfo,
    pub permissions: &'a [PermissionRequest],
    /// Active shares of the requested resources (see [`sharing::active_shares`]); others are ignored.
    pub shares: &'a [Share],
    pub now: UnixTime,
    /// Whether to work out, for each denied scope, which claims could grant it. The UMA grant wants
    /// it; a plain yes/no check (or a benchmark of one) can skip it.
    pub derive_required_claims: bool,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    Swapped { files: usize, policies: usize },
}

/// The loaded policies, swapped whole on reload. Cheap to share: readers clone an `Arc`.
#[derive(Debug)]
pub struct PolicyEngine {
    dir: PathBuf,
    schema: PathBuf,
    current: RwLock<Arc<LoadedPolicies>>,
    /// A changed fingerprint seen by the last poll: applied once it is seen twice in a row, so an
    /// edit spread over several files (or a file being written) is never loaded half-done.
    pending: Mutex<Option<u64>>,
    /// The fingerprint of the last set that failed to load, so its errors are logged once.
    failed: Mutex<Option<u64>>,
}

impl PolicyEngine {
    /// Loads and validates every policy, or says what is wrong, with file, line and column.
    ///
    /// A missing policies folder is an empty set that denies everything (logged at warn by the
    /// caller via [`PolicyEngine::is_empty`]); a folder with policies and no schema is an error.
    pub fn load(dir: &Path, schema: &Path) -> Result<Self, LoadError> {
        let snap = Snapshot::read(dir, schema)?;
        let loaded = LoadedPolicies::build(&snap, dir, schema)?;
        Ok(PolicyEngine {
            dir: dir.to_owned(),
            schema: schema.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            pending: Mutex::new(None),
            failed: Mutex::new(None),
        })
    }

    #[cfg(test)]
    pub(crate) fn from_loaded(dir: &Path, schema: &Path, loaded: LoadedPolicies) -> Self {
        PolicyEngine {
            dir: dir.to_owned(),
            schema: schema.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            pending: Mutex::new(None),
            failed: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<LoadedPolicies> {
        match self.current.read() {
            Ok(g) => g.clone(),
            // A panic while swapping cannot leave a half-built set: the value is one `Arc`.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, loaded: LoadedPolicies) {
        let loaded = Arc::new(loaded);
        // The old set is dropped after the lock is released: readers never wait on its freeing.
        let _old = match self.current.write() {
            Ok(mut g) => std::mem::replace(&mut *g, loaded),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), loaded),
        };
    }

    pub fn is_empty(&self) -> bool {
        self.current().count() == 0
    }

    /// (files, policies) of the set in use.
    pub fn summary(&self) -> (usize, usize) {
        let c = self.current();
        (c.files, c.count())
    }

    /// Warnings of the set in use (validator warnings, schema warnings).
    pub fn warnings(&self) -> Vec<String> {
        self.current().warnings.clone()
    }

    pub fn policies_dir(&self) -> &Path {
        &self.dir
    }

    /// What a PCT keeps of the claims that led to a grant: the party attributes that the given permits
    /// read (`principal.x`, `principal has x`), plus every attribute any `forbid` reads, so that a later
    /// request on the PCT alone is refused wherever the full claims would have been.
    pub fn claims_to_persist(&self, granting: &[PolicyId]) -> BTreeSet<String> {
        let loaded = self.current();
        let mut out: BTreeSet<String> = granting
            .iter()
            .filter_map(|id| loaded.permit_needs.get(&cedar_policy::PolicyId::new(id.as_str())))
            .flat_map(|n| n.attrs.iter().cloned())
            .collect();
        out.extend(loaded.forbid_attrs.iter().cloned());
        out
    }

    /// Whether the schema declares this scope (an undeclared scope is always denied).
    pub fn knows_scope(&self, scope: &str) -> bool {
        self.current().actions.contains(scope)
    }

    /// Reads the folder and, if anything changed, validates the whole new set and swaps it in. On
    /// any error the set in use stays. A change that would leave no policy at all where there were
    /// some is refused too: an emptied folder is more likely a broken deployment than an intent.
    pub fn reload_now(&self) -> Result<Reloaded, LoadError> {
        let snap = Snapshot::read(&self.dir, &self.schema)?;
        self.apply(&snap)
    }

    fn apply(&self, snap: &Snapshot) -> Result<Reloaded, LoadError> {
        let current = self.current();
        if snap.fingerprint() == current.fingerprint {
            return Ok(Reloaded::Unchanged);
        }
        // Files whose text (and the schema) did not change are reused from the set in use.
        let loaded = LoadedPolicies::rebuild(&current, snap, &self.dir, &self.schema)?;
        if loaded.count() == 0 && current.count() > 0 {
            return Err(LoadError::Emptied { dir: self.dir.display().to_string() });
        }
        let out = Reloaded::Swapped { files: loaded.files, policies: loaded.count() };
        self.swap(loaded);
        Ok(out)
    }

    /// One hot-reload poll: applies a change once it has been stable for one poll, and logs the
    /// outcome (errors once per broken version).
    pub fn poll(&self) {
        // Timed so operators (and the benchmark) see what a reload costs: read, parse, validate,
        // slice, swap.
        let started = std::time::Instant::now();
        let snap = match Snapshot::read(&self.dir, &self.schema) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the policies; the previous set keeps deciding");
                return;
            }
        };
        let fp = snap.fingerprint();
        if fp == self.current().fingerprint {
            set(&self.pending, None);
            return;
        }
        if get(&self.pending) != Some(fp) {
            set(&self.pending, Some(fp));
            return;
        }
        if get(&self.failed) == Some(fp) {
            return;
        }
        match self.apply(&snap) {
            Ok(Reloaded::Swapped { files, policies }) => {
                set(&self.failed, None);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::info!(files, policies, elapsed_ms, "policies reloaded");
                for w in self.warnings() {
                    tracing::warn!("{w}");
                }
            }
            Ok(Reloaded::Unchanged) => {}
            Err(e) => {
                set(&self.failed, Some(fp));
                tracing::error!(error = %e, "policy change rejected; the previous set keeps deciding");
            }
        }
    }

    /// Assesses every (resource, scopes) of the request. Never fails: whatever cannot be evaluated
    /// is denied (and logged).
    pub fn assess(&self, req: &AssessmentRequest<'_>) -> Vec<ResourceDecision> {
        let loaded = self.current();
        req.permissions.iter().map(|p| assess_resource(&loaded, req, p)).collect()
    }
}

fn get(m: &Mutex<Option<u64>>) -> Option<u64> {
    match m.lock() {
        Ok(g) => *g,
        Err(p) => *p.into_inner(),
    }
}

fn set(m: &Mutex<Option<u64>>, v: Option<u64>) {
    match m.lock() {
        Ok(mut g) => *g = v,
        Err(p) => *p.into_inner() = v,
    }
}

fn all_denied(p: &PermissionRequest) -> ResourceDecision {
    ResourceDecision {
        resource_id: p.resource.id.clone(),
        scopes: p.scopes.iter().map(|s| ScopeDecision::denied(s, DenyReason::Denied, [])).collect(),
    }
}

fn assess_resource(loaded: &LoadedPolicies, req: &AssessmentRequest<'_>, p: &PermissionRequest) -> ResourceDecision {
    let Some(schema) = &loaded.schema else {
        return all_denied(p);
    };
    let r = &p.resource;
    // Shares of this resource, by its current owner, still active.
    let shares: Vec<&Share> =
        req.shares.iter().filter(|s| s.resource_id == r.id && s.owner == r.owner && s.is_active(req.now)).collect();
    let mut matched = Vec::new();
    let mut share_missing: Vec<(&Share, Vec<NeededClaim>)> = Vec::new();
    for s in &shares {
        match s.matcher.check(req.party) {
            Match::Yes => matched.push(*s),
            Match::Missing(c) => share_missing.push((*s, c)),
            Match::No => {}
        }
    }
    let groups: Vec<String> = matched.iter().map(|s| sharing::grantee_group(s)).collect();
    let model = entities::Model { schema, actions: &loaded.action_entities, shape: &loaded.shape };
    let data = match RequestData::build(model, req.party, req.client, r, &groups, req.now) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(resource_id = %r.id, error = %e, "request cannot be evaluated; every scope denied");
            return all_denied(p);
        }
    };
    let share_set = if matched.is_empty() {
        None
    } else {
        match sharing::link(&loaded.share_templates, &matched) {
            Ok(s) => Some(s),
            Err(e) => {
                // Shares only grant, so leaving them out cannot open access.
                tracing::error!(resource_id = %r.id, error = %e, "cannot link the resource's shares; they do not apply");
                None
            }
        }
    };
    let presented = presented_claims(req.party);
    let authorizer = Authorizer::new();
    let scopes = p
        .scopes
        .iter()
        .map(|scope| {
            let file_sets = loaded.slices.sets_for(r.resource_type.as_deref(), &r.owner, &r.id, scope);
            let mut sets = file_sets.clone();
            sets.extend(share_set.as_ref());
            assess_scope(loaded, schema, req, &data, &authorizer, &sets, &file_sets, &share_missing, &presented, scope)
        })
        .collect();
    ResourceDecision { resource_id: r.id.clone(), scopes }
}

#[expect(clippy::too_many_arguments, reason = "one scope of one resource: everything the resource-level step prepared")]
fn assess_scope(
    loaded: &LoadedPolicies,
    schema: &cedar_policy::Schema,
    req: &AssessmentRequest<'_>,
    data: &RequestData,
    authorizer: &Authorizer,
    sets: &[&PolicySet],
    file_sets: &[&PolicySet],
    share_missing: &[(&Share, Vec<NeededClaim>)],
    presented: &BTreeSet<String>,
    scope: &str,
) -> ScopeDecision {
    if !loaded.actions.contains(scope) {
        tracing::debug!(scope, "scope not declared in the policy schema; denied");
        return ScopeDecision::denied(scope, DenyReason::Denied, []);
    }
    let request = uid(ACTION, scope).map_err(|e| e.to_string()).and_then(|action| {
        // The request's shape was checked for every scope at load (`entities::probe`).
        Request::new(data.party.clone(), action.clone(), data.resource.clone(), data.context.clone(), None)
            .map(|r| (action, r))
            .map_err(|e| e.to_string())
    });
    let (action, request) = match request {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(scope, error = %e, "request does not match the schema; denied");
            return ScopeDecision::denied(scope, DenyReason::Denied, []);
        }
    };
    let mut combined = Combined::default();
    for set in sets {
        combined.add(&authorizer.is_authorized(&request, set, &data.entities));
    }
    match combined.verdict() {
        Verdict::Error => {
            for (id, error) in &combined.errors {
                tracing::warn!(policy_id = %id, scope, error = %error, "policy evaluation failed; scope denied (fail closed)");
            }
            ScopeDecision::denied(scope, DenyReason::Denied, combined.errors.into_iter().map(|(id, _)| id))
        }
        Verdict::Forbidden => ScopeDecision::denied(scope, DenyReason::Denied, combined.forbids),
        Verdict::Permitted => {
            let approval: HashSet<&str> = loaded.approval.iter().map(|id| id.as_ref()).collect();
            let (needs_approval, granting): (Vec<PolicyId>, Vec<PolicyId>) =
                combined.permits.into_iter().partition(|id| approval.contains(id.as_str()));
            if granting.is_empty() {
                ScopeDecision::denied(scope, DenyReason::NeedsApproval, needs_approval)
            } else {
                let policies: BTreeSet<PolicyId> = granting.into_iter().collect();
                ScopeDecision {
                    scope: scope.to_owned(),
                    outcome: Outcome::Granted,
                    policies: policies.into_iter().collect(),
                }
            }
        }
        Verdict::NothingApplies
            if req.derive_required_claims
                && (!share_missing.is_empty()
                    || required_claims::may_need_claims(loaded, file_sets, scope, presented)) =>
        {
            let gated = required_claims::derive(loaded, schema, file_sets, data, &action, presented);
            if !gated.forbidden.is_empty() {
                return ScopeDecision::denied(scope, DenyReason::Denied, gated.forbidden);
            }
            let mut claims: BTreeSet<NeededClaim> = BTreeSet::new();
            let mut policies: Vec<PolicyId> = Vec::new();
            for (id, c) in gated.permits {
                claims.extend(c);
                policies.push(id);
            }
            for (share, c) in share_missing {
                if share.scopes.iter().any(|s| s == scope) {
                    claims.extend(c.iter().cloned());
                    policies.push(sharing::link_id(share, scope));
                }
            }
            if claims.is_empty() {
                for (id, c) in gated.approvals {
                    claims.extend(c);
                    policies.push(id);
                }
            }
            if claims.is_empty() {
                ScopeDecision::denied(scope, DenyReason::Denied, [])
            } else {
                ScopeDecision::denied(scope, DenyReason::NeedClaims { claims: claims.into_iter().collect() }, policies)
            }
        }
        Verdict::NothingApplies => ScopeDecision::denied(scope, DenyReason::Denied, []),
    }
}

#[cfg(test)]
mod tests;
