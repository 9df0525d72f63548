//! Interactive claims gathering (issue 8, UMA Grant §3.3.2–3.3.3): the claims interaction endpoint
//! `{issuer}/claims` over plain HTTP (error pages, dead tickets, CSRF and browser binding, cancel,
//! local-account sign-in, federated sign-in at a real OpenID Provider), and the whole flow in headless
//! Chromium against that provider (`tests/idp`, npm `oidc-provider`), with screenshots written to
//! `target/test-artifacts/claims-gathering/`.
//!
//! The client's `claims_redirect_uri` of the HTTP tests is never served: the tests read the redirect's
//! `Location`. The browser test serves it on loopback and records what the browser brought back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, Locator};
use serde_json::{Value, json};
use tessera::clock::{Clock, FixedClock, SystemClock};

use crate::both_stores;
use crate::support::browser::{self, Driver, Screen};
use crate::support::idp::{self, Agent, Form, Idp, Page};
use crate::support::uma::{self, Client, OBSERVATION, RS1, SECRET, UMA_GRANT, Uma, active_rpt, perms};
use crate::support::{Options, StoreKind, TestAs, TestDb};

/// The UMA client of these tests: `claims_redirect_uris = [its claims URI]`, and an OAuth
/// `redirect_uris` entry that must not count as a claims redirect URI.
const CLIENT: Client = Client { id: "uma-client", secret: Some(SECRET) };
/// Another UMA client with its own claims redirect URI.
const OTHER: Client = Client { id: "other-client", secret: Some(SECRET) };
/// A UMA client without claims redirect URIs: its need_info has no `redirect_user`.
const PLAIN: Client = Client { id: "plain-client", secret: Some(SECRET) };
/// A UMA client with two claims redirect URIs (so one must be named).
const TWO: Client = Client { id: "two-uris-client", secret: Some(SECRET) };

/// The claims redirect URI of the HTTP tests (never served).
const BACK: &str = "http://127.0.0.1:9/uma-client/claims";
/// `uma-client`'s OAuth redirect URI, not a claims redirect URI.
const OAUTH_REDIRECT: &str = "http://127.0.0.1:9/uma-client/oauth";
const OTHER_BACK: &str = "http://127.0.0.1:9/other-client/claims";
const TWO_BACK_A: &str = "http://127.0.0.1:9/two/a";
const TWO_BACK_B: &str = "http://127.0.0.1:9/two/b";

const COOKIE: &str = "tessera_claims";
const VERIFIER: &str = "partner-idp-oidc";
const PASSWORD: &str = "correct horse battery staple";
const LOCAL_ACCOUNTS: &str = "[uma]\nlocal_account_claims = true\n";

both_stores!(
    errors_are_pages_and_never_redirect,
    dead_tickets_go_back_with_invalid_grant,
    forms_need_their_csrf_token_and_the_browser_that_started,
    discovery_and_need_info_point_to_the_interaction_endpoint,
    an_issuer_with_a_path_keeps_its_pages_and_cookie_under_it,
    a_local_account_signs_in,
    a_partner_sign_in_over_http,
    a_person_signs_in_at_a_partner_in_a_real_browser,
);

// ---------------------------------------------------------------------------------------------------
// Set-up

/// The `[[clients]]` of these tests; `back` is `uma-client`'s one claims redirect URI.
fn clients_toml(back: &str) -> String {
    format!(
        "[[clients]]\nclient_id = \"uma-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\", \"refresh_token\", \"authorization_code\"]\n\
         redirect_uris = [\"{OAUTH_REDIRECT}\"]\nclaims_redirect_uris = [\"{back}\"]\n\
         [[clients]]\nclient_id = \"other-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\"]\nclaims_redirect_uris = [\"{OTHER_BACK}\"]\n\
         [[clients]]\nclient_id = \"plain-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\"]\n\
         [[clients]]\nclient_id = \"two-uris-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\"]\nclaims_redirect_uris = [\"{TWO_BACK_A}\", \"{TWO_BACK_B}\"]\n\
         [[clients]]\nclient_id = \"demo-rs\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"client_credentials\"]\nscope = \"uma_protection\"\nowner = \"alice\"\n"
    )
}

/// Tessera over `db` on a fixed clock, with these tests' clients (`back`: `uma-client`'s claims
/// redirect URI), `top` (top-level TOML keys, e.g. `verifiers_dir`), `tables` (TOML tables, e.g.
/// `[uma]`), and a policies folder (`None`: the repository's); alice's PAT at `demo-rs`.
async fn serve(db: TestDb, back: &str, top: &str, tables: &str, policies: Option<PathBuf>) -> Uma {
    serve_at(db, "", back, top, tables, policies).await
}

