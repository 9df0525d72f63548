//! Store operations of the protection side: resource owners, browser sessions, the authorization
//! code grant, refresh tokens, PATs, resources and permission tickets. Single-use artifacts (codes,
//! refresh tokens, authorization requests) are consumed by one conditional statement each.

use super::lane::{self, Written};
use super::{Store, StoreError, inserted};
use crate::clock::UnixTime;
use crate::store::records::{
    AccessTokenRecord, AccountRecord, AuthorizationCodeRecord, AuthorizationRequestRecord, RefreshTokenRecord,
    ResourceRecord,
};

/// The columns of `AuthorizationRequestRecord`.
macro_rules! authorization_request_columns {
    () => {
        "digest, browser_digest, client_id, redirect_uri, scope, state, code_challenge, expires_at"
    };
}

/// Filters of a resource listing (checklist A-31).
#[derive(Debug, Default, Clone)]
pub struct ResourceFilter {
    pub name: Option<String>,
    pub exact_name: bool,
    pub resource_type: Option<String>,
    pub first: i64,
    pub max: i64,
}

impl Store {
    // ---- accounts (resource owners) ----

    /// `false` if the account id is taken.
    pub async fn insert_account(&self, a: &AccountRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO account (account_id, password_hash, attributes, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&a.account_id)
        .bind(&a.password_hash)
        .bind(&a.attributes)
        .bind(a.created_at)
        .execute(&self.pool)
        .await;
        inserted(done)
    }

