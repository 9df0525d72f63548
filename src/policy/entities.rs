//! UMA inputs as Cedar data: the requesting party (verified claims) becomes the principal, the
//! resource becomes the resource in its owner and its type, the client and the request time go into
//! the context. docs/policies.md has the full mapping with examples.
//!
//! Claims are typed by the schema: a claim becomes an attribute of `Tessera::Party` only if the
//! schema declares it, with the declared type. A claim of the wrong type makes the whole party
//! unassessable (every scope denied): dropping it could silently disarm a `forbid` that tests it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PartialEntities, PartialEntity,
    RestrictedExpression, Schema,
};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::clock::UnixTime;

pub(crate) const PARTY: &str = "Tessera::Party";
pub(crate) const RESOURCE: &str = "Tessera::Resource";
pub(crate) const OWNER: &str = "Tessera::Owner";
pub(crate) const RESOURCE_TYPE: &str = "Tessera::ResourceType";
pub(crate) const CLIENT: &str = "Tessera::Client";
pub(crate) const SHARE_GRANTEE: &str = "Tessera::ShareGrantee";
pub(crate) const ACTION: &str = "Tessera::Action";

/// The id of a party that presented no identity yet.
pub const ANONYMOUS: &str = "anonymous";

/// How the requesting party's claims reached the server (`context.claim_source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimSource {
    /// No claims: the client asked without a claim token, PCT or gathered claims.
    #[default]
    None,
    /// A claim token pushed to the token endpoint.
    Pushed,
    /// Interactive claims gathering.
    Gathered,
    /// A persisted claims token.
    Pct,
}

impl ClaimSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimSource::None => "none",
            ClaimSource::Pushed => "pushed",
            ClaimSource::Gathered => "gathered",
            ClaimSource::Pct => "pct",
        }
    }
}

/// The requesting party as the policy engine sees it: verified claims only. The UMA grant builds it
/// from the verifiers' output; `tessera policy test` builds it from a test case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestingParty {
    /// The issuer of the verified claims (`principal.iss`).
    #[serde(default)]
    pub iss: Option<String>,
    /// The subject at that issuer (`principal.sub`).
    #[serde(default)]
    pub sub: Option<String>,
    /// Every other verified claim, by name. `iss` and `sub` here are ignored: they come from the
    /// fields above.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub source: ClaimSource,
    /// The id of the claim verifier that vouched for the claims.
    #[serde(default)]
    pub verifier: Option<String>,
}

impl RequestingParty {
    /// A party that presented nothing yet.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// `<iss>|<sub>`, or `anonymous`.
    pub fn entity_id(&self) -> String {
        match (&self.iss, &self.sub) {
            (None, None) => ANONYMOUS.to_owned(),
            (iss, sub) => format!("{}|{}", iss.as_deref().unwrap_or(""), sub.as_deref().unwrap_or("")),
        }
    }

    /// The value of a claim, `iss` and `sub` included.
    pub fn claim(&self, name: &str) -> Option<serde_json::Value> {
        match name {
            "iss" => self.iss.clone().map(serde_json::Value::String),
            "sub" => self.sub.clone().map(serde_json::Value::String),
            _ => self.claims.get(name).cloned(),
        }
    }

    pub fn has_claim(&self, name: &str) -> bool {
        match name {
            "iss" => self.iss.is_some(),
            "sub" => self.sub.is_some(),
            _ => self.claims.contains_key(name),
        }
    }
}

/// The client acting for the requesting party.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInfo {
    /// The OAuth `client_id`.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A registered resource, as the protection API knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInfo {
    /// The UMA resource id.
    pub id: String,
    /// The resource owner's id.
    pub owner: String,
    /// The registered `type`, if any.
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The types a claim attribute may have in the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimType {
    String,
    Long,
    Bool,
    Set(Box<ClaimType>),
}

/// The claim attributes `Tessera::Party` declares, read from the schema at load.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartyShape {
    pub attrs: BTreeMap<String, ClaimType>,
}

#[derive(Debug, thiserror::Error)]
pub enum EntityError {
    #[error("claim `{0}` does not have the type the schema declares")]
    MistypedClaim(String),
    #[error("cannot build the request entities: {0}")]
    Cedar(String),
}

