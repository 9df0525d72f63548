//! Interactive claims gathering (UMA Grant §3.3.2–3.3.3): a client sends the requesting party's
//! browser to the claims interaction endpoint with its ticket; the person proves who they are; the
//! browser goes back to the client's registered claims redirect URI with a new ticket carrying the
//! gathered claims (or an OAuth `error`). The client redeems that ticket at the token endpoint.
//!
//! ```text
//! GET /claims ─► client + exact claims_redirect_uri ─► ticket spent ─► session (browser-bound, CSRF)
//!   ─► sign in: OpenID provider (code + PKCE + nonce) | local account
//!   ─► claims verified ─► merged with the carried ones ─► new ticket (one tx with the session's end)
//!   ─► 302 claims_redirect_uri?ticket=…&state=…
//! ```
//!
//! Session fixation (wg-uma #239): the presented ticket dies on arrival, the session is bound to the
//! browser that arrived by a private cookie, and only that browser's sign-in can finish it.

use serde_json::Value;

use crate::accounts;
use crate::clock::UnixTime;
use crate::oauth::authorize::redirect_with;
use crate::oauth::client::GrantType;
use crate::oauth::tokens::OpaqueToken;
use crate::policy::{ClaimSource, RequestingParty};
use crate::state::AppState;
use crate::store::{ClaimsSessionRecord, StoreError, TicketRecord};
use crate::uma::claims::{Carried, merge};
use crate::verifiers::{Rejection, SignInProvider};

/// The verifier id of claims from a local Tessera account (`context.verifier` in policies).
pub const LOCAL_ACCOUNTS: &str = "local-accounts";
/// Where OpenID providers send the browser back, under the issuer.
pub const CALLBACK_PATH: &str = "/claims/callback";

/// Why the flow cannot go on.
#[derive(Debug)]
pub enum Refusal {
    /// Shown to the person as a page: there is no trusted place to send them, or the browser is not
    /// the one that started (never a redirect carrying a ticket).
    Page { status: u16, message: &'static str },
    /// Back to the client's checked claims redirect URI with an OAuth error.
    Redirect(String),
    /// The local-account password was wrong: the form again.
    WrongPassword,
}

impl Refusal {
    fn page(status: u16, message: &'static str) -> Self {
        Refusal::Page { status, message }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "claims gathering: store unavailable");
        Refusal::page(503, "The service is temporarily unavailable. Try again in a moment.")
    }
}

/// The query of `GET /claims` (Grant §3.3.2).
#[derive(Debug, Default)]
pub struct InteractionRequest {
    pub client_id: Option<String>,
    pub ticket: Option<String>,
    pub claims_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// A session just started: what the page and the cookie need.
#[derive(Debug)]
pub struct Started {
    /// The claims the policies still need (names), to tell the person what is asked.
    pub needed: Vec<String>,
    pub session_id: String,
    pub csrf: OpaqueToken,
    pub binding: OpaqueToken,
    pub client_name: String,
    pub choices: Choices,
}

/// The ways to sign in this server offers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Choices {
    pub providers: Vec<SignInProvider>,
    pub local_accounts: bool,
}

/// What the server offers on the claims page (also: whether `need_info` says `redirect_user`).
pub fn choices(state: &AppState) -> Choices {
    Choices { providers: state.verifiers.sign_in_providers(), local_accounts: state.settings.uma.local_account_claims }
}

/// Whether the claims page has any way to sign in (need_info's `redirect_user`, discovery).
pub fn offered(settings: &crate::config::Settings, verifiers: &crate::verifiers::VerifierRegistry) -> bool {
    verifiers.offers_sign_in() || settings.uma.local_account_claims
}

fn random() -> Result<OpaqueToken, Refusal> {
    OpaqueToken::generate().map_err(|_| Refusal::page(500, "The server could not continue."))
}

fn error_to(uri: &str, code: &str, description: &str, state: Option<&str>) -> Refusal {
    match redirect_with(uri, &[("error", code), ("error_description", description)], state) {
        Ok(to) => Refusal::Redirect(to),
        Err(_) => Refusal::page(400, "The application's return address is not usable."),
    }
}

/// Grant §3.3.2: the requested URI when it is, byte for byte, one the client registered as a claims
/// redirect URI (its OAuth `redirect_uris` do not count); without one, the only one registered.
pub fn claims_redirect_uri(registered: &[String], requested: Option<&str>) -> Option<String> {
    match (requested, registered) {
        (Some(u), _) => registered.iter().find(|r| *r == u).cloned(),
        (None, [only]) => Some(only.clone()),
        (None, _) => None,
    }
}

