//! The one error type every endpoint answers with (RFC 6749 §5.2 shape: `error`, optional
//! `error_description`). The public description is generic and safe to show; the specific reason is a
//! private `detail` that goes to the log line of the request, never to the body. The mapping to HTTP
//! status and headers lives in `http::error`, in one place.

use std::borrow::Cow;

/// A closed set of error codes: RFC 6749/6750/7591 and UMA's own, plus the few that the HTTP layer
/// itself needs (unknown path, wrong method, body too large, store down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
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
    /// UMA Grant §3.3.6: more claims could help (403, with a new ticket and `required_claims`).
    NeedInfo,
    /// UMA Grant §3.3.6: the owner must approve first (403, with a new ticket and `interval`).
    RequestSubmitted,
    /// UMA Grant §3.3.6: the policies deny the request (403).
    RequestDenied,
    /// FedAuthz §3.2: a method the resource registration endpoint does not support.
    UnsupportedMethodType,
    NotFound,
    MethodNotAllowed,
    RequestTooLarge,
    UnsupportedMediaType,
    TemporarilyUnavailable,
    ServerError,
}

impl ErrorCode {
    /// The `error` member on the wire. HTTP-level codes reuse OAuth's vocabulary where one fits.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::MethodNotAllowed
            | ErrorCode::RequestTooLarge
            | ErrorCode::UnsupportedMediaType => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidResourceId => "invalid_resource_id",
            ErrorCode::NeedInfo => "need_info",
            ErrorCode::RequestSubmitted => "request_submitted",
            ErrorCode::RequestDenied => "request_denied",
            ErrorCode::UnsupportedMethodType => "unsupported_method_type",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::ServerError => "server_error",
        }
    }

    /// The generic description shown when the caller gives none.
    pub fn default_description(self) -> Option<&'static str> {
        match self {
            ErrorCode::NotFound => Some("no such endpoint or object"),
            ErrorCode::MethodNotAllowed => Some("method not allowed on this endpoint"),
            ErrorCode::RequestTooLarge => Some("request body too large"),
            ErrorCode::UnsupportedMediaType => Some("unsupported content type"),
            ErrorCode::TemporarilyUnavailable => Some("the service is temporarily unavailable; retry later"),
            ErrorCode::ServerError => Some("internal error"),
            _ => None,
        }
    }
}

/// The authentication scheme a 401 asks for (`WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// The client tried HTTP Basic at the token endpoint (RFC 6749 §5.2).
    Basic,
    /// A bearer token was missing or invalid (RFC 6750 §3).
    Bearer,
}

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Safe to show to the client.
    pub description: Option<Cow<'static, str>>,
    /// For the log only.
    pub detail: Option<String>,
    pub challenge: Option<Challenge>,
    /// An HTTP status other than the code's usual one, where a spec says so (e.g. RFC 7662 §2.3 wants
    /// 401 for a token without the needed scope at the introspection endpoint).
    pub status: Option<u16>,
    /// Members UMA adds to an error body (`ticket`, `required_claims`, `redirect_user`, `interval`).
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl OAuthError {
    pub fn new(code: ErrorCode) -> Self {
        OAuthError {
            code,
            description: code.default_description().map(Cow::Borrowed),
            detail: None,
            challenge: None,
            status: None,
            extra: None,
        }
    }

    /// Adds a member to the error body (UMA's `ticket`, `required_claims`, `interval`…).
    pub fn with_member(mut self, name: &str, value: serde_json::Value) -> Self {
        self.extra.get_or_insert_with(Default::default).insert(name.to_owned(), value);
        self
    }

    pub fn describe(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn challenge(mut self, challenge: Challenge) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// Client authentication failed. One generic description for every reason, so the answer does
    /// not tell an attacker which part was wrong or whether the client exists.
    pub fn invalid_client(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient).describe("client authentication failed").detail(detail)
    }

    /// A bearer token (registration access token, initial access token, PAT) is missing or invalid.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken)
            .describe("the access token is missing, invalid or expired")
            .detail(detail)
            .challenge(Challenge::Bearer)
    }

    pub fn invalid_client_metadata(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClientMetadata).describe(description)
    }

    pub fn invalid_redirect_uri(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRedirectUri).describe(description)
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest).describe(description)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound)
    }

    /// The store (or another dependency) is down: 503, never a client error, never a token.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::TemporarilyUnavailable).detail(detail.to_string())
    }

    pub fn server_error(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::ServerError).detail(detail.to_string())
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        OAuthError::unavailable(e)
    }
}
