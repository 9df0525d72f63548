//! The refresh token grant (RFC 6749 §6) with strict rotation (threats D3): each use returns a new
//! refresh token; presenting a spent one revokes the whole grant family, access tokens included. A
//! refresh token of an RPT is handed to the UMA grant's refresh (Grant §3.6).

use crate::clock::UnixTime;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::grants::{TokenResponse, issue_owner_tokens};
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::uma::grant::refresh_rpt;

fn invalid_grant(detail: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant).describe("the refresh token is invalid, expired or revoked").detail(detail)
}

pub async fn grant(
    state: &AppState,
    client: &Client,
    refresh_token: Option<&str>,
    scope: Option<&str>,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let store = &state.store;
    if !client.metadata.allows_grant(GrantType::RefreshToken) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient)
            .describe("the client is not registered for the refresh_token grant"));
    }
    let presented = refresh_token.ok_or_else(|| OAuthError::invalid_request("`refresh_token` is required"))?;
    let digest = OpaqueToken::presented(presented).digest();
    let Some(rec) = store.consume_refresh_token(digest.as_str(), now).await? else {
        if let Some(family) = store.spent_refresh_token_family(digest.as_str()).await? {
            store.revoke_family(&family, now).await?;
            tracing::warn!(client_id = %client.client_id, "refresh token replayed: its grant family is revoked");
            return Err(invalid_grant("refresh token replayed"));
        }
        return Err(invalid_grant("unknown, expired or revoked refresh token"));
    };
    if rec.client_id != client.client_id {
        // Someone else holds this client's refresh token: end the grant.
        store.revoke_family(&rec.family, now).await?;
        return Err(invalid_grant("refresh token of another client"));
    }
    if rec.permissions.is_some() {
        return refresh_rpt(state, client, &rec, scope, now).await;
    }
    let granted: Vec<&str> = rec.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let scope = match scope {
        None => rec.scope.clone(),
        Some(req) => {
            let wanted: Vec<&str> = req.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(extra) = wanted.iter().find(|s| !granted.contains(s)) {
                return Err(OAuthError::new(ErrorCode::InvalidScope)
                    .describe("a refresh cannot widen the original grant")
                    .detail(format!("scope `{extra}` not in the original grant")));
            }
            wanted.join(" ")
        }
    };
    let lifetimes = &state.settings.tokens;
    issue_owner_tokens(store, &client.client_id, &rec.owner, &scope, &rec.family, lifetimes, now, true).await
}
