//! Resource-owner sharing as data: "owner O shares resource R, scopes S, with a party presenting
//! claims C, until T". Each share is a row in the store; at assessment time it is linked into one
//! Cedar template per scope,
//!
//! ```cedar
//! permit (principal in ?principal, action == Tessera::Action::"<scope>", resource == ?resource);
//! ```
//!
//! with `?resource` the shared resource and `?principal` the share's grantee group
//! (`Tessera::ShareGrantee::"<share id>"`), of which the engine makes the party a member when it
//! presents every claim of the matcher. So sharing is data, not code, and a `forbid` in the policy
//! files still wins over any share. Revocation and expiry take effect on the next assessment: only
//! active shares are read.
//!
//! The owner-facing HTTP API needs the owner-authenticated PAT of the protection API; until that is
//! wired, these functions are the API (the console and the HTTP handlers will call them).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use cedar_policy::{PolicyId as CedarPolicyId, PolicySet, SlotId, Template};
use serde::{Deserialize, Serialize};

use super::PolicyEngine;
use super::decision::NeededClaim;
use super::entities::{ACTION, RESOURCE, RequestingParty, SHARE_GRANTEE, uid};
use crate::clock::UnixTime;
use crate::store::{ShareRecord, Store, StoreError};

/// At most this many scopes and matcher claims per share.
const MAX_SCOPES: usize = 32;
const MAX_MATCHER_CLAIMS: usize = 16;

/// Which requesting parties a share is for: every listed claim must be presented with that value
/// (for a claim whose value is a list, such as `groups`, the list must contain it). `iss` is
/// required: a claim value means something only together with the issuer that asserted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartyMatcher(pub BTreeMap<String, serde_json::Value>);

/// How a party compares with a matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Match {
    Yes,
    /// A presented claim has another value: this share cannot apply.
    No,
    /// Nothing contradicts it, but these claims are missing.
    Missing(Vec<NeededClaim>),
}

impl PartyMatcher {
    pub(crate) fn check(&self, party: &RequestingParty) -> Match {
        let issuer = self.0.get("iss").and_then(|v| v.as_str()).map(str::to_owned);
        let mut missing = Vec::new();
        for (name, wanted) in &self.0 {
            match party.claim(name) {
                None => missing.push(NeededClaim { name: name.clone(), issuer: issuer.clone() }),
                Some(serde_json::Value::Array(items)) if !wanted.is_array() => {
                    if !items.contains(wanted) {
                        return Match::No;
                    }
                }
                Some(v) if &v == wanted => {}
                Some(_) => return Match::No,
            }
        }
        if missing.is_empty() {
            Match::Yes
        } else {
            // The issuer is not itself a claim to ask for: it rides along on each claim.
            missing.retain(|c| c.name != "iss");
            if missing.is_empty() { Match::No } else { Match::Missing(missing) }
        }
    }
}

/// A share as the engine and the owner see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Share {
    pub id: String,
    pub owner: String,
    pub resource_id: String,
    pub scopes: Vec<String>,
    pub matcher: PartyMatcher,
    /// `None`: never expires.
    pub expires_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

