//! Client registration: RFC 7591 (register) and RFC 7592 (read, update, delete with the registration
//! access token). The same `register` serves the HTTP endpoint, the CLI and the configuration file.
//!
//! Client secrets and registration access tokens are 256-bit random values shown once, in the
//! registration response, and stored only as SHA-256 digests.

use serde_json::{Map, Value, json};

use crate::clock::UnixTime;
use crate::config::{Settings, StaticClient};
use crate::oauth::client::{self, Client, ClientMetadata, ClientSource, RequestedMetadata};
use crate::oauth::jwks_fetch::JwksFetcher;
use crate::oauth::tokens::{OpaqueToken, TokenDigest};
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{ClientRecord, Store};

pub const REGISTRATION_PATH: &str = "/register";

/// A freshly registered client and the secrets shown to its owner exactly once.
pub struct Registered {
    pub client: Client,
    pub client_secret: Option<OpaqueToken>,
    pub registration_access_token: Option<OpaqueToken>,
}

pub fn client_from_record(rec: &ClientRecord) -> Result<Client, OAuthError> {
    let metadata: ClientMetadata = serde_json::from_str(&rec.metadata).map_err(|e| {
        OAuthError::server_error(format!("stored metadata of client `{}` is unreadable: {e}", rec.client_id))
    })?;
    let source = ClientSource::parse(&rec.source)
        .ok_or_else(|| OAuthError::server_error(format!("client `{}` has unknown source", rec.client_id)))?;
    Ok(Client {
        client_id: rec.client_id.clone(),
        metadata,
        source,
        issued_at: rec.issued_at,
        secret_expires_at: rec.secret_expires_at,
        bound_owner: rec.bound_owner.clone(),
    })
}

fn random_token() -> Result<OpaqueToken, OAuthError> {
    OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))
}

fn metadata_json(metadata: &ClientMetadata) -> Result<String, OAuthError> {
    serde_json::to_string(metadata).map_err(OAuthError::server_error)
}

/// A `jwks_uri` must really serve a JWK Set when the client registers it (HEART-OAuth2 §2.2.4).
async fn check_jwks_uri(fetcher: &JwksFetcher, metadata: &ClientMetadata) -> Result<(), OAuthError> {
    if let Some(uri) = &metadata.jwks_uri {
        fetcher.check(uri).await.map_err(|e| {
            OAuthError::invalid_client_metadata("`jwks_uri` did not return a usable JWK Set").detail(e.to_string())
        })?;
    }
    Ok(())
}

/// Registers a client with already validated metadata.
pub async fn register(
    store: &Store,
    fetcher: &JwksFetcher,
    metadata: ClientMetadata,
    source: ClientSource,
    bound_owner: Option<String>,
    now: UnixTime,
) -> Result<Registered, OAuthError> {
    check_jwks_uri(fetcher, &metadata).await?;
    let client_secret = if metadata.token_endpoint_auth_method.uses_secret() { Some(random_token()?) } else { None };
    let registration_access_token = if source == ClientSource::Dynamic { Some(random_token()?) } else { None };
    let client_id = uuid::Uuid::new_v4().to_string();
    let rec = ClientRecord {
        client_id: client_id.clone(),
        secret_digest: client_secret.as_ref().map(|s| s.digest().as_str().to_owned()),
        registration_token_digest: registration_access_token.as_ref().map(|t| t.digest().as_str().to_owned()),
        metadata: metadata_json(&metadata)?,
        source: source.as_str().to_owned(),
        issued_at: now,
        secret_expires_at: 0,
        updated_at: now,
        bound_owner: bound_owner.clone(),
    };
    if !store.insert_client(&rec).await? {
        return Err(OAuthError::server_error("generated client id collided"));
    }
    tracing::info!(client_id = %client_id, source = source.as_str(), method = %metadata.token_endpoint_auth_method, "client registered");
    Ok(Registered {
        client: Client { client_id, metadata, source, issued_at: now, secret_expires_at: 0, bound_owner },
        client_secret,
        registration_access_token,
    })
}

