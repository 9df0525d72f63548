//! Resource registration (FedAuthz §3): a resource server describes its owner's resources and the
//! scopes they offer. A resource belongs to the PAT's owner and to the registering resource server;
//! for anyone else it does not exist (404, never someone else's data: checklist A-16, A-17).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::UnixTime;
use crate::oauth::OAuthError;
use crate::oauth::pat::Pat;
use crate::store::{ResourceFilter, ResourceRecord, Store};

/// Limits on a description (threats D8).
pub const MAX_SCOPES: usize = 100;
const MAX_TEXT: usize = 255;
const MAX_DESCRIPTION: usize = 4_096;
pub const MAX_LIST: i64 = 1_000;

/// A resource description (FedAuthz §3.1) as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceDescription {
    pub resource_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
}

fn bad(description: &'static str) -> OAuthError {
    OAuthError::invalid_request(description)
}

/// Parses and checks a description; unknown members are ignored (A-16).
pub fn parse_description(body: &[u8]) -> Result<ResourceDescription, OAuthError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not a JSON resource description"))?;
    let obj = value.as_object().ok_or_else(|| bad("the body is not a JSON object"))?;
    let scopes = obj
        .get("resource_scopes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`resource_scopes` must be an array of strings"))?;
    let mut resource_scopes: Vec<String> = Vec::new();
    for s in scopes {
        let s = s.as_str().ok_or_else(|| bad("`resource_scopes` must be an array of strings"))?;
        if s.is_empty() || s.len() > MAX_TEXT || s.chars().any(char::is_whitespace) {
            return Err(bad("each resource scope is a non-empty string without spaces, at most 255 characters"));
        }
        if !resource_scopes.iter().any(|x| x == s) {
            resource_scopes.push(s.to_owned());
        }
    }
    if resource_scopes.len() > MAX_SCOPES {
        return Err(bad("at most 100 resource scopes"));
    }
    let text = |key: &str, max: usize| -> Result<Option<String>, OAuthError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
            Some(_) => {
                Err(OAuthError::invalid_request(format!("`{key}` must be a string of at most {max} characters")))
            }
        }
    };
    let icon_uri = text("icon_uri", 2_048)?;
    if let Some(u) = &icon_uri
        && !url::Url::parse(u).map(|u| matches!(u.scheme(), "https" | "http")).unwrap_or(false)
    {
        return Err(bad("`icon_uri` must be an http(s) URL"));
    }
    Ok(ResourceDescription {
        resource_scopes,
        description: text("description", MAX_DESCRIPTION)?,
        icon_uri,
        name: text("name", MAX_TEXT)?,
        resource_type: text("type", MAX_TEXT)?,
    })
}

fn record(pat: &Pat, id: &str, d: &ResourceDescription, now: UnixTime) -> Result<ResourceRecord, OAuthError> {
    Ok(ResourceRecord {
        resource_id: id.to_owned(),
        owner: pat.owner.clone(),
        rs_client_id: pat.client_id.clone(),
        description: serde_json::to_string(d).map_err(OAuthError::server_error)?,
        name: d.name.clone(),
        resource_type: d.resource_type.clone(),
        created_at: now,
        updated_at: now,
    })
}

pub fn description_of(rec: &ResourceRecord) -> Result<ResourceDescription, OAuthError> {
    serde_json::from_str(&rec.description)
        .map_err(|e| OAuthError::server_error(format!("stored resource `{}` unreadable: {e}", rec.resource_id)))
}

pub async fn create(store: &Store, pat: &Pat, d: &ResourceDescription, now: UnixTime) -> Result<String, OAuthError> {
    let id = uuid::Uuid::new_v4().to_string();
    store.insert_resource(&record(pat, &id, d, now)?).await?;
    tracing::info!(resource_id = %id, owner = %pat.owner, rs = %pat.client_id, "resource registered");
    Ok(id)
}

pub async fn read(store: &Store, pat: &Pat, id: &str) -> Result<ResourceDescription, OAuthError> {
    let rec = store.find_resource(id, &pat.owner, &pat.client_id).await?.ok_or_else(OAuthError::not_found)?;
    description_of(&rec)
}

