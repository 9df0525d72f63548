//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): who may register,
//! what is validated, what is echoed, and the registration access token guarding each client; static
//! `[[clients]]` from the configuration (checklist group 2).

use serde_json::{Value, json};

use crate::both_stores;
use crate::support::assertions::{ClientKey, jwks};
use crate::support::jwks_server::{ConnCounter, JwksServer};
use crate::support::oauth::{
    OPEN, OPEN_WITH_PRIVATE_FETCH, basic, expect_error, expect_error_for, expect_token, post_register, post_token,
    read, register, s, www_authenticate,
};
use crate::support::{Options, StoreKind, TestAs, TestDb};

const INITIAL_TOKEN: &str = "iat-0123456789abcdefghijklmnopqrstuvwxyz";

async fn start(db: &TestDb, extra_toml: &str) -> TestAs {
    TestAs::start_with(db, Options { extra_toml, ..Options::default() }).await
}

async fn discovery(t: &TestAs) -> Value {
    let (status, _, doc) = t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(status, 200);
    doc
}

async fn discovery_advertises_the_token_endpoint_and_registration_only_when_open(store: StoreKind) {
    let db = TestDb::new(store).await;
    let closed = TestAs::start(&db).await;
    let doc = discovery(&closed).await;
    assert_eq!(doc["token_endpoint"], closed.url("/token"));
    assert!(doc.get("registration_endpoint").is_none(), "closed registration is not advertised: {doc}");
    assert!(doc["grant_types_supported"].as_array().unwrap().contains(&json!("client_credentials")), "{doc}");
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])
    );
    assert_eq!(doc["token_endpoint_auth_signing_alg_values_supported"], json!(["ES256", "PS256", "RS256"]));
    closed.stop().await;

    for extra in [
        OPEN.to_owned(),
        format!("[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"{INITIAL_TOKEN}\"]\n"),
    ] {
        let t = start(&db, &extra).await;
        let doc = discovery(&t).await;
        assert_eq!(doc["registration_endpoint"], t.url("/register"), "{extra}");
        assert_eq!(doc["token_endpoint"], t.url("/token"));
        t.stop().await;
    }
    db.drop_now().await;
}

async fn closed_registration_is_not_found(store: StoreKind) {
    let db = TestDb::new(store).await;
    for extra in ["", "[registration]\nmode = \"closed\"\n"] {
        let t = start(&db, extra).await;
        let body = json!({"redirect_uris": ["https://c.example/cb"]});
        expect_error(post_register(&t, None, &body).await, 404, "not_found").await;
        // Not even an initial access token opens it.
        expect_error(post_register(&t, Some(INITIAL_TOKEN), &body).await, 404, "not_found").await;
        t.stop().await;
    }
    db.drop_now().await;
}

