//! Every refusal of issue 6's "Done when", per format, with its own reason; valid tokens to exact
//! claims; and bounded property tests (arbitrary bytes and mutated valid tokens) on every parsing
//! entry point. JWS keys are generated during the test by aws-lc-rs (`keys::generate`); SAML fixtures
//! were signed by xmlsec1 (tests/verifier_fixtures/saml/make_fixtures.sh).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::config::SigningAlgorithm;

const NOW: i64 = 1_767_225_660; // 2026-01-01T00:01:00Z, one minute after the SAML fixtures' IssueInstant
const IDP: &str = "https://idp.partner.test";
const AUD: &str = "uma-client";

fn env() -> VerifierEnv {
    VerifierEnv { issuer: "https://tessera.test".into(), token_endpoint: "https://tessera.test/token".into() }
}

fn confidential(id: &str) -> PushingClient<'_> {
    PushingClient { client_id: id, is_public: false }
}

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn key(alg: SigningAlgorithm) -> Key {
    let rec = crate::keys::generate(alg, 1, NOW).unwrap();
    let (jwt_alg, encoding) = match alg {
        SigningAlgorithm::RS256 => (Algorithm::RS256, EncodingKey::from_rsa_pem(rec.private_pem.as_bytes()).unwrap()),
        SigningAlgorithm::ES256 => (Algorithm::ES256, EncodingKey::from_ec_pem(rec.private_pem.as_bytes()).unwrap()),
    };
    Key { kid: rec.kid, alg: jwt_alg, encoding, jwk: serde_json::from_str(&rec.public_jwk).unwrap() }
}

fn mint(k: &Key, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, claims, &k.encoding).unwrap()
}

fn mint_with(k: &Key, alg: Algorithm, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, claims, &k.encoding).unwrap()
}

fn good_claims() -> Value {
    json!({
        "iss": IDP, "sub": "alice", "aud": AUD, "iat": NOW - 10, "exp": NOW + 600, "nbf": NOW - 10,
        "auth_time": NOW - 20, "acr": "urn:mace:incommon:iap:silver", "jti": "id-1",
        "npi": "1234567893", "role": "physician", "email": "alice@hospital.example",
        "email_verified": true, "groups": ["staff", "cardiology"], "nonce": "n-0S6_WzA2Mj"
    })
}

fn patch(mut v: Value, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    f(v.as_object_mut().unwrap());
    v
}

fn jws_toml(format: &str, jwks: &Value, extra: &str) -> String {
    format!(
        "format = \"{format}\"\nissuer = \"{IDP}\"\naudiences = [\"{AUD}\"]\nmax_age_secs = 600\nclock_skew_secs = 30\n\
         may_assert = [\"npi\", \"role\", \"email_verified\", \"groups\"]\n{extra}\n\
         [keys]\njwks = '{}'\n\
         [[claims]]\nfrom = \"npi\"\ntype = \"string\"\n\
         [[claims]]\nfrom = \"role\"\ntype = \"string\"\n\
         [[claims]]\nfrom = \"email_verified\"\ntype = \"bool\"\n\
         [[claims]]\nfrom = \"groups\"\ntype = \"set\"\n",
        jwks
    )
}

async fn store(dir: &Path) -> Store {
    let cfg = dir.join("t.toml");
    std::fs::write(&cfg, format!("database_url = \"sqlite://{}\"\n", dir.join("t.db").display())).unwrap();
    let settings = crate::config::Settings::load_with_env(Some(&cfg), std::iter::empty()).unwrap();
    crate::open_store(&settings, true).await.unwrap()
}

fn registry_from(dir: &Path, files: &[(&str, String)]) -> VerifierRegistry {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    VerifierRegistry::load(dir, &env()).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    reg: VerifierRegistry,
    format: &'static str,
    key: Key,
}

async fn jws_fixture(format: &'static str, extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let k = key(SigningAlgorithm::RS256);
    let es = key(SigningAlgorithm::ES256);
    let jwks = json!({"keys": [k.jwk, es.jwk]});
    let name = if format == FORMAT_OIDC { "oidc" } else { "jwt" };
    let vdir = dir.path().join("verifiers");
    std::fs::create_dir(&vdir).unwrap();
    let reg =
        registry_from(&vdir, &[("partner.toml", jws_toml(name, &jwks, extra))]).with_store(store(dir.path()).await);
    Fixture { _dir: dir, reg, format, key: k }
}

