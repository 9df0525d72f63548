//! Queries of the resource-owner console (issue 8): what one owner has (resources at every resource
//! server, requests waiting for them), who holds live grants on it, and the owner's own ways out
//! (signing out, revoking a client's tokens). Every statement is scoped by the owner.

use super::{Store, StoreError};
use crate::clock::UnixTime;
use crate::store::records::{PendingRequestRecord, ResourceRecord};

/// A client holding live RPTs (or refresh tokens of RPTs) on one owner's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrants {
    pub client_id: String,
    /// Live (unexpired, unrevoked) RPTs.
    pub live_rpts: i64,
    /// Live refresh tokens of RPTs: the client can mint new RPTs without asking again.
    pub live_refresh_tokens: i64,
    /// When the last of them ends.
    pub until: UnixTime,
}

#[derive(sqlx::FromRow)]
struct Counted {
    client_id: String,
    n: i64,
    until: i64,
}

impl Store {
    /// The owner's resources at every resource server, by resource server then registration order;
    /// at most `limit`.
    pub async fn owner_resources(&self, owner: &str, limit: i64) -> Result<Vec<ResourceRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ResourceRecord>(
            "SELECT resource_id, owner, rs_client_id, description, name, type, created_at, updated_at
             FROM resource WHERE owner = $1 ORDER BY rs_client_id, created_at, resource_id LIMIT $2",
        )
        .bind(owner)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The owner's requests still waiting for a decision, at every resource server, newest first.
    pub async fn owner_pending(&self, owner: &str, limit: i64) -> Result<Vec<PendingRequestRecord>, StoreError> {
        Ok(sqlx::query_as::<_, PendingRequestRecord>(
            "SELECT pending_id, owner, rs_client_id, client_id, party, permissions, status, approved,
                    approval_expires_at, poll_interval, last_poll_at, created_at, decided_at
             FROM pending_request WHERE owner = $1 AND status = 'pending'
             ORDER BY created_at DESC, pending_id LIMIT $2",
        )
        .bind(owner)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends a browser session (sign-out). `false` if it was not live.
    pub async fn delete_session(&self, digest: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM browser_session WHERE digest = $1").bind(digest).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// The clients holding live RPTs or live refresh tokens of RPTs on the owner's resources.
    pub async fn clients_with_live_grants(&self, owner: &str, now: UnixTime) -> Result<Vec<ClientGrants>, StoreError> {
        let rpts = sqlx::query_as::<_, Counted>(
            "SELECT client_id, COUNT(*) AS n, MAX(expires_at) AS until FROM access_token
             WHERE owner = $1 AND kind = 'rpt' AND revoked_at IS NULL AND expires_at > $2
             GROUP BY client_id",
        )
        .bind(owner)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let refresh = sqlx::query_as::<_, Counted>(
            "SELECT client_id, COUNT(*) AS n, MAX(expires_at) AS until FROM refresh_token
             WHERE owner = $1 AND permissions IS NOT NULL AND revoked_at IS NULL AND used_at IS NULL
               AND expires_at > $2
             GROUP BY client_id",
        )
        .bind(owner)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<ClientGrants> = rpts
            .into_iter()
            .map(|c| ClientGrants { client_id: c.client_id, live_rpts: c.n, live_refresh_tokens: 0, until: c.until })
            .collect();
        for r in refresh {
            match out.iter_mut().find(|c| c.client_id == r.client_id) {
                Some(c) => {
                    c.live_refresh_tokens = r.n;
                    c.until = c.until.max(r.until);
                }
                None => out.push(ClientGrants {
                    client_id: r.client_id,
                    live_rpts: 0,
                    live_refresh_tokens: r.n,
                    until: r.until,
                }),
            }
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(out)
    }

    /// The owner ends a client's access to their resources: every RPT of that client for the owner
    /// and every refresh token of those RPTs is revoked, and the PCTs issued with them are deleted,
    /// claims included (threats D9), in one transaction. PATs are not touched: they are the resource
    /// server's, not a requesting party's. Returns how many tokens ended.
    pub async fn revoke_client_grants(&self, owner: &str, client_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // PCTs first, while the families they belong to are still easy to name.
        let pcts = sqlx::query(
            "DELETE FROM pct WHERE client_id = $1 AND family IN (
                 SELECT family FROM access_token WHERE client_id = $1 AND owner = $2 AND kind = 'rpt'
                 UNION
                 SELECT family FROM refresh_token WHERE client_id = $1 AND owner = $2 AND permissions IS NOT NULL)",
        )
        .bind(client_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let rpts = sqlx::query(
            "UPDATE access_token SET revoked_at = $1
             WHERE client_id = $2 AND owner = $3 AND kind = 'rpt' AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let refresh = sqlx::query(
            "UPDATE refresh_token SET revoked_at = $1
             WHERE client_id = $2 AND owner = $3 AND permissions IS NOT NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(client_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pcts.rows_affected() + rpts.rows_affected() + refresh.rows_affected())
    }
}
