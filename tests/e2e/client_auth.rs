//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 `private_key_jwt`, public
//! clients) through the client_credentials grant (RFC 6749 §4.4): each method works, each client is
//! held to its registered method, forged and replayed assertions are refused — on every node — and no
//! credential reaches the log (checklist group 2, threats R1, V41).

use std::collections::BTreeSet;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::both_stores;
use crate::support::assertions::{ClientKey, JWT_BEARER, claims, hs256, jwks, unsigned};
use crate::support::jwks_server::JwksServer;
use crate::support::oauth::{
    FORM, OPEN, OPEN_WITH_PRIVATE_FETCH, basic, expect_error, expect_error_for, expect_token, form, post_token, read,
    register, s, unix_now, www_authenticate,
};
use crate::support::process::{sigterm, spawn_serving_with};
use crate::support::{Options, StoreKind, TestAs, TestDb, write_config};

const CC: (&str, &str) = ("grant_type", "client_credentials");

/// A named client assertion and the extra form parameters sent with it.
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
const BASIC_CHALLENGE: &str = "Basic realm=\"tessera\"";

async fn start(db: &TestDb, extra_toml: &str) -> TestAs {
    TestAs::start_with(db, Options { extra_toml, ..Options::default() }).await
}

/// Registers a client_credentials client with scope "read write" and the given method (plus `extra`
/// metadata); returns the registration response.
async fn register_cc(t: &TestAs, method: &str, extra: Value) -> Value {
    let mut body = json!({
        "token_endpoint_auth_method": method,
        "grant_types": ["client_credentials"],
        "scope": "read write",
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    register(t, &body).await
}

async fn with_assertion(t: &TestAs, assertion: &str, more: &[(&str, &str)]) -> reqwest::Response {
    let mut pairs = vec![CC, ("client_assertion_type", JWT_BEARER), ("client_assertion", assertion)];
    pairs.extend_from_slice(more);
    post_token(t, None, &pairs).await
}

fn scopes(v: &Value) -> BTreeSet<String> {
    s(v, "scope").split(' ').map(str::to_owned).collect()
}

async fn client_secret_basic_authenticates(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let c = register_cc(&t, "client_secret_basic", json!({})).await;
    let auth = basic(s(&c, "client_id"), s(&c, "client_secret"));

    let first = expect_token(post_token(&t, Some(&auth), &[CC]).await).await;
    assert_eq!(scopes(&first), scopes(&json!({"scope": "read write"})));
    let second = expect_token(post_token(&t, Some(&auth), &[CC]).await).await;
    assert_ne!(first["access_token"], second["access_token"]);

    // A subset of the registered scope, in any order.
    let tok = expect_token(post_token(&t, Some(&auth), &[CC, ("scope", "read")]).await).await;
    assert_eq!(tok["scope"], "read");
    let tok = expect_token(post_token(&t, Some(&auth), &[CC, ("scope", "write read")]).await).await;
    assert_eq!(scopes(&tok), scopes(&first));
    for beyond in ["admin", "read admin", "rea"] {
        let res = post_token(&t, Some(&auth), &[CC, ("scope", beyond)]).await;
        expect_error_for(beyond, res, 400, "invalid_scope").await;
    }

    // A client without a registered scope gets a token without one, and may ask for none.
    let bare = register_cc(&t, "client_secret_basic", json!({})).await;
    let bare =
        register(&t, &json!({"grant_types": ["client_credentials"], "client_name": s(&bare, "client_id")})).await;
    let bare_auth = basic(s(&bare, "client_id"), s(&bare, "client_secret"));
    let tok = expect_token(post_token(&t, Some(&bare_auth), &[CC]).await).await;
    assert!(tok.get("scope").is_none(), "{tok}");
    let res = post_token(&t, Some(&bare_auth), &[CC, ("scope", "read")]).await;
    expect_error(res, 400, "invalid_scope").await;

    // A wrong secret, or an unknown client, gets 401 with the Basic challenge.
    let id = s(&c, "client_id");
    let secret = s(&c, "client_secret");
    let truncated = secret.get(..secret.len() - 1).unwrap();
    for (case, auth) in [
        ("wrong secret", basic(id, "wrong-secret-0123456789abcdefghijklmnop")),
        ("truncated secret", basic(id, truncated)),
        ("secret with a suffix", basic(id, &format!("{secret}x"))),
        ("empty secret", basic(id, "")),
        ("unknown client", basic("no-such-client", secret)),
        ("malformed Basic header", "Basic !!!not-base64".to_owned()),
    ] {
        let res = post_token(&t, Some(&auth), &[CC]).await;
        let (headers, _) = expect_error_for(case, res, 401, "invalid_client").await;
        assert_eq!(www_authenticate(&headers), BASIC_CHALLENGE, "{case}");
    }
    t.stop().await;
    db.drop_now().await;
}

async fn client_secret_post_authenticates(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let c = register_cc(&t, "client_secret_post", json!({})).await;
    let (id, secret) = (s(&c, "client_id"), s(&c, "client_secret"));

    let tok = expect_token(
        post_token(&t, None, &[CC, ("client_id", id), ("client_secret", secret), ("scope", "write")]).await,
    )
    .await;
    assert_eq!(tok["scope"], "write");

    for (case, pairs) in [
        ("wrong secret", vec![CC, ("client_id", id), ("client_secret", "wrong-secret-0123456789abcdefghij")]),
        ("no secret", vec![CC, ("client_id", id)]),
        ("unknown client", vec![CC, ("client_id", "no-such-client"), ("client_secret", secret)]),
        ("no client at all", vec![CC]),
    ] {
        let res = post_token(&t, None, &pairs).await;
        expect_error_for(case, res, 401, "invalid_client").await;
    }
    t.stop().await;
    db.drop_now().await;
}

/// ES256, RS256 and PS256 keys from an inline `jwks`; the audience may be the token endpoint or the
/// issuer, alone or in an array.
async fn private_key_jwt_authenticates_with_an_inline_jwks(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let (es, rs, ps) = (ClientKey::es256(), ClientKey::rs256(), ClientKey::ps256());
    let c = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&es, &rs, &ps])})).await;
    assert!(c.get("client_secret").is_none(), "{c}");
    let id = s(&c, "client_id");

    let token_url = t.url("/token");
    for key in [&es, &rs, &ps] {
        for aud in
            [json!(token_url), json!(t.base), json!([token_url]), json!(["https://someone-else.example", t.base])]
        {
            let assertion = key.sign(&claims(id, aud.clone(), t.now()));
            let tok = expect_token(with_assertion(&t, &assertion, &[]).await).await;
            assert_eq!(scopes(&tok), scopes(&json!({"scope": "read write"})), "{aud}");
        }
    }
    // The client_id may also be sent, when it matches.
    let assertion = es.sign(&claims(id, json!(token_url), t.now()));
    let tok = expect_token(with_assertion(&t, &assertion, &[("client_id", id), ("scope", "read")]).await).await;
    assert_eq!(tok["scope"], "read");
    t.stop().await;
    db.drop_now().await;
}

