//! The UMA grant end to end (issue 7): a resource server bound to alice registers FHIR resources and
//! asks for permission tickets; UMA clients redeem them at the token endpoint, pushing ID tokens that
//! the test signs as the partner IdP; the demo policies (`policies/`) decide. Every outcome of Grant
//! §3.3 with its exact members, ticket rotation and single use, RPT upgrade, PCTs, refresh,
//! revocation, introspection as a resource server sees it, JWT RPTs, owner approval, and the audit
//! trail (checklist groups 6–14, choices A-1…A-33, threats D1–D9).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_stores;
use crate::support::StoreKind;
use crate::support::oauth::{basic, expect_error, form, post_token};
use crate::support::uma::{
    BEHAVIORAL, Client, IDP_ISSUER, IDT, OBSERVATION, OTHER_CLIENT, PCT_CLIENT, PUBLIC_CLIENT, RS1, SECRET, UMA_CLIENT,
    UMA_GRANT, Uma, VERIFIER_ID, active_rpt, inactive, permissions, perms, physician_claims, sign_id_token,
    trust_policy,
};

const PHYSICIANS_READ: &str = "heart/fhir.cedar#physicians-read";
const FHIR_NO_WRITE: &str = "heart/fhir.cedar#fhir-no-write";
const SENSITIVE: &str = "heart/sensitive.cedar#sensitive-needs-owner-approval";

/// `required_claims` as (name, claim_token_format, issuer), sorted by name; each entry has only the
/// members Grant §3.3.6 defines, with their types.
fn required_claims(body: &Value) -> Vec<(String, Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array of strings: {body}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out: Vec<_> = body["required_claims"]
        .as_array()
        .unwrap_or_else(|| panic!("required_claims is not an array: {body}"))
        .iter()
        .map(|c| {
            let o = c.as_object().unwrap_or_else(|| panic!("a required claim is not an object: {body}"));
            for (k, v) in o {
                match k.as_str() {
                    "name" | "friendly_name" | "claim_type" => assert!(v.is_string(), "{k}: {body}"),
                    "claim_token_format" | "issuer" => assert!(v.is_array(), "{k}: {body}"),
                    other => panic!("unexpected member `{other}` in required_claims: {body}"),
                }
            }
            if let Some(t) = o.get("claim_type") {
                assert_eq!(t, "string", "npi and role are strings: {body}");
            }
            (c["name"].as_str().unwrap().to_owned(), strings(&c["claim_token_format"]), strings(&c["issuer"]))
        })
        .collect();
    out.sort();
    out
}

/// What the demo policy `physicians-read` asks of a party without claims: npi and role, as OpenID
/// Connect ID tokens from the hospital IdP.
fn npi_and_role() -> Vec<(String, Vec<String>, Vec<String>)> {
    ["npi", "role"].iter().map(|n| ((*n).to_owned(), vec![IDT.to_owned()], vec![IDP_ISSUER.to_owned()])).collect()
}

fn token_of(body: &Value, member: &str) -> String {
    body[member].as_str().unwrap_or_else(|| panic!("`{member}` is not a string: {body}")).to_owned()
}

/// Grant §3.3.6, G-3.3.6-h…l, G-3.3.5-a, R6749-5.1-a/b, F-5.1.1-a/b, A-14, A-19, R7662-2.2-b/c, F-5-a.
async fn need_info_then_a_pushed_id_token_gets_an_rpt(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let t1 = u.ticket(&obs, &["read"]).await;

    let r = u.grant(UMA_CLIENT, &t1, &[]).await;
    let body = r.error("no claims yet", 403, "need_info");
    assert_eq!(required_claims(body), npi_and_role());
    let t2 = r.str("ticket");
    assert_ne!(t2, t1, "need_info rotates the ticket");
    assert!(!r.str("error_description").contains(&t1), "the description does not echo the ticket");

    // The presented ticket is dead (G-3.3.6-k).
    u.grant(UMA_CLIENT, &t1, &[]).await.error("the ticket need_info replaced", 400, "invalid_grant");

    let r = u.grant_pushing(UMA_CLIENT, &t2, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    let body = r.rpt("rotated ticket + ID token", &["refresh_token"]);
    let rpt = token_of(body, "access_token");
    let refresh = token_of(body, "refresh_token");
    let expires_in = body["expires_in"].as_i64().unwrap();

    let intro = u.introspect(&u.pat, &rpt).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));
    assert_eq!(intro["iat"], u.now(), "{intro}");
    assert_eq!(intro["exp"], u.now() + expires_in, "expires_in is the RPT's real lifetime: {intro}");
    // The resource server may authenticate as a client instead of with its PAT: same answer.
    assert_eq!(u.introspect_as(RS1, &rpt).await, intro);
    // Another resource server of the same owner sees nothing of it (A-14).
    assert_eq!(u.introspect(&u.pat2, &rpt).await, inactive());
    // A refresh token, a ticket and a used ticket are not access tokens for the RS (R7662-2.2-b).
    assert_eq!(u.introspect(&u.pat, &refresh).await, inactive());
    assert_eq!(u.introspect(&u.pat, &t2).await, inactive());
    assert_eq!(u.introspect(&u.pat, &u.ticket(&obs, &["read"]).await).await, inactive());
    // The used ticket cannot be redeemed again.
    u.grant(UMA_CLIENT, &t2, &[]).await.error("used ticket", 400, "invalid_grant");
    u.stop().await;
}

