//! Authorization server metadata: UMA 2.0 Grant §2 (`{issuer}/.well-known/uma2-configuration`, the
//! issuer with the well-known suffix appended) and RFC 8414 §3 (`/.well-known/oauth-authorization-server`
//! inserted before the issuer's path). Both documents have the same content (checklist A-18).
//!
//! Only endpoints that work are advertised: each capability adds its members here when it lands.
//! Members with no value, and arrays with no element, are omitted (RFC 8414 §3.2).

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::{RegistrationMode, Settings};
use crate::http::token::TOKEN_PATH;
use crate::oauth::client::{AuthMethod, GrantType};
use crate::oauth::client_auth::ASSERTION_ALGORITHMS;
use crate::oauth::registration::REGISTRATION_PATH;
use crate::state::AppState;

pub const UMA_PATH: &str = "/.well-known/uma2-configuration";
pub const OAUTH_PATH: &str = "/.well-known/oauth-authorization-server";
pub const JWKS_PATH: &str = "/jwks";

/// Discovery and JWKS may be cached briefly; short enough that a key rotation is seen quickly.
pub const PUBLIC_CACHE: &str = "public, max-age=300";

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uma_profiles_supported: Vec<String>,
}

impl Metadata {
    pub fn new(settings: &Settings) -> Self {
        Metadata {
            issuer: settings.issuer.clone(),
            jwks_uri: settings.endpoint(JWKS_PATH),
            token_endpoint: settings.endpoint(TOKEN_PATH),
            registration_endpoint: (settings.registration_mode != RegistrationMode::Closed)
                .then(|| settings.endpoint(REGISTRATION_PATH)),
            token_endpoint_auth_methods_supported: AuthMethod::ALL.iter().map(|m| m.as_str()).collect(),
            token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS.iter().map(|(_, n)| *n).collect(),
            // Filled in by the issue that adds the authorization endpoint: advertising a response
            // type before it works would mislead clients.
            response_types_supported: Vec::new(),
            // Only grants the token endpoint really serves.
            grant_types_supported: vec![GrantType::ClientCredentials.as_str()],
            uma_profiles_supported: Vec::new(),
        }
    }
}

pub async fn metadata(State(state): State<AppState>) -> Response {
    let mut res = axum::Json(state.metadata.as_ref().clone()).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(PUBLIC_CACHE));
    res
}

/// `GET {jwks_uri}`: the public keys, with `kid`, `alg` and `use`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.current().jwks();
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static(PUBLIC_CACHE)),
        ],
        body.to_string(),
    )
        .into_response()
}