/// The RFC 7591 §3.2.1 / RFC 7592 §3 response body: every registered value plus the server's members.
pub fn client_information(
    settings: &Settings,
    client: &Client,
    client_secret: Option<&OpaqueToken>,
    registration_access_token: Option<&OpaqueToken>,
) -> Value {
    let mut body = match serde_json::to_value(&client.metadata) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    body.insert("client_id".into(), json!(client.client_id));
    body.insert("client_id_issued_at".into(), json!(client.issued_at));
    if let Some(s) = client_secret {
        body.insert("client_secret".into(), json!(s.expose()));
    }
    if client.metadata.token_endpoint_auth_method.uses_secret() {
        body.insert("client_secret_expires_at".into(), json!(client.secret_expires_at));
    }
    if let Some(t) = registration_access_token {
        body.insert("registration_access_token".into(), json!(t.expose()));
    }
    if client.source == ClientSource::Dynamic {
        body.insert(
            "registration_client_uri".into(),
            json!(settings.endpoint(&format!("{REGISTRATION_PATH}/{}", client.client_id))),
        );
    }
    Value::Object(body)
}

/// RFC 7592: the client managed by this registration access token. Every failure looks the same, so
/// the answer does not reveal whether the client exists.
pub async fn managed_client(store: &Store, client_id: &str, token: Option<&OpaqueToken>) -> Result<Client, OAuthError> {
    client_from_record(&managed_record(store, client_id, token).await?)
}

async fn managed_record(
    store: &Store,
    client_id: &str,
    token: Option<&OpaqueToken>,
) -> Result<ClientRecord, OAuthError> {
    let token = token.ok_or_else(|| OAuthError::invalid_token("no registration access token"))?;
    store
        .find_client_for_management(client_id, token.digest().as_str())
        .await?
        .ok_or_else(|| OAuthError::invalid_token("registration access token does not match the client"))
}

/// RFC 7592 §2.2: replaces the client's metadata.
pub async fn update(
    store: &Store,
    fetcher: &JwksFetcher,
    client_id: &str,
    token: Option<&OpaqueToken>,
    body: &[u8],
    now: UnixTime,
) -> Result<Client, OAuthError> {
    let record = managed_record(store, client_id, token).await?;
    let current = client_from_record(&record)?;
    let req = RequestedMetadata::from_json(body)?;
    if req.client_id.as_ref().and_then(Value::as_str) != Some(client_id) {
        return Err(OAuthError::invalid_request("`client_id` must be present and equal the client's"));
    }
    if req.registration_access_token.is_some()
        || req.registration_client_uri.is_some()
        || req.client_id_issued_at.is_some()
        || req.client_secret_expires_at.is_some()
    {
        return Err(OAuthError::invalid_request(
            "registration_access_token, registration_client_uri, client_id_issued_at and client_secret_expires_at are set by the server",
        ));
    }
    if let Some(secret) = &req.client_secret {
        // RFC 7592 §2.2: a client_secret sent back must be the current one.
        let matches = record.secret_digest.as_deref().is_some_and(|d| digests_equal(d, &TokenDigest::of(secret)));
        if !matches {
            return Err(OAuthError::invalid_client_metadata("`client_secret` does not match"));
        }
    }
    let metadata = client::validate(req)?;
    if metadata.token_endpoint_auth_method != current.metadata.token_endpoint_auth_method {
        return Err(OAuthError::invalid_client_metadata(
            "token_endpoint_auth_method cannot change; register a new client instead",
        ));
    }
    check_jwks_uri(fetcher, &metadata).await?;
    let token = token.ok_or_else(|| OAuthError::invalid_token("no registration access token"))?;
    if !store.update_client_metadata(client_id, token.digest().as_str(), &metadata_json(&metadata)?, now).await? {
        return Err(OAuthError::invalid_token("client vanished during update"));
    }
    tracing::info!(client_id = %client_id, "client metadata updated");
    Ok(Client { metadata, ..current })
}

/// RFC 7592 §2.3: deletes the client; its credentials and tokens stop working at once.
pub async fn delete(store: &Store, client_id: &str, token: Option<&OpaqueToken>) -> Result<(), OAuthError> {
    let token = token.ok_or_else(|| OAuthError::invalid_token("no registration access token"))?;
    if !store.delete_client(client_id, Some(token.digest().as_str())).await? {
        return Err(OAuthError::invalid_token("registration access token does not match the client"));
    }
    tracing::info!(client_id = %client_id, "client deleted");
    Ok(())
}

