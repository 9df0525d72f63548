//! The resource-owner console (issue 8), in a real browser and over HTTP: the owner signs in with a
//! local account, approves or denies a request that waits for them (UMA `request_submitted`), and the
//! client's next poll sees the decision; shares and a client's tokens are managed from the same page;
//! every form is CSRF-protected and another owner sees nothing of it.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::both_stores;
use crate::support::StoreKind;
use crate::support::browser::{Browser, Screen};
use crate::support::uma::{BEHAVIORAL, IDP_ISSUER, OBSERVATION, PCT_CLIENT, UMA_CLIENT, Uma, inactive};

const PASSWORD: &str = "correct horse battery staple";

both_stores!(
    the_owner_approves_in_a_browser,
    the_owner_denies_on_a_phone,
    sign_in_csrf_and_other_owners,
    shares_and_a_clients_tokens,
);

/// The UMA test server with alice (and bob) as local accounts, and one resource of alice's in the
/// sensitive category: `read` waits for her approval (`heart/sensitive.cedar`).
async fn start(store: StoreKind) -> (Uma, String) {
    let u = Uma::start(store).await;
    for who in ["alice", "bob"] {
        tessera::accounts::add_account(&u.t.server.store, who, Some(PASSWORD), serde_json::Map::new(), u.now())
            .await
            .unwrap();
    }
    let rid = u.resource(&u.pat, BEHAVIORAL, &["read", "write"]).await;
    (u, rid)
}

/// A physician asks to read `rid` through `uma-client`: 403 request_submitted; returns the new
/// ticket the client polls with.
async fn request_submitted(u: &Uma, rid: &str, sub: &str) -> String {
    let t = u.ticket(rid, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, sub), &[]).await;
    r.error(sub, 403, "request_submitted");
    r.str("ticket")
}

/// The id of the pending request of `sub`, from the owner's API.
async fn pending_id(u: &Uma, sub: &str) -> String {
    let listed = u.api(Method::GET, "/uma/requests", &u.pat, None).await;
    let found: Vec<&Value> =
        listed.body.as_array().unwrap().iter().filter(|r| r["requesting_party"]["sub"] == sub).collect();
    assert_eq!(found.len(), 1, "{}", listed.body);
    found[0]["id"].as_str().unwrap().to_owned()
}

async fn status_of(u: &Uma, id: &str) -> String {
    let listed = u.api(Method::GET, "/uma/requests", &u.pat, None).await;
    let req = listed.body.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id}"));
    req["status"].as_str().unwrap().to_owned()
}

// ---- in a browser ----

/// Where the screenshots go: `target/test-artifacts/console/`.
const SHOTS: &str = "console";

/// Signs in through the form; returns the dashboard's text.
async fn browser_sign_in(b: &Browser, u: &Uma, shot: Option<&str>) -> String {
    b.c.goto(&u.t.url("/console")).await.unwrap();
    assert_eq!(b.text("h1").await, "Sign in to your console");
    if let Some(name) = shot {
        b.screenshot(SHOTS, name).await;
    }
    b.type_into("username", "alice").await;
    b.type_into("password", PASSWORD).await;
    b.click("#sign-in").await;
    assert_eq!(b.text("#owner").await, "alice");
    assert_eq!(b.text("#flash").await, "You are signed in.");
    b.text("body").await
}

/// The pending request on the dashboard names who asks (subject, issuer and verified claims), the
/// client, the resource and the scope.
async fn assert_request_shown(b: &Browser) {
    let card = b.text("article.request").await;
    for expected in ["dr-bob asks for access", IDP_ISSUER, "npi 1234567893", "role physician", "uma-client"] {
        assert!(card.contains(expected), "`{expected}` on the request card:\n{card}");
    }
    assert_eq!(b.text("article.request .party").await, "dr-bob");
    assert_eq!(b.text("article.request .scopes").await, "read");
    assert_eq!(b.text("article.request legend").await, "Scopes to approve");
}