impl Fixture {
    async fn verify(&self, token: &str) -> Result<VerifiedClaims, VerifyError> {
        self.reg.verify(self.format, token, confidential("any-client"), NOW).await
    }
    async fn reason(&self, token: &str) -> Reason {
        self.verify(token).await.unwrap_err().reason()
    }
    /// The verifier itself, bypassing the registry's routing by issuer.
    async fn direct(&self, token: &str) -> Reason {
        self.reg.verifiers.first().unwrap().check(token, NOW).await.unwrap_err().reason()
    }
}

fn expected_jws(format: &'static str) -> VerifiedClaims {
    VerifiedClaims {
        verifier_id: "partner".into(),
        format,
        issuer: IDP.into(),
        subject: "alice".into(),
        auth_time: Some(NOW - 20),
        auth_level: Some("urn:mace:incommon:iap:silver".into()),
        expires_at: NOW + 600,
        claims: [
            ("npi".to_owned(), json!("1234567893")),
            ("role".to_owned(), json!("physician")),
            ("email_verified".to_owned(), json!(true)),
            ("groups".to_owned(), json!(["cardiology", "staff"])),
        ]
        .into_iter()
        .collect(),
    }
}

/// The refusals shared by both JWS formats.
async fn jws_refusals(format: &'static str) {
    let f = jws_fixture(format, "").await;
    let k = &f.key;
    // valid → the exact claims; untrusted `email` is not mapped, so it is simply not read
    assert_eq!(f.verify(&mint(k, &good_claims())).await.unwrap(), expected_jws(format));

    // bad signature: the payload changed after signing
    let genuine = mint(k, &good_claims());
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&patch(good_claims(), |c| {
            c.insert("role".into(), json!("admin"));
        }))
        .unwrap(),
    );
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(f.reason(&forged).await, Reason::BadSignature);

    // unknown key
    let stranger = key(SigningAlgorithm::RS256);
    assert_eq!(f.reason(&mint(&stranger, &good_claims())).await, Reason::UnknownKey);
    // a stranger's key under a trusted kid: the signature fails
    let impostor = Key { kid: k.kid.clone(), ..key(SigningAlgorithm::RS256) };
    assert_eq!(f.reason(&mint(&impostor, &good_claims())).await, Reason::BadSignature);

    // wrong issuer: the registry has no verifier for it; the verifier itself says wrong issuer
    let other_iss = mint(
        k,
        &patch(good_claims(), |c| {
            c.insert("iss".into(), json!("https://evil.test"));
        }),
    );
    assert_eq!(f.reason(&other_iss).await, Reason::UntrustedIssuer);
    assert_eq!(f.direct(&other_iss).await, Reason::WrongIssuer);

    // wrong audience
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("aud".into(), json!("tessera"));
            })
        ))
        .await,
        Reason::WrongAudience
    );
    // azp naming an audience we do not accept
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("azp".into(), json!("other-client"));
            })
        ))
        .await,
        Reason::WrongAudience
    );
    // expired (beyond the 30 s skew), not yet valid, too old
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("exp".into(), json!(NOW - 31));
            })
        ))
        .await,
        Reason::Expired
    );
    assert!(
        f.verify(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("exp".into(), json!(NOW - 29));
            })
        ))
        .await
        .is_ok()
    );
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("nbf".into(), json!(NOW + 120));
            })
        ))
        .await,
        Reason::NotYetValid
    );
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("iat".into(), json!(NOW - 3600));
            })
        ))
        .await,
        Reason::TooOld
    );
    // alg none, built the way an attacker would
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none = format!("{none_header}.{}.", parts[1]);
    assert_eq!(f.reason(&none).await, Reason::Unsigned);
    // HMAC keyed with the issuer's public key (RS→HS confusion)
    let public_n = k.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(k.kid.clone());
    let hs = jsonwebtoken::encode(&h, &good_claims(), &EncodingKey::from_secret(&public_n).unwrap()).unwrap();
    assert_eq!(f.reason(&hs).await, Reason::HmacRefused);
    // an algorithm the verifier does not allow (PS512 with the trusted RSA key)
    assert_eq!(f.reason(&mint_with(k, Algorithm::PS512, &good_claims())).await, Reason::AlgorithmNotAllowed);
    // malformed base64 / JSON, and a wrongly typed `exp` (jsonwebtoken < 10.3 treated it as absent)
    assert_eq!(f.reason("a.b").await, Reason::MalformedBase64);
    assert_eq!(f.reason("e30.!!!.e30").await, Reason::MalformedBase64);
    let not_json = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(b"{not json"), parts[2]);
    assert_eq!(f.direct(&not_json).await, Reason::MalformedJson);
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.insert("exp".into(), json!("9999999999"));
            })
        ))
        .await,
        Reason::MalformedJson
    );
    assert_eq!(
        f.reason(&mint(
            k,
            &patch(good_claims(), |c| {
                c.remove("exp");
            })
        ))
        .await,
        if format == FORMAT_OIDC { Reason::MalformedJson } else { Reason::MissingClaim }
    );
    // A-27: a public client may not push when the verifier names no clients
    let err = f
        .reg
        .verify(format, &mint(k, &good_claims()), PushingClient { client_id: "spa", is_public: true }, NOW)
        .await
        .unwrap_err();
    assert_eq!((err.reason(), err.category()), (Reason::ClientNotAllowed, Rejection::ClientNotAllowed));
    // an unsupported format
    let err = f.reg.verify("urn:example:unknown", &mint(k, &good_claims()), confidential("c"), NOW).await.unwrap_err();
    assert_eq!((err.reason(), err.category()), (Reason::UnsupportedFormat, Rejection::UnsupportedFormat));
    // the public description names nothing specific
    assert_eq!(err.public_description(), "the claim token format is not supported");
}

