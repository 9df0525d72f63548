//! The protection API as a resource server uses it (FedAuthz §§1–5): register as a client, have the
//! owner sign in and consent, obtain a PAT with PKCE, register resources, request permission tickets,
//! introspect; and every refusal with its status and error code, including isolation between
//! owners and between resource servers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::clock::{Clock, FixedClock, SystemClock};

use crate::both_stores;
use crate::support::{Options, StoreKind, TestAs, TestDb};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "correct horse battery staple";

struct Rs {
    client_id: String,
    secret: String,
}

async fn register_rs(t: &TestAs, name: &str) -> Rs {
    let res = t
        .http
        .post(t.url("/register"))
        .json(&json!({
            "client_name": name,
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": [REDIRECT],
            "scope": "uma_protection",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    Rs { client_id: body["client_id"].as_str().unwrap().into(), secret: body["client_secret"].as_str().unwrap().into() }
}

async fn add_owner(t: &TestAs, id: &str) {
    tessera::accounts::add_account(&t.server.store, id, Some(PASSWORD), serde_json::Map::new(), t.now()).await.unwrap();
}

fn pkce() -> (String, String) {
    let verifier = format!("v-{}-{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest))
}

fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

fn hidden_request(html: &str) -> String {
    let (_, rest) = html.split_once("name=\"request\" value=\"").expect("the page carries the request handle");
    rest.split('"').next().unwrap().to_owned()
}

/// The browser part: GET the authorization endpoint, sign in on the form, approve. Returns the
/// redirect's query parameters.
async fn sign_in_and_approve(t: &TestAs, rs: &Rs, owner: &str, challenge: &str) -> Vec<(String, String)> {
    let res = t
        .http
        .get(t.url("/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", &rs.client_id),
            ("redirect_uri", REDIRECT),
            ("scope", "uma_protection"),
            ("state", "st-123"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let binding = set_cookie(&res, "tessera_authz").expect("binding cookie");
    let html = res.text().await.unwrap();
    assert!(html.contains("uma_protection"));
    let handle = hidden_request(&html);

    // A wrong password re-shows the form, says so, and does not redirect.
    let res = t
        .http
        .post(t.url("/authorize/decision"))
        .header("cookie", &binding)
        .form(&[("request", handle.as_str()), ("username", owner), ("password", "wrong"), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("Wrong username or password"));

    let res = t
        .http
        .post(t.url("/authorize/decision"))
        .header("cookie", &binding)
        .form(&[("request", handle.as_str()), ("username", owner), ("password", PASSWORD), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(set_cookie(&res, "tessera_session").is_some(), "signed in");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    url::Url::parse(&location).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

async fn token(t: &TestAs, rs: &Rs, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = t.http.post(t.url("/token")).basic_auth(&rs.client_id, Some(&rs.secret)).form(form).send().await.unwrap();
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store");
    (status, res.json().await.unwrap())
}

struct Pat {
    access: String,
    refresh: String,
    code: String,
    verifier: String,
}

async fn obtain_pat(t: &TestAs, rs: &Rs, owner: &str) -> Pat {
    let (verifier, challenge) = pkce();
    let q = sign_in_and_approve(t, rs, owner, &challenge).await;
    assert_eq!(param(&q, "state"), Some("st-123"));
    let code = param(&q, "code").expect("code").to_owned();
    let (status, body) = token(
        t,
        rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "uma_protection");
    Pat {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
        code,
        verifier,
    }
}

async fn api(
    t: &TestAs,
    method: reqwest::Method,
    path: &str,
    pat: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = t.http.request(method, t.url(path));
    if let Some(p) = pat {
        req = req.bearer_auth(p);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn error_of(res: reqwest::Response, status: u16, error: &str) -> reqwest::header::HeaderMap {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    headers
}

async fn introspect(t: &TestAs, rs: &Rs, token: &str) -> Value {
    let res = t
        .http
        .post(t.url("/introspect"))
        .basic_auth(&rs.client_id, Some(&rs.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    res.json().await.unwrap()
}

fn options(clock: &FixedClock) -> Options<'static> {
    Options { extra_toml: "[registration]\nmode = \"open\"\n", fixed_clock: Some(clock.clone()), ..Default::default() }
}

async fn the_whole_protection_flow(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    let (status, _, meta) = t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(status, 200);
    for (member, path) in [
        ("authorization_endpoint", "/authorize"),
        ("resource_registration_endpoint", "/uma/resources"),
        ("permission_endpoint", "/uma/permission"),
        ("introspection_endpoint", "/introspect"),
    ] {
        assert_eq!(meta[member], t.url(path), "{member}");
    }
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));

    add_owner(&t, "alice").await;
    let rs = register_rs(&t, "Records API").await;
    let pat = obtain_pat(&t, &rs, "alice").await;

    // Register a resource, read it back, list, update.
    let res = api(
        &t,
        reqwest::Method::POST,
        "/uma/resources",
        Some(&pat.access),
        Some(json!({"name": "x-ray 2026-11", "type": "http://hl7.org/fhir/ImagingStudy", "resource_scopes": ["view", "print"], "unknown": 1})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let id = res.json::<Value>().await.unwrap()["_id"].as_str().unwrap().to_owned();
    assert_eq!(location, t.url(&format!("/uma/resources/{id}")));
    let res = api(&t, reqwest::Method::GET, &format!("/uma/resources/{id}"), Some(&pat.access), None).await;
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["_id"], id.as_str());
    assert_eq!(got["resource_scopes"], json!(["view", "print"]));
    assert!(got.get("unknown").is_none());
    let res = api(&t, reqwest::Method::GET, "/uma/resources", Some(&pat.access), None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!([id]));
    let res = api(
        &t,
        reqwest::Method::GET,
        "/uma/resources?name=x-ray%202026-11&exactName=true&max=1",
        Some(&pat.access),
        None,
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!([id]));
    let res =
        api(&t, reqwest::Method::GET, "/uma/resources?name=nothing&exactName=true", Some(&pat.access), None).await;
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
    let res = api(
        &t,
        reqwest::Method::PUT,
        &format!("/uma/resources/{id}"),
        Some(&pat.access),
        Some(json!({"name": "x-ray", "resource_scopes": ["view", "print", "annotate"]})),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"_id": id}));

    // Permission tickets: one object, an array, zero scopes.
    for body in [
        json!({"resource_id": id, "resource_scopes": ["view"]}),
        json!([{"resource_id": id, "resource_scopes": ["view", "annotate"]}, {"resource_id": id, "resource_scopes": ["print"]}]),
        json!({"resource_id": id}),
        json!([{"resource_id": id, "resource_scopes": []}]),
    ] {
        let res = api(&t, reqwest::Method::POST, "/uma/permission", Some(&pat.access), Some(body.clone())).await;
        assert_eq!(res.status(), 201, "{body}");
        let ticket = res.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_owned();
        assert_eq!(ticket.len(), 43);
    }

    // Introspection: the RS's own PAT is active; a random string and, later, an expired token are not.
    let own = introspect(&t, &rs, &pat.access).await;
    assert_eq!(own["active"], true);
    assert_eq!(own["sub"], "alice");
    assert_eq!(own["scope"], "uma_protection");
    assert_eq!(own["client_id"], rs.client_id.as_str());
    assert_eq!(introspect(&t, &rs, "not-a-token").await, json!({"active": false}));
    // With the PAT as the caller's credential too.
    let res =
        t.http.post(t.url("/introspect")).bearer_auth(&pat.access).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"active": false}));

    // Refresh rotates; a spent refresh token revokes the family.
    let (status, fresh) = token(&t, &rs, &[("grant_type", "refresh_token"), ("refresh_token", &pat.refresh)]).await;
    assert_eq!(status, 200, "{fresh}");
    let fresh_access = fresh["access_token"].as_str().unwrap().to_owned();
    assert_ne!(fresh["refresh_token"], pat.refresh.as_str());
    let (status, body) = token(&t, &rs, &[("grant_type", "refresh_token"), ("refresh_token", &pat.refresh)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(introspect(&t, &rs, &fresh_access).await, json!({"active": false}), "family revoked");
    let res = api(&t, reqwest::Method::GET, "/uma/resources", Some(&fresh_access), None).await;
    error_of(res, 401, "invalid_token").await;

    // An expired PAT is inactive and refused.
    let pat2 = obtain_pat(&t, &rs, "alice").await;
    clock.advance(3_601);
    assert_eq!(introspect(&t, &rs, &pat2.access).await, json!({"active": false}));
    let res = api(&t, reqwest::Method::GET, "/uma/resources", Some(&pat2.access), None).await;
    error_of(res, 401, "invalid_token").await;

    // Delete.
    let pat3 = obtain_pat(&t, &rs, "alice").await;
    let res = api(&t, reqwest::Method::DELETE, &format!("/uma/resources/{id}"), Some(&pat3.access), None).await;
    assert_eq!(res.status(), 204);
    let res = api(&t, reqwest::Method::GET, &format!("/uma/resources/{id}"), Some(&pat3.access), None).await;
    error_of(res, 404, "not_found").await;
    t.stop().await;
    db.drop_now().await;
}

async fn a_code_used_twice_is_refused_and_revokes_its_tokens(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    let rs = register_rs(&t, "RS").await;
    let pat = obtain_pat(&t, &rs, "alice").await;
    assert_eq!(introspect(&t, &rs, &pat.access).await["active"], true);

    let (status, body) = token(
        &t,
        &rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &pat.code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &pat.verifier),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(introspect(&t, &rs, &pat.access).await, json!({"active": false}));
    let (status, body) = token(&t, &rs, &[("grant_type", "refresh_token"), ("refresh_token", &pat.refresh)]).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    t.stop().await;
    db.drop_now().await;
}

async fn authorization_requests_are_checked(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    let rs = register_rs(&t, "RS").await;
    let (verifier, challenge) = pkce();
    let base = |extra: &[(&str, &str)]| {
        let mut q: Vec<(String, String)> = vec![
            ("response_type".into(), "code".into()),
            ("client_id".into(), rs.client_id.clone()),
            ("redirect_uri".into(), REDIRECT.into()),
            ("state".into(), "s".into()),
            ("code_challenge".into(), challenge.clone()),
            ("code_challenge_method".into(), "S256".into()),
        ];
        for (k, v) in extra {
            q.retain(|(key, _)| key != k);
            if !v.is_empty() {
                q.push(((*k).into(), (*v).into()));
            }
        }
        q
    };
    // Not redirected: unknown client, unregistered redirect URI (an error page instead).
    for q in [base(&[("client_id", "nobody")]), base(&[("redirect_uri", "http://127.0.0.1:9/other")])] {
        let res = t.http.get(t.url("/authorize")).query(&q).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.headers().get("location").is_none());
        assert!(res.text().await.unwrap().contains("cannot continue"));
    }
    // Redirected with an error and the state.
    for (q, error) in [
        (base(&[("response_type", "token")]), "unsupported_response_type"),
        (base(&[("code_challenge", "")]), "invalid_request"),
        (base(&[("code_challenge_method", "plain")]), "invalid_request"),
        (base(&[("scope", "openid")]), "invalid_scope"),
    ] {
        let res = t.http.get(t.url("/authorize")).query(&q).send().await.unwrap();
        assert_eq!(res.status(), 303, "{error}");
        let loc = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
        let q: Vec<(String, String)> = loc.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(param(&q, "error"), Some(error));
        assert_eq!(param(&q, "state"), Some("s"));
    }

    // Deny: back to the client with access_denied.
    let res = t.http.get(t.url("/authorize")).query(&base(&[])).send().await.unwrap();
    let binding = set_cookie(&res, "tessera_authz").unwrap();
    let handle = hidden_request(&res.text().await.unwrap());
    // The request cannot be answered from a browser that did not start it.
    let res = t
        .http
        .post(t.url("/authorize/decision"))
        .header("cookie", "tessera_authz=someone-else")
        .form(&[("request", handle.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = t
        .http
        .post(t.url("/authorize/decision"))
        .header("cookie", &binding)
        .form(&[("request", handle.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.contains("error=access_denied") && loc.contains("state=s"), "{loc}");
    // Answered once only.
    let res = t
        .http
        .post(t.url("/authorize/decision"))
        .header("cookie", &binding)
        .form(&[("request", handle.as_str()), ("decision", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Token endpoint: a wrong verifier, a wrong redirect_uri and an expired code are invalid_grant.
    let q = sign_in_and_approve(&t, &rs, "alice", &challenge).await;
    let code = param(&q, "code").unwrap().to_owned();
    let (status, body) = token(
        &t,
        &rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &"x".repeat(43)),
        ],
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    let q = sign_in_and_approve(&t, &rs, "alice", &challenge).await;
    let code = param(&q, "code").unwrap().to_owned();
    let (status, body) = token(
        &t,
        &rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/x"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    let q = sign_in_and_approve(&t, &rs, "alice", &challenge).await;
    let code = param(&q, "code").unwrap().to_owned();
    clock.advance(61);
    let (status, body) = token(
        &t,
        &rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    t.stop().await;
    db.drop_now().await;
}

async fn protection_api_errors_and_isolation(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    add_owner(&t, "bob").await;
    let rs1 = register_rs(&t, "RS1").await;
    let rs2 = register_rs(&t, "RS2").await;
    let alice_rs1 = obtain_pat(&t, &rs1, "alice").await.access;
    let bob_rs1 = obtain_pat(&t, &rs1, "bob").await.access;
    let alice_rs2 = obtain_pat(&t, &rs2, "alice").await.access;

    let res = api(
        &t,
        reqwest::Method::POST,
        "/uma/resources",
        Some(&alice_rs1),
        Some(json!({"name": "r1", "resource_scopes": ["view"]})),
    )
    .await;
    let r1 = res.json::<Value>().await.unwrap()["_id"].as_str().unwrap().to_owned();
    let path = format!("/uma/resources/{r1}");

    // Authentication and scope.
    let headers =
        error_of(api(&t, reqwest::Method::GET, "/uma/resources", None, None).await, 401, "invalid_token").await;
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    error_of(
        api(&t, reqwest::Method::POST, "/uma/permission", Some("forged"), Some(json!({"resource_id": r1}))).await,
        401,
        "invalid_token",
    )
    .await;
    let cc = t
        .http
        .post(t.url("/register"))
        .json(&json!({"grant_types": ["client_credentials"], "scope": "read"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth(cc["client_id"].as_str().unwrap(), cc["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let not_a_pat = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    error_of(api(&t, reqwest::Method::GET, "/uma/resources", Some(&not_a_pat), None).await, 403, "insufficient_scope")
        .await;
    error_of(
        api(&t, reqwest::Method::POST, "/uma/permission", Some(&not_a_pat), Some(json!({"resource_id": r1}))).await,
        403,
        "insufficient_scope",
    )
    .await;
    let res = t.http.post(t.url("/introspect")).bearer_auth(&not_a_pat).form(&[("token", "x")]).send().await.unwrap();
    error_of(res, 401, "insufficient_scope").await;

    // Malformed descriptions, unknown ids, unsupported methods, unknown list filters.
    for bad in [json!({"name": "no scopes"}), json!({"resource_scopes": "view"}), json!([1])] {
        error_of(
            api(&t, reqwest::Method::POST, "/uma/resources", Some(&alice_rs1), Some(bad)).await,
            400,
            "invalid_request",
        )
        .await;
    }
    error_of(api(&t, reqwest::Method::GET, "/uma/resources/nope", Some(&alice_rs1), None).await, 404, "not_found")
        .await;
    let headers = error_of(
        api(&t, reqwest::Method::PATCH, &path, Some(&alice_rs1), Some(json!({}))).await,
        405,
        "unsupported_method_type",
    )
    .await;
    assert_eq!(headers["allow"], "GET, PUT, DELETE");
    let headers = error_of(
        api(&t, reqwest::Method::DELETE, "/uma/resources", Some(&alice_rs1), None).await,
        405,
        "unsupported_method_type",
    )
    .await;
    assert_eq!(headers["allow"], "GET, POST");
    error_of(
        api(&t, reqwest::Method::GET, "/uma/resources?owner=bob", Some(&alice_rs1), None).await,
        400,
        "invalid_request",
    )
    .await;

    // Another owner at the same RS, and the same owner at another RS, see nothing.
    for other in [&bob_rs1, &alice_rs2] {
        error_of(api(&t, reqwest::Method::GET, &path, Some(other), None).await, 404, "not_found").await;
        error_of(
            api(&t, reqwest::Method::PUT, &path, Some(other), Some(json!({"resource_scopes": []}))).await,
            404,
            "not_found",
        )
        .await;
        error_of(api(&t, reqwest::Method::DELETE, &path, Some(other), None).await, 404, "not_found").await;
        let res = api(&t, reqwest::Method::GET, "/uma/resources", Some(other), None).await;
        assert_eq!(res.json::<Value>().await.unwrap(), json!([]));
        error_of(
            api(
                &t,
                reqwest::Method::POST,
                "/uma/permission",
                Some(other),
                Some(json!({"resource_id": r1, "resource_scopes": ["view"]})),
            )
            .await,
            400,
            "invalid_resource_id",
        )
        .await;
    }
    // Alice's resource is untouched.
    let res = api(&t, reqwest::Method::GET, &path, Some(&alice_rs1), None).await;
    assert_eq!(res.json::<Value>().await.unwrap()["name"], "r1");

    // Permission request errors.
    error_of(
        api(
            &t,
            reqwest::Method::POST,
            "/uma/permission",
            Some(&alice_rs1),
            Some(json!({"resource_id": r1, "resource_scopes": ["delete"]})),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    error_of(
        api(
            &t,
            reqwest::Method::POST,
            "/uma/permission",
            Some(&alice_rs1),
            Some(json!([{"resource_id": r1}, {"resource_id": "nope"}])),
        )
        .await,
        400,
        "invalid_resource_id",
    )
    .await;
    for bad in [json!([]), json!({"resource_scopes": ["view"]}), json!("x")] {
        error_of(
            api(&t, reqwest::Method::POST, "/uma/permission", Some(&alice_rs1), Some(bad)).await,
            400,
            "invalid_request",
        )
        .await;
    }

    // Introspection shows a resource server only its own tokens.
    let rs2_view = introspect(&t, &rs2, &alice_rs1).await;
    assert_eq!(rs2_view, json!({"active": false}));
    t.stop().await;
    db.drop_now().await;
}

/// A resource server bound to an owner in the configuration gets PATs with client_credentials; an
/// unbound client cannot.
async fn a_bound_resource_server_gets_pats_by_client_credentials(store: StoreKind) {
    let db = TestDb::new(store).await;
    let secret = "rs-bound-secret-0123456789abcdefghij";
    let toml = format!(
        "[registration]\nmode = \"open\"\n[[clients]]\nclient_id = \"rs-bound\"\nclient_secret = \"{secret}\"\n\
         grant_types = [\"client_credentials\"]\nscope = \"uma_protection\"\nowner = \"alice\"\n\
         [[clients]]\nclient_id = \"rs-unbound\"\nclient_secret = \"{secret}\"\n\
         grant_types = [\"client_credentials\"]\nscope = \"uma_protection\"\n"
    );
    let t = TestAs::start_with(&db, Options { extra_toml: &toml, ..Default::default() }).await;
    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth("rs-bound", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let pat = res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let res =
        api(&t, reqwest::Method::POST, "/uma/resources", Some(&pat), Some(json!({"resource_scopes": ["read"]}))).await;
    assert_eq!(res.status(), 201);

    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth("rs-unbound", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_scope");
    t.stop().await;
    db.drop_now().await;
}

async fn rows(db: &TestDb, table: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// Expired artifacts are deleted by the sweeper, so tables that anyone can add rows to (pending
/// authorization requests, tickets) cannot grow without bound.
async fn expired_artifacts_are_swept(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    let rs = register_rs(&t, "RS").await;
    let pat = obtain_pat(&t, &rs, "alice").await;
    let res =
        api(&t, reqwest::Method::POST, "/uma/resources", Some(&pat.access), Some(json!({"resource_scopes": ["v"]})))
            .await;
    let id = res.json::<Value>().await.unwrap()["_id"].as_str().unwrap().to_owned();
    api(&t, reqwest::Method::POST, "/uma/permission", Some(&pat.access), Some(json!({"resource_id": id}))).await;
    let (_, challenge) = pkce();
    let q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &rs.client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    t.http.get(t.url("/authorize")).query(&q).send().await.unwrap();
    assert_eq!(rows(&db, "ticket").await, 1);
    assert_eq!(rows(&db, "authorization_request").await, 1);

    // Nothing live is touched.
    assert_eq!(t.server.store.sweep_expired(t.now()).await.unwrap(), 0);
    assert_eq!(rows(&db, "ticket").await, 1);
    let deleted = t.server.store.sweep_expired(t.now() + 3 * 86_400).await.unwrap();
    assert!(deleted >= 5, "{deleted}");
    for table in
        ["ticket", "authorization_request", "authorization_code", "browser_session", "access_token", "refresh_token"]
    {
        assert_eq!(rows(&db, table).await, 0, "{table}");
    }
    t.stop().await;
    db.drop_now().await;
}

async fn revoke(t: &TestAs, rs: &Rs, form: &[(&str, &str)]) -> reqwest::Response {
    t.http.post(t.url("/revoke")).basic_auth(&rs.client_id, Some(&rs.secret)).form(form).send().await.unwrap()
}

/// RFC 7009: a client revokes its own tokens; revoking a refresh token ends the grant; anything else is
/// a silent 200 that changes nothing.
async fn revocation_by_the_owning_client_only(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    let (_, _, meta) = t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(meta["revocation_endpoint"], t.url("/revoke"));
    add_owner(&t, "alice").await;
    let rs1 = register_rs(&t, "RS1").await;
    let rs2 = register_rs(&t, "RS2").await;

    // Another client's token: 200, and the token still works.
    let pat = obtain_pat(&t, &rs1, "alice").await;
    let res = revoke(&t, &rs2, &[("token", &pat.access)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&t, &rs1, &pat.access).await["active"], true);
    // Unknown token: 200.
    assert_eq!(revoke(&t, &rs1, &[("token", "never-issued")]).await.status(), 200);
    // No client authentication: 401.
    let res = t.http.post(t.url("/revoke")).form(&[("token", pat.access.as_str())]).send().await.unwrap();
    error_of(res, 401, "invalid_client").await;
    // Missing token: 400.
    error_of(revoke(&t, &rs1, &[("token_type_hint", "access_token")]).await, 400, "invalid_request").await;

    // The owner revokes its PAT: inactive, refused by the protection API; its refresh token lives on.
    assert_eq!(revoke(&t, &rs1, &[("token", &pat.access), ("token_type_hint", "access_token")]).await.status(), 200);
    assert_eq!(introspect(&t, &rs1, &pat.access).await, json!({"active": false}));
    error_of(api(&t, reqwest::Method::GET, "/uma/resources", Some(&pat.access), None).await, 401, "invalid_token")
        .await;
    let (status, fresh) = token(&t, &rs1, &[("grant_type", "refresh_token"), ("refresh_token", &pat.refresh)]).await;
    assert_eq!(status, 200, "{fresh}");

    // Revoking the refresh token (even with a wrong hint) ends the grant: its access token too.
    let refresh = fresh["refresh_token"].as_str().unwrap();
    let access = fresh["access_token"].as_str().unwrap();
    assert_eq!(revoke(&t, &rs1, &[("token", refresh), ("token_type_hint", "access_token")]).await.status(), 200);
    assert_eq!(introspect(&t, &rs1, access).await, json!({"active": false}));
    let (status, body) = token(&t, &rs1, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    t.stop().await;
    db.drop_now().await;
}

/// The owner's shares, managed through the PAT: only for the owner's resources at this resource
/// server, validated against the policy schema, revocable, and revoked with their resource.
async fn owner_shares_through_the_protection_api(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    add_owner(&t, "bob").await;
    let rs1 = register_rs(&t, "RS1").await;
    let rs2 = register_rs(&t, "RS2").await;
    let alice = obtain_pat(&t, &rs1, "alice").await.access;
    let bob = obtain_pat(&t, &rs1, "bob").await.access;
    let alice_rs2 = obtain_pat(&t, &rs2, "alice").await.access;
    let mut ids = Vec::new();
    for name in ["lab results", "imaging"] {
        let res = api(
            &t,
            reqwest::Method::POST,
            "/uma/resources",
            Some(&alice),
            Some(json!({"name": name, "resource_scopes": ["read", "write"]})),
        )
        .await;
        ids.push(res.json::<Value>().await.unwrap()["_id"].as_str().unwrap().to_owned());
    }
    let matcher = json!({"iss": "http://127.0.0.1:4000", "email": "bob@hospital.example"});
    let share_body =
        |rid: &str| json!({"resource_id": rid, "scopes": ["read"], "matcher": matcher, "expires_at": t.now() + 3600});

    let res = api(&t, reqwest::Method::POST, "/uma/shares", Some(&alice), Some(share_body(&ids[0]))).await;
    assert_eq!(res.status(), 201);
    let share: Value = res.json().await.unwrap();
    let share_id = share["id"].as_str().unwrap().to_owned();
    assert_eq!(share["owner"], "alice");
    assert_eq!(share["scopes"], json!(["read"]));
    assert_eq!(share["matcher"], matcher);
    let res = api(&t, reqwest::Method::POST, "/uma/shares", Some(&alice), Some(share_body(&ids[1]))).await;
    assert_eq!(res.status(), 201);
    let listed: Value = api(&t, reqwest::Method::GET, "/uma/shares", Some(&alice), None).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Refused: undeclared scope, no issuer in the matcher, unknown member, someone else's resource.
    for bad in [
        json!({"resource_id": ids[0], "scopes": ["print"], "matcher": matcher}),
        json!({"resource_id": ids[0], "scopes": ["read"], "matcher": {"email": "bob@hospital.example"}}),
        json!({"resource_id": ids[0], "scopes": ["read"], "matcher": matcher, "owner": "mallory"}),
        json!({"resource_id": ids[0], "scopes": ["read"], "matcher": matcher, "expires_at": t.now() - 1}),
    ] {
        error_of(api(&t, reqwest::Method::POST, "/uma/shares", Some(&alice), Some(bad)).await, 400, "invalid_request")
            .await;
    }
    for other in [&bob, &alice_rs2] {
        error_of(
            api(&t, reqwest::Method::POST, "/uma/shares", Some(other), Some(share_body(&ids[0]))).await,
            400,
            "invalid_resource_id",
        )
        .await;
        let listed: Value = api(&t, reqwest::Method::GET, "/uma/shares", Some(other), None).await.json().await.unwrap();
        assert_eq!(listed, json!([]));
        error_of(
            api(&t, reqwest::Method::DELETE, &format!("/uma/shares/{share_id}"), Some(other), None).await,
            404,
            "not_found",
        )
        .await;
    }
    error_of(api(&t, reqwest::Method::GET, "/uma/shares", None, None).await, 401, "invalid_token").await;

    // Revoke: once.
    let res = api(&t, reqwest::Method::DELETE, &format!("/uma/shares/{share_id}"), Some(&alice), None).await;
    assert_eq!(res.status(), 204);
    error_of(
        api(&t, reqwest::Method::DELETE, &format!("/uma/shares/{share_id}"), Some(&alice), None).await,
        404,
        "not_found",
    )
    .await;
    // Deleting a resource revokes its shares.
    let res = api(&t, reqwest::Method::DELETE, &format!("/uma/resources/{}", ids[1]), Some(&alice), None).await;
    assert_eq!(res.status(), 204);
    let all = rows(&db, "share").await;
    assert_eq!(all, 2);
    assert_eq!(revoked_shares(&db).await, 2, "both shares are revoked: one by hand, one with its resource");
    t.stop().await;
    db.drop_now().await;
}

async fn revoked_shares(db: &TestDb) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM share WHERE revoked_at IS NOT NULL").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

/// Hardening from the security review: a pending request survives only a few wrong passwords; a
/// removed owner leaves nothing usable behind; a public client cannot introspect.
async fn sign_in_guessing_removed_owners_and_public_introspection(store: StoreKind) {
    let db = TestDb::new(store).await;
    let clock = FixedClock::new(SystemClock.now());
    let t = TestAs::start_with(&db, options(&clock)).await;
    add_owner(&t, "alice").await;
    let rs = register_rs(&t, "RS").await;

    // Five wrong passwords end the request.
    let (_, challenge) = pkce();
    let q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &rs.client_id),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let res = t.http.get(t.url("/authorize")).query(&q).send().await.unwrap();
    let binding = set_cookie(&res, "tessera_authz").unwrap();
    let handle = hidden_request(&res.text().await.unwrap());
    let attempt = |password: &'static str| {
        t.http
            .post(t.url("/authorize/decision"))
            .header("cookie", &binding)
            .form(&[
                ("request", handle.as_str()),
                ("username", "alice"),
                ("password", password),
                ("decision", "approve"),
            ])
            .send()
    };
    for _ in 0..4 {
        let res = attempt("wrong").await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.text().await.unwrap().contains("Wrong username or password"));
    }
    let res = attempt("wrong").await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("too many failed sign-ins"));
    // Even the right password cannot use that request any more.
    let res = attempt(PASSWORD).await.unwrap();
    assert_eq!(res.status(), 400);

    // A removed owner: its unredeemed code, its resources and its PAT stop working.
    let pat = obtain_pat(&t, &rs, "alice").await;
    let res =
        api(&t, reqwest::Method::POST, "/uma/resources", Some(&pat.access), Some(json!({"resource_scopes": ["read"]})))
            .await;
    assert_eq!(res.status(), 201);
    let (verifier, challenge) = pkce();
    let qp = sign_in_and_approve(&t, &rs, "alice", &challenge).await;
    let code = param(&qp, "code").unwrap().to_owned();
    assert!(t.server.store.delete_account("alice", t.now()).await.unwrap());
    let (status, body) = token(
        &t,
        &rs,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!((status.as_u16(), body["error"].as_str()), (400, Some("invalid_grant")));
    error_of(api(&t, reqwest::Method::GET, "/uma/resources", Some(&pat.access), None).await, 401, "invalid_token")
        .await;
    assert_eq!(rows(&db, "resource").await, 0);
    add_owner(&t, "alice").await;
    let fresh = obtain_pat(&t, &rs, "alice").await;
    let listed: Value =
        api(&t, reqwest::Method::GET, "/uma/resources", Some(&fresh.access), None).await.json().await.unwrap();
    assert_eq!(listed, json!([]), "a new account with the same id inherits nothing");

    // A public client cannot introspect.
    let public: Value = t
        .http
        .post(t.url("/register"))
        .json(&json!({"token_endpoint_auth_method": "none", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = t
        .http
        .post(t.url("/introspect"))
        .form(&[("token", fresh.access.as_str()), ("client_id", public["client_id"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    error_of(res, 401, "invalid_client").await;
    t.stop().await;
    db.drop_now().await;
}

both_stores!(
    sign_in_guessing_removed_owners_and_public_introspection,
    owner_shares_through_the_protection_api,
    revocation_by_the_owning_client_only,
    expired_artifacts_are_swept,
    the_whole_protection_flow,
    a_code_used_twice_is_refused_and_revokes_its_tokens,
    authorization_requests_are_checked,
    protection_api_errors_and_isolation,
    a_bound_resource_server_gets_pats_by_client_credentials,
);
