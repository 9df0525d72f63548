//! Requesting party tokens (Grant §3.3.5, FedAuthz §5.1.1): the permissions an RPT carries, how they
//! merge on an upgrade and narrow on a refresh, and how an RPT is minted (opaque, or a signed JWT
//! whose digest is stored like any opaque token, so both kinds are revocable and introspectable).

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::config::RptFormat;
use crate::keys::Keys;
use crate::oauth::OAuthError;
use crate::oauth::tokens::{OpaqueToken, TokenDigest};

/// One permission of an RPT: a resource, scopes on it and, when the grant has an end of its own (an
/// owner's approval with an expiry), that end. Without `exp` it lasts as long as the token carrying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedPermission {
    pub resource_id: String,
    pub resource_scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<UnixTime>,
}

impl GrantedPermission {
    pub fn is_valid_at(&self, now: UnixTime) -> bool {
        self.exp.is_none_or(|e| e > now)
    }
}

/// Adds `scope` on `resource_id` with `exp` to `perms`, joining the entry of the same resource and end.
pub fn add(perms: &mut Vec<GrantedPermission>, resource_id: &str, scope: &str, exp: Option<UnixTime>) {
    match perms.iter_mut().find(|p| p.resource_id == resource_id && p.exp == exp) {
        Some(p) => {
            if !p.resource_scopes.iter().any(|s| s == scope) {
                p.resource_scopes.push(scope.to_owned());
            }
        }
        None => perms.push(GrantedPermission {
            resource_id: resource_id.to_owned(),
            resource_scopes: vec![scope.to_owned()],
            exp,
        }),
    }
}

/// An upgrade's permissions (Grant §3.3.5.1): the new ones plus the old ones still valid at `now`,
/// each keeping its own end (an upgrade never extends an old grant). Which old permissions may be
/// carried at all is the policy engine's call (the grant re-assesses them first).
pub fn merge(old: &[GrantedPermission], new: &[GrantedPermission], now: UnixTime) -> Vec<GrantedPermission> {
    // The longest end per (resource, scope): no end beats any end.
    let mut best: Vec<(&str, &str, Option<UnixTime>)> = Vec::new();
    for p in new.iter().chain(old.iter().filter(|p| p.is_valid_at(now))) {
        for s in &p.resource_scopes {
            match best.iter_mut().find(|(r, sc, _)| *r == p.resource_id && *sc == s.as_str()) {
                Some(entry) => entry.2 = entry.2.zip(p.exp).map(|(a, b)| a.max(b)),
                None => best.push((&p.resource_id, s, p.exp)),
            }
        }
    }
    let mut out: Vec<GrantedPermission> = Vec::new();
    for (r, s, exp) in best {
        add(&mut out, r, s, exp);
    }
    out
}

/// A refresh with `scope` (Grant §3.6, RFC 6749 §6): keeps only the named scopes on each resource;
/// a scope the grant does not hold is an error naming it. Expired permissions are dropped.
pub fn downscope(
    perms: &[GrantedPermission],
    requested: Option<&str>,
    now: UnixTime,
) -> Result<Vec<GrantedPermission>, String> {
    let live: Vec<GrantedPermission> = perms.iter().filter(|p| p.is_valid_at(now)).cloned().collect();
    let Some(req) = requested else {
        return Ok(live);
    };
    let wanted: Vec<&str> = req.split(' ').filter(|s| !s.is_empty()).collect();
    if let Some(extra) = wanted.iter().find(|w| !perms.iter().any(|p| p.resource_scopes.iter().any(|s| s == *w))) {
        return Err((*extra).to_owned());
    }
    Ok(live
        .into_iter()
        .filter_map(|mut p| {
            p.resource_scopes.retain(|s| wanted.contains(&s.as_str()));
            (!p.resource_scopes.is_empty()).then_some(p)
        })
        .collect())
}

/// The claims of a JWT RPT (Grant §3.3.5 leaves the format open; these follow RFC 9068's names).
#[derive(Debug, Serialize, Deserialize)]
pub struct RptClaims {
    pub iss: String,
    /// The resource servers whose resources the permissions are on (RFC 9700 §2.3).
    pub aud: Vec<String>,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub jti: String,
    pub client_id: String,
    pub permissions: Vec<GrantedPermission>,
}

/// A freshly minted RPT: the value for the client and the digest for the store.
pub struct MintedRpt {
    pub value: String,
    pub digest: TokenDigest,
}

/// Mints an RPT in the configured format.
pub fn mint(format: RptFormat, keys: &Keys, claims: &RptClaims) -> Result<MintedRpt, OAuthError> {
    let value = match format {
        RptFormat::Opaque => OpaqueToken::generate()
            .map_err(|_| OAuthError::server_error("the random generator failed"))?
            .expose()
            .to_owned(),
        RptFormat::Jwt => keys.sign(claims, None, "at+jwt").map_err(OAuthError::server_error)?,
    };
    let digest = TokenDigest::of(&value);
    Ok(MintedRpt { value, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(r: &str, scopes: &[&str], exp: Option<i64>) -> GrantedPermission {
        GrantedPermission {
            resource_id: r.into(),
            resource_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            exp,
        }
    }

    #[test]
    fn an_upgrade_keeps_old_permissions_with_their_own_end() {
        let old = [p("r2", &["view"], None), p("r3", &["view"], Some(500))];
        let new = [p("r1", &["view"], None)];
        let out = merge(&old, &new, 100);
        assert_eq!(out, [p("r1", &["view"], None), p("r2", &["view"], None), p("r3", &["view"], Some(500))]);
    }

    #[test]
    fn an_upgrade_drops_expired_permissions() {
        let old = [p("r2", &["view"], Some(50))];
        assert_eq!(merge(&old, &[p("r1", &["view"], None)], 100), [p("r1", &["view"], None)]);
    }

    #[test]
    fn an_upgrade_merges_scopes_of_one_resource_and_never_shortens_a_grant() {
        let old = [p("r1", &["view", "print"], None)];
        let new = [p("r1", &["view", "edit"], None)];
        assert_eq!(merge(&old, &new, 0), [p("r1", &["view", "edit", "print"], None)]);
        // The same scope with an end and without: the unbounded one covers it.
        assert_eq!(merge(&[p("r1", &["view"], Some(90))], &[p("r1", &["view"], None)], 0), [p("r1", &["view"], None)]);
    }

    #[test]
    fn downscoping_keeps_only_held_scopes() {
        let perms = [p("r1", &["read", "write"], None), p("r2", &["write"], None)];
        assert_eq!(downscope(&perms, Some("read"), 0).unwrap(), [p("r1", &["read"], None)]);
        assert_eq!(downscope(&perms, None, 0).unwrap(), perms);
        assert_eq!(downscope(&perms, Some("read delete"), 0).unwrap_err(), "delete");
        assert_eq!(downscope(&[p("r1", &["read"], Some(5))], None, 10).unwrap(), []);
    }

    #[test]
    fn permission_json_has_the_shape_introspection_and_revocation_rely_on() {
        let json = serde_json::to_string(&[p("abc", &["view"], None)]).unwrap();
        assert_eq!(json, r#"[{"resource_id":"abc","resource_scopes":["view"]}]"#);
    }
}