/// Desktop: request_submitted → alice signs in, sees the request, approves → the poll gets an RPT.
async fn the_owner_approves_in_a_browser(store: StoreKind) {
    let Some(b) = Browser::start(Screen::Desktop).await else { return };
    let (u, rid) = start(store).await;
    let ticket = request_submitted(&u, &rid, "dr-bob").await;
    let shots = store == StoreKind::Sqlite;

    browser_sign_in(&b, &u, shots.then_some("signin-desktop")).await;
    assert_request_shown(&b).await;
    if shots {
        b.screenshot(SHOTS, "dashboard-desktop").await;
    }
    b.click("#approve-1").await;
    assert_eq!(b.text("#flash").await, "Request approved. The client gets its token when it asks again.");
    assert_eq!(b.text("#requests .empty").await, "Nothing is waiting for you.");

    let r = u.grant(UMA_CLIENT, &ticket, &[]).await;
    let rpt = r.rpt("approved in the console", &["refresh_token"])["access_token"].as_str().unwrap().to_owned();
    let intro = u.introspect(&u.pat, &rpt).await;
    assert_eq!(intro["permissions"], json!([{"resource_id": rid, "resource_scopes": ["read"]}]), "{intro}");

    // The decision is in the audit trail on the page, and the client holds a token now.
    b.c.goto(&u.t.url("/console")).await.unwrap();
    let activity = b.text("#activity").await;
    assert!(activity.contains("granted") && activity.contains("dr-bob"), "{activity}");
    assert!(b.text("#clients").await.contains("uma-client"));

    // Sharing from the resource's card: the form opens without script.
    let card = format!("[id=\"resource-{rid}\"]");
    b.c.find(fantoccini::Locator::Css(&format!("{card} summary"))).await.unwrap().click().await.unwrap();
    b.c.find(fantoccini::Locator::Css(&format!("{card} input[name=scope][value=read]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.type_into(&format!("iss-{rid}"), IDP_ISSUER).await;
    b.type_into(&format!("value-{rid}"), "carol@hospital.example").await;
    if shots {
        b.screenshot(SHOTS, "share-form-desktop").await;
    }
    b.click(&format!("{card} button.primary")).await;
    assert_eq!(b.text("#flash").await, "Share created.");
    let shares = b.text(&format!("{card} .share")).await;
    assert!(shares.contains("email carol@hospital.example") && shares.contains("read · no end"), "{shares}");
    if shots {
        b.screenshot(SHOTS, "dashboard-after-approval-desktop").await;
    }
    b.close().await;
    u.stop().await;
}

/// Phone width: the same flow, the owner denies → the poll gets request_denied.
async fn the_owner_denies_on_a_phone(store: StoreKind) {
    let Some(b) = Browser::start(Screen::Phone).await else { return };
    let (u, rid) = start(store).await;
    let ticket = request_submitted(&u, &rid, "dr-bob").await;
    let shots = store == StoreKind::Sqlite;

    browser_sign_in(&b, &u, shots.then_some("signin-phone")).await;
    let width: i64 =
        b.c.execute("return document.documentElement.clientWidth", vec![]).await.unwrap().as_i64().unwrap();
    assert_eq!(width, 390, "a phone-sized window");
    if shots {
        b.screenshot(SHOTS, "dashboard-phone").await;
    }
    let scroll: i64 =
        b.c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap().as_i64().unwrap();
    assert!(scroll <= 390, "nothing wider than the phone's screen: {scroll}px");
    assert_request_shown(&b).await;
    b.click("#deny-1").await;
    assert_eq!(b.text("#flash").await, "Request denied.");

    u.grant(UMA_CLIENT, &ticket, &[]).await.error("denied in the console", 403, "request_denied");
    b.close().await;
    u.stop().await;
}

// ---- over HTTP ----

fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap().to_owned()))
}

/// The value of the first `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let (_, rest) = html.split_once("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no csrf field:\n{html}"));
    rest.split('"').next().unwrap().to_owned()
}

/// The page as text: minijinja escapes `/` and quotes, the browser would show them plainly.
fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A signed-in browser, by hand: its session cookie and its forms' CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

struct Page {
    status: u16,
    headers: HeaderMap,
    html: String,
}

