//! OpenID Connect ID tokens pushed as claim tokens
//! (`http://openid.net/specs/openid-connect-core-1_0.html#IDToken`): the signature against the
//! issuer's JWKS by jsonwebtoken over aws-lc (algorithm allowlist, header `alg` exact), then the
//! claims by `openidconnect` (OIDC Core §3.1.3.7): `iss`, `aud` (every audience must be accepted),
//! `exp` with the request's `now`. Tessera then checks what the
//! library leaves to the relying party: `azp`, `nbf`, `iat` age, and the claim mapping.
//!
//! The nonce belongs to the client's login, which the AS never saw, so it is not checked (any value
//! is accepted); replay is bounded by `max_age_secs` and, when configured, single use of `jti`.
//!
//! Keys: discovery (`{issuer}/.well-known/openid-configuration`, whose `issuer` must equal the
//! configured one byte for byte), a `jwks_uri`, or an inline JWK Set. Nothing is fetched at start;
//! discovery and keys are fetched on first use, cached per node, and an unknown `kid` refetches at
//! most once per refetch floor. Tessera's own fetcher does the HTTP (no redirects, timeout, size cap)
//! instead of the library's HTTP client, which would bring a second reqwest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{Audience, ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError};
use serde_json::Value;

use super::config::{KeySource, VerifierConfig};
use super::jwt::{AudienceRule, check_alg, check_claims, key_from_set, key_set, split, verify_signature};
use super::{ClaimVerifier, Reason, TokenFacts, VerifyError, VerifyFuture};
use crate::clock::UnixTime;
use crate::oauth::jwks_fetch::JwksFetcher;

/// A discovered `jwks_uri` is reused this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery, wait this long before trying again (no request amplification).
const DISCOVERY_RETRY_FLOOR: Duration = Duration::from_secs(30);

enum Discovered {
    Uri(String, Instant),
    Failed(Instant),
}

pub(crate) struct OidcVerifier {
    cfg: VerifierConfig,
    fetcher: Arc<JwksFetcher>,
    discovered: tokio::sync::Mutex<Option<Discovered>>,
    /// The configured issuer as openidconnect's type, parsed once (`None`: not a URL, every token
    /// is refused).
    issuer_url: Option<IssuerUrl>,
}

