//! Token revocation (RFC 7009). A client revokes only its own tokens. Revoking a refresh token ends
//! its whole grant, access tokens included (RFC 7009 §2.1). An unknown token, or another client's,
//! gets the same 200 as a revoked one (§2.2, checklist A-25), so the endpoint reveals nothing; the
//! attempt on another client's token is logged. RPTs are access tokens here; a PCT is deleted with the
//! claims it kept (Grant §3.7, threats D9).

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::client::Client;
use crate::oauth::tokens::{OpaqueToken, TokenDigest};
use crate::store::Store;

async fn revoke_access(
    store: &Store,
    client: &Client,
    digest: &TokenDigest,
    now: UnixTime,
) -> Result<bool, OAuthError> {
    Ok(store.revoke_access_token(digest.as_str(), &client.client_id, now).await?)
}

async fn revoke_refresh(
    store: &Store,
    client: &Client,
    digest: &TokenDigest,
    now: UnixTime,
) -> Result<bool, OAuthError> {
    match store.refresh_token_family(digest.as_str(), &client.client_id).await? {
        Some(family) => {
            store.revoke_family(&family, now).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `token_type_hint` may be ignored (RFC 7009 §2.1), and is: every kind is looked up, cheapest first.
pub async fn revoke(store: &Store, client: &Client, token: &str, now: UnixTime) -> Result<(), OAuthError> {
    let digest = OpaqueToken::presented(token).digest();
    let revoked = revoke_access(store, client, &digest, now).await?
        || revoke_refresh(store, client, &digest, now).await?
        || store.revoke_pct(digest.as_str(), &client.client_id).await?;
    if revoked {
        tracing::info!(client_id = %client.client_id, "token revoked");
    } else if store.find_access_token(digest.as_str()).await?.is_some()
        || store.find_rpt(digest.as_str()).await?.is_some()
    {
        tracing::warn!(client_id = %client.client_id, "a client tried to revoke another client's token; refused silently");
    }
    Ok(())
}