#[tokio::test]
async fn oidc_id_tokens_verify_to_exact_claims_and_every_refusal_has_its_reason() {
    jws_refusals(FORMAT_OIDC).await;
    // OIDC Core §3.1.3.7: an additional audience that is not trusted refuses the token
    let f = jws_fixture(FORMAT_OIDC, "").await;
    let two = mint(
        &f.key,
        &patch(good_claims(), |c| {
            c.insert("aud".into(), json!([AUD, "someone-else"]));
        }),
    );
    assert_eq!(f.reason(&two).await, Reason::WrongAudience);
}

#[tokio::test]
async fn signed_jwts_verify_to_exact_claims_and_every_refusal_has_its_reason() {
    jws_refusals(FORMAT_JWT).await;
    // RFC 7519: one accepted audience among several is enough for a plain JWT
    let f = jws_fixture(FORMAT_JWT, "").await;
    let two = mint(
        &f.key,
        &patch(good_claims(), |c| {
            c.insert("aud".into(), json!([AUD, "someone-else"]));
        }),
    );
    assert!(f.verify(&two).await.is_ok());
    // configurable required claims
    let f = jws_fixture(FORMAT_JWT, "required_claims = [\"npi\"]").await;
    let no_npi = mint(
        &f.key,
        &patch(good_claims(), |c| {
            c.remove("npi");
        }),
    );
    assert_eq!(f.reason(&no_npi).await, Reason::MissingClaim);
}