/// The client's keys come from its own web server (`jwks_uri`), fetched on a loopback address that
/// only `danger_allow_private_fetch` allows.
async fn private_key_jwt_authenticates_with_a_jwks_uri(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN_WITH_PRIVATE_FETCH).await;
    let key = ClientKey::rs256();
    let server = JwksServer::json(&jwks(&[&key])).await;
    let c = register_cc(&t, "private_key_jwt", json!({"jwks_uri": server.url})).await;
    assert_eq!(c["jwks_uri"], server.url);
    let id = s(&c, "client_id");

    let assertion = key.sign(&claims(id, json!(t.url("/token")), t.now()));
    expect_token(with_assertion(&t, &assertion, &[]).await).await;
    assert!(server.hits() >= 1, "the jwks_uri was never fetched");

    // A key the client does not publish is still refused.
    let other = ClientKey::rs256();
    let assertion = other.sign(&claims(id, json!(t.url("/token")), t.now()));
    expect_error(with_assertion(&t, &assertion, &[]).await, 401, "invalid_client").await;
    t.stop().await;
    db.drop_now().await;
}

/// `none` identifies a public client by its client_id alone; such a client may not use
/// client_credentials, so a successful identification ends in `unauthorized_client`.
async fn none_identifies_public_clients_only(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let public =
        register(&t, &json!({"token_endpoint_auth_method": "none", "redirect_uris": ["https://app.example/cb"]})).await;
    assert!(public.get("client_secret").is_none(), "{public}");
    let pid = s(&public, "client_id");
    let confidential = register_cc(&t, "client_secret_basic", json!({})).await;
    let cid = s(&confidential, "client_id");

    let res = post_token(&t, None, &[CC, ("client_id", pid)]).await;
    expect_error(res, 400, "unauthorized_client").await;
    let res = post_token(&t, None, &[("grant_type", "password"), ("client_id", pid)]).await;
    expect_error(res, 400, "unsupported_grant_type").await;

    for (case, pairs) in [
        (
            "public client with a secret",
            vec![CC, ("client_id", pid), ("client_secret", "made-up-secret-0123456789abcdef")],
        ),
        ("confidential client without its secret", vec![CC, ("client_id", cid)]),
        ("unknown client", vec![CC, ("client_id", "no-such-client")]),
    ] {
        let res = post_token(&t, None, &pairs).await;
        expect_error_for(case, res, 401, "invalid_client").await;
    }
    t.stop().await;
    db.drop_now().await;
}