/// [`serve`] with an issuer path (e.g. `/as`).
async fn serve_at(db: TestDb, path: &str, back: &str, top: &str, tables: &str, policies: Option<PathBuf>) -> Uma {
    let clock = FixedClock::new(SystemClock.now());
    let toml = format!("{top}{}{tables}", clients_toml(back));
    let t = TestAs::start_with(
        &db,
        Options {
            issuer_path: path,
            extra_toml: &toml,
            fixed_clock: Some(clock.clone()),
            policies_dir: policies.as_deref(),
        },
    )
    .await;
    let mut u = Uma { db, t, clock, pat: String::new(), pat2: String::new() };
    u.pat = u.pat_of(RS1).await;
    u
}

/// The HTTP tests' server: the demo policies, the unit tests' partner verifier (static key, no
/// provider running), and sign-in with local accounts as the interactive method.
async fn http_server(store: StoreKind) -> Uma {
    let db = TestDb::new(store).await;
    let verifiers = uma::verifiers_toml(&db);
    serve(db, BACK, &verifiers, LOCAL_ACCOUNTS, None).await
}

/// `{issuer}/claims?…`
fn claims_url(u: &Uma, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&u.t.url("/claims")).unwrap();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    url.into()
}

/// A live ticket from `demo-rs` for `read` on a new Observation of alice's.
async fn observation_ticket(u: &Uma) -> (String, String) {
    let rid = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let ticket = u.ticket(&rid, &["read"]).await;
    (rid, ticket)
}

// ---------------------------------------------------------------------------------------------------
// What a person's browser is shown

/// The headers every page of the interaction endpoint carries.
fn assert_safe_headers(p: &Page, case: &str) {
    let csp = p.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{case}: Content-Security-Policy `{csp}`");
    assert!(p.header("x-frame-options").eq_ignore_ascii_case("DENY"), "{case}: X-Frame-Options {p:?}");
    assert_eq!(p.header("referrer-policy"), "no-referrer", "{case}");
    assert!(p.header("cache-control").contains("no-store"), "{case}: Cache-Control `{}`", p.header("cache-control"));
}

/// A page for a person: `status`, HTML (never JSON), no redirect, the safe headers.
fn assert_page(p: &Page, status: u16, case: &str) {
    assert_eq!(p.status, status, "{case}: {p:?}");
    assert_eq!(p.location(), None, "{case}: a page, not a redirect");
    assert!(p.header("content-type").starts_with("text/html"), "{case}: content-type {p:?}");
    assert!(serde_json::from_str::<Value>(&p.body).is_err(), "{case}: a JSON body shown to a person: {}", p.body);
    assert!(p.body.to_ascii_lowercase().contains("<html"), "{case}: not an HTML page: {}", p.body);
    assert_safe_headers(p, case);
}

/// A redirect back to the client: `status`, `Location` = `back?…` exactly; its query, each parameter
/// once.
fn assert_back(p: &Page, status: u16, back: &str, case: &str) -> BTreeMap<String, String> {
    assert_eq!(p.status, status, "{case}: {p:?}");
    let loc = p.location().unwrap_or_else(|| panic!("{case}: no Location: {p:?}"));
    let (base, _) = loc.split_once('?').unwrap_or_else(|| panic!("{case}: no query in {loc}"));
    assert_eq!(base, back, "{case}: sent back somewhere else: {loc}");
    let url = url::Url::parse(&loc).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let query: BTreeMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(query.len(), pairs.len(), "{case}: a repeated parameter in {loc}");
    query
}

/// An OAuth error sent back to the client: `error` and `state` (iff `state`), nothing else.
fn assert_error_back(p: &Page, status: u16, back: &str, error: &str, state: Option<&str>, case: &str) {
    let q = assert_back(p, status, back, case);
    let mut expected = BTreeMap::from([("error".to_owned(), error.to_owned())]);
    if let Some(s) = state {
        expected.insert("state".to_owned(), s.to_owned());
    }
    // `error_description` is allowed; a ticket never is.
    let mut got = q.clone();
    got.remove("error_description");
    assert_eq!(got, expected, "{case}: {:?}", p.location());
}

/// The form of `page` whose action is `{issuer}{path}`.
fn form_to(u: &Uma, page: &Page, path: &str) -> Form {
    let base = url::Url::parse(&u.t.url("/claims")).unwrap();
    let target = u.t.url(path);
    idp::forms(&page.body)
        .into_iter()
        .find(|f| base.join(&f.action).is_ok_and(|a| a.as_str() == target))
        .unwrap_or_else(|| panic!("no form posting to {target} on the page:\n{}", page.body))
}

/// An open gathering session in one browser.
struct Session {
    agent: Agent,
    page: Page,
    session: String,
    csrf: String,
}

impl Session {
    /// The session's hidden fields plus `extra`.
    fn fields(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut f = vec![("session".to_owned(), self.session.clone()), ("csrf".to_owned(), self.csrf.clone())];
        f.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        f
    }
}

