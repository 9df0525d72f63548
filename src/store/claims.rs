//! Claims-gathering sessions (UMA Grant §3.3.2): created when a ticket is spent at the claims
//! interaction endpoint, finished exactly once — with a new ticket or without one.

use super::{Store, StoreError};
use crate::clock::UnixTime;
use crate::store::{ClaimsSessionRecord, TicketRecord};

macro_rules! session_columns {
    () => {
        "session_id, binding, csrf, client_id, redirect_uri, client_state, owner, rs_client_id, permissions, \
         carried, pending_id, provider, oidc_state, oidc_nonce, pkce_verifier, failures, created_at, expires_at, \
         finished_at"
    };
}

impl Store {
    pub async fn insert_claims_session(&self, s: &ClaimsSessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO claims_session (session_id, binding, csrf, client_id, redirect_uri, client_state, owner,
               rs_client_id, permissions, carried, pending_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&s.session_id)
        .bind(&s.binding)
        .bind(&s.csrf)
        .bind(&s.client_id)
        .bind(&s.redirect_uri)
        .bind(&s.client_state)
        .bind(&s.owner)
        .bind(&s.rs_client_id)
        .bind(&s.permissions)
        .bind(&s.carried)
        .bind(&s.pending_id)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session by its id, unfinished and unexpired.
    pub async fn find_claims_session(
        &self,
        session_id: &str,
        now: UnixTime,
    ) -> Result<Option<ClaimsSessionRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ClaimsSessionRecord>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM claims_session WHERE session_id = $1 AND finished_at IS NULL AND expires_at > $2"
        ))
        .bind(session_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The session waiting for the OpenID provider's answer to the `state` whose digest is given.
    pub async fn find_claims_session_by_oidc_state(
        &self,
        oidc_state: &str,
        now: UnixTime,
    ) -> Result<Option<ClaimsSessionRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ClaimsSessionRecord>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM claims_session WHERE oidc_state = $1 AND finished_at IS NULL AND expires_at > $2"
        ))
        .bind(oidc_state)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records the sign-in started at an OpenID provider; a later choice replaces an earlier one.
    pub async fn start_provider_sign_in(
        &self,
        session_id: &str,
        provider: &str,
        oidc_state: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE claims_session SET provider = $2, oidc_state = $3, oidc_nonce = $4, pkce_verifier = $5
             WHERE session_id = $1 AND finished_at IS NULL",
        )
        .bind(session_id)
        .bind(provider)
        .bind(oidc_state)
        .bind(nonce)
        .bind(pkce_verifier)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Counts a failed local-account sign-in; `None` once `limit` is reached (the session is then
    /// finished, without a ticket).
    pub async fn record_claims_sign_in_failure(
        &self,
        session_id: &str,
        limit: i64,
        now: UnixTime,
    ) -> Result<Option<i64>, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "UPDATE claims_session SET failures = failures + 1,
               finished_at = CASE WHEN failures + 1 >= $2 THEN $3 ELSE finished_at END
             WHERE session_id = $1 AND finished_at IS NULL RETURNING failures",
        )
        .bind(session_id)
        .bind(limit)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(n.filter(|n| *n < limit))
    }

    /// Finishes the session exactly once and, with `ticket`, stores the new ticket in the same
    /// transaction. `false`: it was already finished (a second callback or form post).
    pub async fn finish_claims_session(
        &self,
        session_id: &str,
        ticket: Option<&TicketRecord>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE claims_session SET finished_at = $2, oidc_nonce = NULL, pkce_verifier = NULL
             WHERE session_id = $1 AND finished_at IS NULL",
        )
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(t) = ticket {
            super::uma::insert_ticket_on(&mut tx, t).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