/// A client authenticates with exactly the method it registered (checklist R7591-2-e).
async fn a_client_must_use_its_registered_method(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let b = register_cc(&t, "client_secret_basic", json!({})).await;
    let p = register_cc(&t, "client_secret_post", json!({})).await;
    let key = ClientKey::es256();
    let j = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&key])})).await;
    let (bid, bsecret) = (s(&b, "client_id"), s(&b, "client_secret"));
    let (pid, psecret) = (s(&p, "client_id"), s(&p, "client_secret"));
    let jid = s(&j, "client_id");
    let made_up = "made-up-secret-0123456789abcdefghijklmn";

    // Basic-registered client using the body.
    let res = post_token(&t, None, &[CC, ("client_id", bid), ("client_secret", bsecret)]).await;
    expect_error_for("basic client via post", res, 401, "invalid_client").await;
    // Post-registered client using Basic.
    let res = post_token(&t, Some(&basic(pid, psecret)), &[CC]).await;
    let (headers, _) = expect_error_for("post client via basic", res, 401, "invalid_client").await;
    assert_eq!(www_authenticate(&headers), BASIC_CHALLENGE);
    // A secret presented for a private_key_jwt client, either way.
    let res = post_token(&t, None, &[CC, ("client_id", jid), ("client_secret", made_up)]).await;
    expect_error_for("jwt client via post", res, 401, "invalid_client").await;
    let res = post_token(&t, Some(&basic(jid, made_up)), &[CC]).await;
    let (headers, _) = expect_error_for("jwt client via basic", res, 401, "invalid_client").await;
    assert_eq!(www_authenticate(&headers), BASIC_CHALLENGE);
    // A secret client signing an assertion (with a key it never registered).
    let assertion = key.sign(&claims(bid, json!(t.url("/token")), t.now()));
    let res = with_assertion(&t, &assertion, &[]).await;
    expect_error_for("basic client via assertion", res, 401, "invalid_client").await;

    // Each with its own method works (the control).
    expect_token(post_token(&t, Some(&basic(bid, bsecret)), &[CC]).await).await;
    expect_token(post_token(&t, None, &[CC, ("client_id", pid), ("client_secret", psecret)]).await).await;
    let assertion = key.sign(&claims(jid, json!(t.url("/token")), t.now()));
    expect_token(with_assertion(&t, &assertion, &[]).await).await;
    t.stop().await;
    db.drop_now().await;
}

