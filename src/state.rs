//! What every handler can reach. Cheap to clone: everything inside is shared.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::http::discovery::Metadata;
use crate::keys::Keys;
use crate::oauth::jwks_fetch::JwksFetcher;
use crate::policy::PolicyEngine;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub clock: SharedClock,
    /// The discovery document, built once at start from the settings.
    pub metadata: Arc<Metadata>,
    /// Clients' `jwks_uri` documents, cached per node.
    pub jwks_fetcher: Arc<JwksFetcher>,
    /// The Cedar policies, hot-reloaded from `policies_dir`.
    pub policies: Arc<PolicyEngine>,
    /// The claim verifiers, by `claim_token_format` (`verifiers_dir`).
    pub verifiers: Arc<crate::verifiers::VerifierRegistry>,
    /// Requests running: each holds one permit until it finishes, even when its client is gone, so
    /// a shutdown can wait for them before it closes the store.
    pub requests: Arc<tokio::sync::Semaphore>,
}

/// Permits of [`AppState::requests`]: more requests than this at once run untracked.
pub const MAX_TRACKED_REQUESTS: u32 = 1 << 20;