#[tokio::test]
async fn jws_untrusted_claims_replay_and_allowed_clients() {
    for format in [FORMAT_OIDC, FORMAT_JWT] {
        // `email` is mapped, but the issuer is not trusted for it
        let f = jws_fixture(format, "[[claims]]\nfrom = \"email\"\ntype = \"string\"").await;
        assert_eq!(f.reason(&mint(&f.key, &good_claims())).await, Reason::UntrustedClaim);

        // single use: the second presentation of one jti is a replay; another jti is fine
        let f = jws_fixture(format, "single_use = true\nallowed_clients = [\"uma-client\"]").await;
        let t = mint(&f.key, &good_claims());
        let push = |token: String| {
            let reg = &f.reg;
            async move { reg.verify(format, &token, confidential("uma-client"), NOW).await }
        };
        assert!(push(t.clone()).await.is_ok());
        assert_eq!(push(t.clone()).await.unwrap_err().reason(), Reason::Replayed);
        assert!(
            push(mint(
                &f.key,
                &patch(good_claims(), |c| {
                    c.insert("jti".into(), json!("id-2"));
                })
            ))
            .await
            .is_ok()
        );
        let no_jti = mint(
            &f.key,
            &patch(good_claims(), |c| {
                c.remove("jti");
            }),
        );
        assert_eq!(push(no_jti).await.unwrap_err().reason(), Reason::MissingClaim);
        // A-27: a client not on the list
        let other = f.reg.verify(format, &t, confidential("someone"), NOW).await.unwrap_err();
        assert_eq!(other.category(), Rejection::ClientNotAllowed);
    }
}

// ---- SAML ----

fn saml_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifier_fixtures/saml")
}

fn saml_token(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(std::fs::read(saml_dir().join(name)).unwrap())
}

const SAML_NOW: i64 = 1_767_225_660;

fn saml_toml(keys: &str, extra: &str) -> String {
    format!(
        "format = \"saml\"\nissuer = \"https://partner-idp.test\"\nmax_age_secs = 600\n{extra}\n\
         may_assert = [\"npi\", \"role\", \"email\", \"groups\"]\n\
         [keys]\n{keys}\n\
         [[claims]]\nfrom = \"npi\"\ntype = \"string\"\n\
         [[claims]]\nfrom = \"role\"\ntype = \"string\"\n\
         [[claims]]\nfrom = \"urn:mace:dir:attribute-def:mail\"\nto = \"email\"\ntype = \"string\"\n\
         [[claims]]\nfrom = \"groups\"\ntype = \"set\"\n"
    )
}

struct SamlFixture {
    _dir: tempfile::TempDir,
    reg: VerifierRegistry,
}

async fn saml_fixture(keys: &str, extra: &str) -> SamlFixture {
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("verifiers");
    std::fs::create_dir(&vdir).unwrap();
    let mut e = env();
    e.issuer = "https://tessera.test".into();
    std::fs::write(vdir.join("saml-idp.toml"), saml_toml(keys, extra)).unwrap();
    let reg = VerifierRegistry::load(&vdir, &e).unwrap().with_store(store(dir.path()).await);
    SamlFixture { _dir: dir, reg }
}

fn metadata_keys() -> String {
    format!("metadata_file = \"{}\"", saml_dir().join("metadata.xml").display())
}

impl SamlFixture {
    async fn verify_at(&self, name: &str, now: i64) -> Result<VerifiedClaims, VerifyError> {
        self.reg.verify(FORMAT_SAML, &saml_token(name), confidential("c"), now).await
    }
    async fn reason(&self, name: &str) -> Reason {
        self.verify_at(name, SAML_NOW).await.unwrap_err().reason()
    }
}

