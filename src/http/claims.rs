//! The claims interaction endpoint (UMA Grant §3.3.2–3.3.3): pages and cookies only; the protocol is
//! in `uma::gathering`. Every answer to a person is a page or a redirect, never JSON.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use crate::http::authorize::{cookie, see_other, set_cookie};
use crate::http::extract::OAuthForm;
use crate::http::pages::error_page;
use crate::http::templates::render;
use crate::state::AppState;
use crate::uma::gathering::{self, Choices, InteractionRequest, ProviderAnswer, Refusal};

pub const CLAIMS_PATH: &str = "/claims";
const PROVIDER_PATH: &str = "/claims/oidc";
const ACCOUNT_PATH: &str = "/claims/account";
const CANCEL_PATH: &str = "/claims/cancel";
/// The private cookie that binds a gathering session to the browser that started it.
const BINDING_COOKIE: &str = "tessera_claims";

/// The claims interaction routes, relative to the issuer path.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CLAIMS_PATH, get(interaction))
        .route(PROVIDER_PATH, post(provider))
        .route(gathering::CALLBACK_PATH, get(callback))
        .route(ACCOUNT_PATH, post(account))
        .route(CANCEL_PATH, post(cancel))
}

/// A redirect after a GET (RFC 6749 uses 302); after a POST it is 303 (RFC 9700 §4.12).
fn found(location: &str) -> Response {
    let mut res = see_other(location);
    *res.status_mut() = StatusCode::FOUND;
    res
}

fn refused(r: Refusal, after_post: bool) -> Response {
    match r {
        Refusal::Page { status, message } => {
            error_page(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), message)
        }
        Refusal::Redirect(to) if after_post => see_other(&to),
        Refusal::Redirect(to) => found(&to),
        Refusal::WrongPassword => error_page(StatusCode::UNAUTHORIZED, "Wrong username or password."),
    }
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'static str,
    client_name: &'a str,
    session: &'a str,
    csrf: &'a str,
    choices: &'a Choices,
    needed: &'a [String],
    provider_action: String,
    account_action: String,
    cancel_action: String,
    error: Option<&'static str>,
}

fn claims_page(state: &AppState, status: StatusCode, p: PageInput<'_>) -> Response {
    render(
        status,
        "claims.html",
        Page {
            title: "Confirm who you are",
            client_name: p.client_name,
            session: p.session,
            csrf: p.csrf,
            choices: p.choices,
            needed: p.needed,
            provider_action: state.settings.endpoint_path(PROVIDER_PATH),
            account_action: state.settings.endpoint_path(ACCOUNT_PATH),
            cancel_action: state.settings.endpoint_path(CANCEL_PATH),
            error: p.error,
        },
    )
}

struct PageInput<'a> {
    client_name: &'a str,
    session: &'a str,
    csrf: &'a str,
    choices: &'a Choices,
    needed: &'a [String],
    error: Option<&'static str>,
}

/// `GET /claims?client_id&ticket&claims_redirect_uri&state`.
pub async fn interaction(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let now = state.clock.now();
    let Ok(mut q) = OAuthForm::parse(query.unwrap_or_default().as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, "A request parameter is repeated.");
    };
    let req = InteractionRequest {
        client_id: q.take("client_id"),
        ticket: q.take("ticket"),
        claims_redirect_uri: q.take("claims_redirect_uri"),
        state: q.take("state"),
    };
    let started = match gathering::start(&state, req, now).await {
        Ok(s) => s,
        Err(r) => return refused(r, false),
    };
    let mut res = claims_page(
        &state,
        StatusCode::OK,
        PageInput {
            client_name: &started.client_name,
            session: &started.session_id,
            csrf: started.csrf.expose(),
            choices: &started.choices,
            needed: &started.needed,
            error: None,
        },
    );
    let lifetime = state.settings.uma.claims_session_lifetime_secs;
    if let Some(c) = set_cookie(&state, BINDING_COOKIE, started.binding.expose(), lifetime) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

/// A form post of a gathering session: its other fields, the session, and the CSRF token it
/// carried (checked; a page shown again needs it), or the page that refuses it.
async fn posted(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(OAuthForm, crate::store::ClaimsSessionRecord, String), Box<Response>> {
    let mut form = OAuthForm::parse(body)
        .map_err(|_| Box::new(error_page(StatusCode::BAD_REQUEST, "A form field is repeated.")))?;
    let (session, csrf) = (form.take("session"), form.take("csrf"));
    let s = gathering::session_of_form(
        state,
        session.as_deref(),
        csrf.as_deref(),
        cookie(headers, BINDING_COOKIE),
        state.clock.now(),
    )
    .await
    .map_err(|r| Box::new(refused(r, true)))?;
    Ok((form, s, csrf.unwrap_or_default()))
}

/// `POST /claims/oidc`: sign in at the chosen OpenID provider.
pub async fn provider(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (mut form, s, _) = match posted(&state, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let provider = form.take("provider").unwrap_or_default();
    match gathering::choose_provider(&state, &s, &provider).await {
        Ok(url) => see_other(&url),
        Err(r) => refused(r, true),
    }
}

/// `GET /claims/callback`: the OpenID provider's answer.
pub async fn callback(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let now = state.clock.now();
    let Ok(mut q) = OAuthForm::parse(query.unwrap_or_default().as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, "A parameter is repeated.");
    };
    let answer = ProviderAnswer { state: q.take("state"), code: q.take("code"), error: q.take("error") };
    match gathering::provider_answered(&state, answer, cookie(&headers, BINDING_COOKIE), now).await {
        Ok(to) => found(&to),
        Err(r) => refused(r, false),
    }
}

/// `POST /claims/account`: sign in with a local account.
pub async fn account(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let (mut form, s, csrf) = match posted(&state, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let username = form.take("username").unwrap_or_default();
    let password = form.take("password").unwrap_or_default();
    match gathering::local_account(&state, &s, &username, &password, now).await {
        Ok(to) => see_other(&to),
        Err(Refusal::WrongPassword) => {
            let name = crate::http::authorize::client_name(&state, &s.client_id).await;
            claims_page(
                &state,
                StatusCode::UNAUTHORIZED,
                PageInput {
                    client_name: &name,
                    session: &s.session_id,
                    csrf: &csrf,
                    choices: &gathering::choices(&state),
                    needed: &[],
                    error: Some("Wrong username or password."),
                },
            )
        }
        Err(r) => refused(r, true),
    }
}

/// `POST /claims/cancel`: the person declines; the client learns `access_denied`.
pub async fn cancel(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.clock.now();
    let (_, s, _) = match posted(&state, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return *r,
    };
    match gathering::cancel(&state, &s, now).await {
        Ok(to) => see_other(&to),
        Err(r) => refused(r, true),
    }
}
