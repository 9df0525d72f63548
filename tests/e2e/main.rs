//! Tessera's only integration-test binary: the real server over real HTTP on loopback, on SQLite and
//! (with `TESSERA_TEST_POSTGRES_URL`) PostgreSQL. One module per endpoint family or concern.

// Test code: a failed expectation is how a test reports, so the production lints on panicking do not apply.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

mod browser;
mod claims_gathering;
mod client_auth;
mod clients_cli;
mod console;
mod discovery;
mod errors;
mod health;
mod keys;
mod lifecycle;
mod policy_cli;
mod protection;
mod readme;
mod registration;
mod startup;
mod uma_grant;
mod verifiers;
