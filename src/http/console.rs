//! The resource owner's console (issue 8): server-rendered pages under `{issuer}/console` where a
//! resource owner signs in with their local account and manages who may use their resources. UMA
//! leaves this "user interface for the resource owner" to the authorization server (Grant §1.3,
//! §3.3.6: the owner approves a pending request asynchronously, after `request_submitted`).
//!
//! ```text
//! GET  /console                              sign-in form, or the dashboard
//! POST /console/signin                       username + password → session cookie, 303 /console
//! POST /console/signout                      ends the session
//! POST /console/requests/{id}                approve (scopes, expiry, remember) or deny a pending request
//! POST /console/shares                       share a resource with parties presenting given claims
//! POST /console/shares/{id}/revoke           revoke a share
//! POST /console/clients/{client_id}/revoke   end a client's RPTs, their refresh tokens and PCTs
//! ```
//!
//! Every form carries a CSRF token that only this browser can know: a SHA-256 digest, under a
//! console-specific label, of its own `HttpOnly` cookie (the session cookie once signed in; before
//! that a random sign-in cookie, so a forged sign-in cannot slip someone into another account). A
//! POST without it or with another is a 403 page and changes nothing. Every POST that changes
//! something answers 303 back to the dashboard (POST-redirect-GET) with a fixed flash message chosen
//! by a key, never with text from the request. Pages run no script; every value is HTML-escaped by
//! the templates.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::Value;

use crate::accounts;
use crate::clock::UnixTime;
use crate::http::authorize::{cookie, see_other, set_cookie};
use crate::http::templates::render;
use crate::oauth::tokens::{OpaqueToken, TokenDigest};
use crate::oauth::{ErrorCode, OAuthError};
use crate::policy::{
    AssessmentRequest, ClientInfo, DenyReason, NewShare, Outcome, PartyMatcher, PermissionRequest, PolicyEngine,
    RequestingParty, ResourceInfo,
};
use crate::state::AppState;
use crate::store::ResourceRecord;
use crate::uma::approval::{self, Decision, DecisionKind};
use crate::uma::audit;
use crate::uma::resources::ResourceDescription;
use crate::uma::shares;

pub const CONSOLE_PATH: &str = "/console";
const SIGNIN_PATH: &str = "/console/signin";
const SIGNOUT_PATH: &str = "/console/signout";
const REQUESTS_PATH: &str = "/console/requests";
const SHARES_PATH: &str = "/console/shares";
const CLIENTS_PATH: &str = "/console/clients";

/// The browser session of `/authorize` and the console: one sign-in serves both.
const SESSION_COOKIE: &str = "tessera_session";
/// Binds the sign-in form to the browser that loaded it (CSRF before there is a session).
const SIGNIN_COOKIE: &str = "tessera_console_signin";
const SIGNIN_COOKIE_LIFETIME: i64 = 3600;

/// The pages' policy: the templates' own, plus forms may only post back here.
const CONSOLE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard lists at most this many resources, and this many audit records.
const MAX_RESOURCES: i64 = 200;
const AUDIT_RECORDS: i64 = 20;
/// The longest a share made in the console may last, in days.
const MAX_SHARE_DAYS: i64 = 3650;

/// The console's routes, relative to the issuer path.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CONSOLE_PATH, get(show))
        .route(SIGNIN_PATH, get(to_console).post(sign_in))
        .route(SIGNOUT_PATH, get(to_console).post(sign_out))
        .route(&format!("{REQUESTS_PATH}/{{id}}"), post(decide))
        .route(SHARES_PATH, post(create_share))
        .route(&format!("{SHARES_PATH}/{{id}}/revoke"), post(revoke_share))
        .route(&format!("{CLIENTS_PATH}/{{client_id}}/revoke"), post(revoke_client))
}

// ---- cookies, CSRF, forms ----

/// The CSRF token of forms bound to `secret` (a cookie value this browser holds and no other site
/// can read). A digest under a label of its own: it is never the value the store keeps (the plain
/// digest of the session token), so a copy of the database yields no CSRF token either.
fn csrf_for(label: &str, secret: &str) -> String {
    TokenDigest::of(&format!("tessera console {label}\n{secret}")).as_str().to_owned()
}

fn csrf_matches(expected: &str, presented: Option<&str>) -> bool {
    presented
        .is_some_and(|p| aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), p.as_bytes()).is_ok())
}