/// A browser opens `{issuer}/claims` for a live ticket: the page, its cookie and its cancel form.
async fn open(u: &Uma, params: &[(&str, &str)]) -> Session {
    let mut agent = Agent::new();
    let page = agent.get(&claims_url(u, params)).await;
    assert_page(&page, 200, "the claims page");
    let cookie = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{COOKIE}=")))
        .unwrap_or_else(|| panic!("no {COOKIE} cookie: {page:?}"));
    let attrs: Vec<String> = cookie.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attrs.contains(&"httponly".to_owned()), "{cookie}");
    assert!(attrs.contains(&"samesite=lax".to_owned()), "{cookie}");
    let path = url::Url::parse(&u.t.base).unwrap().path().to_owned();
    assert!(attrs.contains(&format!("path={path}")), "Path {path}: {cookie}");
    assert!(!attrs.contains(&"secure".to_owned()), "no Secure on an http issuer: {cookie}");
    let cancel = form_to(u, &page, "/claims/cancel");
    assert_eq!(cancel.method, "post");
    assert!(cancel.ids.contains(&"cancel".to_owned()), "{cancel:?}");
    let session = cancel.field("session").expect("session field").to_owned();
    let csrf = cancel.field("csrf").expect("csrf field").to_owned();
    assert!(!session.is_empty() && csrf.len() >= 16, "{cancel:?}");
    Session { agent, page, session, csrf }
}

/// `open` for `uma-client`, its claims URI named, with `ticket` and `state`.
async fn open_for(u: &Uma, ticket: &str, state: &str) -> Session {
    open(u, &[("client_id", CLIENT.id), ("ticket", ticket), ("claims_redirect_uri", BACK), ("state", state)]).await
}

async fn post<K: AsRef<str>, V: AsRef<str>>(u: &Uma, agent: &mut Agent, path: &str, fields: &[(K, V)]) -> Page {
    agent.post(&u.t.url(path), fields).await
}

// ---------------------------------------------------------------------------------------------------
// a. Error paths over HTTP

/// An unknown client, or a claims redirect URI that is not exactly registered for it, gets an error
/// page and never a redirect (Grant §3.3.2); a claims URI may be left out only when the client has
/// exactly one.
async fn errors_are_pages_and_never_redirect(store: StoreKind) {
    let u = http_server(store).await;
    let (_, ticket) = observation_ticket(&u).await;
    let cases: [(&str, Vec<(&str, &str)>); 8] = [
        ("no client_id", vec![("ticket", &ticket), ("claims_redirect_uri", BACK), ("state", "s")]),
        ("unknown client", vec![("client_id", "nobody"), ("ticket", &ticket), ("claims_redirect_uri", BACK)]),
        ("no parameters at all", vec![]),
        (
            "trailing slash",
            vec![
                ("client_id", CLIENT.id),
                ("ticket", &ticket),
                ("claims_redirect_uri", "http://127.0.0.1:9/uma-client/claims/"),
            ],
        ),
        (
            "another port",
            vec![
                ("client_id", CLIENT.id),
                ("ticket", &ticket),
                ("claims_redirect_uri", "http://127.0.0.1:10/uma-client/claims"),
            ],
        ),
        (
            "an OAuth redirect_uri only",
            vec![("client_id", CLIENT.id), ("ticket", &ticket), ("claims_redirect_uri", OAUTH_REDIRECT)],
        ),
        (
            "another client's claims URI",
            vec![("client_id", CLIENT.id), ("ticket", &ticket), ("claims_redirect_uri", OTHER_BACK)],
        ),
        ("omitted, two registered", vec![("client_id", TWO.id), ("ticket", &ticket), ("state", "s")]),
    ];
    for (case, params) in &cases {
        let page = Agent::new().get(&claims_url(&u, params)).await;
        assert_page(&page, 400, case);
        assert!(page.set_cookies().iter().all(|c| !c.starts_with(COOKIE)), "{case}: no session started: {page:?}");
    }

    // Omitted with exactly one registered: that one, where cancel sends the browser back.
    let mut s = open(&u, &[("client_id", CLIENT.id), ("ticket", &ticket), ("state", "only-one")]).await;
    let fields = s.fields(&[]);
    let back = post(&u, &mut s.agent, "/claims/cancel", &fields).await;
    assert_error_back(&back, 303, BACK, "access_denied", Some("only-one"), "cancel");
    u.stop().await;
}

