//! The audit trail of authorization assessments (threats D6): one record per assessment, written in
//! the transaction of what it decided. This module renders records for people and tools.

use serde::Serialize;
use serde_json::Value;

use crate::clock::UnixTime;
use crate::store::{AuditRecord, Store, StoreError};

/// One record as `tessera audit tail` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: UnixTime,
    pub client_id: String,
    pub party_iss: Option<String>,
    pub party_sub: Option<String>,
    pub owner: String,
    pub resource_ids: Value,
    pub requested: Value,
    pub granted: Value,
    pub outcome: String,
    /// The policies that determined the outcome: `<file>#<@id>`, or `share:<id>:<scope>`.
    pub policies: Value,
    /// Where the requesting party's claims came from: `<source>:<verifier>`.
    pub claim_sources: Value,
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()))
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        AuditEntry {
            id: r.audit_id,
            at: r.at,
            client_id: r.client_id,
            party_iss: r.party_iss,
            party_sub: r.party_sub,
            owner: r.owner,
            resource_ids: parsed(&r.resource_ids),
            requested: parsed(&r.requested),
            granted: parsed(&r.granted),
            outcome: r.outcome,
            policies: parsed(&r.policies),
            claim_sources: parsed(&r.claim_sources),
        }
    }
}

/// The newest `limit` records (of one owner, when given), oldest first.
pub async fn tail(store: &Store, owner: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(store.audit_tail(owner, limit).await?.into_iter().map(AuditEntry::from).collect())
}
