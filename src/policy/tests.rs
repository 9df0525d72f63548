//! The evaluator against the demo policies and small purpose-made sets: grant, deny, forbid over
//! permit, failing closed, required claims, owner approval, shares, hot reload.

use std::path::{Path, PathBuf};

use super::*;

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema");
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
/// Monday 2026-01-05 10:30 UTC.
const MONDAY_MORNING: i64 = 1_767_609_000;
const HOSPITAL: &str = "http://127.0.0.1:4000";
const OBSERVATION: &str = "http://hl7.org/fhir/Observation";
const SENSITIVE: &str = "https://fhir.hospital.example/category/behavioral-health";

fn demo() -> PolicyEngine {
    PolicyEngine::load(Path::new(DEMO), Path::new(SCHEMA)).expect("the demo policies load")
}

/// A policies folder in a temp dir with these files, and the engine over it.
fn engine_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PolicyEngine) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let engine = PolicyEngine::load(dir.path(), Path::new(SCHEMA)).expect("policies load");
    (dir, engine)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn physician() -> RequestingParty {
    let mut p = RequestingParty {
        iss: Some(HOSPITAL.into()),
        sub: Some("dr-bob".into()),
        source: ClaimSource::Pushed,
        verifier: Some("partner-idp-oidc".into()),
        ..Default::default()
    };
    p.claims.insert("npi".into(), "1234567893".into());
    p.claims.insert("role".into(), "physician".into());
    p
}

fn resource(id: &str, owner: &str, ty: &str) -> ResourceInfo {
    ResourceInfo { id: id.into(), owner: owner.into(), resource_type: Some(ty.into()), name: None }
}

fn client() -> ClientInfo {
    ClientInfo { id: "ehr-app".into(), name: Some("EHR".into()) }
}

fn assess_full(
    engine: &PolicyEngine,
    party: &RequestingParty,
    r: ResourceInfo,
    scopes: &[&str],
    shares: &[Share],
    now: i64,
) -> ResourceDecision {
    let permissions = [PermissionRequest { resource: r, scopes: scopes.iter().map(|s| (*s).to_owned()).collect() }];
    let c = client();
    let req =
        AssessmentRequest { party, client: &c, permissions: &permissions, shares, now, derive_required_claims: true };
    engine.assess(&req).remove(0)
}

fn assess(engine: &PolicyEngine, party: &RequestingParty, r: ResourceInfo, scopes: &[&str]) -> ResourceDecision {
    assess_full(engine, party, r, scopes, &[], MONDAY_MORNING)
}

fn ids(d: &ScopeDecision) -> Vec<&str> {
    d.policies.iter().map(PolicyId::as_str).collect()
}

fn need(name: &str, issuer: Option<&str>) -> NeededClaim {
    NeededClaim { name: name.into(), issuer: issuer.map(str::to_owned) }
}

#[test]
fn the_demo_set_loads_with_stable_ids() {
    let e = demo();
    let (files, policies) = e.summary();
    assert_eq!((files, policies), (4, 6));
    assert!(e.knows_scope("read") && e.knows_scope("view"));
    assert!(!e.knows_scope("fly"));
}

#[test]
fn a_physician_reads_an_observation_and_cannot_write_it() {
    let d = assess(&demo(), &physician(), resource("obs-1", "alice", OBSERVATION), &["read", "write"]);
    assert_eq!(d.granted_scopes(), ["read"]);
    let [read, write] = &d.scopes[..] else { panic!("two scopes") };
    assert_eq!(ids(read), ["heart/fhir.cedar#physicians-read"]);
    assert_eq!(write.outcome, Outcome::Denied(DenyReason::Denied));
    assert_eq!(ids(write), ["heart/fhir.cedar#fhir-no-write"], "the forbid is named");
}

