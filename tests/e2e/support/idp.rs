//! A real OpenID Provider on loopback for the tests: `tests/idp/idp.mjs`, our small configuration of
//! the npm package `oidc-provider` (pinned in `tests/idp/package.json`), run by node.
//!
//! - [`ensure_installed`] runs `npm ci` in `tests/idp` once when its `node_modules` lacks the pinned
//!   package (once per process, and under a file lock across the test processes).
//! - [`Idp::start`] starts the provider on a free port and waits until it answers its discovery
//!   document; dropping the [`Idp`] stops it.
//! - [`Idp::id_token`] signs a person in at the provider over plain HTTP, as the UMA client
//!   `uma-client` would (authorization code + PKCE through the provider's development login and
//!   consent pages), and returns the ID token, for tests that push it as a claim token.
//! - [`Agent`] is that HTTP "browser": a cookie jar and no automatic redirects; [`forms`] reads the
//!   forms of a page.
//!
//! Without node and npm the tests that need the provider say `skipped: …` and stop, except under CI
//! (`CI=true`), where a missing node fails the run (`.ci/run` installs it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Tessera's client at the provider (the relying party of interactive claims gathering).
pub const TESSERA_CLIENT: &str = "tessera";
/// Its secret at the provider (`IDP_TESSERA_SECRET`).
pub const TESSERA_SECRET: &str = "tessera-at-the-idp-0123456789abcdef";
/// The UMA client's client at the provider, whose ID tokens are pushed to Tessera.
pub const UMA_CLIENT: &str = "uma-client";
/// Its secret at the provider (`IDP_CLIENT_SECRET`).
pub const UMA_CLIENT_SECRET: &str = "uma-client-at-the-idp-0123456789abcdef";
/// The redirect URI `idp.mjs` always registers for `uma-client`; never served (the code is read
/// from the redirect's `Location`).
pub const UMA_CLIENT_CALLBACK: &str = "http://127.0.0.1:9/uma-client/callback";
/// What `uma-client` asks for.
pub const SCOPES: &str = "openid email profile healthcare";

const READY_WITHIN: Duration = Duration::from_secs(30);

/// `tests/idp`.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("idp")
}

fn on_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `node_modules` holds the exact `oidc-provider` version `package.json` pins.
fn installed(dir: &Path) -> bool {
    let read = |p: PathBuf| -> Option<Value> { serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok() };
    let Some(wanted) =
        read(dir.join("package.json")).and_then(|p| p["dependencies"]["oidc-provider"].as_str().map(str::to_owned))
    else {
        panic!("tests/idp/package.json does not pin oidc-provider");
    };
    read(dir.join("node_modules").join("oidc-provider").join("package.json"))
        .is_some_and(|p| p["version"].as_str() == Some(wanted.as_str()))
}

