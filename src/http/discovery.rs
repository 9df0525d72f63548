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

use crate::config::Settings;
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
            // Filled in by the issues that add the authorization and token endpoints: advertising a
            // response type or grant before it works would mislead clients.
            response_types_supported: Vec::new(),
            grant_types_supported: Vec::new(),
            uma_profiles_supported: Vec::new(),
        }
    }
}

pub async fn metadata(State(state): State<AppState>) -> Response {
    let mut res = axum::Json(state.metadata.as_ref().clone()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PUBLIC_CACHE),
    );
    res
}

/// `GET {jwks_uri}`: the public keys, with `kid`, `alg` and `use`.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.keys.current().jwks();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(PUBLIC_CACHE),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}
