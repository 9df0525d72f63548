//! Our own extractors, so every rejection is an OAuth error and never axum's plain-text 4xx.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;

use crate::oauth::client_auth::{PresentedCredentials, decode_basic};
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};

/// Reads the whole body; a body over the limit is 413.
async fn body_bytes(req: Request) -> Result<Bytes, OAuthError> {
    Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::new(ErrorCode::RequestTooLarge)
        } else {
            OAuthError::invalid_request("cannot read the request body").detail(e.body_text())
        }
    })
}

/// An `application/x-www-form-urlencoded` body (RFC 6749 §3.2) with the rules of checklist A-30: a
/// missing content type is read as a form, any other is refused; a repeated parameter is refused;
/// an empty parameter counts as absent (RFC 6749 §3.1).
pub struct OAuthForm(pub HashMap<String, String>);

impl OAuthForm {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut out = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if out.contains_key(k.as_ref()) {
                return Err(OAuthError::invalid_request(format!("parameter `{k}` is repeated")));
            }
            if !v.is_empty() {
                out.insert(k.into_owned(), v.into_owned());
            } else {
                // Remember the key so `a=&a=x` is still a repetition.
                out.insert(k.into_owned(), String::new());
            }
        }
        out.retain(|_, v| !v.is_empty());
        Ok(OAuthForm(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn take(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?").to_owned());
        if let Some(ct) = content_type {
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
            }
        }
        Self::parse(&body_bytes(req).await?)
    }
}

/// A JSON body as raw bytes; the caller parses it into its own type and error.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = OAuthError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBytes(body_bytes(req).await?))
    }
}

/// The bearer token of `Authorization: Bearer …`, if any (RFC 6750 §2.1).
pub struct BearerToken(pub Option<OpaqueToken>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .map(OpaqueToken::presented);
        Ok(BearerToken(token))
    }
}

/// Client credentials from the `Authorization` header and the form. A `Bearer` header is ignored
/// here: it is not client authentication.
pub fn client_credentials(parts_auth: Option<&str>, form: &mut OAuthForm) -> PresentedCredentials {
    let basic = parts_auth.and_then(|v| {
        let scheme = v.split(' ').next().unwrap_or("");
        scheme.eq_ignore_ascii_case("basic").then(|| decode_basic(v))
    });
    PresentedCredentials {
        basic,
        client_id: form.take("client_id"),
        client_secret: form.take("client_secret"),
        client_assertion_type: form.take("client_assertion_type"),
        client_assertion: form.take("client_assertion"),
    }
}

/// A request authenticated by a PAT: a handler that takes this cannot run without one.
pub struct PatBearer(pub crate::oauth::pat::Pat);

impl FromRequestParts<crate::state::AppState> for PatBearer {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &crate::state::AppState) -> Result<Self, Self::Rejection> {
        let BearerToken(token) = BearerToken::from_request_parts(parts, state).await?;
        let pat = crate::oauth::pat::authenticate(&state.store, token.as_ref(), state.clock.now()).await?;
        Ok(PatBearer(pat))
    }
}

/// Authenticates the client of a token-endpoint-style request (token, introspection) from its
/// `Authorization` header and form; `endpoint_path` is the endpoint's own path, an accepted `aud` of a
/// client assertion besides the issuer (checklist A-26).
pub async fn authenticate_client(
    state: &crate::state::AppState,
    headers: &axum::http::HeaderMap,
    form: &mut OAuthForm,
    endpoint_path: &str,
    now: crate::clock::UnixTime,
) -> Result<crate::oauth::client::Client, OAuthError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let creds = client_credentials(auth, form);
    let endpoint = state.settings.endpoint(endpoint_path);
    let ctx = crate::oauth::client_auth::AuthContext {
        store: &state.store,
        fetcher: &state.jwks_fetcher,
        audiences: [endpoint.as_str(), state.settings.issuer.as_str()],
        now,
    };
    crate::oauth::client_auth::authenticate(&ctx, creds).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_are_absent() {
        assert!(OAuthForm::parse(b"grant_type=a&grant_type=b").is_err());
        assert!(OAuthForm::parse(b"scope=&scope=x").is_err());
        let f = OAuthForm::parse(b"grant_type=client_credentials&code=&redirect_uri=").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("code"), None);
        let f = OAuthForm::parse(b"scope=a+b%20c").unwrap();
        assert_eq!(f.get("scope"), Some("a b c"));
    }
}
