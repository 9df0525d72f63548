//! The protection API (FedAuthz §§3–5), PAT-authenticated: resource registration, the permission
//! endpoint, and token introspection.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::extract::{BearerToken, JsonBytes, OAuthForm, PatBearer, authenticate_client};
use crate::oauth::introspection;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::uma::{approval, permission, resources, shares};

pub const RESOURCES_PATH: &str = "/uma/resources";
pub const PERMISSION_PATH: &str = "/uma/permission";
pub const SHARES_PATH: &str = "/uma/shares";
pub const REQUESTS_PATH: &str = "/uma/requests";
pub const INTROSPECTION_PATH: &str = "/introspect";

fn no_store(mut res: Response) -> Response {
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub async fn create_resource(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let d = resources::parse_description(&body)?;
    let id = resources::create(&state.store, &pat, &d, state.clock.now()).await?;
    let mut res = (StatusCode::CREATED, Json(json!({ "_id": id }))).into_response();
    if let Ok(v) = HeaderValue::from_str(&state.settings.endpoint(&format!("{RESOURCES_PATH}/{id}"))) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(no_store(res))
}

pub async fn list_resources(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    RawQuery(q): RawQuery,
) -> Result<Response, OAuthError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let filter = resources::parse_filter(&pairs)?;
    Ok(no_store(Json(resources::list(&state.store, &pat, &filter).await?).into_response()))
}

pub async fn read_resource(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    Path(id): Path<String>,
) -> Result<Response, OAuthError> {
    let d = resources::read(&state.store, &pat, &id).await?;
    let mut body = serde_json::to_value(d).map_err(OAuthError::server_error)?;
    if let Some(o) = body.as_object_mut() {
        o.insert("_id".into(), json!(id));
    }
    Ok(no_store(Json(body).into_response()))
}

pub async fn update_resource(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let d = resources::parse_description(&body)?;
    resources::update(&state.store, &pat, &id, &d, state.clock.now()).await?;
    Ok(no_store(Json(json!({ "_id": id })).into_response()))
}

pub async fn delete_resource(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    Path(id): Path<String>,
) -> Result<Response, OAuthError> {
    resources::delete(&state.store, &pat, &id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn create_share(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let new = shares::parse(&body)?;
    let share = shares::create(&state.store, &state.policies, &pat, new, state.clock.now()).await?;
    Ok(no_store((StatusCode::CREATED, Json(share)).into_response()))
}

pub async fn list_shares(State(state): State<AppState>, PatBearer(pat): PatBearer) -> Result<Response, OAuthError> {
    Ok(no_store(Json(shares::list(&state.store, &pat).await?).into_response()))
}

pub async fn revoke_share(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    Path(id): Path<String>,
) -> Result<Response, OAuthError> {
    shares::revoke(&state.store, &pat, &id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_requests(State(state): State<AppState>, PatBearer(pat): PatBearer) -> Result<Response, OAuthError> {
    Ok(no_store(Json(approval::list(&state.store, &pat).await?).into_response()))
}

pub async fn decide_request(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    Path(id): Path<String>,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let decision = approval::parse_decision(&body)?;
    let view = approval::decide(&state.store, &state.policies, &pat, &id, decision, state.clock.now()).await?;
    Ok(no_store(Json(view).into_response()))
}

/// FedAuthz §3.2: other methods are `unsupported_method_type` with the allowed ones listed.
pub async fn unsupported_method(allow: &'static str) -> Response {
    let mut res = OAuthError::new(ErrorCode::UnsupportedMethodType)
        .describe("this method is not supported on this endpoint")
        .into_response();
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

pub async fn request_permission(
    State(state): State<AppState>,
    PatBearer(pat): PatBearer,
    JsonBytes(body): JsonBytes,
) -> Result<Response, OAuthError> {
    let permissions = permission::parse_request(&body)?;
    let now = state.clock.now();
    let ticket =
        permission::request_ticket(&state.store, &pat, &permissions, state.settings.tokens.ticket, now).await?;
    Ok(no_store((StatusCode::CREATED, Json(json!({ "ticket": ticket.expose() }))).into_response()))
}

/// RFC 7662 with FedAuthz §5: the caller is a resource server, authenticated by its PAT (Bearer) or by
/// its own client credentials.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    BearerToken(bearer): BearerToken,
    mut form: OAuthForm,
) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let token = form.take("token").ok_or_else(|| OAuthError::invalid_request("`token` is required"))?;
    let caller = match bearer {
        Some(pat) => introspection::caller_by_pat(&state.store, &pat, now).await?,
        None => {
            let client = authenticate_client(&state, &headers, &mut form, INTROSPECTION_PATH, now).await?;
            // Introspection is for resource servers (FedAuthz §5); a public client proves nothing.
            if client.metadata.token_endpoint_auth_method == crate::oauth::client::AuthMethod::None {
                return Err(OAuthError::invalid_client("public client at the introspection endpoint"));
            }
            introspection::Caller { client_id: client.client_id, owner: None }
        }
    };
    let answer = introspection::introspect(&state.store, &state.settings.issuer, &caller, &token, now).await?;
    Ok(no_store(Json(answer).into_response()))
}