pub async fn update(
    store: &Store,
    pat: &Pat,
    id: &str,
    d: &ResourceDescription,
    now: UnixTime,
) -> Result<(), OAuthError> {
    let before = store.find_resource(id, &pat.owner, &pat.client_id).await?.ok_or_else(OAuthError::not_found)?;
    let before = description_of(&before)?;
    if !store.update_resource(&record(pat, id, d, now)?).await? {
        return Err(OAuthError::not_found());
    }
    // A scope taken away ends the grants that carry it (checklist A-21); they are re-assessed.
    if before.resource_scopes.iter().any(|s| !d.resource_scopes.contains(s)) {
        store.revoke_grants_on_resource(&pat.owner, id, now).await?;
    }
    Ok(())
}

pub async fn delete(store: &Store, pat: &Pat, id: &str, now: UnixTime) -> Result<(), OAuthError> {
    if !store.delete_resource(id, &pat.owner, &pat.client_id).await? {
        return Err(OAuthError::not_found());
    }
    // A share of a deleted resource could never apply again; revoking it keeps the owner's list true.
    store.revoke_shares_of_resource(id, now).await?;
    // Protection ends at deregistration (FedAuthz §3): so do the grants on it (checklist A-21).
    store.revoke_grants_on_resource(&pat.owner, id, now).await?;
    tracing::info!(resource_id = %id, owner = %pat.owner, "resource deleted");
    Ok(())
}

/// Listing filters (A-31): `name`, `exactName`, `type`, `first`, `max`; anything else is refused
/// rather than silently ignored, since ignoring a filter would make a client act on the wrong resource.
pub fn parse_filter(pairs: &[(String, String)]) -> Result<ResourceFilter, OAuthError> {
    let mut f = ResourceFilter { max: MAX_LIST, ..ResourceFilter::default() };
    let number = |v: &str, key: &str| -> Result<i64, OAuthError> {
        v.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| OAuthError::invalid_request(format!("`{key}` must be a non-negative integer")))
    };
    for (k, v) in pairs {
        match k.as_str() {
            "name" => f.name = Some(v.clone()),
            "exactName" => {
                f.exact_name = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(OAuthError::invalid_request("`exactName` must be true or false")),
                }
            }
            "type" => f.resource_type = Some(v.clone()),
            "first" => f.first = number(v, "first")?,
            "max" => f.max = number(v, "max")?.min(MAX_LIST),
            other => return Err(OAuthError::invalid_request(format!("unsupported query parameter `{other}`"))),
        }
    }
    Ok(f)
}

pub async fn list(store: &Store, pat: &Pat, f: &ResourceFilter) -> Result<Vec<String>, OAuthError> {
    Ok(store.list_resource_ids(&pat.owner, &pat.client_id, f).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_need_string_scopes_and_ignore_unknown_members() {
        let d =
            parse_description(br#"{"resource_scopes":["view","http://x/s","view"],"name":"x-ray","type":"t","foo":1}"#)
                .unwrap();
        assert_eq!(d.resource_scopes, ["view", "http://x/s"]);
        assert_eq!(d.name.as_deref(), Some("x-ray"));
        for bad in [
            &br#"{"name":"x"}"#[..],
            br#"{"resource_scopes":"view"}"#,
            br#"{"resource_scopes":[1]}"#,
            br#"{"resource_scopes":["a b"]}"#,
            br#"{"resource_scopes":[],"name":5}"#,
            br#"{"resource_scopes":[],"icon_uri":"javascript:x"}"#,
            b"[]",
            b"nope",
        ] {
            assert!(parse_description(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unknown_list_filters_are_refused() {
        let p = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(parse_filter(&p("owner", "bob")).is_err());
        assert!(parse_filter(&p("max", "-1")).is_err());
        assert_eq!(parse_filter(&p("max", "5000")).unwrap().max, MAX_LIST);
        assert!(parse_filter(&p("exactName", "true")).unwrap().exact_name);
    }
}
