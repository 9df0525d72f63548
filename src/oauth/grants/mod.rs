//! Grants at the token endpoint other than the UMA grant. One module per grant; each owns its
//! parameters and checks.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;

use serde::Serialize;

/// A successful token response (RFC 6749 §5.1), of every grant. An RPT's carries no `scope` (UMA
/// Grant §3.3.5) and may carry `pct` and `upgraded`.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pct: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgraded: Option<bool>,
}

/// The scope of a PAT: access to the protection API (FedAuthz §1.3).
pub const PROTECTION_SCOPE: &str = "uma_protection";

/// Issues an access token for `owner` and a refresh token of the same grant family, atomically.
#[expect(clippy::too_many_arguments, reason = "every argument is a distinct fact of the grant")]
pub async fn issue_owner_tokens(
    store: &crate::store::Store,
    client_id: &str,
    owner: &str,
    scope: &str,
    family: &str,
    lifetimes: &crate::config::TokenLifetimes,
    now: crate::clock::UnixTime,
    with_refresh: bool,
) -> Result<TokenResponse, crate::oauth::OAuthError> {
    use crate::oauth::OAuthError;
    use crate::oauth::tokens::OpaqueToken;
    use crate::store::{AccessTokenRecord, RefreshTokenRecord};
    let fail = |_| OAuthError::server_error("the random generator failed");
    let access = OpaqueToken::generate().map_err(fail)?;
    let refresh = OpaqueToken::generate().map_err(fail)?;
    store
        .insert_tokens(
            &AccessTokenRecord {
                digest: access.digest().as_str().to_owned(),
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                issued_at: now,
                expires_at: now + lifetimes.pat,
                owner: Some(owner.to_owned()),
                family: Some(family.to_owned()),
                revoked_at: None,
            },
            with_refresh
                .then(|| RefreshTokenRecord {
                    digest: refresh.digest().as_str().to_owned(),
                    client_id: client_id.to_owned(),
                    owner: owner.to_owned(),
                    scope: scope.to_owned(),
                    family: family.to_owned(),
                    issued_at: now,
                    expires_at: now + lifetimes.refresh_token,
                    permissions: None,
                    party: None,
                })
                .as_ref(),
        )
        .await?;
    Ok(TokenResponse {
        access_token: access.expose().to_owned(),
        token_type: "Bearer",
        expires_in: lifetimes.pat,
        refresh_token: with_refresh.then(|| refresh.expose().to_owned()),
        scope: if scope.is_empty() { None } else { Some(scope.to_owned()) },
        pct: None,
        upgraded: None,
    })
}
