//! Store operations for resource-owner shares (`policy::sharing` is the domain side).

use super::{Store, StoreError};
use crate::clock::UnixTime;

/// One row of `share`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ShareRecord {
    pub share_id: String,
    pub owner: String,
    pub resource_id: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// JSON object: claim name -> value.
    pub matcher: String,
    /// 0: never.
    pub expires_at: UnixTime,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

const COLUMNS: &str = "share_id, owner, resource_id, scopes, matcher, expires_at, created_at, revoked_at";

/// At most this many resources per active-share lookup (one assessment asks for a handful).
const MAX_RESOURCES_PER_LOOKUP: usize = 256;

impl Store {
    pub async fn insert_share(&self, s: &ShareRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO share (share_id, owner, resource_id, scopes, matcher, expires_at, created_at, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.share_id)
        .bind(&s.owner)
        .bind(&s.resource_id)
        .bind(&s.scopes)
        .bind(&s.matcher)
        .bind(s.expires_at)
        .bind(s.created_at)
        .bind(s.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every share of an owner, revoked and expired ones included, newest first.
    pub async fn list_shares(&self, owner: &str) -> Result<Vec<ShareRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ShareRecord>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM share WHERE owner = $1 ORDER BY created_at DESC, share_id"
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes one of the owner's shares. `false` if the owner has no such share, or it was revoked
    /// already.
    pub async fn revoke_share(&self, owner: &str, share_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE share SET revoked_at = $1 WHERE share_id = $2 AND owner = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(share_id)
                .bind(owner)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The shares of these resources that apply at `now`: not revoked, not expired.
    pub async fn active_shares(&self, resource_ids: &[&str], now: UnixTime) -> Result<Vec<ShareRecord>, StoreError> {
        let mut out = Vec::new();
        for chunk in resource_ids.chunks(MAX_RESOURCES_PER_LOOKUP) {
            let placeholders: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {COLUMNS} FROM share
                 WHERE revoked_at IS NULL AND (expires_at = 0 OR expires_at > $1)
                   AND resource_id IN ({})
                 ORDER BY share_id",
                placeholders.join(", ")
            );
            if let Some(lane) = &self.lane {
                let mut args: Vec<&dyn rusqlite::ToSql> = vec![&now];
                args.extend(chunk.iter().map(|id| id as &dyn rusqlite::ToSql));
                out.extend(lane.read(|c| super::lane::query(c, &sql, &args, super::lane::share_row))?);
                continue;
            }
            let mut q = sqlx::query_as::<_, ShareRecord>(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    /// Revokes every active share of a resource (the resource was deleted). Returns how many.
    pub async fn revoke_shares_of_resource(&self, resource_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE share SET revoked_at = $1 WHERE resource_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(resource_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
