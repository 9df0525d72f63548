//! Grants at the token endpoint other than the UMA grant. One module per grant; each owns its
//! parameters and checks.

pub mod client_credentials;

use serde::Serialize;

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}
