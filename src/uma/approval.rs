//! Owner approval of pending requests (UMA `request_submitted`, Grant §3.3.6). A request waits here
//! with who asks, which client, which resources and scopes; the owner approves (some scopes, for a
//! while) or denies; the client's next poll sees the decision. The owner decides in the console
//! (`http::console`, signed in) or through the protection API with a PAT, like shares: both call
//! [`decide_as`], the PAT path limited to the resource server that holds it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::pat::Pat;
use crate::policy::sharing::validate;
use crate::policy::{NewShare, PartyMatcher, PolicyEngine, RequestingParty};
use crate::store::{PendingRequestRecord, Store};
use crate::uma::permission::Permission;

/// A pending request as the owner sees it.
#[derive(Debug, Serialize)]
pub struct PendingView {
    pub id: String,
    pub client_id: String,
    pub requesting_party: PartyView,
    pub permissions: Vec<Permission>,
    pub status: String,
    pub created_at: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<UnixTime>,
}

/// Who asks: the verified issuer and subject. The other claims stay with Tessera: this API answers a
/// resource server holding the owner's PAT, and claims are never shown to a resource server.
#[derive(Debug, Serialize)]
pub struct PartyView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// The answer to a decision.
#[derive(Debug, Serialize)]
pub struct Decided {
    pub id: String,
    pub status: &'static str,
}

/// The owner's decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub decision: DecisionKind,
    /// Approve only these scopes (default: every scope asked for).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The approval ends after this many seconds (default: no end).
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Also keep it as a share, so later requests of the same party are granted without asking.
    #[serde(default)]
    pub remember: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Approve,
    Deny,
}

fn view(rec: PendingRequestRecord) -> Result<PendingView, OAuthError> {
    let party: RequestingParty = serde_json::from_str(&rec.party).map_err(OAuthError::server_error)?;
    let permissions: Vec<Permission> = serde_json::from_str(&rec.permissions).map_err(OAuthError::server_error)?;
    Ok(PendingView {
        id: rec.pending_id,
        client_id: rec.client_id,
        requesting_party: PartyView { iss: party.iss, sub: party.sub },
        permissions,
        status: rec.status,
        created_at: rec.created_at,
        decided_at: rec.decided_at,
    })
}

/// The owner's requests at this resource server, newest first.
pub async fn list(store: &Store, pat: &Pat) -> Result<Vec<PendingView>, OAuthError> {
    store.list_pending(&pat.owner, &pat.client_id).await?.into_iter().map(view).collect()
}

/// A request still waiting, as the signed-in owner sees it in the console: unlike a resource server,
/// the owner may see every verified claim of who asks.
#[derive(Debug)]
pub struct OwnerPending {
    pub id: String,
    pub client_id: String,
    pub rs_client_id: String,
    pub party: RequestingParty,
    pub permissions: Vec<Permission>,
    pub created_at: UnixTime,
}

/// At most this many waiting requests are listed for an owner at once.
pub const MAX_OWNER_PENDING: i64 = 100;

/// The owner's requests still waiting, at every resource server, newest first.
pub async fn pending_for_owner(store: &Store, owner: &str) -> Result<Vec<OwnerPending>, OAuthError> {
    let mut out = Vec::new();
    for rec in store.owner_pending(owner, MAX_OWNER_PENDING).await? {
        let party: RequestingParty = serde_json::from_str(&rec.party).map_err(OAuthError::server_error)?;
        let permissions: Vec<Permission> = serde_json::from_str(&rec.permissions).map_err(OAuthError::server_error)?;
        out.push(OwnerPending {
            id: rec.pending_id,
            client_id: rec.client_id,
            rs_client_id: rec.rs_client_id,
            party,
            permissions,
            created_at: rec.created_at,
        });
    }
    Ok(out)
}

pub fn parse_decision(body: &[u8]) -> Result<Decision, OAuthError> {
    let d: Decision = serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_request(
            "the body must be {\"decision\": \"approve\"|\"deny\", \"scopes\"?, \"expires_in\"?, \"remember\"?}",
        )
        .detail(e.to_string())
    })?;
    checked(d)
}

/// The longest an approval may be given for.
pub const MAX_APPROVAL_SECS: i64 = 400 * 86_400;

/// The checks every decision passes, whichever way it arrived (JSON from a resource server, a form
/// in the console).
pub fn checked(d: Decision) -> Result<Decision, OAuthError> {
    if d.expires_in.is_some_and(|e| !(1..=MAX_APPROVAL_SECS).contains(&e)) {
        return Err(OAuthError::invalid_request("`expires_in` must be between 1 second and 400 days"));
    }
    Ok(d)
}

