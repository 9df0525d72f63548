//! The operator's client commands, run as the real binary against the test database while a server
//! runs on it: `tessera clients add|list|remove` and `tessera registration token`.

use serde_json::{Value, json};

use crate::both_stores;
use crate::support::oauth::{
    basic, expect_error, expect_error_for, expect_token, post_register, post_token, read, register, s,
};
use crate::support::process::{run, tessera};
use crate::support::{Options, StoreKind, TestAs, TestDb};

const CC: (&str, &str) = ("grant_type", "client_credentials");

/// `tessera ARGS` on the test database, in its folder; (exit code, stdout, stderr).
fn cli(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    run(tessera(db.dir()).args(args).env("TESSERA_DATABASE_URL", &db.url))
}

/// `tessera clients add ARGS`, which must succeed and print the registration as JSON.
fn add(db: &TestDb, args: &[&str]) -> Value {
    let mut all = vec!["clients", "add"];
    all.extend_from_slice(args);
    let (code, out, err) = cli(db, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"))
}

fn list(db: &TestDb) -> (Vec<Value>, String) {
    let (code, out, err) = cli(db, &["clients", "list"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"));
    (v.as_array().expect("a JSON array").clone(), out)
}

fn ids(clients: &[Value]) -> Vec<String> {
    clients.iter().map(|c| s(c, "client_id").to_owned()).collect()
}

async fn clients_add_prints_the_credentials_and_the_client_authenticates(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;

    let c = add(&db, &["--name", "Backup service", "--grant-type", "client_credentials", "--scope", "read write"]);
    assert_eq!(c["client_name"], "Backup service");
    assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(c["grant_types"], json!(["client_credentials"]));
    assert_eq!(c["scope"], "read write");
    let (id, secret) = (s(&c, "client_id"), s(&c, "client_secret"));
    let tok = expect_token(post_token(&t, Some(&basic(id, secret)), &[CC]).await).await;
    assert_eq!(tok["scope"], "read write");
    let res = post_token(&t, Some(&basic(id, "wrong-secret-0123456789abcdefghij")), &[CC]).await;
    expect_error(res, 401, "invalid_client").await;

    let p = add(
        &db,
        &[
            "--name",
            "Poster",
            "--auth-method",
            "client_secret_post",
            "--grant-type",
            "client_credentials",
            "--scope",
            "read",
        ],
    );
    assert_eq!(p["token_endpoint_auth_method"], "client_secret_post");
    let (pid, psecret) = (s(&p, "client_id"), s(&p, "client_secret"));
    let tok = expect_token(post_token(&t, None, &[CC, ("client_id", pid), ("client_secret", psecret)]).await).await;
    assert_eq!(tok["scope"], "read");

    // A web client: several grant types and redirect URIs.
    let w = add(
        &db,
        &[
            "--name",
            "Web",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "client_credentials",
            "--redirect-uri",
            "https://web.example/cb",
            "--redirect-uri",
            "https://web.example/cb2",
        ],
    );
    assert_eq!(w["grant_types"], json!(["authorization_code", "client_credentials"]));
    assert_eq!(w["redirect_uris"], json!(["https://web.example/cb", "https://web.example/cb2"]));
    assert_eq!(w["response_types"], json!(["code"]));
    expect_token(post_token(&t, Some(&basic(s(&w, "client_id"), s(&w, "client_secret"))), &[CC]).await).await;
    t.stop().await;
    db.drop_now().await;
}

/// The CLI validates like the registration endpoint, and a refused client is not stored.
async fn clients_add_refuses_invalid_metadata(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;
    for args in [
        vec!["--name", "x", "--auth-method", "tls_client_auth", "--grant-type", "client_credentials"],
        vec!["--name", "x", "--auth-method", "none", "--grant-type", "client_credentials"],
        vec!["--name", "x", "--grant-type", "urn:example:unknown"],
        vec!["--name", "x", "--grant-type", "authorization_code", "--redirect-uri", "http://example.com/cb"],
        vec!["--name", "x", "--grant-type", "authorization_code", "--redirect-uri", "https://c.example/cb#f"],
    ] {
        let mut all = vec!["clients", "add"];
        all.extend_from_slice(&args);
        let (code, out, err) = cli(&db, &all);
        assert_ne!(code, 0, "{args:?} was accepted: {out}");
        assert!(!err.is_empty(), "{args:?}: a refusal says why");
        assert!(!out.contains("client_secret"), "{args:?}: {out}");
    }
    assert_eq!(list(&db).0, Vec::<Value>::new(), "nothing was stored");
    t.stop().await;
    db.drop_now().await;
}

async fn clients_list_shows_every_client_without_secrets(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start_with(&db, Options { extra_toml: crate::support::oauth::OPEN, ..Options::default() }).await;
    assert_eq!(list(&db).0, Vec::<Value>::new());

    let a = add(&db, &["--name", "Alpha", "--grant-type", "client_credentials", "--scope", "a"]);
    let b = add(&db, &["--name", "Beta", "--auth-method", "client_secret_post", "--grant-type", "client_credentials"]);
    // A dynamically registered client is listed too.
    let d = register(&t, &json!({"client_name": "Dynamic", "grant_types": ["client_credentials"]})).await;

    let (clients, raw) = list(&db);
    let mut listed = ids(&clients);
    listed.sort();
    let mut expected =
        vec![s(&a, "client_id").to_owned(), s(&b, "client_id").to_owned(), s(&d, "client_id").to_owned()];
    expected.sort();
    assert_eq!(listed, expected);
    for c in &clients {
        assert!(c.get("client_secret").is_none(), "{c}");
        assert!(c.get("registration_access_token").is_none(), "{c}");
        if c["client_id"] == a["client_id"] {
            assert_eq!(c["client_name"], "Alpha");
            assert_eq!(c["scope"], "a");
        }
    }
    for secret in
        [s(&a, "client_secret"), s(&b, "client_secret"), s(&d, "client_secret"), s(&d, "registration_access_token")]
    {
        assert!(!raw.contains(secret), "a secret is listed");
    }
    t.stop().await;
    db.drop_now().await;
}

async fn clients_remove_revokes_the_client(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;
    let keep = add(&db, &["--name", "Keep", "--grant-type", "client_credentials"]);
    let gone = add(&db, &["--name", "Gone", "--grant-type", "client_credentials"]);
    let gone_auth = basic(s(&gone, "client_id"), s(&gone, "client_secret"));
    expect_token(post_token(&t, Some(&gone_auth), &[CC]).await).await;

    let (code, _, err) = cli(&db, &["clients", "remove", s(&gone, "client_id")]);
    assert_eq!(code, 0, "{err}");
    let res = post_token(&t, Some(&gone_auth), &[CC]).await;
    expect_error_for("removed client", res, 401, "invalid_client").await;
    assert_eq!(ids(&list(&db).0), vec![s(&keep, "client_id").to_owned()]);
    // The other client is untouched.
    let keep_auth = basic(s(&keep, "client_id"), s(&keep, "client_secret"));
    expect_token(post_token(&t, Some(&keep_auth), &[CC]).await).await;

    // Removing it again, or an id that never existed, exits 1.
    for id in [s(&gone, "client_id"), "no-such-client"] {
        let (code, _, err) = cli(&db, &["clients", "remove", id]);
        assert_eq!(code, 1, "{id}: {err}");
    }
    t.stop().await;
    db.drop_now().await;
}

async fn registration_token_issues_an_initial_access_token(store: StoreKind) {
    let db = TestDb::new(store).await;
    let configured = "configured-initial-access-token-0123456789";
    let extra =
        format!("[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"{configured}\"]\n");
    let t = TestAs::start_with(&db, Options { extra_toml: &extra, ..Options::default() }).await;
    let issue = || {
        let (code, out, err) = cli(&db, &["registration", "token"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 1, "one line: {out}");
        let token = out.trim().to_owned();
        assert!(token.len() >= 32, "{token}");
        token
    };
    let first = issue();
    let second = issue();
    assert_ne!(first, second);

    let body = json!({"grant_types": ["client_credentials"]});
    let res = post_register(&t, None, &body).await;
    expect_error(res, 401, "invalid_token").await;
    for token in [&first, &second, &configured.to_owned()] {
        let res = post_register(&t, Some(token), &body).await;
        let (status, _, reply) = read(res).await;
        assert_eq!(status, 201, "{reply}");
        // The new client works.
        expect_token(post_token(&t, Some(&basic(s(&reply, "client_id"), s(&reply, "client_secret"))), &[CC]).await)
            .await;
    }
    let res = post_register(&t, Some(&format!("{first}x")), &body).await;
    expect_error(res, 401, "invalid_token").await;
    t.stop().await;
    db.drop_now().await;
}

both_stores!(
    clients_add_prints_the_credentials_and_the_client_authenticates,
    clients_add_refuses_invalid_metadata,
    clients_list_shows_every_client_without_secrets,
    clients_remove_revokes_the_client,
    registration_token_issues_an_initial_access_token,
);
