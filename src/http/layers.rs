//! Layers every request passes through: request id and log span, body size limit, security headers,
//! and a safety net that turns any non-JSON error (axum's own rejections, a panic) into the OAuth JSON
//! error shape, so a client never sees a plain-text 4xx or a stack trace.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::Limited;
use tracing::Instrument;

use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An incoming request id is kept (a load balancer may have set it, for correlation) only if it is
/// short and plain; anything else could forge log lines, so it is replaced.
fn acceptable_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 64 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// Gives each request an id, a log span carrying it, one log line when it completes, and echoes the
/// id in the response. The span records the path only: query strings may carry tickets.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if acceptable_request_id(v) => v.clone(),
        _ => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(HeaderValue::from_static("-")),
    };
    req.headers_mut().insert(X_REQUEST_ID.clone(), id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id.to_str().unwrap_or("-"),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(status = res.status().as_u16(), micros = started.elapsed().as_micros() as u64, "served");
    });
    res.headers_mut().insert(X_REQUEST_ID.clone(), id);
    res
}

/// Runs the rest of the request in its own task, so a client that disconnects cannot cancel a
/// handler halfway through its writes. Besides keeping "nothing half-written" true at the HTTP
/// level, this avoids sqlx 0.9.0's bug transact-rs/sqlx#4393: a PostgreSQL `BEGIN` whose future
/// is dropped leaves its pooled connection inside an open transaction, and later requests' writes
/// on that connection are answered as done but never committed (seen under load: tickets answered
/// 201 that no one could redeem). The request body is read inside the task, with the body limit.
pub async fn run_to_completion(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let permit = state.requests.clone().try_acquire_owned().ok();
    let task = async move {
        let res = next.run(req).await;
        drop(permit);
        res
    };
    // The task keeps the request's span, so its log lines still carry the request id.
    match tokio::spawn(tracing::Instrument::in_current_span(task)).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "a request task failed");
            OAuthError::server_error("the request could not be completed").into_response()
        }
    }
}

/// Bodies above the limit get a JSON 413: at once when `Content-Length` says so, or while being read
/// otherwise. The token endpoint has a larger limit, to fit pushed SAML assertions (threats D8).
pub async fn body_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token_path = state.settings.endpoint_path("/token");
    let limit = if req.uri().path() == token_path {
        state.settings.token_body_limit_bytes
    } else {
        state.settings.body_limit_bytes
    };
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut res = if declared.is_some_and(|n| n > limit as u64) {
        OAuthError::new(ErrorCode::RequestTooLarge).into_response()
    } else {
        next.run(req.map(|body| Body::new(Limited::new(body, limit)))).await
    };
    // The rest of an oversized body is never read, so the connection cannot carry another request:
    // say so, or a client reusing it would see its next request fail.
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE {
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Any error response that is not already JSON (or an HTML page meant for a browser) is rewritten into
/// the OAuth error shape with the same status.
pub async fn json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") || content_type.starts_with("text/html") {
        return res;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::RequestTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::TemporarilyUnavailable,
        s if s.is_server_error() => ErrorCode::ServerError,
        _ => ErrorCode::InvalidRequest,
    };
    let mut fixed = OAuthError::new(code).into_response();
    *fixed.status_mut() = status;
    fixed
}

/// A panic is a bug, never the client's fault: answer 500 `server_error` and log it.
pub fn panic_to_error(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    OAuthError::server_error("handler panicked").into_response()
}

const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
];

/// Headers every response carries unless its handler set its own (discovery and JWKS allow caching).
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_that_could_forge_log_lines_are_replaced() {
        assert!(acceptable_request_id(&HeaderValue::from_static("abc-123_x.y")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("a b")));
        assert!(!acceptable_request_id(&HeaderValue::from_static("a\" injected=1")));
        assert!(!acceptable_request_id(&HeaderValue::from_str(&"x".repeat(65)).unwrap()));
    }
}
