//! Clients and their metadata (RFC 7591 §2, plus UMA Grant §2's `claims_redirect_uris`). Metadata is
//! validated here, as a pure function, whether it arrives by dynamic registration, the CLI or the
//! configuration file, so every client in the store obeys the same rules.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::config::is_loopback_host;
use crate::oauth::OAuthError;

/// RFC 7591 §2 `token_endpoint_auth_method`: how a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A public client: no credentials at all.
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] =
        [AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost, AuthMethod::PrivateKeyJwt, AuthMethod::None];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the client holds a shared secret that Tessera issues.
    pub fn uses_secret(self) -> bool {
        matches!(self, AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The grant types a client may register. Adding one means a new variant, which the compiler then
/// chases through every `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:uma-ticket")]
    UmaTicket,
}

impl GrantType {
    pub const ALL: [GrantType; 4] =
        [GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials, GrantType::UmaTicket];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::UmaTicket => "urn:ietf:params:oauth:grant-type:uma-ticket",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Validated client metadata, as stored and as echoed to the client (RFC 7591 §3.2.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub claims_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// Tessera extension (checklist A-13): the client asks that claims it pushes be persisted in a
    /// PCT returned with the RPT, so later requests need not push them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persist_pushed_claims: bool,
}

impl ClientMetadata {
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// The registered scope values.
    pub fn scopes(&self) -> Vec<&str> {
        self.scope.as_deref().map(|s| s.split(' ').filter(|s| !s.is_empty()).collect()).unwrap_or_default()
    }
}

/// Metadata as a client sent it. Unknown members are ignored (RFC 7591 §2); the members that only
/// the server may set are captured so they can be refused where RFC 7592 §2.2 says so.
#[derive(Debug, Default, Deserialize)]
pub struct RequestedMetadata {
    pub redirect_uris: Option<Vec<String>>,
    pub claims_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub client_name: Option<String>,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub contacts: Option<Vec<String>>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    pub persist_pushed_claims: Option<bool>,
    pub software_statement: Option<Value>,
    // Server-set members (RFC 7592 §2.2).
    pub client_id: Option<Value>,
    pub client_secret: Option<String>,
    pub registration_access_token: Option<Value>,
    pub registration_client_uri: Option<Value>,
    pub client_id_issued_at: Option<Value>,
    pub client_secret_expires_at: Option<Value>,
}

impl RequestedMetadata {
    /// Parses a JSON body; anything that is not a JSON object of the right member types is
    /// `invalid_client_metadata` (RFC 7591 §3.2.2).
    pub fn from_json(body: &[u8]) -> Result<Self, OAuthError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| OAuthError::invalid_client_metadata("the body is not a JSON object").detail(e.to_string()))?;
        if !value.is_object() {
            return Err(OAuthError::invalid_client_metadata("the body is not a JSON object"));
        }
        serde_json::from_value(value).map_err(|e| {
            OAuthError::invalid_client_metadata("a metadata member has the wrong type").detail(e.to_string())
        })
    }
}

const MAX_URIS: usize = 20;
const MAX_TEXT: usize = 255;

/// A redirect URI must be absolute, without a fragment (RFC 6749 §3.1.2), and https unless its host
/// is a loopback address (native apps and development, RFC 8252 §7.3).
pub fn check_redirect_uri(member: &'static str, uri: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| OAuthError::invalid_redirect_uri(format!("`{member}`: {why}"));
    let url = Url::parse(uri).map_err(|_| bad("not an absolute URI"))?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err(bad("must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        _ => Err(bad("must use https (http only on a loopback host)")),
    }
}

fn check_uris(member: &'static str, uris: &[String]) -> Result<(), OAuthError> {
    if uris.len() > MAX_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!("`{member}`: at most {MAX_URIS} entries")));
    }
    uris.iter().try_for_each(|u| check_redirect_uri(member, u))
}

/// RFC 6749 §3.3: scope tokens are printable ASCII without space, `"` or `\`.
fn check_scope(scope: &str) -> Result<(), OAuthError> {
    let ok = scope.len() <= 1_000
        && scope.split(' ').all(|t| {
            !t.is_empty() && t.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(OAuthError::invalid_client_metadata("`scope` is not a space-separated list of scope tokens"))
    }
}

/// A JWK Set of public signing keys: no symmetric keys, no private members.
pub fn check_jwks(jwks: &Value) -> Result<(), OAuthError> {
    let bad = |why: &'static str| OAuthError::invalid_client_metadata(why);
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or_else(|| bad("`jwks` is not a JWK Set"))?;
    if keys.is_empty() || keys.len() > 20 {
        return Err(bad("`jwks` must hold 1 to 20 keys"));
    }
    for key in keys {
        let obj = key.as_object().ok_or_else(|| bad("`jwks` holds a key that is not an object"))?;
        if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| obj.contains_key(*m)) {
            return Err(bad("`jwks` must hold public keys only"));
        }
        match obj.get("kty").and_then(Value::as_str) {
            Some("RSA") | Some("EC") | Some("OKP") => {}
            _ => return Err(bad("`jwks` keys must be RSA, EC or OKP public keys")),
        }
        serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone())
            .map_err(|_| bad("`jwks` holds a key that does not parse"))?;
    }
    Ok(())
}

