//! Claim verifiers over real HTTP (issue 6): a partner OpenID Provider on loopback serving discovery
//! and a JWKS whose keys are generated in the test; lazy key fetching (the server starts with the IdP
//! down); the refetch floor on unknown `kid`s; discovery naming another issuer; single use across two
//! Tessera nodes sharing one store; the discovery document's `claim_token_formats_supported`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::config::SigningAlgorithm;
use tessera::verifiers::{FORMAT_OIDC, PushingClient, Reason};
use tokio::net::TcpListener;

use crate::both_stores;
use crate::support::{Options, StoreKind, TestAs, TestDb};

/// A partner IdP: `/.well-known/openid-configuration` and `/jwks`, each counting its hits.
struct Idp {
    issuer: String,
    kid: String,
    key: EncodingKey,
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    /// `claimed_issuer`: what the discovery document says (normally the real issuer).
    async fn start(claimed_issuer: Option<&str>) -> Idp {
        let rec = tessera::keys::generate(SigningAlgorithm::RS256, 1, 0).unwrap();
        let jwk: Value = serde_json::from_str(&rec.public_jwk).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let doc = json!({
            "issuer": claimed_issuer.unwrap_or(&issuer),
            "jwks_uri": format!("{issuer}/jwks"),
            "authorization_endpoint": format!("{issuer}/auth"),
        })
        .to_string();
        let jwks = json!({"keys": [jwk]}).to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { ([("content-type", "application/json")], doc) }),
            )
            .route(
                "/jwks",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = jwks.clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            issuer,
            kid: rec.kid,
            key: EncodingKey::from_rsa_pem(rec.private_pem.as_bytes()).unwrap(),
            jwks_hits: hits,
            task,
        }
    }

    fn id_token(&self, now: i64, kid: &str, jti: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.to_owned());
        let claims = json!({
            "iss": self.issuer, "sub": "alice", "aud": "uma-client", "iat": now, "exp": now + 300,
            "jti": jti, "npi": "1234567893", "role": "physician", "email": "alice@hospital.example",
        });
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A verifiers folder with one OIDC verifier for `issuer` (discovery), single use on.
fn verifiers_dir(db: &TestDb, issuer: &str) -> String {
    let dir = db.dir().join("verifiers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("partner.toml"),
        format!(
            "format = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"uma-client\"]\nsingle_use = true\n\
             may_assert = [\"npi\", \"role\"]\n[keys]\ndiscovery = true\n\
             [[claims]]\nfrom = \"npi\"\ntype = \"string\"\n[[claims]]\nfrom = \"role\"\ntype = \"string\"\n"
        ),
    )
    .unwrap();
    format!("verifiers_dir = \"{}\"\n", dir.display())
}

const CLIENT: PushingClient<'static> = PushingClient { client_id: "uma-client", is_public: false };

async fn id_tokens_verify_through_discovery_and_single_use_holds_across_nodes(store: StoreKind) {
    let db = TestDb::new(store).await;
    let idp = Idp::start(None).await;
    let extra = verifiers_dir(&db, &idp.issuer);
    let a = TestAs::start_with(&db, Options { extra_toml: &extra, ..Options::default() }).await;
    let b = TestAs::start_with(&db, Options { extra_toml: &extra, ..Options::default() }).await;
    assert_eq!(idp.hits(), 0, "keys are fetched on first use, not at start");

    let (_, _, doc) = a.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(doc["claim_token_formats_supported"], json!([FORMAT_OIDC]));

    let now = a.now();
    let token = idp.id_token(now, &idp.kid, "jti-1");
    let v = a.server.verifiers.verify(FORMAT_OIDC, &token, CLIENT, now).await.unwrap();
    assert_eq!((v.issuer(), v.subject(), v.verifier_id()), (idp.issuer.as_str(), "alice", "partner"));
    assert_eq!(
        serde_json::to_value(v.claims()).unwrap(),
        json!({"npi": "1234567893", "role": "physician"}),
        "`email` is neither mapped nor trusted, so it is not read"
    );
    // the same token on the other node: a replay
    let replay = b.server.verifiers.verify(FORMAT_OIDC, &token, CLIENT, now).await.unwrap_err();
    assert_eq!(replay.reason(), Reason::Replayed);
    // a fresh token on the other node is fine (it fetched the keys itself: per-node cache)
    assert!(b.server.verifiers.verify(FORMAT_OIDC, &idp.id_token(now, &idp.kid, "jti-2"), CLIENT, now).await.is_ok());
    assert_eq!(idp.hits(), 2);

    // unknown kids: refused, and within the refetch floor they cause no further fetch
    for i in 0..5 {
        let bogus = idp.id_token(now, &format!("rotated-{i}"), &format!("jti-x{i}"));
        let e = a.server.verifiers.verify(FORMAT_OIDC, &bogus, CLIENT, now).await.unwrap_err();
        assert_eq!(e.reason(), Reason::UnknownKey);
    }
    assert_eq!(idp.hits(), 2, "no request amplification on unknown kids");
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

async fn an_unreachable_or_lying_idp_does_not_stop_the_start_and_its_tokens_are_refused(store: StoreKind) {
    let db = TestDb::new(store).await;
    // nothing listens on this port: the IdP is down
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = format!("http://127.0.0.1:{port}");
    let extra = verifiers_dir(&db, &down);
    let t = TestAs::start_with(&db, Options { extra_toml: &extra, ..Options::default() }).await;
    let (status, _, _) = t.get_json("/readyz").await;
    assert_eq!(status, 200);
    let liar = Idp::start(Some("https://someone-else.example")).await;
    let e = t.server.verifiers.verify(FORMAT_OIDC, &liar.id_token(t.now(), &liar.kid, "j"), CLIENT, t.now()).await;
    assert_eq!(e.unwrap_err().reason(), Reason::UntrustedIssuer);
    // a token claiming the down IdP's issuer: its keys cannot be fetched
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("k".into());
    let claims = json!({"iss": down, "sub": "a", "aud": "uma-client", "iat": t.now(), "exp": t.now() + 60, "jti": "j"});
    let token = jsonwebtoken::encode(&h, &claims, &liar.key).unwrap();
    let e = t.server.verifiers.verify(FORMAT_OIDC, &token, CLIENT, t.now()).await.unwrap_err();
    assert_eq!(e.reason(), Reason::KeysUnavailable);
    assert_eq!(e.public_description(), "the claim token is not acceptable");
    t.stop().await;

    // discovery that names another issuer than the configured one (OIDC Discovery §4.3)
    let db2 = TestDb::new(store).await;
    let lying = Idp::start(Some("https://someone-else.example")).await;
    let extra = verifiers_dir(&db2, &lying.issuer);
    let t = TestAs::start_with(&db2, Options { extra_toml: &extra, ..Options::default() }).await;
    let e = t.server.verifiers.verify(FORMAT_OIDC, &lying.id_token(t.now(), &lying.kid, "j"), CLIENT, t.now()).await;
    assert_eq!(e.unwrap_err().reason(), Reason::KeysUnavailable);
    assert_eq!(lying.hits(), 0, "keys are never fetched from a discovery document naming another issuer");
    t.stop().await;
    db.drop_now().await;
    db2.drop_now().await;
}

both_stores!(
    id_tokens_verify_through_discovery_and_single_use_holds_across_nodes,
    an_unreachable_or_lying_idp_does_not_stop_the_start_and_its_tokens_are_refused,
);
