//! The store: the only module that speaks SQL. Named operations only; one SQL text for SQLite and
//! PostgreSQL through sqlx's `Any` driver (`$N` placeholders, `RETURNING`, epoch-second BIGINT times,
//! TEXT for everything else), so the same statements also stay inside what PostgreSQL-compatible
//! distributed engines accept. DDL differs per backend, so each has its own migrations folder.
//!
//! Opaque tokens are never stored: only their SHA-256 digests (`oauth::tokens::TokenDigest`).

mod claims;
mod console;
mod lane;
mod protection;
mod records;
mod replay;
mod shares;
mod uma;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::clock::UnixTime;
use crate::config::DatabaseUrl;
pub use protection::ResourceFilter;
pub use records::{
    AccessTokenRecord, AccountRecord, AuditRecord, AuthorizationCodeRecord, AuthorizationRequestRecord,
    ClaimsSessionRecord, ClientRecord, PctRecord, PendingRequestRecord, RefreshTokenRecord, ResourceRecord, RptRecord,
    SigningKeyRecord, TicketRecord,
};
pub use shares::ShareRecord;
pub use uma::{IssueRpt, RotateTicket};

/// The columns of `ClientRecord`, in one place for every query that reads a client.
macro_rules! client_columns {
    () => {
        "client_id, secret_digest, registration_token_digest, metadata, source, issued_at, secret_expires_at, \
         updated_at, bound_owner"
    };
}

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
    /// SQLite's fast lane (`lane`) failed to answer: a 503 for callers, like `Unavailable`.
    #[error("database unavailable: {0}")]
    Lane(String),
    /// The store was closed (shutdown) before the operation could run.
    #[error("the store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Lane(e.to_string())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e)
    }
}

/// The outcome of an INSERT whose key decides: `false` when the key was taken. Unique violations are
/// recognised by kind, not by constraint name (SQLite has none).
fn inserted(result: Result<sqlx::any::AnyQueryResult, sqlx::Error>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Inserts a refresh token (of owner tokens or of an RPT) inside the caller's transaction.
const INSERT_REFRESH_TOKEN: &str = "INSERT INTO refresh_token
         (digest, client_id, owner, scope, family, issued_at, expires_at, used_at, revoked_at, permissions, party)
     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $9)";

async fn insert_refresh_token_on(conn: &mut sqlx::AnyConnection, r: &RefreshTokenRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_REFRESH_TOKEN)
        .bind(&r.digest)
        .bind(&r.client_id)
        .bind(&r.owner)
        .bind(&r.scope)
        .bind(&r.family)
        .bind(r.issued_at)
        .bind(r.expires_at)
        .bind(&r.permissions)
        .bind(&r.party)
        .execute(conn)
        .await?;
    Ok(())
}

/// The same insert on SQLite's fast lane.
fn insert_refresh_token_in(conn: &rusqlite::Connection, r: &RefreshTokenRecord) -> rusqlite::Result<()> {
    lane::execute(
        conn,
        INSERT_REFRESH_TOKEN,
        &[
            &r.digest,
            &r.client_id,
            &r.owner,
            &r.scope,
            &r.family,
            &r.issued_at,
            &r.expires_at,
            &r.permissions,
            &r.party,
        ],
    )?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite admits one writer per file at a time. This process's writers on the hot paths queue
    /// here, in FIFO order, rather than in SQLite's busy handler, whose sleeps (1 ms growing to
    /// 100 ms) make write latency spiky under load. Always taken before a connection, never while
    /// holding one, so it cannot deadlock with the pool. Unused on PostgreSQL (row locks).
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite only: the hot paths' statements, without sqlx's per-statement thread hop (`lane`).
    lane: Option<std::sync::Arc<lane::Lane>>,
}

/// Options for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

/// The file of a `sqlite://path?…` URL.
fn sqlite_path(url: &str) -> &Path {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    Path::new(rest.split_once('?').map_or(rest, |(path, _)| path))
}

