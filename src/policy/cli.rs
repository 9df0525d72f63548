//! `tessera policy check` and `tessera policy test`: what policy authors run locally and in CI.
//!
//! A test file (TOML or JSON, by extension) holds cases; each case describes a request and the
//! expected decision for each scope, optionally the exact required claims and determining policies:
//!
//! ```toml
//! now = 1767609000                      # optional default request time (epoch seconds, UTC)
//!
//! [[cases]]
//! name = "a physician reads an observation"
//! party = { iss = "http://127.0.0.1:4000", sub = "dr-bob", source = "pushed",
//!           verifier = "partner-idp-oidc", claims = { npi = "1234567893", role = "physician" } }
//! client = { id = "ehr-app" }           # optional
//! resource = { id = "obs-1", owner = "alice", type = "http://hl7.org/fhir/Observation" }
//! expect.read = "granted"
//! expect.write = { decision = "denied", policies = ["heart/fhir.cedar#fhir-no-write"] }
//! expect.download = { decision = "need_claims", required_claims = ["npi", "role"] }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    AssessmentRequest, ClientInfo, DenyReason, LoadError, Outcome, PartyMatcher, PermissionRequest, PolicyEngine,
    RequestingParty, ResourceInfo, ScopeDecision, Share,
};
use crate::clock::UnixTime;

/// Monday 2026-01-05 10:30:00 UTC: the request time of a case that gives none.
pub const DEFAULT_NOW: UnixTime = 1_767_609_000;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Load(#[from] LoadError),
    #[error("the policies folder `{0}` does not exist")]
    NoFolder(String),
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("{failed} of {total} policy test cases failed")]
    Failed { failed: usize, total: usize },
}