/// Assertions that are stale, misaddressed, unsigned, signed with the wrong thing or on behalf of
/// another client are all refused with 401 `invalid_client`.
async fn forged_and_stale_assertions_are_refused(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let (a_key, b_key) = (ClientKey::es256(), ClientKey::rs256());
    let a = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&a_key])})).await;
    let b = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&b_key])})).await;
    let (aid, bid) = (s(&a, "client_id"), s(&b, "client_id"));
    let aud = json!(t.url("/token"));
    let now = t.now();
    let honest = || claims(aid, aud.clone(), now);
    let with = |k: &str, v: Value| {
        let mut c = honest();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = honest();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let stranger = ClientKey::es256();
    let a_jwk = a_key.public_jwk.to_string();
    let b_jwk = b_key.public_jwk.to_string();
    let b_n = s(&b_key.public_jwk, "n").to_owned();
    let b_n_bytes = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&b_n).unwrap()
    };
    let tampered = {
        let good = a_key.sign(&honest());
        let parts: Vec<&str> = good.split('.').collect();
        let evil = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(with("sub", json!(bid)).to_string())
        };
        format!("{}.{evil}.{}", parts[0], parts[2])
    };

    let cases: Vec<Case> = vec![
        ("expired", a_key.sign(&with("exp", json!(now - 300))), vec![]),
        ("exp too far ahead", a_key.sign(&with("exp", json!(now + 3600))), vec![]),
        ("exp just beyond 600 s", a_key.sign(&with("exp", json!(now + 700))), vec![]),
        // The largest `exp` there is must not overflow the skew arithmetic.
        ("exp at i64::MAX", a_key.sign(&with("exp", json!(i64::MAX))), vec![]),
        ("exp at i64::MIN", a_key.sign(&with("exp", json!(i64::MIN))), vec![]),
        ("no exp", a_key.sign(&without("exp")), vec![]),
        ("no jti", a_key.sign(&without("jti")), vec![]),
        ("wrong aud", a_key.sign(&with("aud", json!("https://elsewhere.example/token"))), vec![]),
        ("aud is another endpoint", a_key.sign(&with("aud", json!(t.url("/register")))), vec![]),
        ("no aud", a_key.sign(&without("aud")), vec![]),
        ("aud is the issuer with a trailing slash", a_key.sign(&with("aud", json!(format!("{}/", t.base)))), vec![]),
        (
            "RS512, not an advertised algorithm",
            b_key.sign_alg(&claims(bid, aud.clone(), now), Algorithm::RS512),
            vec![],
        ),
        (
            "RS384, not an advertised algorithm",
            b_key.sign_alg(&claims(bid, aud.clone(), now), Algorithm::RS384),
            vec![],
        ),
        ("unknown kid", stranger.sign(&honest()), vec![]),
        ("the right kid, another key", stranger.sign_as(&honest(), &a_key.kid), vec![]),
        ("alg none", unsigned(&honest(), &a_key.kid), vec![]),
        ("HS256 keyed with the public key PEM", hs256(&honest(), &a_key.kid, a_key.public_pem().as_bytes()), vec![]),
        ("HS256 keyed with the public JWK", hs256(&honest(), &a_key.kid, a_jwk.as_bytes()), vec![]),
        (
            "HS256 keyed with the RSA modulus (text)",
            hs256(&claims(bid, aud.clone(), now), &b_key.kid, b_n.as_bytes()),
            vec![],
        ),
        (
            "HS256 keyed with the RSA modulus (bytes)",
            hs256(&claims(bid, aud.clone(), now), &b_key.kid, &b_n_bytes),
            vec![],
        ),
        (
            "HS256 keyed with the RSA public JWK",
            hs256(&claims(bid, aud.clone(), now), &b_key.kid, b_jwk.as_bytes()),
            vec![],
        ),
        ("iss = sub = another client, signed with my key", a_key.sign(&claims(bid, aud.clone(), now)), vec![]),
        (
            "iss = sub = another client, my kid, my client_id",
            a_key.sign(&claims(bid, aud.clone(), now)),
            vec![("client_id", aid)],
        ),
        ("my assertion, another client_id", a_key.sign(&honest()), vec![("client_id", bid)]),
        ("sub is another client", a_key.sign(&with("sub", json!(bid))), vec![]),
        ("iss is another client", a_key.sign(&with("iss", json!(bid))), vec![]),
        ("tampered payload", tampered, vec![]),
        ("not a JWT", "not.a.jwt".to_owned(), vec![]),
    ];
    for (case, assertion, more) in &cases {
        let res = with_assertion(&t, assertion, more).await;
        expect_error_for(case, res, 401, "invalid_client").await;
    }

    // The same keys with honest claims still work: each refusal above was for its own reason. An
    // expiry close to the 600 s bound is fine.
    expect_token(with_assertion(&t, &a_key.sign(&honest()), &[]).await).await;
    expect_token(with_assertion(&t, &a_key.sign(&with("exp", json!(now + 590))), &[]).await).await;
    let b_honest = claims(bid, aud.clone(), now);
    expect_token(with_assertion(&t, &b_key.sign(&b_honest), &[]).await).await;
    t.stop().await;
    db.drop_now().await;
}

