//! `POST /token` (RFC 6749 §3.2): authenticate the client, then dispatch on the grant type.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::extract::{OAuthForm, authenticate_client};
use crate::oauth::client::GrantType;
use crate::oauth::grants::{authorization_code, client_credentials as cc, refresh_token};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::uma::grant::{self as uma_grant, UmaParams};

pub const TOKEN_PATH: &str = "/token";

pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut form: OAuthForm,
) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let grant = form.take("grant_type").ok_or_else(|| OAuthError::invalid_request("`grant_type` is required"))?;
    let client = authenticate_client(&state, &headers, &mut form, TOKEN_PATH, now).await?;
    let lifetimes = &state.settings.tokens;
    let body = match GrantType::parse(&grant) {
        Some(GrantType::ClientCredentials) => {
            cc::grant(&state.store, &client, form.get("scope"), lifetimes.pat, now).await?
        }
        Some(GrantType::AuthorizationCode) => {
            authorization_code::grant(
                &state.store,
                &client,
                form.get("code"),
                form.get("redirect_uri"),
                form.get("code_verifier"),
                lifetimes,
                now,
            )
            .await?
        }
        Some(GrantType::RefreshToken) => {
            refresh_token::grant(&state, &client, form.get("refresh_token"), form.get("scope"), now).await?
        }
        Some(GrantType::UmaTicket) => {
            let params = UmaParams {
                ticket: form.get("ticket"),
                claim_token: form.get("claim_token"),
                claim_token_format: form.get("claim_token_format"),
                pct: form.get("pct"),
                rpt: form.get("rpt"),
                scope: form.get("scope"),
            };
            uma_grant::grant(&state, &client, params, now).await?
        }
        None => {
            return Err(OAuthError::new(ErrorCode::UnsupportedGrantType)
                .describe("this grant type is not supported here")
                .detail(format!("grant_type `{grant}`")));
        }
    };
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(res)
}
