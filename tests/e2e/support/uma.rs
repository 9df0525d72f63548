//! Shared set-up for the UMA grant tests (issue 7): a partner IdP key that signs ID tokens in the
//! test, a verifiers folder trusting it (file `partner-idp-oidc.toml`, the id the demo policy
//! `trust.cedar` trusts), the static clients, a resource server bound to alice (two of them, for
//! checklist A-14), and one call per endpoint that checks the response headers on the way.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tessera::clock::{Clock, FixedClock, SystemClock};
use tessera::config::SigningAlgorithm;

use super::oauth::{basic, form};
use super::{Options, StoreKind, TestAs, TestDb};

pub const UMA_GRANT: &str = "urn:ietf:params:oauth:grant-type:uma-ticket";
pub const IDT: &str = tessera::verifiers::FORMAT_OIDC;
/// The partner IdP's issuer, as the demo policies name it.
pub const IDP_ISSUER: &str = "http://127.0.0.1:4000";
/// A FHIR type: `heart/fhir.cedar#physicians-read` grants `read`, `#fhir-no-write` forbids `write`.
pub const OBSERVATION: &str = "http://hl7.org/fhir/Observation";
/// The sensitive category: `read` waits for the owner's approval.
pub const BEHAVIORAL: &str = "https://fhir.hospital.example/category/behavioral-health";
pub const SECRET: &str = "uma-test-secret-0123456789abcdefghijkl";
/// The one verifier of the tests, named as the demo policy `trust.cedar` trusts it.
pub const VERIFIER_ID: &str = "partner-idp-oidc";

/// A client of the test configuration.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub id: &'static str,
    /// `None`: a public client (`token_endpoint_auth_method = "none"`).
    pub secret: Option<&'static str>,
}

/// The main UMA client: Basic, UMA grant + refresh_token, registered `scope = "read"`.
pub const UMA_CLIENT: Client = Client { id: "uma-client", secret: Some(SECRET) };
/// A second UMA client, no registered scopes, no refresh_token grant.
pub const OTHER_CLIENT: Client = Client { id: "other-client", secret: Some(SECRET) };
/// A UMA client with `persist_pushed_claims = true`.
pub const PCT_CLIENT: Client = Client { id: "pct-client", secret: Some(SECRET) };
/// A public UMA client.
pub const PUBLIC_CLIENT: Client = Client { id: "public-client", secret: None };
/// The resource server bound to alice (client_credentials PATs).
pub const RS1: Client = Client { id: "demo-rs", secret: Some(SECRET) };
/// A second resource server bound to alice.
pub const RS2: Client = Client { id: "demo-rs2", secret: Some(SECRET) };

/// The `[[clients]]` of every UMA test.
pub fn clients_toml() -> String {
    format!(
        "[[clients]]\nclient_id = \"uma-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\", \"refresh_token\"]\nscope = \"read\"\n\
         [[clients]]\nclient_id = \"other-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\"]\n\
         [[clients]]\nclient_id = \"pct-client\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"{UMA_GRANT}\", \"refresh_token\"]\npersist_pushed_claims = true\n\
         [[clients]]\nclient_id = \"public-client\"\ntoken_endpoint_auth_method = \"none\"\n\
         grant_types = [\"{UMA_GRANT}\"]\n\
         [[clients]]\nclient_id = \"demo-rs\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"client_credentials\"]\nscope = \"uma_protection\"\nowner = \"alice\"\n\
         [[clients]]\nclient_id = \"demo-rs2\"\nclient_secret = \"{SECRET}\"\n\
         grant_types = [\"client_credentials\"]\nscope = \"uma_protection\"\nowner = \"alice\"\n"
    )
}

/// The partner IdP's RSA key, generated once per test process (RSA generation is slow on CI).
pub struct IdpKey {
    pub kid: String,
    pub private_pem: String,
    pub public_jwk: Value,
}

pub fn idp_key() -> &'static IdpKey {
    static KEY: OnceLock<IdpKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let rec = tessera::keys::generate(SigningAlgorithm::RS256, 1, 0).expect("generate the IdP key");
        IdpKey {
            kid: rec.kid,
            private_pem: rec.private_pem,
            public_jwk: serde_json::from_str(&rec.public_jwk).expect("public JWK is JSON"),
        }
    })
}

