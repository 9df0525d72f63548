//! OAuth machinery shared by every endpoint and grant. No HTTP types below this line.

pub mod authorize;
pub mod client;
pub mod client_auth;
pub mod error;
pub mod grants;
pub mod introspection;
pub mod jwks_fetch;
pub mod pat;
pub mod pkce;
pub mod registration;
pub mod revocation;
pub mod tokens;

pub use error::{Challenge, ErrorCode, OAuthError};
