//! Resource-owner sharing through the protection API: a resource server, holding its owner's PAT,
//! creates, lists and revokes the owner's shares of the resources it registered ("share resource R,
//! scopes S, with a party presenting claims C, until T"). The shares are data the policy engine
//! links into its share template at every assessment (docs/policies.md), so a revocation takes effect
//! on the next one. A share of another owner's or another resource server's resource does not exist
//! here (404), exactly like the resource itself.
//!
//! The resource-owner console (`http::console`) manages the same shares for the signed-in owner,
//! across every resource server: the `*_as` functions take the owner and an optional resource-server
//! filter (a PAT's view is one resource server; the console's is all of them).

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
    create_as(store, engine, &pat.owner, Some(&pat.client_id), new, now).await
}

/// Creates a share for `owner`, of a resource of theirs (registered at `rs_client_id`, when given).
pub async fn create_as(
    store: &Store,
    engine: &PolicyEngine,
    owner: &str,
    rs_client_id: Option<&str>,
    new: NewShare,
    now: UnixTime,
) -> Result<Share, OAuthError> {
    if !owns(store, owner, rs_client_id, &new.resource_id).await? {
        return Err(OAuthError::new(ErrorCode::InvalidResourceId)
            .describe("the resource is not a resource of this resource owner and resource server"));
    }
    let share = sharing::create_share(store, engine, owner, new, now).await.map_err(share_error)?;
    tracing::info!(share_id = %share.id, owner = %owner, resource_id = %share.resource_id, "share created");
    Ok(share)
}

/// Whether `owner` has the resource (at `rs_client_id`, when given).
async fn owns(store: &Store, owner: &str, rs_client_id: Option<&str>, resource_id: &str) -> Result<bool, OAuthError> {
    Ok(match rs_client_id {
        Some(rs) => store.find_resource(resource_id, owner, rs).await?.is_some(),
        None => !store.find_resources(&[resource_id], owner, None).await?.is_empty(),
    })
}

/// The owner's shares of resources this resource server registered, revoked and expired included.
pub async fn list(store: &Store, pat: &Pat) -> Result<Vec<Share>, OAuthError> {
    list_as(store, &pat.owner, Some(&pat.client_id)).await
}

/// The owner's shares of resources they still have (at `rs_client_id`, when given), revoked and
/// expired included, newest first.
pub async fn list_as(store: &Store, owner: &str, rs_client_id: Option<&str>) -> Result<Vec<Share>, OAuthError> {
    let shares = sharing::list_shares(store, owner).await.map_err(share_error)?;
    let mut ids: Vec<&str> = shares.iter().map(|s| s.resource_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut held = std::collections::HashSet::new();
    for chunk in ids.chunks(RESOURCES_PER_LOOKUP) {
        held.extend(store.find_resources(chunk, owner, rs_client_id).await?.into_iter().map(|r| r.resource_id));
    }
    Ok(shares.into_iter().filter(|s| held.contains(&s.resource_id)).collect())
}

/// Resource ids per ownership lookup (well under every backend's limit on bound parameters).
const RESOURCES_PER_LOOKUP: usize = 500;

pub async fn revoke(store: &Store, pat: &Pat, share_id: &str, now: UnixTime) -> Result<(), OAuthError> {
    revoke_as(store, &pat.owner, Some(&pat.client_id), share_id, now).await
}

/// Revokes one of `owner`'s active shares (of a resource at `rs_client_id`, when given); anything
/// else is 404. RPTs and refresh tokens carrying a permission on the resource end with it.
pub async fn revoke_as(
    store: &Store,
    owner: &str,
    rs_client_id: Option<&str>,
    share_id: &str,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let shares = list_as(store, owner, rs_client_id).await?;
    let visible = shares.iter().any(|s| s.id == share_id && s.revoked_at.is_none());
    if !visible || !sharing::revoke_share(store, owner, share_id, now).await.map_err(share_error)? {
        return Err(OAuthError::not_found());
    }
    // Grants the share may have led to end with it (checklist A-21): the next request is re-assessed.
    if let Some(share) = shares.iter().find(|s| s.id == share_id) {
        store.revoke_grants_on_resource(owner, &share.resource_id, now).await?;
    }
    tracing::info!(share_id = %share_id, owner = %owner, "share revoked");
    Ok(())
}