/// A client assertion's `jti` is single use (threats R1, V41): the same assertion, or a new one
/// reusing its `jti`, is refused.
async fn a_replayed_assertion_is_refused(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let key = ClientKey::es256();
    let c = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&key])})).await;
    let id = s(&c, "client_id");
    let first = claims(id, json!(t.url("/token")), t.now());
    let assertion = key.sign(&first);

    expect_token(with_assertion(&t, &assertion, &[]).await).await;
    let res = with_assertion(&t, &assertion, &[]).await;
    expect_error_for("the same assertion again", res, 401, "invalid_client").await;
    let mut reused = claims(id, json!(t.base), t.now());
    reused["jti"] = first["jti"].clone();
    reused["exp"] = json!(t.now() + 120);
    let res = with_assertion(&t, &key.sign(&reused), &[]).await;
    expect_error_for("a new assertion with a used jti", res, 401, "invalid_client").await;

    // Concurrent replays: exactly one of several simultaneous uses of a fresh assertion succeeds.
    let fresh = key.sign(&claims(id, json!(t.url("/token")), t.now()));
    let body = form(&[CC, ("client_assertion_type", JWT_BEARER), ("client_assertion", &fresh)]);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = t.http.post(t.url("/token")).header("content-type", FORM).body(body.clone());
        set.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses: Vec<u16> = set.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");

    // The client is not locked out: a new jti works.
    let next = key.sign(&claims(id, json!(t.url("/token")), t.now()));
    expect_token(with_assertion(&t, &next, &[]).await).await;
    t.stop().await;
    db.drop_now().await;
}

