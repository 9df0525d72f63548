//! The client credentials grant (RFC 6749 §4.4): a client, typically a resource server, obtains an
//! access token for itself. The token is opaque; only its digest is stored.

use crate::clock::UnixTime;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::grants::{PROTECTION_SCOPE, TokenResponse};
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{AccessTokenRecord, Store};

/// The granted scope: the requested one if every value is registered for the client, else
/// `invalid_scope`; without a request, everything registered (RFC 6749 §3.3).
pub fn granted_scope(client: &Client, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let registered = client.metadata.scopes();
    match requested {
        None => Ok(registered.into_iter().map(str::to_owned).collect()),
        Some(req) => {
            let mut out: Vec<String> = Vec::new();
            for s in req.split(' ').filter(|s| !s.is_empty()) {
                if !registered.contains(&s) {
                    return Err(OAuthError::new(ErrorCode::InvalidScope)
                        .describe("the requested scope is not registered for this client")
                        .detail(format!("scope `{s}` not registered")));
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_owned());
                }
            }
            Ok(out)
        }
    }
}

pub async fn grant(
    store: &Store,
    client: &Client,
    requested_scope: Option<&str>,
    lifetime: i64,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::ClientCredentials) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient)
            .describe("the client is not registered for the client_credentials grant"));
    }
    let scopes = granted_scope(client, requested_scope)?;
    // A PAT must identify a resource owner (FedAuthz §1.3); a client acting for itself has none,
    // unless the configuration binds it to one.
    let owner = if scopes.iter().any(|s| s == PROTECTION_SCOPE) {
        Some(client.bound_owner.clone().ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidScope)
                .describe("uma_protection needs a resource owner: use the authorization code grant")
                .detail("client is not bound to a resource owner")
        })?)
    } else {
        None
    };
    let scope = scopes.join(" ");
    let token = OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))?;
    store
        .insert_access_token(&AccessTokenRecord {
            digest: token.digest().as_str().to_owned(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            issued_at: now,
            expires_at: now + lifetime,
            owner: owner.clone(),
            family: None,
            revoked_at: None,
        })
        .await?;
    tracing::info!(client_id = %client.client_id, scope = %scope, owner = ?owner, "access token issued (client_credentials)");
    Ok(TokenResponse {
        access_token: token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: lifetime,
        refresh_token: None,
        scope: if scope.is_empty() { None } else { Some(scope) },
        pct: None,
        upgraded: None,
    })
}
