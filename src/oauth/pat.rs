//! The protection API access token (FedAuthz §1.3): an access token with scope `uma_protection` that
//! names both the resource server (its client) and the resource owner it acts for.

use crate::clock::UnixTime;
use crate::oauth::grants::PROTECTION_SCOPE;
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{Challenge, ErrorCode, OAuthError};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct Pat {
    /// The resource server.
    pub client_id: String,
    /// The resource owner.
    pub owner: String,
}

/// A live access token of any kind, as found in the store.
pub struct LiveToken {
    pub client_id: String,
    pub owner: Option<String>,
    pub scope: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

impl LiveToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

/// The token if it exists, is unexpired and unrevoked.
pub async fn live_access_token(
    store: &Store,
    token: &OpaqueToken,
    now: UnixTime,
) -> Result<Option<LiveToken>, OAuthError> {
    let rec = store.find_access_token(token.digest().as_str()).await?;
    Ok(rec.filter(|r| r.expires_at > now && r.revoked_at.is_none()).map(|r| LiveToken {
        client_id: r.client_id,
        owner: r.owner,
        scope: r.scope,
        issued_at: r.issued_at,
        expires_at: r.expires_at,
    }))
}

/// RFC 6750: a missing or dead token is 401 `invalid_token`; a live token without `uma_protection`
/// (or without a resource owner) is 403 `insufficient_scope` (checklist A-15).
pub async fn authenticate(store: &Store, token: Option<&OpaqueToken>, now: UnixTime) -> Result<Pat, OAuthError> {
    let token = token.ok_or_else(|| OAuthError::invalid_token("no bearer token"))?;
    let live = live_access_token(store, token, now)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("unknown, expired or revoked token"))?;
    match (&live.owner, live.has_scope(PROTECTION_SCOPE)) {
        (Some(owner), true) => Ok(Pat { client_id: live.client_id, owner: owner.clone() }),
        _ => Err(insufficient_scope()),
    }
}

pub fn insufficient_scope() -> OAuthError {
    OAuthError::new(ErrorCode::InsufficientScope)
        .describe("a PAT (scope uma_protection) is required")
        .challenge(Challenge::Bearer)
}
