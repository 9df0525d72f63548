//! Signed JWTs (`urn:ietf:params:oauth:token-type:jwt`, compact JWS, never an unsigned claim set:
//! checklist A-8) verified with `jsonwebtoken`, and the JWS checks shared with the OIDC verifier.
//!
//! `jsonwebtoken` is used for the signature only: its time and audience checks are off, and the
//! claims are checked here against the request's `now` with the configured skew. That also designs
//! out two known traps (threats V49, V50): a wrongly typed `exp`/`nbf` is refused here, not treated
//! as absent; and `exp`, `iat`, `iss`, `sub`, `aud` are required explicitly.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::config::{KeySource, VerifierConfig};
use super::{ClaimVerifier, Reason, TokenFacts, VerifyError, VerifyFuture, b64url_decode};
use crate::clock::UnixTime;
use crate::oauth::jwks_fetch::JwksFetcher;

/// A compact JWS split and decoded, not yet verified.
pub(crate) struct Jws {
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
}

fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, VerifyError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::new(Reason::MalformedJson, format!("the JWS {what} is not a JSON object"))),
        Err(e) => Err(VerifyError::new(Reason::MalformedJson, format!("the JWS {what} is not JSON: {e}"))),
    }
}

/// Splits `header.payload.signature`; base64url and JSON errors are told apart.
pub(crate) fn split(raw: &str) -> Result<Jws, VerifyError> {
    let parts: Vec<&str> = raw.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(VerifyError::new(
            Reason::MalformedBase64,
            format!("a compact JWS has 3 parts, this token has {}", parts.len()),
        ));
    };
    let ok = |x: &str| x.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !(ok(h) && ok(p) && ok(s)) {
        return Err(VerifyError::new(Reason::MalformedBase64, "a JWS part is not base64url"));
    }
    let header = b64url_decode(h).ok_or_else(|| VerifyError::new(Reason::MalformedBase64, "bad base64url header"))?;
    let payload = b64url_decode(p).ok_or_else(|| VerifyError::new(Reason::MalformedBase64, "bad base64url payload"))?;
    b64url_decode(s).ok_or_else(|| VerifyError::new(Reason::MalformedBase64, "bad base64url signature"))?;
    Ok(Jws { header: json_object(&header, "header")?, payload: json_object(&payload, "payload")? })
}

/// The unverified `iss` of a JWS, only to pick the verifier: the payload alone is decoded and only
/// `iss` is kept (the chosen verifier's `check` then reads and checks the whole token).
pub(crate) fn peek_issuer(raw: &str) -> Result<String, VerifyError> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: Option<Value>,
    }
    let mut parts = raw.split('.');
    let (Some(_), Some(p), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::new(Reason::MalformedBase64, "a compact JWS has 3 parts"));
    };
    let payload = b64url_decode(p).ok_or_else(|| VerifyError::new(Reason::MalformedBase64, "bad base64url payload"))?;
    match serde_json::from_slice::<Issuer>(&payload) {
        Ok(Issuer { iss: Some(Value::String(s)) }) => Ok(s),
        Ok(_) => Err(VerifyError::new(Reason::MissingClaim, "the token has no string `iss`")),
        Err(e) => Err(VerifyError::new(Reason::MalformedJson, format!("the JWS payload is not a JSON object: {e}"))),
    }
}

/// The header's `alg`, refused unless it is one the verifier allows; `none` and HMAC get their own
/// reasons. `crit` is refused (RFC 7515 §4.1.11: no extension is understood here).
pub(crate) fn check_alg(header: &Map<String, Value>, cfg: &VerifierConfig) -> Result<String, VerifyError> {
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(VerifyError::new(Reason::MalformedJson, "the JWS header has no string `alg`")),
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(VerifyError::new(Reason::Unsigned, "`alg: none`"));
    }
    if alg.to_ascii_uppercase().starts_with("HS") {
        return Err(VerifyError::new(Reason::HmacRefused, format!("shared-secret algorithm `{alg}`")));
    }
    if !cfg.algorithms.contains(&alg) {
        return Err(VerifyError::new(Reason::AlgorithmNotAllowed, format!("algorithm `{alg}` is not allowed")));
    }
    if header.contains_key("crit") {
        return Err(VerifyError::new(Reason::MalformedJson, "`crit` header parameters are not supported"));
    }
    Ok(alg)
}

