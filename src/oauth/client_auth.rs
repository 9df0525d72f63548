//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2 / OIDC Core §9), shared
//! by every grant. A client uses exactly the method it registered; a request that carries two methods
//! is malformed (checklist A-29); a `Bearer` header is not client authentication and is ignored.
//! Every failure is the same `invalid_client` (401, with `WWW-Authenticate: Basic` when Basic was
//! tried); the precise reason goes to the log only.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::clock::UnixTime;
use crate::oauth::client::{AuthMethod, Client};
use crate::oauth::jwks_fetch::JwksFetcher;
use crate::oauth::registration::{client_from_record, digests_equal};
use crate::oauth::tokens::TokenDigest;
use crate::oauth::{Challenge, OAuthError};
use crate::store::Store;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Signature algorithms accepted for client assertions: asymmetric only, never `none`, never HMAC
/// (a client's public key must not double as an HMAC secret).
/// Each with its name as advertised in discovery.
pub const ASSERTION_ALGORITHMS: [(Algorithm, &str); 3] =
    [(Algorithm::ES256, "ES256"), (Algorithm::PS256, "PS256"), (Algorithm::RS256, "RS256")];

/// Tolerated clock difference with clients, in seconds.
const LEEWAY: i64 = 30;
/// An assertion may not be valid for longer than this from now (RFC 7523 §3 lets the AS bound `exp`).
pub const MAX_ASSERTION_LIFETIME: i64 = 600;