/// A missing ticket goes back with `invalid_request`, a dead one (unknown, used, presented here
/// already, another client's) with `invalid_grant`, each with the client's `state` iff it sent one
/// and never a ticket; a ticket presented here is dead at the token endpoint too.
async fn dead_tickets_go_back_with_invalid_grant(store: StoreKind) {
    let u = http_server(store).await;
    let (rid, ticket) = observation_ticket(&u).await;
    // A fresh browser opens the endpoint for uma-client, its claims URI named, with `extra`.
    let get = |extra: &[(&str, &str)]| {
        let mut params = vec![("client_id", CLIENT.id), ("claims_redirect_uri", BACK)];
        params.extend_from_slice(extra);
        let url = claims_url(&u, &params);
        async move { Agent::new().get(&url).await }
    };

    let p = get(&[("state", "s-1")]).await;
    assert_error_back(&p, 302, BACK, "invalid_request", Some("s-1"), "no ticket");
    let p = get(&[("ticket", "no-such-ticket-0123456789abcdef"), ("state", "s-2")]).await;
    assert_error_back(&p, 302, BACK, "invalid_grant", Some("s-2"), "unknown ticket");
    let p = get(&[("ticket", "no-such-ticket-0123456789abcdef")]).await;
    assert_error_back(&p, 302, BACK, "invalid_grant", None, "unknown ticket, no state");

    // Used: redeemed at the token endpoint (need_info rotated it).
    let r = u.grant(CLIENT, &ticket, &[]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("need_info")), "{}", r.body);
    let rotated = r.str("ticket");
    let p = get(&[("ticket", &ticket), ("state", "s-3")]).await;
    assert_error_back(&p, 302, BACK, "invalid_grant", Some("s-3"), "used ticket");

    // Presented here: spent at once, here and at the token endpoint.
    let live = open_for(&u, &rotated, "s-4").await;
    let p = get(&[("ticket", &rotated), ("state", "s-5")]).await;
    assert_error_back(&p, 302, BACK, "invalid_grant", Some("s-5"), "ticket presented here already");
    u.grant(CLIENT, &rotated, &[]).await.error("a ticket presented at /claims, then at /token", 400, "invalid_grant");
    drop(live);

    // Another client's ticket (need_info bound the rotated ticket to other-client).
    let theirs = u.ticket(&rid, &["read"]).await;
    let r = u.grant(OTHER, &theirs, &[]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("need_info")), "{}", r.body);
    let p = get(&[("ticket", &r.str("ticket")), ("state", "s-6")]).await;
    assert_error_back(&p, 302, BACK, "invalid_grant", Some("s-6"), "another client's ticket");
    u.stop().await;
}