/// A submitted form. A field meant to appear once that appears twice counts as absent.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        Fields(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    fn one(&self, name: &str) -> Option<&str> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Some(v.as_str()),
            _ => None,
        }
    }

    /// A single optional field, trimmed; empty counts as absent.
    fn text(&self, name: &str) -> Option<&str> {
        self.one(name).map(str::trim).filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// The signed-in owner of a request, with the CSRF token of their forms.
struct Owner {
    account: String,
    session: OpaqueToken,
    csrf: String,
}

async fn signed_in(state: &AppState, headers: &HeaderMap, now: UnixTime) -> Result<Option<Owner>, OAuthError> {
    let Some(value) = cookie(headers, SESSION_COOKIE) else { return Ok(None) };
    Ok(accounts::session_account(&state.store, Some(value), now).await?.map(|account| Owner {
        account,
        session: OpaqueToken::presented(value),
        csrf: csrf_for("session", value),
    }))
}

/// The owner behind a POST, if the form proves it came from their console page; otherwise the 403
/// page to answer with (nothing has changed).
async fn owner_of_post(
    state: &AppState,
    headers: &HeaderMap,
    fields: &Fields,
    now: UnixTime,
) -> Result<Owner, Response> {
    let owner = match signed_in(state, headers, now).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err(message(
                state,
                StatusCode::FORBIDDEN,
                "Not signed in",
                "Your session has ended, so nothing was changed. Sign in again and repeat the action.",
            ));
        }
        Err(e) => return Err(error_page(state, e)),
    };
    if !csrf_matches(&owner.csrf, fields.one("csrf")) {
        tracing::warn!(account = %owner.account, "console form without a valid CSRF token refused");
        return Err(message(
            state,
            StatusCode::FORBIDDEN,
            "Request refused",
            "This form did not come from your console page, so nothing was changed. Reload the console and try again.",
        ));
    }
    Ok(owner)
}

// ---- responses ----

fn page<S: Serialize>(status: StatusCode, name: &str, ctx: S) -> Response {
    let mut res = render(status, name, ctx);
    if res.status() == status {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
    }
    res
}

#[derive(Serialize)]
struct MessageCtx<'a> {
    title: &'a str,
    text: &'a str,
    back: String,
}

/// A page for people with one message and a way back to the console.
fn message(state: &AppState, status: StatusCode, title: &str, text: &str) -> Response {
    page(status, "console_message.html", MessageCtx { title, text, back: state.settings.endpoint_path(CONSOLE_PATH) })
}

