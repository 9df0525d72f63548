//! Tessera's signing keys: generated on first start and kept in the store, so restarts and every node
//! sign with, and publish, the same keys. One active key per algorithm (ES256 and RS256); the configured
//! algorithm signs by default. `tessera keys rotate` adds a new generation and retires the previous
//! one, whose public key stays published until every token it may have signed has expired.
//!
//! Each node keeps the key set in memory and re-reads it from the store every `signing.key_refresh_secs`,
//! so a rotation made on one node (or by the CLI) reaches the others within that interval.

use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RsaKeyPair};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::clock::UnixTime;
use crate::config::{Settings, SigningAlgorithm};
use crate::store::{SigningKeyRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot generate a {0} key")]
    Generate(SigningAlgorithm),
    #[error("stored signing key `{kid}` is unusable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("no active {0} signing key")]
    NoActiveKey(SigningAlgorithm),
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("another node rotated the {0} key at the same time; run the rotation again if still wanted")]
    RotationRace(SigningAlgorithm),
}

fn jwt_algorithm(alg: SigningAlgorithm) -> Algorithm {
    match alg {
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn encoding_key(alg: SigningAlgorithm, private_pem: &str) -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    match alg {
        SigningAlgorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        SigningAlgorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
    }
}

/// The public JWK of a private key, with `kid` = its RFC 7638 thumbprint, `alg` and `use`.
fn public_jwk(alg: SigningAlgorithm, key: &EncodingKey) -> Result<Jwk, jsonwebtoken::errors::Error> {
    let mut jwk = Jwk::from_encoding_key(key, jwt_algorithm(alg))?;
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256)?);
    Ok(jwk)
}

/// A freshly generated key, ready to be stored.
pub fn generate(alg: SigningAlgorithm, generation: i64, now: UnixTime) -> Result<SigningKeyRecord, KeyError> {
    let fail = |_| KeyError::Generate(alg);
    let pkcs8: Vec<u8> = match alg {
        SigningAlgorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        SigningAlgorithm::RS256 => RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(fail)?
            .as_der()
            .map_err(fail)?
            .as_ref()
            .to_vec(),
    };
    let private_pem = pem("PRIVATE KEY", &pkcs8);
    let key = encoding_key(alg, &private_pem).map_err(|_| KeyError::Generate(alg))?;
    let jwk = public_jwk(alg, &key).map_err(|_| KeyError::Generate(alg))?;
    let kid = jwk.common.key_id.clone().ok_or(KeyError::Generate(alg))?;
    let public_jwk = serde_json::to_string(&jwk).map_err(|_| KeyError::Generate(alg))?;
    Ok(SigningKeyRecord {
        kid,
        alg: alg.as_str().to_owned(),
        generation,
        private_pem,
        public_jwk,
        created_at: now,
        retired_at: None,
    })
}

/// A key usable for signing.
struct ActiveKey {
    kid: String,
    alg: SigningAlgorithm,
    key: EncodingKey,
}

