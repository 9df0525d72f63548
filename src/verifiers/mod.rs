//! Claim verifiers: a claim token pushed to the token endpoint (UMA 2.0 Grant §3.3.1, `claim_token` +
//! `claim_token_format`) becomes [`VerifiedClaims`], or is refused with a [`VerifyError`].
//!
//! ```text
//! (format, raw token, pushing client, now)
//!   └─ registry: size cap ─ format ─ issuer (read unverified, only to pick the verifier) ─ client (A-27)
//!        └─ verifier (oidc | jwt | saml): signature, algorithm, issuer, audience, time  ─► TokenFacts
//!             └─ registry: required claims ─ trust (`may_assert`) ─ types ─ single use (store) ─► VerifiedClaims
//! ```
//!
//! One file per trusted issuer in `verifiers_dir` (`config.rs`); one module per format, each a
//! [`ClaimVerifier`]. Time is an input: nothing here reads the clock, and every library time check is
//! either off (and done here with the configured skew) or fed the request's `now`.
//!
//! Errors carry a public [`Rejection`] category (what the UMA grant maps to `need_info`, checklist
//! A-10/A-27) and a private [`Reason`] + detail for the log. Neither ever contains the raw token.

pub mod config;
mod jwt;
mod oidc;
mod saml;
mod sign_in;

pub use sign_in::{SignInProvider, SignInStart};

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::UnixTime;
use crate::oauth::jwks_fetch::JwksFetcher;
use crate::oauth::tokens::TokenDigest;
use crate::policy::{ClaimSources, RequiredClaim};
use crate::store::Store;
pub use config::{ClaimType, LoadError, VerifierEnv};
use config::{Format, VerifierConfig};

/// `claim_token_format` of an OpenID Connect ID token (compact JWS).
pub const FORMAT_OIDC: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";
/// `claim_token_format` of a signed JWT (compact JWS).
pub const FORMAT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// `claim_token_format` of a SAML 2.0 assertion (base64url of the assertion XML).
pub const FORMAT_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";

/// Largest claim token accepted, in bytes (threats D8).
pub const MAX_TOKEN_BYTES: usize = 128 * 1024;

/// Why a token was refused, for the UMA grant: each category has one documented response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// No verifier is configured for this `claim_token_format`: `need_info` listing the formats (A-10).
    UnsupportedFormat,
    /// No verifier trusts the token's issuer: `need_info` listing formats and issuers (A-10).
    UntrustedIssuer,
    /// The token is invalid, expired, replayed, or says what its issuer is not trusted for:
    /// `need_info` listing acceptable formats and issuers (A-10).
    InvalidToken,
    /// This client may not push this issuer's tokens: the token is not used; `need_info` with
    /// `redirect_user` (A-27).
    ClientNotAllowed,
    /// The store could not record a single-use token: 503 `temporarily_unavailable` (threats D7).
    Unavailable,
}

/// The precise reason, for logs, audit records and tests. Never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UnsupportedFormat,
    UntrustedIssuer,
    ClientNotAllowed,
    TooLarge,
    MalformedBase64,
    MalformedJson,
    MalformedXml,
    /// The JWS header names `alg: none`, or a SAML assertion carries no signature.
    Unsigned,
    /// A shared-secret algorithm (HS*, HMAC-SHA*): the issuer's public key must not be an HMAC secret.
    HmacRefused,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    /// The verifier has no usable key (none configured, or its keys cannot be fetched now).
    KeysUnavailable,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    TooOld,
    MissingClaim,
    ClaimType,
    UntrustedClaim,
    Replayed,
    /// SAML: the signed content is not the whole assertion that would be read (signature wrapping).
    SignatureWrapping,
    /// SAML: comments, processing instructions or a DTD in the token (comment injection, XXE).
    XmlComment,
    /// SAML: the token is not an `Assertion` (e.g. a `Response`), or breaks a bearer rule.
    NotAnAssertion,
    StoreUnavailable,
}

