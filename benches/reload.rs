//! Loading and hot-reloading 1,000 policies: the benchmark's own policy set (bench/policies, 20
//! policies) plus the generated clinic files that bench/bench.py writes for scenario 10 (20 policies
//! a file, each scoped to a resource type, an owner or a resource). Target: a reload of 1,000
//! policies in 100 ms or less.
//!
//! - "load 1,000": parse, name, validate, derive and slice the whole set, as at start.
//! - "reload 20 -> 1,000": the generated files are moved into the folder of an engine serving the
//!   20 (one rename, as bench.py switches its server to 1,000 policies) and the engine reloads.
//! - "reload 1,000, one file changed": one generated file is rewritten (its on-call physician, as
//!   bench.py does every 2 s) and the engine reloads; the old set is let go.
//!
//! Run: `cargo bench --bench reload`.

// Benchmark set-up: a failure to prepare is how a benchmark reports, so the production lints on
// panicking do not apply.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tessera::policy::{PolicyEngine, Reloaded};

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema");
const BENCH_POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/policies");
const TOTAL: usize = 1_000;
const PER_FILE: usize = 20;

/// The policies of clinic `n` at revision `rev`: those `clinic_policies` in bench/bench.py writes, with
/// shorter comments.
fn clinic_policies(n: usize, rev: usize) -> Vec<String> {
    let c = format!("clinic-{n:02}");
    let idp = format!("https://idp.{c}.bench.test");
    let mut out = vec![format!(
        "// {c}'s on-call physician (revision {rev}).\n@id(\"{c}-on-call\")\npermit (\n  principal,\n  \
         action in [Tessera::Action::\"read\", Tessera::Action::\"view\"],\n  \
         resource in Tessera::ResourceType::\"https://bench.tessera.test/{c}/chart\"\n)\nwhen {{\n  \
         principal has npi && principal.npi == \"{}\" &&\n  principal has role && principal.role == \"physician\"\n}};\n",
        1_900_000_000 + n * 1000 + rev % 1000
    )];
    for i in 0..8 {
        let k = n * 8 + i;
        let pt = format!("patient-{k:04}");
        let team: Vec<String> = (0..3).map(|j| format!("\"{}\"", 1_000_000_000 + k * 10 + j)).collect();
        out.push(format!(
            "// {pt}'s care team.\n@id(\"{pt}-care-team\")\npermit (\n  principal,\n  \
             action in [Tessera::Action::\"read\", Tessera::Action::\"view\"],\n  \
             resource in Tessera::Owner::\"{pt}\"\n)\nwhen {{ principal has npi && [{}].contains(principal.npi) }};\n",
            team.join(", ")
        ));
        out.push(format!(
            "// A referral of {pt}.\n@id(\"{pt}-referral-lab\")\npermit (\n  principal,\n  \
             action == Tessera::Action::\"read\",\n  resource == Tessera::Resource::\"{c}-lab-{k:04}\"\n)\n\
             when {{\n  principal has iss && principal.iss == \"{idp}\" &&\n  \
             principal has npi && principal.npi == \"{}\" &&\n  principal has role && principal.role == \"physician\"\n}};\n",
            1_500_000_000 + k
        ));
    }
    out.push(format!(
        "// {c}'s staff view the schedules.\n@id(\"{c}-staff-schedules\")\npermit (\n  principal,\n  \
         action == Tessera::Action::\"view\",\n  resource in Tessera::ResourceType::\"https://bench.tessera.test/{c}/schedule\"\n)\n\
         when {{\n  principal has organization && principal.organization == \"{c}\" &&\n  \
         principal has groups && principal.groups.containsAny([\"staff\", \"contractors\"])\n}};\n"
    ));
    out.push(format!(
        "// {c}'s manuals.\n@id(\"{c}-staff-manuals\")\npermit (\n  principal,\n  \
         action in [Tessera::Action::\"read\", Tessera::Action::\"download\"],\n  \
         resource in Tessera::ResourceType::\"https://bench.tessera.test/{c}/manual\"\n)\n\
         when {{ principal has groups && principal.groups.contains(\"staff\") && principal has iss && principal.iss == \"{idp}\" }};\n"
    ));
    let pt = format!("patient-{:04}", n * 8);
    out.push(format!(
        "// {pt} blocks one person.\n@id(\"{pt}-blocks\")\nforbid (principal, action, resource in Tessera::Owner::\"{pt}\")\n\
         when {{ principal has email && principal.email == \"blocked-{:04}@bench.test\" }};\n",
        n * 8
    ));
    out
}

fn write_clinic(dir: &Path, n: usize, keep: usize, rev: usize) {
    let mut policies = clinic_policies(n, rev);
    policies.truncate(keep);
    let text = format!("// clinic {n:02}, revision {rev}.\n\n{}", policies.join("\n"));
    std::fs::write(dir.join("generated").join(format!("clinic-{n:02}.cedar")), text).expect("write clinic");
}

/// bench/policies plus generated clinics up to `TOTAL` policies; (folder, files per clinic).
fn folder() -> (tempfile::TempDir, Vec<usize>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut base = 0;
    for entry in std::fs::read_dir(BENCH_POLICIES).expect("bench/policies") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "cedar") {
            let text = std::fs::read_to_string(&path).expect("read");
            base += text.lines().filter(|l| l.starts_with("@id(")).count();
            std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("copy");
        }
    }
    std::fs::create_dir_all(dir.path().join("generated")).expect("mkdir");
    let mut sizes = Vec::new();
    let mut left = TOTAL - base;
    while left > 0 {
        let keep = left.min(PER_FILE);
        write_clinic(dir.path(), sizes.len(), keep, 0);
        sizes.push(keep);
        left -= keep;
    }
    (dir, sizes)
}

fn bench(c: &mut Criterion) {
    let (dir, sizes) = folder();
    let schema = Path::new(SCHEMA);
    let engine = PolicyEngine::load(dir.path(), schema).expect("policies load");
    assert_eq!(engine.summary().1, TOTAL, "policy count");

    let mut group = c.benchmark_group("policies");
    group.sample_size(20).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    group.bench_function("load 1,000", |b| {
        // The set is dropped outside the measure: a load has no old set to drop.
        b.iter_with_large_drop(|| black_box(PolicyEngine::load(dir.path(), schema).expect("load")));
    });

    let (inside, outside) = (dir.path().join("generated"), dir.path().join(".generated"));
    group.bench_function("reload 20 -> 1,000", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                std::fs::rename(&inside, &outside).expect("move out");
                assert!(matches!(engine.reload_now(), Ok(Reloaded::Swapped { policies: 20, .. })));
                std::fs::rename(&outside, &inside).expect("move in");
                let started = Instant::now();
                let r = engine.reload_now();
                spent += started.elapsed();
                assert!(matches!(r, Ok(Reloaded::Swapped { policies: TOTAL, .. })), "{r:?}");
            }
            spent
        });
    });

    let mut rev = 0;
    group.bench_function("reload 1,000, one file changed", |b| {
        b.iter(|| {
            rev += 1;
            let n = rev % sizes.len();
            write_clinic(dir.path(), n, sizes.get(n).copied().unwrap_or(PER_FILE), rev);
            let r = engine.reload_now().expect("reload");
            assert!(matches!(r, Reloaded::Swapped { policies: TOTAL, .. }), "{r:?}");
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
