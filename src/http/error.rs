//! The one mapping from `OAuthError` to an HTTP response: status, JSON body, `Cache-Control: no-store`,
//! and the headers some codes need. The private `detail` is logged here and never rendered.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::oauth::{Challenge, ErrorCode, OAuthError};

/// Seconds a client should wait before retrying when the store is down (threats D7).
const RETRY_AFTER_SECS: &str = "5";

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidGrant
        | ErrorCode::UnauthorizedClient
        | ErrorCode::UnsupportedGrantType
        | ErrorCode::InvalidScope
        | ErrorCode::InvalidRedirectUri
        | ErrorCode::InvalidClientMetadata
        | ErrorCode::UnapprovedSoftwareStatement
        | ErrorCode::UnsupportedResponseType
        | ErrorCode::InvalidResourceId => StatusCode::BAD_REQUEST,
        ErrorCode::AccessDenied | ErrorCode::NeedInfo | ErrorCode::RequestSubmitted | ErrorCode::RequestDenied => {
            StatusCode::FORBIDDEN
        }
        ErrorCode::UnsupportedMethodType => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or_else(|| status_of(self.code));
        match (status.is_server_error(), &self.detail) {
            (true, Some(d)) => {
                tracing::error!(error = self.code.as_str(), detail = ?d, "request failed")
            }
            (true, None) => tracing::error!(error = self.code.as_str(), "request failed"),
            (false, Some(d)) => {
                tracing::info!(error = self.code.as_str(), detail = ?d, "request refused")
            }
            (false, None) => tracing::info!(error = self.code.as_str(), "request refused"),
        }
        let body = ErrorBody {
            error: self.code.as_str(),
            error_description: self.description.as_deref(),
            extra: self.extra.as_deref(),
        };
        let mut res = (status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self.challenge {
            Some(Challenge::Basic) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tessera\""));
            }
            Some(Challenge::Bearer) => {
                let v = format!("Bearer realm=\"tessera\", error=\"{}\"", self.code.as_str());
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            None => {}
        }
        if self.code == ErrorCode::TemporarilyUnavailable {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(e: OAuthError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let res = e.into_response();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_code_renders_as_an_rfc6749_error_body() {
        use ErrorCode::*;
        let all = [
            InvalidRequest,
            InvalidClient,
            InvalidGrant,
            UnauthorizedClient,
            UnsupportedGrantType,
            InvalidScope,
            InvalidToken,
            InsufficientScope,
            InvalidRedirectUri,
            InvalidClientMetadata,
            UnapprovedSoftwareStatement,
            UnsupportedResponseType,
            AccessDenied,
            InvalidResourceId,
            NeedInfo,
            RequestSubmitted,
            RequestDenied,
            UnsupportedMethodType,
            NotFound,
            MethodNotAllowed,
            RequestTooLarge,
            UnsupportedMediaType,
            TemporarilyUnavailable,
            ServerError,
        ];
        for code in all {
            let (status, headers, body) = render(OAuthError::new(code).detail("SELECT secret FROM x")).await;
            assert_eq!(status, status_of(code));
            assert_eq!(body["error"], code.as_str());
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            let text = body.to_string();
            assert!(!text.contains("SELECT"), "detail leaked for {code:?}: {text}");
            let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
            assert!(keys.iter().all(|k| k == "error" || k == "error_description"), "{keys:?}");
        }
    }

    #[tokio::test]
    async fn unavailable_says_when_to_retry() {
        let (status, headers, body) = render(OAuthError::unavailable("pool timed out")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[tokio::test]
    async fn server_errors_say_nothing_specific() {
        let (_, _, body) = render(OAuthError::server_error("thread panicked at src/x.rs:1")).await;
        assert_eq!(body, serde_json::json!({"error": "server_error", "error_description": "internal error"}));
    }
}