/// G-3.3.1-a, G-3.3.5-c, G-3.3.5-b, G-1.3-a: pushing on the first request; each client its own RPT.
async fn an_id_token_pushed_with_the_first_request_gets_an_rpt(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;

    let ticket = u.ticket(&obs, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &ticket, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    let mine = token_of(r.rpt("first request", &["refresh_token"]), "access_token");

    // A client without the refresh_token grant gets no refresh token.
    let ticket = u.ticket(&obs, &["read"]).await;
    let r = u.grant_pushing(OTHER_CLIENT, &ticket, &u.id_token(OTHER_CLIENT, "dr-bob"), &[]).await;
    let theirs = token_of(r.rpt("other client", &[]), "access_token");
    assert_ne!(mine, theirs);

    let a = u.introspect(&u.pat, &mine).await;
    let b = u.introspect(&u.pat, &theirs).await;
    assert_eq!(active_rpt(&a, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));
    assert_eq!(active_rpt(&b, "other-client", &u.t.base), perms(&[(&obs, &["read"])]));
    u.stop().await;
}

/// G-3.3.6-d, G-1.3-a, A-4 (default all-or-nothing), G-5.6-a: denials consume the ticket.
async fn policy_denials_are_request_denied_and_consume_the_ticket(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");

    let ticket = u.ticket(&obs, &["write"]).await;
    u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await.error("write is forbidden", 403, "request_denied");
    u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await.error("ticket after request_denied", 400, "invalid_grant");

    // A forbid needs no claims to decide: denied at once, not need_info.
    let ticket = u.ticket(&obs, &["write"]).await;
    u.grant(UMA_CLIENT, &ticket, &[]).await.error("write without claims", 403, "request_denied");

    // All or nothing: read is granted, write is not, so nothing is.
    let ticket = u.ticket(&obs, &["read", "write"]).await;
    u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await.error("read + write", 403, "request_denied");

    // A nurse: no further claim would help.
    let mut nurse = physician_claims("uma-client", "nina", u.now());
    nurse["role"] = json!("nurse");
    let ticket = u.ticket(&obs, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &ticket, &sign_id_token(&nurse), &[]).await.error("a nurse", 403, "request_denied");
    u.stop().await;
}

/// A-4 with `[uma] partial_grants = true`: the RPT holds what was granted; nothing granted is still
/// an error (G-3.3.4-i).
async fn partial_grants_hold_what_was_granted(store: StoreKind) {
    let u = Uma::start_with(store, "[uma]\npartial_grants = true\n").await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");

    let ticket = u.ticket(&obs, &["read", "write"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await;
    let rpt = token_of(r.rpt("read + write, partial", &["refresh_token"]), "access_token");
    let intro = u.introspect(&u.pat, &rpt).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));

    let ticket = u.ticket(&obs, &["write"]).await;
    u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await.error("write only, partial", 403, "request_denied");
    u.stop().await;
}

/// One pending request of the owner, checked member by member; returns its id.
fn pending_request(list: &Value, rid: &str, sub: &str) -> String {
    let items = list.as_array().unwrap_or_else(|| panic!("not an array: {list}"));
    let found: Vec<&Value> = items.iter().filter(|r| r["requesting_party"]["sub"] == sub).collect();
    assert_eq!(found.len(), 1, "one request of {sub}: {list}");
    let req = found[0];
    let keys: BTreeSet<&str> = req.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "client_id", "requesting_party", "permissions", "status", "created_at"].into(), "{req}");
    assert_eq!(req["client_id"], "uma-client", "{req}");
    assert_eq!(req["requesting_party"], json!({"iss": IDP_ISSUER, "sub": sub}), "{req}");
    assert_eq!(req["permissions"], json!([{"resource_id": rid, "resource_scopes": ["read"]}]), "{req}");
    assert_eq!(req["status"], "pending", "{req}");
    assert!(!req["created_at"].is_null(), "{req}");
    token_of(req, "id")
}

