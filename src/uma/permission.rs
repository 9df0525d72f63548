//! The permission endpoint (FedAuthz §4): a resource server asks, on a client's behalf, for the
//! permissions the client tried to use, and gets a permission ticket to hand to the client. The
//! ticket is opaque, single use, short-lived and stored only as its digest; it records the owner,
//! the resource server and the permissions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::UnixTime;
use crate::oauth::pat::Pat;
use crate::oauth::tokens::OpaqueToken;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{Store, TicketRecord};
use crate::uma::resources::{MAX_SCOPES, description_of};

/// At most this many permission objects in one request (threats D8).
pub const MAX_PERMISSIONS: usize = 100;

/// One requested permission: a resource and some of its scopes (zero scopes allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub resource_id: String,
    pub resource_scopes: Vec<String>,
}

/// Parses one permission object or an array of them; the same resource twice merges its scopes.
pub fn parse_request(body: &[u8]) -> Result<Vec<Permission>, OAuthError> {
    let bad = || OAuthError::invalid_request("the body must be a permission object or a non-empty array of them");
    let value: Value = serde_json::from_slice(body).map_err(|_| bad())?;
    let items = match value {
        Value::Array(a) if !a.is_empty() => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err(bad()),
    };
    if items.len() > MAX_PERMISSIONS {
        return Err(OAuthError::invalid_request("at most 100 permissions per request"));
    }
    let mut out: Vec<Permission> = Vec::new();
    for item in items {
        let obj = item.as_object().ok_or_else(bad)?;
        let resource_id = obj
            .get("resource_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OAuthError::invalid_request("each permission needs a `resource_id` string"))?;
        let scopes: Vec<String> = match obj.get("resource_scopes") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| OAuthError::invalid_request("`resource_scopes` must be an array of strings"))?,
            Some(_) => return Err(OAuthError::invalid_request("`resource_scopes` must be an array of strings")),
        };
        if scopes.len() > MAX_SCOPES {
            return Err(OAuthError::invalid_request("at most 100 scopes per permission"));
        }
        let entry = match out.iter_mut().find(|p| p.resource_id == resource_id) {
            Some(p) => p,
            None => {
                out.push(Permission { resource_id: resource_id.to_owned(), resource_scopes: Vec::new() });
                out.last_mut().ok_or_else(bad)?
            }
        };
        for s in scopes {
            if !entry.resource_scopes.contains(&s) {
                entry.resource_scopes.push(s);
            }
        }
    }
    Ok(out)
}

/// Checks every permission against the PAT's owner and resource server (threats D5) and the
/// resource's registered scopes, then issues the ticket.
pub async fn request_ticket(
    store: &Store,
    pat: &Pat,
    permissions: &[Permission],
    lifetime: i64,
    now: UnixTime,
) -> Result<OpaqueToken, OAuthError> {
    // One query for every resource of the request (up to 100), not one per permission.
    let ids: Vec<&str> = permissions.iter().map(|p| p.resource_id.as_str()).collect();
    let found = store.find_resources(&ids, &pat.owner, Some(&pat.client_id)).await?;
    for p in permissions {
        let rec = found.iter().find(|r| r.resource_id == p.resource_id).ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidResourceId)
                .describe("a resource_id is not a resource of this resource owner and resource server")
                .detail(format!("resource `{}`", p.resource_id))
        })?;
        let registered = description_of(rec)?.resource_scopes;
        if let Some(s) = p.resource_scopes.iter().find(|s| !registered.contains(s)) {
            return Err(OAuthError::new(ErrorCode::InvalidScope)
                .describe("a requested scope is not registered for its resource")
                .detail(format!("scope `{s}` on resource `{}`", p.resource_id)));
        }
    }
    let ticket = OpaqueToken::generate().map_err(|_| OAuthError::server_error("the random generator failed"))?;
    store
        .insert_ticket(&TicketRecord {
            digest: ticket.digest().as_str().to_owned(),
            owner: pat.owner.clone(),
            rs_client_id: pat.client_id.clone(),
            permissions: serde_json::to_string(permissions).map_err(OAuthError::server_error)?,
            created_at: now,
            expires_at: now + lifetime,
            client_id: None,
            carried: None,
            pending_id: None,
        })
        .await?;
    tracing::info!(owner = %pat.owner, rs = %pat.client_id, permissions = permissions.len(), "permission ticket issued");
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_arrays_are_accepted_and_merged() {
        let one = parse_request(br#"{"resource_id":"r1","resource_scopes":["view"]}"#).unwrap();
        assert_eq!(one, [Permission { resource_id: "r1".into(), resource_scopes: vec!["view".into()] }]);
        let many = parse_request(
            br#"[{"resource_id":"r1","resource_scopes":["view"]},{"resource_id":"r2"},{"resource_id":"r1","resource_scopes":["edit","view"]}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].resource_scopes, ["view", "edit"]);
        assert!(many[1].resource_scopes.is_empty());
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in
            [&b"[]"[..], b"{}", b"[1]", br#"{"resource_id":5}"#, br#"{"resource_id":"r","resource_scopes":"v"}"#, b"x"]
        {
            assert!(parse_request(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let too_many = format!("[{}]", vec![r#"{"resource_id":"r"}"#; 101].join(","));
        assert!(parse_request(too_many.as_bytes()).is_err());
    }
}
