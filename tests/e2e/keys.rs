//! Signing keys: generated once into the store, published at `jwks_uri`, the same after a restart and
//! on every node, rotated with the old public key kept until its tokens have expired.

use std::process::Command;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tessera::clock::{Clock, FixedClock, SystemClock};
use tessera::config::SigningAlgorithm;

use crate::both_stores;
use crate::support::{Options, StoreKind, TestAs, TestDb, tessera_bin};

async fn jwks(t: &TestAs) -> Value {
    let (status, headers, body) = t.get_json("/jwks").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    body
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

fn kids_of(jwks: &Value, alg: &str) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["alg"] == alg)
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    iss: String,
    exp: i64,
}

/// Signs with the server's keys and verifies with nothing but the JWKS fetched over HTTP.
async fn assert_signatures_verify_with_published_keys(t: &TestAs, alg: SigningAlgorithm) -> String {
    let claims = Claims { iss: t.base.clone(), exp: t.now() + 60 };
    let token = t.server.keys.sign(&claims, Some(alg), "JWT").expect("sign");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let kid = header.kid.expect("kid in header");
    let set: JwkSet = serde_json::from_value(jwks(t).await).unwrap();
    let jwk = set.find(&kid).unwrap_or_else(|| panic!("{kid} is not published"));
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&t.base]);
    validation.validate_exp = false; // the clock may be pinned; the signature is what is checked here
    let data = jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap();
    assert_eq!(data.claims.iss, t.base);
    kid
}

async fn jwks_publishes_es256_and_rs256_public_keys(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;
    let doc = jwks(&t).await;
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        for member in ["kid", "kty", "alg", "use"] {
            assert!(k[member].is_string(), "{member} missing in {k}");
        }
        assert_eq!(k["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "private member `{private}` published");
        }
    }
    assert_eq!(kids_of(&doc, "ES256").len(), 1);
    assert_eq!(kids_of(&doc, "RS256").len(), 1);
    for alg in SigningAlgorithm::ALL {
        assert_signatures_verify_with_published_keys(&t, alg).await;
    }
    t.stop().await;
    db.drop_now().await;
}

async fn a_restart_keeps_the_same_keys(store: StoreKind) {
    let db = TestDb::new(store).await;
    let first = TestAs::start(&db).await;
    let before = kids(&jwks(&first).await);
    first.stop().await;

    let second = TestAs::start(&db).await;
    assert_eq!(kids(&jwks(&second).await), before);
    second.stop().await;
    db.drop_now().await;
}

/// Two nodes starting at the same moment on one empty database agree on one key per algorithm.
async fn two_servers_on_one_database_publish_the_same_keys(store: StoreKind) {
    let db = TestDb::new(store).await;
    let (a, b) = tokio::join!(TestAs::start(&db), TestAs::start(&db));
    let (ka, kb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(kids(&ka), kids(&kb));
    assert_eq!(kids(&ka).len(), 2);
    // A token signed by one node verifies with the other's JWKS.
    let claims = Claims { iss: "x".into(), exp: a.now() + 60 };
    let token = a.server.keys.sign(&claims, None, "JWT").unwrap();
    let set: JwkSet = serde_json::from_value(kb).unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    assert!(set.find(&kid).is_some());
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

/// `tessera keys rotate` (the real binary) adds a new active key; running servers pick it up within
/// `signing.key_refresh_secs`; the old public key stays published until the longest token lifetime
/// (plus the refresh interval) has passed, then disappears.
async fn rotation_keeps_the_old_key_published_until_its_tokens_expire(store: StoreKind) {
    let db = TestDb::new(store).await;
    // The CLI stamps the retirement with the real time, so the pinned clock starts there too.
    let clock = FixedClock::new(SystemClock.now());
    let opts = Options {
        extra_toml: "[signing]\nkey_refresh_secs = 1\n[tokens]\nrpt_lifetime_secs = 600\npat_lifetime_secs = 300\n",
        fixed_clock: Some(clock.clone()),
        ..Options::default()
    };
    let t = TestAs::start_with(&db, opts).await;
    let old_es = kids_of(&jwks(&t).await, "ES256");
    let old_rs = kids_of(&jwks(&t).await, "RS256");
    assert_eq!(old_es.len(), 1);

    let out = Command::new(tessera_bin())
        .args(["keys", "rotate", "--alg", "ES256"])
        .env("TESSERA_DATABASE_URL", &db.url)
        .env_remove("TESSERA_CONFIG")
        .current_dir(db.dir())
        .output()
        .expect("run tessera keys rotate");
    assert!(out.status.success(), "rotate failed: {}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).expect("keys rotate prints the key list as JSON");
    let active_es: Vec<_> =
        listed.as_array().unwrap().iter().filter(|k| k["alg"] == "ES256" && k["active"] == true).collect();
    assert_eq!(active_es.len(), 1);
    let new_kid = active_es[0]["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_es[0]);

    // The running server sees the rotation within its refresh interval.
    let mut published = Vec::new();
    for _ in 0..50 {
        published = kids_of(&jwks(&t).await, "ES256");
        if published.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published.len(), 2, "old and new ES256 keys are both published");
    assert!(published.contains(&new_kid) && published.contains(&old_es[0]));
    assert_eq!(kids_of(&jwks(&t).await, "RS256"), old_rs, "RS256 was not rotated");
    let signing_kid = assert_signatures_verify_with_published_keys(&t, SigningAlgorithm::ES256).await;
    assert_eq!(signing_kid, new_kid, "new tokens are signed with the new key");

    // Still published just before the window (longest signed lifetime 600 s + refresh 1 s) closes …
    clock.advance(600);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(kids_of(&jwks(&t).await, "ES256").len(), 2);
    // … and gone after it (the CLI ran a moment after the clock was read: allow a few seconds).
    clock.advance(10);
    let mut published = Vec::new();
    for _ in 0..50 {
        published = kids_of(&jwks(&t).await, "ES256");
        if published.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, vec![new_kid]);
    t.stop().await;
    db.drop_now().await;
}

both_stores!(
    jwks_publishes_es256_and_rs256_public_keys,
    a_restart_keeps_the_same_keys,
    two_servers_on_one_database_publish_the_same_keys,
    rotation_keeps_the_old_key_published_until_its_tokens_expire,
);
