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
    /// The resource owner a configured resource server acts for (its client_credentials tokens are PATs).
    pub bound_owner: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccessTokenRecord {
    pub digest: String,
    pub client_id: String,
    pub scope: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    /// The resource owner the token acts for; with scope `uma_protection` this makes it a PAT.
    pub owner: Option<String>,
    /// Tokens of one grant (one authorization code and its refreshes) share a family.
    pub family: Option<String>,
    pub revoked_at: Option<UnixTime>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRecord {
    pub account_id: String,
    pub password_hash: Option<String>,
    pub attributes: String,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthorizationRequestRecord {
    pub digest: String,
    pub browser_digest: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthorizationCodeRecord {
    pub digest: String,
    pub client_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub code_challenge: String,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRecord {
    pub digest: String,
    pub client_id: String,
    pub owner: String,
    pub scope: String,
    pub family: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResourceRecord {
    pub resource_id: String,
    pub owner: String,
    pub rs_client_id: String,
    pub description: String,
    pub name: Option<String>,
    #[sqlx(rename = "type")]
    pub resource_type: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRecord {
    pub digest: String,
    pub owner: String,
    pub rs_client_id: String,
    pub permissions: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}
