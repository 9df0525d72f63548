//! Settings: one TOML file (`--config`, else `tessera.toml` if present) with `TESSERA_*` environment
//! overrides, deserialised strictly (`deny_unknown_fields`) and then validated into [`Settings`], whose
//! fields are already the types the server uses. An invalid setting stops the server at start with a
//! message that names the setting.
//!
//! Environment names: top-level keys are `TESSERA_<KEY>` (`TESSERA_DATABASE_URL`); keys inside a table
//! use a double underscore (`TESSERA_TOKENS__RPT_LIFETIME_SECS`). `TESSERA_TEST_*` is reserved for the
//! test suite and `TESSERA_CONFIG` names the file, so neither is read as a setting.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

/// The algorithms Tessera signs with. ES256 is cheap to sign; HEART profiles require RS256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum SigningAlgorithm {
    ES256,
    RS256,
}

impl SigningAlgorithm {
    pub const ALL: [SigningAlgorithm; 2] = [SigningAlgorithm::ES256, SigningAlgorithm::RS256];

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::RS256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The file as written: every field optional, nothing interpreted yet.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    issuer: Option<String>,
    listen: Option<String>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    database_connect_timeout_secs: Option<u64>,
    migrate_on_start: Option<bool>,
    policies_dir: Option<PathBuf>,
    policy_schema: Option<PathBuf>,
    policy_reload_secs: Option<u64>,
    verifiers_dir: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    danger_allow_private_fetch: Option<bool>,
    #[serde(default)]
    registration: RawRegistration,
    #[serde(default)]
    clients: Vec<StaticClient>,
    #[serde(default)]
    signing: RawSigning,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    uma: RawUma,
}

/// Who may use the dynamic registration endpoint (RFC 7591 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    /// Anyone may register: demos and development only (warned at start).
    Open,
    /// Registration needs a bearer initial access token, configured or issued by the CLI.
    InitialAccessToken,
    /// No dynamic registration; clients come from the config file or the CLI.
    Closed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    mode: Option<RegistrationMode>,
    #[serde(default)]
    initial_access_tokens: Vec<String>,
}

/// A client declared in the configuration file (demos, tightly coupled deployments). Validated with
/// the same rules as a dynamic registration.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticClient {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub claims_redirect_uris: Vec<String>,
    pub scope: Option<String>,
    pub client_name: Option<String>,
    /// A JWK Set as a JSON string.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// Binds a resource server to one resource owner: its client_credentials tokens with scope
    /// `uma_protection` are PATs for this owner (tightly coupled deployments).
    pub owner: Option<String>,
    /// Checklist A-13: this client's pushed claims may be kept in a PCT.
    #[serde(default)]
    pub persist_pushed_claims: bool,
}

impl fmt::Debug for StaticClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("token_endpoint_auth_method", &self.token_endpoint_auth_method)
            .finish_non_exhaustive()
    }
}

/// A bearer secret from the configuration; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Configured secrets are compared by digest like generated ones, so they need comparable strength.
pub const MIN_CONFIGURED_SECRET_LEN: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    algorithm: Option<SigningAlgorithm>,
    key_refresh_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    ticket_lifetime_secs: Option<i64>,
    rpt_lifetime_secs: Option<i64>,
    pct_lifetime_secs: Option<i64>,
    pat_lifetime_secs: Option<i64>,
    refresh_token_lifetime_secs: Option<i64>,
    authorization_code_lifetime_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUma {
    rpt_format: Option<RptFormat>,
    partial_grants: Option<bool>,
    poll_interval_secs: Option<i64>,
    pending_ticket_lifetime_secs: Option<i64>,
    local_account_claims: Option<bool>,
    claims_session_lifetime_secs: Option<i64>,
}

/// How RPTs look on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RptFormat {
    /// A random handle; the resource server introspects it (the default).
    Opaque,
    /// A JWS signed with the server's key, carrying the permissions; its digest is stored, so it is
    /// still revocable and introspectable.
    Jwt,
}