    pub async fn find_account(&self, account_id: &str) -> Result<Option<AccountRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AccountRecord>(
            "SELECT account_id, password_hash, attributes, created_at FROM account WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AccountRecord>(
            "SELECT account_id, password_hash, attributes, created_at FROM account ORDER BY account_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes the account and its sessions; its PATs and refresh tokens are revoked.
    pub async fn delete_account(&self, account_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM account WHERE account_id = $1").bind(account_id).execute(&mut *tx).await?;
        // Nothing of a removed owner may outlive it: pending codes, resources (a future account with
        // the same id must not inherit them), their shares and tickets.
        for sql in [
            "DELETE FROM authorization_code WHERE account_id = $1",
            "DELETE FROM share WHERE owner = $1",
            "DELETE FROM ticket WHERE owner = $1",
            "DELETE FROM resource WHERE owner = $1",
        ] {
            sqlx::query(sql).bind(account_id).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE access_token SET revoked_at = $1 WHERE owner = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE refresh_token SET revoked_at = $1 WHERE owner = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- browser sessions ----

    pub async fn insert_session(
        &self,
        digest: &str,
        account_id: &str,
        auth_method: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO browser_session (digest, account_id, auth_method, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(digest)
        .bind(account_id)
        .bind(auth_method)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account signed in on this session, if the session is live.
    pub async fn session_account(&self, digest: &str, now: UnixTime) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT account_id FROM browser_session WHERE digest = $1 AND expires_at > $2",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    // ---- authorization requests and codes ----

    pub async fn insert_authorization_request(&self, r: &AuthorizationRequestRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authorization_request
                 (digest, browser_digest, client_id, redirect_uri, scope, state, code_challenge, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&r.digest)
        .bind(&r.browser_digest)
        .bind(&r.client_id)
        .bind(&r.redirect_uri)
        .bind(&r.scope)
        .bind(&r.state)
        .bind(&r.code_challenge)
        .bind(r.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads a pending authorization request of this browser without consuming it.
    pub async fn find_authorization_request(
        &self,
        digest: &str,
        browser_digest: &str,
        now: UnixTime,
    ) -> Result<Option<AuthorizationRequestRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AuthorizationRequestRecord>(concat!(
            "SELECT ",
            authorization_request_columns!(),
            " FROM authorization_request WHERE digest = $1 AND browser_digest = $2 AND expires_at > $3"
        ))
        .bind(digest)
        .bind(browser_digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Consumes a pending authorization request of this browser: one decision per request.
    pub async fn take_authorization_request(
        &self,
        digest: &str,
        browser_digest: &str,
        now: UnixTime,
    ) -> Result<Option<AuthorizationRequestRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AuthorizationRequestRecord>(concat!(
            "DELETE FROM authorization_request WHERE digest = $1 AND browser_digest = $2 AND expires_at > $3 \
                 RETURNING ",
            authorization_request_columns!()
        ))
        .bind(digest)
        .bind(browser_digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Counts a failed sign-in on a pending request and returns the failures so far; the request is
    /// deleted once `limit` is reached (then `None`).
    pub async fn record_sign_in_failure(&self, digest: &str, limit: i64) -> Result<Option<i64>, StoreError> {
        let failures: Option<i64> = sqlx::query_scalar(
            "UPDATE authorization_request SET failures = failures + 1 WHERE digest = $1 RETURNING failures",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        match failures {
            Some(n) if n < limit => Ok(Some(n)),
            _ => {
                sqlx::query("DELETE FROM authorization_request WHERE digest = $1")
                    .bind(digest)
                    .execute(&self.pool)
                    .await?;
                Ok(None)
            }
        }
    }

    pub async fn insert_authorization_code(&self, c: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authorization_code
                 (digest, client_id, account_id, redirect_uri, scope, code_challenge, expires_at, used_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&c.digest)
        .bind(&c.client_id)
        .bind(&c.account_id)
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(&c.code_challenge)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a live, unused code as used and returns it; of concurrent redemptions exactly one wins.
    pub async fn consume_authorization_code(
        &self,
        digest: &str,
        now: UnixTime,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AuthorizationCodeRecord>(
            "UPDATE authorization_code SET used_at = $1
             WHERE digest = $2 AND used_at IS NULL AND expires_at > $1
             RETURNING digest, client_id, account_id, redirect_uri, scope, code_challenge, expires_at",
        )
        .bind(now)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a code exists and was already redeemed (a replay: RFC 6749 §4.1.2).
    pub async fn authorization_code_was_used(&self, digest: &str) -> Result<bool, StoreError> {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT used_at FROM authorization_code WHERE digest = $1 AND used_at IS NOT NULL")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?;
        Ok(used.is_some())
    }

    // ---- access and refresh tokens ----

    pub async fn find_access_token(&self, digest: &str) -> Result<Option<AccessTokenRecord>, StoreError> {
        const SQL: &str = "SELECT digest, client_id, scope, issued_at, expires_at, owner, family, revoked_at
             FROM access_token WHERE digest = $1 AND kind = 'access'";
        if let Some(lane) = &self.lane {
            return lane.read(|c| lane::query_one(c, SQL, &[&digest], lane::access_token_row));
        }
        Ok(sqlx::query_as::<_, AccessTokenRecord>(SQL).bind(digest).fetch_optional(&self.pool).await?)
    }

    /// Issues an access token and, optionally, a refresh token, in one transaction.
    pub async fn insert_tokens(
        &self,
        access: &AccessTokenRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO access_token (digest, client_id, scope, issued_at, expires_at, owner, family, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)";
        if let Some(lane) = &self.lane {
            let (a, refresh) = (access.clone(), refresh.cloned());
            return lane
                .write(move |c| {
                    lane::execute(
                        c,
                        SQL,
                        &[&a.digest, &a.client_id, &a.scope, &a.issued_at, &a.expires_at, &a.owner, &a.family],
                    )?;
                    if let Some(r) = &refresh {
                        super::insert_refresh_token_in(c, r)?;
                    }
                    Ok(Written::Keep(()))
                })
                .await;
        }
        let _turn = self.write_turn().await;
        let insert = sqlx::query(SQL)
            .bind(&access.digest)
            .bind(&access.client_id)
            .bind(&access.scope)
            .bind(access.issued_at)
            .bind(access.expires_at)
            .bind(&access.owner)
            .bind(&access.family);
        let Some(r) = refresh else {
            // One statement is its own transaction: no BEGIN/COMMIT round trips.
            insert.execute(&self.pool).await?;
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        insert.execute(&mut *tx).await?;
        super::insert_refresh_token_on(&mut tx, r).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a live refresh token and returns it; exactly one concurrent use wins.
    pub async fn consume_refresh_token(
        &self,
        digest: &str,
        now: UnixTime,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        Ok(sqlx::query_as::<_, RefreshTokenRecord>(
            "UPDATE refresh_token SET used_at = $1
             WHERE digest = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1
             RETURNING digest, client_id, owner, scope, family, issued_at, expires_at, permissions, party",
        )
        .bind(now)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The family of a refresh token that was already spent (a replay), if it is one.
    pub async fn spent_refresh_token_family(&self, digest: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT family FROM refresh_token WHERE digest = $1 AND used_at IS NOT NULL",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Revokes every access and refresh token of a grant family.
    pub async fn revoke_family(&self, family: &str, now: UnixTime) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE access_token SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(family)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE refresh_token SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(family)
            .execute(&mut *tx)
            .await?;
        // A PCT issued with a revoked grant goes with it, claims included (threats D1, D9).
        sqlx::query("DELETE FROM pct WHERE family = $1").bind(family).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes one access token of this client. `false` if no live token of this client matched.
    pub async fn revoke_access_token(&self, digest: &str, client_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE access_token SET revoked_at = $1 WHERE digest = $2 AND client_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(digest)
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The grant family of a refresh token issued to this client, if there is one.
    pub async fn refresh_token_family(&self, digest: &str, client_id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>("SELECT family FROM refresh_token WHERE digest = $1 AND client_id = $2")
            .bind(digest)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    // ---- resources (FedAuthz §3) ----

    pub async fn insert_resource(&self, r: &ResourceRecord) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO resource (resource_id, owner, rs_client_id, description, name, type, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        if let Some(lane) = &self.lane {
            let r = r.clone();
            return lane
                .write(move |c| {
                    lane::execute(
                        c,
                        SQL,
                        &[
                            &r.resource_id,
                            &r.owner,
                            &r.rs_client_id,
                            &r.description,
                            &r.name,
                            &r.resource_type,
                            &r.created_at,
                            &r.updated_at,
                        ],
                    )?;
                    Ok(Written::Keep(()))
                })
                .await;
        }
        let _turn = self.write_turn().await;
        sqlx::query(SQL)
            .bind(&r.resource_id)
            .bind(&r.owner)
            .bind(&r.rs_client_id)
            .bind(&r.description)
            .bind(&r.name)
            .bind(&r.resource_type)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A resource of this owner registered by this resource server; anything else is not found.
    pub async fn find_resource(
        &self,
        resource_id: &str,
        owner: &str,
        rs_client_id: &str,
    ) -> Result<Option<ResourceRecord>, StoreError> {
        Ok(sqlx::query_as::<_, ResourceRecord>(
            "SELECT resource_id, owner, rs_client_id, description, name, type, created_at, updated_at
             FROM resource WHERE resource_id = $1 AND owner = $2 AND rs_client_id = $3",
        )
        .bind(resource_id)
        .bind(owner)
        .bind(rs_client_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The resources among `ids` that `owner` has (at resource server `rs_client_id`, when given), in
    /// one query.
    pub async fn find_resources(
        &self,
        ids: &[&str],
        owner: &str,
        rs_client_id: Option<&str>,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT resource_id, owner, rs_client_id, description, name, type, created_at, updated_at
             FROM resource WHERE owner = $1 AND ($2 = '' OR rs_client_id = $2) AND resource_id IN ({})",
            placeholders.join(", ")
        );
        if let Some(lane) = &self.lane {
            let rs = rs_client_id.unwrap_or_default();
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&owner, &rs];
            args.extend(ids.iter().map(|id| id as &dyn rusqlite::ToSql));
            return lane.read(|c| lane::query(c, &sql, &args, lane::resource_row));
        }
        let mut q = sqlx::query_as::<_, ResourceRecord>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(rs_client_id.unwrap_or_default());
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    pub async fn list_resource_ids(
        &self,
        owner: &str,
        rs_client_id: &str,
        f: &ResourceFilter,
    ) -> Result<Vec<String>, StoreError> {
        let name_pattern = f.name.as_ref().map(|n| {
            if f.exact_name {
                n.clone()
            } else {
                // A substring match; LIKE's own wildcards in the name are matched literally.
                format!("%{}%", n.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
            }
        });
        // Only the filters given become clauses, numbered in order, so every placeholder has a type.
        let mut sql = String::from("SELECT resource_id FROM resource WHERE owner = $1 AND rs_client_id = $2");
        let mut n = 2;
        if name_pattern.is_some() {
            n += 1;
            if f.exact_name {
                sql.push_str(&format!(" AND name = ${n}"));
            } else {
                sql.push_str(&format!(" AND name LIKE ${n} ESCAPE '\\'"));
            }
        }
        if f.resource_type.is_some() {
            n += 1;
            sql.push_str(&format!(" AND type = ${n}"));
        }
        sql.push_str(&format!(" ORDER BY created_at, resource_id LIMIT ${} OFFSET ${}", n + 1, n + 2));
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(owner).bind(rs_client_id);
        if let Some(p) = name_pattern {
            q = q.bind(p);
        }
        if let Some(t) = &f.resource_type {
            q = q.bind(t);
        }
        Ok(q.bind(f.max).bind(f.first).fetch_all(&self.pool).await?)
    }

    /// Replaces a resource's description. `false` if no such resource for this owner and RS.
    pub async fn update_resource(&self, r: &ResourceRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE resource SET description = $1, name = $2, type = $3, updated_at = $4
             WHERE resource_id = $5 AND owner = $6 AND rs_client_id = $7",
        )
        .bind(&r.description)
        .bind(&r.name)
        .bind(&r.resource_type)
        .bind(r.updated_at)
        .bind(&r.resource_id)
        .bind(&r.owner)
        .bind(&r.rs_client_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_resource(
        &self,
        resource_id: &str,
        owner: &str,
        rs_client_id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM resource WHERE resource_id = $1 AND owner = $2 AND rs_client_id = $3")
            .bind(resource_id)
            .bind(owner)
            .bind(rs_client_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- housekeeping ----

    /// Deletes artifacts that can no longer be used: expired tickets, codes, pending authorization
    /// requests, sessions, assertion `jti`s, and access and refresh tokens a day past their expiry
    /// (kept that long so a replayed one is still recognised as a replay). Returns the rows deleted.
    pub async fn sweep_expired(&self, now: UnixTime) -> Result<u64, StoreError> {
        const GRACE: i64 = 86_400;
        let statements: [(&'static str, i64); 11] = [
            ("DELETE FROM ticket WHERE expires_at < $1", now),
            ("DELETE FROM authorization_code WHERE expires_at < $1", now - GRACE),
            ("DELETE FROM authorization_request WHERE expires_at < $1", now),
            ("DELETE FROM browser_session WHERE expires_at < $1", now),
            ("DELETE FROM client_assertion_jti WHERE expires_at < $1", now),
            ("DELETE FROM access_token WHERE expires_at < $1", now - GRACE),
            ("DELETE FROM refresh_token WHERE expires_at < $1", now - GRACE),
            ("DELETE FROM initial_access_token WHERE expires_at <> 0 AND expires_at < $1", now),
            ("DELETE FROM pct WHERE expires_at < $1", now),
            ("DELETE FROM claims_session WHERE expires_at < $1", now),
            // A pending approval outlives every ticket that can refer to it (at most 30 days).
            ("DELETE FROM pending_request WHERE created_at < $1", now - 31 * GRACE),
        ];
        let mut deleted = 0;
        for (sql, cutoff) in statements {
            deleted += sqlx::query(sql).bind(cutoff).execute(&self.pool).await?.rows_affected();
        }
        Ok(deleted)
    }
}