impl PartyShape {
    /// Reads `Tessera::Party`'s attributes from the schema text (through Cedar's own JSON form of it,
    /// with every type resolved). An attribute of a type no claim can fill is an error.
    pub fn from_schema_text(text: &str) -> Result<Self, String> {
        let (json, _) = cedar_policy::schema_str_to_json_with_resolved_types(text).map_err(|e| e.to_string())?;
        let attrs = json
            .get("Tessera")
            .and_then(|ns| ns.get("entityTypes"))
            .and_then(|t| t.get("Party"))
            .and_then(|p| p.get("shape"))
            .and_then(|s| s.get("attributes"))
            .and_then(|a| a.as_object())
            .ok_or_else(|| "the schema must declare `Tessera::Party` with a record of attributes".to_owned())?;
        let mut shape = PartyShape::default();
        for (name, ty) in attrs {
            if ty.get("required").and_then(|r| r.as_bool()) != Some(false) {
                return Err(format!(
                    "attribute `{name}` of `Tessera::Party` must be optional (`{name}?`): a party may not present it"
                ));
            }
            let t = claim_type(ty).ok_or_else(|| {
                format!("attribute `{name}` of `Tessera::Party` must be a String, Long, Bool or a Set of those")
            })?;
            shape.attrs.insert(name.clone(), t);
        }
        Ok(shape)
    }
}

fn claim_type(v: &serde_json::Value) -> Option<ClaimType> {
    let ty = v.get("type")?.as_str()?;
    let ty = if ty == "EntityOrCommon" { v.get("name")?.as_str()? } else { ty };
    match ty.trim_start_matches("__cedar::") {
        "String" => Some(ClaimType::String),
        "Long" => Some(ClaimType::Long),
        "Boolean" | "Bool" => Some(ClaimType::Bool),
        "Set" => Some(ClaimType::Set(Box::new(claim_type(v.get("element")?)?))),
        _ => None,
    }
}

fn claim_expr(v: &serde_json::Value, t: &ClaimType) -> Option<RestrictedExpression> {
    match (t, v) {
        (ClaimType::String, serde_json::Value::String(s)) => Some(RestrictedExpression::new_string(s.clone())),
        (ClaimType::Long, serde_json::Value::Number(n)) => n.as_i64().map(RestrictedExpression::new_long),
        (ClaimType::Bool, serde_json::Value::Bool(b)) => Some(RestrictedExpression::new_bool(*b)),
        (ClaimType::Set(inner), serde_json::Value::Array(items)) => {
            let items: Option<Vec<_>> = items.iter().map(|i| claim_expr(i, inner)).collect();
            items.map(RestrictedExpression::new_set)
        }
        _ => None,
    }
}

/// The model's entity types, parsed once: parsing a type name per entity per request was a
/// measurable share of building a request's entities.
static MODEL_TYPES: std::sync::LazyLock<Vec<(&'static str, EntityTypeName)>> = std::sync::LazyLock::new(|| {
    [PARTY, RESOURCE, OWNER, RESOURCE_TYPE, CLIENT, SHARE_GRANTEE, ACTION]
        .into_iter()
        .filter_map(|name| EntityTypeName::from_str(name).ok().map(|t| (name, t)))
        .collect()
});

pub(crate) fn uid(type_name: &str, id: &str) -> Result<EntityUid, EntityError> {
    let ty = match MODEL_TYPES.iter().find(|(name, _)| *name == type_name) {
        Some((_, t)) => t.clone(),
        None => EntityTypeName::from_str(type_name).map_err(|e| EntityError::Cedar(e.to_string()))?,
    };
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

/// The request time as context attributes: epoch seconds, and hour and ISO weekday in UTC.
pub(crate) fn time_parts(now: UnixTime) -> (i64, i64) {
    let hour = now.rem_euclid(86_400) / 3_600;
    // 1970-01-01 was a Thursday (ISO weekday 4).
    let weekday = (now.div_euclid(86_400) + 3).rem_euclid(7) + 1;
    (hour, weekday)
}

/// The parts of the loaded schema that entity building needs.
#[derive(Clone, Copy)]
pub(crate) struct Model<'a> {
    pub schema: &'a Schema,
    /// The schema's action entities, built once.
    pub actions: &'a [Entity],
    pub shape: &'a PartyShape,
}

/// Everything one assessment of one resource needs, built once and shared by its scopes.
pub(crate) struct RequestData {
    pub party: EntityUid,
    pub resource: EntityUid,
    pub context: Context,
    pub entities: Entities,
    /// The same, with the party's attributes unknown, for required-claims derivation.
    partial: PartialParts,
}

struct PartialParts {
    party_parents: HashSet<EntityUid>,
    others: Vec<(EntityUid, BTreeMap<SmolStr, RestrictedExpression>, HashSet<EntityUid>)>,
}

