//! The authorization endpoint's protocol logic (RFC 6749 §4.1.1–4.1.2, RFC 7636), used to give a
//! resource server a PAT: validate the request, hold it while the resource owner signs in and
//! consents, then issue a single-use, short-lived code bound to the client, the redirect URI and the
//! PKCE challenge.
//!
//! ```text
//! RS ─302─► browser ─GET /authorize?…─► validate ─► pending request (bound to this browser)
//!                      POST /authorize/decision (sign in + approve) ─► code ─303─► redirect_uri?code&state
//! ```
//!
//! Errors before the redirect URI is known to be the client's are shown to the person and never
//! redirected (RFC 6749 §4.1.2.1); later errors go back to the client with `error` and `state`.

use url::Url;

use crate::clock::UnixTime;
use crate::oauth::client::{Client, GrantType};
use crate::oauth::grants::PROTECTION_SCOPE;
use crate::oauth::registration::client_from_record;
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError, pkce};
use crate::store::{AuthorizationCodeRecord, AuthorizationRequestRecord, Store};

/// How long a person has to sign in and decide.
pub const REQUEST_LIFETIME: i64 = 600;

/// The parameters as received (already checked for repetition).
#[derive(Debug, Default)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

/// A refusal, and where it may be shown.
#[derive(Debug)]
pub enum Refusal {
    /// Shown to the person: the client or redirect URI cannot be trusted.
    Page(String),
    /// Sent back to the client's registered redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: OAuthError },
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::from(OAuthError::from(e))
    }
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        // Store trouble and the like: nothing safe to redirect with.
        Refusal::Page(e.description.map(|d| d.into_owned()).unwrap_or_else(|| e.code.as_str().to_owned()))
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: String,
}

pub async fn validate(store: &Store, p: AuthorizeParams) -> Result<ValidRequest, Refusal> {
    let client_id = p.client_id.ok_or_else(|| Refusal::Page("the request names no client".into()))?;
    let rec = store
        .find_client(&client_id)
        .await?
        .ok_or_else(|| Refusal::Page("the application is not registered".into()))?;
    let client = client_from_record(&rec)?;
    let registered = &client.metadata.redirect_uris;
    let redirect_uri = match p.redirect_uri {
        // Exact string comparison (RFC 6749 §3.1.2.3, RFC 9700 §2.1).
        Some(r) if registered.contains(&r) => r,
        Some(_) => return Err(Refusal::Page("the redirect URI is not registered for this application".into())),
        None => match registered.as_slice() {
            [only] => only.clone(),
            _ => return Err(Refusal::Page("the request names no redirect URI".into())),
        },
    };
    let state = p.state;
    let refuse = |code: ErrorCode, description: &'static str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error: OAuthError::new(code).describe(description),
    };
    if p.response_type.as_deref() != Some("code") {
        return Err(refuse(ErrorCode::UnsupportedResponseType, "only response_type=code is supported"));
    }
    if !client.metadata.allows_grant(GrantType::AuthorizationCode) {
        return Err(refuse(
            ErrorCode::UnauthorizedClient,
            "the client is not registered for the authorization code grant",
        ));
    }
    let code_challenge = match (p.code_challenge, p.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) if pkce::is_valid_challenge(&c) => c,
        (Some(_), Some("S256")) => return Err(refuse(ErrorCode::InvalidRequest, "code_challenge is malformed")),
        (Some(_), _) => return Err(refuse(ErrorCode::InvalidRequest, "code_challenge_method must be S256")),
        (None, _) => return Err(refuse(ErrorCode::InvalidRequest, "PKCE is required: send code_challenge with S256")),
    };
    // The authorization endpoint hands out PATs only; a client may narrow nothing further.
    let requested: Vec<&str> =
        p.scope.as_deref().unwrap_or(PROTECTION_SCOPE).split(' ').filter(|s| !s.is_empty()).collect();
    let registered_scopes = client.metadata.scopes();
    let allowed = |s: &str| s == PROTECTION_SCOPE && (registered_scopes.is_empty() || registered_scopes.contains(&s));
    if requested.is_empty() || !requested.iter().all(|s| allowed(s)) {
        return Err(refuse(ErrorCode::InvalidScope, "only the uma_protection scope can be requested here"));
    }
    Ok(ValidRequest { client, redirect_uri, scope: requested.join(" "), state, code_challenge })
}

/// A pending request: the handle carried by the form and the cookie value that binds it to this
/// browser, so a request started elsewhere cannot be approved here (login and consent CSRF).
pub struct Pending {
    pub handle: OpaqueToken,
    pub browser_binding: OpaqueToken,
}

fn random() -> Result<OpaqueToken, OAuthError> {
    OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))
}

/// The binding is always fresh: a value the browser offered could have been planted by a sibling
/// site (cookie tossing) to bind the request to the attacker's own session.
pub async fn hold(store: &Store, req: &ValidRequest, now: UnixTime) -> Result<Pending, OAuthError> {
    let handle = random()?;
    let browser_binding = random()?;
    store
        .insert_authorization_request(&AuthorizationRequestRecord {
            digest: handle.digest().as_str().to_owned(),
            browser_digest: browser_binding.digest().as_str().to_owned(),
            client_id: req.client.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            scope: req.scope.clone(),
            state: req.state.clone(),
            code_challenge: req.code_challenge.clone(),
            expires_at: now + REQUEST_LIFETIME,
        })
        .await?;
    Ok(Pending { handle, browser_binding })
}

/// The redirect back to the client, with `code` or `error`, and `state` (RFC 6749 §4.1.2).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Result<String, OAuthError> {
    let mut url =
        Url::parse(redirect_uri).map_err(|_| OAuthError::server_error("stored redirect URI does not parse"))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    Ok(url.into())
}

pub fn error_redirect(redirect_uri: &str, error: &OAuthError, state: Option<&str>) -> Result<String, OAuthError> {
    let mut params = vec![("error", error.code.as_str())];
    if let Some(d) = &error.description {
        params.push(("error_description", d.as_ref()));
    }
    redirect_with(redirect_uri, &params, state)
}

/// The owner approved: issue the code and return where to send the browser.
pub async fn approve(
    store: &Store,
    pending: &AuthorizationRequestRecord,
    account_id: &str,
    code_lifetime: i64,
    now: UnixTime,
) -> Result<String, OAuthError> {
    let code = random()?;
    store
        .insert_authorization_code(&AuthorizationCodeRecord {
            digest: code.digest().as_str().to_owned(),
            client_id: pending.client_id.clone(),
            account_id: account_id.to_owned(),
            redirect_uri: pending.redirect_uri.clone(),
            scope: pending.scope.clone(),
            code_challenge: pending.code_challenge.clone(),
            expires_at: now + code_lifetime,
        })
        .await?;
    tracing::info!(client_id = %pending.client_id, owner = %account_id, "authorization code issued");
    redirect_with(&pending.redirect_uri, &[("code", code.expose())], pending.state.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_the_registered_query_and_add_state() {
        let u = redirect_with("https://rs.example/cb?tenant=1", &[("code", "abc")], Some("x y")).unwrap();
        assert_eq!(u, "https://rs.example/cb?tenant=1&code=abc&state=x+y");
        let e = OAuthError::new(ErrorCode::AccessDenied).describe("no");
        let u = error_redirect("https://rs.example/cb", &e, None).unwrap();
        assert_eq!(u, "https://rs.example/cb?error=access_denied&error_description=no");
    }
}