/// Makes sure the provider can run: node and npm present, `npm ci` done. Returns `tests/idp`, or
/// `None` after printing `skipped: …` when node or npm is missing outside CI. Under CI a missing
/// node panics. Blocking (it may run `npm ci`): call it from `spawn_blocking` in async code, as
/// [`Idp::start`] does.
pub fn ensure_installed() -> Option<&'static Path> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let outcome = READY.get_or_init(|| {
        if !runs("node") || !runs("npm") {
            return Err("node and npm are not installed (apt-get install nodejs npm)".to_owned());
        }
        let dir = idp_dir();
        if !installed(&dir) {
            // Several test processes may get here at once: one installs, the others wait for it.
            let lock_path = dir.join(".npm-ci.lock");
            let lock = std::fs::File::create(&lock_path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
            lock.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
            if !installed(&dir) {
                let out = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&dir)
                    .output()
                    .expect("run npm ci");
                assert!(
                    out.status.success(),
                    "npm ci in {} failed: {}\n{}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(installed(&dir), "npm ci did not install the pinned oidc-provider");
            }
            drop(lock);
        }
        Ok(dir)
    });
    match outcome {
        Ok(dir) => Some(dir.as_path()),
        Err(why) => {
            assert!(!on_ci(), "the OpenID Provider tests must run in CI: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released: the provider binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The issuer of a provider started on `port`.
pub fn issuer_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The running provider; stopped on drop.
pub struct Idp {
    child: Child,
    issuer: String,
    logs: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    /// Starts the provider on a free port with a key it generates, `redirects` registered for both
    /// clients. `None` (after `skipped: …`) when node is missing outside CI.
    pub async fn start(redirects: &[String]) -> Option<Idp> {
        Self::start_on(free_port(), redirects, None).await
    }

    /// Starts the provider on `port` (see [`free_port`]; the issuer is [`issuer_on`]`(port)`),
    /// signing with the private JWK in `jwk_file`, or a key it generates.
    pub async fn start_on(port: u16, redirects: &[String], jwk_file: Option<&Path>) -> Option<Idp> {
        let dir = tokio::task::spawn_blocking(ensure_installed).await.expect("install task")?;
        let logs = tempfile::tempdir().expect("temp dir");
        let out = std::fs::File::create(logs.path().join("stdout")).expect("log file");
        let err = std::fs::File::create(logs.path().join("stderr")).expect("log file");
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("idp.mjs"))
            .current_dir(dir)
            .env("IDP_PORT", port.to_string())
            .env("IDP_ISSUER", issuer_on(port))
            .env("IDP_REDIRECTS", redirects.join(","))
            .env("IDP_TESSERA_SECRET", TESSERA_SECRET)
            .env("IDP_CLIENT_SECRET", UMA_CLIENT_SECRET)
            .env_remove("IDP_JWK_FILE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(f) = jwk_file {
            cmd.env("IDP_JWK_FILE", f);
        }
        let child = cmd.spawn().expect("start node tests/idp/idp.mjs");
        let mut idp = Idp { child, issuer: issuer_on(port), logs };
        idp.wait_ready().await;
        Some(idp)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// What the provider printed so far (stdout, then stderr).
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.logs.path().join(n)).unwrap_or_default();
        format!("--- stdout\n{}--- stderr\n{}", read("stdout"), read("stderr"))
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(res) = http.get(&url).send().await
                && res.status() == StatusCode::OK
                && let Ok(doc) = res.json::<Value>().await
                && doc["issuer"] == self.issuer.as_str()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the OpenID Provider exited ({status}) before it was ready:\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "the OpenID Provider did not answer {url} in time:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The provider's discovery document.
    pub async fn discovery(&self) -> Value {
        let res = reqwest::get(format!("{}/.well-known/openid-configuration", self.issuer)).await.expect("discovery");
        assert_eq!(res.status(), 200);
        res.json().await.expect("discovery JSON")
    }

    /// An ID token for `user` (`alice`, `bob`), issued to `uma-client`, obtained through the
    /// provider's own flow: authorization code with PKCE S256, the development login form (any
    /// password) and the consent form, over plain HTTP.
    pub async fn id_token(&self, user: &str) -> String {
        self.tokens(user).await["id_token"].as_str().expect("id_token in the token response").to_owned()
    }

    /// The whole token response of [`Idp::id_token`].
    pub async fn tokens(&self, user: &str) -> Value {
        let doc = self.discovery().await;
        let (verifier, challenge) = pkce();
        let state = random("state");
        let mut auth = url::Url::parse(doc["authorization_endpoint"].as_str().unwrap()).unwrap();
        auth.query_pairs_mut()
            .append_pair("client_id", UMA_CLIENT)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", UMA_CLIENT_CALLBACK)
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("nonce", &random("nonce"))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut agent = Agent::new();
        let first = agent.get(auth.as_str()).await;
        let landed = self.sign_in(&mut agent, first, user, UMA_CLIENT_CALLBACK).await;
        let query: BTreeMap<String, String> = landed.query_pairs().into_owned().collect();
        assert_eq!(query.get("state"), Some(&state), "{landed}");
        let code = query.get("code").unwrap_or_else(|| panic!("no code in {landed}"));
        let res = reqwest::Client::new()
            .post(doc["token_endpoint"].as_str().unwrap())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", UMA_CLIENT_CALLBACK),
                ("code_verifier", &verifier),
                ("client_id", UMA_CLIENT),
                ("client_secret", UMA_CLIENT_SECRET),
            ])
            .send()
            .await
            .expect("token request");
        let status = res.status();
        let body: Value = res.json().await.expect("token response JSON");
        assert_eq!(status, 200, "token response: {body}");
        body
    }

    /// Follows the provider's redirects from `res` (an answer of its authorization endpoint),
    /// signing in as `user` and consenting on the way, until a redirect leaves the provider for a URL
    /// starting with `until`; returns that URL (not fetched).
    pub async fn sign_in(&self, agent: &mut Agent, mut res: Page, user: &str, until: &str) -> url::Url {
        for _ in 0..12 {
            let loc = res.location().unwrap_or_else(|| panic!("the provider did not redirect: {res:?}"));
            let url = url::Url::parse(&self.issuer).unwrap().join(&loc).unwrap();
            if url.as_str().starts_with(until) {
                return url;
            }
            assert!(url.as_str().starts_with(&self.issuer), "the provider sent the browser to {url}");
            if url.path().starts_with("/interaction/") {
                let page = agent.get(url.as_str()).await;
                assert_eq!(page.status, 200, "{page:?}");
                let fields: Vec<(&str, &str)> = if page.body.contains("name=\"login\"") {
                    vec![("prompt", "login"), ("login", user), ("password", "any password")]
                } else {
                    vec![("prompt", "consent")]
                };
                res = agent.post(url.as_str(), &fields).await;
            } else {
                res = agent.get(url.as_str()).await;
            }
        }
        panic!("too many redirects at the provider");
    }
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest))
}