/// The UMA grant's choices (checklist ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UmaSettings {
    pub rpt_format: RptFormat,
    /// `false` (default) = all or nothing: an RPT only when every requested scope is granted.
    pub partial_grants: bool,
    /// The `interval` of `request_submitted`, seconds.
    pub poll_interval_secs: i64,
    /// Lifetime of a ticket handed back with `request_submitted` (the owner may take a while).
    pub pending_ticket_lifetime_secs: i64,
    /// Interactive claims gathering offers sign-in with a local Tessera account (verifier id
    /// `local-accounts`). Off by default: policies must trust that source explicitly.
    pub local_account_claims: bool,
    /// How long a person has to finish interactive claims gathering, seconds.
    pub claims_session_lifetime_secs: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    body_limit_bytes: Option<usize>,
    token_body_limit_bytes: Option<usize>,
    shutdown_grace_secs: Option<u64>,
}

/// A database URL whose password never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                // Setting a password on a parsed URL with a password cannot fail.
                let _ = u.set_password(Some("***"));
                f.write_str(u.as_str())
            }
            _ => f.write_str(&self.0),
        }
    }
}

/// Token lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetimes {
    pub ticket: i64,
    pub rpt: i64,
    pub pct: i64,
    pub pat: i64,
    pub refresh_token: i64,
    pub authorization_code: i64,
}

impl TokenLifetimes {
    /// The longest any token Tessera signs may live: a retired signing key stays published this long.
    pub fn longest_signed(&self) -> i64 {
        self.rpt.max(self.pat)
    }
}

/// Validated settings: what the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer identifier exactly as configured (RFC 8414 §3.3 wants it byte-identical everywhere).
    pub issuer: String,
    pub issuer_url: Url,
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub database_connect_timeout_secs: u64,
    pub migrate_on_start: bool,
    pub policies_dir: PathBuf,
    /// The Cedar schema every policy is validated against.
    pub policy_schema: PathBuf,
    /// How often the policies folder is checked for changes (hot reload); 0 turns reloading off.
    pub policy_reload_secs: u64,
    pub verifiers_dir: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    /// Lets client-supplied URLs (registration `jwks_uri`) point at loopback and private addresses.
    /// Off by default (SSRF, checklist A-32); on only in development and tests.
    pub danger_allow_private_fetch: bool,
    pub registration_mode: RegistrationMode,
    pub initial_access_tokens: Vec<Secret>,
    pub clients: Vec<StaticClient>,
    pub signing_algorithm: SigningAlgorithm,
    pub key_refresh_secs: u64,
    pub tokens: TokenLifetimes,
    pub uma: UmaSettings,
    pub body_limit_bytes: usize,
    pub token_body_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
}

pub const DEFAULT_CONFIG_FILE: &str = "tessera.toml";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/tessera.db";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file `{0}` does not exist")]
    MissingFile(PathBuf),
    #[error("cannot read configuration: {0}")]
    Load(String),
    #[error("setting `{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

impl Settings {
    /// Loads settings from `path` (or `tessera.toml` when present) layered under the process
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => builder = builder.add_source(config::File::from(p).format(config::FileFormat::Toml)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                if default.exists() {
                    builder = builder.add_source(config::File::from(default).format(config::FileFormat::Toml));
                }
            }
        }
        let env: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("TESSERA_") && !k.starts_with("TESSERA_TEST_") && k != "TESSERA_CONFIG")
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("TESSERA")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let raw: RawSettings =
            builder.build().and_then(|c| c.try_deserialize()).map_err(|e| ConfigError::Load(e.to_string()))?;
        raw.validate()
    }

    /// Settings with every default, for tests and `tessera` without a file.
    pub fn defaults() -> Result<Self, ConfigError> {
        RawSettings::default().validate()
    }

    /// The absolute URL of an endpoint path such as `/token`, under the issuer.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The path part of an endpoint's URL, as the router sees it (`/uma/token` for issuer `https://h/uma`).
    pub fn endpoint_path(&self, path: &str) -> String {
        format!("{}{}", self.issuer_path(), path)
    }

    /// The issuer's path (`""` for an issuer at the host's root); every route is served under it.
    pub fn issuer_path(&self) -> &str {
        self.issuer_url.path().trim_end_matches('/')
    }

    /// Whether the issuer is plain HTTP on a loopback host, a development set-up.
    pub fn is_loopback_http(&self) -> bool {
        self.issuer_url.scheme() == "http"
    }
}

