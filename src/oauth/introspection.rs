//! Token introspection (RFC 7662, FedAuthz §5). Only a resource server may ask, and it learns only
//! about tokens it may see: anything else (unknown, expired, revoked, or another party's) is the same
//! `{"active": false}`, so the endpoint is no oracle. For an RPT the caller sees only the permissions
//! on resources it registered (for a PAT: of that PAT's owner), on resources that still exist
//! (checklist A-14, F-3-a), and no `scope` (FedAuthz §5.1.1). Other access tokens (PATs,
//! client-credentials tokens) may be introspected only by their own client.

use serde_json::{Value, json};

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::grants::PROTECTION_SCOPE;
use crate::oauth::pat::{insufficient_scope, live_access_token};
use crate::oauth::tokens::OpaqueToken;
use crate::store::{RptRecord, Store};
use crate::uma::rpt::GrantedPermission;

/// Who is asking: a resource server, and the resource owner when it asks with a PAT.
pub struct Caller {
    pub client_id: String,
    pub owner: Option<String>,
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
    Ok(Caller { client_id: live.client_id, owner: live.owner })
}

pub async fn introspect(
    store: &Store,
    issuer: &str,
    caller: &Caller,
    token: &str,
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    let digest = OpaqueToken::presented(token).digest();
    if let Some(rpt) = store.find_rpt(digest.as_str()).await? {
        return introspect_rpt(store, issuer, caller, &rpt, now).await;
    }
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

async fn introspect_rpt(
    store: &Store,
    issuer: &str,
    caller: &Caller,
    rpt: &RptRecord,
    now: UnixTime,
) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    if rpt.revoked_at.is_some() || rpt.expires_at <= now || caller.owner.as_ref().is_some_and(|o| *o != rpt.owner) {
        return Ok(inactive);
    }
    let held: Vec<GrantedPermission> = serde_json::from_str(&rpt.permissions).map_err(OAuthError::server_error)?;
    let ids: Vec<&str> = held.iter().map(|p| p.resource_id.as_str()).collect();
    let visible = store.find_resources(&ids, &rpt.owner, Some(&caller.client_id)).await?;
    // A permission never outlives the token carrying it (FedAuthz §5.1.1, checklist F-5.1.1-c).
    let permissions: Vec<GrantedPermission> = held
        .iter()
        .filter(|p| p.is_valid_at(now) && visible.iter().any(|r| r.resource_id == p.resource_id))
        .map(|p| GrantedPermission { exp: p.exp.map(|e| e.min(rpt.expires_at)), ..p.clone() })
        .collect();
    if permissions.is_empty() {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true,
        "permissions": permissions,
        "client_id": rpt.client_id,
        "token_type": "Bearer",
        "exp": rpt.expires_at,
        "iat": rpt.issued_at,
        "iss": issuer,
    }))
}
