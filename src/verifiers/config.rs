//! `verifiers/*.toml`: one trusted issuer per file (threats D2). Every file is validated at start and
//! any problem stops the server with the file and the problem named; unknown keys are errors. The
//! commented examples in `verifiers/` and docs/verifiers.md describe every key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::{FORMAT_JWT, FORMAT_OIDC, FORMAT_SAML};

/// What the verifiers need to know about this server.
#[derive(Debug, Clone)]
pub struct VerifierEnv {
    /// Tessera's issuer: the default SAML audience (entity id).
    pub issuer: String,
    /// The token endpoint URL: a SAML `Recipient`, when present, must equal it (threats D2).
    pub token_endpoint: String,
}

impl VerifierEnv {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        VerifierEnv {
            issuer: settings.issuer.clone(),
            token_endpoint: settings.endpoint(crate::http::token::TOKEN_PATH),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the verifiers folder `{dir}`: {reason}")]
    Dir { dir: String, reason: String },
    #[error("verifier file `{file}`: {problem}")]
    File { file: String, problem: String },
}

fn file_err(file: &Path, problem: impl Into<String>) -> LoadError {
    LoadError::File { file: file.display().to_string(), problem: problem.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Oidc,
    Jwt,
    Saml,
}

impl Format {
    pub fn uri(self) -> &'static str {
        match self {
            Format::Oidc => FORMAT_OIDC,
            Format::Jwt => FORMAT_JWT,
            Format::Saml => FORMAT_SAML,
        }
    }
}

/// The Cedar type a claim is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimType {
    String,
    Long,
    Bool,
    /// A set of strings: a JSON array of strings, several SAML attribute values, or one value.
    Set,
}

impl ClaimType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimType::String => "string",
            ClaimType::Long => "long",
            ClaimType::Bool => "bool",
            ClaimType::Set => "set",
        }
    }

    /// Converts a source value (JSON, or SAML strings) to this type; `None` if it does not fit.
    /// Strings are accepted for `long` and `bool` because SAML attribute values are text.
    pub fn convert(self, v: &serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match (self, v) {
            (ClaimType::String, Value::String(s)) => Some(Value::String(s.clone())),
            (ClaimType::Long, Value::Number(n)) => n.as_i64().map(Value::from),
            (ClaimType::Long, Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
            (ClaimType::Bool, Value::Bool(b)) => Some(Value::Bool(*b)),
            (ClaimType::Bool, Value::String(s)) => match s.as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            (ClaimType::Set, Value::String(s)) => Some(Value::Array(vec![Value::String(s.clone())])),
            (ClaimType::Set, Value::Array(items)) => {
                let mut set = BTreeSet::new();
                for i in items {
                    set.insert(i.as_str()?.to_owned());
                }
                Some(Value::Array(set.into_iter().map(Value::String).collect()))
            }
            _ => None,
        }
    }
}

/// Where the verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// OIDC: `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
    JwksUri(String),
    /// A JWK Set held in the file (`jwks`) or in a file next to it (`jwks_file`), parsed once here
    /// rather than per token.
    Jwks(Box<jsonwebtoken::jwk::JwkSet>),
    /// One public key in PEM (`pem_file`), JWT only.
    Pem(Vec<u8>),
    /// SAML: signing certificates (DER) from IdP metadata (`metadata_file`) or a PEM file
    /// (`certificate_file`). May be empty: that verifier then refuses every token.
    Certificates(Vec<Vec<u8>>),
}

#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// The JWT claim, or the SAML attribute `Name` or `FriendlyName`.
    pub from: String,
    /// The Cedar attribute of `Tessera::Party`.
    pub to: String,
    pub kind: ClaimType,
}

/// One trusted issuer, validated.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub id: String,
    pub file: PathBuf,
    pub format: Format,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub allowed_clients: Option<Vec<String>>,
    /// JWS `alg` names, or SAML signature algorithm names (`RSA-SHA256` …).
    pub algorithms: Vec<String>,
    pub clock_skew_secs: i64,
    pub max_age_secs: i64,
    pub single_use: bool,
    pub required_claims: Vec<String>,
    pub may_assert: BTreeSet<String>,
    pub claims: Vec<ClaimMapping>,
    pub keys: KeySource,
    /// SAML only: accept RSA-SHA1 signatures and SHA-1 digests.
    pub danger_allow_sha1: bool,
    /// SAML only: a `Recipient` present must equal this (the token endpoint).
    pub recipient: String,
    /// OIDC only: people can sign in at this provider during interactive claims gathering.
    pub interactive: Option<Interactive>,
}