impl RequestData {
    /// `grantee_groups`: the share grantee groups whose matcher the party satisfies.
    pub fn build(
        model: Model<'_>,
        party: &RequestingParty,
        client: &ClientInfo,
        resource: &ResourceInfo,
        grantee_groups: &[String],
        now: UnixTime,
    ) -> Result<Self, EntityError> {
        let Model { schema, actions, shape } = model;
        let party_uid = uid(PARTY, &party.entity_id())?;
        let mut party_attrs = HashMap::new();
        for (name, ty) in &shape.attrs {
            let Some(value) = party.claim(name) else { continue };
            let expr = claim_expr(&value, ty).ok_or_else(|| EntityError::MistypedClaim(name.clone()))?;
            party_attrs.insert(name.clone(), expr);
        }
        let mut party_parents = HashSet::new();
        let mut group_entities = Vec::new();
        for g in grantee_groups {
            let g = uid(SHARE_GRANTEE, g)?;
            party_parents.insert(g.clone());
            group_entities.push(Entity::new_no_attrs(g, HashSet::new()));
        }

        let owner_uid = uid(OWNER, &resource.owner)?;
        let resource_uid = uid(RESOURCE, &resource.id)?;
        let rtype = resource.resource_type.clone().unwrap_or_default();
        let mut resource_parents = HashSet::from([owner_uid.clone()]);
        let mut others = vec![(owner_uid.clone(), BTreeMap::new(), HashSet::new())];
        if !rtype.is_empty() {
            let t = uid(RESOURCE_TYPE, &rtype)?;
            resource_parents.insert(t.clone());
            others.push((t, BTreeMap::new(), HashSet::new()));
        }
        let resource_attrs: BTreeMap<SmolStr, RestrictedExpression> = BTreeMap::from([
            (SmolStr::new("type"), RestrictedExpression::new_string(rtype)),
            (SmolStr::new("name"), RestrictedExpression::new_string(resource.name.clone().unwrap_or_default())),
            (SmolStr::new("owner"), RestrictedExpression::new_entity_uid(owner_uid)),
        ]);
        others.push((resource_uid.clone(), resource_attrs, resource_parents));
        let client_uid = uid(CLIENT, &client.id)?;
        let mut client_attrs = BTreeMap::new();
        if let Some(name) = &client.name {
            client_attrs.insert(SmolStr::new("name"), RestrictedExpression::new_string(name.clone()));
        }
        others.push((client_uid.clone(), client_attrs, HashSet::new()));

        let mut entities = Vec::with_capacity(others.len() + 1 + group_entities.len());
        entities.push(
            Entity::new(party_uid.clone(), party_attrs, party_parents.clone())
                .map_err(|e| EntityError::Cedar(e.to_string()))?,
        );
        for (u, attrs, parents) in &others {
            let attrs = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            entities
                .push(Entity::new(u.clone(), attrs, parents.clone()).map_err(|e| EntityError::Cedar(e.to_string()))?);
        }
        entities.extend(group_entities);
        entities.extend(actions.iter().cloned());
        // INVARIANT (entities-conform): claim attributes are built from the types the schema declares
        // and the other attributes are the ones the schema must declare (checked at load by `probe`),
        // so the entities conform by construction and are not re-validated per request, which would
        // cost more than evaluating the policies. Tests re-validate them.
        let check = if cfg!(test) { Some(schema) } else { None };
        let entities = Entities::from_entities(entities, check).map_err(|e| EntityError::Cedar(e.to_string()))?;

        let (hour, weekday) = time_parts(now);
        let context = Context::from_pairs([
            ("client".to_owned(), RestrictedExpression::new_entity_uid(client_uid)),
            ("claim_source".to_owned(), RestrictedExpression::new_string(party.source.as_str().to_owned())),
            ("verifier".to_owned(), RestrictedExpression::new_string(party.verifier.clone().unwrap_or_default())),
            ("now".to_owned(), RestrictedExpression::new_long(now)),
            ("hour_utc".to_owned(), RestrictedExpression::new_long(hour)),
            ("weekday_utc".to_owned(), RestrictedExpression::new_long(weekday)),
        ])
        .map_err(|e| EntityError::Cedar(e.to_string()))?;

        Ok(RequestData {
            party: party_uid,
            resource: resource_uid,
            context,
            entities,
            partial: PartialParts { party_parents, others },
        })
    }