/// G-3.3.6-e/f, A-22, the owner approval API: pending → request_submitted with a new ticket each
/// poll; approved → RPT; denied → request_denied; `remember` stores a share.
async fn owner_approval_by_polling(store: StoreKind) {
    let u = Uma::start(store).await;
    let bh = u.resource(&u.pat, BEHAVIORAL, &["read", "write"]).await;

    let t1 = u.ticket(&bh, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t1, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    let interval = r.error("sensitive read", 403, "request_submitted")["interval"]
        .as_i64()
        .filter(|i| *i > 0)
        .unwrap_or_else(|| panic!("interval is a positive integer: {}", r.body));
    let t2 = r.str("ticket");
    assert_ne!(t2, t1);
    u.grant(UMA_CLIENT, &t1, &[]).await.error("ticket request_submitted replaced", 400, "invalid_grant");

    // The owner sees the request through her PAT; the other resource server's PAT does not.
    let listed = u.api(Method::GET, "/uma/requests", &u.pat, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1), "{}", listed.body);
    let id = pending_request(&listed.body, &bh, "dr-bob");
    let other_rs = u.api(Method::GET, "/uma/requests", &u.pat2, None).await;
    assert_eq!((other_rs.status, &other_rs.body), (200, &json!([])));

    // Still pending: another request_submitted, another ticket; the rotated ticket carries the claims.
    u.clock.advance(interval);
    let r = u.grant(UMA_CLIENT, &t2, &[]).await;
    r.error("pending, polled after the interval", 403, "request_submitted");
    let t3 = r.str("ticket");
    assert_ne!(t3, t2);
    // Polling faster than the interval: the interval grows (A-22).
    let r = u.grant(UMA_CLIENT, &t3, &[]).await;
    let faster = r.error("pending, polled at once", 403, "request_submitted")["interval"].as_i64().unwrap();
    assert!(faster > interval, "interval {interval} → {faster}");
    let t4 = r.str("ticket");

    // Unknown request ids are 404; the owner approves.
    let r = u.api(Method::POST, "/uma/requests/no-such-request", &u.pat, Some(json!({"decision": "approve"}))).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = u.api(Method::POST, &format!("/uma/requests/{id}"), &u.pat2, Some(json!({"decision": "approve"}))).await;
    assert_eq!(r.status, 404, "another resource server's PAT: {}", r.body);
    let r = u.api(Method::POST, &format!("/uma/requests/{id}"), &u.pat, Some(json!({"decision": "approve"}))).await;
    assert_eq!((r.status, &r.body), (200, &json!({"id": id, "status": "approved"})));

    u.clock.advance(faster);
    let r = u.grant(UMA_CLIENT, &t4, &[]).await;
    let rpt = token_of(r.rpt("approved", &["refresh_token"]), "access_token");
    let intro = u.introspect(&u.pat, &rpt).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&bh, &["read"])]));
    u.grant(UMA_CLIENT, &t4, &[]).await.error("ticket of the RPT", 400, "invalid_grant");

    // The owner denies another party's request.
    let t = u.ticket(&bh, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-carol"), &[]).await;
    r.error("carol asks", 403, "request_submitted");
    let carol_ticket = r.str("ticket");
    let listed = u.api(Method::GET, "/uma/requests", &u.pat, None).await;
    let carol = pending_request(&listed.body, &bh, "dr-carol");
    let r = u.api(Method::POST, &format!("/uma/requests/{carol}"), &u.pat, Some(json!({"decision": "deny"}))).await;
    assert_eq!((r.status, &r.body), (200, &json!({"id": carol, "status": "denied"})));
    u.clock.advance(600);
    u.grant(UMA_CLIENT, &carol_ticket, &[]).await.error("denied by the owner", 403, "request_denied");
    u.grant(UMA_CLIENT, &carol_ticket, &[]).await.error("ticket after denial", 400, "invalid_grant");

    // `remember`: the approval becomes a share, so the party's next request needs no approval.
    let t = u.ticket(&bh, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-dave"), &[]).await;
    r.error("dave asks", 403, "request_submitted");
    let dave_ticket = r.str("ticket");
    let listed = u.api(Method::GET, "/uma/requests", &u.pat, None).await;
    let dave = pending_request(&listed.body, &bh, "dr-dave");
    let r = u
        .api(
            Method::POST,
            &format!("/uma/requests/{dave}"),
            &u.pat,
            Some(json!({"decision": "approve", "remember": true})),
        )
        .await;
    assert_eq!((r.status, &r.body), (200, &json!({"id": dave, "status": "approved"})));
    u.clock.advance(60);
    u.grant(UMA_CLIENT, &dave_ticket, &[]).await.rpt("dave approved", &["refresh_token"]);
    let t = u.ticket(&bh, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-dave"), &[]).await;
    r.rpt("dave again, remembered", &["refresh_token"]);
    u.stop().await;
}

/// G-3.3.6-a/b, G-5.5-f/h, G-3.3.2-h, S-ENUM-a, D1: unknown, expired, used and foreign tickets are
/// the same invalid_grant; replaying a redeemed ticket revokes what it produced.
async fn unknown_expired_used_and_foreign_tickets_are_one_invalid_grant(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;

    let r = u
        .grant_pushing(UMA_CLIENT, "no-such-ticket-4bX9kQ2mZr7TqWv1yLp0", &u.id_token(UMA_CLIENT, "dr-bob"), &[])
        .await;
    let desc = r.error("unknown", 400, "invalid_grant")["error_description"].clone();

    // Expired: the default ticket lifetime is 300 s.
    let t = u.ticket(&obs, &["read"]).await;
    u.clock.advance(301);
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    assert_eq!(r.error("expired", 400, "invalid_grant")["error_description"], desc);

    // Used: and the replay revokes the RPT and its refresh token (D1).
    let t = u.ticket(&obs, &["read"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await;
    let body = r.rpt("first redemption", &["refresh_token"]).clone();
    let (rpt, refresh) = (token_of(&body, "access_token"), token_of(&body, "refresh_token"));
    assert_eq!(u.introspect(&u.pat, &rpt).await["active"], true);
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await;
    assert_eq!(r.error("used", 400, "invalid_grant")["error_description"], desc);
    assert_eq!(u.introspect(&u.pat, &rpt).await, inactive(), "the replay revoked the RPT");
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    r.error("refresh token of a replayed ticket", 400, "invalid_grant");

    // Foreign: a rotated ticket is bound to the client that got it.
    let t = u.ticket(&obs, &["read"]).await;
    let r = u.grant(UMA_CLIENT, &t, &[]).await;
    r.error("no claims", 403, "need_info");
    let rotated = r.str("ticket");
    let r = u.grant_pushing(OTHER_CLIENT, &rotated, &u.id_token(OTHER_CLIENT, "dr-bob"), &[]).await;
    let body = r.error("foreign", 400, "invalid_grant");
    assert_eq!(body["error_description"], desc);
    assert!(!body.to_string().contains(&rotated));
    u.stop().await;
}

/// A compact JWS whose payload was swapped after signing.
fn tampered(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let (header, _, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    format!("{header}.{}.{sig}", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// G-3.3.6-c, G-3.3.1-c/d/e, OIDC-3.1.3.7-b, G-5.7-b, A-10, A-27: a claim token that fails
/// verification is need_info with a new ticket, never an RPT; the pair is both-or-neither.
async fn bad_claim_tokens_are_need_info(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let now = u.now();
    let good = u.id_token(UMA_CLIENT, "dr-bob");

    let forged = tampered(&good, &physician_claims("uma-client", "dr-mallory", now));
    let mut expired = physician_claims("uma-client", "dr-bob", now - 600);
    expired["exp"] = json!(now - 120);
    let wrong_aud = physician_claims("someone-else", "dr-bob", now);
    let mut untrusted = physician_claims("uma-client", "dr-bob", now);
    untrusted["iss"] = json!("https://idp.elsewhere.example");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(physician_claims("uma-client", "dr-bob", now).to_string())
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad signature", forged, IDT),
        ("expired", sign_id_token(&expired), IDT),
        ("wrong audience", sign_id_token(&wrong_aud), IDT),
        ("untrusted issuer", sign_id_token(&untrusted), IDT),
        ("alg none", alg_none, IDT),
        ("not a JWT", "not-a-jwt".to_owned(), IDT),
        ("unsupported format", good.clone(), "urn:example:unknown-format"),
    ];
    let mut ticket = u.ticket(&obs, &["read"]).await;
    for (case, token, format) in &cases {
        let r = u.grant(UMA_CLIENT, &ticket, &[("claim_token", token), ("claim_token_format", format)]).await;
        let body = r.error(case, 403, "need_info");
        let asked = required_claims(body);
        assert!(!asked.is_empty(), "{case}: {body}");
        for (name, formats, issuers) in &asked {
            assert!(formats.iter().any(|f| f == IDT), "{case}: {name}: {body}");
            assert!(issuers.iter().any(|i| i == IDP_ISSUER), "{case}: {name}: {body}");
        }
        let next = r.str("ticket");
        assert_ne!(next, ticket, "{case}");
        u.grant(UMA_CLIENT, &ticket, &[]).await.error(case, 400, "invalid_grant");
        ticket = next;
    }
    // After all that, the latest ticket and a good token: an RPT for exactly what was asked.
    let r = u.grant_pushing(UMA_CLIENT, &ticket, &good, &[]).await;
    let rpt = token_of(r.rpt("good token at last", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));

    // A public client may never push claims (A-27): need_info.
    let t = u.ticket(&obs, &["read"]).await;
    let r = u.grant_pushing(PUBLIC_CLIENT, &t, &u.id_token(PUBLIC_CLIENT, "dr-bob"), &[]).await;
    r.error("public client pushing", 403, "need_info");

    // claim_token and claim_token_format go together (G-3.3.1-c/d).
    let t = u.ticket(&obs, &["read"]).await;
    u.grant(UMA_CLIENT, &t, &[("claim_token", &good)]).await.error("no format", 400, "invalid_request");
    let t = u.ticket(&obs, &["read"]).await;
    u.grant(UMA_CLIENT, &t, &[("claim_token_format", IDT)]).await.error("no token", 400, "invalid_request");
    u.stop().await;
}

/// G-3.3.6-g, R6749-3.3-a, A-5, A-23, G-3.3.4-j, G-3.3.1-b, A-6, R6749-3.2.1-a, unauthorized_client.
async fn scope_parameter_and_request_errors(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");

    let t = u.ticket(&obs, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[("scope", "teleport")]).await.error("teleport", 400, "invalid_scope");
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await.error("ticket after invalid_scope", 400, "invalid_grant");
    let t = u.ticket(&obs, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[("scope", "READ")]).await.error("READ", 400, "invalid_scope");

    // A scope the resource offers but the client did not pre-register is ignored (A-5).
    let t = u.ticket(&obs, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("scope", "write")]).await;
    let rpt = token_of(r.rpt("unregistered client scope", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));

    // A zero-scope permission: the client's registered scope fills it (G-3.3.4-j) …
    let t = u.ticket_with(&u.pat, json!({"resource_id": obs})).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("scope", "read")]).await;
    let rpt = token_of(r.rpt("zero-scope ticket + scope=read", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "uma-client", &u.t.base), perms(&[(&obs, &["read"])]));
    // … without it there is nothing to assess (A-23) …
    let t = u.ticket_with(&u.pat, json!({"resource_id": obs})).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await.error("zero-scope ticket", 400, "invalid_scope");
    // … nor with a scope the client did not register.
    let t = u.ticket_with(&u.pat, json!({"resource_id": obs})).await;
    let other = u.id_token(OTHER_CLIENT, "dr-bob");
    let r = u.grant_pushing(OTHER_CLIENT, &t, &other, &[("scope", "read")]).await;
    r.error("zero-scope ticket, unregistered scope", 400, "invalid_scope");

    // The ticket is required; an empty parameter counts as absent (A-6, A-30).
    u.token(UMA_CLIENT, &[("grant_type", UMA_GRANT)]).await.error("no ticket", 400, "invalid_request");
    u.grant(UMA_CLIENT, "", &[]).await.error("empty ticket", 400, "invalid_request");
    // A client without the UMA grant type.
    let t = u.ticket(&obs, &["read"]).await;
    u.grant(RS1, &t, &[]).await.error("resource server", 400, "unauthorized_client");
    // No client authentication at all.
    let t = u.ticket(&obs, &["read"]).await;
    let res = post_token(&u.t, None, &[("grant_type", UMA_GRANT), ("ticket", &t)]).await;
    expect_error(res, 401, "invalid_client").await;
    u.stop().await;
}

/// G-3.3.5.1-a…d, G-3.3.5-g, A-11, A-12, A-14 (F-5.1-a).
async fn rpt_upgrade(store: StoreKind) {
    let u = Uma::start(store).await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r3 = u.resource(&u.pat2, OBSERVATION, &["read", "write"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");

    let rpt1 = token_of(&u.rpt_for(UMA_CLIENT, &r2, &["read"], &[]).await, "access_token");
    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &rpt1)]).await;
    let body = r.rpt("upgrade", &["refresh_token", "upgraded"]);
    assert_eq!(body["upgraded"], true, "{body}");
    let rpt2 = token_of(body, "access_token");
    assert_ne!(rpt2, rpt1);
    let intro = u.introspect(&u.pat, &rpt2).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&r1, &["read"]), (&r2, &["read"])]));
    assert_eq!(u.introspect(&u.pat, &rpt1).await, inactive(), "the upgraded RPT is retired");

    // A revoked RPT, another client's, another party's: invalid_grant, nothing merged.
    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &rpt1)]).await;
    assert!(!r.error("revoked rpt", 400, "invalid_grant").to_string().contains(&rpt1), "S-LEAK-a");
    let theirs = token_of(&u.rpt_for(OTHER_CLIENT, &r1, &["read"], &[]).await, "access_token");
    let t = u.ticket(&r1, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &theirs)]).await.error("another client's", 400, "invalid_grant");
    assert_eq!(u.introspect(&u.pat, &theirs).await["active"], true, "untouched");
    let t = u.ticket(&r2, &["read"]).await;
    let carol = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-carol"), &[]).await;
    let carol = token_of(carol.rpt("carol", &["refresh_token"]), "access_token");
    let t = u.ticket(&r1, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &carol)]).await.error("another party's", 400, "invalid_grant");
    assert_eq!(u.introspect(&u.pat, &carol).await["active"], true, "untouched");

    // Not an RPT at all: ignored, no `upgraded` (A-12).
    for (case, not_rpt) in [("random string", "not-an-rpt-q7Zx"), ("a PAT", u.pat.as_str())] {
        let t = u.ticket(&r1, &["read"]).await;
        let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", not_rpt)]).await;
        let rpt = token_of(r.rpt(case, &["refresh_token"]), "access_token");
        assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "uma-client", &u.t.base), perms(&[(&r1, &["read"])]));
    }
    assert_eq!(u.introspect(&u.pat, &u.pat).await["active"], true, "the PAT is untouched");

    // A failed upgrade leaves the RPT exactly as it was.
    let t = u.ticket(&r1, &["write"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &rpt2)]).await.error("denied upgrade", 403, "request_denied");
    let t = u.ticket(&r1, &["read"]).await;
    u.grant(UMA_CLIENT, &t, &[("rpt", &rpt2)]).await.error("upgrade without claims", 403, "need_info");
    assert_eq!(u.introspect(&u.pat, &rpt2).await, intro, "untouched by failed upgrades");

    // Across resource servers: each sees only its own resources (A-14).
    let t = u.ticket_with(&u.pat2, json!({"resource_id": r3, "resource_scopes": ["read"]})).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &idt, &[("rpt", &rpt2)]).await;
    let body = r.rpt("upgrade at another RS", &["refresh_token", "upgraded"]);
    assert_eq!(body["upgraded"], true, "{body}");
    let rpt3 = token_of(body, "access_token");
    let at_rs1 = u.introspect(&u.pat, &rpt3).await;
    assert_eq!(active_rpt(&at_rs1, "uma-client", &u.t.base), perms(&[(&r1, &["read"]), (&r2, &["read"])]));
    let at_rs2 = u.introspect(&u.pat2, &rpt3).await;
    assert_eq!(active_rpt(&at_rs2, "uma-client", &u.t.base), perms(&[(&r3, &["read"])]));
    assert_eq!(u.introspect(&u.pat, &rpt2).await, inactive());
    u.stop().await;
}