/// Tessera as a relying party of an OpenID provider, for interactive claims gathering
/// (`[interactive]`). The provider's endpoints come from its discovery document.
#[derive(Debug, Clone)]
pub struct Interactive {
    pub client_id: String,
    pub client_secret: crate::config::Secret,
    pub scopes: Vec<String>,
    /// The button's text.
    pub label: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInteractive {
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    scopes: Option<Vec<String>>,
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: Format,
    issuer: String,
    id: Option<String>,
    audiences: Option<Vec<String>>,
    allowed_clients: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    clock_skew_secs: Option<u32>,
    max_age_secs: Option<u32>,
    single_use: Option<bool>,
    required_claims: Option<Vec<String>>,
    #[serde(default)]
    may_assert: Vec<String>,
    #[serde(default)]
    claims: Vec<RawClaim>,
    keys: RawKeys,
    danger_allow_sha1: Option<bool>,
    interactive: Option<RawInteractive>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    discovery: Option<bool>,
    jwks_uri: Option<String>,
    jwks: Option<String>,
    jwks_file: Option<PathBuf>,
    pem_file: Option<PathBuf>,
    metadata_file: Option<PathBuf>,
    certificate_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    from: String,
    to: Option<String>,
    #[serde(rename = "type")]
    kind: ClaimType,
}

pub const JWS_ALGORITHMS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
pub const SAML_ALGORITHMS: [&str; 6] =
    ["RSA-SHA256", "RSA-SHA384", "RSA-SHA512", "ECDSA-SHA256", "ECDSA-SHA384", "ECDSA-SHA512"];
const DEFAULT_JWS: [&str; 3] = ["RS256", "PS256", "ES256"];
const DEFAULT_SAML: [&str; 2] = ["RSA-SHA256", "ECDSA-SHA256"];
const DEFAULT_SKEW: u32 = 60;
const MAX_SKEW: u32 = 300;
const DEFAULT_MAX_AGE: u32 = 3600;
const MAX_MAX_AGE: u32 = 7 * 24 * 3600;
/// Attributes that come from the verified token itself, never from a mapping.
const RESERVED: [&str; 4] = ["iss", "sub", "auth_time", "acr"];

/// Every `*.toml` directly in `dir`, sorted by name. A missing folder is no verifier.
pub fn load_dir(dir: &Path, env: &VerifierEnv) -> Result<Vec<VerifierConfig>, LoadError> {
    let dir_err = |reason: String| LoadError::Dir { dir: dir.display().to_string(), reason };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| dir_err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut out: Vec<VerifierConfig> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| file_err(&file, e.to_string()))?;
        let cfg = parse(&file, &text, env)?;
        if let Some(other) = out.iter().find(|o| o.id == cfg.id) {
            return Err(file_err(&file, format!("id `{}` is already used by `{}`", cfg.id, other.file.display())));
        }
        if let Some(other) = out.iter().find(|o| o.format == cfg.format && o.issuer == cfg.issuer) {
            return Err(file_err(
                &file,
                format!("issuer `{}` of this format is already configured in `{}`", cfg.issuer, other.file.display()),
            ));
        }
        out.push(cfg);
    }
    Ok(out)
}