impl Share {
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }

    fn from_record(r: ShareRecord) -> Result<Share, ShareError> {
        let matcher = serde_json::from_str(&r.matcher)
            .map_err(|e| ShareError::Corrupt(format!("share `{}` has an unreadable matcher: {e}", r.share_id)))?;
        Ok(Share {
            scopes: r.scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            matcher,
            expires_at: (r.expires_at != 0).then_some(r.expires_at),
            id: r.share_id,
            owner: r.owner,
            resource_id: r.resource_id,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// What an owner asks for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    pub resource_id: String,
    pub scopes: Vec<String>,
    pub matcher: PartyMatcher,
    #[serde(default)]
    pub expires_at: Option<UnixTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("invalid share: {0}")]
    Invalid(String),
    #[error("{0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a share request against the loaded schema (scopes must be declared) and `now`.
pub fn validate(engine: &PolicyEngine, new: &NewShare, now: UnixTime) -> Result<(), ShareError> {
    let invalid = |m: String| Err(ShareError::Invalid(m));
    if new.resource_id.is_empty() {
        return invalid("`resource_id` is empty".into());
    }
    if new.scopes.is_empty() || new.scopes.len() > MAX_SCOPES {
        return invalid(format!("give 1 to {MAX_SCOPES} scopes"));
    }
    for s in &new.scopes {
        if s.is_empty() || s.contains(' ') {
            return invalid(format!("scope `{s}` is empty or has a space"));
        }
        if !engine.knows_scope(s) {
            return invalid(format!("scope `{s}` is not declared in the policy schema"));
        }
    }
    if new.matcher.0.len() > MAX_MATCHER_CLAIMS {
        return invalid(format!("a matcher has at most {MAX_MATCHER_CLAIMS} claims"));
    }
    match new.matcher.0.get("iss") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => {}
        _ => return invalid("the matcher must name the claims' issuer (`iss`)".into()),
    }
    if new.matcher.0.len() < 2 {
        return invalid("the matcher must name at least one claim besides `iss`".into());
    }
    for (name, v) in &new.matcher.0 {
        let ok = matches!(v, serde_json::Value::String(_) | serde_json::Value::Bool(_)) || v.as_i64().is_some();
        if !ok {
            return invalid(format!("matcher claim `{name}` must be a string, a boolean or an integer"));
        }
    }
    if let Some(t) = new.expires_at
        && t <= now
    {
        return invalid("`expires_at` is in the past".into());
    }
    Ok(())
}

/// Creates a share. The caller has authenticated `owner` and checked that it owns the resource;
/// the engine checks ownership again at every assessment, so a share never applies to a resource
/// of another owner.
pub async fn create_share(
    store: &Store,
    engine: &PolicyEngine,
    owner: &str,
    new: NewShare,
    now: UnixTime,
) -> Result<Share, ShareError> {
    validate(engine, &new, now)?;
    let mut scopes = new.scopes;
    scopes.sort();
    scopes.dedup();
    let record = ShareRecord {
        share_id: uuid::Uuid::new_v4().simple().to_string(),
        owner: owner.to_owned(),
        resource_id: new.resource_id,
        scopes: scopes.join(" "),
        matcher: serde_json::to_string(&new.matcher).map_err(|e| ShareError::Invalid(e.to_string()))?,
        expires_at: new.expires_at.unwrap_or(0),
        created_at: now,
        revoked_at: None,
    };
    store.insert_share(&record).await?;
    Share::from_record(record)
}

/// Every share of an owner, revoked and expired ones included (see [`Share::is_active`]).
pub async fn list_shares(store: &Store, owner: &str) -> Result<Vec<Share>, ShareError> {
    store.list_shares(owner).await?.into_iter().map(Share::from_record).collect()
}

/// Revokes a share; `false` if the owner has no such active share.
pub async fn revoke_share(store: &Store, owner: &str, share_id: &str, now: UnixTime) -> Result<bool, ShareError> {
    Ok(store.revoke_share(owner, share_id, now).await?)
}

/// The shares that apply to these resources now, for [`PolicyEngine::assess`]. An unreadable row
/// is skipped and logged: a share only ever grants, so skipping it cannot open access.
pub async fn active_shares(store: &Store, resource_ids: &[&str], now: UnixTime) -> Result<Vec<Share>, ShareError> {
    let mut out = Vec::new();
    for r in store.active_shares(resource_ids, now).await? {
        match Share::from_record(r) {
            Ok(s) => out.push(s),
            Err(e) => tracing::error!(error = %e, "share skipped"),
        }
    }
    Ok(out)
}

/// The share templates, one per scope the schema declares, keyed by scope.
pub(crate) fn templates(scopes: &std::collections::HashSet<String>) -> Result<HashMap<String, Template>, String> {
    let mut out = HashMap::new();
    for scope in scopes {
        let action = uid(ACTION, scope).map_err(|e| e.to_string())?;
        let text = format!("permit (principal in ?principal, action == {action}, resource == ?resource);");
        let id = CedarPolicyId::new(format!("share-template:{scope}"));
        let t = Template::parse(Some(id), text).map_err(|e| e.to_string())?;
        out.insert(scope.clone(), t);
    }
    Ok(out)
}

/// The grantee group of a share.
pub(crate) fn grantee_group(share: &Share) -> String {
    share.id.clone()
}

/// The id of a share's policy for one scope, as the audit trail records it.
pub(crate) fn link_id(share: &Share, scope: &str) -> super::PolicyId {
    super::PolicyId::from(&CedarPolicyId::new(format!("share:{}:{scope}", share.id)))
}

/// Links the shares into one policy set, one policy per (share, scope): `share:<id>:<scope>`.
pub(crate) fn link(templates: &HashMap<String, Template>, shares: &[&Share]) -> Result<PolicySet, String> {
    let mut set = PolicySet::new();
    for share in shares {
        let principal = uid(SHARE_GRANTEE, &grantee_group(share)).map_err(|e| e.to_string())?;
        let resource = uid(RESOURCE, &share.resource_id).map_err(|e| e.to_string())?;
        for scope in &share.scopes {
            // A scope the schema no longer declares cannot be requested: nothing to link.
            let Some(t) = templates.get(scope) else { continue };
            if set.template(t.id()).is_none() {
                set.add_template(t.clone()).map_err(|e| e.to_string())?;
            }
            let id = CedarPolicyId::from_str(link_id(share, scope).as_str()).map_err(|e| e.to_string())?;
            let slots =
                HashMap::from([(SlotId::principal(), principal.clone()), (SlotId::resource(), resource.clone())]);
            set.link(t.id().clone(), id, slots).map_err(|e| e.to_string())?;
        }
    }
    Ok(set)
}
