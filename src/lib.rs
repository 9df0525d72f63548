//! Tessera: a UMA 2.0 authorization server. This file only wires the pieces together.

pub mod accounts;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod state;
pub mod store;
pub mod uma;

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
        let store = open_store(&settings, settings.migrate_on_start).await?;
        keys::ensure_active_keys(&store, clock.now()).await?;
        let keys = Keys::load(&store, &settings, clock.now()).await?;
        oauth::registration::sync_static_clients(&store, &settings, clock.now()).await.map_err(StartError::Clients)?;
        let metadata = Metadata::new(&settings);
        let settings_allow_private = settings.danger_allow_private_fetch;
        let state = AppState {
            settings: Arc::new(settings),
            store,
            keys: Arc::new(keys),
            clock,
            metadata: Arc::new(metadata),
            jwks_fetcher: Arc::new(oauth::jwks_fetch::JwksFetcher::new(settings_allow_private)),
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

/// Deletes expired artifacts every few minutes so that tables of short-lived, unauthenticated-to-create
/// rows (pending authorization requests, tickets) cannot grow without bound. Every node runs it; the
/// deletes are idempotent.
async fn sweep_expired(state: AppState) {
    let every = Duration::from_secs(300);
    loop {
        tokio::time::sleep(every).await;
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
