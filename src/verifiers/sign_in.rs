//! Tessera as an OpenID Connect relying party, for interactive claims gathering (UMA Grant §3.3.2):
//! a requesting party signs in at a partner provider configured in `verifiers/` (`[interactive]`).
//! `openidconnect` builds the authorization request (code flow, PKCE S256, `state`, `nonce`) and
//! redeems the code; the ID token that comes back is then checked by the same verifier code as a
//! pushed one ([`OidcVerifier`]), with Tessera's own client id as the only accepted audience, and
//! its `nonce` must be the one this sign-in sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde_json::Value;

use super::config::{Interactive, VerifierConfig};
use super::oidc::OidcVerifier;
use super::{Reason, TokenFacts, VerifyError};
use crate::clock::UnixTime;
use crate::oauth::jwks_fetch::JwksFetcher;

/// A client built from a discovery document: authorization endpoint set, token endpoint maybe.
type DiscoveredClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A provider's discovery document is reused this long.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Largest token response read from a provider.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A provider people can sign in at, as the claims page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignInProvider {
    /// The verifier id.
    pub id: String,
    pub label: String,
    pub issuer: String,
}

/// What a started sign-in must remember until the provider answers.
#[derive(Debug)]
pub struct SignInStart {
    /// Where to send the browser.
    pub url: String,
    /// Kept server-side until the callback; sent only to the provider's token endpoint.
    pub pkce_verifier: String,
}

pub(crate) struct SignIn {
    interactive: Interactive,
    /// The same verifier as for pushed tokens, with Tessera's client id as the only audience.
    verifier: OidcVerifier,
    fetcher: Arc<JwksFetcher>,
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
    http: reqwest::Client,
}

impl SignIn {
    /// Fails when the HTTP client cannot be built: a default one would follow redirects.
    pub fn new(
        cfg: &VerifierConfig,
        interactive: Interactive,
        fetcher: Arc<JwksFetcher>,
    ) -> Result<Self, reqwest::Error> {
        let mut own = cfg.clone();
        own.audiences = vec![interactive.client_id.clone()];
        own.interactive = None;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(SignIn {
            interactive,
            verifier: OidcVerifier::new(own, fetcher.clone()),
            fetcher,
            metadata: tokio::sync::Mutex::new(None),
            http,
        })
    }

    pub fn config(&self) -> &VerifierConfig {
        super::ClaimVerifier::config(&self.verifier)
    }

    pub fn provider(&self) -> SignInProvider {
        let cfg = self.config();
        SignInProvider { id: cfg.id.clone(), label: self.interactive.label.clone(), issuer: cfg.issuer.clone() }
    }

    /// The provider's discovery document, cached; its `issuer` must be the configured one.
    async fn metadata(&self) -> Result<CoreProviderMetadata, VerifyError> {
        let unavailable = |d: String| VerifyError::new(Reason::KeysUnavailable, d);
        let mut slot = self.metadata.lock().await;
        if let Some((m, at)) = &*slot
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer = &self.config().issuer;
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let doc = self.fetcher.fetch_json(&url).await.map_err(|e| unavailable(format!("discovery: {e}")))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(unavailable(format!("discovery document at `{url}` names another issuer")));
        }
        let meta: CoreProviderMetadata =
            serde_json::from_value(doc).map_err(|e| unavailable(format!("discovery document unusable: {e}")))?;
        *slot = Some((meta.clone(), Instant::now()));
        Ok(meta)
    }

    /// Tessera as this provider's client, from its discovery document.
    async fn client(&self, redirect_uri: &str) -> Result<DiscoveredClient, VerifyError> {
        let meta = self.metadata().await?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|_| VerifyError::new(Reason::KeysUnavailable, "the callback URL is not a URL"))?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.interactive.client_id.clone()),
            Some(ClientSecret::new(self.interactive.client_secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a sign-in: the provider's authorization URL for this `state` and `nonce`, with a fresh
    /// PKCE verifier to keep until the callback.
    pub async fn start(&self, redirect_uri: &str, state: &str, nonce: &str) -> Result<SignInStart, VerifyError> {
        let client = self.client(redirect_uri).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for s in self.interactive.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, _, _) = request.url();
        Ok(SignInStart { url: url.into(), pkce_verifier: verifier.secret().clone() })
    }

    /// Redeems the provider's code and checks the ID token it returns, `nonce` included.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: UnixTime,
    ) -> Result<TokenFacts, VerifyError> {
        let unavailable = |d: String| VerifyError::new(Reason::KeysUnavailable, d);
        let client = self.client(redirect_uri).await?;
        let http = ProviderHttp(&self.http);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| unavailable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| VerifyError::new(Reason::BadSignature, format!("the provider refused the code: {e}")))?;
        use openidconnect::TokenResponse as _;
        let raw = response
            .id_token()
            .map(ToString::to_string)
            .ok_or_else(|| VerifyError::new(Reason::MissingClaim, "the token response has no id_token"))?;
        let facts = super::ClaimVerifier::check(&self.verifier, &raw, now).await?;
        let sent = super::jwt::split(&raw)?.payload.get("nonce").and_then(Value::as_str).map(str::to_owned);
        if sent.as_deref() != Some(nonce) {
            return Err(VerifyError::new(Reason::Replayed, "the ID token's nonce is not this sign-in's"));
        }
        Ok(facts)
    }
}

/// `openidconnect`'s HTTP client: Tessera's reqwest, no redirects, a timeout and a size cap.
struct ProviderHttp<'a>(&'a reqwest::Client);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ProviderHttpError(String);

impl<'c> openidconnect::AsyncHttpClient<'c> for ProviderHttp<'_> {
    type Error = ProviderHttpError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, ProviderHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let err = |e: reqwest::Error| ProviderHttpError(e.without_url().to_string());
            let (parts, body) = request.into_parts();
            let mut res = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(err)?;
            let mut out = HttpResponse::new(Vec::new());
            *out.status_mut() = res.status();
            *out.headers_mut() = res.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(err)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ProviderHttpError("the provider's response is too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            *out.body_mut() = body;
            Ok(out)
        })
    }
}