/// Constant-time comparison of two hex digests.
pub fn digests_equal(stored: &str, presented: &TokenDigest) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), presented.as_str().as_bytes()).is_ok()
}

/// Writes the configuration file's clients into the store (validated like any registration).
pub fn static_client_record(c: &StaticClient, now: UnixTime) -> Result<ClientRecord, String> {
    let req = RequestedMetadata {
        redirect_uris: Some(c.redirect_uris.clone()),
        claims_redirect_uris: Some(c.claims_redirect_uris.clone()),
        grant_types: c.grant_types.clone(),
        response_types: c.response_types.clone(),
        token_endpoint_auth_method: c.token_endpoint_auth_method.clone(),
        jwks: match &c.jwks {
            Some(s) => Some(serde_json::from_str(s).map_err(|e| format!("`jwks` is not JSON: {e}"))?),
            None => None,
        },
        jwks_uri: c.jwks_uri.clone(),
        client_name: c.client_name.clone(),
        scope: c.scope.clone(),
        persist_pushed_claims: Some(c.persist_pushed_claims),
        ..RequestedMetadata::default()
    };
    let metadata = client::validate(req)
        .map_err(|e| e.description.map(|d| d.into_owned()).unwrap_or_else(|| e.code.as_str().to_owned()))?;
    let secret_digest = match (metadata.token_endpoint_auth_method.uses_secret(), &c.client_secret) {
        (true, Some(s)) => Some(TokenDigest::of(s).as_str().to_owned()),
        (true, None) => {
            return Err(format!("{} needs `client_secret`", metadata.token_endpoint_auth_method));
        }
        (false, Some(_)) => {
            return Err(format!("{} takes no `client_secret`", metadata.token_endpoint_auth_method));
        }
        (false, None) => None,
    };
    Ok(ClientRecord {
        client_id: c.client_id.clone(),
        secret_digest,
        registration_token_digest: None,
        metadata: serde_json::to_string(&metadata).map_err(|e| e.to_string())?,
        source: ClientSource::Config.as_str().to_owned(),
        issued_at: now,
        secret_expires_at: 0,
        updated_at: now,
        bound_owner: c.owner.clone(),
    })
}

/// Brings the store in line with the configuration file's `[[clients]]`: declared clients are
/// inserted or updated, and clients that came from the file but are no longer in it are deleted, so
/// removing a client from the file revokes it at the next start.
pub async fn sync_static_clients(store: &Store, settings: &Settings, now: UnixTime) -> Result<(), String> {
    for rec in store.list_clients().await.map_err(|e| e.to_string())? {
        if rec.source == ClientSource::Config.as_str() && !settings.clients.iter().any(|c| c.client_id == rec.client_id)
        {
            store.delete_client(&rec.client_id, None).await.map_err(|e| e.to_string())?;
            tracing::warn!(client_id = %rec.client_id, "client removed from the configuration: deleted");
        }
    }
    for c in &settings.clients {
        let rec =
            static_client_record(c, now).map_err(|e| format!("client `{}` in the configuration: {e}", c.client_id))?;
        if !store.upsert_config_client(&rec).await.map_err(|e| e.to_string())? {
            return Err(format!(
                "client `{}` in the configuration clashes with a client registered by other means",
                c.client_id
            ));
        }
    }
    Ok(())
}

/// Whether an initial access token may register (RFC 7591 §3): configured, or issued by the CLI.
pub async fn initial_access_token_is_valid(
    store: &Store,
    settings: &Settings,
    token: &OpaqueToken,
    now: UnixTime,
) -> Result<bool, OAuthError> {
    let presented = token.digest();
    let configured =
        settings.initial_access_tokens.iter().any(|t| digests_equal(TokenDigest::of(t.expose()).as_str(), &presented));
    Ok(configured || store.initial_access_token_is_valid(presented.as_str(), now).await?)
}

/// `code` for an OAuth error that means "not registered" in CLI output.
pub fn is_client_error(e: &OAuthError) -> bool {
    !matches!(e.code, ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable)
}
