//! OAuth machinery shared by every endpoint and grant. No HTTP types below this line.

pub mod error;
pub mod tokens;

pub use error::{ErrorCode, OAuthError};