async fn get(u: &Uma, path: &str, cookie: &str) -> Page {
    let res = u.t.http.get(u.t.url(path)).header("cookie", cookie).send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    Page { status, headers, html: res.text().await.unwrap() }
}

async fn post(u: &Uma, path: &str, cookie: &str, form: &[(&str, &str)]) -> Page {
    let res = u.t.http.post(u.t.url(path)).header("cookie", cookie).form(form).send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    Page { status, headers, html: res.text().await.unwrap() }
}

/// Loads the sign-in form (its cookie and token) and posts `username` / `password`.
async fn try_sign_in(u: &Uma, username: &str, password: &str) -> Page {
    let form = get(u, "/console", "").await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains("Sign in to your console"), "{}", form.html);
    let binding = set_cookie(&form.headers, "tessera_console_signin").expect("sign-in cookie");
    let csrf = csrf_of(&form.html);
    post(
        u,
        "/console/signin",
        &format!("tessera_console_signin={binding}"),
        &[("csrf", &csrf), ("username", username), ("password", password)],
    )
    .await
}

async fn sign_in(u: &Uma, username: &str) -> Session {
    let done = try_sign_in(u, username, PASSWORD).await;
    assert_eq!(done.status, 303, "{}", done.html);
    assert_eq!(done.headers["location"], "/console?done=signed-in");
    let session = set_cookie(&done.headers, "tessera_session").expect("session cookie");
    let cookie = format!("tessera_session={session}");
    let page = get(u, "/console", &cookie).await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains(&format!("<strong id=\"owner\">{username}</strong>")), "{}", page.html);
    Session { csrf: csrf_of(&page.html), cookie }
}

/// A refused page: HTML for a person (never JSON), with the message.
fn assert_page(p: &Page, status: u16, text: &str) {
    assert_eq!(p.status, status, "{}", p.html);
    assert_eq!(p.headers["content-type"], "text/html; charset=utf-8");
    assert!(unescape(&p.html).contains(text), "`{text}` on the page:\n{}", p.html);
}