impl Reason {
    pub fn category(self) -> Rejection {
        match self {
            Reason::UnsupportedFormat => Rejection::UnsupportedFormat,
            Reason::UntrustedIssuer => Rejection::UntrustedIssuer,
            Reason::ClientNotAllowed => Rejection::ClientNotAllowed,
            Reason::StoreUnavailable => Rejection::Unavailable,
            _ => Rejection::InvalidToken,
        }
    }
}

/// A refused claim token: a safe category for the client, the reason and detail for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("claim token refused ({reason:?}): {detail}")]
pub struct VerifyError {
    reason: Reason,
    detail: String,
}

impl VerifyError {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        VerifyError { reason, detail: detail.into() }
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    pub fn category(&self) -> Rejection {
        self.reason.category()
    }

    /// Private: for the log and the audit record, never for the response body.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A description safe to send to the client: names no key, no library error, no claim value.
    pub fn public_description(&self) -> &'static str {
        match self.category() {
            Rejection::UnsupportedFormat => "the claim token format is not supported",
            Rejection::UntrustedIssuer => "the claim token's issuer is not trusted",
            Rejection::InvalidToken => "the claim token is not acceptable",
            Rejection::ClientNotAllowed => "this client may not push claim tokens of this issuer",
            Rejection::Unavailable => "the service is temporarily unavailable",
        }
    }
}

/// What a format module proved about a token; the registry turns it into [`VerifiedClaims`].
#[derive(Debug, Clone)]
pub(crate) struct TokenFacts {
    pub subject: String,
    /// `jti` or the assertion `ID`, for single use.
    pub token_id: Option<String>,
    pub expires_at: UnixTime,
    pub auth_time: Option<UnixTime>,
    /// `acr`, or the SAML `AuthnContextClassRef`.
    pub auth_level: Option<String>,
    /// Source claims by name (JWT claim, or SAML attribute `Name` and `FriendlyName`): JSON values;
    /// SAML attribute values are strings, several values an array.
    pub claims: BTreeMap<String, serde_json::Value>,
}

/// Claims that a verifier vouched for. Only this module builds it (fields private, no public
/// constructor), so holding one means a configured verifier accepted the token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifiedClaims {
    verifier_id: String,
    format: &'static str,
    issuer: String,
    subject: String,
    auth_time: Option<UnixTime>,
    auth_level: Option<String>,
    expires_at: UnixTime,
    claims: BTreeMap<String, serde_json::Value>,
}

impl VerifiedClaims {
    pub fn verifier_id(&self) -> &str {
        &self.verifier_id
    }
    pub fn format(&self) -> &'static str {
        self.format
    }
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn auth_time(&self) -> Option<UnixTime> {
        self.auth_time
    }
    pub fn auth_level(&self) -> Option<&str> {
        self.auth_level.as_deref()
    }
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }
    /// Cedar attribute name → value typed as configured (`string`: JSON string, `long`: integer,
    /// `bool`, `set`: array of strings).
    pub fn claims(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.claims
    }

    /// The requesting party for the policy engine (`principal`), with `claim_source = pushed`.
    pub fn to_party(&self) -> crate::policy::RequestingParty {
        self.to_party_from(crate::policy::ClaimSource::Pushed)
    }

    /// The requesting party, with the given `claim_source` (`gathered` after a browser sign-in).
    pub fn to_party_from(&self, source: crate::policy::ClaimSource) -> crate::policy::RequestingParty {
        crate::policy::RequestingParty {
            iss: Some(self.issuer.clone()),
            sub: Some(self.subject.clone()),
            claims: self.claims.clone(),
            source,
            verifier: Some(self.verifier_id.clone()),
        }
    }
}

pub(crate) type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<TokenFacts, VerifyError>> + Send + 'a>>;

/// One trusted issuer of one format. A new format is a new module implementing this, plus a
/// `format` value in `config.rs`.
pub(crate) trait ClaimVerifier: Send + Sync {
    fn config(&self) -> &VerifierConfig;
    /// The issuer named by `raw`, read without verification, only to pick the verifier.
    fn peek_issuer(&self, raw: &str) -> Result<String, VerifyError>;
    /// Signature, algorithm, issuer, audience and time checks; `now` is the request's time.
    fn check<'a>(&'a self, raw: &'a str, now: UnixTime) -> VerifyFuture<'a>;
}