/// What a token request carries that could authenticate a client, as parsed at the HTTP edge.
#[derive(Default)]
pub struct PresentedCredentials {
    /// `Some(None)`: an `Authorization: Basic` header that does not decode.
    pub basic: Option<Option<(String, String)>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

impl std::fmt::Debug for PresentedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedCredentials")
            .field("basic", &self.basic.as_ref().map(|b| b.as_ref().map(|(id, _)| id)))
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        // A literal `&` would end the pair in form parsing: keep it literal.
        url::form_urlencoded::parse(format!("v={}", s.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() { None } else { Some((id, secret)) }
}

/// Everything `authenticate` needs besides the credentials.
pub struct AuthContext<'a> {
    pub store: &'a Store,
    pub fetcher: &'a JwksFetcher,
    /// Accepted `aud` values of a client assertion: the token endpoint URL and the issuer (A-26).
    pub audiences: [&'a str; 2],
    pub now: UnixTime,
}

enum Method {
    Basic(Option<(String, String)>),
    Post { client_id: String, secret: String },
    Jwt { assertion_type: Option<String>, assertion: Option<String> },
    None { client_id: String },
}

pub async fn authenticate(ctx: &AuthContext<'_>, creds: PresentedCredentials) -> Result<Client, OAuthError> {
    let basic_tried = creds.basic.is_some();
    let fail = |detail: String| {
        let e = OAuthError::invalid_client(detail);
        if basic_tried { e.challenge(Challenge::Basic) } else { e }
    };
    let jwt_sent = creds.client_assertion.is_some() || creds.client_assertion_type.is_some();
    let post_sent = creds.client_secret.is_some();
    if [basic_tried, post_sent, jwt_sent].iter().filter(|b| **b).count() > 1 {
        return Err(OAuthError::invalid_request("use exactly one client authentication method"));
    }
    let body_client_id = creds.client_id;
    let method = match (creds.basic, creds.client_secret, jwt_sent) {
        (Some(b), _, _) => Method::Basic(b),
        (None, Some(secret), _) => match body_client_id.clone() {
            Some(client_id) => Method::Post { client_id, secret },
            None => return Err(fail("client_secret without client_id".into())),
        },
        (None, None, true) => {
            Method::Jwt { assertion_type: creds.client_assertion_type, assertion: creds.client_assertion }
        }
        (None, None, false) => match body_client_id.clone() {
            Some(client_id) => Method::None { client_id },
            None => return Err(fail("no client credentials".into())),
        },
    };

    let (client_id, expected) = match &method {
        Method::Basic(None) => return Err(fail("malformed Basic header".into())),
        Method::Basic(Some((id, _))) => (id.clone(), AuthMethod::ClientSecretBasic),
        Method::Post { client_id, .. } => (client_id.clone(), AuthMethod::ClientSecretPost),
        Method::None { client_id } => (client_id.clone(), AuthMethod::None),
        Method::Jwt { assertion_type, assertion } => {
            if assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
                return Err(fail("missing or unsupported client_assertion_type".into()));
            }
            let assertion = assertion.as_deref().ok_or_else(|| fail("missing client_assertion".into()))?;
            (
                unverified_subject(assertion).ok_or_else(|| fail("client assertion is not a JWT with `sub`".into()))?,
                AuthMethod::PrivateKeyJwt,
            )
        }
    };
    if body_client_id.as_ref().is_some_and(|b| *b != client_id) {
        return Err(fail("client_id in the body names another client".into()));
    }
    let rec = ctx.store.find_client(&client_id).await?.ok_or_else(|| fail(format!("unknown client `{client_id}`")))?;
    let client = client_from_record(&rec)?;
    if client.metadata.token_endpoint_auth_method != expected {
        return Err(fail(format!(
            "client `{client_id}` registered {} but presented {expected}",
            client.metadata.token_endpoint_auth_method
        )));
    }
    match method {
        Method::Basic(Some((_, secret))) | Method::Post { secret, .. } => {
            let ok = rec.secret_digest.as_deref().is_some_and(|d| digests_equal(d, &TokenDigest::of(&secret)));
            if !ok {
                return Err(fail(format!("wrong secret for client `{client_id}`")));
            }
            if client.secret_expires_at != 0 && client.secret_expires_at <= ctx.now {
                return Err(fail(format!("secret of client `{client_id}` expired")));
            }
        }
        Method::Jwt { assertion: Some(assertion), .. } => {
            verify_assertion(ctx, &client, &assertion).await.map_err(|d| fail(format!("client `{client_id}`: {d}")))?;
        }
        Method::None { .. } => {}
        Method::Basic(None) | Method::Jwt { assertion: None, .. } => return Err(fail("no credentials".into())),
    }
    Ok(client)
}

/// The `sub` of a JWT, read without verification, only to know whose keys to verify it with.
fn unverified_subject(jwt: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Sub {
        sub: String,
    }
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Sub>(&bytes).ok().map(|s| s.sub)
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// RFC 7523 §3 checks on a `private_key_jwt` assertion. Time is checked against the request's `now`,
/// not the library's clock, so every node and every test agree.
async fn verify_assertion(ctx: &AuthContext<'_>, client: &Client, assertion: &str) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("bad JWT header: {e}"))?;
    if !ASSERTION_ALGORITHMS.iter().any(|(a, _)| *a == header.alg) {
        return Err(format!("algorithm {:?} not allowed", header.alg));
    }
    let jwks: JwkSet = match (&client.metadata.jwks, &client.metadata.jwks_uri) {
        (Some(inline), _) => {
            serde_json::from_value(inline.clone()).map_err(|e| format!("registered jwks unusable: {e}"))?
        }
        (None, Some(uri)) => ctx.fetcher.get(uri, header.kid.as_deref()).await.map_err(|e| e.to_string())?,
        (None, None) => return Err("no registered keys".into()),
    };
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid).ok_or_else(|| format!("unknown kid `{kid}`"))?,
        None => match jwks.keys.as_slice() {
            [only] => only,
            _ => return Err("no kid and several keys".into()),
        },
    };
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != format!("{:?}", header.alg)
    {
        return Err("the key is registered for another algorithm".into());
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("registered key unusable: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.set_issuer(&[&client.client_id]);
    v.sub = Some(client.client_id.clone());
    v.set_audience(&ctx.audiences);
    let data =
        jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).map_err(|e| format!("assertion rejected: {e}"))?;
    let c = data.claims;
    if c.exp.saturating_add(LEEWAY) <= ctx.now {
        return Err("assertion expired".into());
    }
    if c.exp > ctx.now + MAX_ASSERTION_LIFETIME + LEEWAY {
        return Err(format!("assertion valid for more than {MAX_ASSERTION_LIFETIME} s"));
    }
    if c.nbf.is_some_and(|nbf| nbf > ctx.now + LEEWAY) {
        return Err("assertion not yet valid".into());
    }
    let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= 255).ok_or("missing or oversized jti")?;
    let fresh = ctx
        .store
        .record_assertion_jti(&client.client_id, &jti, c.exp.saturating_add(LEEWAY), ctx.now)
        .await
        .map_err(|e| format!("cannot record jti: {e}"))?;
    if !fresh {
        return Err("jti replayed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%3Aclient:s%2Bcr%20t"));
        assert_eq!(decode_basic(&h), Some(("my:client".into(), "s+cr t".into())));
        assert_eq!(decode_basic(&format!("basic {}", STANDARD.encode("a:b"))), Some(("a".into(), "b".into())));
        assert_eq!(decode_basic("Basic !!!"), None);
        assert_eq!(decode_basic(&format!("Basic {}", STANDARD.encode("no-colon"))), None);
        assert_eq!(decode_basic(&format!("Bearer {}", STANDARD.encode("a:b"))), None);
        assert_eq!(decode_basic(&format!("Basic {}", STANDARD.encode(":b"))), None);
        assert_eq!(
            decode_basic(&format!("Basic {}", STANDARD.encode("victim&x:pw&d"))),
            Some(("victim&x".into(), "pw&d".into()))
        );
    }

    #[test]
    fn the_subject_is_read_only_from_a_well_formed_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"c1","iss":"c1"}"#);
        assert_eq!(unverified_subject(&format!("e30.{payload}.sig")), Some("c1".into()));
        assert_eq!(unverified_subject("garbage"), None);
        assert_eq!(unverified_subject("a.!!.c"), None);
    }
}