/// G-3.3.1-f, G-5.2-a, G-3.7-a/b, A-13, D9, R7662-2.2-b: a PCT for a client that opted in.
async fn pct_for_pushed_claims(store: StoreKind) {
    let u = Uma::start(store).await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;

    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant_pushing(PCT_CLIENT, &t, &u.id_token(PCT_CLIENT, "dr-bob"), &[]).await;
    let mut pct = token_of(r.rpt("pushed claims, persist_pushed_claims", &["refresh_token", "pct"]), "pct");

    // Only the PCT on a new ticket for another resource.
    let t = u.ticket(&r2, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", &pct)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let members = if r.body.get("pct").is_some() { vec!["refresh_token", "pct"] } else { vec!["refresh_token"] };
    let body = r.rpt("pct only", &members);
    if let Some(p) = body.get("pct") {
        pct = p.as_str().unwrap().to_owned();
    }
    let intro = u.introspect(&u.pat, &token_of(body, "access_token")).await;
    assert_eq!(active_rpt(&intro, "pct-client", &u.t.base), perms(&[(&r2, &["read"])]));
    assert!(!intro.to_string().contains("1234567893"), "claims are never shown to the RS: {intro}");
    assert_eq!(u.introspect(&u.pat, &pct).await, inactive(), "a PCT is not an access token");

    // Another client's PCT, an unknown PCT, a PCT of another party than the pushed token's.
    let t = u.ticket(&r1, &["read"]).await;
    u.grant(UMA_CLIENT, &t, &[("pct", &pct)]).await.error("another client's PCT", 400, "invalid_grant");
    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", "no-such-pct-Jd8s")]).await;
    assert!(!r.error("unknown PCT", 400, "invalid_grant").to_string().contains("Jd8s"), "S-LEAK-a");
    let t = u.ticket(&r1, &["read"]).await;
    let carol = u.id_token(PCT_CLIENT, "dr-carol");
    u.grant_pushing(PCT_CLIENT, &t, &carol, &[("pct", &pct)]).await.error("party mismatch", 400, "invalid_grant");

    // Revocation: by another client nothing happens; by its client the PCT is dead.
    assert_eq!(u.revoke(OTHER_CLIENT, &[("token", &pct), ("token_type_hint", "pct")]).await, 200);
    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", &pct)]).await;
    assert_eq!(r.status, 200, "still valid after another client's revocation: {}", r.body);
    if let Some(p) = r.body.get("pct").and_then(Value::as_str) {
        pct = p.to_owned();
    }
    assert_eq!(u.revoke(PCT_CLIENT, &[("token", &pct), ("token_type_hint", "pct")]).await, 200);
    let t = u.ticket(&r1, &["read"]).await;
    u.grant(PCT_CLIENT, &t, &[("pct", &pct)]).await.error("revoked PCT", 400, "invalid_grant");
    u.stop().await;
}

/// G-3.6-a/b/c, R6749-6-a/b/c, D3: refresh of RPTs.
async fn refresh_of_rpts(store: StoreKind) {
    let u = Uma::start(store).await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let both = perms(&[(&r1, &["read"]), (&r2, &["read"])]);
    let t = u
        .ticket_with(
            &u.pat,
            json!([{"resource_id": r1, "resource_scopes": ["read"]}, {"resource_id": r2, "resource_scopes": ["read"]}]),
        )
        .await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    let body = r.rpt("two resources", &["refresh_token"]);
    let (rpt0, rt0) = (token_of(body, "access_token"), token_of(body, "refresh_token"));
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt0).await, "uma-client", &u.t.base), both);

    // No assessment on refresh: the ID token is long expired by now.
    u.clock.advance(1800);
    let pat = u.pat_of(RS1).await;
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt0)]).await;
    let body = r.rpt("refresh", &["refresh_token"]);
    let (rpt1, rt1) = (token_of(body, "access_token"), token_of(body, "refresh_token"));
    assert_ne!(rpt1, rpt0);
    assert_ne!(rt1, rt0);
    let intro = u.introspect(&pat, &rpt1).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), both);
    assert_eq!(intro["exp"], u.now() + body["expires_in"].as_i64().unwrap(), "{intro}");

    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("scope", "read")]).await;
    let body = r.rpt("refresh scope=read", &["refresh_token"]);
    let (rpt2, rt2) = (token_of(body, "access_token"), token_of(body, "refresh_token"));
    assert_eq!(active_rpt(&u.introspect(&pat, &rpt2).await, "uma-client", &u.t.base), both);

    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("scope", "write")]).await;
    r.error("refresh scope=write", 400, "invalid_scope");
    // pct-client: another client that has the refresh_token grant.
    let r = u.token(PCT_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt2)]).await;
    r.error("another client's refresh token", 400, "invalid_grant");

    // Reuse of a spent refresh token revokes the whole family, RPTs included.
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt0)]).await;
    r.error("spent refresh token", 400, "invalid_grant");
    for rpt in [&rpt0, &rpt1, &rpt2] {
        assert_eq!(u.introspect(&pat, rpt).await, inactive());
    }
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &rt2)]).await;
    r.error("newest refresh token of a revoked family", 400, "invalid_grant");
    u.stop().await;
}

