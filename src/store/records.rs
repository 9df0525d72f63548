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
    /// A refresh token of an RPT: the permissions it may reissue (JSON), and the requesting party.
    pub permissions: Option<String>,
    pub party: Option<String>,
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
    /// Set on tickets the token endpoint hands back: only this client may redeem them.
    pub client_id: Option<String>,
    /// The verified claims carried forward to the next redemption (JSON).
    pub carried: Option<String>,
    /// The owner approval this ticket waits for.
    pub pending_id: Option<String>,
}

/// An RPT as stored (a row of `access_token` with `kind = 'rpt'`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RptRecord {
    pub digest: String,
    pub client_id: String,
    /// The resource owner whose resources it covers.
    pub owner: String,
    /// The requesting party, `<iss>|<sub>` (or `anonymous`).
    pub party: String,
    /// JSON array of `{resource_id, resource_scopes, exp?}`.
    pub permissions: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub family: String,
    pub revoked_at: Option<UnixTime>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PctRecord {
    pub digest: String,
    pub client_id: String,
    pub party: String,
    /// JSON: the requesting party (claims) it persists.
    pub claims: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// The grant family of the RPT it came with: revoked with it (threats D1).
    pub family: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingRequestRecord {
    pub pending_id: String,
    pub owner: String,
    pub rs_client_id: String,
    pub client_id: String,
    /// JSON: the requesting party.
    pub party: String,
    /// JSON: the permissions awaiting approval.
    pub permissions: String,
    /// pending | approved | denied
    pub status: String,
    /// JSON: the approved permissions.
    pub approved: Option<String>,
    /// 0: the approval has no end.
    pub approval_expires_at: UnixTime,
    pub poll_interval: i64,
    pub last_poll_at: UnixTime,
    pub created_at: UnixTime,
    pub decided_at: Option<UnixTime>,
}

/// One authorization assessment (threats D6: written with its effects, or nothing is issued).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRecord {
    pub audit_id: i64,
    pub at: UnixTime,
    pub client_id: String,
    pub party_iss: Option<String>,
    pub party_sub: Option<String>,
    pub owner: String,
    pub resource_ids: String,
    pub requested: String,
    pub granted: String,
    pub outcome: String,
    pub policies: String,
    pub claim_sources: String,
}

/// A visit of the claims interaction endpoint, from the spent ticket to the redirect back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimsSessionRecord {
    pub session_id: String,
    pub binding: String,
    pub csrf: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub client_state: Option<String>,
    pub owner: String,
    pub rs_client_id: String,
    pub permissions: String,
    pub carried: Option<String>,
    pub pending_id: Option<String>,
    pub provider: Option<String>,
    pub oidc_state: Option<String>,
    pub oidc_nonce: Option<String>,
    pub pkce_verifier: Option<String>,
    pub failures: i64,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub finished_at: Option<UnixTime>,
}
