//! Dynamic client registration: RFC 7591 (`POST /register`) and RFC 7592 (`GET`/`PUT`/`DELETE`
//! `/register/{client_id}` with the registration access token).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::config::RegistrationMode;
use crate::http::extract::{BearerToken, JsonBytes};
use crate::oauth::OAuthError;
use crate::oauth::client::{self, ClientSource, RequestedMetadata};
use crate::oauth::registration::{self as reg, client_information};
use crate::state::AppState;

pub async fn register(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    match state.settings.registration_mode {
        RegistrationMode::Open => {}
        RegistrationMode::Closed => return Err(OAuthError::not_found()),
        RegistrationMode::InitialAccessToken => {
            let token = token.ok_or_else(|| OAuthError::invalid_token("no initial access token"))?;
            if !reg::initial_access_token_is_valid(&state.store, &state.settings, &token, now).await? {
                return Err(OAuthError::invalid_token("unknown initial access token"));
            }
        }
    }
    let metadata = client::validate(RequestedMetadata::from_json(&body)?)?;
    let r = reg::register(&state.store, &state.jwks_fetcher, metadata, ClientSource::Dynamic, None, now).await?;
    let body =
        client_information(&state.settings, &r.client, r.client_secret.as_ref(), r.registration_access_token.as_ref());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    BearerToken(token): BearerToken,
) -> Result<Response, OAuthError> {
    let c = reg::managed_client(&state.store, &client_id, token.as_ref()).await?;
    Ok(Json(client_information(&state.settings, &c, None, None)).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    BearerToken(token): BearerToken,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let c =
        reg::update(&state.store, &state.jwks_fetcher, &client_id, token.as_ref(), &body, state.clock.now()).await?;
    Ok(Json(client_information(&state.settings, &c, None, None)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    BearerToken(token): BearerToken,
) -> Result<Response, OAuthError> {
    reg::delete(&state.store, &client_id, token.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
