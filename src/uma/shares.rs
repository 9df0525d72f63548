//! Resource-owner sharing through the protection API: a resource server, holding its owner's PAT,
//! creates, lists and revokes the owner's shares of the resources it registered ("share resource R,
//! scopes S, with a party presenting claims C, until T"). The shares are data the policy engine
//! links into its share template at every assessment (docs/policies.md), so a revocation takes effect
//! on the next one. A share of another owner's or another resource server's resource does not exist
//! here (404), exactly like the resource itself.

use crate::clock::UnixTime;
use crate::oauth::pat::Pat;
use crate::oauth::{ErrorCode, OAuthError};
use crate::policy::PolicyEngine;
use crate::policy::sharing::{self, NewShare, Share, ShareError};
use crate::store::Store;

fn share_error(e: ShareError) -> OAuthError {
    match e {
        ShareError::Invalid(why) => OAuthError::invalid_request(why),
        ShareError::Store(e) => OAuthError::from(e),
        ShareError::Corrupt(why) => OAuthError::server_error(why),
    }
}

pub fn parse(body: &[u8]) -> Result<NewShare, OAuthError> {
    serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_request("the body must be a share: resource_id, scopes, matcher, optional expires_at")
            .detail(e.to_string())
    })
}

pub async fn create(
    store: &Store,
    engine: &PolicyEngine,
    pat: &Pat,
    new: NewShare,
    now: UnixTime,
) -> Result<Share, OAuthError> {
    if store.find_resource(&new.resource_id, &pat.owner, &pat.client_id).await?.is_none() {
        return Err(OAuthError::new(ErrorCode::InvalidResourceId)
            .describe("the resource is not a resource of this resource owner and resource server"));
    }
    let share = sharing::create_share(store, engine, &pat.owner, new, now).await.map_err(share_error)?;
    tracing::info!(share_id = %share.id, owner = %pat.owner, resource_id = %share.resource_id, "share created");
    Ok(share)
}

/// The owner's shares of resources this resource server registered, revoked and expired included.
pub async fn list(store: &Store, pat: &Pat) -> Result<Vec<Share>, OAuthError> {
    let mut out = Vec::new();
    for share in sharing::list_shares(store, &pat.owner).await.map_err(share_error)? {
        if store.find_resource(&share.resource_id, &pat.owner, &pat.client_id).await?.is_some() {
            out.push(share);
        }
    }
    Ok(out)
}

pub async fn revoke(store: &Store, pat: &Pat, share_id: &str, now: UnixTime) -> Result<(), OAuthError> {
    let shares = list(store, pat).await?;
    let visible = shares.iter().any(|s| s.id == share_id && s.revoked_at.is_none());
    if !visible || !sharing::revoke_share(store, &pat.owner, share_id, now).await.map_err(share_error)? {
        return Err(OAuthError::not_found());
    }
    // Grants the share may have led to end with it (checklist A-21): the next request is re-assessed.
    if let Some(share) = shares.iter().find(|s| s.id == share_id) {
        store.revoke_grants_on_resource(&pat.owner, &share.resource_id, now).await?;
    }
    tracing::info!(share_id = %share_id, owner = %pat.owner, "share revoked");
    Ok(())
}