/// Parses and validates every policy; a summary on success, every located error otherwise.
pub fn check(dir: &Path, schema: &Path) -> Result<String, CliError> {
    if !dir.is_dir() {
        return Err(CliError::NoFolder(dir.display().to_string()));
    }
    let engine = PolicyEngine::load(dir, schema)?;
    let (files, policies) = engine.summary();
    let mut out = String::new();
    for w in engine.warnings() {
        out.push_str(&w);
        out.push('\n');
    }
    out.push_str(&format!(
        "{policies} policies in {files} files under `{}` are valid against `{}`",
        dir.display(),
        schema.display()
    ));
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    now: Option<UnixTime>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    now: Option<UnixTime>,
    #[serde(default)]
    party: RequestingParty,
    #[serde(default)]
    client: Option<ClientInfo>,
    resource: ResourceInfo,
    #[serde(default)]
    shares: Vec<CaseShare>,
    expect: BTreeMap<String, Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseShare {
    #[serde(default)]
    id: Option<String>,
    scopes: Vec<String>,
    matcher: PartyMatcher,
    #[serde(default)]
    expires_at: Option<UnixTime>,
    #[serde(default)]
    revoked: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expect {
    Decision(Expected),
    Detailed {
        decision: Expected,
        #[serde(default)]
        required_claims: Option<Vec<String>>,
        #[serde(default)]
        policies: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Expected {
    Granted,
    Denied,
    NeedClaims,
    NeedsApproval,
}

impl Expected {
    fn of(d: &ScopeDecision) -> Expected {
        match &d.outcome {
            Outcome::Granted => Expected::Granted,
            Outcome::Denied(DenyReason::Denied) => Expected::Denied,
            Outcome::Denied(DenyReason::NeedClaims { .. }) => Expected::NeedClaims,
            Outcome::Denied(DenyReason::NeedsApproval) => Expected::NeedsApproval,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Expected::Granted => "granted",
            Expected::Denied => "denied",
            Expected::NeedClaims => "need_claims",
            Expected::NeedsApproval => "needs_approval",
        }
    }
}

/// Test files named on the command line; a folder stands for its `*.toml` and `*.json` files.
fn expand(files: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for f in files {
        if f.is_dir() {
            let entries = std::fs::read_dir(f)
                .map_err(|e| CliError::File { file: f.display().to_string(), reason: e.to_string() })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("toml" | "json")))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(f.clone());
        }
    }
    if out.is_empty() {
        return Err(CliError::File { file: "(arguments)".into(), reason: "no test files".into() });
    }
    Ok(out)
}

fn parse(path: &Path) -> Result<TestFile, CliError> {
    let file = path.display().to_string();
    let err = |reason: String| CliError::File { file: file.clone(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| err(e.to_string())),
        Some("toml") => toml::from_str(&text).map_err(|e| err(e.to_string())),
        _ => Err(err("a test file ends in .toml or .json".into())),
    }
}

/// What `tessera policy test` found: one line per case, failures explained.
#[derive(Debug)]
pub struct TestReport {
    pub text: String,
    pub total: usize,
    pub failed: usize,
}

impl TestReport {
    /// `Err` when any case failed, for the exit code.
    pub fn outcome(&self) -> Result<(), CliError> {
        if self.failed == 0 { Ok(()) } else { Err(CliError::Failed { failed: self.failed, total: self.total }) }
    }
}

/// Runs every case of every file against the policies.
pub fn test(dir: &Path, schema: &Path, files: &[PathBuf]) -> Result<TestReport, CliError> {
    if !dir.is_dir() {
        return Err(CliError::NoFolder(dir.display().to_string()));
    }
    let engine = PolicyEngine::load(dir, schema)?;
    let mut report = String::new();
    let (mut total, mut failed) = (0, 0);
    for path in expand(files)? {
        let parsed = parse(&path)?;
        for case in &parsed.cases {
            total += 1;
            let problems = run_case(&engine, case, parsed.now);
            if problems.is_empty() {
                report.push_str(&format!("ok    {}: {}\n", path.display(), case.name));
            } else {
                failed += 1;
                report.push_str(&format!("FAIL  {}: {}\n", path.display(), case.name));
                for p in problems {
                    report.push_str(&format!("        {p}\n"));
                }
            }
        }
    }
    if failed == 0 {
        report.push_str(&format!("all {total} policy test cases passed"));
    } else {
        report.push_str(&format!("{failed} of {total} policy test cases failed"));
    }
    Ok(TestReport { text: report, total, failed })
}

fn run_case(engine: &PolicyEngine, case: &Case, default_now: Option<UnixTime>) -> Vec<String> {
    let now = case.now.or(default_now).unwrap_or(DEFAULT_NOW);
    let client = case.client.clone().unwrap_or_else(|| ClientInfo { id: "test-client".into(), name: None });
    let shares: Vec<Share> = case
        .shares
        .iter()
        .enumerate()
        .map(|(i, s)| Share {
            id: s.id.clone().unwrap_or_else(|| format!("share-{}", i + 1)),
            owner: case.resource.owner.clone(),
            resource_id: case.resource.id.clone(),
            scopes: s.scopes.clone(),
            matcher: s.matcher.clone(),
            expires_at: s.expires_at,
            created_at: 0,
            revoked_at: s.revoked.then_some(0),
        })
        .collect();
    let scopes: Vec<String> = case.expect.keys().cloned().collect();
    let permissions = [PermissionRequest { resource: case.resource.clone(), scopes }];
    let req = AssessmentRequest {
        party: &case.party,
        client: &client,
        permissions: &permissions,
        shares: &shares,
        now,
        derive_required_claims: true,
    };
    let decisions = engine.assess(&req);
    let mut problems = Vec::new();
    let Some(decision) = decisions.first() else {
        return vec!["no decision".into()];
    };
    for d in &decision.scopes {
        let Some(expect) = case.expect.get(&d.scope) else { continue };
        let got = Expected::of(d);
        let (want, claims, policies) = match expect {
            Expect::Decision(w) => (*w, None, None),
            Expect::Detailed { decision, required_claims, policies } => {
                (*decision, required_claims.as_ref(), policies.as_ref())
            }
        };
        let got_policies: Vec<String> = d.policies.iter().map(ToString::to_string).collect();
        if got != want {
            problems.push(format!(
                "scope `{}`: expected {}, got {} (policies: [{}])",
                d.scope,
                want.as_str(),
                got.as_str(),
                got_policies.join(", ")
            ));
            continue;
        }
        if let Some(want_claims) = claims {
            let mut got_claims: Vec<String> = match &d.outcome {
                Outcome::Denied(DenyReason::NeedClaims { claims }) => claims.iter().map(|c| c.name.clone()).collect(),
                _ => Vec::new(),
            };
            got_claims.dedup();
            let mut want_claims = want_claims.clone();
            want_claims.sort();
            if got_claims != want_claims {
                problems.push(format!(
                    "scope `{}`: expected required claims [{}], got [{}]",
                    d.scope,
                    want_claims.join(", "),
                    got_claims.join(", ")
                ));
            }
        }
        if let Some(want_policies) = policies {
            let mut want_policies = want_policies.clone();
            want_policies.sort();
            if got_policies != want_policies {
                problems.push(format!(
                    "scope `{}`: expected policies [{}], got [{}]",
                    d.scope,
                    want_policies.join(", "),
                    got_policies.join(", ")
                ));
            }
        }
    }
    problems
}