/// Wrong passwords, forged forms and another owner: 401, 403 and 404 pages, and nothing changes.
async fn sign_in_csrf_and_other_owners(store: StoreKind) {
    let (u, rid) = start(store).await;
    let _ticket = request_submitted(&u, &rid, "dr-bob").await;
    let id = pending_id(&u, "dr-bob").await;

    // A wrong password and an unknown account: the same 401 page, no session.
    for (who, password) in [("alice", "not the password"), ("nobody", PASSWORD)] {
        let p = try_sign_in(&u, who, password).await;
        assert_page(&p, 401, "Wrong username or password.");
        assert_eq!(set_cookie(&p.headers, "tessera_session"), None);
    }
    // A sign-in form that did not come from this browser.
    let p = post(&u, "/console/signin", "", &[("csrf", "x"), ("username", "alice"), ("password", PASSWORD)]).await;
    assert_page(&p, 403, "did not come from this browser");
    assert_eq!(set_cookie(&p.headers, "tessera_session"), None);

    let alice = sign_in(&u, "alice").await;
    let page = get(&u, "/console", &alice.cookie).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script: {csp}");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store");
    let text = unescape(&page.html);
    assert!(text.contains("dr-bob asks for access") && text.contains(IDP_ISSUER), "{text}");

    // Without the CSRF token, or with another one: 403, still pending.
    let path = format!("/console/requests/{id}");
    let p = post(&u, &path, &alice.cookie, &[("decision", "approve"), ("scope", "read")]).await;
    assert_page(&p, 403, "did not come from your console page");
    let p = post(&u, &path, &alice.cookie, &[("csrf", &"0".repeat(64)), ("decision", "deny")]).await;
    assert_page(&p, 403, "did not come from your console page");
    let p = post(&u, &path, "", &[("csrf", &alice.csrf), ("decision", "deny")]).await;
    assert_page(&p, 403, "Your session has ended");
    assert_eq!(status_of(&u, &id).await, "pending");

    // bob neither sees nor decides alice's request.
    let bob = sign_in(&u, "bob").await;
    assert_ne!(bob.csrf, alice.csrf);
    let page = get(&u, "/console", &bob.cookie).await;
    assert!(!page.html.contains(&id) && !page.html.contains("dr-bob"), "{}", page.html);
    assert!(page.html.contains("Nothing is waiting for you."));
    let p = post(&u, &path, &bob.cookie, &[("csrf", &bob.csrf), ("decision", "deny")]).await;
    assert_page(&p, 404, "no such item among yours");
    let p = post(&u, &path, &bob.cookie, &[("csrf", &alice.csrf), ("decision", "deny")]).await;
    assert_page(&p, 403, "did not come from your console page");
    assert_eq!(status_of(&u, &id).await, "pending");
    let p =
        post(&u, "/console/requests/no-such-request", &alice.cookie, &[("csrf", &alice.csrf), ("decision", "deny")])
            .await;
    assert_page(&p, 404, "no such item among yours");

    // Approving nothing is refused on a page; then alice decides (once).
    let p = post(&u, &path, &alice.cookie, &[("csrf", &alice.csrf), ("decision", "approve")]).await;
    assert_page(&p, 400, "Choose at least one scope to approve");
    let form = [("csrf", alice.csrf.as_str()), ("decision", "approve"), ("scope", "read"), ("expires_days", "0")];
    assert_page(&post(&u, &path, &alice.cookie, &form).await, 400, "between 1 and 400");
    let form = [
        ("csrf", alice.csrf.as_str()),
        ("decision", "approve"),
        ("scope", "read"),
        ("expires_days", "7"),
        ("remember", "1"),
    ];
    let p = post(&u, &path, &alice.cookie, &form).await;
    assert_eq!((p.status, p.headers["location"].to_str().unwrap()), (303, "/console?done=approved"));
    assert_eq!(status_of(&u, &id).await, "approved");
    // Remembered: a share for this requesting party, ending with the approval.
    let listed = u.api(Method::GET, "/uma/shares", &u.pat, None).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1), "{}", listed.body);
    assert_eq!(listed.body[0]["matcher"], json!({"iss": IDP_ISSUER, "sub": "dr-bob"}));
    assert_eq!(listed.body[0]["expires_at"], json!(u.now() + 7 * 86_400));
    assert_page(&post(&u, &path, &alice.cookie, &form).await, 404, "already handled");

    // Signing out ends the session: its token no longer works either.
    let p = post(&u, "/console/signout", &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_eq!((p.status, p.headers["location"].to_str().unwrap()), (303, "/console?done=signed-out"));
    assert_eq!(set_cookie(&p.headers, "tessera_session").as_deref(), Some(""));
    let page = get(&u, "/console", &alice.cookie).await;
    assert!(page.html.contains("Sign in to your console"), "{}", page.html);
    let p = post(&u, "/console/signout", &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_page(&p, 403, "Your session has ended");
    u.stop().await;
}

/// A share made and revoked in the console is the one the protection API lists; revoking a client's
/// tokens ends its RPTs, refresh tokens and PCTs for this owner.
async fn shares_and_a_clients_tokens(store: StoreKind) {
    let (u, _) = start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let alice = sign_in(&u, "alice").await;
    let now = u.now();

    // Create: the same validation as POST /uma/shares.
    let share = |scope: &'static str, days: &'static str| {
        vec![
            ("csrf", alice.csrf.clone()),
            ("resource_id", obs.clone()),
            ("scope", scope.to_owned()),
            ("iss", IDP_ISSUER.to_owned()),
            ("claim", "email".to_owned()),
            ("value", "carol@hospital.example".to_owned()),
            ("expires_days", days.to_owned()),
        ]
    };
    let as_pairs = |v: &Vec<(&'static str, String)>| v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let p =
        u.t.http.post(u.t.url("/console/shares")).header("cookie", &alice.cookie).form(&as_pairs(&share("fly", "30")));
    let p = p.send().await.unwrap();
    assert_eq!(p.status(), 400);
    assert!(unescape(&p.text().await.unwrap()).contains("Scope `fly` is not declared in the policy schema"));
    let p =
        u.t.http.post(u.t.url("/console/shares")).header("cookie", &alice.cookie).form(&as_pairs(&share("read", "30")));
    let p = p.send().await.unwrap();
    assert_eq!((p.status().as_u16(), p.headers()["location"].to_str().unwrap()), (303, "/console?done=shared"));

    let listed = u.api(Method::GET, "/uma/shares", &u.pat, None).await;
    let shares = listed.body.as_array().unwrap();
    assert_eq!(shares.len(), 1, "{}", listed.body);
    assert_eq!(shares[0]["resource_id"], obs.as_str());
    assert_eq!(shares[0]["scopes"], json!(["read"]));
    assert_eq!(shares[0]["matcher"], json!({"iss": IDP_ISSUER, "email": "carol@hospital.example"}));
    assert_eq!(shares[0]["expires_at"], json!(now + 30 * 86_400));
    let share_id = shares[0]["id"].as_str().unwrap().to_owned();
    let page = unescape(&get(&u, "/console", &alice.cookie).await.html);
    assert!(page.contains("carol@hospital.example") && page.contains("Revoke share"), "{page}");
    assert!(page.contains("heart/fhir.cedar#physicians-read"), "the policy that can grant read: {page}");
    assert!(page.contains("heart/fhir.cedar#fhir-no-write"), "the policy that forbids write: {page}");

    // Revoke; bob cannot, a second time is 404.
    let path = format!("/console/shares/{share_id}/revoke");
    let bob = sign_in(&u, "bob").await;
    assert_page(&post(&u, &path, &bob.cookie, &[("csrf", &bob.csrf)]).await, 404, "no such item");
    let p = post(&u, &path, &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_eq!((p.status, p.headers["location"].to_str().unwrap()), (303, "/console?done=share-revoked"));
    let listed = u.api(Method::GET, "/uma/shares", &u.pat, None).await;
    assert!(listed.body[0]["revoked_at"].is_i64(), "{}", listed.body);
    assert_page(&post(&u, &path, &alice.cookie, &[("csrf", &alice.csrf)]).await, 404, "no such item");

    // Two clients hold RPTs (one with a PCT); alice ends one client's tokens only.
    let body = u.rpt_for(UMA_CLIENT, &obs, &["read"], &[]).await;
    let (rpt, refresh) = (body["access_token"].as_str().unwrap(), body["refresh_token"].as_str().unwrap());
    let other = u.rpt_for(PCT_CLIENT, &obs, &["read"], &[]).await;
    let (other_rpt, pct) = (other["access_token"].as_str().unwrap(), other["pct"].as_str().unwrap());
    let page = unescape(&get(&u, "/console", &alice.cookie).await.html);
    assert!(page.contains("uma-client") && page.contains("pct-client"), "{page}");

    let p = post(&u, "/console/clients/pct-client/revoke", &alice.cookie, &[]).await;
    assert_page(&p, 403, "did not come from your console page");
    assert_eq!(u.introspect(&u.pat, other_rpt).await["active"], true);
    let p = post(&u, "/console/clients/pct-client/revoke", &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_eq!((p.status, p.headers["location"].to_str().unwrap()), (303, "/console?done=client-revoked"));
    assert_eq!(u.introspect(&u.pat, other_rpt).await, inactive());
    let t = u.ticket(&obs, &["read"]).await;
    u.grant(PCT_CLIENT, &t, &[("pct", pct)]).await.error("PCT of a revoked client", 400, "invalid_grant");
    assert_eq!(u.introspect(&u.pat, rpt).await["active"], true, "the other client keeps its token");

    let p = post(&u, "/console/clients/uma-client/revoke", &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_eq!(p.status, 303);
    assert_eq!(u.introspect(&u.pat, rpt).await, inactive());
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    r.error("refresh token of a revoked client", 400, "invalid_grant");
    let p = post(&u, "/console/clients/uma-client/revoke", &alice.cookie, &[("csrf", &alice.csrf)]).await;
    assert_page(&p, 404, "no such item");
    let page = unescape(&get(&u, "/console", &alice.cookie).await.html);
    assert!(page.contains("No client holds a live token for your resources."), "{page}");
    u.stop().await;
}
