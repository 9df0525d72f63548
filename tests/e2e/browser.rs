//! Server-rendered pages in a real browser: Debian's headless Chromium, driven over WebDriver by
//! chromedriver. A resource owner signs in and approves a resource server's PAT request by typing and
//! clicking, as a person would; a second request in the same browser reuses the session.
//!
//! Chromium and chromedriver come from Debian (`.ci/run` installs them). Without them the test says so
//! and stops, except under CI (`CI=true`), where a missing browser fails the run.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::support::browser::{Driver, Screen};
use crate::support::{Options, StoreKind, TestAs, TestDb};

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PASSWORD: &str = "correct horse battery staple";

fn pkce() -> (String, String) {
    let verifier = format!("browser-{}-{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest))
}

fn authorize_url(t: &TestAs, client_id: &str, challenge: &str) -> String {
    let mut u = url::Url::parse(&t.url("/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "uma_protection")
        .append_pair("state", "browser-state")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    u.into()
}

/// Waits until the browser has been sent to the client's redirect URI and returns the code.
async fn code_from_redirect(c: &Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(REDIRECT) {
            let q: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            assert!(q.contains(&("state".into(), "browser-state".into())), "{url}");
            return q.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v).expect("code in the redirect");
        }
        assert!(Instant::now() < deadline, "no redirect to the client; the browser is at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn redeem(t: &TestAs, rs: &Value, code: &str, verifier: &str) -> Value {
    let res = t
        .http
        .post(t.url("/token"))
        .basic_auth(rs["client_id"].as_str().unwrap(), rs["client_secret"].as_str())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_signs_in_and_approves_in_a_real_browser() {
    let Some(driver) = Driver::start() else { return };
    let db = TestDb::new(StoreKind::Sqlite).await;
    let t = TestAs::start_with(&db, Options { extra_toml: "[registration]\nmode = \"open\"\n", ..Default::default() })
        .await;
    tessera::accounts::add_account(&t.server.store, "alice", Some(PASSWORD), serde_json::Map::new(), t.now())
        .await
        .unwrap();
    let rs: Value = t
        .http
        .post(t.url("/register"))
        .json(&json!({"client_name": "Clinic <Records> API", "grant_types": ["authorization_code"],
                      "redirect_uris": [REDIRECT], "scope": "uma_protection"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = rs["client_id"].as_str().unwrap().to_owned();
    let c = driver.session(Screen::Default).await;

    // First time: the page asks who you are; a wrong password is refused on the page itself.
    let (verifier, challenge) = pkce();
    c.goto(&authorize_url(&t, &client_id, &challenge)).await.unwrap();
    let heading = c.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, "Authorize Clinic <Records> API", "the client's name is shown as text, not markup");
    c.find(Locator::Id("username")).await.unwrap().send_keys("alice").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys("not the password").await.unwrap();
    c.find(Locator::Css("button[value=approve]")).await.unwrap().click().await.unwrap();
    let alert = c.wait().for_element(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
    assert_eq!(alert, "Wrong username or password.");

    c.find(Locator::Id("username")).await.unwrap().send_keys("alice").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("button[value=approve]")).await.unwrap().click().await.unwrap();
    let code = code_from_redirect(&c).await;
    let pat = redeem(&t, &rs, &code, &verifier).await;
    assert_eq!(pat["scope"], "uma_protection");

    // Second time, same browser: signed in already, one click.
    let (verifier, challenge) = pkce();
    c.goto(&authorize_url(&t, &client_id, &challenge)).await.unwrap();
    let body = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(body.contains("Signed in as alice"), "{body}");
    assert!(c.find(Locator::Id("password")).await.is_err(), "no password asked again");
    c.find(Locator::Css("button[value=approve]")).await.unwrap().click().await.unwrap();
    let code = code_from_redirect(&c).await;
    redeem(&t, &rs, &code, &verifier).await;

    // Deny sends the browser back with access_denied.
    let (_, challenge) = pkce();
    c.goto(&authorize_url(&t, &client_id, &challenge)).await.unwrap();
    c.find(Locator::Css("button[value=deny]")).await.unwrap().click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(REDIRECT) {
            assert!(url.query().unwrap_or("").contains("error=access_denied"), "{url}");
            break;
        }
        assert!(Instant::now() < deadline, "no redirect after deny: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    c.close().await.unwrap();
    t.stop().await;
    db.drop_now().await;
}