/// Checks the client and its claims redirect URI (exact match; without one, the only one
/// registered), spends the ticket and opens a session bound to this browser.
pub async fn start(state: &AppState, req: InteractionRequest, now: UnixTime) -> Result<Started, Refusal> {
    let store = &state.store;
    let unknown_client = Refusal::page(400, "The application that sent you here is not known to this server.");
    let client_id = req.client_id.ok_or_else(|| Refusal::page(400, "The request names no application."))?;
    let rec = store.find_client(&client_id).await?.ok_or(unknown_client)?;
    let client = crate::oauth::registration::client_from_record(&rec)
        .map_err(|_| Refusal::page(400, "The application that sent you here is not usable."))?;
    let Some(redirect_uri) =
        claims_redirect_uri(&client.metadata.claims_redirect_uris, req.claims_redirect_uri.as_deref())
    else {
        return Err(Refusal::page(
            400,
            "The application's return address is not registered with this server, so you cannot be sent back to it.",
        ));
    };
    let client_state = req.state.as_deref();
    if !client.metadata.allows_grant(GrantType::UmaTicket) {
        return Err(error_to(
            &redirect_uri,
            "unauthorized_client",
            "the client is not registered for the UMA grant",
            client_state,
        ));
    }
    let Some(ticket) = req.ticket else {
        return Err(error_to(&redirect_uri, "invalid_request", "`ticket` is required", client_state));
    };
    // Grant §5.5: a ticket dies when it reaches this endpoint, whatever happens next.
    let digest = OpaqueToken::presented(&ticket).digest();
    let Some(t) = store.spend_ticket(digest.as_str(), &client.client_id, now).await? else {
        return Err(error_to(
            &redirect_uri,
            "invalid_grant",
            "the ticket is invalid, expired or already used",
            client_state,
        ));
    };
    // Offer what can supply the claims the policies need: the providers of the issuers they name
    // (every provider when they name none of them).
    let carried: Option<Carried> = t.carried.as_deref().and_then(|c| serde_json::from_str(c).ok());
    let party = carried.map(|c| c.party).unwrap_or_else(RequestingParty::anonymous);
    let needed = crate::uma::grant::claims_needed(state, &client, &t, &party, now).await.unwrap_or_default();
    let mut choices = choices(state);
    let wanted: Vec<&String> = needed.iter().flat_map(|c| c.issuer.iter()).collect();
    if choices.providers.iter().any(|p| wanted.contains(&&p.issuer)) {
        choices.providers.retain(|p| wanted.contains(&&p.issuer));
    }
    let mut needed: Vec<String> = needed.into_iter().map(|c| c.name).collect();
    needed.sort();
    needed.dedup();
    let (session, csrf, binding) = (random()?, random()?, random()?);
    let rec = ClaimsSessionRecord {
        session_id: session.expose().to_owned(),
        binding: binding.digest().as_str().to_owned(),
        csrf: csrf.digest().as_str().to_owned(),
        client_id: client.client_id.clone(),
        redirect_uri,
        client_state: req.state,
        owner: t.owner,
        rs_client_id: t.rs_client_id,
        permissions: t.permissions,
        carried: t.carried,
        pending_id: t.pending_id,
        provider: None,
        oidc_state: None,
        oidc_nonce: None,
        pkce_verifier: None,
        failures: 0,
        created_at: now,
        expires_at: now + state.settings.uma.claims_session_lifetime_secs,
        finished_at: None,
    };
    store.insert_claims_session(&rec).await?;
    Ok(Started {
        needed,
        session_id: rec.session_id,
        csrf,
        binding,
        client_name: client.metadata.client_name.clone().unwrap_or(client.client_id),
        choices,
    })
}

