//! `POST /revoke` (RFC 7009), authenticated like the token endpoint.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::extract::{OAuthForm, authenticate_client};
use crate::oauth::{OAuthError, revocation};
use crate::state::AppState;

pub const REVOCATION_PATH: &str = "/revoke";

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut form: OAuthForm,
) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let token = form.take("token").ok_or_else(|| OAuthError::invalid_request("`token` is required"))?;
    // The hint is read so that it does not count as an unknown parameter, and otherwise ignored.
    let _hint = form.take("token_type_hint");
    let client = authenticate_client(&state, &headers, &mut form, REVOCATION_PATH, now).await?;
    revocation::revoke(&state.store, &client, &token, now).await?;
    let mut res = StatusCode::OK.into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