fn text(member: &'static str, v: Option<String>) -> Result<Option<String>, OAuthError> {
    match v {
        Some(s) if s.len() > MAX_TEXT => {
            Err(OAuthError::invalid_client_metadata(format!("`{member}` is longer than {MAX_TEXT} characters")))
        }
        Some(s) if s.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn web_uri(member: &'static str, v: Option<String>) -> Result<Option<String>, OAuthError> {
    let v = text(member, v)?;
    if let Some(u) = &v {
        let ok = Url::parse(u).map(|u| matches!(u.scheme(), "https" | "http")).unwrap_or(false);
        if !ok {
            return Err(OAuthError::invalid_client_metadata(format!("`{member}` is not an http(s) URL")));
        }
    }
    Ok(v)
}

/// Validates requested metadata into what the server stores, applying RFC 7591's defaults.
pub fn validate(req: RequestedMetadata) -> Result<ClientMetadata, OAuthError> {
    if req.software_statement.is_some() {
        return Err(OAuthError::new(crate::oauth::ErrorCode::UnapprovedSoftwareStatement)
            .describe("software statements are not accepted by this server"));
    }
    let redirect_uris = req.redirect_uris.unwrap_or_default();
    let claims_redirect_uris = req.claims_redirect_uris.unwrap_or_default();
    check_uris("redirect_uris", &redirect_uris)?;
    check_uris("claims_redirect_uris", &claims_redirect_uris)?;

    let mut grant_types = Vec::new();
    for g in req.grant_types.unwrap_or_else(|| vec!["authorization_code".to_owned()]) {
        let g = GrantType::parse(&g)
            .ok_or_else(|| OAuthError::invalid_client_metadata(format!("grant type `{g}` is not supported")))?;
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        return Err(OAuthError::invalid_client_metadata("`grant_types` is empty"));
    }
    let code_flow = grant_types.contains(&GrantType::AuthorizationCode);
    let response_types = match req.response_types {
        None if code_flow => vec!["code".to_owned()],
        None => Vec::new(),
        Some(r) => {
            if let Some(other) = r.iter().find(|t| t.as_str() != "code") {
                return Err(OAuthError::invalid_client_metadata(format!("response type `{other}` is not supported")));
            }
            let mut r = r;
            r.dedup();
            r
        }
    };
    // RFC 7591 §2.1: `code` and `authorization_code` go together.
    if code_flow != response_types.iter().any(|t| t == "code") {
        return Err(OAuthError::invalid_client_metadata(
            "`response_types` `code` and grant type `authorization_code` must be registered together",
        ));
    }
    if code_flow && redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri("`redirect_uris` is required for the authorization_code grant"));
    }

    let method = match req.token_endpoint_auth_method.as_deref() {
        None => AuthMethod::ClientSecretBasic,
        Some(m) => AuthMethod::parse(m).ok_or_else(|| {
            OAuthError::invalid_client_metadata(format!("token_endpoint_auth_method `{m}` is not supported"))
        })?,
    };
    if method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(OAuthError::invalid_client_metadata("a public client cannot use the client_credentials grant"));
    }
    if req.jwks.is_some() && req.jwks_uri.is_some() {
        return Err(OAuthError::invalid_client_metadata("`jwks` and `jwks_uri` are mutually exclusive"));
    }
    if let Some(jwks) = &req.jwks {
        check_jwks(jwks)?;
    }
    let jwks_uri = text("jwks_uri", req.jwks_uri)?;
    if let Some(u) = &jwks_uri {
        let ok =
            Url::parse(u).map(|u| matches!(u.scheme(), "https" | "http") && u.fragment().is_none()).unwrap_or(false);
        if !ok {
            return Err(OAuthError::invalid_client_metadata("`jwks_uri` is not an https URL"));
        }
    }
    if method == AuthMethod::PrivateKeyJwt && req.jwks.is_none() && jwks_uri.is_none() {
        return Err(OAuthError::invalid_client_metadata("private_key_jwt needs `jwks` or `jwks_uri`"));
    }
    let scope = match req.scope {
        Some(s) if s.is_empty() => None,
        Some(s) => {
            check_scope(&s)?;
            Some(s)
        }
        None => None,
    };
    let contacts = req.contacts.unwrap_or_default();
    if contacts.len() > 10 || contacts.iter().any(|c| c.len() > MAX_TEXT) {
        return Err(OAuthError::invalid_client_metadata("`contacts` is too long"));
    }

    Ok(ClientMetadata {
        redirect_uris,
        claims_redirect_uris,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        jwks: req.jwks,
        jwks_uri,
        client_name: text("client_name", req.client_name)?,
        scope,
        client_uri: web_uri("client_uri", req.client_uri)?,
        logo_uri: web_uri("logo_uri", req.logo_uri)?,
        tos_uri: web_uri("tos_uri", req.tos_uri)?,
        policy_uri: web_uri("policy_uri", req.policy_uri)?,
        contacts,
        software_id: text("software_id", req.software_id)?,
        software_version: text("software_version", req.software_version)?,
        persist_pushed_claims: req.persist_pushed_claims.unwrap_or(false),
    })
}