fn to_utc(t: UnixTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl OidcVerifier {
    pub fn new(cfg: VerifierConfig, fetcher: Arc<JwksFetcher>) -> Self {
        let issuer_url = IssuerUrl::new(cfg.issuer.clone()).ok();
        OidcVerifier { cfg, fetcher, discovered: tokio::sync::Mutex::new(None), issuer_url }
    }

    /// The `jwks_uri` from the issuer's discovery document, cached.
    async fn jwks_uri(&self) -> Result<String, VerifyError> {
        let mut slot = self.discovered.lock().await;
        match &*slot {
            Some(Discovered::Uri(u, at)) if at.elapsed() < DISCOVERY_TTL => return Ok(u.clone()),
            Some(Discovered::Failed(at)) if at.elapsed() < DISCOVERY_RETRY_FLOOR => {
                return Err(VerifyError::new(Reason::KeysUnavailable, "discovery failed recently; not retried yet"));
            }
            _ => {}
        }
        match self.discover().await {
            Ok(u) => {
                *slot = Some(Discovered::Uri(u.clone(), Instant::now()));
                Ok(u)
            }
            Err(e) => {
                *slot = Some(Discovered::Failed(Instant::now()));
                Err(e)
            }
        }
    }

    async fn discover(&self) -> Result<String, VerifyError> {
        let unavailable = |d: String| VerifyError::new(Reason::KeysUnavailable, d);
        let url = format!("{}/.well-known/openid-configuration", self.cfg.issuer.trim_end_matches('/'));
        let doc = self.fetcher.fetch_json(&url).await.map_err(|e| unavailable(format!("discovery: {e}")))?;
        // OIDC Discovery §4.3: the document's issuer must be exactly the one we asked.
        if doc.get("issuer").and_then(Value::as_str) != Some(self.cfg.issuer.as_str()) {
            return Err(unavailable(format!("discovery document at `{url}` names another issuer")));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| unavailable(format!("discovery document at `{url}` has no jwks_uri")))?;
        let parsed = url::Url::parse(jwks_uri).map_err(|_| unavailable("discovered jwks_uri is not a URL".into()))?;
        let issuer_is_https = self.cfg.issuer.starts_with("https://");
        if issuer_is_https && parsed.scheme() != "https" {
            return Err(unavailable("discovered jwks_uri is not https".into()));
        }
        Ok(jwks_uri.to_owned())
    }

    async fn check_inner(&self, raw: &str, now: UnixTime) -> Result<TokenFacts, VerifyError> {
        let jws = split(raw)?;
        let alg = check_alg(&jws.header, &self.cfg)?;
        let kid = match jws.header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(VerifyError::new(Reason::MalformedJson, "`kid` is not a string")),
        };
        let set = match &self.cfg.keys {
            KeySource::Discovery => {
                let uri = self.jwks_uri().await?;
                key_set(&self.fetcher, Ok(&uri), kid).await?
            }
            KeySource::JwksUri(uri) => key_set(&self.fetcher, Ok(uri), kid).await?,
            KeySource::Jwks(v) => key_set(&self.fetcher, Err(v), kid).await?,
            KeySource::Pem(_) | KeySource::Certificates(_) => {
                return Err(VerifyError::new(Reason::KeysUnavailable, "no JWK Set configured"));
            }
        };
        // The signature: jsonwebtoken over aws-lc (about 20 µs for RS256, where openidconnect's
        // RustCrypto RSA costs an order of magnitude more); the algorithm was allowed above and must
        // be the header's exactly. openidconnect then checks the claims of a token whose signature
        // has been verified.
        let jws_alg: jsonwebtoken::Algorithm = alg
            .parse()
            .map_err(|_| VerifyError::new(Reason::AlgorithmNotAllowed, format!("unknown algorithm `{alg}`")))?;
        verify_signature(raw, jws_alg, &key_from_set(&set, kid, jws_alg)?)?;

        // The audience the token names that we accept becomes openidconnect's client id; every other
        // audience must be accepted too (checked by the library and again in `check_claims`).
        let aud_values: Vec<String> = match jws.payload.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        let client_id = aud_values.iter().find(|a| self.cfg.audiences.contains(a)).cloned().ok_or_else(|| {
            VerifyError::new(Reason::WrongAudience, format!("`aud` {aud_values:?} holds no accepted audience"))
        })?;
        let issuer = self
            .issuer_url
            .clone()
            .ok_or_else(|| VerifyError::new(Reason::KeysUnavailable, "configured issuer is not a URL"))?;
        let allowed: Vec<CoreJwsSigningAlgorithm> =
            self.cfg.algorithms.iter().filter_map(|a| serde_json::from_value(Value::String(a.clone())).ok()).collect();
        let accepted = self.cfg.audiences.clone();
        // `exp` is compared with the request's `now` minus the skew, never the library's clock;
        // `iat` is checked below with the configured maximum age.
        let shifted = to_utc(now.saturating_sub(self.cfg.clock_skew_secs));
        let verifier =
            CoreIdTokenVerifier::new_public_client(ClientId::new(client_id), issuer, CoreJsonWebKeySet::default())
                .insecure_disable_signature_check()
                .set_allowed_algs(allowed)
                .set_other_audience_verifier_fn(move |a: &Audience| accepted.iter().any(|x| x.as_str() == a.as_str()))
                .set_time_fn(move || shifted)
                .set_issue_time_verifier_fn(|_| Ok(()));
        let token: CoreIdToken =
            raw.parse().map_err(|e| VerifyError::new(Reason::MalformedJson, format!("not an ID token: {e}")))?;
        token.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(())).map_err(|e| map_error(&alg, e))?;
        check_claims(&jws.payload, &self.cfg, now, AudienceRule::AllAccepted)
    }
}

fn map_error(alg: &str, e: ClaimsVerificationError) -> VerifyError {
    let detail = e.to_string();
    let reason = match e {
        ClaimsVerificationError::Expired(_) => Reason::Expired,
        ClaimsVerificationError::InvalidAudience(_) => Reason::WrongAudience,
        ClaimsVerificationError::InvalidIssuer(_) => Reason::WrongIssuer,
        ClaimsVerificationError::SignatureVerification(s) => match s {
            SignatureVerificationError::NoMatchingKey | SignatureVerificationError::AmbiguousKeyId(_) => {
                Reason::UnknownKey
            }
            SignatureVerificationError::DisallowedAlg(_) => Reason::AlgorithmNotAllowed,
            SignatureVerificationError::InvalidKey(_) => Reason::UnknownKey,
            _ => Reason::BadSignature,
        },
        _ => Reason::BadSignature,
    };
    VerifyError::new(reason, format!("{detail} (alg {alg})"))
}

impl ClaimVerifier for OidcVerifier {
    fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    fn peek_issuer(&self, raw: &str) -> Result<String, VerifyError> {
        super::jwt::peek_issuer(raw)
    }

    fn check<'a>(&'a self, raw: &'a str, now: UnixTime) -> VerifyFuture<'a> {
        Box::pin(self.check_inner(raw, now))
    }
}