/// Parses and validates one file; `file` locates errors and relative key paths.
pub fn parse(file: &Path, text: &str, env: &VerifierEnv) -> Result<VerifierConfig, LoadError> {
    // The toml error message carries the line and column.
    let raw: RawFile = toml::from_str(text).map_err(|e| file_err(file, e.to_string().trim_end().to_owned()))?;
    let bad = |problem: String| file_err(file, problem);
    let base = file.parent().unwrap_or_else(|| Path::new("."));

    let id = match raw.id {
        Some(id) => id,
        None => file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned(),
    };
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad(format!("`id` `{id}` must be 1 to 64 letters, digits, `-` or `_`")));
    }

    if raw.issuer.is_empty() || raw.issuer.len() > 1024 {
        return Err(bad("`issuer` must be 1 to 1024 characters".into()));
    }
    if raw.format != Format::Saml {
        // An OIDC issuer is an https URL (OIDC Discovery §2); loopback http is for development.
        check_url("issuer", &raw.issuer).map_err(bad)?;
    }

    let audiences = match (raw.audiences, raw.format) {
        (Some(a), _) => a,
        (None, Format::Saml) => vec![env.issuer.clone()],
        (None, _) => return Err(bad("`audiences` is required: the `aud` values this issuer's tokens carry".into())),
    };
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        return Err(bad("`audiences` must list at least one non-empty audience".into()));
    }
    if let Some(list) = &raw.allowed_clients
        && (list.is_empty() || list.iter().any(String::is_empty))
    {
        return Err(bad("`allowed_clients` must list at least one client id, or be left out".into()));
    }

    let (known, default): (&[&str], &[&str]) =
        if raw.format == Format::Saml { (&SAML_ALGORITHMS, &DEFAULT_SAML) } else { (&JWS_ALGORITHMS, &DEFAULT_JWS) };
    let algorithms: Vec<String> = raw.algorithms.unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect());
    if algorithms.is_empty() {
        return Err(bad("`algorithms` must not be empty".into()));
    }
    for a in &algorithms {
        if !known.contains(&a.as_str()) {
            let why = if a.starts_with("HS") || a.to_ascii_lowercase().contains("hmac") {
                " (shared-secret algorithms are refused: a partner's public key must never double as an HMAC secret)"
            } else if a.eq_ignore_ascii_case("none") {
                " (unsigned tokens are never accepted)"
            } else if a.to_ascii_uppercase().contains("SHA1") {
                " (SHA-1 is accepted only with `danger_allow_sha1 = true`)"
            } else {
                ""
            };
            return Err(bad(format!("algorithm `{a}` is not one of {}{why}", known.join(", "))));
        }
    }
    let danger_allow_sha1 = raw.danger_allow_sha1.unwrap_or(false);
    if danger_allow_sha1 && raw.format != Format::Saml {
        return Err(bad("`danger_allow_sha1` applies to SAML verifiers only".into()));
    }

    let skew = raw.clock_skew_secs.unwrap_or(DEFAULT_SKEW);
    if skew > MAX_SKEW {
        return Err(bad(format!("`clock_skew_secs` must be at most {MAX_SKEW}")));
    }
    let max_age = raw.max_age_secs.unwrap_or(DEFAULT_MAX_AGE);
    if max_age == 0 || max_age > MAX_MAX_AGE {
        return Err(bad(format!("`max_age_secs` must be 1 to {MAX_MAX_AGE}")));
    }

    let may_assert: BTreeSet<String> = raw.may_assert.into_iter().collect();
    for a in &may_assert {
        if !is_identifier(a) || RESERVED.contains(&a.as_str()) {
            return Err(bad(format!("`may_assert` entry `{a}` is not a Cedar attribute name a verifier may set")));
        }
    }
    let mut claims = Vec::new();
    for c in raw.claims {
        let to = c.to.unwrap_or_else(|| c.from.clone());
        if c.from.is_empty() {
            return Err(bad("a `[[claims]]` entry has an empty `from`".into()));
        }
        if !is_identifier(&to) || RESERVED.contains(&to.as_str()) {
            return Err(bad(format!(
                "claim `{}` maps to `{to}`, which is not an attribute name a verifier may set ({} are taken from the token itself)",
                c.from,
                RESERVED.join(", ")
            )));
        }
        if claims.iter().any(|m: &ClaimMapping| m.to == to) {
            return Err(bad(format!("two `[[claims]]` entries map to `{to}`")));
        }
        claims.push(ClaimMapping { from: c.from, to, kind: c.kind });
    }
    for a in &may_assert {
        if !claims.iter().any(|m| &m.to == a) {
            return Err(bad(format!("`may_assert` names `{a}` but no `[[claims]]` entry maps to it")));
        }
    }
    let required_claims = raw.required_claims.unwrap_or_default();

    let keys = key_source(raw.format, &raw.issuer, raw.keys, base).map_err(bad)?;
    let interactive = match raw.interactive {
        None => None,
        Some(_) if raw.format != Format::Oidc => {
            return Err(bad("`[interactive]` applies to OpenID Connect verifiers only".into()));
        }
        Some(i) => Some(interactive(i, &id).map_err(bad)?),
    };

    Ok(VerifierConfig {
        id,
        file: file.to_path_buf(),
        format: raw.format,
        issuer: raw.issuer,
        audiences,
        allowed_clients: raw.allowed_clients,
        algorithms,
        clock_skew_secs: i64::from(skew),
        max_age_secs: i64::from(max_age),
        single_use: raw.single_use.unwrap_or(false),
        required_claims,
        may_assert,
        claims,
        keys,
        danger_allow_sha1,
        recipient: env.token_endpoint.clone(),
        interactive,
    })
}

