//! Token introspection (RFC 7662, FedAuthz §5). Only a resource server may ask, and it learns only
//! about tokens it may see: anything else (unknown, expired, revoked, or another party's) is the same
//! `{"active": false}`, so the endpoint is no oracle. RPTs join here with the UMA grant; until then
//! the tokens Tessera knows are access tokens (PATs and client-credentials tokens), which a client
//! may introspect only if they are its own.

use serde_json::{Value, json};

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::grants::PROTECTION_SCOPE;
use crate::oauth::pat::{insufficient_scope, live_access_token};
use crate::oauth::tokens::OpaqueToken;
use crate::store::Store;

/// Who is asking.
pub struct Caller {
    pub client_id: String,
}

/// A PAT authenticates the caller; a dead token is 401 `invalid_token`, a live one without
/// `uma_protection` is 401 `insufficient_scope` (RFC 7662 §2.3, checklist A-15).
pub async fn caller_by_pat(store: &Store, pat: &OpaqueToken, now: UnixTime) -> Result<Caller, OAuthError> {
    let live = live_access_token(store, pat, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("unknown, expired or revoked PAT"))?;
    if !live.has_scope(PROTECTION_SCOPE) || live.owner.is_none() {
        return Err(insufficient_scope().with_status(401));
    }
    Ok(Caller { client_id: live.client_id })
}

pub async fn introspect(
    store: &Store,
    issuer: &str,
    caller: &Caller,
    token: &str,
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    let Some(t) = live_access_token(store, &OpaqueToken::presented(token), now).await? else {
        return Ok(inactive);
    };
    if t.client_id != caller.client_id {
        return Ok(inactive);
    }
    let mut body = json!({
        "active": true,
        "client_id": t.client_id,
        "token_type": "Bearer",
        "exp": t.expires_at,
        "iat": t.issued_at,
        "iss": issuer,
    });
    if let Some(o) = body.as_object_mut() {
        if !t.scope.is_empty() {
            o.insert("scope".into(), json!(t.scope));
        }
        if let Some(owner) = t.owner {
            o.insert("sub".into(), json!(owner));
        }
    }
    Ok(body)
}