fn int_claim(p: &Map<String, Value>, name: &str, required: bool) -> Result<Option<i64>, VerifyError> {
    match p.get(name) {
        None if required => Err(VerifyError::new(Reason::MissingClaim, format!("`{name}` is required"))),
        None => Ok(None),
        // A wrongly typed time is an error, never "absent" (threats V49).
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| VerifyError::new(Reason::MalformedJson, format!("`{name}` is not a number of seconds"))),
    }
}

fn str_claim<'a>(p: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, VerifyError> {
    match p.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(VerifyError::new(Reason::MalformedJson, format!("`{name}` is not a string"))),
    }
}

/// How `aud` is matched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudienceRule {
    /// RFC 7519 §4.1.3: one of `aud` must be an accepted audience.
    AnyAccepted,
    /// OIDC Core §3.1.3.7: as above, and every other audience must be accepted too.
    AllAccepted,
}

/// The claim checks shared by both JWS formats, on a verified payload: `iss`, `sub`, `aud` / `azp`,
/// `exp`, `nbf`, `iat` (age), `auth_time`, `acr`, `jti`. Time is `now`, with the configured skew.
pub(crate) fn check_claims(
    p: &Map<String, Value>,
    cfg: &VerifierConfig,
    now: UnixTime,
    rule: AudienceRule,
) -> Result<TokenFacts, VerifyError> {
    let skew = cfg.clock_skew_secs;
    match str_claim(p, "iss")? {
        Some(iss) if iss == cfg.issuer => {}
        Some(iss) => {
            return Err(VerifyError::new(Reason::WrongIssuer, format!("`iss` is `{iss}`, expected `{}`", cfg.issuer)));
        }
        None => return Err(VerifyError::new(Reason::MissingClaim, "`iss` is required")),
    }
    let subject = match str_claim(p, "sub")? {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => return Err(VerifyError::new(Reason::MissingClaim, "`sub` is required")),
    };
    let auds: Vec<&str> = match p.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => {
            let mut v = Vec::new();
            for i in items {
                v.push(i.as_str().ok_or_else(|| VerifyError::new(Reason::MalformedJson, "`aud` holds a non-string"))?);
            }
            v
        }
        Some(_) => return Err(VerifyError::new(Reason::MalformedJson, "`aud` is not a string or array")),
        None => return Err(VerifyError::new(Reason::MissingClaim, "`aud` is required")),
    };
    let accepted = |a: &str| cfg.audiences.iter().any(|x| x == a);
    if !auds.iter().any(|a| accepted(a)) {
        return Err(VerifyError::new(Reason::WrongAudience, format!("`aud` {auds:?} holds no accepted audience")));
    }
    if rule == AudienceRule::AllAccepted
        && let Some(other) = auds.iter().find(|a| !accepted(a))
    {
        return Err(VerifyError::new(Reason::WrongAudience, format!("`aud` also names untrusted `{other}`")));
    }
    if let Some(azp) = str_claim(p, "azp")?
        && !accepted(azp)
    {
        return Err(VerifyError::new(Reason::WrongAudience, format!("`azp` `{azp}` is not an accepted audience")));
    }
    let exp = int_claim(p, "exp", true)?.unwrap_or_default();
    if exp.saturating_add(skew) <= now {
        return Err(VerifyError::new(Reason::Expired, format!("expired at {exp}, now {now}")));
    }
    if let Some(nbf) = int_claim(p, "nbf", false)?
        && nbf > now.saturating_add(skew)
    {
        return Err(VerifyError::new(Reason::NotYetValid, format!("not before {nbf}, now {now}")));
    }
    let iat = int_claim(p, "iat", true)?.unwrap_or_default();
    if iat > now.saturating_add(skew) {
        return Err(VerifyError::new(Reason::NotYetValid, format!("issued in the future ({iat}), now {now}")));
    }
    if now.saturating_sub(iat) > cfg.max_age_secs.saturating_add(skew) {
        return Err(VerifyError::new(
            Reason::TooOld,
            format!("issued at {iat}, older than {} s at {now}", cfg.max_age_secs),
        ));
    }
    let auth_time = int_claim(p, "auth_time", false)?;
    let auth_level = str_claim(p, "acr")?.map(str::to_owned);
    let token_id = str_claim(p, "jti")?.map(str::to_owned);
    let claims: BTreeMap<String, Value> = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(TokenFacts { subject, token_id, expires_at: exp, auth_time, auth_level, claims })
}

pub(crate) fn find_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Result<&'a Jwk, VerifyError> {
    match kid {
        Some(kid) => set.find(kid).ok_or_else(|| VerifyError::new(Reason::UnknownKey, format!("unknown kid `{kid}`"))),
        None => match set.keys.as_slice() {
            [only] => Ok(only),
            _ => Err(VerifyError::new(Reason::UnknownKey, "no `kid` and not exactly one key")),
        },
    }
}