fn interactive(i: RawInteractive, id: &str) -> Result<Interactive, String> {
    if i.client_id.is_empty() || i.client_id.len() > 255 {
        return Err("`interactive.client_id` must be 1 to 255 characters".into());
    }
    let secret = match (i.client_secret, i.client_secret_env) {
        (Some(s), None) => s,
        (None, Some(var)) => std::env::var(&var)
            .map_err(|_| format!("`interactive.client_secret_env` names `{var}`, which is not set"))?,
        _ => return Err("`[interactive]` needs exactly one of `client_secret`, `client_secret_env`".into()),
    };
    if secret.is_empty() {
        return Err("`interactive` client secret is empty".into());
    }
    let scopes = i.scopes.unwrap_or_else(|| vec!["openid".to_owned()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err("`interactive.scopes` must include `openid`".into());
    }
    if scopes.iter().any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')) {
        return Err("`interactive.scopes` holds an invalid scope".into());
    }
    let label = i.label.unwrap_or_else(|| id.to_owned());
    if label.is_empty() || label.chars().count() > 80 {
        return Err("`interactive.label` must be 1 to 80 characters".into());
    }
    Ok(Interactive { client_id: i.client_id, client_secret: crate::config::Secret::new(secret), scopes, label })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

/// https, or http on a loopback host (development and tests), no fragment.
fn check_url(key: &str, raw: &str) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|_| format!("`{key}` `{raw}` is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(format!("`{key}` `{raw}` must use https unless its host is a loopback address"));
    }
    if url.fragment().is_some() {
        return Err(format!("`{key}` `{raw}` must not have a fragment"));
    }
    Ok(())
}

