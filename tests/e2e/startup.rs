//! The `tessera` binary as an operator runs it: start-up failures are loud and named, the default
//! command serves on a new SQLite file, signals stop it cleanly.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::process::{run, sigterm, spawn_serving, tessera};
use crate::support::write_config;

#[test]
fn a_malformed_config_file_stops_the_start_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "bad.toml", "issuer = \"http://127.0.0.1:8080\"\nlisten = \n");
    let (code, _, err) = run(tessera(dir.path()).args(["--config", cfg.to_str().unwrap(), "serve"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("configuration error"), "{err}");
    assert!(err.contains("line 2"), "the message locates the error: {err}");
    assert!(!dir.path().join("data").exists(), "nothing is created before the config is valid");
}

#[test]
fn an_invalid_setting_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 4] = [
        ("listen = \"localhost\"\n", "`listen`"),
        ("issuer = \"http://as.example.com\"\n", "`issuer`"),
        ("[tokens]\nrpt_lifetime_secs = -5\n", "`tokens.rpt_lifetime_secs`"),
        ("[signing]\nalgorithm = \"none\"\n", "none"),
    ];
    for (toml, named) in cases {
        let cfg = write_config(dir.path(), "t.toml", toml);
        let (code, _, err) = run(tessera(dir.path()).args(["--config", cfg.to_str().unwrap()]));
        assert_eq!(code, 2, "{toml}: {err}");
        assert!(err.contains(named), "{toml}: expected {named} in: {err}");
    }
}

#[test]
fn an_unknown_setting_from_the_environment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(tessera(dir.path()).arg("serve").env("TESSERA_DATABSE_URL", "sqlite://x.db"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("databse_url"), "{err}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(tessera(dir.path()).args(["--config", "nope.toml"]));
    assert_eq!(code, 2);
    assert!(err.contains("nope.toml") && err.contains("does not exist"), "{err}");
}

#[test]
fn an_unreachable_database_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let started = Instant::now();
    let (code, _, err) = run(tessera(dir.path())
        .arg("serve")
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_DATABASE_URL", "postgres://tessera:s3cret@127.0.0.1:1/tessera")
        .env("TESSERA_DATABASE_CONNECT_TIMEOUT_SECS", "2"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot use database"), "{err}");
    assert!(!err.contains("s3cret"), "the password is not printed: {err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn config_check_validates_the_shipped_example() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = run(tessera(repo).args(["--config", "tessera.toml", "config", "check"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration is valid"));
}

#[test]
fn migrate_prepares_a_new_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (code, out, err) = run(tessera(dir.path()).arg("migrate").env("TESSERA_DATABASE_URL", "sqlite://db/t.db"));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("migrations applied"), "{out}");
    }
    assert!(dir.path().join("db/t.db").is_file());
}

/// The README's first command, minus the fixed port: no arguments, no config file, serves discovery
/// and JWKS from a SQLite file it creates under `./data/`, and stops cleanly on SIGTERM.
#[tokio::test]
async fn the_default_command_serves_on_a_new_sqlite_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = spawn_serving(dir.path(), &[]);
    assert!(dir.path().join("data/tessera.db").is_file(), "database file created under ./data/");

    let http = reqwest::Client::new();
    let base = format!("http://{}", running.addr);
    let doc: Value =
        http.get(format!("{base}/.well-known/uma2-configuration")).send().await.unwrap().json().await.unwrap();
    // The default issuer is the documented one, not the ephemeral port the test listens on.
    assert_eq!(doc["issuer"], "http://127.0.0.1:8080");
    let jwks: Value = http.get(format!("{base}/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    sigterm(&running.child);
    let status = running.child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let messages: Vec<String> =
        running.lines.try_iter().filter_map(|l| l["fields"]["message"].as_str().map(str::to_owned)).collect();
    assert!(messages.iter().any(|m| m.starts_with("shutting down")), "{messages:?}");
    assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
}
