//! `tessera policy check` and `tessera policy test`, as a policy author or CI runs them: the demo
//! policies pass, each deliberately broken fixture fails with its file and line.

use std::path::{Path, PathBuf};

use crate::support::process::{run, tessera};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema() -> PathBuf {
    repo().join("schemas/tessera.cedarschema")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/policy_fixtures").join(name)
}

/// `tessera policy <args>` over a policies folder, from a clean temporary working directory.
fn policy(policies: &Path, args: &[&str]) -> (i32, String, String) {
    let cwd = tempfile::tempdir().unwrap();
    run(tessera(cwd.path())
        .arg("policy")
        .args(args)
        .env("TESSERA_POLICIES_DIR", policies)
        .env("TESSERA_POLICY_SCHEMA", schema()))
}

#[test]
fn check_accepts_the_demo_policies() {
    let (code, out, err) = policy(&repo().join("policies"), &["check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("6 policies in 4 files"), "{out}");
}

#[test]
fn check_accepts_the_demo_policies_from_the_shipped_configuration() {
    let (code, out, err) = run(tessera(repo()).args(["--config", "tessera.toml", "policy", "check"]));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_demo_policy_tests_pass() {
    let tests = repo().join("policies/tests");
    let (code, out, err) = policy(&repo().join("policies"), &["test", tests.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all 15 policy test cases passed"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn check_refuses_a_syntax_error_with_its_location() {
    let (code, out, err) = policy(&fixture("syntax_error/policies"), &["check"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("broken.cedar:3:"), "{err}");
}

#[test]
fn check_refuses_an_attribute_the_schema_does_not_declare() {
    let (code, out, err) = policy(&fixture("unknown_attribute/policies"), &["check"]);
    assert_ne!(code, 0, "{out}");
    // `principal has shoe_size` can never hold, so the policy could never apply: refused, located.
    assert!(err.contains("heart/shoes.cedar:2:1:"), "{err}");
    assert!(err.contains("impossible"), "{err}");
}

#[test]
fn check_refuses_a_policy_without_an_id() {
    let (code, out, err) = policy(&fixture("missing_id/policies"), &["check"]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("anonymous.cedar:4:1: policy has no `@id"), "{err}");
}

#[test]
fn check_refuses_a_missing_folder() {
    let (code, _, err) = policy(&fixture("no_such_folder"), &["check"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn test_fails_on_wrong_expectations_and_says_which() {
    let cases = fixture("failing_cases/cases.toml");
    let (code, out, err) = policy(&fixture("failing_cases/policies"), &["test", cases.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("FAIL"), "{out}");
    assert!(out.contains("scope `read`: expected denied, got granted"), "{out}");
    assert!(out.contains("scope `write`: expected granted, got denied"), "{out}");
    assert!(err.contains("1 of 1 policy test cases failed"), "{err}");
}

#[test]
fn test_refuses_broken_policies_before_running_cases() {
    let cases = fixture("failing_cases/cases.toml");
    let (code, _, err) = policy(&fixture("syntax_error/policies"), &["test", cases.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("broken.cedar:3:"), "{err}");
}

#[test]
fn the_server_refuses_to_start_on_broken_policies_before_touching_the_database() {
    let cwd = tempfile::tempdir().unwrap();
    let (code, _, err) = run(tessera(cwd.path())
        .arg("serve")
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_POLICIES_DIR", fixture("missing_id/policies"))
        .env("TESSERA_POLICY_SCHEMA", schema()));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot load the policies"), "{err}");
    assert!(err.contains("anonymous.cedar:4:1:"), "{err}");
    assert!(!cwd.path().join("data").exists(), "no database was created");
}