/// R7009-2.1-a/b/e/f, R7009-2.2-a, A-25: revocation of RPTs and their refresh tokens.
async fn revocation_of_rpts_and_refresh_tokens(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;

    let body = u.rpt_for(UMA_CLIENT, &obs, &["read"], &[]).await;
    let rpt = token_of(&body, "access_token");
    assert_eq!(u.revoke(OTHER_CLIENT, &[("token", &rpt)]).await, 200);
    assert_eq!(u.introspect(&u.pat, &rpt).await["active"], true, "another client cannot revoke it");
    assert_eq!(u.revoke(UMA_CLIENT, &[("token", "never-issued")]).await, 200);
    // A wrong hint is only a hint.
    assert_eq!(u.revoke(UMA_CLIENT, &[("token", &rpt), ("token_type_hint", "refresh_token")]).await, 200);
    assert_eq!(u.introspect(&u.pat, &rpt).await, inactive());
    assert_eq!(u.revoke(UMA_CLIENT, &[("token", &rpt)]).await, 200, "already revoked: still 200");

    // Revoking the refresh token revokes its RPT.
    let body = u.rpt_for(UMA_CLIENT, &obs, &["read"], &[]).await;
    let (rpt, refresh) = (token_of(&body, "access_token"), token_of(&body, "refresh_token"));
    assert_eq!(u.revoke(OTHER_CLIENT, &[("token", &refresh)]).await, 200);
    assert_eq!(u.introspect(&u.pat, &rpt).await["active"], true);
    assert_eq!(u.revoke(UMA_CLIENT, &[("token", &refresh)]).await, 200);
    assert_eq!(u.introspect(&u.pat, &rpt).await, inactive());
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
    r.error("revoked refresh token", 400, "invalid_grant");
    u.stop().await;
}