#[tokio::test]
async fn saml_assertions_verify_to_exact_claims_and_every_refusal_has_its_reason() {
    let f = saml_fixture(&metadata_keys(), "").await;
    let v = f.verify_at("valid.xml", SAML_NOW).await.unwrap();
    assert_eq!(
        v,
        VerifiedClaims {
            verifier_id: "saml-idp".into(),
            format: FORMAT_SAML,
            issuer: "https://partner-idp.test".into(),
            subject: "alice".into(),
            auth_time: Some(1_767_225_600),
            auth_level: Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport".into()),
            expires_at: 1_767_225_900,
            claims: [
                ("npi".to_owned(), json!("1234567893")),
                ("role".to_owned(), json!("physician")),
                ("email".to_owned(), json!("alice@hospital.example")),
                ("groups".to_owned(), json!(["cardiology", "staff"])),
            ]
            .into_iter()
            .collect(),
        }
    );
    assert_eq!(f.reason("bad_signature.xml").await, Reason::BadSignature);
    assert_eq!(f.reason("unknown_key.xml").await, Reason::UnknownKey);
    assert_eq!(f.reason("wrong_issuer.xml").await, Reason::UntrustedIssuer);
    let direct = f.reg.verifiers.first().unwrap().check(&saml_token("wrong_issuer.xml"), SAML_NOW).await;
    assert_eq!(direct.unwrap_err().reason(), Reason::WrongIssuer);
    assert_eq!(f.reason("wrong_audience.xml").await, Reason::WrongAudience);
    assert_eq!(f.reason("expired.xml").await, Reason::Expired);
    assert_eq!(f.reason("not_yet_valid.xml").await, Reason::NotYetValid);
    // too old: the genuine assertion (window 300 s) at issue + 200 s, with a 60 s maximum age
    let strict = saml_fixture(&metadata_keys(), "clock_skew_secs = 0").await;
    assert!(strict.verify_at("valid.xml", 1_767_225_600 + 200).await.is_ok());
    let young = saml_fixture_with_age(60).await;
    assert_eq!(young.verify_at("valid.xml", 1_767_225_600 + 200).await.unwrap_err().reason(), Reason::TooOld);
    // no signature (SAML's `alg: none`), HMAC keyed with the IdP certificate, SHA-1
    assert_eq!(f.reason("unsigned.xml").await, Reason::Unsigned);
    assert_eq!(f.reason("hmac.xml").await, Reason::HmacRefused);
    assert_eq!(f.reason("sha1.xml").await, Reason::AlgorithmNotAllowed);
    // attacks: signed Response around an unsigned assertion, wrapping, comment injection
    assert_eq!(f.reason("signed_response_decoy.xml").await, Reason::NotAnAssertion);
    assert_eq!(f.reason("wrapping_advice.xml").await, Reason::SignatureWrapping);
    assert_eq!(f.reason("wrapping_moved_signature.xml").await, Reason::SignatureWrapping);
    assert_eq!(f.reason("comment_injection.xml").await, Reason::XmlComment);
    // malformed base64 / XML, and a DTD
    let dtd = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><a>&x;</a>";
    for (token, reason) in [
        ("%%%".to_owned(), Reason::MalformedBase64),
        (URL_SAFE_NO_PAD.encode("<saml:Assertion"), Reason::MalformedXml),
        (URL_SAFE_NO_PAD.encode(dtd), Reason::XmlComment),
    ] {
        let got = f.reg.verify(FORMAT_SAML, &token, confidential("c"), SAML_NOW).await.unwrap_err().reason();
        assert_eq!(got, reason);
    }
}

async fn saml_fixture_with_age(max_age: u32) -> SamlFixture {
    let keys = metadata_keys();
    let text =
        saml_toml(&keys, "clock_skew_secs = 0").replace("max_age_secs = 600", &format!("max_age_secs = {max_age}"));
    let dir = tempfile::tempdir().unwrap();
    let vdir = dir.path().join("verifiers");
    std::fs::create_dir(&vdir).unwrap();
    std::fs::write(vdir.join("saml-idp.toml"), text).unwrap();
    let reg = VerifierRegistry::load(&vdir, &env()).unwrap().with_store(store(dir.path()).await);
    SamlFixture { _dir: dir, reg }
}

