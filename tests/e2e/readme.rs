//! The README walk-through, run as written against the demo configuration (issue 7).
//!
//! The shell block between `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->` is taken from
//! README.md, its base URL pointed at the real `tessera` binary serving the shipped `tessera.toml` (only
//! the address, issuer and database come from the environment), and run with `bash -euo pipefail` from
//! the repository root. The block prints every answer as JSON; each one is checked here, so every command
//! a newcomer pastes is exercised on every test run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::both_stores;
use crate::support::process::{sigterm, spawn_serving_with};
use crate::support::{StoreKind, TestDb};

const BEGIN: &str = "<!-- walkthrough:begin -->";
const END: &str = "<!-- walkthrough:end -->";
/// The demo server's address, as the README writes it.
const DEMO_BASE: &str = "http://127.0.0.1:8080";
const DEMO_IDP: &str = "http://127.0.0.1:4000";
const ID_TOKEN_FORMAT: &str = "http://openid.net/specs/openid-connect-core-1_0.html#IDToken";

/// The body of the one ```sh block between the markers.
fn walkthrough(readme: &str) -> String {
    let (_, rest) = readme.split_once(BEGIN).unwrap_or_else(|| panic!("README.md has lost its `{BEGIN}` marker"));
    let (block, _) = rest.split_once(END).unwrap_or_else(|| panic!("README.md has no `{END}` after `{BEGIN}`"));
    let body = block
        .trim()
        .strip_prefix("```sh\n")
        .and_then(|b| b.strip_suffix("```"))
        .unwrap_or_else(|| panic!("the README walk-through must be exactly one ```sh block:\n{block}"));
    assert!(!body.contains("```"), "the README walk-through must be exactly one ```sh block:\n{block}");
    assert!(body.contains(DEMO_BASE), "the README walk-through no longer talks to {DEMO_BASE}:\n{body}");
    body.to_owned()
}

/// Runs `script` with `bash -euo pipefail` in `cwd`, for at most `limit`: (success, stdout, stderr).
async fn run_bash(cwd: &Path, script: &Path, limit: Duration) -> (bool, String, String) {
    let child = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail"])
        .arg(script)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bash");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("run bash");
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.success(), text(&out.stdout), text(&out.stderr))
        }
        Err(_) => (false, String::new(), format!("(killed: the walk-through ran longer than {limit:?})")),
    }
}

fn require_tools() {
    for tool in ["bash", "curl", "jq", "openssl"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap().status.success();
        assert!(found, "the README walk-through needs `{tool}` on PATH (.ci/run installs jq and openssl)");
    }
}

async fn the_readme_walk_through_runs_as_written(store: StoreKind) {
    require_tools();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let script = walkthrough(&readme);
    let db = TestDb::new(store).await;

    // The shipped configuration, on a free port and a fresh database: nothing is written under ./data/.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut server = spawn_serving_with(
        repo,
        &["--config", "tessera.toml"],
        &[("TESSERA_LISTEN", &listen), ("TESSERA_ISSUER", &base), ("TESSERA_DATABASE_URL", &db.url)],
    );

    let file = db.dir().join("walkthrough.sh");
    std::fs::write(&file, script.replace(DEMO_BASE, &base)).unwrap();
    let (ok, out, err) = run_bash(repo, &file, Duration::from_secs(60)).await;

    sigterm(&server.child);
    let exit = server.child.wait().unwrap();
    let log = server.stderr();
    db.drop_now().await;
    let context = format!("--- stdout\n{out}\n--- stderr\n{err}\n--- server log\n{log}");
    assert_eq!(server.addr, listen, "the server listens where the walk-through calls it");
    assert!(ok, "the README walk-through failed:\n{context}");
    assert!(exit.success(), "the server did not stop cleanly: {exit}\n{context}");

    // One JSON document per step, in order.
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("the walk-through printed something that is not JSON ({e}):\n{context}"));
    let [pat, resource, permission, need_info, id_token, rpt, introspection] = docs.as_slice() else {
        panic!("expected 7 JSON answers, got {}:\n{context}", docs.len());
    };

    // 1-3: the protection API.
    assert_eq!(pat["token_type"], "Bearer", "{pat}");
    assert_eq!(pat["scope"], "uma_protection", "{pat}");
    let rid = resource["_id"].as_str().unwrap_or_else(|| panic!("no _id: {resource}"));
    let first_ticket = permission["ticket"].as_str().unwrap_or_else(|| panic!("no ticket: {permission}"));

    // 4: need_info names npi and role from the demo IdP, as ID tokens, with a new ticket.
    assert_eq!(need_info["error"], "need_info", "{need_info}");
    let new_ticket = need_info["ticket"].as_str().unwrap_or_else(|| panic!("no new ticket: {need_info}"));
    assert_ne!(new_ticket, first_ticket, "need_info rotates the ticket");
    let required = need_info["required_claims"].as_array().unwrap_or_else(|| panic!("{need_info}"));
    for name in ["npi", "role"] {
        let claim = required
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("`{name}` is not among the required claims: {need_info}"));
        let listed = |key: &str, value: &str| claim[key].as_array().is_some_and(|a| a.iter().any(|v| v == value));
        assert!(listed("issuer", DEMO_IDP), "{claim}");
        assert!(listed("claim_token_format", ID_TOKEN_FORMAT), "{claim}");
    }

    // 5: the demo IdP's ID token.
    assert_eq!(id_token["iss"], DEMO_IDP, "{id_token}");
    assert_eq!(id_token["aud"], "uma-client", "{id_token}");
    assert_eq!(id_token["sub"], "dr-bob", "{id_token}");

    // 6: an RPT, with a refresh token (uma-client may refresh), no `scope`, no PCT.
    assert_eq!(rpt["token_type"], "Bearer", "{rpt}");
    assert!(rpt["access_token"].is_string() && rpt["expires_in"].is_u64(), "{rpt}");
    assert!(rpt["refresh_token"].is_string(), "{rpt}");
    assert!(rpt.get("scope").is_none() && rpt.get("pct").is_none() && rpt.get("upgraded").is_none(), "{rpt}");

    // 7: the resource server sees `read` on its resource, and nothing more.
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["client_id"], "uma-client", "{introspection}");
    assert_eq!(introspection["iss"], base.as_str(), "{introspection}");
    let permissions = introspection["permissions"].as_array().unwrap_or_else(|| panic!("{introspection}"));
    assert_eq!(permissions.len(), 1, "{introspection}");
    assert_eq!(permissions[0]["resource_id"], rid, "{introspection}");
    assert_eq!(permissions[0]["resource_scopes"], serde_json::json!(["read"]), "{introspection}");
}

both_stores!(the_readme_walk_through_runs_as_written);

#[test]
fn the_walk_through_is_one_marked_shell_block() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let script = walkthrough(&readme);
    for var in ["PAT=", "RID=", "TICKET=", "RPT="] {
        assert!(script.contains(var), "the walk-through no longer sets {var}");
    }
    assert!(script.contains("demo/mint-id-token.sh"), "the walk-through mints its ID token with the demo script");
}
