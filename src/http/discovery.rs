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
use crate::http::authorize::AUTHORIZE_PATH;
use crate::http::protection::{INTROSPECTION_PATH, PERMISSION_PATH, RESOURCES_PATH};
use crate::http::revocation::REVOCATION_PATH;
use crate::http::token::TOKEN_PATH;
use crate::oauth::client::{AuthMethod, GrantType};
use crate::oauth::client_auth::ASSERTION_ALGORITHMS;
use crate::oauth::grants::PROTECTION_SCOPE;
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
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub resource_registration_endpoint: String,
    pub permission_endpoint: String,
    /// UMA Grant §2: where a client sends the requesting party's browser to gather claims. Only
    /// when the server offers a way to sign in there (filled in by `Server::build`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims_interaction_endpoint: Option<String>,
    pub scopes_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_types_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grant_types_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uma_profiles_supported: Vec<String>,
    /// The `claim_token_format` values a configured verifier accepts (docs/verifiers.md). Not a
    /// registered metadata name: Tessera's own, omitted when no verifier is configured (RFC 8414 §3.2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claim_token_formats_supported: Vec<String>,
}

impl Metadata {
    pub fn new(settings: &Settings) -> Self {
        Metadata {
            issuer: settings.issuer.clone(),
            jwks_uri: settings.endpoint(JWKS_PATH),
            authorization_endpoint: settings.endpoint(AUTHORIZE_PATH),
            token_endpoint: settings.endpoint(TOKEN_PATH),
            introspection_endpoint: settings.endpoint(INTROSPECTION_PATH),
            revocation_endpoint: settings.endpoint(REVOCATION_PATH),
            revocation_endpoint_auth_methods_supported: AuthMethod::ALL.iter().map(|m| m.as_str()).collect(),
            // A PAT as Bearer, or the resource server's own client authentication.
            introspection_endpoint_auth_methods_supported: ["bearer"]
                .into_iter()
                .chain(AuthMethod::ALL.iter().filter(|m| **m != AuthMethod::None).map(|m| m.as_str()))
                .collect(),
            resource_registration_endpoint: settings.endpoint(RESOURCES_PATH),
            permission_endpoint: settings.endpoint(PERMISSION_PATH),
            claims_interaction_endpoint: None,
            scopes_supported: vec![PROTECTION_SCOPE],
            code_challenge_methods_supported: vec!["S256"],
            registration_endpoint: (settings.registration_mode != RegistrationMode::Closed)
                .then(|| settings.endpoint(REGISTRATION_PATH)),
            token_endpoint_auth_methods_supported: AuthMethod::ALL.iter().map(|m| m.as_str()).collect(),
            token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS.iter().map(|(_, n)| *n).collect(),
            response_types_supported: vec!["code"],
            // Only grants the token endpoint really serves.
            grant_types_supported: [
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::ClientCredentials,
                GrantType::UmaTicket,
            ]
            .iter()
            .map(|g| g.as_str())
            .collect(),
            uma_profiles_supported: Vec::new(),
            // Filled in by `Server::build` from the verifier registry.
            claim_token_formats_supported: Vec::new(),
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