fn key_source(format: Format, issuer: &str, k: RawKeys, base: &Path) -> Result<KeySource, String> {
    let set = [
        ("discovery", k.discovery == Some(true)),
        ("jwks_uri", k.jwks_uri.is_some()),
        ("jwks", k.jwks.is_some()),
        ("jwks_file", k.jwks_file.is_some()),
        ("pem_file", k.pem_file.is_some()),
        ("metadata_file", k.metadata_file.is_some()),
        ("certificate_file", k.certificate_file.is_some()),
    ];
    let chosen: Vec<&str> = set.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    let allowed: &[&str] = match format {
        Format::Oidc => &["discovery", "jwks_uri", "jwks", "jwks_file"],
        Format::Jwt => &["jwks_uri", "jwks", "jwks_file", "pem_file"],
        Format::Saml => &["metadata_file", "certificate_file"],
    };
    let [one] = chosen.as_slice() else {
        return Err(format!("`[keys]` must set exactly one of {}", allowed.join(", ")));
    };
    if !allowed.contains(one) {
        return Err(format!("`keys.{one}` does not apply to this format; use one of {}", allowed.join(", ")));
    }
    let read = |p: &Path| -> Result<Vec<u8>, String> {
        let path = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    };
    let parse_jwks = |text: &[u8]| -> Result<Box<jsonwebtoken::jwk::JwkSet>, String> {
        let v: serde_json::Value = serde_json::from_slice(text).map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
        crate::oauth::client::check_jwks(&v).map_err(|_| {
            "the JWK Set must hold 1 to 20 RSA, EC or OKP public keys, and no private member".to_owned()
        })?;
        serde_json::from_value(v).map(Box::new).map_err(|e| format!("the JWK Set is not usable: {e}"))
    };
    match (*one, k) {
        ("discovery", _) => {
            check_url("issuer", issuer)?;
            Ok(KeySource::Discovery)
        }
        ("jwks_uri", RawKeys { jwks_uri: Some(u), .. }) => {
            check_url("keys.jwks_uri", &u)?;
            Ok(KeySource::JwksUri(u))
        }
        ("jwks", RawKeys { jwks: Some(j), .. }) => Ok(KeySource::Jwks(parse_jwks(j.as_bytes())?)),
        ("jwks_file", RawKeys { jwks_file: Some(p), .. }) => Ok(KeySource::Jwks(parse_jwks(&read(&p)?)?)),
        ("pem_file", RawKeys { pem_file: Some(p), .. }) => {
            let pem = read(&p)?;
            // Both decoders are tried on use; at least one must accept it now.
            let rsa = jsonwebtoken::DecodingKey::from_rsa_pem(&pem).is_ok();
            let ec = jsonwebtoken::DecodingKey::from_ec_pem(&pem).is_ok();
            let ed = jsonwebtoken::DecodingKey::from_ed_pem(&pem).is_ok();
            if !(rsa || ec || ed) {
                return Err("`keys.pem_file` is not an RSA, EC or Ed25519 public key in PEM".into());
            }
            Ok(KeySource::Pem(pem))
        }
        ("metadata_file", RawKeys { metadata_file: Some(p), .. }) => {
            let xml = read(&p)?;
            let text = String::from_utf8(xml).map_err(|_| "`keys.metadata_file` is not UTF-8".to_owned())?;
            let certs = super::saml::metadata_certificates(&text, issuer)?;
            Ok(KeySource::Certificates(certs))
        }
        ("certificate_file", RawKeys { certificate_file: Some(p), .. }) => {
            let pem = read(&p)?;
            let certs = super::saml::pem_certificates(&pem)?;
            Ok(KeySource::Certificates(certs))
        }
        _ => Err("`[keys]` is inconsistent".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> VerifierEnv {
        VerifierEnv { issuer: "https://tessera.test".into(), token_endpoint: "https://tessera.test/token".into() }
    }

    fn err(text: &str) -> String {
        parse(Path::new("/nowhere/partner.toml"), text, &env()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\nbogus = 1\n[keys]\njwks_uri = \"https://idp.test/jwks\"\n",
        );
        assert!(e.starts_with("verifier file `/nowhere/partner.toml`:"), "{e}");
        assert!(e.contains("bogus") && e.contains("line 4"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]\n[keys]\njwks_uri = \"https://idp.test/jwks\"\n",
        );
        assert!(e.contains("`HS256`") && e.contains("HMAC"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\nalgorithms = [\"none\"]\n[keys]\njwks_uri = \"https://idp.test/jwks\"\n",
        );
        assert!(e.contains("never accepted"), "{e}");
        let e =
            err("format = \"oidc\"\nissuer = \"http://idp.example\"\naudiences = [\"a\"]\n[keys]\ndiscovery = true\n");
        assert!(e.contains("https"), "{e}");
        let e = err(
            "format = \"oidc\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\n[keys]\ndiscovery = true\njwks_uri = \"https://idp.test/j\"\n",
        );
        assert!(e.contains("exactly one"), "{e}");
        let e = err("format = \"saml\"\nissuer = \"https://idp.test\"\n[keys]\njwks_uri = \"https://idp.test/j\"\n");
        assert!(e.contains("does not apply"), "{e}");
        let e = err("format = \"jwt\"\nissuer = \"https://idp.test\"\n[keys]\njwks_uri = \"https://idp.test/j\"\n");
        assert!(e.contains("`audiences` is required"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\nmay_assert = [\"npi\"]\n[keys]\njwks_uri = \"https://idp.test/j\"\n",
        );
        assert!(e.contains("no `[[claims]]` entry maps to it"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\n[keys]\njwks_uri = \"https://idp.test/j\"\n[[claims]]\nfrom = \"x\"\nto = \"sub\"\ntype = \"string\"\n",
        );
        assert!(e.contains("taken from the token itself"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\n[keys]\njwks = \"{\\\"keys\\\":[{\\\"kty\\\":\\\"oct\\\",\\\"k\\\":\\\"c2VjcmV0\\\"}]}\"\n",
        );
        assert!(e.contains("public keys"), "{e}");
        let e = err(
            "format = \"jwt\"\nissuer = \"https://idp.test\"\naudiences = [\"a\"]\ndanger_allow_sha1 = true\n[keys]\njwks_uri = \"https://idp.test/j\"\n",
        );
        assert!(e.contains("SAML verifiers only"), "{e}");
    }

    #[test]
    fn claim_types_convert_strictly() {
        use serde_json::json;
        assert_eq!(ClaimType::Long.convert(&json!("42")), Some(json!(42)));
        assert_eq!(ClaimType::Long.convert(&json!(4.5)), None);
        assert_eq!(ClaimType::Bool.convert(&json!("yes")), None);
        assert_eq!(ClaimType::String.convert(&json!(["a"])), None);
        assert_eq!(ClaimType::Set.convert(&json!(["b", "a", "b"])), Some(json!(["a", "b"])));
        assert_eq!(ClaimType::Set.convert(&json!(["a", 1])), None);
    }
}
