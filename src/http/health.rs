//! Liveness and readiness for orchestrators. `/healthz` answers while the process runs; `/readyz`
//! answers 200 only while the store answers, and 503 (with `Retry-After`) otherwise.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::oauth::OAuthError;
use crate::state::AppState;

const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_PROBE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => OAuthError::unavailable(e).into_response(),
        Err(_) => OAuthError::unavailable("store did not answer within 2s").into_response(),
    }
}