/// An error as a page: the public description for a request the owner can fix, a generic text
/// otherwise. The private detail goes to the log only.
fn error_page(state: &AppState, e: OAuthError) -> Response {
    let detail = e.detail.as_deref().unwrap_or("");
    match e.code {
        ErrorCode::NotFound | ErrorCode::InvalidResourceId => {
            let text = "There is no such item among yours, or it was already handled.";
            message(state, StatusCode::NOT_FOUND, "Not found", text)
        }
        ErrorCode::InvalidRequest | ErrorCode::InvalidScope => {
            tracing::info!(detail, "console request refused");
            let text = e.description.as_deref().unwrap_or("The form is not complete.");
            message(state, StatusCode::BAD_REQUEST, "Please check the form", &capitalised(text))
        }
        ErrorCode::TemporarilyUnavailable => {
            tracing::error!(detail, "console: store unavailable");
            message(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The service is temporarily unavailable.",
            )
        }
        _ => {
            tracing::error!(code = e.code.as_str(), detail, "console request failed");
            message(
                state,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "This action could not be completed.",
            )
        }
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => format!("{}{}", c.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// Back to the dashboard with a flash message named by `done` (see [`flash`]).
fn back_to_console(state: &AppState, done: &str) -> Response {
    see_other(&format!("{}?done={done}", state.settings.endpoint_path(CONSOLE_PATH)))
}

/// The fixed messages a redirect can ask for; anything else shows nothing.
fn flash(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "signed-in" => "You are signed in.",
        "signed-out" => "You are signed out.",
        "approved" => "Request approved. The client gets its token when it asks again.",
        "denied" => "Request denied.",
        "shared" => "Share created.",
        "share-revoked" => "Share revoked. Tokens it led to no longer work.",
        "client-revoked" => "The client's tokens for your resources were revoked.",
        _ => return None,
    })
}

/// A path segment, percent-encoded (client ids may hold any character).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-12-01 06:05 UTC` (the proleptic Gregorian calendar, from days since 1970-01-01).
fn utc(t: UnixTime) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

// ---- sign-in failures ----

/// Failed sign-ins allowed per username within [`FAILURE_WINDOW`] before the console stops checking
/// passwords for it until the window ends.
const MAX_FAILURES: i64 = accounts::MAX_SIGN_IN_FAILURES;
const FAILURE_WINDOW: i64 = 15 * 60;
/// Usernames tracked at once; past that, entries whose window ended are dropped first.
const MAX_TRACKED: usize = 10_000;

/// Failed console sign-ins per (issuer, username): (start of the window, failures in it). Kept per
/// node, in memory: with N nodes a guesser gets N times the allowance (docs/console.md). Usernames
/// that cannot be accounts are never tracked, so the map holds at most [`MAX_TRACKED`] short keys.
static FAILURES: LazyLock<Mutex<HashMap<String, (UnixTime, i64)>>> = LazyLock::new(Default::default);

fn failures<R>(f: impl FnOnce(&mut HashMap<String, (UnixTime, i64)>) -> R) -> R {
    match FAILURES.lock() {
        Ok(mut g) => f(&mut g),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

fn throttled(key: &str, now: UnixTime) -> bool {
    failures(|m| m.get(key).is_some_and(|(start, n)| now - start < FAILURE_WINDOW && *n >= MAX_FAILURES))
}

fn record_failure(key: &str, now: UnixTime) {
    failures(|m| {
        if m.len() >= MAX_TRACKED && !m.contains_key(key) {
            m.retain(|_, (start, _)| now - *start < FAILURE_WINDOW);
            if m.len() >= MAX_TRACKED {
                return;
            }
        }
        let entry = m.entry(key.to_owned()).or_insert((now, 0));
        if now - entry.0 >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    });
}

fn clear_failures(key: &str) {
    failures(|m| m.remove(key));
}

// ---- handlers ----

#[derive(Serialize)]
struct SignInCtx<'a> {
    title: &'a str,
    action: String,
    csrf: String,
    username: &'a str,
    error: Option<&'a str>,
    flash: Option<&'static str>,
}

/// The sign-in page, bound to this browser by the sign-in cookie (reused while it lasts, so two
/// tabs both work).
fn sign_in_page(state: &AppState, headers: &HeaderMap, status: StatusCode, ctx: SignInPage<'_>) -> Response {
    let (binding, fresh) = match cookie(headers, SIGNIN_COOKIE) {
        Some(v) => (v.to_owned(), false),
        None => match OpaqueToken::generate() {
            Ok(t) => (t.expose().to_owned(), true),
            Err(_) => return error_page(state, OAuthError::server_error("the random generator failed")),
        },
    };
    let mut res = page(
        status,
        "console_signin.html",
        SignInCtx {
            title: "Sign in",
            action: state.settings.endpoint_path(SIGNIN_PATH),
            csrf: csrf_for("sign-in", &binding),
            username: ctx.username,
            error: ctx.error,
            flash: ctx.flash,
        },
    );
    if fresh && let Some(c) = set_cookie(state, SIGNIN_COOKIE, &binding, SIGNIN_COOKIE_LIFETIME) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

#[derive(Default)]
struct SignInPage<'a> {
    username: &'a str,
    error: Option<&'a str>,
    flash: Option<&'static str>,
}

/// `GET /console`: the dashboard, or the sign-in form.
async fn show(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let now = state.clock.now();
    let done = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "done").map(|(_, v)| v.into_owned())
    });
    let flash = flash(done.as_deref());
    match signed_in(&state, &headers, now).await {
        Ok(Some(owner)) => match dashboard(&state, &owner, flash, now).await {
            Ok(ctx) => page(StatusCode::OK, "console.html", ctx),
            Err(e) => error_page(&state, e),
        },
        Ok(None) => sign_in_page(&state, &headers, StatusCode::OK, SignInPage { flash, ..Default::default() }),
        Err(e) => error_page(&state, e),
    }
}

/// A form's address opened as a page (a bookmark, a reload): the console.
async fn to_console(State(state): State<AppState>) -> Response {
    see_other(&state.settings.endpoint_path(CONSOLE_PATH))
}