    /// The entities with the party's attributes unknown (type-aware partial evaluation).
    pub fn partial_entities(&self, schema: &Schema) -> Result<PartialEntities, EntityError> {
        let cedar = |e: &dyn std::fmt::Display| EntityError::Cedar(e.to_string());
        let mut list = vec![
            PartialEntity::new(self.party.clone(), None, Some(self.partial.party_parents.clone()), None, schema)
                .map_err(|e| cedar(&e))?,
        ];
        for g in &self.partial.party_parents {
            list.push(
                PartialEntity::new(g.clone(), Some(BTreeMap::new()), Some(HashSet::new()), None, schema)
                    .map_err(|e| cedar(&e))?,
            );
        }
        for (u, attrs, parents) in &self.partial.others {
            list.push(
                PartialEntity::new(u.clone(), Some(attrs.clone()), Some(parents.clone()), None, schema)
                    .map_err(|e| cedar(&e))?,
            );
        }
        PartialEntities::from_partial_entities(list, schema).map_err(|e| cedar(&e))
    }
}

/// Checks at load that the schema's model is what the engine fills in: entities built for a party
/// with every declared claim and for a typed, named resource and client conform to the schema, and so
/// does a request for every declared scope. Returns the action entities, built once.
pub(crate) fn probe(schema: &Schema, shape: &PartyShape, scopes: &HashSet<String>) -> Result<Vec<Entity>, String> {
    fn sample(t: &ClaimType) -> serde_json::Value {
        match t {
            ClaimType::String => "x".into(),
            ClaimType::Long => 1.into(),
            ClaimType::Bool => true.into(),
            ClaimType::Set(inner) => serde_json::Value::Array(vec![sample(inner)]),
        }
    }
    let actions: Vec<Entity> = schema.action_entities().map_err(|e| e.to_string())?.iter().cloned().collect();
    let full = RequestingParty {
        iss: Some("https://issuer.example".into()),
        sub: Some("s".into()),
        claims: shape.attrs.iter().map(|(n, t)| (n.clone(), sample(t))).collect(),
        source: ClaimSource::Pushed,
        verifier: Some("v".into()),
    };
    let client = ClientInfo { id: "c".into(), name: Some("n".into()) };
    let resource = ResourceInfo { id: "r".into(), owner: "o".into(), resource_type: Some("t".into()), name: None };
    let why = |e: &dyn std::fmt::Display| format!("the schema does not fit the model Tessera fills in: {e}");
    for party in [&full, &RequestingParty::anonymous()] {
        let data =
            RequestData::build(Model { schema, actions: &actions, shape }, party, &client, &resource, &["g".into()], 0)
                .map_err(|e| why(&e))?;
        let mut list: Vec<Entity> = data.entities.iter().cloned().collect();
        list.retain(|e| e.uid().type_name().to_string() != ACTION);
        Entities::from_entities(list, Some(schema)).map_err(|e| why(&e))?;
        for scope in scopes {
            let action = uid(ACTION, scope).map_err(|e| why(&e))?;
            cedar_policy::Request::new(
                data.party.clone(),
                action,
                data.resource.clone(),
                data.context.clone(),
                Some(schema),
            )
            .map_err(|e| why(&e))?;
        }
    }
    Ok(actions)
}

/// The names of the claims a party presented, `iss` and `sub` included.
pub(crate) fn presented_claims(party: &RequestingParty) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = party.claims.keys().cloned().collect();
    if party.iss.is_some() {
        names.insert("iss".into());
    }
    if party.sub.is_some() {
        names.insert("sub".into());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parts_are_utc_hour_and_iso_weekday() {
        assert_eq!(time_parts(0), (0, 4)); // 1970-01-01T00:00Z, a Thursday
        // 2026-01-05T10:30:00Z is a Monday
        assert_eq!(time_parts(1_767_609_000), (10, 1));
        // 2026-01-11T23:59:59Z is a Sunday
        assert_eq!(time_parts(1_768_175_999), (23, 7));
        assert_eq!(time_parts(-1), (23, 3)); // 1969-12-31T23:59:59Z, a Wednesday
    }

    #[test]
    fn party_ids() {
        assert_eq!(RequestingParty::anonymous().entity_id(), "anonymous");
        let p = RequestingParty { iss: Some("https://idp".into()), sub: Some("bob".into()), ..Default::default() };
        assert_eq!(p.entity_id(), "https://idp|bob");
    }

    #[test]
    fn the_party_shape_is_read_from_the_schema() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/tessera.cedarschema"))
            .expect("schema");
        let shape = PartyShape::from_schema_text(&text).expect("shape");
        assert_eq!(shape.attrs.get("npi"), Some(&ClaimType::String));
        assert_eq!(shape.attrs.get("email_verified"), Some(&ClaimType::Bool));
        assert_eq!(shape.attrs.get("groups"), Some(&ClaimType::Set(Box::new(ClaimType::String))));
    }
}