#[test]
fn a_nurse_is_denied_and_not_asked_for_claims_she_already_presented() {
    let mut nurse = physician();
    nurse.claims.insert("role".into(), "nurse".into());
    let d = assess(&demo(), &nurse, resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    assert!(d.scopes[0].policies.is_empty());
}

#[test]
fn missing_claims_are_named_exactly_with_their_issuer() {
    let d = assess(&demo(), &RequestingParty::anonymous(), resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(
        d.scopes[0].outcome,
        Outcome::Denied(DenyReason::NeedClaims {
            claims: vec![need("npi", Some(HOSPITAL)), need("role", Some(HOSPITAL))]
        })
    );
    assert_eq!(ids(&d.scopes[0]), ["heart/fhir.cedar#physicians-read"]);

    // Only what is still missing is asked for.
    let mut partial = physician();
    partial.claims.remove("npi");
    let d = assess(&demo(), &partial, resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(
        d.scopes[0].outcome,
        Outcome::Denied(DenyReason::NeedClaims { claims: vec![need("npi", Some(HOSPITAL))] })
    );

    // The UMA form, with no verifier registered yet: name and issuer.
    let DenyReason::NeedClaims { claims } = d.denied().next().expect("denied").1.clone() else { panic!() };
    let rc = required_claims(&claims, &NoClaimSources);
    assert_eq!(serde_json::to_value(&rc).expect("json"), serde_json::json!([{ "name": "npi", "issuer": [HOSPITAL] }]));
}

#[test]
fn without_derivation_a_denial_is_plain() {
    let permissions =
        [PermissionRequest { resource: resource("obs-1", "alice", OBSERVATION), scopes: vec!["read".into()] }];
    let c = client();
    let party = RequestingParty::anonymous();
    let req = AssessmentRequest {
        party: &party,
        client: &c,
        permissions: &permissions,
        shares: &[],
        now: MONDAY_MORNING,
        derive_required_claims: false,
    };
    let d = demo().assess(&req).remove(0);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
}

#[test]
fn a_sensitive_record_needs_the_owners_approval() {
    let d = assess(&demo(), &physician(), resource("bh-1", "alice", SENSITIVE), &["read", "write"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::NeedsApproval));
    assert_eq!(ids(&d.scopes[0]), ["heart/sensitive.cedar#sensitive-needs-owner-approval"]);
    assert_eq!(d.scopes[1].outcome, Outcome::Denied(DenyReason::Denied));
    // Anonymous: first the claims the approval permit needs.
    let d = assess(&demo(), &RequestingParty::anonymous(), resource("bh-1", "alice", SENSITIVE), &["read"]);
    assert!(matches!(&d.scopes[0].outcome, Outcome::Denied(DenyReason::NeedClaims { claims }) if claims.len() == 2));
}

#[test]
fn partner_employees_view_contracts_in_business_hours_only() {
    let mut p = RequestingParty {
        iss: Some("https://partner-idp.test".into()),
        sub: Some("carol".into()),
        source: ClaimSource::Pushed,
        verifier: Some("partner-idp-saml".into()),
        ..Default::default()
    };
    p.claims.insert("groups".into(), serde_json::json!(["employees", "sales"]));
    let contract = || resource("c-1", "acme", "https://schemas.example.com/contract");
    let e = demo();
    assert_eq!(assess_full(&e, &p, contract(), &["view"], &[], MONDAY_MORNING).granted_scopes(), ["view"]);
    // Monday 19:30 UTC, and Saturday 10:30 UTC: plainly denied, no claims would help.
    for t in [MONDAY_MORNING + 9 * 3600, MONDAY_MORNING + 5 * 86_400] {
        let d = assess_full(&e, &p, contract(), &["view"], &[], t);
        assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied), "at {t}");
    }
}

#[test]
fn claims_from_an_untrusted_verifier_are_refused_whatever_else_allows() {
    let mut p = physician();
    p.verifier = Some("someone-else".into());
    let d = assess(&demo(), &p, resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    assert_eq!(ids(&d.scopes[0]), ["trust.cedar#untrusted-verifier"]);
}

#[test]
fn forbid_overrides_permit_across_files_and_slices() {
    let (_dir, e) = engine_with(&[
        (
            "a/open.cedar",
            r#"@id("everyone-reads") permit (principal, action == Tessera::Action::"read", resource in Tessera::ResourceType::"t");"#,
        ),
        (
            "b/interns.cedar",
            r#"@id("no-interns") forbid (principal, action, resource) when { principal has role && principal.role == "intern" };"#,
        ),
    ]);
    let mut intern = physician();
    intern.claims.insert("role".into(), "intern".into());
    let d = assess(&e, &intern, resource("r", "o", "t"), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    assert_eq!(ids(&d.scopes[0]), ["b/interns.cedar#no-interns"]);
    assert_eq!(assess(&e, &physician(), resource("r", "o", "t"), &["read"]).granted_scopes(), ["read"]);
    // The type-scoped permit does not reach other types.
    assert!(assess(&e, &physician(), resource("r", "o", "u"), &["read"]).granted_scopes().is_empty());
}

#[test]
fn a_forbid_that_errors_still_denies() {
    // Strict validation rules out a forbid that reads a missing claim, so the validated way to make
    // a forbid fail at run time is arithmetic overflow on a claim-free context value.
    let (_dir, e) = engine_with(&[(
        "p.cedar",
        r#"@id("all") permit (principal, action, resource);
           @id("overflow") forbid (principal, action, resource) when { context.now * 9223372036854775807 > 0 };"#,
    )]);
    let d = assess(&e, &physician(), resource("r", "o", "t"), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied), "Cedar alone would have allowed");
    assert_eq!(ids(&d.scopes[0]), ["p.cedar#overflow"]);
}

#[test]
fn a_forbid_that_errors_on_a_missing_claim_still_denies() {
    // The same without validation (as a policy written before a schema change could be): the
    // forbid reads `role` without `has`, and the party has no role.
    let dir = tempfile::tempdir().expect("dir");
    write(
        dir.path(),
        "p.cedar",
        r#"@id("all") permit (principal, action, resource);
           @id("no-interns") forbid (principal, action, resource) when { principal.role == "intern" };"#,
    );
    let snap = load::Snapshot::read(dir.path(), Path::new(SCHEMA)).expect("read");
    let loaded = LoadedPolicies::build_unvalidated(&snap, dir.path(), Path::new(SCHEMA)).expect("parsed");
    let e = PolicyEngine::from_loaded(dir.path(), Path::new(SCHEMA), loaded);
    let mut party = physician();
    party.claims.remove("role");
    let d = assess(&e, &party, resource("r", "o", "t"), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    assert_eq!(ids(&d.scopes[0]), ["p.cedar#no-interns"]);
}

#[test]
fn undeclared_scopes_and_mistyped_claims_are_denied() {
    let d = assess(&demo(), &physician(), resource("obs-1", "alice", OBSERVATION), &["fly"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    let mut p = physician();
    p.claims.insert("npi".into(), serde_json::json!(1234567893));
    let d = assess(&demo(), &p, resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
}

fn share(id: &str, owner: &str, resource_id: &str, scopes: &[&str], matcher: serde_json::Value) -> Share {
    Share {
        id: id.into(),
        owner: owner.into(),
        resource_id: resource_id.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        matcher: serde_json::from_value(matcher).expect("matcher"),
        expires_at: None,
        created_at: 0,
        revoked_at: None,
    }
}

#[test]
fn shares_grant_until_revoked_or_expired_and_forbids_still_win() {
    let e = demo();
    let photo = || resource("photo-1", "alice", "https://example.com/photo");
    let bob = {
        let mut p = physician();
        p.claims.insert("email".into(), "bob@hospital.example".into());
        p
    };
    let s = share(
        "s1",
        "alice",
        "photo-1",
        &["view"],
        serde_json::json!({"iss": HOSPITAL, "email": "bob@hospital.example"}),
    );
    let d = assess_full(&e, &bob, photo(), &["view", "download"], std::slice::from_ref(&s), MONDAY_MORNING);
    assert_eq!(d.granted_scopes(), ["view"]);
    assert_eq!(ids(&d.scopes[0]), ["share:s1:view"]);

    let revoked = Share { revoked_at: Some(1), ..s.clone() };
    assert!(assess_full(&e, &bob, photo(), &["view"], &[revoked], MONDAY_MORNING).granted_scopes().is_empty());
    let expired = Share { expires_at: Some(MONDAY_MORNING), ..s.clone() };
    assert!(assess_full(&e, &bob, photo(), &["view"], &[expired], MONDAY_MORNING).granted_scopes().is_empty());
    let later = Share { expires_at: Some(MONDAY_MORNING + 1), ..s.clone() };
    assert_eq!(assess_full(&e, &bob, photo(), &["view"], &[later], MONDAY_MORNING).granted_scopes(), ["view"]);

    // Not the owner's resource (any more): the share does not apply.
    let other = resource("photo-1", "mallory", "https://example.com/photo");
    assert!(
        assess_full(&e, &bob, other, &["view"], std::slice::from_ref(&s), MONDAY_MORNING).granted_scopes().is_empty()
    );

    // Another party, or the right party through an untrusted verifier.
    let mut eve = bob.clone();
    eve.claims.insert("email".into(), "eve@hospital.example".into());
    assert!(
        assess_full(&e, &eve, photo(), &["view"], std::slice::from_ref(&s), MONDAY_MORNING).granted_scopes().is_empty()
    );
    let mut untrusted = bob.clone();
    untrusted.verifier = Some("elsewhere".into());
    let d = assess_full(&e, &untrusted, photo(), &["view"], std::slice::from_ref(&s), MONDAY_MORNING);
    assert_eq!(ids(&d.scopes[0]), ["trust.cedar#untrusted-verifier"]);

    // A share cannot open what a forbid closes.
    let w = share(
        "s2",
        "alice",
        "obs-1",
        &["write"],
        serde_json::json!({"iss": HOSPITAL, "email": "bob@hospital.example"}),
    );
    let d = assess_full(&e, &bob, resource("obs-1", "alice", OBSERVATION), &["write"], &[w], MONDAY_MORNING);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));
    assert_eq!(ids(&d.scopes[0]), ["heart/fhir.cedar#fhir-no-write"]);

    // A party that has not presented the matched claim yet is asked for it.
    let d =
        assess_full(&e, &RequestingParty::anonymous(), photo(), &["view"], std::slice::from_ref(&s), MONDAY_MORNING);
    assert_eq!(
        d.scopes[0].outcome,
        Outcome::Denied(DenyReason::NeedClaims { claims: vec![need("email", Some(HOSPITAL))] })
    );
    assert_eq!(ids(&d.scopes[0]), ["share:s1:view"]);
}

async fn store_at(dir: &Path, url: &str) -> crate::store::Store {
    let cfg = write(dir, "t.toml", &format!("database_url = \"{url}\"\n"));
    let settings = crate::config::Settings::load_with_env(Some(&cfg), std::iter::empty()).expect("settings");
    crate::open_store(&settings, true).await.expect("store")
}

#[tokio::test]
async fn shares_are_created_listed_revoked_and_expire_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_at(dir.path(), &format!("sqlite://{}", dir.path().join("t.db").display())).await;
    share_lifecycle(&store).await;
    store.close().await;
}

/// The same on PostgreSQL, in a schema of its own, when `TESSERA_TEST_POSTGRES_URL` is set.
#[tokio::test]
async fn shares_are_created_listed_revoked_and_expire_on_postgres() {
    use sqlx::Connection;
    let base = match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("skipped on PostgreSQL: TESSERA_TEST_POSTGRES_URL is not set (SQLite ran)");
            return;
        }
    };
    let admin = |sql: String| {
        let base = base.clone();
        async move {
            let mut conn =
                sqlx::PgConnection::connect(&base).await.expect("TESSERA_TEST_POSTGRES_URL is set but unreachable");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("admin statement");
        }
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin(format!("CREATE SCHEMA {schema}")).await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let dir = tempfile::tempdir().expect("dir");
    let store = store_at(dir.path(), &format!("{base}{sep}options=-c%20search_path%3D{schema}")).await;
    share_lifecycle(&store).await;
    store.close().await;
    admin(format!("DROP SCHEMA {schema} CASCADE")).await;
}

async fn share_lifecycle(store: &crate::store::Store) {
    let e = demo();
    let now = MONDAY_MORNING;
    let new = |scopes: &[&str], expires_at| NewShare {
        resource_id: "photo-1".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        matcher: serde_json::from_value(serde_json::json!({"iss": HOSPITAL, "email": "bob@hospital.example"}))
            .expect("matcher"),
        expires_at,
    };
    let s1 =
        sharing::create_share(store, &e, "alice", new(&["view", "download", "view"], None), now).await.expect("s1");
    assert_eq!(s1.scopes, ["download", "view"]);
    let s2 = sharing::create_share(store, &e, "alice", new(&["view"], Some(now + 60)), now).await.expect("s2");
    assert!(matches!(
        sharing::create_share(store, &e, "alice", new(&["fly"], None), now).await,
        Err(ShareError::Invalid(_))
    ));
    let no_iss = NewShare { matcher: PartyMatcher([("email".to_owned(), "x".into())].into()), ..new(&["view"], None) };
    assert!(matches!(sharing::create_share(store, &e, "alice", no_iss, now).await, Err(ShareError::Invalid(_))));

    assert_eq!(sharing::list_shares(store, "alice").await.expect("list").len(), 2);
    assert!(sharing::list_shares(store, "bob").await.expect("list").is_empty());
    let active = sharing::active_shares(store, &["photo-1"], now).await.expect("active");
    assert_eq!(active.len(), 2);

    // Only the owner revokes, once; revocation applies at once.
    assert!(!sharing::revoke_share(store, "mallory", &s1.id, now).await.expect("revoke"));
    assert!(sharing::revoke_share(store, "alice", &s1.id, now).await.expect("revoke"));
    assert!(!sharing::revoke_share(store, "alice", &s1.id, now).await.expect("revoke"));
    let active = sharing::active_shares(store, &["photo-1", "other"], now).await.expect("active");
    assert_eq!(active.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [s2.id.as_str()]);
    // After its expiry the second is gone too.
    assert!(sharing::active_shares(store, &["photo-1"], now + 60).await.expect("active").is_empty());
    let listed = sharing::list_shares(store, "alice").await.expect("list");
    assert!(listed.iter().all(|s| !s.is_active(now + 60)));
}

#[test]
fn a_broken_edit_is_refused_and_the_old_set_keeps_deciding() {
    let good = r#"@id("all-read") permit (principal, action == Tessera::Action::"read", resource);"#;
    let (dir, e) = engine_with(&[("p.cedar", good)]);
    let granted = |e: &PolicyEngine| assess(e, &physician(), resource("r", "o", "t"), &["read"]).granted_scopes().len();
    assert_eq!(granted(&e), 1);

    write(
        dir.path(),
        "sub/broken.cedar",
        "@id(\"x\")\npermit (principal, action, resource)\nwhen { principal.nope };\n",
    );
    let err = e.reload_now().expect_err("refused").to_string();
    assert!(err.contains("sub/broken.cedar:3:"), "{err}");
    assert_eq!(granted(&e), 1, "the old set still decides");

    // Parse errors are located too, and polling logs and keeps the old set the same way.
    write(dir.path(), "sub/broken.cedar", "@id(\"x\")\npermit (principal, action resource);\n");
    let err = e.reload_now().expect_err("refused").to_string();
    assert!(err.contains("sub/broken.cedar:2:"), "{err}");
    e.poll();
    e.poll();
    assert_eq!(granted(&e), 1);

    // Emptying the folder is refused as well.
    std::fs::remove_file(dir.path().join("p.cedar")).expect("rm");
    std::fs::remove_file(dir.path().join("sub/broken.cedar")).expect("rm");
    assert!(matches!(e.reload_now(), Err(LoadError::Emptied { .. })));
    assert_eq!(granted(&e), 1);

    // A good change is applied by polling once it has been stable for one poll.
    write(dir.path(), "p.cedar", &good.replace("permit", "forbid"));
    e.poll();
    assert_eq!(granted(&e), 1, "not yet: the change must settle");
    e.poll();
    assert_eq!(granted(&e), 0, "swapped");
    assert_eq!(e.reload_now().expect("unchanged"), Reloaded::Unchanged);
}

fn load_err(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("dir");
    for (n, t) in files {
        write(dir.path(), n, t);
    }
    PolicyEngine::load(dir.path(), Path::new(SCHEMA)).expect_err("refused").to_string()
}

#[test]
fn load_errors_name_file_line_and_column() {
    let e = load_err(&[("a.cedar", "\n\npermit (principal, action, resource);")]);
    assert!(e.contains("a.cedar:3:1: policy has no `@id"), "{e}");
    let e = load_err(&[(
        "a.cedar",
        "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);",
    )]);
    assert!(e.contains("a.cedar:2:1:") && e.contains("used twice"), "{e}");
    let e = load_err(&[("a.cedar", "@id(\"x\") permit (principal == ?principal, action, resource);")]);
    assert!(e.contains("a.cedar:1:1:") && e.contains("templates"), "{e}");
    let e = load_err(&[("a.cedar", "@id(\"x\") @approval(\"owner\") forbid (principal, action, resource);")]);
    assert!(e.contains("`@approval` belongs on a `permit`"), "{e}");
    let e = load_err(&[("a.cedar", "@id(\"x\")\npermit (principal, action == Tessera::Action::\"fly\", resource);")]);
    assert!(e.contains("a.cedar:2:"), "{e}");
    // A policy that can never apply (here: a misspelt claim behind `has`) is refused, so a typo
    // cannot silently disarm a forbid.
    let e = load_err(&[(
        "a.cedar",
        "@id(\"x\")\nforbid (principal, action, resource)\nwhen { principal has rol && principal.rol == \"intern\" };",
    )]);
    assert!(e.contains("a.cedar:1:1:") && e.contains("impossible"), "{e}");
}

#[test]
fn a_missing_folder_is_an_empty_set_and_a_missing_schema_is_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    let e = PolicyEngine::load(&dir.path().join("none"), &dir.path().join("none.cedarschema")).expect("empty");
    assert!(e.is_empty());
    let d = assess(&e, &physician(), resource("obs-1", "alice", OBSERVATION), &["read"]);
    assert_eq!(d.scopes[0].outcome, Outcome::Denied(DenyReason::Denied));

    write(dir.path(), "p/a.cedar", "@id(\"x\") permit (principal, action, resource);");
    let err = PolicyEngine::load(&dir.path().join("p"), &dir.path().join("none.cedarschema")).expect_err("no schema");
    assert!(matches!(err, LoadError::MissingSchema { .. }));
}

#[test]
fn hidden_files_and_other_extensions_are_ignored() {
    let (_dir, e) = engine_with(&[
        ("a.cedar", "@id(\"x\") permit (principal, action, resource);"),
        (".a.cedar.swp", "garbage"),
        ("..data/b.cedar", "garbage"),
        ("notes.txt", "garbage"),
    ]);
    assert_eq!(e.summary(), (1, 1));
}

#[test]
fn a_schema_that_does_not_fit_the_model_is_refused() {
    let text = std::fs::read_to_string(SCHEMA).expect("schema");
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), "p/a.cedar", "@id(\"x\") permit (principal, action, resource);");
    let try_schema = |schema: &str| {
        let path = write(dir.path(), "s.cedarschema", schema);
        PolicyEngine::load(&dir.path().join("p"), &path).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(try_schema(&text), Ok(()));
    let required_claim = try_schema(&text.replace("npi?: String", "npi: String")).expect_err("refused");
    assert!(required_claim.contains("`npi` of `Tessera::Party` must be optional"), "{required_claim}");
    let no_owner = try_schema(&text.replace("    owner: Owner,\n", "")).expect_err("refused");
    assert!(no_owner.contains("does not fit the model"), "{no_owner}");
}

