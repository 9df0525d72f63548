//! `GET /authorize` and `POST /authorize/decision`: the resource owner signs in (or is already signed
//! in) and approves a resource server's request for a PAT. Protocol rules live in `oauth::authorize`;
//! this module only renders pages and handles cookies.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::accounts;
use crate::http::extract::OAuthForm;
use crate::http::pages::{error_page, escape, page};
use crate::oauth::authorize::{self, AuthorizeParams, Refusal};
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;

pub const AUTHORIZE_PATH: &str = "/authorize";
pub const DECISION_PATH: &str = "/authorize/decision";
const SESSION_COOKIE: &str = "tessera_session";
const BINDING_COOKIE: &str = "tessera_authz";

/// A cookie's value (an empty one counts as absent).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

pub(crate) fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let path = if state.settings.issuer_path().is_empty() { "/" } else { state.settings.issuer_path() };
    let secure = if state.settings.is_loopback_http() { "" } else { "; Secure" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"))
        .ok()
}

pub(crate) fn see_other(location: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        Refusal::Redirect { redirect_uri, state, error } => {
            match authorize::error_redirect(&redirect_uri, &error, state.as_deref()) {
                Ok(to) => see_other(&to),
                Err(_) => error_page(StatusCode::BAD_REQUEST, "the request cannot be answered"),
            }
        }
    }
}

struct Form<'a> {
    action: &'a str,
    handle: &'a str,
    client_name: &'a str,
    signed_in_as: Option<&'a str>,
    error: Option<&'a str>,
}

fn consent_page(f: Form<'_>) -> Response {
    let who = match f.signed_in_as {
        Some(a) => format!("<p>Signed in as <strong>{}</strong>.</p>", escape(a)),
        None => "<label for=\"username\">Username</label>\
                 <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required>\
                 <label for=\"password\">Password</label>\
                 <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>"
            .to_owned(),
    };
    let error = f.error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    page(
        StatusCode::OK,
        "Authorize",
        &format!(
            "<h1>Authorize {client}</h1>\
             <p><strong>{client}</strong> asks to register your resources with Tessera and to ask for \
             access to them on behalf of others (scope <code>uma_protection</code>). Who gets access is \
             still decided by your policies.</p>{error}\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"request\" value=\"{handle}\">{who}\
             <div class=\"actions\"><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></div></form>",
            client = escape(f.client_name),
            action = escape(f.action),
            handle = escape(f.handle),
        ),
    )
}

pub(crate) async fn client_name(state: &AppState, client_id: &str) -> String {
    match state.store.find_client(client_id).await {
        Ok(Some(rec)) => crate::oauth::registration::client_from_record(&rec)
            .ok()
            .and_then(|c| c.metadata.client_name)
            .unwrap_or_else(|| client_id.to_owned()),
        _ => client_id.to_owned(),
    }
}

pub async fn authorize(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let now = state.clock.now();
    let mut form = match OAuthForm::parse(query.unwrap_or_default().as_bytes()) {
        Ok(f) => f,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "a request parameter is repeated"),
    };
    let params = AuthorizeParams {
        response_type: form.take("response_type"),
        client_id: form.take("client_id"),
        redirect_uri: form.take("redirect_uri"),
        scope: form.take("scope"),
        state: form.take("state"),
        code_challenge: form.take("code_challenge"),
        code_challenge_method: form.take("code_challenge_method"),
    };
    let req = match authorize::validate(&state.store, params).await {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    let signed_in = accounts::session_account(&state.store, cookie(&headers, SESSION_COOKIE), now).await;
    let pending = match (signed_in, authorize::hold(&state.store, &req, now).await) {
        (Ok(account), Ok(p)) => (account, p),
        (Err(e), _) | (_, Err(e)) => return OAuthError::unavailable(e).into_response(),
    };
    let (account, pending) = pending;
    let name = req.client.metadata.client_name.clone().unwrap_or_else(|| req.client.client_id.clone());
    let action = state.settings.endpoint_path(DECISION_PATH);
    let mut res = consent_page(Form {
        action: &action,
        handle: pending.handle.expose(),
        client_name: &name,
        signed_in_as: account.as_deref(),
        error: None,
    });
    if let Some(c) = set_cookie(&state, BINDING_COOKIE, pending.browser_binding.expose(), authorize::REQUEST_LIFETIME) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

pub async fn decision(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let mut form = match OAuthForm::parse(&body) {
        Ok(f) => f,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "a form field is repeated"),
    };
    let (Some(handle), Some(binding)) = (form.take("request"), cookie(&headers, BINDING_COOKIE)) else {
        return error_page(StatusCode::BAD_REQUEST, "this sign-in request is not from this browser");
    };
    let handle = OpaqueToken::presented(handle);
    let binding = OpaqueToken::presented(binding);
    let (h, b) = (handle.digest(), binding.digest());
    let pending = match state.store.find_authorization_request(h.as_str(), b.as_str(), now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_page(StatusCode::BAD_REQUEST, "this sign-in request has expired or was already answered");
        }
        Err(e) => return OAuthError::unavailable(e).into_response(),
    };
    let approve = match form.take("decision").as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "no decision was made"),
    };
    let session = match accounts::session_account(&state.store, cookie(&headers, SESSION_COOKIE), now).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut new_session = None;
    let account = match (approve, session) {
        (false, _) => None,
        (true, Some(a)) => Some(a),
        (true, None) => {
            let username = form.take("username").unwrap_or_default();
            let password = form.take("password").unwrap_or_default();
            match accounts::check_password(&state.store, &username, &password).await {
                Ok(Some(a)) => {
                    tracing::info!(account = %a, "resource owner signed in");
                    match accounts::start_session(&state.store, &a, "password", now).await {
                        Ok(s) => new_session = Some(s),
                        Err(e) => return e.into_response(),
                    }
                    Some(a)
                }
                Ok(None) => {
                    tracing::info!("sign-in refused");
                    match state.store.record_sign_in_failure(h.as_str(), accounts::MAX_SIGN_IN_FAILURES).await {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            return error_page(
                                StatusCode::UNAUTHORIZED,
                                "too many failed sign-ins for this request; start again from the application",
                            );
                        }
                        Err(e) => return OAuthError::unavailable(e).into_response(),
                    }
                    let name = client_name(&state, &pending.client_id).await;
                    let action = state.settings.endpoint_path(DECISION_PATH);
                    let mut res = consent_page(Form {
                        action: &action,
                        handle: handle.expose(),
                        client_name: &name,
                        signed_in_as: None,
                        error: Some("Wrong username or password."),
                    });
                    *res.status_mut() = StatusCode::UNAUTHORIZED;
                    return res;
                }
                Err(e) => return e.into_response(),
            }
        }
    };
    // One decision per request, even if the form is submitted twice.
    let pending = match state.store.take_authorization_request(h.as_str(), b.as_str(), now).await {
        Ok(Some(p)) => p,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, "this sign-in request was already answered"),
        Err(e) => return OAuthError::unavailable(e).into_response(),
    };
    let location = match account {
        Some(a) => authorize::approve(&state.store, &pending, &a, state.settings.tokens.authorization_code, now).await,
        None => {
            let denied = OAuthError::new(ErrorCode::AccessDenied).describe("the resource owner denied the request");
            authorize::error_redirect(&pending.redirect_uri, &denied, pending.state.as_deref())
        }
    };
    let mut res = match location {
        Ok(to) => see_other(&to),
        Err(e) => return e.into_response(),
    };
    if let Some(s) = new_session
        && let Some(c) = set_cookie(&state, SESSION_COOKIE, s.expose(), accounts::SESSION_LIFETIME)
    {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}