async fn initial_access_token_mode_needs_a_valid_bearer_token(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(
        &db,
        &format!("[registration]\nmode = \"initial_access_token\"\ninitial_access_tokens = [\"{INITIAL_TOKEN}\"]\n"),
    )
    .await;
    let body = json!({"redirect_uris": ["https://c.example/cb"]});

    let (headers, _) = expect_error(post_register(&t, None, &body).await, 401, "invalid_token").await;
    assert!(www_authenticate(&headers).starts_with("Bearer"), "{headers:?}");
    let wrong = "iat-wrong-wrong-wrong-wrong-wrong-wrong-wrong";
    let (headers, _) = expect_error(post_register(&t, Some(wrong), &body).await, 401, "invalid_token").await;
    assert!(www_authenticate(&headers).starts_with("Bearer"), "{headers:?}");
    // A prefix of the right token is a wrong token.
    let prefix = INITIAL_TOKEN.get(..INITIAL_TOKEN.len() - 1).unwrap();
    expect_error(post_register(&t, Some(prefix), &body).await, 401, "invalid_token").await;
    // The token in a Basic header is not a bearer token.
    let res = t
        .http
        .post(t.url("/register"))
        .header("authorization", basic(INITIAL_TOKEN, "x"))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "invalid_token").await;

    // Authentication comes before the body is looked at.
    let res = t
        .http
        .post(t.url("/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "invalid_token").await;

    let res = post_register(&t, Some(INITIAL_TOKEN), &body).await;
    let (status, headers, reply) = read(res).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(reply["client_id"].is_string(), "{reply}");
    t.stop().await;
    db.drop_now().await;
}

async fn registration_echoes_metadata_and_defaults(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;

    // The smallest registration: every default is echoed.
    let before = t.now();
    let reply = register(&t, &json!({"redirect_uris": ["https://c.example/cb"]})).await;
    let id = s(&reply, "client_id").to_owned();
    assert_eq!(reply["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(reply["grant_types"], json!(["authorization_code"]));
    assert_eq!(reply["response_types"], json!(["code"]));
    assert_eq!(reply["redirect_uris"], json!(["https://c.example/cb"]));
    assert!(s(&reply, "client_secret").len() >= 22, "{reply}");
    assert_eq!(reply["client_secret_expires_at"], 0);
    let issued = reply["client_id_issued_at"].as_i64().expect("issued at");
    assert!(issued >= before - 5 && issued <= t.now() + 5, "{issued} vs {before}");
    assert!(!s(&reply, "registration_access_token").is_empty());
    assert_eq!(reply["registration_client_uri"], t.url(&format!("/register/{id}")));

    // Two identical registrations are two clients (HEART-OAuth2 §2.2.3).
    let again = register(&t, &json!({"redirect_uris": ["https://c.example/cb"]})).await;
    assert_ne!(again["client_id"], reply["client_id"]);
    assert_ne!(again["client_secret"], reply["client_secret"]);
    assert_ne!(again["registration_access_token"], reply["registration_access_token"]);

    // Everything a client may register comes back as registered; unknown members are dropped.
    let full = json!({
        "client_name": "Printing service",
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "client_credentials"],
        "response_types": ["code"],
        "redirect_uris": ["https://c.example/cb", "http://127.0.0.1:9000/cb"],
        "claims_redirect_uris": ["https://c.example/claims"],
        "scope": "print read",
        "foo": 1,
    });
    let reply = register(&t, &full).await;
    for (k, v) in full.as_object().unwrap() {
        if k == "foo" {
            assert!(reply.get("foo").is_none(), "unknown member echoed: {reply}");
        } else {
            assert_eq!(&reply[k], v, "`{k}` in {reply}");
        }
    }
    assert!(reply["client_secret"].is_string());
    let reply = register(&t, &json!({"redirect_uris": ["http://[::1]:8765/cb"]})).await;
    assert_eq!(reply["redirect_uris"], json!(["http://[::1]:8765/cb"]));

    // Without authorization_code, response_types defaults to none at all.
    let reply = register(&t, &json!({"grant_types": ["client_credentials"], "scope": "a"})).await;
    assert_eq!(reply["grant_types"], json!(["client_credentials"]));
    assert_eq!(reply["response_types"], json!([]));
    assert_eq!(reply["token_endpoint_auth_method"], "client_secret_basic");

    // A public client gets no secret; neither does a private_key_jwt client.
    let reply =
        register(&t, &json!({"token_endpoint_auth_method": "none", "redirect_uris": ["https://c.example/cb"]})).await;
    assert_eq!(reply["token_endpoint_auth_method"], "none");
    assert!(reply.get("client_secret").is_none(), "{reply}");
    let key = ClientKey::es256();
    let reply = register(
        &t,
        &json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials"],
            "jwks": jwks(&[&key]),
        }),
    )
    .await;
    assert!(reply.get("client_secret").is_none(), "{reply}");
    assert_eq!(reply["jwks"], jwks(&[&key]));
    t.stop().await;
    db.drop_now().await;
}