/// Two nodes on one database: an assertion used on one is refused on the other.
async fn a_replayed_assertion_is_refused_by_another_node(store: StoreKind) {
    let db = TestDb::new(store).await;
    let (a, b) = (start(&db, OPEN).await, start(&db, OPEN).await);
    let key = ClientKey::es256();
    let c = register_cc(&a, "private_key_jwt", json!({"jwks": jwks(&[&key])})).await;
    let id = s(&c, "client_id");
    // An audience both nodes accept, so only the jti can make the difference.
    let aud = json!([a.url("/token"), b.url("/token")]);

    let assertion = key.sign(&claims(id, aud.clone(), a.now()));
    expect_token(with_assertion(&a, &assertion, &[]).await).await;
    let res = with_assertion(&b, &assertion, &[]).await;
    expect_error_for("replayed on the second node", res, 401, "invalid_client").await;

    // The other way round, and the control: a fresh assertion of the same shape works on node b.
    let second = key.sign(&claims(id, aud.clone(), b.now()));
    expect_token(with_assertion(&b, &second, &[]).await).await;
    let res = with_assertion(&a, &second, &[]).await;
    expect_error_for("replayed on the first node", res, 401, "invalid_client").await;
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

/// RFC 6749 §2.3: a client MUST NOT use more than one authentication method in a request.
async fn two_methods_at_once_are_an_invalid_request(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let c = register_cc(&t, "client_secret_basic", json!({})).await;
    let (id, secret) = (s(&c, "client_id"), s(&c, "client_secret"));
    let key = ClientKey::es256();
    let j = register_cc(&t, "private_key_jwt", json!({"jwks": jwks(&[&key])})).await;
    let jid = s(&j, "client_id");
    let auth = basic(id, secret);

    let res = post_token(&t, Some(&auth), &[CC, ("client_secret", secret)]).await;
    expect_error_for("basic + body secret", res, 400, "invalid_request").await;
    let res = post_token(&t, Some(&auth), &[CC, ("client_id", id), ("client_secret", secret)]).await;
    expect_error_for("basic + client_secret_post", res, 400, "invalid_request").await;
    let assertion = key.sign(&claims(jid, json!(t.url("/token")), t.now()));
    let res =
        post_token(&t, Some(&auth), &[CC, ("client_assertion_type", JWT_BEARER), ("client_assertion", &assertion)])
            .await;
    expect_error_for("basic + assertion", res, 400, "invalid_request").await;
    let res = with_assertion(&t, &assertion, &[("client_secret", secret)]).await;
    expect_error_for("assertion + body secret", res, 400, "invalid_request").await;

    // Basic alone works (the control).
    expect_token(post_token(&t, Some(&auth), &[CC]).await).await;
    t.stop().await;
    db.drop_now().await;
}

/// The token endpoint's request format: form bodies only, no repeated parameters, empty parameters
/// are absent, a Bearer header is not client authentication, only client_credentials for now.
async fn the_token_endpoint_reads_exactly_one_form(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = start(&db, OPEN).await;
    let c = register_cc(&t, "client_secret_basic", json!({})).await;
    let (id, secret) = (s(&c, "client_id"), s(&c, "client_secret"));
    let p = register_cc(&t, "client_secret_post", json!({})).await;
    let (pid, psecret) = (s(&p, "client_id"), s(&p, "client_secret"));
    let auth = basic(id, secret);
    let post = |content_type: Option<&'static str>, body: String| {
        let mut req = t.http.post(t.url("/token")).header("authorization", auth.clone()).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };

    // A missing Content-Type is read as a form; a charset parameter is fine.
    expect_token(post(None, "grant_type=client_credentials".into()).await.unwrap()).await;
    expect_token(
        post(Some("application/x-www-form-urlencoded; charset=UTF-8"), "grant_type=client_credentials".into())
            .await
            .unwrap(),
    )
    .await;
    // Anything else is not.
    let res = post(Some("application/json"), json!({"grant_type": "client_credentials"}).to_string()).await.unwrap();
    expect_error_for("JSON body", res, 400, "invalid_request").await;
    let res = post(Some("text/plain"), "grant_type=client_credentials".into()).await.unwrap();
    expect_error_for("text/plain", res, 400, "invalid_request").await;

    // A repeated parameter is refused, even with equal values.
    for (case, body) in [
        ("grant_type twice", "grant_type=client_credentials&grant_type=client_credentials"),
        ("scope twice", "grant_type=client_credentials&scope=read&scope=write"),
    ] {
        let res = post(Some(FORM), body.into()).await.unwrap();
        expect_error_for(case, res, 400, "invalid_request").await;
    }
    let res = post_token(&t, None, &[CC, ("client_id", pid), ("client_id", pid), ("client_secret", psecret)]).await;
    expect_error_for("client_id twice", res, 400, "invalid_request").await;

    // Empty parameters are absent: no scope means the registered one, an empty client_secret or
    // client_assertion is not a second method.
    let tok = expect_token(post_token(&t, Some(&auth), &[CC, ("scope", "")]).await).await;
    assert_eq!(scopes(&tok), scopes(&json!({"scope": "read write"})));
    expect_token(post_token(&t, Some(&auth), &[CC, ("client_secret", "")]).await).await;
    expect_token(post_token(&t, Some(&auth), &[CC, ("client_id", "")]).await).await;
    expect_token(post_token(&t, Some(&auth), &[CC, ("client_assertion", ""), ("client_assertion_type", "")]).await)
        .await;
    // An empty grant_type is a missing one, not client_credentials.
    let res = post_token(&t, Some(&auth), &[("grant_type", ""), ("scope", "read")]).await;
    let (status, _, body) = read(res).await;
    assert_eq!(status, 400, "{body}");

    // A Bearer header is not client authentication: ignored next to client_secret_post …
    let res = t
        .http
        .post(t.url("/token"))
        .bearer_auth("some-access-token")
        .header("content-type", FORM)
        .body(form(&[CC, ("client_id", pid), ("client_secret", psecret)]))
        .send()
        .await
        .unwrap();
    expect_token(res).await;
    // … and no authentication on its own.
    let res = t
        .http
        .post(t.url("/token"))
        .bearer_auth(secret)
        .header("content-type", FORM)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    expect_error(res, 401, "invalid_client").await;

    // Grants Tessera does not serve. (The code, refresh and UMA grants are left out: they arrive
    // with later issues and then answer for themselves.)
    for grant in [
        "password",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:example:made-up",
    ] {
        let res = post_token(&t, Some(&auth), &[("grant_type", grant), ("code", "x")]).await;
        expect_error_for(grant, res, 400, "unsupported_grant_type").await;
    }

    // A client that did not register client_credentials may not use it.
    let web = register(&t, &json!({"redirect_uris": ["https://web.example/cb"], "scope": "read"})).await;
    let res = post_token(&t, Some(&basic(s(&web, "client_id"), s(&web, "client_secret"))), &[CC]).await;
    expect_error(res, 400, "unauthorized_client").await;
    // The token endpoint reads bodies up to 256 KiB (pushed assertions), not more. A fresh
    // connection each: the server may close one whose body it refused to read.
    let big = "a".repeat(200 * 1024);
    let fresh = || reqwest::Client::builder().build().unwrap();
    let res = fresh()
        .post(t.url("/token"))
        .header("content-type", FORM)
        .body(form(&[CC, ("client_assertion_type", JWT_BEARER), ("client_assertion", &big)]))
        .send()
        .await
        .unwrap();
    expect_error_for("a 200 KiB assertion", res, 401, "invalid_client").await;
    let res = fresh()
        .post(t.url("/token"))
        .header("content-type", FORM)
        .body(format!("grant_type=client_credentials&x={}", "a".repeat(256 * 1024)))
        .send()
        .await
        .unwrap();
    expect_error_for("a body over 256 KiB", res, 413, "invalid_request").await;
    t.stop().await;
    db.drop_now().await;
}

