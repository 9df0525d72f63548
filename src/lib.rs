//! Tessera: a UMA 2.0 authorization server. This file only wires the pieces together.

pub mod accounts;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod policy;
pub mod state;
pub mod store;
pub mod uma;
pub mod verifiers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::http::discovery::Metadata;
use crate::keys::{KeyError, Keys};
use crate::state::AppState;
use crate::store::{ConnectOptions, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use database `{url}`: {source}")]
    Store { url: String, source: StoreError },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("{0}")]
    Clients(String),
    #[error("cannot load the policies:\n{0}")]
    Policy(String),
    #[error("cannot load the claim verifiers: {0}")]
    Verifiers(String),
}

/// Connects to the configured store and, unless `migrate_on_start` is off, brings its schema up to date.
pub async fn open_store(settings: &Settings, migrate: bool) -> Result<Store, StartError> {
    let wrap = |source| StartError::Store { url: settings.database_url.to_string(), source };
    let opts = ConnectOptions {
        max_connections: settings.database_max_connections,
        connect_timeout: Duration::from_secs(settings.database_connect_timeout_secs),
    };
    let store = Store::connect(&settings.database_url, &opts).await.map_err(wrap)?;
    if migrate {
        store.migrate().await.map_err(wrap)?;
    }
    Ok(store)
}

/// A server ready to accept connections: store open, keys loaded.
pub struct Server {
    state: AppState,
}

impl Server {
    pub async fn build(settings: Settings, clock: SharedClock) -> Result<Self, StartError> {
        // Policies first: broken policies stop the start before the database is touched.
        let policies = load_policies(&settings)?;
        let verifiers = load_verifiers(&settings)?;
        let store = open_store(&settings, settings.migrate_on_start).await?;
        keys::ensure_active_keys(&store, clock.now()).await?;
        let keys = Keys::load(&store, &settings, clock.now()).await?;
        oauth::registration::sync_static_clients(&store, &settings, clock.now()).await.map_err(StartError::Clients)?;
        let verifiers = verifiers.with_store(store.clone());
        let mut metadata = Metadata::new(&settings);
        metadata.claim_token_formats_supported = verifiers.formats();
        if uma::gathering::offered(&settings, &verifiers) {
            metadata.claims_interaction_endpoint = Some(settings.endpoint(http::claims::CLAIMS_PATH));
        }
        let settings_allow_private = settings.danger_allow_private_fetch;
        let state = AppState {
            settings: Arc::new(settings),
            store,
            keys: Arc::new(keys),
            clock,
            metadata: Arc::new(metadata),
            jwks_fetcher: Arc::new(oauth::jwks_fetch::JwksFetcher::new(settings_allow_private)),
            policies: Arc::new(policies),
            verifiers: Arc::new(verifiers),
            requests: Arc::new(tokio::sync::Semaphore::new(state::MAX_TRACKED_REQUESTS as usize)),
        };
        Ok(Server { state })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and lets in-flight requests
    /// finish, for at most `http.shutdown_grace_secs`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let refresher = tokio::spawn(refresh_keys(state.clone()));
        let sweeper = tokio::spawn(sweep_expired(state.clone()));
        let policy_reloader = tokio::spawn(reload_policies(state.clone()));
        let grace = Duration::from_secs(state.settings.shutdown_grace_secs);
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);

        let serve = axum::serve(listener, self.router()).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stopping_tx.send(true);
        });
        let grace_over = async move {
            if stopping_rx.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = serve.into_future() => r,
            () = grace_over => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
                Ok(())
            }
        };
        refresher.abort();
        sweeper.abort();
        policy_reloader.abort();
        // Requests whose clients left still run to completion (http::layers::run_to_completion):
        // the store closes after them, within the grace period.
        if tokio::time::timeout(grace, state.requests.acquire_many(state::MAX_TRACKED_REQUESTS)).await.is_err() {
            tracing::warn!("requests still running when the grace period ended");
        }
        state.store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Re-reads the signing keys now and then, so a rotation on another node or by the CLI is picked up.
async fn refresh_keys(state: AppState) {
    let every = Duration::from_secs(state.settings.key_refresh_secs);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = state.keys.refresh(&state.store, state.clock.now()).await {
            tracing::warn!(error = %e, "cannot refresh signing keys; the previous set keeps serving");
        }
    }
}

/// Loads `verifiers_dir`, refusing to start on a malformed verifier file (the file and the problem
/// are named). Partner keys are fetched on first use, so an unreachable IdP does not stop the start.
fn load_verifiers(settings: &Settings) -> Result<verifiers::VerifierRegistry, StartError> {
    let env = verifiers::VerifierEnv::from_settings(settings);
    let registry = verifiers::VerifierRegistry::load(&settings.verifiers_dir, &env)
        .map_err(|e| StartError::Verifiers(e.to_string()))?;
    for (id, format, issuer) in registry.summary() {
        tracing::info!(verifier = %id, claim_token_format = format, issuer = %issuer, "claim verifier loaded");
    }
    if registry.is_empty() {
        tracing::info!(verifiers_dir = %settings.verifiers_dir.display(), "no claim verifiers: pushed claim tokens are refused");
    }
    Ok(registry)
}

/// Loads the policies, refusing to start on any error. A missing policies folder is an empty set
/// that denies every request, which is allowed (a fresh install) but loud.
fn load_policies(settings: &Settings) -> Result<policy::PolicyEngine, StartError> {
    let engine = policy::PolicyEngine::load(&settings.policies_dir, &settings.policy_schema)
        .map_err(|e| StartError::Policy(e.to_string()))?;
    for w in engine.warnings() {
        tracing::warn!("{w}");
    }
    let (files, policies) = engine.summary();
    if engine.is_empty() {
        tracing::warn!(
            policies_dir = %settings.policies_dir.display(),
            "no Cedar policies loaded: every authorization request will be denied"
        );
    } else {
        tracing::info!(files, policies, policies_dir = %settings.policies_dir.display(), "policies loaded");
    }
    Ok(engine)
}

/// Polls the policies folder every `policy_reload_secs` (0: never) and swaps in a changed set once
/// it validates; a broken change is logged and the previous set keeps deciding.
async fn reload_policies(state: AppState) {
    let secs = state.settings.policy_reload_secs;
    if secs == 0 {
        return;
    }
    let every = Duration::from_secs(secs);
    loop {
        tokio::time::sleep(every).await;
        let engine = state.policies.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || engine.poll()).await {
            tracing::error!(error = %e, "policy reload task failed; the previous set keeps deciding");
        }
    }
}

/// Deletes expired artifacts every few minutes so that tables of short-lived, unauthenticated-to-create
/// rows (pending authorization requests, tickets) cannot grow without bound. Every node runs it; the
/// deletes are idempotent.
async fn sweep_expired(state: AppState) {
    let every = Duration::from_secs(300);
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = state.store.sweep_claim_token_uses(state.clock.now()).await {
            tracing::warn!(error = %e, "cannot delete expired claim-token uses");
        }
        match state.store.sweep_expired(state.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "expired artifacts deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired artifacts"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