fn bounded(key: &'static str, value: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value} is outside {min}..={max}")))
    }
}

/// Whether a URL names this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate_issuer(issuer: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "issuer";
    let url = Url::parse(issuer).map_err(|e| invalid(KEY, format!("`{issuer}` is not an absolute URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(invalid(KEY, "must use https unless the host is a loopback address"));
        }
        other => return Err(invalid(KEY, format!("scheme `{other}` is not https"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(KEY, "must not have a query or fragment (RFC 8414 §2)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(KEY, "must not carry credentials"));
    }
    if issuer.ends_with('/') {
        return Err(invalid(KEY, format!("must not end with `/` (write `{}`)", issuer.trim_end_matches('/'))));
    }
    Ok(url)
}

fn validate_database_url(url: &str) -> Result<DatabaseUrl, ConfigError> {
    const KEY: &str = "database_url";
    if url.starts_with("sqlite:") {
        return Ok(DatabaseUrl(url.to_owned()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let db = DatabaseUrl(url.to_owned());
        return Url::parse(url)
            .map(|_| db.clone())
            .map_err(|e| invalid(KEY, format!("`{db}` is not a valid URL ({e})")));
    }
    Err(invalid(KEY, "must start with `sqlite:` or `postgres://`"))
}

impl RawSettings {
    fn validate(self) -> Result<Settings, ConfigError> {
        let issuer = self.issuer.unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let issuer_url = validate_issuer(&issuer)?;
        let listen_raw = self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen_raw
            .parse::<SocketAddr>()
            .map_err(|_| invalid("listen", format!("`{listen_raw}` is not an address such as `127.0.0.1:8080`")))?;
        let database_url = validate_database_url(self.database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL))?;
        let database_max_connections = self.database_max_connections.unwrap_or(8);
        if !(1..=512).contains(&database_max_connections) {
            return Err(invalid("database_max_connections", format!("{database_max_connections} is outside 1..=512")));
        }
        let database_connect_timeout_secs = self.database_connect_timeout_secs.unwrap_or(5);
        if !(1..=300).contains(&database_connect_timeout_secs) {
            return Err(invalid("database_connect_timeout_secs", "must be within 1..=300"));
        }
        let log = self.log.unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(invalid("log", format!("`{log}` is not a log filter such as `info` or `tessera=debug`")));
        }

        const DAY: i64 = 86_400;
        let t = self.tokens;
        let tokens = TokenLifetimes {
            ticket: bounded("tokens.ticket_lifetime_secs", t.ticket_lifetime_secs.unwrap_or(300), 10, DAY)?,
            rpt: bounded("tokens.rpt_lifetime_secs", t.rpt_lifetime_secs.unwrap_or(3_600), 10, 30 * DAY)?,
            pct: bounded("tokens.pct_lifetime_secs", t.pct_lifetime_secs.unwrap_or(30 * DAY), 60, 400 * DAY)?,
            pat: bounded("tokens.pat_lifetime_secs", t.pat_lifetime_secs.unwrap_or(3_600), 10, 30 * DAY)?,
            refresh_token: bounded(
                "tokens.refresh_token_lifetime_secs",
                t.refresh_token_lifetime_secs.unwrap_or(DAY),
                60,
                400 * DAY,
            )?,
            authorization_code: bounded(
                "tokens.authorization_code_lifetime_secs",
                t.authorization_code_lifetime_secs.unwrap_or(60),
                5,
                600,
            )?,
        };

        let u = self.uma;
        let uma = UmaSettings {
            rpt_format: u.rpt_format.unwrap_or(RptFormat::Opaque),
            partial_grants: u.partial_grants.unwrap_or(false),
            poll_interval_secs: bounded("uma.poll_interval_secs", u.poll_interval_secs.unwrap_or(5), 1, 3_600)?,
            pending_ticket_lifetime_secs: bounded(
                "uma.pending_ticket_lifetime_secs",
                u.pending_ticket_lifetime_secs.unwrap_or(DAY),
                60,
                30 * DAY,
            )?,
            local_account_claims: u.local_account_claims.unwrap_or(false),
            claims_session_lifetime_secs: bounded(
                "uma.claims_session_lifetime_secs",
                u.claims_session_lifetime_secs.unwrap_or(600),
                60,
                3_600,
            )?,
        };

        let key_refresh_secs = self.signing.key_refresh_secs.unwrap_or(60);
        if !(1..=3_600).contains(&key_refresh_secs) {
            return Err(invalid("signing.key_refresh_secs", "must be within 1..=3600"));
        }
        let body_limit_bytes = self.http.body_limit_bytes.unwrap_or(64 * 1024);
        let token_body_limit_bytes = self.http.token_body_limit_bytes.unwrap_or(256 * 1024);
        for (key, v) in
            [("http.body_limit_bytes", body_limit_bytes), ("http.token_body_limit_bytes", token_body_limit_bytes)]
        {
            if !(1_024..=16 * 1024 * 1024).contains(&v) {
                return Err(invalid(key, format!("{v} is outside 1024..=16777216")));
            }
        }
        let policy_reload_secs = self.policy_reload_secs.unwrap_or(2);
        if policy_reload_secs > 3_600 {
            return Err(invalid("policy_reload_secs", "must be at most 3600 (0 turns reloading off)"));
        }
        let shutdown_grace_secs = self.http.shutdown_grace_secs.unwrap_or(30);
        if shutdown_grace_secs > 3_600 {
            return Err(invalid("http.shutdown_grace_secs", "must be at most 3600"));
        }

        let initial_access_tokens = self.registration.initial_access_tokens;
        if initial_access_tokens.iter().any(|t| t.len() < MIN_CONFIGURED_SECRET_LEN) {
            return Err(invalid(
                "registration.initial_access_tokens",
                format!("each token needs at least {MIN_CONFIGURED_SECRET_LEN} characters"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            if c.client_id.is_empty() || c.client_id.len() > 255 {
                return Err(invalid("clients.client_id", "must be 1 to 255 characters"));
            }
            if !seen.insert(c.client_id.clone()) {
                return Err(invalid("clients.client_id", format!("`{}` is declared twice", c.client_id)));
            }
            if c.client_secret.as_ref().is_some_and(|s| s.len() < MIN_CONFIGURED_SECRET_LEN) {
                return Err(invalid(
                    "clients.client_secret",
                    format!("client `{}`: at least {MIN_CONFIGURED_SECRET_LEN} characters", c.client_id),
                ));
            }
        }

        Ok(Settings {
            issuer,
            issuer_url,
            listen,
            database_url,
            database_max_connections,
            database_connect_timeout_secs,
            migrate_on_start: self.migrate_on_start.unwrap_or(true),
            policies_dir: self.policies_dir.unwrap_or_else(|| PathBuf::from("policies")),
            policy_schema: self.policy_schema.unwrap_or_else(|| PathBuf::from("schemas/tessera.cedarschema")),
            policy_reload_secs,
            verifiers_dir: self.verifiers_dir.unwrap_or_else(|| PathBuf::from("verifiers")),
            log,
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            danger_allow_private_fetch: self.danger_allow_private_fetch.unwrap_or(false),
            registration_mode: self.registration.mode.unwrap_or(RegistrationMode::Closed),
            initial_access_tokens: initial_access_tokens.into_iter().map(Secret).collect(),
            clients: self.clients,
            signing_algorithm: self.signing.algorithm.unwrap_or(SigningAlgorithm::ES256),
            key_refresh_secs,
            tokens,
            uma,
            body_limit_bytes,
            token_body_limit_bytes,
            shutdown_grace_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn with_file(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(toml.as_bytes()).unwrap();
        Settings::load_with_env(Some(f.path()), env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    fn message(r: Result<Settings, ConfigError>) -> String {
        r.expect_err("expected a configuration error").to_string()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = with_file("", &[]).unwrap();
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(s.signing_algorithm, SigningAlgorithm::ES256);
        assert_eq!(s.tokens.ticket, 300);
        assert_eq!(s.body_limit_bytes, 65_536);
        assert_eq!(s.token_body_limit_bytes, 262_144);
    }

    #[test]
    fn environment_overrides_file() {
        let s = with_file(
            "database_url = \"sqlite://a.db\"\n[tokens]\nrpt_lifetime_secs = 100\n",
            &[
                ("TESSERA_DATABASE_URL", "postgres://u@h/db"),
                ("TESSERA_TOKENS__RPT_LIFETIME_SECS", "200"),
                ("TESSERA_SIGNING__ALGORITHM", "RS256"),
                ("TESSERA_TEST_POSTGRES_URL", "ignored"),
                ("OTHER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(s.database_url.expose(), "postgres://u@h/db");
        assert_eq!(s.tokens.rpt, 200);
        assert_eq!(s.signing_algorithm, SigningAlgorithm::RS256);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        assert!(message(with_file("isuer = \"x\"\n", &[])).contains("isuer"));
        assert!(message(with_file("[tokens]\nrpt_lifetime = 5\n", &[])).contains("rpt_lifetime"));
        assert!(message(with_file("", &[("TESSERA_DATABSE_URL", "x")])).contains("databse_url"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        assert!(message(with_file("listen = \"nope\"\n", &[])).contains("`listen`"));
        assert!(message(with_file("issuer = \"http://example.com\"\n", &[])).contains("`issuer`"));
        assert!(message(with_file("issuer = \"https://a.test/\"\n", &[])).contains("must not end with"));
        assert!(message(with_file("issuer = \"https://a.test?x=1\"\n", &[])).contains("query"));
        assert!(message(with_file("database_url = \"mysql://x\"\n", &[])).contains("`database_url`"));
        assert!(
            message(with_file("[tokens]\nticket_lifetime_secs = 0\n", &[])).contains("tokens.ticket_lifetime_secs")
        );
        assert!(message(with_file("[signing]\nalgorithm = \"HS256\"\n", &[])).contains("HS256"));
        assert!(message(with_file("log = \"info,[\"\n", &[])).contains("`log`"));
    }

    #[test]
    fn malformed_toml_is_reported_with_its_location() {
        let m = message(with_file("issuer = \n", &[]));
        assert!(m.contains("line 1"), "{m}");
    }

    #[test]
    fn a_missing_named_file_is_an_error() {
        let r = Settings::load_with_env(Some(Path::new("/nonexistent/tessera.toml")), std::iter::empty());
        assert!(message(r).contains("does not exist"));
    }

    #[test]
    fn https_and_loopback_http_issuers_are_accepted() {
        assert!(with_file("issuer = \"https://as.example.com/uma\"\n", &[]).is_ok());
        assert!(with_file("issuer = \"http://localhost:9000\"\n", &[]).is_ok());
        assert!(with_file("issuer = \"http://[::1]:9000\"\n", &[]).is_ok());
        let s = with_file("issuer = \"https://as.example.com/uma\"\n", &[]).unwrap();
        assert_eq!(s.issuer_path(), "/uma");
        assert_eq!(s.endpoint("/token"), "https://as.example.com/uma/token");
    }

    #[test]
    fn database_passwords_are_redacted_in_display() {
        let s = with_file("database_url = \"postgres://u:hunter2@h/db\"\n", &[]).unwrap();
        let shown = format!("{} {:?}", s.database_url, s);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }
}