/// Every POST needs the session's CSRF token and the cookie of the browser that opened the session:
/// without either, or with another browser's cookie, a 403 page and no redirect (so no ticket). Cancel
/// goes back with `access_denied` and the state; a finished or expired session is a 400 page.
async fn forms_need_their_csrf_token_and_the_browser_that_started(store: StoreKind) {
    let u = http_server(store).await;
    tessera::accounts::add_account(&u.t.server.store, "carol", Some(PASSWORD), serde_json::Map::new(), u.now())
        .await
        .unwrap();
    let (rid, t_a) = observation_ticket(&u).await;
    let t_b = u.ticket(&rid, &["read"]).await;
    let t_c = u.ticket(&rid, &["read"]).await;
    let mut a = open_for(&u, &t_a, "state-a").await;
    let mut b = open_for(&u, &t_b, "state-b").await;
    let mut c = open_for(&u, &t_c, "state-c").await;
    assert_ne!(a.csrf, b.csrf);
    assert_ne!(a.agent.cookies.get(COOKIE), b.agent.cookies.get(COOKIE));
    let account = form_to(&u, &a.page, "/claims/account");
    assert!(["username", "password", "account-signin"].iter().all(|id| account.ids.contains(&(*id).to_owned())));

    let creds = [("username", "carol"), ("password", PASSWORD)];
    let wrong = "wrong-csrf-token-0123456789abcdef";
    let session = a.session.clone();
    let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        std::iter::once(("session", session.as_str()))
            .chain(extra.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let forged = [
        ("cancel without csrf", "/claims/cancel", with(&[])),
        ("cancel with a wrong csrf", "/claims/cancel", with(&[("csrf", wrong)])),
        ("sign-in without csrf", "/claims/account", with(&creds)),
        ("sign-in with a wrong csrf", "/claims/account", with(&[("csrf", wrong), creds[0], creds[1]])),
    ];
    for (case, path, fields) in &forged {
        let p = post(&u, &mut a.agent, path, fields).await;
        assert_page(&p, 403, case);
    }

    // The right session and CSRF token, from a browser without the cookie or with another one's.
    let right = a.fields(&[]);
    let right_signin = a.fields(&creds);
    for (case, path, fields) in [
        ("cancel without the cookie", "/claims/cancel", &right),
        ("sign-in without the cookie", "/claims/account", &right_signin),
    ] {
        let p = post(&u, &mut Agent::new(), path, fields).await;
        assert_page(&p, 403, case);
    }
    for (case, path, fields) in [
        ("cancel with another browser's cookie", "/claims/cancel", &right),
        ("sign-in with another browser's cookie", "/claims/account", &right_signin),
    ] {
        let p = post(&u, &mut b.agent, path, fields).await;
        assert_page(&p, 403, case);
    }

    // b's own cancel: back with access_denied and b's state; then b's session is finished.
    let (b_cancel, b_signin) = (b.fields(&[]), b.fields(&creds));
    let p = post(&u, &mut b.agent, "/claims/cancel", &b_cancel).await;
    assert_error_back(&p, 303, BACK, "access_denied", Some("state-b"), "cancel");
    let p = post(&u, &mut b.agent, "/claims/cancel", &b_cancel).await;
    assert_page(&p, 400, "cancel of a finished session");
    let p = post(&u, &mut b.agent, "/claims/account", &b_signin).await;
    assert_page(&p, 400, "sign-in on a finished session");

    // c's session, a day later: expired.
    u.clock.advance(24 * 3600);
    let c_signin = c.fields(&creds);
    let p = post(&u, &mut c.agent, "/claims/account", &c_signin).await;
    assert_page(&p, 400, "sign-in on an expired session");
    u.stop().await;
}

/// Discovery names the endpoint; need_info sends a client with claims redirect URIs there, and only
/// such a client.
async fn discovery_and_need_info_point_to_the_interaction_endpoint(store: StoreKind) {
    let u = http_server(store).await;
    let (status, _, doc) = u.t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(doc["claims_interaction_endpoint"], u.t.url("/claims"), "{doc}");

    let (rid, ticket) = observation_ticket(&u).await;
    let r = u.grant(CLIENT, &ticket, &[]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("need_info")), "{}", r.body);
    assert_eq!(r.body["redirect_user"], u.t.url("/claims"), "{}", r.body);
    assert!(r.body["ticket"].is_string() && r.body["required_claims"].is_array(), "{}", r.body);

    let ticket = u.ticket(&rid, &["read"]).await;
    let r = u.grant(PLAIN, &ticket, &[]).await;
    r.error("need_info for a client without claims_redirect_uris", 403, "need_info");
    assert!(r.body.get("redirect_user").is_none(), "{}", r.body);
    u.stop().await;

    // A server with no way to sign in (no `[interactive]` provider, local accounts off) advertises
    // no claims interaction endpoint and sends nobody there.
    let db = TestDb::new(store).await;
    let verifiers = uma::verifiers_toml(&db);
    let u = serve(db, BACK, &verifiers, "", None).await;
    let (_, _, doc) = u.t.get_json("/.well-known/uma2-configuration").await;
    assert!(doc.get("claims_interaction_endpoint").is_none(), "{doc}");
    let (_, ticket) = observation_ticket(&u).await;
    let r = u.grant(CLIENT, &ticket, &[]).await;
    r.error("need_info without a way to sign in", 403, "need_info");
    assert!(r.body.get("redirect_user").is_none(), "{}", r.body);
    u.stop().await;
}