/// The client that pushed the token, as the grant knows it after client authentication.
#[derive(Debug, Clone, Copy)]
pub struct PushingClient<'a> {
    pub client_id: &'a str,
    /// A public client (`token_endpoint_auth_method = none`): never allowed unless a verifier lists it.
    pub is_public: bool,
}

/// The verifiers, by `claim_token_format`. Built once at start; per-node key caches inside.
pub struct VerifierRegistry {
    verifiers: Vec<Arc<dyn ClaimVerifier>>,
    /// The OpenID providers people can sign in at during interactive claims gathering.
    sign_in: Vec<Arc<sign_in::SignIn>>,
    store: Option<Store>,
}

impl std::fmt::Debug for VerifierRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.verifiers.iter().map(|v| v.config().id.as_str()).collect();
        f.debug_struct("VerifierRegistry").field("verifiers", &ids).finish_non_exhaustive()
    }
}

impl VerifierRegistry {
    /// No verifier: every claim token is `UnsupportedFormat`.
    pub fn empty() -> Self {
        VerifierRegistry { verifiers: Vec::new(), sign_in: Vec::new(), store: None }
    }

    /// Reads and validates every `*.toml` in `dir` (a missing folder is an empty registry). Keys that
    /// live behind URLs are not fetched here: a verifier whose keys cannot be fetched refuses tokens,
    /// it does not stop the server.
    pub fn load(dir: &Path, env: &VerifierEnv) -> Result<Self, LoadError> {
        let configs = config::load_dir(dir, env)?;
        Self::from_configs(configs)
    }

    fn from_configs(configs: Vec<VerifierConfig>) -> Result<Self, LoadError> {
        // Operator-configured URLs are trusted as configured (checklist A-32); http is accepted only
        // for loopback hosts (config.rs). Timeouts, size cap and no redirects still apply.
        let fetcher = Arc::new(JwksFetcher::new(true));
        let mut verifiers: Vec<Arc<dyn ClaimVerifier>> = Vec::new();
        let mut sign_in = Vec::new();
        for c in configs {
            if let Some(i) = c.interactive.clone() {
                let s = sign_in::SignIn::new(&c, i, fetcher.clone()).map_err(|e| LoadError::File {
                    file: c.file.display().to_string(),
                    problem: format!("cannot prepare the HTTP client for `[interactive]`: {e}"),
                })?;
                sign_in.push(Arc::new(s));
            }
            let v: Arc<dyn ClaimVerifier> = match c.format {
                Format::Oidc => Arc::new(oidc::OidcVerifier::new(c, fetcher.clone())),
                Format::Jwt => Arc::new(jwt::JwtVerifier::new(c, fetcher.clone())),
                Format::Saml => Arc::new(saml::SamlVerifier::new(c)?),
            };
            verifiers.push(v);
        }
        Ok(VerifierRegistry { verifiers, sign_in, store: None })
    }