/// What one node knows about the keys at one moment.
pub struct KeySet {
    active: Vec<ActiveKey>,
    /// The JWK Set document, serialised once per refresh.
    jwks: Arc<str>,
    /// Key ids in the JWK Set, for `tessera keys list` and tests.
    published: Vec<PublishedKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishedKey {
    pub kid: String,
    pub alg: String,
    pub generation: i64,
    pub active: bool,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

/// How long after retirement a key stays published: every token it signed must have expired, counting
/// the refresh interval during which other nodes may still have signed with it.
pub fn publication_window(settings: &Settings) -> i64 {
    settings.tokens.longest_signed() + i64::try_from(settings.key_refresh_secs).unwrap_or(i64::MAX / 2)
}

impl KeySet {
    fn build(records: &[SigningKeyRecord], window: i64, now: UnixTime) -> Result<Self, KeyError> {
        let mut active = Vec::new();
        let mut jwks = Vec::new();
        let mut published = Vec::new();
        for r in records {
            let corrupt = |reason: &str| KeyError::Corrupt { kid: r.kid.clone(), reason: reason.to_owned() };
            if r.retired_at.is_some_and(|t| t.saturating_add(window) <= now) {
                continue;
            }
            let alg = SigningAlgorithm::parse(&r.alg).ok_or_else(|| corrupt("unknown algorithm"))?;
            let jwk: serde_json::Value =
                serde_json::from_str(&r.public_jwk).map_err(|_| corrupt("public JWK is not JSON"))?;
            if r.retired_at.is_none() {
                let key = encoding_key(alg, &r.private_pem).map_err(|_| corrupt("private key does not parse"))?;
                active.push(ActiveKey { kid: r.kid.clone(), alg, key });
            }
            jwks.push(jwk);
            published.push(PublishedKey {
                kid: r.kid.clone(),
                alg: r.alg.clone(),
                generation: r.generation,
                active: r.retired_at.is_none(),
                created_at: r.created_at,
                retired_at: r.retired_at,
            });
        }
        let jwks =
            serde_json::to_string(&serde_json::json!({ "keys": jwks })).map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(KeySet { active, jwks: jwks.into(), published })
    }

    pub fn jwks(&self) -> Arc<str> {
        self.jwks.clone()
    }

    pub fn published(&self) -> &[PublishedKey] {
        &self.published
    }

    fn active(&self, alg: SigningAlgorithm) -> Option<&ActiveKey> {
        self.active.iter().find(|k| k.alg == alg)
    }
}

/// Makes sure every algorithm has an active key, generating the missing ones. Safe to run on many
/// nodes at once: the store admits one key per (algorithm, generation).
pub async fn ensure_active_keys(store: &Store, now: UnixTime) -> Result<(), KeyError> {
    let records = store.signing_keys().await?;
    for alg in SigningAlgorithm::ALL {
        let mine = records.iter().filter(|r| r.alg == alg.as_str());
        if mine.clone().any(|r| r.retired_at.is_none()) {
            continue;
        }
        let next = mine.map(|r| r.generation).max().unwrap_or(0) + 1;
        let key = generate(alg, next, now)?;
        if store.add_signing_key(&key, now).await? {
            tracing::info!(kid = %key.kid, alg = %alg, "generated signing key");
        }
    }
    Ok(())
}

/// Adds a new active key for `alg` and retires the previous one. Returns the new key id.
pub async fn rotate(store: &Store, alg: SigningAlgorithm, now: UnixTime) -> Result<String, KeyError> {
    let records = store.signing_keys().await?;
    let next = records.iter().filter(|r| r.alg == alg.as_str()).map(|r| r.generation).max().unwrap_or(0) + 1;
    let key = generate(alg, next, now)?;
    if !store.add_signing_key(&key, now).await? {
        return Err(KeyError::RotationRace(alg));
    }
    Ok(key.kid)
}

/// Deletes retired keys that are no longer published.
pub async fn prune(store: &Store, settings: &Settings, now: UnixTime) -> Result<u64, KeyError> {
    Ok(store.delete_signing_keys_retired_before(now - publication_window(settings)).await?)
}

/// The node's view of the keys, shared by handlers and refreshed in the background.
pub struct Keys {
    current: RwLock<Arc<KeySet>>,
    default_alg: SigningAlgorithm,
    window: i64,
}

impl Keys {
    pub async fn load(store: &Store, settings: &Settings, now: UnixTime) -> Result<Self, KeyError> {
        let window = publication_window(settings);
        let set = KeySet::build(&store.signing_keys().await?, window, now)?;
        if set.active(settings.signing_algorithm).is_none() {
            return Err(KeyError::NoActiveKey(settings.signing_algorithm));
        }
        Ok(Keys { current: RwLock::new(Arc::new(set)), default_alg: settings.signing_algorithm, window })
    }

    /// Re-reads the keys from the store. On failure the previous set keeps serving.
    pub async fn refresh(&self, store: &Store, now: UnixTime) -> Result<(), KeyError> {
        let set = KeySet::build(&store.signing_keys().await?, self.window, now)?;
        if set.active(self.default_alg).is_none() {
            return Err(KeyError::NoActiveKey(self.default_alg));
        }
        let mut guard = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(set);
        Ok(())
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn default_algorithm(&self) -> SigningAlgorithm {
        self.default_alg
    }

    /// Signs `claims` as a compact JWS with the active key of `alg` (default: the configured one).
    pub fn sign<T: Serialize>(&self, claims: &T, alg: Option<SigningAlgorithm>, typ: &str) -> Result<String, KeyError> {
        let alg = alg.unwrap_or(self.default_alg);
        let set = self.current();
        let key = set.active(alg).ok_or(KeyError::NoActiveKey(alg))?;
        let mut header = Header::new(jwt_algorithm(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &key.key).map_err(|e| KeyError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Serialize, serde::Deserialize)]
    struct Claims {
        iss: String,
        exp: i64,
    }

    fn set_of(records: &[SigningKeyRecord], window: i64, now: i64) -> KeySet {
        KeySet::build(records, window, now).unwrap()
    }

    #[test]
    fn generated_keys_sign_tokens_their_published_jwk_verifies() {
        for alg in SigningAlgorithm::ALL {
            let rec = generate(alg, 1, 100).unwrap();
            let set = set_of(std::slice::from_ref(&rec), 10, 100);
            let keys = Keys { current: RwLock::new(Arc::new(set)), default_alg: alg, window: 10 };
            let token = keys.sign(&Claims { iss: "me".into(), exp: 4_000_000_000 }, None, "JWT").unwrap();

            let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&keys.current().jwks()).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(rec.kid.as_str()));
            let jwk = jwks.find(&rec.kid).unwrap();
            assert_eq!(jwk.common.public_key_use, Some(PublicKeyUse::Signature));
            let dk = DecodingKey::from_jwk(jwk).unwrap();
            let mut v = Validation::new(jwt_algorithm(alg));
            v.set_required_spec_claims(&["exp"]);
            let data = jsonwebtoken::decode::<Claims>(&token, &dk, &v).unwrap();
            assert_eq!(data.claims.iss, "me");
        }
    }

    #[test]
    fn published_jwks_have_no_private_members() {
        for alg in SigningAlgorithm::ALL {
            let rec = generate(alg, 1, 0).unwrap();
            let jwk: serde_json::Value = serde_json::from_str(&rec.public_jwk).unwrap();
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{alg} JWK leaks `{private}`");
            }
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], rec.kid.as_str());
        }
    }

    #[test]
    fn retired_keys_stay_published_for_the_window_then_disappear() {
        let mut old = generate(SigningAlgorithm::ES256, 1, 0).unwrap();
        old.retired_at = Some(1_000);
        let new = generate(SigningAlgorithm::ES256, 2, 1_000).unwrap();
        let records = [new.clone(), old.clone()];

        let during = set_of(&records, 3_600, 1_000 + 3_599);
        let kids: Vec<_> = during.published().iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new.kid.as_str(), old.kid.as_str()]);
        assert_eq!(during.active(SigningAlgorithm::ES256).map(|k| k.kid.as_str()), Some(new.kid.as_str()));

        let after = set_of(&records, 3_600, 1_000 + 3_600);
        let kids: Vec<_> = after.published().iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [new.kid.as_str()]);
    }

    #[test]
    fn a_corrupt_stored_key_is_reported_not_used() {
        let mut rec = generate(SigningAlgorithm::ES256, 1, 0).unwrap();
        rec.private_pem = "garbage".into();
        assert!(matches!(KeySet::build(&[rec], 10, 0), Err(KeyError::Corrupt { .. })));
    }
}
