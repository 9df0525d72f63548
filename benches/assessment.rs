//! One assessment: one requesting party, one resource, three scopes, with the demo policies padded
//! to 10 and to 1,000 policies. "decision only": a physician with every claim, no required-claims
//! derivation (read granted, write forbidden, download: nothing applies). "with required claims":
//! the same physician without the NPI claim, with derivation, so that partial evaluation really runs
//! (read: need_claims [npi], write forbidden, download denied). Target (issue 5): median under 50 µs
//! at 1,000 policies.
//!
//! The padding policies are what a large deployment's files look like: each scoped to another
//! resource type, another owner or another resource (so the engine's slicing leaves them out), plus
//! a few unscoped ones that every request evaluates.
//!
//! Run: `cargo bench --bench assessment`.

// Benchmark set-up: a failure to prepare is how a benchmark reports, so the production lints on
// panicking do not apply.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::policy::{
    AssessmentRequest, ClaimSource, ClientInfo, DenyReason, PermissionRequest, PolicyEngine, RequestingParty,
    ResourceInfo,
};

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema");
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");

/// The demo set plus `total - 6` padding policies, in a temporary folder.
fn engine(total: usize) -> (tempfile::TempDir, PolicyEngine) {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_cedar(Path::new(DEMO), dir.path());
    let mut text = String::new();
    for i in 0..total.saturating_sub(6) {
        let p = match i % 4 {
            0 => format!(
                "@id(\"type-{i}\") permit (principal, action == Tessera::Action::\"read\", \
                 resource in Tessera::ResourceType::\"urn:example:type:{i}\") \
                 when {{ principal has role && principal.role == \"role-{i}\" }};\n"
            ),
            1 => format!(
                "@id(\"resource-{i}\") permit (principal, action in [Tessera::Action::\"read\", Tessera::Action::\"view\"], \
                 resource == Tessera::Resource::\"doc-{i}\") when {{ principal has email && principal.email == \"user{i}@example.com\" }};\n"
            ),
            2 => format!(
                "@id(\"owner-{i}\") permit (principal, action == Tessera::Action::\"view\", \
                 resource in Tessera::Owner::\"owner-{i}\") when {{ principal has sub && principal.sub == \"friend-{i}\" }};\n"
            ),
            _ if i % 200 == 3 => format!(
                "@id(\"global-{i}\") forbid (principal, action == Tessera::Action::\"delete\", resource) \
                 when {{ principal has name && principal.name == \"blocked-{i}\" }};\n"
            ),
            _ => format!(
                "@id(\"type-b-{i}\") forbid (principal, action == Tessera::Action::\"write\", \
                 resource in Tessera::ResourceType::\"urn:example:type:{i}\");\n"
            ),
        };
        text.push_str(&p);
    }
    std::fs::write(dir.path().join("padding.cedar"), text).expect("write padding");
    let engine = PolicyEngine::load(dir.path(), Path::new(SCHEMA)).expect("policies load");
    assert_eq!(engine.summary().1, total.max(6), "policy count");
    (dir, engine)
}

fn copy_cedar(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read demo") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_cedar(&path, &target);
        } else if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut party = RequestingParty {
        iss: Some("http://127.0.0.1:4000".into()),
        sub: Some("dr-bob".into()),
        source: ClaimSource::Pushed,
        verifier: Some("partner-idp-oidc".into()),
        ..Default::default()
    };
    party.claims.insert("npi".into(), "1234567893".into());
    party.claims.insert("role".into(), "physician".into());
    party.claims.insert("email".into(), "bob@hospital.example".into());
    let client = ClientInfo { id: "ehr-app".into(), name: Some("EHR".into()) };
    let permissions = [PermissionRequest {
        resource: ResourceInfo {
            id: "obs-1".into(),
            owner: "alice".into(),
            resource_type: Some("http://hl7.org/fhir/Observation".into()),
            name: Some("blood pressure".into()),
        },
        // granted, forbidden, nothing applies (the one that derivation works on)
        scopes: vec!["read".into(), "write".into(), "download".into()],
    }];

    let mut without_npi = party.clone();
    without_npi.claims.remove("npi");

    let mut group = c.benchmark_group("assessment");
    group.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    for total in [10, 1_000] {
        let (_dir, engine) = engine(total);
        for derive in [false, true] {
            let req = AssessmentRequest {
                party: if derive { &without_npi } else { &party },
                client: &client,
                permissions: &permissions,
                shares: &[],
                now: 1_767_609_000,
                derive_required_claims: derive,
            };
            let d = engine.assess(&req);
            let first = d.first().expect("one resource");
            if derive {
                assert!(first.granted_scopes().is_empty());
                assert!(matches!(first.denied().next(), Some(("read", DenyReason::NeedClaims { .. }))));
            } else {
                assert_eq!(first.granted_scopes(), ["read"]);
            }
            let name = format!("{total} policies, {}", if derive { "with required claims" } else { "decision only" });
            group.bench_function(name, |b| b.iter(|| black_box(engine.assess(black_box(&req)))));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