#[tokio::test]
async fn saml_sha1_only_when_configured_replay_untrusted_claims_and_no_certificate() {
    let f = saml_fixture(&metadata_keys(), "danger_allow_sha1 = true").await;
    assert_eq!(f.verify_at("sha1.xml", SAML_NOW).await.unwrap().subject(), "alice");
    // the pre-scan still refuses HMAC with SHA-1 allowed
    assert_eq!(f.reason("hmac.xml").await, Reason::HmacRefused);

    let f = saml_fixture(&metadata_keys(), "single_use = true").await;
    assert!(f.verify_at("valid.xml", SAML_NOW).await.is_ok());
    assert_eq!(f.reason("valid.xml").await, Reason::Replayed);

    let f = saml_fixture(&metadata_keys(), "").await;
    let text = saml_toml(&metadata_keys(), "")
        .replace("may_assert = [\"npi\", \"role\", \"email\", \"groups\"]", "may_assert = [\"npi\"]");
    std::fs::write(f._dir.path().join("verifiers/saml-idp.toml"), text).unwrap();
    let narrow = VerifierRegistry::load(&f._dir.path().join("verifiers"), &env()).unwrap();
    let err = narrow.verify(FORMAT_SAML, &saml_token("valid.xml"), confidential("c"), SAML_NOW).await.unwrap_err();
    assert_eq!(err.reason(), Reason::UntrustedClaim);

    // no certificate: everything is refused, the genuine assertion included
    let none =
        saml_fixture(&format!("metadata_file = \"{}\"", saml_dir().join("metadata_no_cert.xml").display()), "").await;
    for name in ["valid.xml", "unsigned.xml", "wrapping_advice.xml"] {
        assert_eq!(none.reason(name).await, Reason::KeysUnavailable, "{name}");
    }
    // a PEM certificate file works like metadata
    let pem = saml_fixture(&format!("certificate_file = \"{}\"", saml_dir().join("idp-cert.pem").display()), "").await;
    assert!(pem.verify_at("valid.xml", SAML_NOW).await.is_ok());
}

#[test]
fn metadata_of_another_entity_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = saml_toml(&metadata_keys(), "").replace("https://partner-idp.test", "https://other.test");
    std::fs::write(dir.path().join("x.toml"), text).unwrap();
    let e = VerifierRegistry::load(dir.path(), &env()).unwrap_err().to_string();
    assert!(e.contains("x.toml") && e.contains("describes entity `https://partner-idp.test`"), "{e}");
}

#[test]
fn registry_describes_who_can_supply_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(SigningAlgorithm::ES256);
    let reg = registry_from(
        dir.path(),
        &[
            ("a-oidc.toml", jws_toml("oidc", &json!({"keys": [k.jwk]}), "")),
            ("b-saml.toml", saml_toml(&metadata_keys(), "")),
        ],
    );
    assert_eq!(reg.formats(), [FORMAT_OIDC, FORMAT_SAML]);
    let need = |name: &str, issuer: Option<&str>| crate::policy::NeededClaim {
        name: name.into(),
        issuer: issuer.map(str::to_owned),
    };
    let npi = reg.describe(&need("npi", None));
    assert_eq!(npi.len(), 2);
    assert_eq!(npi[0].claim_token_format, [FORMAT_OIDC]);
    assert_eq!(npi[0].issuer, [IDP]);
    assert_eq!(npi[0].claim_type.as_deref(), Some("string"));
    assert_eq!(reg.describe(&need("npi", Some("https://partner-idp.test")))[0].claim_token_format, [FORMAT_SAML]);
    assert!(reg.describe(&need("email", Some(IDP))).is_empty());
}

// ---- bounded property tests: arbitrary bytes and mutated valid tokens, no panic, no escalation ----

/// xorshift64*: deterministic, so a failure reproduces from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=<>/\"' &;!:\n\x00\xff";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                v.insert(i, ALPHABET[rng.below(ALPHABET.len())]);
            }
            2 if len > 0 => {
                v.remove(rng.below(len));
            }
            3 => v.truncate(rng.below(len + 1)),
            4 if len > 1 => {
                // duplicate a slice elsewhere (splicing)
                let a = rng.below(len);
                let b = (a + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, (rng.next() & 0xff) as u8);
            }
        }
    }
    v
}

fn budget() -> Duration {
    let secs = std::env::var("TESSERA_TEST_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    Duration::from_secs(secs)
}

#[test]
fn parsers_survive_arbitrary_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let valid_xml = std::fs::read(saml_dir().join("valid.xml")).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget() {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
        let text = String::from_utf8_lossy(&bytes);
        let _ = jwt::split(&text);
        let _ = jwt::peek_issuer(&text);
        let _ = saml::prescan(&text);
        let _ = saml::decode_token(&text);
        let m = mutate(&mut rng, &valid_xml);
        let _ = saml::prescan(&String::from_utf8_lossy(&m));
        n += 1;
    }
    assert!(n > 100, "only {n} inputs in the budget");
}