/// Under an issuer with a path, the endpoint, the forms and the cookie live under that path.
async fn an_issuer_with_a_path_keeps_its_pages_and_cookie_under_it(store: StoreKind) {
    let db = TestDb::new(store).await;
    let verifiers = uma::verifiers_toml(&db);
    let u = serve_at(db, "/as", BACK, &verifiers, LOCAL_ACCOUNTS, None).await;
    assert!(u.t.base.ends_with("/as"), "{}", u.t.base);
    let (_, _, doc) = u.t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(doc["claims_interaction_endpoint"], u.t.url("/claims"), "{doc}");
    let (_, ticket) = observation_ticket(&u).await;
    let mut s = open_for(&u, &ticket, "path-state").await;
    form_to(&u, &s.page, "/claims/account");
    let fields = s.fields(&[]);
    let p = post(&u, &mut s.agent, "/claims/cancel", &fields).await;
    assert_error_back(&p, 303, BACK, "access_denied", Some("path-state"), "cancel under /as");
    u.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// b. Local accounts

/// The trust rule of these tests: the partner IdP and local accounts.
const TRUST: &str = r#"@id("untrusted-verifier")
forbid (principal, action, resource)
when {
  context.claim_source != "none" &&
  !["partner-idp-oidc", "local-accounts"].contains(context.verifier)
};
"#;

/// carol, signed in with her local account, reads.
const CAROL_READS: &str = r#"@id("carol-reads")
permit (principal, action == Tessera::Action::"read", resource)
when { context.verifier == "local-accounts" && principal has sub && principal.sub == "carol" };
"#;

/// A person signs in with a local Tessera account: a wrong password is a 401 page with the form again;
/// the right one goes back with a new ticket, bound to the client, that carries her claims.
async fn a_local_account_signs_in(store: StoreKind) {
    let db = TestDb::new(store).await;
    let policies = uma::write_policies(&db, &[("trust.cedar", TRUST), ("local.cedar", CAROL_READS)]);
    let u = serve(db, BACK, "", LOCAL_ACCOUNTS, Some(policies)).await;
    tessera::accounts::add_account(&u.t.server.store, "carol", Some(PASSWORD), serde_json::Map::new(), u.now())
        .await
        .unwrap();
    let (rid, ticket) = observation_ticket(&u).await;
    let mut s = open_for(&u, &ticket, "local-state").await;
    let form = form_to(&u, &s.page, "/claims/account");
    assert_eq!(form.method, "post");
    assert!(form.field("username").is_some() && form.field("password").is_some(), "{form:?}");
    assert!(
        ["username", "password", "account-signin"].iter().all(|id| form.ids.contains(&(*id).to_owned())),
        "{form:?}"
    );

    let fields = |f: &Form, password: &str| -> Vec<(String, String)> {
        [("session", f.field("session").expect("session")), ("csrf", f.field("csrf").expect("csrf"))]
            .into_iter()
            .chain([("username", "carol"), ("password", password)])
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let p = post(&u, &mut s.agent, "/claims/account", &fields(&form, "not her password")).await;
    assert_page(&p, 401, "wrong password");
    let again = form_to(&u, &p, "/claims/account");
    assert!(
        ["username", "password", "account-signin"].iter().all(|id| again.ids.contains(&(*id).to_owned())),
        "{again:?}"
    );

    let p = post(&u, &mut s.agent, "/claims/account", &fields(&again, PASSWORD)).await;
    let q = assert_back(&p, 303, BACK, "right password");
    assert_eq!(q.keys().map(String::as_str).collect::<Vec<_>>(), ["state", "ticket"], "{q:?}");
    assert_eq!(q["state"], "local-state");
    let t2 = &q["ticket"];
    assert_ne!(t2, &ticket, "a new ticket");

    // Bound to uma-client: another client cannot redeem it (and does not spend it).
    u.grant(OTHER, t2, &[]).await.error("another client redeems the gathered ticket", 400, "invalid_grant");
    let r = u.grant(CLIENT, t2, &[]).await;
    let rpt = r.rpt("the gathered ticket", &["refresh_token"])["access_token"].as_str().unwrap().to_owned();
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, CLIENT.id, &u.t.base), perms(&[(&rid, &["read"])]));

    // The decision names carol, as vouched for by this server, through gathered claims.
    let audit = u.audit_tail();
    let line = audit.iter().rev().find(|l| l["outcome"] == "rpt").unwrap_or_else(|| panic!("{audit:#?}"));
    assert_eq!(line["party_iss"], u.t.base.as_str(), "{line}");
    assert_eq!(line["party_sub"], "carol", "{line}");
    assert_eq!(line["claim_sources"], json!(["gathered:local-accounts"]), "{line}");
    u.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// Federated sign-in at the real OpenID Provider

/// The verifier of the live provider at `issuer`, with browser sign-in as Tessera's client `tessera`.
fn partner_verifier(dir: &Path, issuer: &str) -> String {
    let verifiers = dir.join("verifiers");
    std::fs::create_dir_all(&verifiers).unwrap();
    std::fs::write(
        verifiers.join(format!("{VERIFIER}.toml")),
        format!(
            "format = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"uma-client\"]\nallowed_clients = [\"uma-client\"]\n\
             algorithms = [\"RS256\"]\nmay_assert = [\"npi\", \"role\", \"email\"]\n\
             [keys]\ndiscovery = true\n\
             [interactive]\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
             scopes = [\"openid\", \"email\", \"profile\", \"healthcare\"]\nlabel = \"Partner hospital\"\n\
             [[claims]]\nfrom = \"npi\"\ntype = \"string\"\n\
             [[claims]]\nfrom = \"role\"\ntype = \"string\"\n\
             [[claims]]\nfrom = \"email\"\ntype = \"string\"\n",
            idp::TESSERA_CLIENT,
            idp::TESSERA_SECRET,
        ),
    )
    .unwrap();
    format!("verifiers_dir = \"{}\"\n", verifiers.display())
}

/// The repository's `*.cedar` policies, copied into `dir/policies` with the demo partner issuer
/// replaced by `issuer`.
fn policies_for(dir: &Path, issuer: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path, issuer: &str) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target, issuer);
            } else if path.extension().is_some_and(|e| e == "cedar") {
                std::fs::write(&target, std::fs::read_to_string(&path).unwrap().replace(uma::IDP_ISSUER, issuer))
                    .unwrap();
            }
        }
    }
    let to = dir.join("policies");
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), &to, issuer);
    to
}

