//! The authorization code grant (RFC 6749 §4.1) with PKCE S256 (RFC 7636), used to obtain PATs: the
//! resource owner signs in at the authorization endpoint and consents; the resource server redeems the
//! code here. A code is single use: a second redemption fails and revokes every token the first one
//! produced (RFC 6749 §4.1.2, RFC 9700 §4.5).

use crate::clock::UnixTime;
use crate::config::TokenLifetimes;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::grants::{TokenResponse, issue_owner_tokens};
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError, pkce};
use crate::store::Store;

fn invalid_grant(detail: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant)
        .describe("the authorization code is invalid, expired or already used")
        .detail(detail)
}

pub async fn grant(
    store: &Store,
    client: &Client,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    lifetimes: &TokenLifetimes,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient)
            .describe("the client is not registered for the authorization_code grant"));
    }
    let code = code.ok_or_else(|| OAuthError::invalid_request("`code` is required"))?;
    let redirect_uri = redirect_uri.ok_or_else(|| OAuthError::invalid_request("`redirect_uri` is required"))?;
    let verifier = code_verifier.ok_or_else(|| OAuthError::invalid_request("`code_verifier` is required (PKCE)"))?;
    let digest = OpaqueToken::presented(code).digest();

    let Some(rec) = store.consume_authorization_code(digest.as_str(), now).await? else {
        if store.authorization_code_was_used(digest.as_str()).await? {
            store.revoke_family(digest.as_str(), now).await?;
            tracing::warn!(client_id = %client.client_id, "authorization code replayed: its tokens are revoked");
            return Err(invalid_grant("code replayed"));
        }
        return Err(invalid_grant("unknown or expired code"));
    };
    // The code is spent from here on, whatever follows: a wrong guess burns it.
    if rec.client_id != client.client_id {
        return Err(invalid_grant("code issued to another client"));
    }
    if rec.redirect_uri != redirect_uri {
        return Err(invalid_grant("redirect_uri differs from the authorization request"));
    }
    if !pkce::verify(&rec.code_challenge, verifier) {
        return Err(invalid_grant("PKCE verifier does not match"));
    }
    let with_refresh = client.metadata.allows_grant(GrantType::RefreshToken);
    let res = issue_owner_tokens(
        store,
        &client.client_id,
        &rec.account_id,
        &rec.scope,
        digest.as_str(),
        lifetimes,
        now,
        with_refresh,
    )
    .await?;
    tracing::info!(client_id = %client.client_id, owner = %rec.account_id, scope = %rec.scope, "access token issued (authorization_code)");
    Ok(res)
}