/// The real binary at debug level, JSON logs: a registration, a client_secret_basic and a
/// private_key_jwt authentication, a failed one, then SIGTERM. No secret, registration access token,
/// access token or client assertion appears anywhere on stderr.
#[tokio::test]
async fn credentials_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "tessera.toml", OPEN);
    let mut running =
        spawn_serving_with(dir.path(), &["--config", cfg.to_str().unwrap(), "serve"], &[("TESSERA_LOG", "debug")]);
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let doc: Value =
        http.get(format!("{base}/.well-known/uma2-configuration")).send().await.unwrap().json().await.unwrap();
    let issuer = s(&doc, "issuer").to_owned();

    let mut secrets: Vec<(&str, String)> = Vec::new();
    let reg = |body: Value| {
        let http = http.clone();
        let url = format!("{base}/register");
        async move {
            let res = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()
        }
    };
    let token = |auth: Option<String>, pairs: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{base}/token");
        async move {
            let mut req = http
                .post(url)
                .header("content-type", FORM)
                .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish());
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap())
        }
    };

    let c = reg(json!({"grant_types": ["client_credentials"], "scope": "read"})).await;
    let (id, secret) = (s(&c, "client_id"), s(&c, "client_secret"));
    let rat = s(&c, "registration_access_token");
    secrets.push(("client_secret", secret.to_owned()));
    secrets.push(("registration_access_token", rat.to_owned()));
    let auth = basic(id, secret);
    secrets.push(("Basic credentials", auth.trim_start_matches("Basic ").to_owned()));
    let (status, tok) = token(Some(auth.clone()), vec![("grant_type", "client_credentials".into())]).await;
    assert_eq!(status, 200, "{tok}");
    secrets.push(("access_token (basic)", s(&tok, "access_token").to_owned()));
    // The registration access token in use.
    let res = http.get(format!("{base}/register/{id}")).bearer_auth(rat).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // A wrong secret is a secret too.
    let wrong = "wrong-secret-that-must-not-be-logged-0123456789";
    let (status, _) = token(Some(basic(id, wrong)), vec![("grant_type", "client_credentials".into())]).await;
    assert_eq!(status, 401);
    // A request id given by a load balancer, on a request whose handler logs (and queries the store).
    let res = http
        .post(format!("{base}/token"))
        .header("content-type", FORM)
        .header("x-request-id", "req-id-check-0042")
        .basic_auth(id, Some(wrong))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    secrets.push(("wrong secret", wrong.to_owned()));

    let key = ClientKey::es256();
    let j = reg(json!({
        "token_endpoint_auth_method": "private_key_jwt",
        "grant_types": ["client_credentials"],
        "jwks": jwks(&[&key]),
    }))
    .await;
    secrets.push(("registration_access_token (jwt client)", s(&j, "registration_access_token").to_owned()));
    let assertion = key.sign(&claims(s(&j, "client_id"), json!(format!("{issuer}/token")), unix_now()));
    let (status, tok) = token(
        None,
        vec![
            ("grant_type", "client_credentials".into()),
            ("client_assertion_type", JWT_BEARER.into()),
            ("client_assertion", assertion.clone()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tok}");
    secrets.push(("access_token (jwt)", s(&tok, "access_token").to_owned()));
    let signature = assertion.rsplit('.').next().unwrap().to_owned();
    secrets.push(("client assertion", assertion));
    secrets.push(("client assertion signature", signature));

    sigterm(&running.child);
    let status = running.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let log = running.stderr();
    // The log is there and at debug level: the requests were logged.
    assert!(log.contains("/token"), "requests are logged: {log}");
    assert!(log.contains("DEBUG"), "debug lines are logged");
    // Handlers run in a task of their own (http::layers::run_to_completion): their lines must still
    // carry the request's id, not only the layer's closing line.
    let tagged = log.lines().filter(|l| l.contains("req-id-check-0042")).count();
    assert!(tagged >= 2, "the handler's log lines carry the request id ({tagged} line(s))");
    for (what, value) in &secrets {
        assert!(!value.is_empty());
        assert!(!log.contains(value.as_str()), "the {what} is in the log");
    }
}

both_stores!(
    client_secret_basic_authenticates,
    client_secret_post_authenticates,
    private_key_jwt_authenticates_with_an_inline_jwks,
    private_key_jwt_authenticates_with_a_jwks_uri,
    none_identifies_public_clients_only,
    a_client_must_use_its_registered_method,
    forged_and_stale_assertions_are_refused,
    a_replayed_assertion_is_refused,
    a_replayed_assertion_is_refused_by_another_node,
    two_methods_at_once_are_an_invalid_request,
    the_token_endpoint_reads_exactly_one_form,
);