/// `POST /console/signin`.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let fields = Fields::parse(&body);
    let bound = cookie(&headers, SIGNIN_COOKIE).map(|b| csrf_for("sign-in", b));
    if !bound.as_deref().is_some_and(|expected| csrf_matches(expected, fields.one("csrf"))) {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "Request refused",
            "This sign-in form did not come from this browser. Open the console again and sign in.",
        );
    }
    let username = fields.one("username").unwrap_or_default();
    let password = fields.one("password").unwrap_or_default();
    // Only names that can be accounts are counted, so the map stays small; unknown accounts are
    // counted like known ones, so the limit says nothing about which exist.
    let key = accounts::valid_account_id(username).then(|| format!("{}\n{username}", state.settings.issuer));
    if key.as_deref().is_some_and(|k| throttled(k, now)) {
        tracing::warn!("console sign-in refused: too many failures for this username");
        let error = "Too many failed sign-ins for this username. Wait 15 minutes and try again.";
        let shown = SignInPage { username, error: Some(error), flash: None };
        return sign_in_page(&state, &headers, StatusCode::UNAUTHORIZED, shown);
    }
    let account = match accounts::check_password(&state.store, username, password).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            tracing::info!("console sign-in refused");
            if let Some(k) = &key {
                record_failure(k, now);
            }
            let shown = SignInPage { username, error: Some("Wrong username or password."), flash: None };
            return sign_in_page(&state, &headers, StatusCode::UNAUTHORIZED, shown);
        }
        Err(e) => return error_page(&state, e),
    };
    if let Some(k) = &key {
        clear_failures(k);
    }
    // A new session on every sign-in (no fixation); an old one of this browser ends.
    if let Some(old) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.store.delete_session(OpaqueToken::presented(old).digest().as_str()).await
    {
        return error_page(&state, e.into());
    }
    let session = match accounts::start_session(&state.store, &account, "password", now).await {
        Ok(s) => s,
        Err(e) => return error_page(&state, e),
    };
    tracing::info!(account = %account, "resource owner signed in to the console");
    let mut res = back_to_console(&state, "signed-in");
    for c in [
        set_cookie(&state, SESSION_COOKIE, session.expose(), accounts::SESSION_LIFETIME),
        set_cookie(&state, SIGNIN_COOKIE, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// `POST /console/signout`: ends this session (here and at `/authorize`, which shares it).
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let owner = match owner_of_post(&state, &headers, &Fields::parse(&body), now).await {
        Ok(o) => o,
        Err(res) => return res,
    };
    if let Err(e) = state.store.delete_session(owner.session.digest().as_str()).await {
        return error_page(&state, e.into());
    }
    tracing::info!(account = %owner.account, "resource owner signed out");
    let mut res = back_to_console(&state, "signed-out");
    if let Some(c) = set_cookie(&state, SESSION_COOKIE, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// Days from a form field (empty: none) as seconds, within `1..=max_days`.
fn days(fields: &Fields, name: &str, max_days: i64) -> Result<Option<i64>, OAuthError> {
    match fields.text(name) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(d) if (1..=max_days).contains(&d) => Ok(Some(d * 86_400)),
            _ => Err(OAuthError::invalid_request(format!("the number of days must be between 1 and {max_days}"))),
        },
    }
}

/// `POST /console/requests/{id}`: `decision=approve|deny`, the `scope`s to approve, optional
/// `expires_days`, optional `remember`.
async fn decide(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let now = state.clock.now();
    let fields = Fields::parse(&body);
    let owner = match owner_of_post(&state, &headers, &fields, now).await {
        Ok(o) => o,
        Err(res) => return res,
    };
    let decision = match decision_from(&fields) {
        Ok(d) => d,
        Err(e) => return error_page(&state, e),
    };
    let kind = decision.decision;
    match approval::decide_as(&state.store, &state.policies, &owner.account, None, &id, decision, now).await {
        Ok(_) => back_to_console(&state, if kind == DecisionKind::Approve { "approved" } else { "denied" }),
        Err(e) => error_page(&state, e),
    }
}

fn decision_from(fields: &Fields) -> Result<Decision, OAuthError> {
    let decision = match fields.one("decision") {
        Some("approve") => DecisionKind::Approve,
        Some("deny") => DecisionKind::Deny,
        _ => return Err(OAuthError::invalid_request("choose approve or deny")),
    };
    let (scopes, expires_in, remember) = match decision {
        DecisionKind::Deny => (None, None, false),
        DecisionKind::Approve => {
            let scopes: Vec<String> = fields.all("scope").into_iter().map(str::to_owned).collect();
            if scopes.is_empty() {
                return Err(OAuthError::invalid_request("choose at least one scope to approve, or deny the request"));
            }
            let max_days = approval::MAX_APPROVAL_SECS / 86_400;
            (Some(scopes), days(fields, "expires_days", max_days)?, fields.one("remember").is_some())
        }
    };
    approval::checked(Decision { decision, scopes, expires_in, remember })
}

/// `POST /console/shares`: `resource_id`, the `scope`s, the claims' issuer `iss`, one `claim` name
/// and its `value`, optional `expires_days`. Validated exactly as `POST /uma/shares`.
async fn create_share(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let fields = Fields::parse(&body);
    let owner = match owner_of_post(&state, &headers, &fields, now).await {
        Ok(o) => o,
        Err(res) => return res,
    };
    let new = match share_from(&fields, now) {
        Ok(n) => n,
        Err(e) => return error_page(&state, e),
    };
    match shares::create_as(&state.store, &state.policies, &owner.account, None, new, now).await {
        Ok(_) => back_to_console(&state, "shared"),
        Err(e) => error_page(&state, e),
    }
}

fn share_from(fields: &Fields, now: UnixTime) -> Result<NewShare, OAuthError> {
    let resource_id = fields.text("resource_id").ok_or_else(|| OAuthError::invalid_request("choose a resource"))?;
    let scopes: Vec<String> = fields.all("scope").into_iter().map(str::to_owned).collect();
    let iss = fields.text("iss").ok_or_else(|| OAuthError::invalid_request("give the issuer of the claims"))?;
    let claim = fields.text("claim").ok_or_else(|| OAuthError::invalid_request("give a claim name"))?;
    if claim == "iss" {
        return Err(OAuthError::invalid_request("the claim must be another claim than the issuer"));
    }
    let value = fields.text("value").ok_or_else(|| OAuthError::invalid_request("give the claim's value"))?;
    let matcher = PartyMatcher(BTreeMap::from([
        ("iss".to_owned(), Value::String(iss.to_owned())),
        (claim.to_owned(), Value::String(value.to_owned())),
    ]));
    let expires_at = days(fields, "expires_days", MAX_SHARE_DAYS)?.map(|s| now + s);
    Ok(NewShare { resource_id: resource_id.to_owned(), scopes, matcher, expires_at })
}

/// `POST /console/shares/{id}/revoke`.
async fn revoke_share(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let now = state.clock.now();
    let owner = match owner_of_post(&state, &headers, &Fields::parse(&body), now).await {
        Ok(o) => o,
        Err(res) => return res,
    };
    match shares::revoke_as(&state.store, &owner.account, None, &id, now).await {
        Ok(()) => back_to_console(&state, "share-revoked"),
        Err(e) => error_page(&state, e),
    }
}

/// `POST /console/clients/{client_id}/revoke`: the client's RPTs for this owner, their refresh
/// tokens and the PCTs issued with them end now.
async fn revoke_client(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    let now = state.clock.now();
    let owner = match owner_of_post(&state, &headers, &Fields::parse(&body), now).await {
        Ok(o) => o,
        Err(res) => return res,
    };
    match state.store.revoke_client_grants(&owner.account, &client_id, now).await {
        Ok(0) => error_page(&state, OAuthError::not_found()),
        Ok(n) => {
            tracing::info!(account = %owner.account, client_id = %client_id, tokens = n, "client's grants revoked");
            back_to_console(&state, "client-revoked")
        }
        Err(e) => error_page(&state, e.into()),
    }
}

// ---- the dashboard's data ----

#[derive(Serialize)]
struct DashboardCtx {
    title: &'static str,
    owner: String,
    csrf: String,
    flash: Option<&'static str>,
    signout_action: String,
    share_action: String,
    pending: Vec<PendingCtx>,
    servers: Vec<ServerCtx>,
    resources_truncated: bool,
    clients: Vec<ClientCtx>,
    audit: Vec<AuditCtx>,
}

#[derive(Serialize)]
struct PendingCtx {
    id: String,
    action: String,
    client: String,
    server: String,
    party_iss: String,
    party_sub: String,
    claims: Vec<(String, String)>,
    source: String,
    resources: Vec<AskedCtx>,
    scopes: Vec<String>,
    asked_at: String,
}

#[derive(Serialize)]
struct AskedCtx {
    name: String,
    kind: Option<String>,
    scopes: Vec<String>,
}

#[derive(Serialize)]
struct ServerCtx {
    id: String,
    name: String,
    resources: Vec<ResourceCtx>,
}

#[derive(Serialize)]
struct ResourceCtx {
    id: String,
    name: String,
    kind: Option<String>,
    scopes: Vec<String>,
    shares: Vec<ShareCtx>,
    policies: Vec<PolicyLine>,
}

#[derive(Serialize)]
struct ShareCtx {
    who: Vec<(String, String)>,
    scopes: Vec<String>,
    until: Option<String>,
    revoke_action: String,
}

/// What the policy files decide for one scope of a resource.
#[derive(Serialize)]
struct PolicyLine {
    scope: String,
    verdict: String,
    policies: Vec<String>,
}

#[derive(Serialize)]
struct ClientCtx {
    id: String,
    name: String,
    rpts: i64,
    refresh_tokens: i64,
    until: String,
    revoke_action: String,
}

#[derive(Serialize)]
struct AuditCtx {
    at: String,
    client: String,
    party: String,
    resources: Vec<String>,
    outcome: &'static str,
    /// The tag's colour: ok, no, wait, info.
    tone: &'static str,
    granted: Vec<String>,
    policies: Vec<String>,
}

/// Display names of clients, looked up once per page.
struct Names<'a> {
    state: &'a AppState,
    known: HashMap<String, String>,
}