/// `[uma] rpt_format = "jwt"`: a JWS verifiable with the published keys, still introspectable and
/// revocable (A-20, R9700-2.3-a).
async fn jwt_rpts_verify_with_the_published_keys(store: StoreKind) {
    let u = Uma::start_with(store, "[uma]\nrpt_format = \"jwt\"\n").await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let body = u.rpt_for(UMA_CLIENT, &obs, &["read"], &[]).await;
    let jwt = token_of(&body, "access_token");
    let expires_in = body["expires_in"].as_i64().unwrap();

    let header = jsonwebtoken::decode_header(&jwt).expect("the RPT is a JWS");
    let kid = header.kid.clone().expect("kid in the header");
    let (status, _, jwks) = u.t.get_json("/jwks").await;
    assert_eq!(status, 200);
    let set: JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = set.find(&kid).unwrap_or_else(|| panic!("{kid} is not published"));
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&u.t.base]);
    validation.set_audience(&["demo-rs"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("signature and claims verify")
        .claims;
    let keys: BTreeSet<&str> = claims.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["iss", "aud", "exp", "iat", "jti", "client_id", "permissions"].into(), "{claims}");
    assert_eq!(claims["aud"], json!(["demo-rs"]), "{claims}");
    assert_eq!(claims["client_id"], "uma-client");
    assert_eq!(claims["iat"], u.now());
    assert_eq!(claims["exp"], u.now() + expires_in);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()), "{claims}");
    assert_eq!(permissions(&claims), perms(&[(&obs, &["read"])]));

    let intro = u.introspect(&u.pat, &jwt).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), permissions(&claims));
    assert_eq!(intro["exp"], claims["exp"]);
    assert_eq!(u.revoke(UMA_CLIENT, &[("token", &jwt)]).await, 200);
    assert_eq!(u.introspect(&u.pat, &jwt).await, inactive(), "a JWT RPT is still revocable");
    u.stop().await;
}

/// G-5.5-g, A-1, D1: fifty concurrent redemptions of one ticket, exactly one RPT.
async fn fifty_concurrent_redemptions_of_one_ticket(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let ticket = u.ticket(&obs, &["read"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");
    let body =
        form(&[("grant_type", UMA_GRANT), ("ticket", &ticket), ("claim_token", &idt), ("claim_token_format", IDT)]);
    let auth = basic(UMA_CLIENT.id, UMA_CLIENT.secret.unwrap());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let req =
            u.t.http
                .post(u.t.url("/token"))
                .header("authorization", &auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone());
        set.spawn(async move {
            let res = req.send().await.expect("POST /token");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.expect("JSON"))
        });
    }
    let mut won = Vec::new();
    let mut refused = 0;
    while let Some(done) = set.join_next().await {
        let (status, body) = done.unwrap();
        match (status, body["error"].as_str()) {
            (200, None) => won.push(token_of(&body, "access_token")),
            (400, Some("invalid_grant")) => refused += 1,
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((won.len(), refused), (1, 49));
    // One more replay: whatever the race did, the RPT is revoked now (D1).
    u.grant_pushing(UMA_CLIENT, &ticket, &idt, &[]).await.error("replay", 400, "invalid_grant");
    assert_eq!(u.introspect(&u.pat, &won[0]).await, inactive());
    u.stop().await;
}

/// A resource the owner deletes takes the RPTs (and refresh tokens) that include it along.
async fn deleting_a_resource_revokes_its_rpts(store: StoreKind) {
    let u = Uma::start(store).await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let only_r1 = token_of(&u.rpt_for(UMA_CLIENT, &r1, &["read"], &[]).await, "access_token");
    let only_r2 = token_of(&u.rpt_for(UMA_CLIENT, &r2, &["read"], &[]).await, "access_token");
    let t = u
        .ticket_with(
            &u.pat,
            json!([{"resource_id": r1, "resource_scopes": ["read"]}, {"resource_id": r2, "resource_scopes": ["read"]}]),
        )
        .await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-bob"), &[]).await;
    let body = r.rpt("both", &["refresh_token"]);
    let (mixed, mixed_refresh) = (token_of(body, "access_token"), token_of(body, "refresh_token"));

    let r = u.api(Method::DELETE, &format!("/uma/resources/{r1}"), &u.pat, None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(u.introspect(&u.pat, &only_r1).await, inactive());
    assert_eq!(u.introspect(&u.pat, &mixed).await, inactive());
    let r = u.token(UMA_CLIENT, &[("grant_type", "refresh_token"), ("refresh_token", &mixed_refresh)]).await;
    r.error("refresh token of an RPT with a deleted resource", 400, "invalid_grant");
    let intro = u.introspect(&u.pat, &only_r2).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&r2, &["read"])]));
    u.stop().await;
}

/// Nothing granted: no member, null, `{}` or only empty scope lists.
fn nothing_granted(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|o| o.values().all(|s| s.as_array().is_some_and(Vec::is_empty)))
}