/// Tessera trusting a live OpenID Provider (the demo policies, for its issuer), and that provider,
/// which knows Tessera's callback. `None` when node is missing outside CI.
async fn with_partner(store: StoreKind, back: &str) -> Option<(Uma, Idp)> {
    tokio::task::spawn_blocking(idp::ensure_installed).await.unwrap()?;
    let db = TestDb::new(store).await;
    let port = idp::free_port();
    let issuer = idp::issuer_on(port);
    let verifiers = partner_verifier(db.dir(), &issuer);
    let policies = policies_for(db.dir(), &issuer);
    let u = serve(db, back, &verifiers, "", Some(policies)).await;
    let provider = Idp::start_on(port, &[u.t.url("/claims/callback")], None).await.expect("node is installed");
    Some((u, provider))
}

/// A physician signs in at the partner over plain HTTP: Tessera sends the browser there with PKCE,
/// `state` and `nonce`, and back to the client with a new ticket that gets an RPT. A person who gives
/// up at the provider goes back with `access_denied`. The same provider's ID token, pushed, works too.
async fn a_partner_sign_in_over_http(store: StoreKind) {
    let Some((u, provider)) = with_partner(store, BACK).await else { return };
    let (rid, ticket) = observation_ticket(&u).await;
    let r = u.grant(CLIENT, &ticket, &[]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("need_info")), "{}", r.body);
    let issuers: Vec<&Value> = r.body["required_claims"].as_array().unwrap().iter().map(|c| &c["issuer"]).collect();
    assert!(issuers.iter().all(|i| **i == json!([provider.issuer()])), "{}", r.body);
    let ticket = r.str("ticket");

    let mut s = open_for(&u, &ticket, "partner-state").await;
    let f = form_to(&u, &s.page, "/claims/oidc");
    assert_eq!(f.field("provider"), Some(VERIFIER), "{f:?}");
    assert!(f.ids.contains(&format!("provider-{VERIFIER}")), "{f:?}");
    let fields = s.fields(&[("provider", VERIFIER)]);
    let to_idp = post(&u, &mut s.agent, "/claims/oidc", &fields).await;
    assert_eq!(to_idp.status, 303, "{to_idp:?}");
    let auth = url::Url::parse(&to_idp.location().unwrap()).unwrap();
    assert!(auth.as_str().starts_with(&format!("{}/auth?", provider.issuer())), "{auth}");
    let q: BTreeMap<String, String> = auth.query_pairs().into_owned().collect();
    assert_eq!(q.get("client_id").map(String::as_str), Some(idp::TESSERA_CLIENT), "{auth}");
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"), "{auth}");
    assert_eq!(q.get("redirect_uri"), Some(&u.t.url("/claims/callback")), "{auth}");
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"), "{auth}");
    for member in ["code_challenge", "state", "nonce"] {
        assert!(q.get(member).is_some_and(|v| v.len() >= 22), "{member} in {auth}");
    }
    let scope: Vec<&str> = q.get("scope").map(|s| s.split(' ').collect()).unwrap_or_default();
    assert!(scope.contains(&"openid") && scope.contains(&"healthcare"), "{auth}");

    let first = s.agent.get(auth.as_str()).await;
    let callback = provider.sign_in(&mut s.agent, first, "alice", &u.t.url("/claims/callback")).await;
    let p = s.agent.get(callback.as_str()).await;
    let q = assert_back(&p, 302, BACK, "back from the provider");
    assert_eq!(q.keys().map(String::as_str).collect::<Vec<_>>(), ["state", "ticket"], "{q:?}");
    assert_eq!(q["state"], "partner-state");
    assert_ne!(q["ticket"], ticket);
    let r = u.grant(CLIENT, &q["ticket"], &[]).await;
    let rpt = r.rpt("the gathered ticket", &["refresh_token"])["access_token"].as_str().unwrap().to_owned();
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, CLIENT.id, &u.t.base), perms(&[(&rid, &["read"])]));
    // The callback is single use.
    let p = s.agent.get(callback.as_str()).await;
    assert!(p.location().is_none_or(|l| !l.contains("ticket=")), "a replayed callback gave a ticket: {p:?}");

    // Giving up at the provider: access_denied, the state, no ticket.
    let (_, ticket) = observation_ticket(&u).await;
    let mut s = open_for(&u, &ticket, "abort-state").await;
    let fields = s.fields(&[("provider", VERIFIER)]);
    let to_idp = post(&u, &mut s.agent, "/claims/oidc", &fields).await;
    let mut res = s.agent.get(&to_idp.location().unwrap()).await;
    let interaction = res.location().expect("to the login page");
    let interaction = url::Url::parse(provider.issuer()).unwrap().join(&interaction).unwrap();
    assert!(interaction.path().starts_with("/interaction/"), "{interaction}");
    res = s.agent.get(&format!("{interaction}/abort")).await;
    let mut hops = 0;
    while let Some(loc) = res.location().filter(|l| !l.starts_with(BACK)) {
        hops += 1;
        assert!(hops < 6, "{res:?}");
        let next = url::Url::parse(provider.issuer()).unwrap().join(&loc).unwrap();
        res = s.agent.get(next.as_str()).await;
    }
    assert_error_back(&res, 302, BACK, "access_denied", Some("abort-state"), "the person gave up at the provider");

    // The same provider's ID token, issued to uma-client and pushed (the helper issue 9 builds on).
    let (_, ticket) = observation_ticket(&u).await;
    let id_token = provider.id_token("alice").await;
    u.grant_pushing(CLIENT, &ticket, &id_token, &[]).await.rpt("alice's pushed ID token", &["refresh_token"]);
    drop(provider);
    u.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// c. The browser