/// Every invalid registration is refused with the RFC 7591 §3.2.2 error code, and registers nothing.
async fn invalid_metadata_is_refused_with_the_right_error(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let key = ClientKey::es256();
    let mut private_jwk = key.public_jwk.clone();
    private_jwk["d"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let cc = |extra: Value| {
        let mut v = json!({"grant_types": ["client_credentials"]});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let ok_redirect = json!(["https://c.example/cb"]);
    let cases: Vec<(Value, &str)> = vec![
        // Redirect URIs (RFC 6749 §3.1.2, RFC 7591 §2).
        (json!({"redirect_uris": ["https://c.example/cb#frag"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["http://example.com/cb"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["not a uri"]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": ["/relative/cb"]}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ok_redirect, "claims_redirect_uris": ["https://c.example/claims#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ok_redirect, "claims_redirect_uris": ["http://example.com/claims"]}),
            "invalid_redirect_uri",
        ),
        (json!({"grant_types": ["authorization_code"]}), "invalid_redirect_uri"),
        (json!({}), "invalid_redirect_uri"),
        // Inconsistent or unsupported metadata.
        (cc(json!({"response_types": ["code"]})), "invalid_client_metadata"),
        (json!({"grant_types": ["urn:example:unknown"]}), "invalid_client_metadata"),
        (cc(json!({"token_endpoint_auth_method": "tls_client_auth"})), "invalid_client_metadata"),
        (
            cc(json!({
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": jwks(&[&key]),
                "jwks_uri": "https://c.example/jwks",
            })),
            "invalid_client_metadata",
        ),
        (cc(json!({"token_endpoint_auth_method": "private_key_jwt"})), "invalid_client_metadata"),
        (
            cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": key.public_jwk})),
            "invalid_client_metadata",
        ),
        (
            cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": "x"}})),
            "invalid_client_metadata",
        ),
        (
            cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [private_jwk]}})),
            "invalid_client_metadata",
        ),
        (
            cc(
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}}),
            ),
            "invalid_client_metadata",
        ),
        (cc(json!({"token_endpoint_auth_method": "none"})), "invalid_client_metadata"),
        // Software statements are not accepted.
        (
            json!({"redirect_uris": ok_redirect, "software_statement": "eyJhbGciOiJub25lIn0.e30."}),
            "unapproved_software_statement",
        ),
    ];
    for (body, error) in &cases {
        let res = post_register(&t, None, body).await;
        expect_error_for(&body.to_string(), res, 400, error).await;
    }

    // A body that is not JSON.
    let res = t
        .http
        .post(t.url("/register"))
        .header("content-type", "application/json")
        .body("{\"redirect_uris\": [")
        .send()
        .await
        .unwrap();
    expect_error(res, 400, "invalid_client_metadata").await;

    // A loopback jwks_uri is not fetched without danger_allow_private_fetch.
    let server = JwksServer::json(&jwks(&[&key])).await;
    let body = cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": server.url}));
    expect_error(post_register(&t, None, &body).await, 400, "invalid_client_metadata").await;
    assert_eq!(server.hits(), 0, "a private address was fetched");
    // Nor is any https URL whose host is a loopback address, however it is spelled: the address is
    // refused before anything is dialled (checklist A-32).
    let counter = ConnCounter::start().await;
    let port = counter.port;
    for uri in [
        format!("https://127.0.0.1:{port}/jwks"),
        format!("https://localhost:{port}/jwks"),
        format!("https://[::ffff:127.0.0.1]:{port}/jwks"),
        format!("https://2130706433:{port}/jwks"),
        format!("https://0x7f.1:{port}/jwks"),
    ] {
        let body = cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri}));
        let res = post_register(&t, None, &body).await;
        expect_error_for(&uri, res, 400, "invalid_client_metadata").await;
    }
    assert_eq!(counter.connections(), 0, "a loopback address was dialled");
    t.stop().await;

    // With it, a jwks_uri that serves something other than a JWK Set is refused …
    let t = start(&db, OPEN_WITH_PRIVATE_FETCH).await;
    for (content_type, not_a_set) in [
        ("application/json", json!({"hello": 1}).to_string()),
        ("application/json", key.public_jwk.to_string()),
        ("text/html", "<html>keys</html>".to_owned()),
    ] {
        let bad = JwksServer::raw(content_type, not_a_set.clone()).await;
        let body = cc(json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": bad.url}));
        let res = post_register(&t, None, &body).await;
        expect_error_for(&not_a_set, res, 400, "invalid_client_metadata").await;
        assert!(bad.hits() >= 1, "the jwks_uri was not fetched");
    }
    // A redirect is not followed, even to the good JWK Set.
    let hits = server.hits();
    let redirecting = cc(json!({
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": server.url_of("/redirect"),
    }));
    let res = post_register(&t, None, &redirecting).await;
    expect_error_for("a redirect", res, 400, "invalid_client_metadata").await;
    assert_eq!(server.hits(), hits, "the redirect was followed");
    // … and the good one is accepted (the control for the cases above).
    let reply = register(&t, &body).await;
    assert_eq!(reply["jwks_uri"], server.url);
    assert!(server.hits() >= 1);
    t.stop().await;
    db.drop_now().await;
}

