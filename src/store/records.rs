//! Row types, kept apart from domain types: what a table holds, not what the server means by it.

use crate::clock::UnixTime;

#[derive(Clone, sqlx::FromRow)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub generation: i64,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// The public JWK, as published.
    pub public_jwk: String,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("generation", &self.generation)
            .field("private_pem", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRecord {
    pub client_id: String,
    pub secret_digest: Option<String>,
    pub registration_token_digest: Option<String>,
    pub metadata: String,
    pub source: String,
    pub issued_at: UnixTime,
    pub secret_expires_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub digest: String,
    pub client_id: String,
    pub scope: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}