/// The key `kid` of `set` (the only key when there is no `kid`), for `alg`.
pub(crate) fn key_from_set(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, VerifyError> {
    let jwk = find_key(set, kid)?;
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{alg:?}")
    {
        return Err(VerifyError::new(Reason::UnknownKey, "the key with this kid is for another algorithm"));
    }
    DecodingKey::from_jwk(jwk)
        .map_err(|e| VerifyError::new(Reason::UnknownKey, format!("no usable key for the token's algorithm: {e}")))
}

/// The signature of a compact JWS under `alg` and `key`, checked by jsonwebtoken over aws-lc (the
/// header's `alg` must be exactly `alg`); the payload it signs. Claims are the caller's to check.
pub(crate) fn verify_signature(
    raw: &str,
    alg: Algorithm,
    key: &DecodingKey,
) -> Result<Map<String, Value>, VerifyError> {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let verified = jsonwebtoken::decode::<Map<String, Value>>(raw, key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::new(Reason::BadSignature, "signature does not verify"),
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => {
                VerifyError::new(Reason::UnknownKey, format!("the key does not fit the algorithm: {e}"))
            }
            _ => VerifyError::new(Reason::BadSignature, format!("rejected: {e}")),
        }
    })?;
    Ok(verified.claims)
}

/// The JWK Set of a verifier, from its file or (cached per node) from its `jwks_uri`. An unknown
/// `kid` triggers at most one refetch per refetch floor (`JwksFetcher`).
pub(crate) async fn key_set<'a>(
    fetcher: &JwksFetcher,
    url_or_inline: Result<&str, &'a JwkSet>,
    kid: Option<&str>,
) -> Result<Cow<'a, JwkSet>, VerifyError> {
    match url_or_inline {
        Ok(url) => fetcher
            .get(url, kid)
            .await
            .map(Cow::Owned)
            .map_err(|e| VerifyError::new(Reason::KeysUnavailable, format!("cannot fetch the issuer's keys: {e}"))),
        Err(inline) => Ok(Cow::Borrowed(inline)),
    }
}

pub(crate) struct JwtVerifier {
    cfg: VerifierConfig,
    fetcher: Arc<JwksFetcher>,
}

impl JwtVerifier {
    pub fn new(cfg: VerifierConfig, fetcher: Arc<JwksFetcher>) -> Self {
        JwtVerifier { cfg, fetcher }
    }

    async fn decoding_key(&self, alg: Algorithm, kid: Option<&str>) -> Result<DecodingKey, VerifyError> {
        let bad_key = |e: jsonwebtoken::errors::Error| {
            VerifyError::new(Reason::UnknownKey, format!("no usable key for the token's algorithm: {e}"))
        };
        let set = match &self.cfg.keys {
            KeySource::Pem(pem) => {
                let key = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                    _ => DecodingKey::from_rsa_pem(pem),
                };
                return key.map_err(bad_key);
            }
            KeySource::JwksUri(url) => key_set(&self.fetcher, Ok(url), kid).await?,
            KeySource::Jwks(v) => key_set(&self.fetcher, Err(v), kid).await?,
            KeySource::Discovery | KeySource::Certificates(_) => {
                return Err(VerifyError::new(Reason::KeysUnavailable, "no JWS keys configured"));
            }
        };
        key_from_set(&set, kid, alg)
    }

    async fn check_inner(&self, raw: &str, now: UnixTime) -> Result<TokenFacts, VerifyError> {
        let jws = split(raw)?;
        let alg_name = check_alg(&jws.header, &self.cfg)?;
        let alg: Algorithm = alg_name
            .parse()
            .map_err(|_| VerifyError::new(Reason::AlgorithmNotAllowed, format!("unknown algorithm `{alg_name}`")))?;
        let kid = str_claim(&jws.header, "kid")?;
        let key = self.decoding_key(alg, kid).await?;
        let claims = verify_signature(raw, alg, &key)?;
        check_claims(&claims, &self.cfg, now, AudienceRule::AnyAccepted)
    }
}

impl ClaimVerifier for JwtVerifier {
    fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    fn peek_issuer(&self, raw: &str) -> Result<String, VerifyError> {
        peek_issuer(raw)
    }

    fn check<'a>(&'a self, raw: &'a str, now: UnixTime) -> VerifyFuture<'a> {
        Box::pin(self.check_inner(raw, now))
    }
}