async fn registration_management_reads_updates_and_deletes(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let reply = register(
        &t,
        &json!({
            "client_name": "A",
            "grant_types": ["client_credentials"],
            "scope": "read write",
        }),
    )
    .await;
    let id = s(&reply, "client_id").to_owned();
    let secret = s(&reply, "client_secret").to_owned();
    let rat = s(&reply, "registration_access_token").to_owned();
    let uri = s(&reply, "registration_client_uri").to_owned();
    assert_eq!(uri, t.url(&format!("/register/{id}")));

    // GET: the registration, without the secrets.
    let res = t.http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    let (status, headers, read_back) = read(res).await;
    assert_eq!(status, 200, "{read_back}");
    assert_eq!(headers["cache-control"], "no-store");
    let mut expected = reply.clone();
    let obj = expected.as_object_mut().unwrap();
    obj.remove("client_secret");
    obj.remove("registration_access_token");
    assert_eq!(read_back, expected);

    // PUT: must name the client, must not carry server-issued members, cannot switch the method.
    let put = |body: Value| {
        let (uri, rat) = (uri.clone(), rat.clone());
        let http = t.http.clone();
        async move { http.put(&uri).bearer_auth(&rat).json(&body).send().await.unwrap() }
    };
    let base = json!({"client_id": id, "grant_types": ["client_credentials"], "scope": "read"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let mut without_id = base.clone();
    without_id.as_object_mut().unwrap().remove("client_id");
    for (body, error) in [
        (with("client_id", json!("someone-else")), "invalid_request"),
        (without_id, "invalid_request"),
        (with("registration_access_token", json!(rat)), "invalid_request"),
        (with("registration_client_uri", json!(uri)), "invalid_request"),
        (with("client_id_issued_at", reply["client_id_issued_at"].clone()), "invalid_request"),
        (with("client_secret_expires_at", json!(0)), "invalid_request"),
        (with("token_endpoint_auth_method", json!("client_secret_post")), "invalid_client_metadata"),
        (with("redirect_uris", json!(["https://c.example/cb#f"])), "invalid_redirect_uri"),
    ] {
        let res = put(body.clone()).await;
        expect_error_for(&body.to_string(), res, 400, error).await;
    }
    // The refused updates changed nothing.
    let res = t.http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(read(res).await.2, expected);

    // A valid update replaces the metadata; what it omits (client_name) reverts to the default.
    let res = put(base.clone()).await;
    let (status, headers, updated) = read(res).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(updated["client_id"], id);
    assert_eq!(updated["scope"], "read");
    assert_eq!(updated["grant_types"], json!(["client_credentials"]));
    assert_eq!(updated["token_endpoint_auth_method"], "client_secret_basic");
    assert!(updated.get("client_name").is_none(), "{updated}");
    let res = t.http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    let (_, _, now) = read(res).await;
    assert_eq!(now["scope"], "read");
    assert!(now.get("client_name").is_none(), "{now}");
    // The new scope is what the token endpoint enforces.
    let auth = basic(&id, &secret);
    let res = post_token(&t, Some(&auth), &[("grant_type", "client_credentials"), ("scope", "write")]).await;
    expect_error(res, 400, "invalid_scope").await;
    let tok = expect_token(post_token(&t, Some(&auth), &[("grant_type", "client_credentials")]).await).await;
    assert_eq!(tok["scope"], "read");

    // DELETE: 204, then the client and its registration access token are gone.
    let res = t.http.delete(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = post_token(&t, Some(&auth), &[("grant_type", "client_credentials")]).await;
    expect_error(res, 401, "invalid_client").await;
    let res = t.http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    expect_error(res, 401, "invalid_token").await;
    let res = t.http.delete(&uri).bearer_auth(&rat).send().await.unwrap();
    expect_error(res, 401, "invalid_token").await;
    t.stop().await;
    db.drop_now().await;
}

/// A wrong, missing or foreign registration access token, or an unknown client id, all get the same
/// 401: the endpoint tells nothing about which clients exist.
async fn registration_management_refuses_wrong_tokens_alike(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let a = register(&t, &json!({"grant_types": ["client_credentials"]})).await;
    let b = register(&t, &json!({"grant_types": ["client_credentials"]})).await;
    let a_uri = s(&a, "registration_client_uri").to_owned();
    let a_rat = s(&a, "registration_access_token").to_owned();
    let b_rat = s(&b, "registration_access_token").to_owned();
    let unknown_uri = t.url("/register/no-such-client");

    let attempts: Vec<(&str, &str, Option<&str>)> = vec![
        ("missing token", a_uri.as_str(), None),
        ("wrong token", a_uri.as_str(), Some("not-the-registration-token")),
        ("another client's token", a_uri.as_str(), Some(b_rat.as_str())),
        ("unknown client", unknown_uri.as_str(), Some(a_rat.as_str())),
        ("unknown client, no token", unknown_uri.as_str(), None),
        ("client secret as token", a_uri.as_str(), Some(s(&a, "client_secret"))),
    ];
    let mut bodies = Vec::new();
    for (what, uri, token) in attempts {
        for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE] {
            let mut req = t.http.request(method.clone(), uri);
            if let Some(tok) = token {
                req = req.bearer_auth(tok);
            }
            if method == reqwest::Method::PUT {
                req = req.json(&json!({"client_id": a["client_id"], "grant_types": ["client_credentials"]}));
            }
            let res = req.send().await.unwrap();
            let (status, headers, body) = read(res).await;
            assert_eq!(
                (status.as_u16(), body["error"].as_str()),
                (401, Some("invalid_token")),
                "{what}, {method}: {body}"
            );
            assert_eq!(headers["cache-control"], "no-store", "{what}");
            assert!(
                www_authenticate(&headers).starts_with("Bearer"),
                "{what}, {method}: RFC 6750 §3 asks for WWW-Authenticate: {headers:?}"
            );
            bodies.push((what, body));
        }
    }
    let first = bodies[0].1.clone();
    for (what, body) in &bodies {
        assert_eq!(body, &first, "{what} answers differently: an existence oracle");
    }

    // Nothing was deleted by the refused DELETEs.
    let res = t.http.get(&a_uri).bearer_auth(&a_rat).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let b_uri = s(&b, "registration_client_uri");
    let res = t.http.get(b_uri).bearer_auth(&b_rat).send().await.unwrap();
    assert_eq!(res.status(), 200);
    t.stop().await;
    db.drop_now().await;
}

/// `[[clients]]` in the configuration authenticate like registered ones, with every method that
/// carries a credential.
async fn static_clients_from_the_configuration_authenticate(store: StoreKind) {
    let db = TestDb::new(store).await;
    let key = ClientKey::es256();
    // Characters that RFC 6749 §2.3.1 form-encodes inside the Basic header.
    let basic_secret = "s3cret+with/special:chars=and%more 0123456789";
    let post_secret = "post-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    let extra = format!(
        r#"
[[clients]]
client_id = "static-basic"
client_secret = "{basic_secret}"
grant_types = ["client_credentials"]
scope = "read write"
client_name = "Static basic"

[[clients]]
client_id = "static-post"
client_secret = "{post_secret}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
scope = "read"

[[clients]]
client_id = "static-jwt"
token_endpoint_auth_method = "private_key_jwt"
grant_types = ["client_credentials"]
scope = "jwt"
jwks = '{}'

[[clients]]
client_id = "static-web"
client_secret = "{post_secret}"
redirect_uris = ["https://web.example/cb"]
claims_redirect_uris = ["https://web.example/claims"]
"#,
        jwks(&[&key])
    );
    let t = start(&db, &extra).await;

    let tok = expect_token(
        post_token(&t, Some(&basic("static-basic", basic_secret)), &[("grant_type", "client_credentials")]).await,
    )
    .await;
    assert_eq!(tok["scope"], "read write");
    let res = post_token(
        &t,
        Some(&basic("static-basic", "s3cret+with/special:chars=and%more 012345678")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    expect_error(res, 401, "invalid_client").await;

    let tok = expect_token(
        post_token(
            &t,
            None,
            &[("grant_type", "client_credentials"), ("client_id", "static-post"), ("client_secret", post_secret)],
        )
        .await,
    )
    .await;
    assert_eq!(tok["scope"], "read");

    let assertion = key.sign(&crate::support::assertions::claims("static-jwt", json!(t.url("/token")), t.now()));
    let tok = expect_token(
        post_token(
            &t,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", crate::support::assertions::JWT_BEARER),
                ("client_assertion", &assertion),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(tok["scope"], "jwt");

    // A static client without client_credentials authenticates but may not use the grant.
    let res = post_token(&t, Some(&basic("static-web", post_secret)), &[("grant_type", "client_credentials")]).await;
    expect_error(res, 400, "unauthorized_client").await;
    t.stop().await;

    // The operator rotates a secret in the file: after a restart only the new one works.
    let rotated = "rotated-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    let t = start(&db, &extra.replace(basic_secret, rotated)).await;
    let res = post_token(&t, Some(&basic("static-basic", basic_secret)), &[("grant_type", "client_credentials")]).await;
    expect_error_for("the old static secret", res, 401, "invalid_client").await;
    expect_token(post_token(&t, Some(&basic("static-basic", rotated)), &[("grant_type", "client_credentials")]).await)
        .await;
    t.stop().await;
    db.drop_now().await;
}

/// The configuration file is the truth for its clients: one removed from the file is gone after the
/// next start, and its tokens with it.
async fn a_client_removed_from_the_configuration_is_deleted_at_the_next_start(store: StoreKind) {
    let db = TestDb::new(store).await;
    let secret = "removed-later-0123456789abcdefghijkl";
    let with = format!(
        "[[clients]]\nclient_id = \"keep\"\nclient_secret = \"{secret}\"\ngrant_types = [\"client_credentials\"]\n\
         [[clients]]\nclient_id = \"drop\"\nclient_secret = \"{secret}\"\ngrant_types = [\"client_credentials\"]\n"
    );
    let t = start(&db, &with).await;
    let tok =
        expect_token(post_token(&t, Some(&basic("drop", secret)), &[("grant_type", "client_credentials")]).await).await;
    assert!(tok["access_token"].is_string());
    t.stop().await;

    let without = format!(
        "[[clients]]\nclient_id = \"keep\"\nclient_secret = \"{secret}\"\ngrant_types = [\"client_credentials\"]\n"
    );
    let t = start(&db, &without).await;
    expect_token(post_token(&t, Some(&basic("keep", secret)), &[("grant_type", "client_credentials")]).await).await;
    let res = post_token(&t, Some(&basic("drop", secret)), &[("grant_type", "client_credentials")]).await;
    expect_error(res, 401, "invalid_client").await;
    t.stop().await;
    db.drop_now().await;
}

both_stores!(
    a_client_removed_from_the_configuration_is_deleted_at_the_next_start,
    discovery_advertises_the_token_endpoint_and_registration_only_when_open,
    closed_registration_is_not_found,
    initial_access_token_mode_needs_a_valid_bearer_token,
    registration_echoes_metadata_and_defaults,
    invalid_metadata_is_refused_with_the_right_error,
    registration_management_reads_updates_and_deletes,
    registration_management_refuses_wrong_tokens_alike,
    static_clients_from_the_configuration_authenticate,
);
