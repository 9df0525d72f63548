//! Typed-enough helpers for the OAuth endpoints: registration (RFC 7591/7592), the token endpoint
//! with each client authentication method, and exact checks of error responses.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::TestAs;

/// `[registration] mode = "open"`.
pub const OPEN: &str = "[registration]\nmode = \"open\"\n";
/// Open registration, and client `jwks_uri`s on loopback may be fetched.
pub const OPEN_WITH_PRIVATE_FETCH: &str = "danger_allow_private_fetch = true\n[registration]\nmode = \"open\"\n";

pub const FORM: &str = "application/x-www-form-urlencoded";

/// Reads a response: status, headers, JSON body (`Null` when the body is empty).
pub async fn read(res: Response) -> (StatusCode, HeaderMap, Value) {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, headers, body)
}

/// Asserts an RFC 6749 §5.2 error: exact status and `error`, JSON, `no-store`, nothing but `error`
/// and `error_description`. Returns the headers and the body.
pub async fn expect_error(res: Response, status: u16, error: &str) -> (HeaderMap, Value) {
    expect_error_for("", res, status, error).await
}

/// `expect_error`, naming the case in its failure messages.
pub async fn expect_error_for(case: &str, res: Response, status: u16, error: &str) -> (HeaderMap, Value) {
    let (got, headers, body) = read(res).await;
    assert_eq!((got.as_u16(), body["error"].as_str()), (status, Some(error)), "{case}: {body}");
    assert_eq!(headers["content-type"], "application/json", "{case}: {body}");
    assert_eq!(headers["cache-control"], "no-store", "{case}: {body}");
    let obj = body.as_object().unwrap();
    assert!(obj.keys().all(|k| k == "error" || k == "error_description"), "{case}: {body}");
    (headers, body)
}

/// The `WWW-Authenticate` header, or "" when there is none.
pub fn www_authenticate(headers: &HeaderMap) -> String {
    headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

/// `Authorization: Basic` per RFC 6749 §2.3.1: id and secret form-urlencoded, then base64.
pub fn basic(client_id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret))))
}

/// A form body; the pairs are kept in order and repeats are kept.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// POST {issuer}/register with a JSON body and an optional bearer token.
pub async fn post_register(t: &TestAs, bearer: Option<&str>, body: &Value) -> Response {
    let mut req = t.http.post(t.url("/register")).json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("POST /register")
}

/// Registers `body` and asserts 201 `no-store` JSON; returns the registration response.
pub async fn register(t: &TestAs, body: &Value) -> Value {
    let res = post_register(t, None, body).await;
    let (status, headers, reply) = read(res).await;
    assert_eq!(status, 201, "{body} → {reply}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    reply
}

/// POST {issuer}/token, form-encoded, with an optional `Authorization` header value.
pub async fn post_token(t: &TestAs, authorization: Option<&str>, pairs: &[(&str, &str)]) -> Response {
    let mut req = t.http.post(t.url("/token")).header("content-type", FORM).body(form(pairs));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    req.send().await.expect("POST /token")
}

/// Asserts a successful client_credentials token response; returns it.
pub async fn expect_token(res: Response) -> Value {
    let (status, headers, body) = read(res).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(body["access_token"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    body
}

/// A string member of a JSON object.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

/// The wall clock, for assertions sent to a server that runs on it.
pub fn unix_now() -> i64 {
    use tessera::clock::{Clock, SystemClock};
    SystemClock.now()
}
