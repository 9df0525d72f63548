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

use cedar_policy::{EntityUid, PartialEntityUid, PartialRequest, Policy, PolicySet, Schema, pst};
use serde::{Deserialize, Serialize};

use super::decision::{NeededClaim, PolicyId};
use super::entities::{PARTY, RequestData};
use super::load::LoadedPolicies;

/// What a permit could ever need from the party, read once at load: the party attributes it reads.
#[derive(Debug, Clone)]
pub(crate) struct PermitNeeds {
    pub attrs: BTreeSet<String>,
}

impl PermitNeeds {
    pub fn of(p: &Policy) -> Self {
        let attrs = syntax_tree(p).map(|t| Refs::of(&t, None).attrs).unwrap_or_default();
        PermitNeeds { attrs }
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
    // A residual has no text: this converts its tree. A full policy (the fallback, which is rare) is
    // re-parsed from its text, as before: its parsed tree would read `a != b` as `!(a == b)`.
    let Ok(tree) = policy.to_pst() else {
        return;
    };
    let refs = Refs::of(&tree, party);
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

impl Refs {
    /// The party attributes `policy` reads and the issuer it names, from its syntax tree (see
    /// [`syntax_tree`]).
    fn of(policy: &pst::Policy, party: Option<&EntityUid>) -> Self {
        let mut refs = Refs::default();
        for clause in policy.body().clauses() {
            match clause {
                pst::Clause::When(e) | pst::Clause::Unless(e) => refs.walk(e, party),
            }
        }
        refs
    }

    /// Collects `P.attr` and `P has attr` on the party, and `P.iss == "…"`, depth first, left to
    /// right (the last `P.iss == "…"` names the issuer, as in the JSON walk this replaced). Scope
    /// constraints hold no attribute.
    fn walk(&mut self, e: &pst::Expr, party: Option<&EntityUid>) {
        use pst::Expr as E;
        match e {
            E::GetAttr { expr, attr } => {
                if is_party(expr, party) {
                    self.attrs.insert(attr.to_string());
                }
                self.walk(expr, party);
            }
            E::HasAttr { expr, attrs } => {
                // Only the one-attribute form: `P has a.b` is not a claim test (claims are no
                // records), and the JSON form this replaced never read it either.
                if attrs.tail.is_empty() && is_party(expr, party) {
                    self.attrs.insert(attrs.head.to_string());
                }
                self.walk(expr, party);
            }
            E::BinaryOp { op, left, right } => {
                if matches!(op, pst::BinaryOp::Eq) {
                    for (a, b) in [(left, right), (right, left)] {
                        if let E::GetAttr { expr, attr } = a.as_ref()
                            && attr == "iss"
                            && is_party(expr, party)
                            && let E::Literal(pst::Literal::String(iss)) = b.as_ref()
                        {
                            self.issuer = Some(iss.to_string());
                        }
                    }
                }
                self.walk(left, party);
                self.walk(right, party);
            }
            E::UnaryOp { expr, .. } | E::Like { expr, .. } => self.walk(expr, party),
            E::Is { expr, in_expr, .. } => {
                self.walk(expr, party);
                if let Some(i) = in_expr {
                    self.walk(i, party);
                }
            }
            E::IfThenElse { cond, then_expr, else_expr } => {
                self.walk(cond, party);
                self.walk(then_expr, party);
                self.walk(else_expr, party);
            }
            E::Set(items) => {
                for i in items {
                    self.walk(i, party);
                }
            }
            E::Record(fields) => {
                for v in fields.values() {
                    self.walk(v, party);
                }
            }
            // Literals, variables, slots, unknowns and residual errors hold no attribute access.
            _ => {}
        }
    }
}

/// Whether an expression is the party: the `principal` variable, or (in a residual, where partial
/// evaluation substituted it) its entity.
fn is_party(e: &pst::Expr, party: Option<&EntityUid>) -> bool {
    match (e, party) {
        (pst::Expr::Var(pst::Var::Principal), _) => true,
        (pst::Expr::Literal(pst::Literal::EntityUID(u)), Some(party)) => {
            u.eid.as_str() == party.id().unescaped() && u.ty.to_string() == PARTY
        }
        _ => false,
    }
}

/// A policy's syntax tree, converted from the tree Cedar parsed at load instead of re-parsing the
/// policy's text (which `Policy::to_pst` and `Policy::to_json` do for a policy parsed from text,
/// at twice the cost of the first parse).
// `AsRef<ast::Policy>` and `From<ast::Policy>` are public but hidden from Cedar's docs; the
// version is pinned exactly (`=4.14.1`), so a change to them shows at compile time, not at run time.
fn syntax_tree(p: &Policy) -> Option<pst::Policy> {
    Policy::from(AsRef::as_ref(p).clone()).to_pst().ok()
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

#[cfg(test)]
mod tests {
    //! The syntax-tree walk against the JSON walk it replaced (`Policy::to_json`, kept here as the
    //! oracle): the same attributes and the same issuer, on full policies (parsed from text, as the
    //! fallback reads them, or converted from the parsed tree, as the load reads them) and on the
    //! residuals of partial evaluation.

    use std::path::Path;
    use std::str::FromStr;

    use super::super::entities::{ClientInfo, Model, RequestingParty, ResourceInfo, uid};
    use super::super::load::{LoadedPolicies, Snapshot};
    use super::*;

    const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema");

    /// The walk over `Policy::to_json` this module used before.
    fn json_refs(policy: &Policy, party: Option<&EntityUid>) -> (BTreeSet<String>, Option<String>) {
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
        let mut refs = Refs::default();
        walk(&policy.to_json().expect("json"), party, &mut refs);
        (refs.attrs, refs.issuer)
    }

    fn tree_refs(policy: &Policy, party: Option<&EntityUid>) -> (BTreeSet<String>, Option<String>) {
        let refs = Refs::of(&policy.to_pst().expect("pst"), party);
        (refs.attrs, refs.issuer)
    }

    /// Valid against the schema, and written to tell the walks apart if they differ: the issuer in
    /// several places and orders, `!=`, `unless`, conditionals, records, sets, `like`, `is`,
    /// string-form attribute names.
    const TRICKY: &str = r#"
@id("iss-twice") permit (principal, action == Tessera::Action::"read", resource)
when { (principal has iss && principal.iss == "https://a.test") || (principal has iss && "https://b.test" == principal.iss) };
@id("iss-not") permit (principal, action == Tessera::Action::"read", resource)
when { principal has iss && principal.iss != "https://c.test" && principal has email };
@id("iss-unless") permit (principal, action == Tessera::Action::"view", resource)
unless { principal has iss && principal.iss == "https://d.test" } when { principal has npi };
@id("ite") permit (principal, action, resource in Tessera::ResourceType::"t1")
when { if principal has role then principal.role == "physician" else principal has iss && principal.iss == "https://e.test" };
@id("record") permit (principal, action == Tessera::Action::"read", resource)
when { principal has email && {"a": principal.email, "b": resource.name}.a == "x@y.test" && principal has iss && [principal.iss == "https://f.test"].contains(true) };
@id("strings") permit (principal, action == Tessera::Action::"download", resource)
when { principal has "organization" && principal["organization"] like "acme*" && principal is Tessera::Party && resource.type == "t2" };
@id("groups") forbid (principal, action in [Tessera::Action::"write", Tessera::Action::"delete"], resource)
when { principal has groups && principal.groups.containsAny(["banned"]) && principal has email_verified && !principal.email_verified };
@id("resource-first") permit (principal, action == Tessera::Action::"read", resource in Tessera::Owner::"alice")
when { (resource.type == "t3" && principal has npi) || (principal has role && principal.role == "nurse") };
"#;

    /// Not valid against the schema (claims are no records): only for the walk over full policies.
    const UNVALIDATED: &str = r#"
@id("extended-has") permit (principal, action, resource) when { principal has address.city && principal.address.city == "Paris" };
@id("nested") permit (principal, action, resource) when { principal.a.b == principal.c && principal.iss == "https://g.test" };
"#;

    fn corpus() -> Vec<String> {
        let mut texts = vec![TRICKY.to_owned(), UNVALIDATED.to_owned()];
        for dir in ["policies", "policies/heart", "policies/enterprise", "bench/policies"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in std::fs::read_dir(&dir).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "cedar") {
                    texts.push(std::fs::read_to_string(&path).expect("read"));
                }
            }
        }
        texts
    }

    #[test]
    fn full_policies_read_the_same_from_the_tree_as_from_json() {
        let mut seen = 0;
        for text in corpus() {
            for p in PolicySet::from_str(&text).expect("parses").policies() {
                let (attrs, issuer) = json_refs(p, None);
                // The fallback: the text re-parsed, as `to_json` did.
                assert_eq!(tree_refs(p, None), (attrs.clone(), issuer), "{p}");
                // The load: the tree Cedar parsed, converted.
                assert_eq!(PermitNeeds::of(p).attrs, attrs, "{p}");
                seen += 1;
            }
        }
        assert!(seen > 30, "{seen} policies");
    }

    #[test]
    fn residuals_read_the_same_from_the_tree_as_from_json() {
        let dir = tempfile::tempdir().expect("dir");
        for (i, text) in corpus().iter().enumerate().filter(|(_, t)| t.as_str() != UNVALIDATED) {
            std::fs::write(dir.path().join(format!("f{i}.cedar")), text).expect("write");
        }
        let snap = Snapshot::read(dir.path(), Path::new(SCHEMA)).expect("read");
        let loaded = LoadedPolicies::build(&snap, dir.path(), Path::new(SCHEMA)).expect("valid");
        let schema = loaded.schema.as_ref().expect("schema");
        let model = Model { schema, actions: &loaded.action_entities, shape: &loaded.shape };
        let client = ClientInfo { id: "ehr-app".into(), name: None };
        let mut parties = vec![RequestingParty::default()];
        let mut nurse =
            RequestingParty { iss: Some("https://a.test".into()), sub: Some("n".into()), ..Default::default() };
        nurse.claims.insert("role".into(), "nurse".into());
        parties.push(nurse);
        let resources = [
            ("obs-1", "alice", "http://hl7.org/fhir/Observation"),
            ("r-2", "alice", "t3"),
            ("r-3", "bob", "t1"),
            ("r-4", "carol", "t2"),
        ];
        let (mut residuals, mut with_issuer) = (0, 0);
        for party in &parties {
            for (id, owner, ty) in resources {
                let r = ResourceInfo { id: id.into(), owner: owner.into(), resource_type: Some(ty.into()), name: None };
                let data = RequestData::build(model, party, &client, &r, &[], 1_767_609_000).expect("data");
                let request_party = data.party.clone();
                for scope in &loaded.actions {
                    let action = uid(super::super::entities::ACTION, scope).expect("action");
                    let request = PartialRequest::new(
                        PartialEntityUid::from_concrete(data.party.clone()),
                        action,
                        PartialEntityUid::from_concrete(data.resource.clone()),
                        Some(data.context.clone()),
                        schema,
                    )
                    .expect("request");
                    let entities = data.partial_entities(schema).expect("entities");
                    for set in loaded.slices.sets_for(Some(ty), owner, id, scope) {
                        let response = set.tpe(&request, &entities, schema).expect("tpe");
                        for residual in response.residual_policies() {
                            let refs = json_refs(&residual, Some(&request_party));
                            assert_eq!(tree_refs(&residual, Some(&request_party)), refs, "{residual}");
                            residuals += 1;
                            with_issuer += usize::from(refs.1.is_some());
                        }
                    }
                }
            }
        }
        assert!(residuals > 20 && with_issuer > 5, "{residuals} residuals, {with_issuer} naming an issuer");
    }
}