/// D6 and the audit CLI: one JSON line per assessment, newest last.
async fn every_assessment_is_audited(store: StoreKind) {
    let u = Uma::start(store).await;
    let obs = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let bh = u.resource(&u.pat, BEHAVIORAL, &["read"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");

    let t = u.ticket(&obs, &["read"]).await;
    let r = u.grant(UMA_CLIENT, &t, &[]).await;
    r.error("no claims", 403, "need_info");
    u.grant_pushing(UMA_CLIENT, &r.str("ticket"), &idt, &[]).await.rpt("rpt", &["refresh_token"]);
    let t = u.ticket(&obs, &["write"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await.error("write", 403, "request_denied");
    let t = u.ticket(&bh, &["read"]).await;
    u.grant_pushing(UMA_CLIENT, &t, &idt, &[]).await.error("sensitive", 403, "request_submitted");

    let lines = u.audit_tail();
    assert_eq!(lines.len(), 4, "one line per assessment: {lines:#?}");
    let pushed = json!([format!("pushed:{VERIFIER_ID}")]);
    let expect = [
        ("need_info", &obs, "need_info", json!({ obs.as_str(): ["read"] }), PHYSICIANS_READ, false),
        ("rpt", &obs, "read", json!({ obs.as_str(): ["read"] }), PHYSICIANS_READ, true),
        ("request_denied", &obs, "write", json!({ obs.as_str(): ["write"] }), FHIR_NO_WRITE, true),
        ("request_submitted", &bh, "sensitive read", json!({ bh.as_str(): ["read"] }), SENSITIVE, true),
    ];
    for (line, (outcome, rid, case, requested, policy, with_claims)) in lines.iter().zip(expect) {
        for member in [
            "at",
            "client_id",
            "party_iss",
            "party_sub",
            "owner",
            "resource_ids",
            "requested",
            "granted",
            "outcome",
            "policies",
            "claim_sources",
        ] {
            assert!(line.get(member).is_some() || member.starts_with("party_"), "{case}: no `{member}`: {line}");
        }
        assert!(!line["at"].is_null(), "{case}: {line}");
        assert_eq!(line["outcome"], outcome, "{case}: {line}");
        assert_eq!(line["client_id"], "uma-client", "{case}: {line}");
        assert_eq!(line["owner"], "alice", "{case}: {line}");
        assert_eq!(line["resource_ids"], json!([rid]), "{case}: {line}");
        assert_eq!(line["requested"], requested, "{case}: {line}");
        assert_eq!(line["policies"], json!([policy]), "{case}: {line}");
        if with_claims {
            assert_eq!((&line["party_iss"], &line["party_sub"]), (&json!(IDP_ISSUER), &json!("dr-bob")), "{case}");
            assert_eq!(line["claim_sources"], pushed, "{case}: {line}");
        } else {
            assert!(line.get("party_iss").is_none_or(Value::is_null), "{case}: no party yet: {line}");
            assert_eq!(line["claim_sources"], json!([]), "{case}: {line}");
        }
        if outcome == "rpt" {
            assert_eq!(line["granted"], requested, "{case}: {line}");
        } else {
            assert!(nothing_granted(&line["granted"]), "{case}: {line}");
        }
        assert!(!line.to_string().contains("1234567893"), "claim values stay out of the audit trail: {line}");
    }
    u.stop().await;
}

/// A resource type the demo policies say nothing about.
const DOCUMENT: &str = "https://example.test/document";

/// Anyone may view and download anything: outcomes that need no claims.
const ANYONE: &str = r#"@id("anyone-views")
permit (principal, action == Tessera::Action::"view", resource);

@id("anyone-downloads")
permit (principal, action == Tessera::Action::"download", resource);
"#;

/// A confidential UMA client that pre-registered `scope = "download"` (Grant §3.3.4).
const DOWNLOAD_CLIENT: Client = Client { id: "download-client", secret: Some(SECRET) };

/// A server deciding with [`ANYONE`] (and the demo `trust.cedar`), `download-client` registered too.
async fn anyone_may_view(store: StoreKind) -> Uma {
    let trust = trust_policy();
    let clients = format!(
        "[[clients]]\nclient_id = \"{}\"\nclient_secret = \"{SECRET}\"\ngrant_types = [\"{UMA_GRANT}\"]\n\
         scope = \"download\"\n",
        DOWNLOAD_CLIENT.id
    );
    Uma::start_with_policies(store, Some(&[("anyone.cedar", ANYONE), ("trust.cedar", &trust)]), &clients).await
}

/// G-3.3-a: a public client (`client_id` in the form, no secret) redeems a ticket.
async fn a_public_client_redeems_a_ticket(store: StoreKind) {
    let u = anyone_may_view(store).await;
    let doc = u.resource(&u.pat, DOCUMENT, &["view", "download"]).await;
    let t = u.ticket(&doc, &["view"]).await;
    let r = u.grant(PUBLIC_CLIENT, &t, &[]).await;
    let rpt = token_of(r.rpt("public client, no claims", &[]), "access_token");
    let intro = u.introspect(&u.pat, &rpt).await;
    assert_eq!(active_rpt(&intro, "public-client", &u.t.base), perms(&[(&doc, &["view"])]));
    u.stop().await;
}

/// G-3.3.4-b/c/d/e/j, A-5, A-23: a client's `scope` is added where it registered the scope and the
/// resource offers it; never replaces the ticket's scopes.
async fn client_scopes_are_added_where_registered_and_offered(store: StoreKind) {
    let u = anyone_may_view(store).await;
    let r1 = u.resource(&u.pat, DOCUMENT, &["view", "download"]).await;
    let r2 = u.resource(&u.pat, DOCUMENT, &["view"]).await;
    let both =
        json!([{"resource_id": r1, "resource_scopes": ["view"]}, {"resource_id": r2, "resource_scopes": ["view"]}]);

    let t = u.ticket_with(&u.pat, both.clone()).await;
    let r = u.grant(DOWNLOAD_CLIENT, &t, &[("scope", "download")]).await;
    let rpt = token_of(r.rpt("registered scope=download", &[]), "access_token");
    assert_eq!(
        active_rpt(&u.introspect(&u.pat, &rpt).await, "download-client", &u.t.base),
        perms(&[(&r1, &["view", "download"]), (&r2, &["view"])])
    );

    // A client that did not register `download`: ignored, not an error (A-5).
    let t = u.ticket_with(&u.pat, both.clone()).await;
    let r = u.grant(OTHER_CLIENT, &t, &[("scope", "download")]).await;
    let rpt = token_of(r.rpt("unregistered scope=download", &[]), "access_token");
    assert_eq!(
        active_rpt(&u.introspect(&u.pat, &rpt).await, "other-client", &u.t.base),
        perms(&[(&r1, &["view"]), (&r2, &["view"])])
    );

    let t = u.ticket_with(&u.pat, both).await;
    u.grant(DOWNLOAD_CLIENT, &t, &[("scope", "teleport")]).await.error("scope=teleport", 400, "invalid_scope");

    // A zero-scope permission: the registered client scope fills it; without one, nothing to assess.
    let t = u.ticket_with(&u.pat, json!({"resource_id": r1, "resource_scopes": []})).await;
    let r = u.grant(DOWNLOAD_CLIENT, &t, &[("scope", "download")]).await;
    let rpt = token_of(r.rpt("zero-scope + scope=download", &[]), "access_token");
    assert_eq!(
        active_rpt(&u.introspect(&u.pat, &rpt).await, "download-client", &u.t.base),
        perms(&[(&r1, &["download"])])
    );
    let t = u.ticket_with(&u.pat, json!({"resource_id": r1, "resource_scopes": []})).await;
    u.grant(DOWNLOAD_CLIENT, &t, &[]).await.error("zero-scope, no scope", 400, "invalid_scope");
    u.stop().await;
}

/// Threats D4: two concurrent upgrades of one RPT, five rounds: exactly one wins each time.
async fn concurrent_upgrades_of_one_rpt_have_one_winner(store: StoreKind) {
    let u = Uma::start(store).await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let idt = u.id_token(UMA_CLIENT, "dr-bob");
    for round in 1..=5 {
        let case = format!("round {round}");
        let rpt1 = token_of(&u.rpt_for(UMA_CLIENT, &r2, &["read"], &[]).await, "access_token");
        let (ta, tb) = (u.ticket(&r1, &["read"]).await, u.ticket(&r1, &["read"]).await);
        let upgrade = [("rpt", rpt1.as_str())];
        let (a, b) = tokio::join!(
            u.grant_pushing(UMA_CLIENT, &ta, &idt, &upgrade),
            u.grant_pushing(UMA_CLIENT, &tb, &idt, &upgrade),
        );
        let (won, lost) = if a.status == 200 { (a, b) } else { (b, a) };
        let body = won.rpt(&case, &["refresh_token", "upgraded"]);
        assert_eq!(body["upgraded"], true, "{case}: {body}");
        lost.error(&case, 400, "invalid_grant");
        assert_eq!(u.introspect(&u.pat, &rpt1).await, inactive(), "{case}: the upgraded RPT is retired");
        let intro = u.introspect(&u.pat, &token_of(body, "access_token")).await;
        assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&r1, &["read"]), (&r2, &["read"])]));
    }
    u.stop().await;
}