/// Signs `claims` as the partner IdP (RS256, its `kid`).
pub fn sign_id_token(claims: &Value) -> String {
    let key = idp_key();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).expect("IdP key"))
        .expect("sign ID token")
}

/// The claims of a physician's ID token issued to `aud` at `now`.
pub fn physician_claims(aud: &str, sub: &str, now: i64) -> Value {
    json!({
        "iss": IDP_ISSUER, "sub": sub, "aud": aud, "iat": now, "exp": now + 300,
        "npi": "1234567893", "role": "physician",
    })
}

/// A verifiers folder in the test's folder with one file, `partner-idp-oidc.toml`, trusting the
/// test IdP key for the three confidential UMA clients. Returns the `verifiers_dir` line.
pub fn verifiers_toml(db: &TestDb) -> String {
    let dir = db.dir().join("verifiers");
    std::fs::create_dir_all(&dir).expect("verifiers dir");
    let jwks = json!({"keys": [idp_key().public_jwk]}).to_string();
    std::fs::write(
        dir.join(format!("{VERIFIER_ID}.toml")),
        format!(
            "format = \"oidc\"\nissuer = \"{IDP_ISSUER}\"\n\
             audiences = [\"uma-client\", \"other-client\", \"pct-client\", \"public-client\"]\n\
             allowed_clients = [\"uma-client\", \"other-client\", \"pct-client\"]\n\
             algorithms = [\"RS256\"]\nmax_age_secs = 3600\nsingle_use = false\n\
             may_assert = [\"npi\", \"role\", \"email\", \"email_verified\"]\n\
             [keys]\njwks = '{jwks}'\n\
             [[claims]]\nfrom = \"npi\"\ntype = \"string\"\n\
             [[claims]]\nfrom = \"role\"\ntype = \"string\"\n\
             [[claims]]\nfrom = \"email\"\ntype = \"string\"\n\
             [[claims]]\nfrom = \"email_verified\"\ntype = \"bool\"\n"
        ),
    )
    .expect("write verifier");
    format!("verifiers_dir = \"{}\"\n", dir.display())
}

/// Writes `files` (name → Cedar text) into a fresh `policies` folder of the test's folder; returns it.
pub fn write_policies(db: &TestDb, files: &[(&str, &str)]) -> PathBuf {
    let dir = db.dir().join("policies");
    std::fs::create_dir_all(&dir).expect("policies dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write policy");
    }
    dir
}

/// The demo `policies/trust.cedar` (claims count only through a trusted verifier), for custom sets.
pub fn trust_policy() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/trust.cedar")).expect("trust.cedar")
}

