//! The end-to-end harness: the real server on an ephemeral loopback port, a fresh store per test, and
//! a plain HTTP client. Every store-backed test runs twice: on SQLite always, and on PostgreSQL when
//! `TESSERA_TEST_POSTGRES_URL` is set (each test in its own schema, so tests run in parallel). If that
//! variable is set and PostgreSQL cannot be reached, the tests fail; they never skip silently.

#![allow(dead_code)]

pub mod assertions;
pub mod browser;
pub mod idp;
pub mod jwks_server;
pub mod oauth;
pub mod process;
pub mod proxy;
pub mod uma;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera::Server;
use tessera::clock::{Clock, FixedClock, SharedClock, SystemClock};
use tessera::config::Settings;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const POSTGRES_ENV: &str = "TESSERA_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL for tests, or `None` (with a note on stderr saying why) when it is not set.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped on PostgreSQL: {POSTGRES_ENV} is not set (SQLite ran)");
            None
        }
    }
}

/// Generates one test per store for `async fn $name(store: StoreKind)`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::StoreKind::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_url().is_some() {
                    super::$name($crate::support::StoreKind::Postgres).await
                }
            }
        }
    )+};
}

/// A fresh, empty database: a SQLite file in a temporary folder, or a new PostgreSQL schema.
pub struct TestDb {
    pub kind: StoreKind,
    pub url: String,
    schema: Option<String>,
    dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(kind: StoreKind) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match kind {
            StoreKind::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("tessera.db").display());
                TestDb { kind, url, schema: None, dir }
            }
            StoreKind::Postgres => {
                let base = std::env::var(POSTGRES_ENV).expect("postgres tests need TESSERA_TEST_POSTGRES_URL");
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                admin(&base, &format!("CREATE SCHEMA {schema}")).await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                TestDb { kind, url, schema: Some(schema), dir }
            }
        }
    }

    /// A folder that lives as long as the database, for config files and the like.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub async fn drop_now(self) {
        if let Some(schema) = &self.schema {
            let base = std::env::var(POSTGRES_ENV).unwrap_or_default();
            admin(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
}

/// Runs one statement on the test PostgreSQL server; a failure to connect fails the test loudly.
pub async fn admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
}

/// Starts Tessera on `127.0.0.1:0` over `db`, with `extra` TOML appended to the test settings.
pub struct TestAs {
    pub base: String,
    pub http: reqwest::Client,
    pub server: tessera::state::AppState,
    pub clock: Option<FixedClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

#[derive(Default)]
pub struct Options<'a> {
    pub issuer_path: &'a str,
    pub extra_toml: &'a str,
    pub fixed_clock: Option<FixedClock>,
    /// The policies folder; `None`: the repository's `policies`. The schema is always the repository's.
    pub policies_dir: Option<&'a Path>,
}

pub fn write_config(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("write config");
    path
}

impl TestAs {
    pub async fn start(db: &TestDb) -> TestAs {
        Self::start_with(db, Options::default()).await
    }

    pub async fn start_with(db: &TestDb, opts: Options<'_>) -> TestAs {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = format!("http://{addr}{}", opts.issuer_path);
        let manifest = env!("CARGO_MANIFEST_DIR");
        let policies = opts.policies_dir.map_or_else(|| Path::new(manifest).join("policies"), Path::to_path_buf);
        let toml = format!(
            "issuer = \"{issuer}\"\nlisten = \"{addr}\"\ndatabase_url = \"{}\"\ndatabase_max_connections = 4\n\
             policies_dir = \"{}\"\npolicy_schema = \"{manifest}/schemas/tessera.cedarschema\"\n{}\n",
            db.url,
            policies.display(),
            opts.extra_toml
        );
        let name = format!("tessera-{}.toml", uuid::Uuid::new_v4().simple());
        let path = write_config(db.dir(), &name, &toml);
        let settings = Settings::load_with_env(Some(&path), std::iter::empty()).expect("test settings are valid");
        let clock: SharedClock = match &opts.fixed_clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let server = Server::build(settings, clock).await.expect("server starts");
        let state = server.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestAs {
            base: issuer,
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
            server: state,
            clock: opts.fixed_clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get_json(&self, path: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
        let res = self.http.get(self.url(path)).send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.json().await.expect("JSON body");
        (status, headers, body)
    }

    pub fn now(&self) -> i64 {
        match &self.clock {
            Some(c) => c.now(),
            None => SystemClock.now(),
        }
    }

    /// Graceful stop; waits until the server has closed its store.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server ran");
        }
    }
}

/// The path of the `tessera` binary Cargo built for these tests.
pub fn tessera_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}
