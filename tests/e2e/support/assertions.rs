//! Client keys and client assertions (RFC 7523 `private_key_jwt`), honest and forged: a client's key
//! pair minted with Tessera's own key generator, JWTs signed with it, and the classic forgeries
//! (`alg: none`, HS256 keyed with the public key).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::config::SigningAlgorithm;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's key pair: the private PEM stays with the test, the public JWK is registered.
#[derive(Clone)]
pub struct ClientKey {
    pub kid: String,
    pub alg: Algorithm,
    pub private_pem: String,
    pub public_jwk: Value,
}

impl ClientKey {
    pub fn es256() -> ClientKey {
        Self::generate(SigningAlgorithm::ES256, Algorithm::ES256)
    }

    pub fn rs256() -> ClientKey {
        Self::generate(SigningAlgorithm::RS256, Algorithm::RS256)
    }

    /// An RSA key whose JWK says `PS256`.
    pub fn ps256() -> ClientKey {
        let mut k = Self::generate(SigningAlgorithm::RS256, Algorithm::PS256);
        k.public_jwk["alg"] = json!("PS256");
        k
    }

    fn generate(family: SigningAlgorithm, alg: Algorithm) -> ClientKey {
        let rec = tessera::keys::generate(family, 1, 0).expect("generate client key");
        ClientKey {
            kid: rec.kid,
            alg,
            private_pem: rec.private_pem,
            public_jwk: serde_json::from_str(&rec.public_jwk).expect("public JWK is JSON"),
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.private_pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(self.private_pem.as_bytes()),
        }
        .expect("client private key")
    }

    /// Signs `claims` with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(claims, &self.kid)
    }

    /// Signs `claims` with this key under another algorithm of its family (e.g. RS512).
    pub fn sign_alg(&self, claims: &Value, alg: Algorithm) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("sign assertion")
    }

    /// Signs `claims` with this key but names another `kid` in the header.
    pub fn sign_as(&self, claims: &Value, kid: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).expect("sign assertion")
    }

    /// The public key as SubjectPublicKeyInfo PEM (EC P-256 only), as an attacker would find it.
    pub fn public_pem(&self) -> String {
        assert_eq!(self.alg, Algorithm::ES256, "public_pem is for EC keys");
        let coord = |c: &str| URL_SAFE_NO_PAD.decode(self.public_jwk[c].as_str().unwrap()).unwrap();
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING 04 || x || y }
        let mut der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        der.push(0x04);
        der.extend(coord("x"));
        der.extend(coord("y"));
        let b64 = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2).unwrap(), 16).unwrap()).collect()
}

/// A JWK Set holding the public keys.
pub fn jwks(keys: &[&ClientKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>() })
}

/// The claims of an honest assertion: iss = sub = client_id, the given audience, exp in one minute,
/// a fresh jti, iat now.
pub fn claims(client_id: &str, aud: Value, now: i64) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// An unsigned JWT (`alg: none`) naming `kid`.
pub fn unsigned(claims: &Value, kid: &str) -> String {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": kid });
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// An HS256 JWT keyed with `secret` (e.g. the bytes of a public key), naming `kid`.
pub fn hs256(claims: &Value, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret).expect("HMAC key")).expect("sign HS256")
}