/// A response: status, headers, JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    async fn of(res: reqwest::Response) -> Reply {
        let (status, headers, body) = super::oauth::read(res).await;
        Reply { status: status.as_u16(), headers, body }
    }

    /// The member names of the body.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
    }

    pub fn str(&self, member: &str) -> String {
        self.body[member].as_str().unwrap_or_else(|| panic!("`{member}` is not a string: {self:?}")).to_owned()
    }

    /// The headers every token-endpoint answer carries (RFC 6749 §5.1, checklist R6749-5.1-a).
    pub fn assert_token_headers(&self, case: &str) {
        assert_eq!(self.headers["content-type"], "application/json", "{case}: {}", self.body);
        assert_eq!(self.headers["cache-control"], "no-store", "{case}: {}", self.body);
        assert_eq!(self.headers["pragma"], "no-cache", "{case}: {}", self.body);
    }

    /// A token-endpoint error: exact status and code, the no-store headers, a printable
    /// `error_description` (R6749-5.2-d), and exactly the members UMA defines for that code.
    /// Returns the body.
    pub fn error(&self, case: &str, status: u16, error: &str) -> &Value {
        assert_eq!((self.status, self.body["error"].as_str()), (status, Some(error)), "{case}: {}", self.body);
        self.assert_token_headers(case);
        let desc = self.body["error_description"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no error_description: {}", self.body));
        assert!(
            desc.bytes().all(|b| b == 0x20 || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)),
            "{case}: error_description has characters outside RFC 6749 §5.2: {desc}"
        );
        let expected: BTreeSet<&str> = match error {
            "need_info" => ["error", "error_description", "ticket", "required_claims"].into(),
            "request_submitted" => ["error", "error_description", "ticket", "interval"].into(),
            _ => ["error", "error_description"].into(),
        };
        assert_eq!(self.keys(), expected, "{case}: {}", self.body);
        if matches!(error, "need_info" | "request_submitted") {
            assert!(self.body["ticket"].as_str().is_some_and(|t| t.len() >= 22), "{case}: {}", self.body);
        }
        &self.body
    }

    /// A successful UMA grant: 200, the headers, `token_type` Bearer, a positive `expires_in`, no
    /// `scope` (Grant §3.3.5), and exactly the `members` listed (besides those three).
    pub fn rpt(&self, case: &str, members: &[&str]) -> &Value {
        assert_eq!(self.status, 200, "{case}: {}", self.body);
        self.assert_token_headers(case);
        assert!(self.body["access_token"].as_str().is_some_and(|s| !s.is_empty()), "{case}: {}", self.body);
        assert_eq!(self.body["token_type"], "Bearer", "{case}: {}", self.body);
        assert!(self.body["expires_in"].as_i64().is_some_and(|s| s > 0), "{case}: {}", self.body);
        let mut expected: BTreeSet<&str> = ["access_token", "token_type", "expires_in"].into();
        expected.extend(members.iter().copied());
        assert_eq!(self.keys(), expected, "{case}: {}", self.body);
        &self.body
    }
}

/// One server over a fresh store with the UMA test configuration, on a fixed clock; PATs of alice
/// for both resource servers.
pub struct Uma {
    pub db: TestDb,
    pub t: TestAs,
    pub clock: FixedClock,
    /// alice's PAT at `demo-rs`.
    pub pat: String,
    /// alice's PAT at `demo-rs2`.
    pub pat2: String,
}

impl Uma {
    pub async fn start(store: StoreKind) -> Uma {
        Self::start_with(store, "").await
    }

    /// `extra`: more TOML (e.g. `[uma]` or `[tokens]` tables); appended after the clients.
    pub async fn start_with(store: StoreKind, extra: &str) -> Uma {
        Self::start_with_policies(store, None, extra).await
    }

    /// As [`Uma::start_with`], deciding with `policies` (file name → Cedar text, written into a
    /// `policies` folder of the test's folder) instead of the demo policies; `None`: the demo ones.
    pub async fn start_with_policies(store: StoreKind, policies: Option<&[(&str, &str)]>, extra: &str) -> Uma {
        let db = TestDb::new(store).await;
        let clock = FixedClock::new(SystemClock.now());
        let toml = format!("{}{}{extra}", verifiers_toml(&db), clients_toml());
        let dir = policies.map(|files| write_policies(&db, files));
        let t = TestAs::start_with(
            &db,
            Options {
                extra_toml: &toml,
                fixed_clock: Some(clock.clone()),
                policies_dir: dir.as_deref(),
                ..Default::default()
            },
        )
        .await;
        let mut uma = Uma { db, t, clock, pat: String::new(), pat2: String::new() };
        uma.pat = uma.pat_of(RS1).await;
        uma.pat2 = uma.pat_of(RS2).await;
        uma
    }