/// G-3.3.1-h, A-12: an expired RPT is still upgraded for a day after its expiry; after that it is
/// unknown, so ignored.
async fn an_expired_rpt_is_upgraded_for_one_day(store: StoreKind) {
    let u = Uma::start_with(store, "[tokens]\nrpt_lifetime_secs = 10\n").await;
    let r1 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;
    let r2 = u.resource(&u.pat, OBSERVATION, &["read", "write"]).await;

    let body = u.rpt_for(UMA_CLIENT, &r2, &["read"], &[]).await;
    assert_eq!(body["expires_in"], 10, "{body}");
    let rpt1 = token_of(&body, "access_token");
    u.clock.advance(11);
    assert_eq!(u.introspect(&u.pat, &rpt1).await, inactive(), "expired");
    let t = u.ticket(&r1, &["read"]).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-bob"), &[("rpt", &rpt1)]).await;
    let body = r.rpt("expired RPT", &["refresh_token", "upgraded"]);
    assert_eq!(body["upgraded"], true, "{body}");
    let rpt2 = token_of(body, "access_token");
    let intro = u.introspect(&u.pat, &rpt2).await;
    assert_eq!(active_rpt(&intro, "uma-client", &u.t.base), perms(&[(&r1, &["read"]), (&r2, &["read"])]));

    // rpt2 expires in 10 s; a day and a second after that it is no RPT any more.
    u.clock.advance(10 + 86_400 + 1);
    let pat = u.pat_of(RS1).await;
    let t = u.ticket_with(&pat, json!({"resource_id": r1, "resource_scopes": ["read"]})).await;
    let r = u.grant_pushing(UMA_CLIENT, &t, &u.id_token(UMA_CLIENT, "dr-bob"), &[("rpt", &rpt2)]).await;
    let rpt3 = token_of(r.rpt("RPT expired over a day ago", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&pat, &rpt3).await, "uma-client", &u.t.base), perms(&[(&r1, &["read"])]));
    u.stop().await;
}

const LAB: &str = "https://example.test/lab-result";
const NOTE: &str = "https://example.test/clinical-note";

/// Lab results need only `npi`; clinical notes need `npi`, `role` and `email`.
const NPI_LABS: &str = r#"@id("npi-reads-lab-results")
permit (
  principal,
  action == Tessera::Action::"read",
  resource in Tessera::ResourceType::"https://example.test/lab-result"
)
when { principal has iss && principal.iss == "http://127.0.0.1:4000" && principal has npi };

@id("physicians-read-notes")
permit (
  principal,
  action == Tessera::Action::"read",
  resource in Tessera::ResourceType::"https://example.test/clinical-note"
)
when {
  principal has iss && principal.iss == "http://127.0.0.1:4000" &&
  principal has npi && principal has email && principal has role && principal.role == "physician"
};
"#;

/// G-3.3.1-f, A-13: a PCT keeps only the claims the granting policies read, never the token's others.
async fn a_pct_keeps_only_the_claims_the_granting_policy_read(store: StoreKind) {
    let trust = trust_policy();
    let u = Uma::start_with_policies(store, Some(&[("labs.cedar", NPI_LABS), ("trust.cedar", &trust)]), "").await;
    let lab1 = u.resource(&u.pat, LAB, &["read"]).await;
    let lab2 = u.resource(&u.pat, LAB, &["read"]).await;
    let note1 = u.resource(&u.pat, NOTE, &["read"]).await;
    let note2 = u.resource(&u.pat, NOTE, &["read"]).await;
    let mut claims = physician_claims(PCT_CLIENT.id, "dr-bob", u.now());
    claims["email"] = json!("bob@hospital.example");
    let idt = sign_id_token(&claims);

    // npi, role and email pushed; the granting policy read only npi.
    let t = u.ticket(&lab1, &["read"]).await;
    let r = u.grant_pushing(PCT_CLIENT, &t, &idt, &[]).await;
    let pct = token_of(r.rpt("lab, pushed", &["refresh_token", "pct"]), "pct");

    let t = u.ticket(&lab2, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", &pct)]).await;
    let rpt = token_of(r.rpt("lab, PCT only", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "pct-client", &u.t.base), perms(&[(&lab2, &["read"])]));

    // The PCT kept npi, not role nor email: only those two are asked for.
    let t = u.ticket(&note1, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", &pct)]).await;
    let body = r.error("note, PCT only", 403, "need_info");
    let asked: Vec<_> = ["email", "role"]
        .iter()
        .map(|n| ((*n).to_owned(), vec![IDT.to_owned()], vec![IDP_ISSUER.to_owned()]))
        .collect();
    assert_eq!(required_claims(body), asked);
    // The same token pushed again does satisfy the note policy; its PCT keeps all three.
    let r = u.grant_pushing(PCT_CLIENT, &r.str("ticket"), &idt, &[]).await;
    let pct2 = token_of(r.rpt("note, pushed", &["refresh_token", "pct"]), "pct");
    let t = u.ticket(&note2, &["read"]).await;
    let r = u.grant(PCT_CLIENT, &t, &[("pct", &pct2)]).await;
    let rpt = token_of(r.rpt("note, second PCT only", &["refresh_token"]), "access_token");
    assert_eq!(active_rpt(&u.introspect(&u.pat, &rpt).await, "pct-client", &u.t.base), perms(&[(&note2, &["read"])]));
    u.stop().await;
}

both_stores!(
    need_info_then_a_pushed_id_token_gets_an_rpt,
    an_id_token_pushed_with_the_first_request_gets_an_rpt,
    policy_denials_are_request_denied_and_consume_the_ticket,
    partial_grants_hold_what_was_granted,
    owner_approval_by_polling,
    unknown_expired_used_and_foreign_tickets_are_one_invalid_grant,
    bad_claim_tokens_are_need_info,
    scope_parameter_and_request_errors,
    rpt_upgrade,
    pct_for_pushed_claims,
    refresh_of_rpts,
    revocation_of_rpts_and_refresh_tokens,
    jwt_rpts_verify_with_the_published_keys,
    fifty_concurrent_redemptions_of_one_ticket,
    deleting_a_resource_revokes_its_rpts,
    every_assessment_is_audited,
    a_public_client_redeems_a_ticket,
    client_scopes_are_added_where_registered_and_offered,
    concurrent_upgrades_of_one_rpt_have_one_winner,
    an_expired_rpt_is_upgraded_for_one_day,
    a_pct_keeps_only_the_claims_the_granting_policy_read,
);