/// An engine on the demo schema with `groups` (action declarations) in front of `read`, `view` and
/// `download`, which become members of `reads`, and the policies of `a.cedar`.
fn engine_with_action_groups(groups: &str, policies: &str) -> (tempfile::TempDir, PolicyEngine) {
    let text = std::fs::read_to_string(SCHEMA).expect("schema").replace(
        "action \"read\", \"write\", \"view\", \"download\", \"delete\" appliesTo {",
        &format!(
            "{groups}\n  action \"read\", \"view\", \"download\" in [\"reads\"] appliesTo {{\n    principal: [Party], resource: [Resource], context: RequestContext,\n  }};\n  action \"write\", \"delete\" appliesTo {{"
        ),
    );
    let dir = tempfile::tempdir().expect("dir");
    let schema = write(dir.path(), "s.cedarschema", &text);
    write(dir.path(), "p/a.cedar", policies);
    let e = PolicyEngine::load(&dir.path().join("p"), &schema).expect("loads");
    (dir, e)
}

#[test]
fn a_forbid_on_an_action_group_still_applies_to_its_scopes() {
    // Slicing by scope must expand action groups, or it would leave this forbid out for `read`.
    let (_dir, e) = engine_with_action_groups(
        "action \"reads\";",
        r#"@id("all") permit (principal, action, resource);
           @id("no-interns-reading") forbid (principal, action in Tessera::Action::"reads", resource)
           when { principal has role && principal.role == "intern" };"#,
    );
    assert!(e.knows_scope("read") && !e.knows_scope("reads"), "a group is not a scope");
    let mut intern = physician();
    intern.claims.insert("role".into(), "intern".into());
    let d = assess(&e, &intern, resource("r", "o", "t"), &["read", "write"]);
    assert_eq!(d.granted_scopes(), ["write"]);
    assert_eq!(ids(&d.scopes[0]), ["a.cedar#no-interns-reading"]);
}

#[test]
fn a_forbid_on_a_group_of_groups_reaches_the_members() {
    // Requests carry only grouped actions; a member must still be `in` the group above its group.
    let (_dir, e) = engine_with_action_groups(
        "action \"everything\";\n  action \"reads\" in [\"everything\"];",
        r#"@id("all") permit (principal, action, resource);
           @id("no-interns") forbid (principal, action in Tessera::Action::"everything", resource)
           when { principal has role && principal.role == "intern" };"#,
    );
    let mut intern = physician();
    intern.claims.insert("role".into(), "intern".into());
    let d = assess(&e, &intern, resource("r", "o", "t"), &["read", "write"]);
    assert_eq!(d.granted_scopes(), ["write"]);
    assert_eq!(ids(&d.scopes[0]), ["a.cedar#no-interns"]);
    let d = assess(&e, &physician(), resource("r", "o", "t"), &["read"]);
    assert_eq!(d.granted_scopes(), ["read"]);
}