/// The client's own page at its claims redirect URI: records each query it is sent.
struct ClientSite {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ClientSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn client_site() -> ClientSite {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/claims-done",
        axum::routing::get(move |uri: axum::http::Uri| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(uri.query().unwrap_or_default().to_owned());
                axum::response::Html(
                    "<!doctype html><html><head><title>Clinic app</title></head>\
                     <body><h1 id=\"back\">Back at the clinic app</h1></body></html>",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/claims-done", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    ClientSite { url, seen, task }
}

/// `target/test-artifacts/claims-gathering/<store>-<name>.png`
async fn screenshot(c: &Browser, store: StoreKind, name: &str) {
    let store = match store {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
    };
    browser::screenshot(c, "claims-gathering", &format!("{store}-{name}")).await;
}

/// Waits until the browser is at a URL starting with `prefix`; returns it.
async fn wait_for_url(c: &Browser, prefix: &str) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(prefix) {
            return url;
        }
        assert!(Instant::now() < deadline, "the browser never got to {prefix}; it is at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Done-when of issue 8: need_info with `redirect_user`, the browser at the interaction endpoint,
/// sign-in at a real OpenID Provider on loopback, back at the client's claims redirect URI with a new
/// ticket and the same state, and an RPT for that ticket.
async fn a_person_signs_in_at_a_partner_in_a_real_browser(store: StoreKind) {
    let Some(driver) = Driver::start() else { return };
    let site = client_site().await;
    let Some((u, provider)) = with_partner(store, &site.url).await else { return };
    let (rid, ticket) = observation_ticket(&u).await;
    let r = u.grant(CLIENT, &ticket, &[]).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("need_info")), "{}", r.body);
    let redirect_user = r.str("redirect_user");
    assert_eq!(redirect_user, u.t.url("/claims"));
    let ticket = r.str("ticket");
    let state = format!("st-{}", uuid::Uuid::new_v4().simple());
    let mut go = url::Url::parse(&redirect_user).unwrap();
    go.query_pairs_mut()
        .append_pair("client_id", CLIENT.id)
        .append_pair("ticket", &ticket)
        .append_pair("claims_redirect_uri", &site.url)
        .append_pair("state", &state);

    let c = driver.session(Screen::Window { width: 1000, height: 800 }).await;
    c.goto(go.as_str()).await.unwrap();
    let button = c.wait().for_element(Locator::Id(&format!("provider-{VERIFIER}"))).await.unwrap();
    screenshot(&c, store, "1-claims-page").await;
    button.click().await.unwrap();

    wait_for_url(&c, &format!("{}/interaction/", provider.issuer())).await;
    let login = c.wait().for_element(Locator::Css("input[name=login]")).await.unwrap();
    login.send_keys("alice").await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any password").await.unwrap();
    screenshot(&c, store, "2-idp-login").await;
    c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();

    // The consent page ("Continue"), unless the provider goes straight back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap();
        if url.as_str().starts_with(&site.url) {
            break;
        }
        if let Ok(b) = c.find(Locator::XPath("//button[normalize-space()='Continue']")).await {
            screenshot(&c, store, "3-idp-consent").await;
            b.click().await.unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "no consent page and no way back; the browser is at {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let landed = wait_for_url(&c, &site.url).await;
    c.wait().for_element(Locator::Id("back")).await.unwrap();
    screenshot(&c, store, "4-back-at-the-client").await;
    let q: BTreeMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(q.keys().map(String::as_str).collect::<Vec<_>>(), ["state", "ticket"], "{landed}");
    assert_eq!(q["state"], state);
    assert_ne!(q["ticket"], ticket);
    assert_eq!(site.seen.lock().unwrap().clone(), [landed.query().unwrap().to_owned()], "what the client was sent");

    let r = u.grant(CLIENT, &q["ticket"], &[]).await;
    let rpt =
        r.rpt("the ticket gathered in the browser", &["refresh_token"])["access_token"].as_str().unwrap().to_owned();
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, CLIENT.id, &u.t.base), perms(&[(&rid, &["read"])]));

    c.close().await.unwrap();
    drop(provider);
    u.stop().await;
}
