//! The HTTP surface: routes of each endpoint family plus the layers every request passes through.
//! Handlers are thin: extract, call one domain function, render.
//!
//! Every route lives under the issuer's path, so an issuer such as `https://h/uma` serves
//! `https://h/uma/jwks`; the RFC 8414 document is also served at `/.well-known/oauth-authorization-server/uma`.

pub mod authorize;
pub mod claims;
pub mod console;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod health;
mod layers;
pub mod pages;
pub mod protection;
pub mod registration;
pub mod revocation;
pub mod templates;
pub mod token;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let issuer_path = state.settings.issuer_path().to_owned();

    let endpoints: Router<AppState> = Router::new()
        .route(discovery::UMA_PATH, get(discovery::metadata))
        .route(discovery::JWKS_PATH, get(discovery::jwks))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(token::TOKEN_PATH, post(token::token))
        .route(crate::oauth::registration::REGISTRATION_PATH, post(registration::register))
        .route(
            &format!("{}/{{client_id}}", crate::oauth::registration::REGISTRATION_PATH),
            get(registration::read).put(registration::update).delete(registration::delete),
        )
        .route(authorize::AUTHORIZE_PATH, get(authorize::authorize))
        .route(authorize::DECISION_PATH, post(authorize::decision))
        .route(
            protection::RESOURCES_PATH,
            get(protection::list_resources)
                .post(protection::create_resource)
                .fallback(|| protection::unsupported_method("GET, POST")),
        )
        .route(
            &format!("{}/{{id}}", protection::RESOURCES_PATH),
            get(protection::read_resource)
                .put(protection::update_resource)
                .delete(protection::delete_resource)
                .fallback(|| protection::unsupported_method("GET, PUT, DELETE")),
        )
        .route(protection::PERMISSION_PATH, post(protection::request_permission))
        .route(protection::SHARES_PATH, get(protection::list_shares).post(protection::create_share))
        .route(&format!("{}/{{id}}", protection::SHARES_PATH), axum::routing::delete(protection::revoke_share))
        .route(protection::REQUESTS_PATH, get(protection::list_requests))
        .route(&format!("{}/{{id}}", protection::REQUESTS_PATH), post(protection::decide_request))
        .route(protection::INTROSPECTION_PATH, post(protection::introspect))
        .route(revocation::REVOCATION_PATH, post(revocation::revoke))
        .merge(claims::routes())
        .merge(console::routes());

    let app = if issuer_path.is_empty() {
        endpoints.route(discovery::OAUTH_PATH, get(discovery::metadata))
    } else {
        Router::new()
            .nest(&issuer_path, endpoints)
            .route(&format!("{}{issuer_path}", discovery::OAUTH_PATH), get(discovery::metadata))
    };

    app.fallback(|| async { OAuthError::not_found() })
        .method_not_allowed_fallback(|| async { OAuthError::new(ErrorCode::MethodNotAllowed) })
        .layer(middleware::from_fn_with_state(state.clone(), layers::body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), layers::run_to_completion))
        .layer(middleware::map_response(layers::json_errors))
        .layer(CatchPanicLayer::custom(layers::panic_to_error))
        .layer(middleware::map_response(layers::security_headers))
        .layer(middleware::from_fn(layers::request_id))
        .with_state(state)
}