#[tokio::test]
async fn mutated_tokens_never_panic_and_never_verify_to_other_claims() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let fixtures = [jws_fixture(FORMAT_OIDC, "").await, jws_fixture(FORMAT_JWT, "").await];
    let saml = saml_fixture(&metadata_keys(), "").await;
    let saml_valid = saml_token("valid.xml");
    let saml_xml = std::fs::read(saml_dir().join("valid.xml")).unwrap();
    let saml_expected = saml.verify_at("valid.xml", SAML_NOW).await.unwrap();
    let start = Instant::now();
    let (mut jws_runs, mut saml_runs) = (0u64, 0u64);
    while start.elapsed() < budget() {
        for f in &fixtures {
            let valid = mint(&f.key, &good_claims());
            let m = String::from_utf8_lossy(&mutate(&mut rng, valid.as_bytes())).into_owned();
            if let Ok(v) = f.verify(&m).await {
                assert_eq!(v, expected_jws(f.format), "a mutated token verified to other claims: {m}");
            }
            jws_runs += 1;
        }
        // SAML: mutate the XML (then encode), and the base64url text itself
        let xml = URL_SAFE_NO_PAD.encode(mutate(&mut rng, &saml_xml));
        let b64 = String::from_utf8_lossy(&mutate(&mut rng, saml_valid.as_bytes())).into_owned();
        for t in [xml, b64] {
            if let Ok(v) = saml.reg.verify(FORMAT_SAML, &t, confidential("c"), SAML_NOW).await {
                assert_eq!(v, saml_expected, "a mutated assertion verified to other claims");
            }
            saml_runs += 1;
        }
    }
    assert!(jws_runs > 20 && saml_runs > 10, "too few runs: {jws_runs} JWS, {saml_runs} SAML");
}

#[test]
fn interactive_sign_in_is_configured_per_oidc_verifier() {
    let jwks = json!({"keys": [key(SigningAlgorithm::ES256).jwk]});
    let file = Path::new("/verifiers/partner.toml");
    let ok = "[interactive]\nclient_id = \"tessera\"\nclient_secret = \"s3cret-value\"\nscopes = [\"openid\", \"email\"]\n\
              label = \"Partner hospital\"\n";
    let cfg = config::parse(file, &jws_toml("oidc", &jwks, ok), &env()).unwrap();
    let i = cfg.interactive.as_ref().unwrap();
    assert_eq!((i.client_id.as_str(), i.label.as_str()), ("tessera", "Partner hospital"));
    assert_eq!(i.scopes, ["openid", "email"]);
    assert!(!format!("{cfg:?}").contains("s3cret-value"), "the client secret must never be printed");

    let dir = tempfile::tempdir().unwrap();
    let reg = registry_from(dir.path(), &[("partner.toml", jws_toml("oidc", &jwks, ok))]);
    let providers = reg.sign_in_providers();
    assert_eq!(providers.len(), 1);
    assert_eq!((providers[0].id.as_str(), providers[0].issuer.as_str()), ("partner", IDP));

    let refused = [
        ("jwt", ok, "OpenID Connect verifiers only"),
        ("oidc", "[interactive]\nclient_id = \"t\"\n", "exactly one of"),
        (
            "oidc",
            "[interactive]\nclient_id = \"t\"\nclient_secret = \"s\"\nclient_secret_env = \"X\"\n",
            "exactly one of",
        ),
        ("oidc", "[interactive]\nclient_id = \"t\"\nclient_secret = \"s\"\nscopes = [\"email\"]\n", "include `openid`"),
        ("oidc", "[interactive]\nclient_id = \"\"\nclient_secret = \"s\"\n", "client_id"),
        ("oidc", "[interactive]\nclient_id = \"t\"\nclient_secret_env = \"TESSERA_UNSET_FOR_SURE_42\"\n", "not set"),
        ("oidc", "[interactive]\nclient_id = \"t\"\nclient_secret = \"s\"\nredirect = \"x\"\n", "unknown field"),
    ];
    for (format, extra, why) in refused {
        let err = config::parse(file, &jws_toml(format, &jwks, extra), &env()).unwrap_err().to_string();
        assert!(err.contains(why), "{extra}: {err}");
    }
}