impl Names<'_> {
    async fn of(&mut self, client_id: &str) -> String {
        if let Some(n) = self.known.get(client_id) {
            return n.clone();
        }
        let name = match self.state.store.find_client(client_id).await {
            Ok(Some(rec)) => crate::oauth::registration::client_from_record(&rec)
                .ok()
                .and_then(|c| c.metadata.client_name)
                .filter(|n| n != client_id)
                .map_or_else(|| client_id.to_owned(), |n| format!("{n} ({client_id})")),
            _ => client_id.to_owned(),
        };
        self.known.insert(client_id.to_owned(), name.clone());
        name
    }
}

fn description(rec: &ResourceRecord) -> Option<ResourceDescription> {
    serde_json::from_str(&rec.description).ok()
}

fn resource_name(rec: &ResourceRecord) -> String {
    rec.name.clone().unwrap_or_else(|| format!("Unnamed resource {}", rec.resource_id))
}

fn claim_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn dashboard(
    state: &AppState,
    owner: &Owner,
    flash: Option<&'static str>,
    now: UnixTime,
) -> Result<DashboardCtx, OAuthError> {
    let account = owner.account.as_str();
    let mut names = Names { state, known: HashMap::new() };
    let resources = state.store.owner_resources(account, MAX_RESOURCES + 1).await?;
    let resources_truncated = resources.len() > usize::try_from(MAX_RESOURCES).unwrap_or(usize::MAX);
    let resources: Vec<ResourceRecord> =
        resources.into_iter().take(usize::try_from(MAX_RESOURCES).unwrap_or(0)).collect();
    let by_id: HashMap<&str, &ResourceRecord> = resources.iter().map(|r| (r.resource_id.as_str(), r)).collect();

    // Requests waiting for the owner, with the resources they ask for (those not listed below are
    // looked up together).
    let waiting = approval::pending_for_owner(&state.store, account).await?;
    let mut missing: Vec<&str> = waiting
        .iter()
        .flat_map(|p| p.permissions.iter().map(|x| x.resource_id.as_str()))
        .filter(|id| !by_id.contains_key(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let mut more = Vec::new();
    for chunk in missing.chunks(500) {
        more.extend(state.store.find_resources(chunk, account, None).await?);
    }
    let mut known = by_id.clone();
    known.extend(more.iter().map(|r| (r.resource_id.as_str(), r)));
    let mut pending = Vec::new();
    for p in waiting {
        let asked = p
            .permissions
            .iter()
            .map(|perm| {
                let rec = known.get(perm.resource_id.as_str()).copied();
                AskedCtx {
                    name: rec.map_or_else(|| format!("Deleted resource {}", perm.resource_id), resource_name),
                    kind: rec.and_then(|r| r.resource_type.clone()),
                    scopes: perm.resource_scopes.clone(),
                }
            })
            .collect();
        let mut scopes: Vec<String> = p.permissions.iter().flat_map(|x| x.resource_scopes.iter().cloned()).collect();
        scopes.sort();
        scopes.dedup();
        let party: &RequestingParty = &p.party;
        pending.push(PendingCtx {
            action: state.settings.endpoint_path(&format!("{REQUESTS_PATH}/{}", segment(&p.id))),
            client: names.of(&p.client_id).await,
            server: names.of(&p.rs_client_id).await,
            party_iss: party.iss.clone().unwrap_or_else(|| "(no issuer)".to_owned()),
            party_sub: party.sub.clone().unwrap_or_else(|| "(anonymous)".to_owned()),
            claims: party.claims.iter().map(|(k, v)| (k.clone(), claim_text(v))).collect(),
            source: match &party.verifier {
                Some(v) => format!("{}, verified by {v}", party.source.as_str()),
                None => party.source.as_str().to_owned(),
            },
            resources: asked,
            scopes,
            asked_at: utc(p.created_at),
            id: p.id,
        });
    }

    // Resources by resource server, each with its active shares and what the policy files decide.
    let mut shares_of: HashMap<String, Vec<ShareCtx>> = HashMap::new();
    for s in shares::list_as(&state.store, account, None).await? {
        if !s.is_active(now) {
            continue;
        }
        let mut who: Vec<(String, String)> = s.matcher.0.iter().map(|(k, v)| (k.clone(), claim_text(v))).collect();
        who.sort_by_key(|(k, _)| k != "iss");
        shares_of.entry(s.resource_id.clone()).or_default().push(ShareCtx {
            who,
            scopes: s.scopes.clone(),
            until: s.expires_at.map(utc),
            revoke_action: state.settings.endpoint_path(&format!("{SHARES_PATH}/{}/revoke", segment(&s.id))),
        });
    }
    let previews = policy_previews(state, &resources, now).await?;
    let mut servers: Vec<ServerCtx> = Vec::new();
    for (rec, (scopes, policies)) in resources.iter().zip(previews) {
        let ctx = ResourceCtx {
            id: rec.resource_id.clone(),
            name: resource_name(rec),
            kind: rec.resource_type.clone(),
            shares: shares_of.remove(&rec.resource_id).unwrap_or_default(),
            scopes,
            policies,
        };
        match servers.last_mut() {
            Some(s) if s.id == rec.rs_client_id => s.resources.push(ctx),
            _ => servers.push(ServerCtx {
                id: rec.rs_client_id.clone(),
                name: names.of(&rec.rs_client_id).await,
                resources: vec![ctx],
            }),
        }
    }

    // Clients holding live tokens on the owner's resources.
    let mut clients = Vec::new();
    for c in state.store.clients_with_live_grants(account, now).await? {
        clients.push(ClientCtx {
            name: names.of(&c.client_id).await,
            rpts: c.live_rpts,
            refresh_tokens: c.live_refresh_tokens,
            until: utc(c.until),
            revoke_action: state.settings.endpoint_path(&format!("{CLIENTS_PATH}/{}/revoke", segment(&c.client_id))),
            id: c.client_id,
        });
    }

    // Recent decisions on the owner's resources, newest first.
    let mut records = audit::tail(&state.store, Some(account), AUDIT_RECORDS).await?;
    records.reverse();
    let mut recent = Vec::with_capacity(records.len());
    for r in records {
        let (outcome, tone) = match r.outcome.as_str() {
            "rpt" => ("granted", "ok"),
            "need_info" => ("asked for more claims", "info"),
            "request_submitted" => ("waiting for you", "wait"),
            "request_denied" => ("denied", "no"),
            "invalid_scope" => ("refused: unknown scope", "no"),
            _ => ("other", "info"),
        };
        let rid_name = |id: &str| by_id.get(id).map_or_else(|| id.to_owned(), |rec| resource_name(rec));
        let resources = r
            .resource_ids
            .as_array()
            .map_or_else(Vec::new, |ids| ids.iter().filter_map(Value::as_str).map(rid_name).collect());
        let granted = r
            .granted
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(id, scopes)| {
                        let list: Vec<&str> = scopes.as_array()?.iter().filter_map(Value::as_str).collect();
                        (!list.is_empty()).then(|| format!("{}: {}", rid_name(id), list.join(" ")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        recent.push(AuditCtx {
            at: utc(r.at),
            client: names.of(&r.client_id).await,
            party: match (&r.party_iss, &r.party_sub) {
                (Some(iss), Some(sub)) => format!("{sub} ({iss})"),
                _ => "someone who has not said who they are".to_owned(),
            },
            resources,
            outcome,
            tone,
            granted,
            policies: r
                .policies
                .as_array()
                .map_or_else(Vec::new, |p| p.iter().filter_map(Value::as_str).map(str::to_owned).collect()),
        });
    }

    Ok(DashboardCtx {
        title: "Your console",
        owner: owner.account.clone(),
        csrf: owner.csrf.clone(),
        flash,
        signout_action: state.settings.endpoint_path(SIGNOUT_PATH),
        share_action: state.settings.endpoint_path(SHARES_PATH),
        pending,
        servers,
        resources_truncated,
        clients,
        audit: recent,
    })
}

/// Each resource's registered scopes and what the policy files decide for them. Evaluating
/// policies is CPU work, so it runs off the async workers.
async fn policy_previews(
    state: &AppState,
    resources: &[ResourceRecord],
    now: UnixTime,
) -> Result<Vec<(Vec<String>, Vec<PolicyLine>)>, OAuthError> {
    let inputs: Vec<(ResourceInfo, Vec<String>)> = resources
        .iter()
        .map(|rec| {
            let info = ResourceInfo {
                id: rec.resource_id.clone(),
                owner: rec.owner.clone(),
                resource_type: rec.resource_type.clone(),
                name: rec.name.clone(),
            };
            (info, description(rec).map(|d| d.resource_scopes).unwrap_or_default())
        })
        .collect();
    let engine = state.policies.clone();
    tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|(info, scopes)| {
                let lines = policy_lines(&engine, info, &scopes, now);
                (scopes, lines)
            })
            .collect()
    })
    .await
    .map_err(OAuthError::server_error)
}

/// What the policy files decide, scope by scope, for someone who has not said who they are yet
/// (no claims, no shares), at `now`: the policies that would grant given claims (and which), those
/// that refuse, or none. It is the engine's own assessment, so it follows its slicing and its
/// fail-closed rules; claims that only some parties have show up as "presenting …".
fn policy_lines(engine: &PolicyEngine, resource: ResourceInfo, scopes: &[String], now: UnixTime) -> Vec<PolicyLine> {
    if scopes.is_empty() {
        return Vec::new();
    }
    let party = RequestingParty::anonymous();
    let client = ClientInfo { id: "tessera-console-preview".to_owned(), name: None };
    let permissions = [PermissionRequest { resource, scopes: scopes.to_vec() }];
    let decisions = engine.assess(&AssessmentRequest {
        party: &party,
        client: &client,
        permissions: &permissions,
        shares: &[],
        now,
        derive_required_claims: true,
    });
    decisions
        .into_iter()
        .flat_map(|d| d.scopes)
        .map(|s| {
            let verdict = match &s.outcome {
                Outcome::Granted => "anyone, without claims".to_owned(),
                Outcome::Denied(DenyReason::NeedClaims { claims }) => {
                    let mut by_issuer: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                    for c in claims {
                        by_issuer.entry(c.issuer.as_deref().unwrap_or("")).or_default().push(c.name.as_str());
                    }
                    let parts: Vec<String> = by_issuer
                        .into_iter()
                        .map(|(iss, names)| match iss {
                            "" => names.join(", "),
                            iss => format!("{} from {iss}", names.join(", ")),
                        })
                        .collect();
                    format!("may be granted to parties presenting {}", parts.join("; "))
                }
                Outcome::Denied(DenyReason::NeedsApproval) => "anyone, with your approval".to_owned(),
                Outcome::Denied(DenyReason::Denied) if s.policies.is_empty() => {
                    "no policy file grants it; only your shares can".to_owned()
                }
                Outcome::Denied(DenyReason::Denied) => "nobody: a policy forbids it".to_owned(),
            };
            PolicyLine { scope: s.scope, verdict, policies: s.policies.iter().map(ToString::to_string).collect() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_102_046), "2026-12-01 05:14 UTC");
        assert_eq!(utc(-86_400), "1969-12-31 00:00 UTC");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("uma-client"), "uma-client");
        assert_eq!(segment("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    #[test]
    fn csrf_tokens_depend_on_the_secret_and_the_label() {
        let a = csrf_for("session", "one");
        assert_ne!(a, csrf_for("session", "two"));
        assert_ne!(a, csrf_for("sign-in", "one"));
        assert_ne!(a, TokenDigest::of("one").as_str(), "never the digest the store keeps");
        assert!(csrf_matches(&a, Some(&a)));
        assert!(!csrf_matches(&a, None));
        assert!(!csrf_matches(&a, Some("")));
    }

    #[test]
    fn only_known_flash_messages_are_shown() {
        assert_eq!(flash(Some("approved")), Some("Request approved. The client gets its token when it asks again."));
        assert_eq!(flash(Some("<script>")), None);
        assert_eq!(flash(None), None);
    }

    #[test]
    fn repeated_single_fields_count_as_absent() {
        let f = Fields::parse(b"csrf=a&csrf=b&scope=read&scope=write&x=+1+");
        assert_eq!(f.one("csrf"), None);
        assert_eq!(f.all("scope"), ["read", "write"]);
        assert_eq!(f.text("x"), Some("1"));
    }

    #[test]
    fn failures_are_throttled_per_key_within_the_window() {
        let key = "test-issuer\nthrottle-test";
        for _ in 0..MAX_FAILURES {
            assert!(!throttled(key, 1000));
            record_failure(key, 1000);
        }
        assert!(throttled(key, 1000 + FAILURE_WINDOW - 1));
        assert!(!throttled(key, 1000 + FAILURE_WINDOW));
        record_failure(key, 1000 + FAILURE_WINDOW);
        assert!(!throttled(key, 1000 + FAILURE_WINDOW));
        clear_failures(key);
    }
}