    /// Gives the registry the store that records single-use token ids. Without it, a single-use
    /// verifier refuses every token (fail closed).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.verifiers.is_empty()
    }

    /// The configured `claim_token_format` values, sorted, without duplicates (for discovery).
    pub fn formats(&self) -> Vec<String> {
        let mut f: Vec<String> = self.verifiers.iter().map(|v| v.config().format.uri().to_owned()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// `(id, format, issuer)` of each verifier, for start-up logs and `tessera verifiers check`.
    pub fn summary(&self) -> Vec<(String, &'static str, String)> {
        self.verifiers
            .iter()
            .map(|v| (v.config().id.clone(), v.config().format.uri(), v.config().issuer.clone()))
            .collect()
    }

    /// The one entry point of the UMA grant: verifies a pushed claim token for `client` at `now`.
    pub async fn verify(
        &self,
        format: &str,
        raw_token: &str,
        client: PushingClient<'_>,
        now: UnixTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        let result = self.verify_inner(format, raw_token, client, now).await;
        if let Err(e) = &result {
            // The detail never holds the token itself; it may name an issuer, a kid or a claim name.
            tracing::info!(
                client_id = client.client_id,
                claim_token_format = format,
                reason = ?e.reason(),
                detail = e.detail(),
                "claim token refused"
            );
        }
        result
    }

    async fn verify_inner(
        &self,
        format: &str,
        raw: &str,
        client: PushingClient<'_>,
        now: UnixTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(VerifyError::new(Reason::TooLarge, format!("token larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let candidates: Vec<&Arc<dyn ClaimVerifier>> =
            self.verifiers.iter().filter(|v| v.config().format.uri() == format).collect();
        let Some(first) = candidates.first() else {
            return Err(VerifyError::new(Reason::UnsupportedFormat, format!("no verifier for format `{format}`")));
        };
        let issuer = first.peek_issuer(raw)?;
        let verifier = candidates.iter().find(|v| v.config().issuer == issuer).ok_or_else(|| {
            VerifyError::new(Reason::UntrustedIssuer, format!("no `{format}` verifier for issuer `{issuer}`"))
        })?;
        let cfg = verifier.config();
        if !client_may_push(cfg, client) {
            return Err(VerifyError::new(
                Reason::ClientNotAllowed,
                format!("client `{}` may not push tokens of verifier `{}`", client.client_id, cfg.id),
            ));
        }
        let facts = verifier.check(raw, now).await?;
        self.accept(cfg, facts, now).await
    }

    /// Whether any provider offers browser sign-in (cheap: the token endpoint asks on need_info).
    pub fn offers_sign_in(&self) -> bool {
        !self.sign_in.is_empty()
    }

    /// The providers a person can sign in at on the claims page, in file order.
    pub fn sign_in_providers(&self) -> Vec<SignInProvider> {
        self.sign_in.iter().map(|s| s.provider()).collect()
    }

    fn sign_in(&self, id: &str) -> Result<&sign_in::SignIn, VerifyError> {
        self.sign_in
            .iter()
            .find(|s| s.config().id == id)
            .map(AsRef::as_ref)
            .ok_or_else(|| VerifyError::new(Reason::UntrustedIssuer, format!("no sign-in provider `{id}`")))
    }

    /// Starts a sign-in at provider `id`: where to send the browser.
    pub async fn start_sign_in(
        &self,
        id: &str,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
    ) -> Result<SignInStart, VerifyError> {
        self.sign_in(id)?.start(redirect_uri, state, nonce).await
    }

    /// Redeems the provider's code; the ID token it returns passes the same checks as a pushed one
    /// (audience: Tessera's client id at that provider) plus the sign-in's `nonce`.
    pub async fn finish_sign_in(
        &self,
        id: &str,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        let s = self.sign_in(id)?;
        let result = match s.finish(redirect_uri, code, pkce_verifier, nonce, now).await {
            Ok(facts) => self.accept(s.config(), facts, now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            tracing::info!(provider = id, reason = ?e.reason(), detail = e.detail(), "interactive sign-in refused");
        }
        result
    }

    /// Claims of a token `cfg`'s checks accepted: mapped, trusted, and recorded when single use.
    async fn accept(
        &self,
        cfg: &VerifierConfig,
        facts: TokenFacts,
        now: UnixTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        let claims = map_claims(cfg, &facts)?;
        if cfg.single_use {
            self.record_use(cfg, &facts, now).await?;
        }
        Ok(VerifiedClaims {
            verifier_id: cfg.id.clone(),
            format: cfg.format.uri(),
            issuer: cfg.issuer.clone(),
            subject: facts.subject,
            auth_time: facts.auth_time,
            auth_level: facts.auth_level,
            expires_at: facts.expires_at,
            claims,
        })
    }

    /// Single use: one row per (verifier, token id) until the token expires; the insert is the check,
    /// so a replay on another node sharing the store fails too. Runs last, after every other check,
    /// so a forged token cannot burn a genuine token's id.
    async fn record_use(&self, cfg: &VerifierConfig, facts: &TokenFacts, now: UnixTime) -> Result<(), VerifyError> {
        let id = facts.token_id.as_deref().filter(|i| !i.is_empty()).ok_or_else(|| {
            VerifyError::new(Reason::MissingClaim, "single use is on but the token has no `jti` / assertion ID")
        })?;
        let store = self.store.as_ref().ok_or_else(|| {
            VerifyError::new(Reason::StoreUnavailable, "single use is on but the registry has no store")
        })?;
        // The id is stored as a digest: it bounds the column and keeps partner identifiers out of the table.
        let digest = TokenDigest::of(id);
        let keep_until = facts.expires_at.saturating_add(cfg.clock_skew_secs);
        match store.record_claim_token_use(&cfg.id, digest.as_str(), keep_until, now).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(VerifyError::new(Reason::Replayed, format!("token id already used (verifier `{}`)", cfg.id)))
            }
            Err(e) => Err(VerifyError::new(Reason::StoreUnavailable, format!("cannot record token use: {e}"))),
        }
    }
}

/// Checklist A-27: with `allowed_clients`, only those clients; without, any confidential client.
fn client_may_push(cfg: &VerifierConfig, client: PushingClient<'_>) -> bool {
    match &cfg.allowed_clients {
        Some(list) => list.iter().any(|c| c == client.client_id),
        None => !client.is_public,
    }
}

/// Required claims, trust and types: source claims → Cedar attributes.
fn map_claims(cfg: &VerifierConfig, facts: &TokenFacts) -> Result<BTreeMap<String, serde_json::Value>, VerifyError> {
    for name in &cfg.required_claims {
        if !facts.claims.contains_key(name) {
            return Err(VerifyError::new(Reason::MissingClaim, format!("required claim `{name}` is absent")));
        }
    }
    let mut out = BTreeMap::new();
    for m in &cfg.claims {
        let Some(value) = facts.claims.get(&m.from) else { continue };
        if !cfg.may_assert.contains(&m.to) {
            // The issuer asserted something it is not trusted for: refuse the whole token rather than
            // drop the claim silently, so an overstepping partner is visible (docs/verifiers.md).
            return Err(VerifyError::new(
                Reason::UntrustedClaim,
                format!("verifier `{}` is not trusted for `{}` (from `{}`)", cfg.id, m.to, m.from),
            ));
        }
        let typed = m.kind.convert(value).ok_or_else(|| {
            VerifyError::new(Reason::ClaimType, format!("claim `{}` is not a {}", m.from, m.kind.as_str()))
        })?;
        out.insert(m.to.clone(), typed);
    }
    Ok(out)
}

impl ClaimSources for VerifierRegistry {
    /// One `required_claims` entry per verifier trusted for the claim (and from the issuer the policy
    /// names, if it names one): the client learns which format and issuer can supply it (A-10).
    fn describe(&self, claim: &crate::policy::NeededClaim) -> Vec<RequiredClaim> {
        self.verifiers
            .iter()
            .map(|v| v.config())
            .filter(|c| c.may_assert.contains(&claim.name))
            .filter(|c| claim.issuer.as_ref().is_none_or(|i| *i == c.issuer))
            .map(|c| RequiredClaim {
                name: claim.name.clone(),
                friendly_name: None,
                claim_type: c.claims.iter().find(|m| m.to == claim.name).map(|m| m.kind.as_str().to_owned()),
                claim_token_format: vec![c.format.uri().to_owned()],
                issuer: vec![c.issuer.clone()],
            })
            .collect()
    }
}

/// `tessera verifiers check`: loads the folder like the server does and prints one line per verifier.
pub fn check_command(dir: &Path, env: &VerifierEnv) -> Result<String, LoadError> {
    let registry = VerifierRegistry::load(dir, env)?;
    let mut out = String::new();
    for (id, format, issuer) in registry.summary() {
        out.push_str(&format!("{id}\t{format}\t{issuer}\n"));
    }
    out.push_str(&format!("{} verifier(s) valid in `{}`\n", registry.verifiers.len(), dir.display()));
    Ok(out)
}

/// Base64url without padding, tolerant of padding (RFC 4648 §5); a SAML token is the assertion XML
/// encoded so.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests;