/// Records the decision on a request still pending, through the protection API. Unknown, another
/// owner's or another resource server's, and already decided requests are all 404.
pub async fn decide(
    store: &Store,
    engine: &PolicyEngine,
    pat: &Pat,
    id: &str,
    d: Decision,
    now: UnixTime,
) -> Result<Decided, OAuthError> {
    decide_as(store, engine, &pat.owner, Some(&pat.client_id), id, d, now).await
}

/// Records `owner`'s decision on a request still pending. With `rs_client_id`, only a request made
/// at that resource server is visible (a PAT's view); without, any of the owner's (the console's).
/// Unknown, another owner's, filtered out and already decided requests are all 404.
pub async fn decide_as(
    store: &Store,
    engine: &PolicyEngine,
    owner: &str,
    rs_client_id: Option<&str>,
    id: &str,
    d: Decision,
    now: UnixTime,
) -> Result<Decided, OAuthError> {
    let rec = store
        .find_pending(id)
        .await?
        .filter(|r| r.owner == owner && rs_client_id.is_none_or(|rs| r.rs_client_id == rs) && r.status == "pending")
        .ok_or_else(OAuthError::not_found)?;
    let asked: Vec<Permission> = serde_json::from_str(&rec.permissions).map_err(OAuthError::server_error)?;
    let expires_at = d.expires_in.map(|s| now + s).unwrap_or(0);
    let (status, approved) = match d.decision {
        DecisionKind::Deny => ("denied", None),
        DecisionKind::Approve => {
            let approved: Vec<Permission> = match &d.scopes {
                None => asked.clone(),
                Some(only) => {
                    if let Some(s) = only.iter().find(|s| !asked.iter().any(|p| p.resource_scopes.contains(s))) {
                        return Err(OAuthError::invalid_request("a scope to approve was not asked for")
                            .detail(format!("scope `{s}`")));
                    }
                    asked
                        .iter()
                        .map(|p| Permission {
                            resource_id: p.resource_id.clone(),
                            resource_scopes: p.resource_scopes.iter().filter(|s| only.contains(s)).cloned().collect(),
                        })
                        .filter(|p| !p.resource_scopes.is_empty())
                        .collect()
                }
            };
            if approved.is_empty() {
                return Err(OAuthError::invalid_request("nothing to approve"));
            }
            ("approved", Some(approved))
        }
    };
    // The shares to remember are built and checked before the decision is stored, so a refusal here
    // leaves the request pending.
    let shares = match (&approved, d.remember) {
        (Some(approved), true) => {
            let party: RequestingParty = serde_json::from_str(&rec.party).map_err(OAuthError::server_error)?;
            shares_for(engine, &party, approved, (expires_at != 0).then_some(expires_at), now)?
        }
        _ => Vec::new(),
    };
    let approved_json = approved.as_ref().map(serde_json::to_string).transpose().map_err(OAuthError::server_error)?;
    if !store.decide_pending(id, owner, status, approved_json.as_deref(), expires_at, now).await? {
        return Err(OAuthError::not_found());
    }
    // The shares are for resources of the request, which was made at `rec.rs_client_id`.
    for share in shares {
        crate::uma::shares::create_as(store, engine, owner, Some(&rec.rs_client_id), share, now).await?;
    }
    tracing::info!(pending_id = %id, owner = %owner, status, "pending request decided");
    Ok(Decided { id: rec.pending_id, status })
}

/// An approval kept as shares for the same requesting party (issuer and subject), validated.
fn shares_for(
    engine: &PolicyEngine,
    party: &RequestingParty,
    approved: &[Permission],
    expires_at: Option<UnixTime>,
    now: UnixTime,
) -> Result<Vec<NewShare>, OAuthError> {
    let (Some(iss), Some(sub)) = (&party.iss, &party.sub) else {
        return Err(OAuthError::invalid_request("an anonymous requesting party cannot be remembered"));
    };
    let mut out = Vec::with_capacity(approved.len());
    for p in approved {
        let matcher = PartyMatcher(
            [("iss".to_owned(), Value::String(iss.clone())), ("sub".to_owned(), Value::String(sub.clone()))].into(),
        );
        let new =
            NewShare { resource_id: p.resource_id.clone(), scopes: p.resource_scopes.clone(), matcher, expires_at };
        validate(engine, &new, now).map_err(|e| {
            OAuthError::invalid_request("the approval cannot be remembered as a share").detail(e.to_string())
        })?;
        out.push(new);
    }
    Ok(out)
}