/// `sqlite://path` → adds `mode=rwc` so the file is created on first start, and creates its folder.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Setup(
            "an in-memory SQLite database would lose every token on restart; give a file path".into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Setup(format!("cannot create folder `{}`: {e}", parent.display())))?;
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
        // No health-check query before each acquire: a broken connection fails its statement instead
        // (a 503 for that request), and the round trip it saves is paid by every request.
        let mut pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.connect_timeout)
            .test_before_acquire(false);
        if backend == Backend::Sqlite {
            // WAL lets readers proceed while one writer commits; the setting is kept in the file.
            // `synchronous = NORMAL` in WAL mode: a commit survives a crash of the process; only a
            // power loss or OS crash may lose the last commits (never corrupts the file).
            // sqlx's defaults already give each connection foreign keys and a busy timeout.
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        // PostgreSQL keeps its default plan caching (custom plans for a prepared statement's first
        // runs, then a generic one when it costs about the same). Forcing custom plans for every
        // statement (tried after a generic plan once read an owner's whole resource index) doubled
        // PostgreSQL's CPU per lookup (introspection: 348 -> 167 us of PostgreSQL CPU per request
        // without it); three benchmark rounds with ~30k resources for one owner show no such plan.
        let pool = pool.connect(&url).await?;
        let lane = match backend {
            // After sqlx: the file exists and is in WAL mode.
            Backend::Sqlite => Some(std::sync::Arc::new(lane::Lane::open(sqlite_path(&url))?)),
            Backend::Postgres => None,
        };
        Ok(Store { pool, backend, writer: std::sync::Arc::new(tokio::sync::Mutex::new(())), lane })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's turn to write, on SQLite (see `writer`); `None` on PostgreSQL.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writer.lock().await),
            Backend::Postgres => None,
        }
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
        if let Some(lane) = &self.lane {
            lane.close().await;
        }
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
    pub async fn add_signing_key(&self, key: &SigningKeyRecord, now: UnixTime) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let insert = sqlx::query(
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
        if !inserted(insert)? {
            return Ok(false);
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
    pub async fn delete_signing_keys_retired_before(&self, cutoff: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM signing_key WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    // ---- clients ----

    /// Inserts a client; `false` if the id is taken.
    pub async fn insert_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO client (client_id, secret_digest, registration_token_digest, metadata, source,
                                 issued_at, secret_expires_at, updated_at, bound_owner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&c.client_id)
        .bind(&c.secret_digest)
        .bind(&c.registration_token_digest)
        .bind(&c.metadata)
        .bind(&c.source)
        .bind(c.issued_at)
        .bind(c.secret_expires_at)
        .bind(c.updated_at)
        .bind(&c.bound_owner)
        .execute(&self.pool)
        .await;
        inserted(done)
    }

    /// Makes a configuration-file client match its declaration: inserted, or replaced if it came
    /// from the configuration before. Returns `false` when the id belongs to a client of another
    /// source, which is left alone.
    pub async fn upsert_config_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
        if self.insert_client(c).await? {
            return Ok(true);
        }
        let done = sqlx::query(
            "UPDATE client SET secret_digest = $1, metadata = $2, updated_at = $3, bound_owner = $4
             WHERE client_id = $5 AND source = 'config'",
        )
        .bind(&c.secret_digest)
        .bind(&c.metadata)
        .bind(c.updated_at)
        .bind(&c.bound_owner)
        .bind(&c.client_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        const SQL: &str = concat!("SELECT ", client_columns!(), " FROM client WHERE client_id = $1");
        if let Some(lane) = &self.lane {
            return lane.read(|c| lane::query_one(c, SQL, &[&client_id], lane::client_row));
        }
        Ok(sqlx::query_as::<_, ClientRecord>(SQL).bind(client_id).fetch_optional(&self.pool).await?)
    }

    /// The client whose id *and* registration access token both match (RFC 7592), else nothing.
    pub async fn find_client_for_management(
        &self,
        client_id: &str,
        registration_token_digest: &str,
    ) -> Result<Option<ClientRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ClientRecord>(concat!(
            "SELECT ",
            client_columns!(),
            " FROM client WHERE client_id = $1 AND registration_token_digest = $2"
        ))
        .bind(client_id)
        .bind(registration_token_digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ClientRecord>(concat!(
            "SELECT ",
            client_columns!(),
            " FROM client ORDER BY issued_at, client_id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces the metadata of a client managed with this registration token. `false` if none matched.
    pub async fn update_client_metadata(
        &self,
        client_id: &str,
        registration_token_digest: &str,
        metadata: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE client SET metadata = $1, updated_at = $2
             WHERE client_id = $3 AND registration_token_digest = $4",
        )
        .bind(metadata)
        .bind(now)
        .bind(client_id)
        .bind(registration_token_digest)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a client, with its access tokens. With a registration token digest, only if it matches.
    pub async fn delete_client(
        &self,
        client_id: &str,
        registration_token_digest: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = match registration_token_digest {
            Some(d) => {
                sqlx::query("DELETE FROM client WHERE client_id = $1 AND registration_token_digest = $2")
                    .bind(client_id)
                    .bind(d)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query("DELETE FROM client WHERE client_id = $1").bind(client_id).execute(&self.pool).await?,
        };
        Ok(done.rows_affected() == 1)
    }

    /// Records a client assertion's `jti` until `expires_at`. `false` if it was seen before: a replay,
    /// on this node or any other sharing the store.
    pub async fn record_assertion_jti(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // This key's expired row, if any, is taken over (the sweeper clears the rest, off the token
        // endpoint's path); a live one makes the statement change nothing: a replay.
        const SQL: &str = "INSERT INTO client_assertion_jti (client_id, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at
             WHERE client_assertion_jti.expires_at < $4";
        self.record_once(SQL, client_id, jti, expires_at, now).await
    }

    /// Runs one of the replay upserts (`$1`, `$2`: the key; `$3`: its expiry; `$4`: now): `true` if
    /// the key was new (or its old row expired), `false` for a replay.
    pub(crate) async fn record_once(
        &self,
        sql: &'static str,
        scope: &str,
        id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if let Some(lane) = &self.lane {
            let (scope, id) = (scope.to_owned(), id.to_owned());
            return lane
                .write(move |c| Ok(lane::Written::Keep(lane::execute(c, sql, &[&scope, &id, &expires_at, &now])? == 1)))
                .await;
        }
        let _turn = self.write_turn().await;
        let done = sqlx::query(sql).bind(scope).bind(id).bind(expires_at).bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- initial access tokens ----

    pub async fn insert_initial_access_token(
        &self,
        digest: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO initial_access_token (digest, created_at, expires_at) VALUES ($1, $2, $3)")
            .bind(digest)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn initial_access_token_is_valid(&self, digest: &str, now: UnixTime) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT created_at FROM initial_access_token WHERE digest = $1 AND (expires_at = 0 OR expires_at > $2)",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    // ---- access tokens ----

    pub async fn insert_access_token(&self, t: &AccessTokenRecord) -> Result<(), StoreError> {
        self.insert_tokens(t, None).await
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
        assert_eq!(prepare_sqlite_url(&with_q).unwrap(), format!("{url}?cache=private&mode=rwc"));
        let ro = format!("{url}?mode=ro");
        assert_eq!(prepare_sqlite_url(&ro).unwrap(), ro);
    }

    #[test]
    fn in_memory_sqlite_is_refused() {
        assert!(prepare_sqlite_url("sqlite::memory:").is_err());
    }
}