    pub async fn stop(self) {
        self.t.stop().await;
        self.db.drop_now().await;
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A client_credentials PAT of a resource server bound to alice.
    pub async fn pat_of(&self, rs: Client) -> String {
        let res = self
            .t
            .http
            .post(self.t.url("/token"))
            .header("authorization", basic(rs.id, rs.secret.unwrap_or_default()))
            .header("content-type", super::oauth::FORM)
            .body(form(&[("grant_type", "client_credentials")]))
            .send()
            .await
            .expect("POST /token");
        let r = Reply::of(res).await;
        assert_eq!(r.status, 200, "PAT for {}: {}", rs.id, r.body);
        r.str("access_token")
    }

    /// A physician's ID token for `client`, issued now, subject `sub`.
    pub fn id_token(&self, client: Client, sub: &str) -> String {
        sign_id_token(&physician_claims(client.id, sub, self.now()))
    }

    /// Registers a resource with the PAT; returns its id.
    pub async fn resource(&self, pat: &str, kind: &str, scopes: &[&str]) -> String {
        let res = self
            .t
            .http
            .post(self.t.url("/uma/resources"))
            .bearer_auth(pat)
            .json(&json!({"name": format!("{kind} record"), "type": kind, "resource_scopes": scopes}))
            .send()
            .await
            .expect("POST /uma/resources");
        let r = Reply::of(res).await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.str("_id")
    }

    /// A permission ticket for `permissions` (the body of FedAuthz §4.1) with the PAT.
    pub async fn ticket_with(&self, pat: &str, permissions: Value) -> String {
        let res = self
            .t
            .http
            .post(self.t.url("/uma/permission"))
            .bearer_auth(pat)
            .json(&permissions)
            .send()
            .await
            .expect("POST /uma/permission");
        let r = Reply::of(res).await;
        assert_eq!(r.status, 201, "{permissions} → {}", r.body);
        r.str("ticket")
    }

    /// A ticket from `demo-rs` for one resource and its scopes.
    pub async fn ticket(&self, rid: &str, scopes: &[&str]) -> String {
        self.ticket_with(&self.pat, json!({"resource_id": rid, "resource_scopes": scopes})).await
    }

    /// POST /token as `client` with `pairs` (form-encoded; a public client sends its `client_id`).
    pub async fn token(&self, client: Client, pairs: &[(&str, &str)]) -> Reply {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        let mut req = self.t.http.post(self.t.url("/token")).header("content-type", super::oauth::FORM);
        match client.secret {
            Some(secret) => req = req.header("authorization", basic(client.id, secret)),
            None => all.push(("client_id", client.id)),
        }
        Reply::of(req.body(form(&all)).send().await.expect("POST /token")).await
    }

    /// The UMA grant: `ticket` plus `extra` parameters.
    pub async fn grant(&self, client: Client, ticket: &str, extra: &[(&str, &str)]) -> Reply {
        let mut pairs = vec![("grant_type", UMA_GRANT), ("ticket", ticket)];
        pairs.extend_from_slice(extra);
        self.token(client, &pairs).await
    }

    /// The UMA grant pushing `id_token` as an OpenID Connect ID token.
    pub async fn grant_pushing(&self, client: Client, ticket: &str, id_token: &str, extra: &[(&str, &str)]) -> Reply {
        let mut pairs = vec![("claim_token", id_token), ("claim_token_format", IDT)];
        pairs.extend_from_slice(extra);
        self.grant(client, ticket, &pairs).await
    }

    /// A physician (`dr-bob`) gets an RPT for a fresh ticket on `rid`/`scopes` as `client`; returns the
    /// success body.
    pub async fn rpt_for(&self, client: Client, rid: &str, scopes: &[&str], extra: &[(&str, &str)]) -> Value {
        let ticket = self.ticket(rid, scopes).await;
        let r = self.grant_pushing(client, &ticket, &self.id_token(client, "dr-bob"), extra).await;
        assert_eq!(r.status, 200, "RPT for {} on {rid} {scopes:?}: {}", client.id, r.body);
        r.body
    }

    /// POST /introspect with a PAT as the caller's credential.
    pub async fn introspect(&self, pat: &str, token: &str) -> Value {
        let res = self
            .t
            .http
            .post(self.t.url("/introspect"))
            .bearer_auth(pat)
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /introspect");
        let r = Reply::of(res).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store");
        r.body
    }

    /// POST /introspect authenticated as the client (Basic).
    pub async fn introspect_as(&self, client: Client, token: &str) -> Value {
        let res = self
            .t
            .http
            .post(self.t.url("/introspect"))
            .header("authorization", basic(client.id, client.secret.unwrap_or_default()))
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST /introspect");
        let r = Reply::of(res).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// POST /revoke as `client`; returns the status.
    pub async fn revoke(&self, client: Client, pairs: &[(&str, &str)]) -> u16 {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        let mut req = self.t.http.post(self.t.url("/revoke")).header("content-type", super::oauth::FORM);
        match client.secret {
            Some(secret) => req = req.header("authorization", basic(client.id, secret)),
            None => all.push(("client_id", client.id)),
        }
        req.body(form(&all)).send().await.expect("POST /revoke").status().as_u16()
    }

    /// A request to the protection API or the owner's API with a PAT.
    pub async fn api(&self, method: reqwest::Method, path: &str, pat: &str, body: Option<Value>) -> Reply {
        let mut req = self.t.http.request(method, self.t.url(path)).bearer_auth(pat);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Reply::of(req.send().await.expect("request")).await
    }

    /// `tessera audit tail` on this store, through a configuration file with the same database;
    /// one parsed JSON object per line.
    pub fn audit_tail(&self) -> Vec<Value> {
        let manifest = env!("CARGO_MANIFEST_DIR");
        let path = super::write_config(
            self.db.dir(),
            "audit.toml",
            &format!(
                "database_url = \"{}\"\npolicies_dir = \"{manifest}/policies\"\n\
                 policy_schema = \"{manifest}/schemas/tessera.cedarschema\"\n",
                self.db.url
            ),
        );
        let (code, out, err) = super::process::run(
            super::process::tessera(self.db.dir()).arg("--config").arg(&path).args(["audit", "tail", "--limit", "100"]),
        );
        assert_eq!(code, 0, "tessera audit tail: {err}");
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
            .collect()
    }
}

/// The permissions of an active RPT's introspection, checked against FedAuthz §5.1.1 (each has
/// `resource_id`, `resource_scopes` and maybe an integer `exp` no later than the token's), sorted by
/// resource id, scopes sorted.
pub fn permissions(intro: &Value) -> Vec<(String, Vec<String>)> {
    let token_exp = intro["exp"].as_i64().unwrap_or_else(|| panic!("no exp: {intro}"));
    let mut out: Vec<(String, Vec<String>)> = intro["permissions"]
        .as_array()
        .unwrap_or_else(|| panic!("no permissions array: {intro}"))
        .iter()
        .map(|p| {
            let keys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(keys.iter().all(|k| ["resource_id", "resource_scopes", "exp"].contains(k)), "{p}");
            if let Some(exp) = p.get("exp") {
                assert!(exp.as_i64().is_some_and(|e| e <= token_exp), "permission exp after the token's: {intro}");
            }
            let mut scopes: Vec<String> =
                p["resource_scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
            scopes.sort();
            (p["resource_id"].as_str().unwrap().to_owned(), scopes)
        })
        .collect();
    out.sort();
    out
}

/// `(rid, [scopes])` pairs, sorted, for comparison with [`permissions`].
pub fn perms(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = list
        .iter()
        .map(|(r, s)| {
            let mut s: Vec<String> = s.iter().map(|x| (*x).to_owned()).collect();
            s.sort();
            ((*r).to_owned(), s)
        })
        .collect();
    out.sort();
    out
}

/// An active RPT's introspection (FedAuthz §5.1.1, RFC 7662 §2.2): exactly `active`, `permissions`,
/// `exp`, `iat`, `client_id`, `iss`, `token_type` — no `scope`. Returns its permissions.
pub fn active_rpt(intro: &Value, client_id: &str, issuer: &str) -> Vec<(String, Vec<String>)> {
    let keys: BTreeSet<&str> = intro.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["active", "permissions", "exp", "iat", "client_id", "iss", "token_type"].into(),
        "introspection members: {intro}"
    );
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["client_id"], client_id, "{intro}");
    assert_eq!(intro["iss"], issuer, "{intro}");
    assert_eq!(intro["token_type"], "Bearer", "{intro}");
    assert!(intro["iat"].is_i64(), "{intro}");
    permissions(intro)
}

pub fn inactive() -> Value {
    json!({"active": false})
}