fn random(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// One answer, body read as text.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<String> {
        self.headers.get("location").map(|v| v.to_str().expect("ASCII Location").to_owned())
    }

    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap_or_default().to_owned()).unwrap_or_default()
    }

    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap_or_default().to_owned()).collect()
    }
}

/// A user agent over plain HTTP on one host: a cookie jar (name → value; paths, ports and expiry
/// are not told apart, as every cookie here lives on 127.0.0.1) and no automatic redirects.
pub struct Agent {
    pub http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    pub fn new() -> Agent {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Agent { http, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() { req } else { req.header("cookie", self.cookie_header()) };
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.expect("body");
        let page = Page { status, headers, body };
        for c in page.set_cookies() {
            let pair = c.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let expired = c.to_ascii_lowercase().contains("max-age=0") || c.contains("1970");
            if value.is_empty() || expired {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        page
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req).await
    }

    /// POST of a urlencoded form.
    pub async fn post<K: AsRef<str>, V: AsRef<str>>(&mut self, url: &str, fields: &[(K, V)]) -> Page {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        let req = self.http.post(url).form(&fields);
        self.send(req).await
    }
}

/// A form of a page: its `action`, `method` and named fields (inputs with their `value`, buttons
/// with a `name`), in order. Attribute values are unescaped.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub method: String,
    pub fields: Vec<(String, String)>,
    /// The `id`s of its buttons and inputs.
    pub ids: Vec<String>,
}

impl Form {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Every `<form>` of `html`, read leniently (enough for server-rendered pages, not a real parser).
#[allow(clippy::string_slice, reason = "every index comes from `find` or `char_indices` of the same text")]
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<form").map(|i| i + from) {
        let end = lower[start..].find("</form").map_or(html.len(), |i| i + start);
        let (tag, rest) = tag_at(html, start);
        let attrs = attributes(tag);
        let mut form = Form {
            action: attrs.get("action").cloned().unwrap_or_default(),
            method: attrs.get("method").cloned().unwrap_or_else(|| "get".to_owned()).to_ascii_lowercase(),
            fields: Vec::new(),
            ids: Vec::new(),
        };
        let mut i = rest;
        while let Some(j) = lower[i..end].find('<').map(|j| j + i) {
            let (tag, next) = tag_at(html, j);
            i = next;
            let name = tag.trim_start_matches('<').split(|c: char| c.is_whitespace() || c == '>' || c == '/').next();
            let name = name.unwrap_or_default().to_ascii_lowercase();
            if !matches!(name.as_str(), "input" | "button" | "textarea" | "select") {
                continue;
            }
            let a = attributes(tag);
            if let Some(id) = a.get("id") {
                form.ids.push(id.clone());
            }
            if let Some(n) = a.get("name") {
                form.fields.push((n.clone(), a.get("value").cloned().unwrap_or_default()));
            }
        }
        out.push(form);
        from = end.max(start + 5);
    }
    out
}

/// The tag starting at `start` (`<…>`), and the index just after it.
#[allow(clippy::string_slice, reason = "every index comes from `find` or `char_indices` of the same text")]
fn tag_at(html: &str, start: usize) -> (&str, usize) {
    let mut quote = None;
    for (i, c) in html[start..].char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return (&html[start..=start + i], start + i + 1),
            _ => {}
        }
    }
    (&html[start..], html.len())
}

/// The attributes of one tag, names lower-cased, values unescaped.
#[allow(clippy::string_slice, reason = "every index comes from `find` or `char_indices` of the same text")]
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let inner = tag.trim_start_matches('<').trim_end_matches('>').trim_end_matches('/');
    let mut chars = inner.char_indices().peekable();
    // Skip the tag name.
    while chars.next_if(|(_, c)| !c.is_whitespace()).is_some() {}
    let mut out = BTreeMap::new();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(s, _)) = chars.peek() else { break };
        let mut e = s;
        while let Some((i, _)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            e = i + 1;
        }
        let name = inner[s..e].to_ascii_lowercase();
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let value = if chars.next_if(|(_, c)| *c == '=').is_some() {
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            match chars.peek().copied() {
                Some((i, q @ ('"' | '\''))) => {
                    chars.next();
                    let mut end = inner.len();
                    for (j, c) in chars.by_ref() {
                        if c == q {
                            end = j;
                            break;
                        }
                    }
                    inner[i + 1..end].to_owned()
                }
                Some((i, _)) => {
                    let mut end = inner.len();
                    while let Some((j, _)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                        end = j + 1;
                    }
                    inner[i..end].to_owned()
                }
                None => String::new(),
            }
        } else {
            String::new()
        };
        if name.is_empty() {
            chars.next();
            continue;
        }
        out.insert(name, unescape(&value));
    }
    out
}

/// Undoes HTML escaping of the entities a template engine writes.
#[allow(clippy::string_slice, reason = "every index comes from `find` or `char_indices` of the same text")]
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}