/// A form post's session: live, from the browser that started it, with its CSRF token (Grant §5.1).
pub async fn session_of_form(
    state: &AppState,
    session_id: Option<&str>,
    csrf: Option<&str>,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<ClaimsSessionRecord, Refusal> {
    let id = session_id.ok_or_else(|| Refusal::page(400, "The form is incomplete."))?;
    let s = state.store.find_claims_session(id, now).await?.ok_or_else(|| {
        Refusal::page(
            400,
            "This sign-in has expired or is already finished. Go back to the application and start again.",
        )
    })?;
    check_binding(&s, binding)?;
    match csrf {
        Some(c) if OpaqueToken::presented(c).digest().as_str() == s.csrf => Ok(s),
        _ => Err(Refusal::page(403, "The form could not be verified. Go back to the application and start again.")),
    }
}

fn check_binding(s: &ClaimsSessionRecord, binding: Option<&str>) -> Result<(), Refusal> {
    match binding {
        Some(b) if OpaqueToken::presented(b).digest().as_str() == s.binding => Ok(()),
        _ => {
            tracing::warn!(client_id = %s.client_id, "a claims-gathering session was continued from another browser");
            Err(Refusal::page(
                403,
                "This sign-in was started in another browser. Open the link from the application in this browser.",
            ))
        }
    }
}

/// The person chose an OpenID provider: where to send the browser.
pub async fn choose_provider(state: &AppState, s: &ClaimsSessionRecord, provider: &str) -> Result<String, Refusal> {
    if !state.verifiers.sign_in_providers().iter().any(|p| p.id == provider) {
        return Err(Refusal::page(400, "This sign-in option is not offered."));
    }
    let (oidc_state, nonce) = (random()?, random()?);
    let callback = state.settings.endpoint(CALLBACK_PATH);
    let started =
        state.verifiers.start_sign_in(provider, &callback, oidc_state.expose(), nonce.expose()).await.map_err(|e| {
            tracing::warn!(provider, detail = e.detail(), "an OpenID provider cannot be used now");
            Refusal::page(503, "The identity provider cannot be reached now. Try again in a moment.")
        })?;
    let stored = state
        .store
        .start_provider_sign_in(
            &s.session_id,
            provider,
            oidc_state.digest().as_str(),
            nonce.expose(),
            &started.pkce_verifier,
        )
        .await?;
    if !stored {
        return Err(Refusal::page(400, "This sign-in is already finished."));
    }
    Ok(started.url)
}

/// The provider's answer (`GET /claims/callback`).
#[derive(Debug, Default)]
pub struct ProviderAnswer {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// The provider sent the browser back: verify, then back to the client with a new ticket.
pub async fn provider_answered(
    state: &AppState,
    answer: ProviderAnswer,
    binding: Option<&str>,
    now: UnixTime,
) -> Result<String, Refusal> {
    let expired = Refusal::page(
        400,
        "This sign-in has expired or is already finished. Go back to the application and start again.",
    );
    let oidc_state = answer.state.ok_or_else(|| Refusal::page(400, "The identity provider's answer is incomplete."))?;
    let digest = OpaqueToken::presented(&oidc_state).digest();
    let s = state.store.find_claims_session_by_oidc_state(digest.as_str(), now).await?.ok_or(expired)?;
    check_binding(&s, binding)?;
    let code = match (answer.code, answer.error) {
        (Some(code), None) => code,
        (_, error) => {
            tracing::info!(provider = ?s.provider, error = ?error, "the OpenID provider did not sign the person in");
            return finish_without(state, &s, "access_denied", "the requesting party did not sign in", now).await;
        }
    };
    let (Some(provider), Some(nonce), Some(verifier)) = (&s.provider, &s.oidc_nonce, &s.pkce_verifier) else {
        return Err(Refusal::page(400, "This sign-in was not started here."));
    };
    let callback = state.settings.endpoint(CALLBACK_PATH);
    match state.verifiers.finish_sign_in(provider, &callback, &code, verifier, nonce, now).await {
        Ok(claims) => complete(state, &s, claims.to_party_from(ClaimSource::Gathered), now).await,
        Err(e) if e.category() == Rejection::Unavailable => {
            Err(Refusal::page(503, "The service is temporarily unavailable. Try again in a moment."))
        }
        Err(_) => finish_without(state, &s, "access_denied", "the sign-in could not be verified", now).await,
    }
}

/// Sign-in with a local Tessera account.
pub async fn local_account(
    state: &AppState,
    s: &ClaimsSessionRecord,
    username: &str,
    password: &str,
    now: UnixTime,
) -> Result<String, Refusal> {
    if !state.settings.uma.local_account_claims {
        return Err(Refusal::page(400, "This sign-in option is not offered."));
    }
    let account = accounts::check_password(&state.store, username, password)
        .await
        .map_err(|_| Refusal::page(503, "The service is temporarily unavailable. Try again in a moment."))?;
    let Some(account) = account else {
        tracing::info!("claims gathering: local sign-in refused");
        return match state
            .store
            .record_claims_sign_in_failure(&s.session_id, accounts::MAX_SIGN_IN_FAILURES, now)
            .await?
        {
            Some(_) => Err(Refusal::WrongPassword),
            None => {
                Err(error_to(&s.redirect_uri, "access_denied", "too many failed sign-ins", s.client_state.as_deref()))
            }
        };
    };
    let attributes: serde_json::Map<String, Value> = match state.store.find_account(&account).await? {
        Some(a) => serde_json::from_str(&a.attributes).unwrap_or_default(),
        None => serde_json::Map::new(),
    };
    let party = RequestingParty {
        iss: Some(state.settings.issuer.clone()),
        sub: Some(account),
        claims: attributes.into_iter().filter(|(k, _)| k != "iss" && k != "sub").collect(),
        source: ClaimSource::Gathered,
        verifier: Some(LOCAL_ACCOUNTS.to_owned()),
    };
    complete(state, s, party, now).await
}

/// The person declined.
pub async fn cancel(state: &AppState, s: &ClaimsSessionRecord, now: UnixTime) -> Result<String, Refusal> {
    finish_without(state, s, "access_denied", "the requesting party declined", now).await
}

async fn finish_without(
    state: &AppState,
    s: &ClaimsSessionRecord,
    code: &str,
    description: &str,
    now: UnixTime,
) -> Result<String, Refusal> {
    if !state.store.finish_claims_session(&s.session_id, None, now).await? {
        return Err(Refusal::page(400, "This sign-in is already finished."));
    }
    match error_to(&s.redirect_uri, code, description, s.client_state.as_deref()) {
        Refusal::Redirect(to) => Ok(to),
        other => Err(other),
    }
}

/// Claims gathered: a new ticket for the client, carrying them merged with what the spent ticket
/// carried (someone else's earlier claims are replaced), stored as the session ends.
async fn complete(
    state: &AppState,
    s: &ClaimsSessionRecord,
    party: RequestingParty,
    now: UnixTime,
) -> Result<String, Refusal> {
    let carried: Option<Carried> = s.carried.as_deref().and_then(|c| serde_json::from_str(c).ok());
    let merged = merge(carried.as_ref(), None, Some(&party))
        .map_err(|_| Refusal::page(500, "The server could not continue."))?;
    let carried = serde_json::to_string(&Carried { party: merged.party, sources: merged.sources })
        .map_err(|_| Refusal::page(500, "The server could not continue."))?;
    let token = random()?;
    let ticket = TicketRecord {
        digest: token.digest().as_str().to_owned(),
        owner: s.owner.clone(),
        rs_client_id: s.rs_client_id.clone(),
        permissions: s.permissions.clone(),
        created_at: now,
        expires_at: now + state.settings.tokens.ticket,
        client_id: Some(s.client_id.clone()),
        carried: Some(carried),
        pending_id: s.pending_id.clone(),
    };
    if !state.store.finish_claims_session(&s.session_id, Some(&ticket), now).await? {
        return Err(Refusal::page(400, "This sign-in is already finished."));
    }
    tracing::info!(client_id = %s.client_id, verifier = ?party.verifier, "claims gathered; a new ticket goes back to the client");
    redirect_with(&s.redirect_uri, &[("ticket", token.expose())], s.client_state.as_deref())
        .map_err(|_| Refusal::page(400, "The application's return address is not usable."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claims_redirect_uri_is_an_exact_match_or_the_only_one() {
        let one = vec!["https://c.test/cb?x=1".to_owned()];
        let two = vec!["https://c.test/a".to_owned(), "https://c.test/b".to_owned()];
        assert_eq!(claims_redirect_uri(&one, Some("https://c.test/cb?x=1")).as_deref(), Some("https://c.test/cb?x=1"));
        assert_eq!(claims_redirect_uri(&one, None).as_deref(), Some("https://c.test/cb?x=1"));
        for near in
            ["https://c.test/cb?x=1/", "https://C.test/cb?x=1", "https://c.test:443/cb?x=1", "https://c.test/cb"]
        {
            assert_eq!(claims_redirect_uri(&one, Some(near)), None, "{near}");
        }
        assert_eq!(claims_redirect_uri(&two, None), None);
        assert_eq!(claims_redirect_uri(&two, Some("https://c.test/b")).as_deref(), Some("https://c.test/b"));
        assert_eq!(claims_redirect_uri(&[], None), None);
        assert_eq!(claims_redirect_uri(&[], Some("https://c.test/a")), None);
    }
}
