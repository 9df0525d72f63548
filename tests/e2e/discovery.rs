//! Discovery: UMA Grant §2, RFC 8414 §3 (checklist group 1).

use serde_json::Value;

use crate::both_stores;
use crate::support::{Options, StoreKind, TestAs, TestDb};

/// No member may be null or an empty array (RFC 8414 §3.2), and every URL is absolute under the issuer.
fn assert_well_formed(doc: &Value, issuer: &str) {
    let obj = doc.as_object().expect("metadata is a JSON object");
    assert_eq!(obj["issuer"], issuer);
    for (k, v) in obj {
        assert!(!v.is_null(), "`{k}` is null");
        if let Some(a) = v.as_array() {
            assert!(!a.is_empty(), "`{k}` is an empty array");
        }
        if k.ends_with("_endpoint") || k.ends_with("_uri") {
            let url = v.as_str().unwrap_or_else(|| panic!("`{k}` is not a string"));
            assert!(url.starts_with(&format!("{issuer}/")), "`{k}` = {url} is not under the issuer");
        }
    }
}

async fn uma_and_rfc8414_documents_agree(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start(&db).await;

    let (status, headers, uma) = t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "public, max-age=300");
    assert_well_formed(&uma, &t.base);
    assert_eq!(uma["jwks_uri"], t.url("/jwks"));
    // The repository's demo OIDC verifier offers browser sign-in (`[interactive]`).
    assert_eq!(uma["claims_interaction_endpoint"], t.url("/claims"));

    let (status, _, oauth) = t.get_json("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(uma, oauth);

    // Nothing is advertised that does not work yet: every advertised endpoint answers something other
    // than 404.
    for (k, v) in uma.as_object().unwrap() {
        if k.ends_with("_endpoint") || k.ends_with("_uri") {
            let res = t.http.get(v.as_str().unwrap()).send().await.unwrap();
            assert_ne!(res.status(), 404, "advertised `{k}` is not served");
        }
    }
    t.stop().await;
    db.drop_now().await;
}

/// An issuer with a path: UMA appends the well-known suffix to the issuer, RFC 8414 inserts it
/// before the path (checklist G-2-b, A-18).
async fn an_issuer_with_a_path_serves_both_well_known_forms(store: StoreKind) {
    let db = TestDb::new(store).await;
    let t = TestAs::start_with(&db, Options { issuer_path: "/tenant-1", ..Options::default() }).await;
    assert!(t.base.ends_with("/tenant-1"));
    let origin = t.base.trim_end_matches("/tenant-1").to_owned();

    let (status, _, uma) = t.get_json("/.well-known/uma2-configuration").await;
    assert_eq!(status, 200);
    assert_well_formed(&uma, &t.base);
    assert_eq!(uma["jwks_uri"], format!("{origin}/tenant-1/jwks"));

    let res = t.http.get(format!("{origin}/.well-known/oauth-authorization-server/tenant-1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), uma);

    // The root forms belong to no issuer here.
    for wrong in ["/.well-known/uma2-configuration", "/.well-known/oauth-authorization-server", "/jwks"] {
        let res = t.http.get(format!("{origin}{wrong}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{wrong}");
    }
    let (status, _, _) = t.get_json("/jwks").await;
    assert_eq!(status, 200);
    t.stop().await;
    db.drop_now().await;
}

both_stores!(uma_and_rfc8414_documents_agree, an_issuer_with_a_path_serves_both_well_known_forms);
