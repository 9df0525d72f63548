//! Single use of pushed claim tokens (`verifiers`): the replay table, shared by every node.

use super::{Store, StoreError};
use crate::clock::UnixTime;

impl Store {
    /// Records that `verifier_id` accepted the token `token_id` (a digest), kept until `expires_at`.
    /// `Ok(false)` when it was recorded before and has not expired: a replay. One INSERT decides, so
    /// two concurrent presentations yield exactly one `true`, on SQLite and PostgreSQL alike.
    pub async fn record_claim_token_use(
        &self,
        verifier_id: &str,
        token_id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        // A row past its expiry can no longer matter (the token itself is refused as expired first),
        // so it is taken over; a live one makes the statement change nothing. One statement: the
        // key decides between concurrent presentations, in one round trip.
        const SQL: &str = "INSERT INTO claim_token_use (verifier_id, token_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (verifier_id, token_id) DO UPDATE SET expires_at = excluded.expires_at
             WHERE claim_token_use.expires_at < $4";
        self.record_once(SQL, verifier_id, token_id, expires_at, now).await
    }

    /// Deletes replay rows that expired before `now`; returns how many.
    pub async fn sweep_claim_token_uses(&self, now: UnixTime) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM claim_token_use WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    async fn sqlite_store(dir: &std::path::Path) -> Store {
        let cfg = dir.join("t.toml");
        std::fs::write(&cfg, format!("database_url = \"sqlite://{}\"\n", dir.join("t.db").display())).unwrap();
        let settings = crate::config::Settings::load_with_env(Some(&cfg), std::iter::empty()).unwrap();
        crate::open_store(&settings, true).await.unwrap()
    }

    #[tokio::test]
    async fn a_token_id_is_accepted_once_per_verifier_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        assert!(store.record_claim_token_use("v1", "abc", 1_100, 1_000).await.unwrap());
        assert!(!store.record_claim_token_use("v1", "abc", 1_100, 1_050).await.unwrap());
        // another verifier's namespace
        assert!(store.record_claim_token_use("v2", "abc", 1_100, 1_050).await.unwrap());
        // after expiry the row no longer blocks (the token itself would be refused as expired)
        assert!(store.record_claim_token_use("v1", "abc", 1_300, 1_200).await.unwrap());
        assert_eq!(store.sweep_claim_token_uses(2_000).await.unwrap(), 2);
    }
}
