//! The store: the only module that speaks SQL. Named operations only; one SQL text for SQLite and
//! PostgreSQL through sqlx's `Any` driver (`$N` placeholders, `RETURNING`, epoch-second BIGINT times,
//! TEXT for everything else), so the same statements also stay inside what PostgreSQL-compatible
//! distributed engines accept. DDL differs per backend, so each has its own migrations folder.
//!
//! Opaque tokens are never stored: only their SHA-256 digests (`oauth::tokens::TokenDigest`).

mod records;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::clock::UnixTime;
use crate::config::DatabaseUrl;
pub use records::SigningKeyRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or failed to answer: a 503 for callers, never a client error.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("cannot prepare the database: {0}")]
    Setup(String),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Options for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

/// `sqlite://path` → adds `mode=rwc` so the file is created on first start, and creates its folder.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Setup(
            "an in-memory SQLite database would lose every token on restart; give a file path"
                .into(),
        ));
    }
    if let Some(parent) = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Setup(format!("cannot create folder `{}`: {e}", parent.display()))
        })?;
    }
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("sqlite://{path}?mode=rwc"))
    } else {
        Ok(format!("sqlite://{path}?{query}&mode=rwc"))
    }
}

impl Store {
    pub async fn connect(url: &DatabaseUrl, opts: &ConnectOptions) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url) = if url.is_sqlite() {
            (Backend::Sqlite, prepare_sqlite_url(url.expose())?)
        } else {
            (Backend::Postgres, url.expose().to_owned())
        };
        let mut pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout);
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits; the setting is kept in the file.
            // sqlx's defaults already give each connection foreign keys and a busy timeout.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect(&url).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs the migrations of this backend that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        // PostgreSQL serialises concurrent migrators with an advisory lock; SQLite has none, so two
        // processes starting on one new file can race. Each migration runs in a transaction, so the
        // loser's attempt leaves nothing behind and a retry finds the winner's work applied.
        let mut attempt = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if self.backend == Backend::Sqlite && attempt < 3 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether the store answers a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- signing keys ----

    /// Every signing key, newest generation first within each algorithm.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Ok(sqlx::query_as::<_, SigningKeyRecord>(
            "SELECT kid, alg, generation, private_pem, public_jwk, created_at, retired_at
             FROM signing_key ORDER BY alg, generation DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds a key as the next generation of its algorithm and retires the previous active one, in one
    /// transaction. Returns `false` when another node inserted that generation first (the caller
    /// re-reads and uses theirs).
    pub async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO signing_key (kid, alg, generation, private_pem, public_jwk, created_at, retired_at)
             VALUES ($1, $2, $3, $4, $5, $6, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(key.generation)
        .bind(&key.private_pem)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "UPDATE signing_key SET retired_at = $1
             WHERE alg = $2 AND generation < $3 AND retired_at IS NULL",
        )
        .bind(now)
        .bind(&key.alg)
        .bind(key.generation)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes retired keys whose publication window has closed (no live token can carry their `kid`).
    pub async fn delete_signing_keys_retired_before(
        &self,
        cutoff: UnixTime,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM signing_key WHERE retired_at IS NOT NULL AND retired_at < $1")
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/t.db");
        let url = format!("sqlite://{}", db.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.path().join("sub").is_dir());
        let with_q = format!("{url}?cache=private");
        assert_eq!(
            prepare_sqlite_url(&with_q).unwrap(),
            format!("{url}?cache=private&mode=rwc")
        );
        let ro = format!("{url}?mode=ro");
        assert_eq!(prepare_sqlite_url(&ro).unwrap(), ro);
    }

    #[test]
    fn in_memory_sqlite_is_refused() {
        assert!(prepare_sqlite_url("sqlite::memory:").is_err());
    }
}