/// Where a client came from. Only dynamically registered clients can be managed with RFC 7592.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSource {
    Config,
    Cli,
    Dynamic,
}

impl ClientSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientSource::Config => "config",
            ClientSource::Cli => "cli",
            ClientSource::Dynamic => "dynamic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ClientSource::Config, ClientSource::Cli, ClientSource::Dynamic].into_iter().find(|c| c.as_str() == s)
    }
}

/// A registered client as the server knows it.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub metadata: ClientMetadata,
    pub source: ClientSource,
    pub issued_at: i64,
    /// 0: the secret never expires.
    pub secret_expires_at: i64,
    /// The resource owner a resource server is bound to (config or CLI), whose PATs it may obtain with
    /// client_credentials.
    pub bound_owner: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::ErrorCode;
    use serde_json::json;

    fn req(v: Value) -> RequestedMetadata {
        serde_json::from_value(v).unwrap()
    }

    fn code_of(v: Value) -> ErrorCode {
        validate(req(v)).unwrap_err().code
    }

    #[test]
    fn defaults_follow_rfc7591() {
        let m = validate(req(json!({"redirect_uris": ["https://c.example/cb"]}))).unwrap();
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        let m = validate(req(json!({"grant_types": ["client_credentials"]}))).unwrap();
        assert!(m.response_types.is_empty());
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback_and_fragment_free() {
        for bad in ["https://c.example/cb#frag", "http://c.example/cb", "/relative", "not a uri", "javascript:alert(1)"]
        {
            assert_eq!(code_of(json!({"redirect_uris": [bad]})), ErrorCode::InvalidRedirectUri, "{bad}");
            assert_eq!(
                code_of(json!({"grant_types": ["client_credentials"], "claims_redirect_uris": [bad]})),
                ErrorCode::InvalidRedirectUri,
                "{bad}"
            );
        }
        for good in ["https://c.example/cb?x=1", "http://127.0.0.1:9000/cb", "http://localhost/cb", "http://[::1]/cb"] {
            assert!(validate(req(json!({"redirect_uris": [good]}))).is_ok(), "{good}");
        }
        assert_eq!(code_of(json!({})), ErrorCode::InvalidRedirectUri, "code flow without redirect_uris");
    }

    #[test]
    fn inconsistent_or_unsupported_metadata_is_refused() {
        use ErrorCode::InvalidClientMetadata as M;
        assert_eq!(code_of(json!({"grant_types": ["client_credentials"], "response_types": ["code"]})), M);
        assert_eq!(code_of(json!({"grant_types": ["password"]})), M);
        assert_eq!(code_of(json!({"redirect_uris": ["https://c/cb"], "response_types": ["token"]})), M);
        let cc = |extra: Value| {
            let mut v = json!({"grant_types": ["client_credentials"]});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            code_of(v)
        };
        assert_eq!(cc(json!({"token_endpoint_auth_method": "tls_client_auth"})), M);
        assert_eq!(cc(json!({"token_endpoint_auth_method": "none"})), M);
        assert_eq!(cc(json!({"token_endpoint_auth_method": "private_key_jwt"})), M);
        assert_eq!(cc(json!({"jwks": {"keys": []}, "jwks_uri": "https://c/jwks"})), M);
        assert_eq!(cc(json!({"jwks": {"nokeys": 1}})), M);
        assert_eq!(cc(json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}})), M);
        assert_eq!(cc(json!({"scope": "a \"b\""})), M);
        assert_eq!(cc(json!({"software_statement": "eyJ..."})), ErrorCode::UnapprovedSoftwareStatement);
    }

    #[test]
    fn private_jwks_members_are_refused() {
        let rec = crate::keys::generate(crate::config::SigningAlgorithm::ES256, 1, 0).unwrap();
        let mut jwk: Value = serde_json::from_str(&rec.public_jwk).unwrap();
        assert!(check_jwks(&json!({"keys": [jwk.clone()]})).is_ok());
        jwk["d"] = json!("AAAA");
        assert!(check_jwks(&json!({"keys": [jwk]})).is_err());
    }

    #[test]
    fn malformed_bodies_are_invalid_client_metadata() {
        for body in [&b"not json"[..], b"[1,2]", b"{\"redirect_uris\": \"https://c/cb\"}"] {
            assert_eq!(RequestedMetadata::from_json(body).unwrap_err().code, ErrorCode::InvalidClientMetadata);
        }
        let r = RequestedMetadata::from_json(br#"{"grant_types":["client_credentials"],"foo":1}"#).unwrap();
        assert!(validate(r).is_ok(), "unknown members are ignored");
    }
}
