//! Store operations of the UMA grant. The grant touches the store twice per request: one statement
//! consumes the ticket (before the assessment, so concurrent redemptions have exactly one winner), and
//! one short transaction writes everything the decision produced together with its audit record
//! (threats D6): an RPT, its refresh token and PCT, the retirement of an upgraded RPT, or a rotated
//! ticket and a pending approval. No transaction is held open while policies are evaluated.

use sqlx::AnyConnection;

use super::lane::{self, Written};
use super::{Store, StoreError, insert_refresh_token_in, insert_refresh_token_on};
use crate::clock::UnixTime;
use crate::store::records::{
    AuditRecord, PctRecord, PendingRequestRecord, RefreshTokenRecord, RptRecord, TicketRecord,
};

macro_rules! ticket_columns {
    () => {
        "digest, owner, rs_client_id, permissions, created_at, expires_at, client_id, carried, pending_id"
    };
}

macro_rules! rpt_columns {
    () => {
        "digest, client_id, owner, party, permissions, issued_at, expires_at, family, revoked_at"
    };
}

macro_rules! pending_columns {
    () => {
        "pending_id, owner, rs_client_id, client_id, party, permissions, status, approved, approval_expires_at, \
         poll_interval, last_poll_at, created_at, decided_at"
    };
}

/// What a granted assessment writes, in one transaction.
#[derive(Debug)]
pub struct IssueRpt<'a> {
    /// The ticket redeemed (none for a refresh).
    pub ticket_digest: Option<&'a str>,
    pub rpt: &'a RptRecord,
    pub refresh: Option<&'a RefreshTokenRecord>,
    pub pct: Option<&'a PctRecord>,
    /// The RPT an upgrade retires (digest, grant family): the transaction fails unless this call is
    /// the one that retires it; the refresh tokens of its family end with it.
    pub retire: Option<(&'a str, &'a str)>,
    /// A refresh: fail if anything of the family was revoked meanwhile (a replay racing this use).
    pub family_must_be_live: bool,
    /// The assessment's record (none for a refresh, which assesses nothing).
    pub audit: Option<&'a AuditRecord>,
}

/// `IssueRpt` with its own data, to travel to SQLite's writer thread.
struct IssueRptOwned {
    ticket_digest: Option<String>,
    rpt: RptRecord,
    refresh: Option<RefreshTokenRecord>,
    pct: Option<PctRecord>,
    retire: Option<(String, String)>,
    family_must_be_live: bool,
    audit: Option<AuditRecord>,
}

impl From<&IssueRpt<'_>> for IssueRptOwned {
    fn from(w: &IssueRpt<'_>) -> Self {
        IssueRptOwned {
            ticket_digest: w.ticket_digest.map(str::to_owned),
            rpt: w.rpt.clone(),
            refresh: w.refresh.cloned(),
            pct: w.pct.cloned(),
            retire: w.retire.map(|(d, f)| (d.to_owned(), f.to_owned())),
            family_must_be_live: w.family_must_be_live,
            audit: w.audit.cloned(),
        }
    }
}

impl IssueRptOwned {
    /// `Store::issue_rpt` on the lane's writer: the same statements, undone together when one of
    /// the conditions fails.
    fn write_in(&self, c: &rusqlite::Connection) -> rusqlite::Result<Written<bool>> {
        let r = &self.rpt;
        if let Some((old, old_family)) = &self.retire {
            if lane::execute(c, RETIRE_RPT, &[&r.issued_at, old])? != 1 {
                return Ok(Written::Undo(false));
            }
            lane::execute(c, RETIRE_REFRESH_FAMILY, &[&r.issued_at, old_family])?;
        }
        if self.family_must_be_live && lane::query_one(c, FAMILY_REVOKED, &[&r.family], |_| Ok(()))?.is_some() {
            return Ok(Written::Undo(false));
        }
        lane::execute(
            c,
            INSERT_RPT,
            &[&r.digest, &r.client_id, &r.issued_at, &r.expires_at, &r.owner, &r.family, &r.permissions, &r.party],
        )?;
        if let Some(rt) = &self.refresh {
            insert_refresh_token_in(c, rt)?;
        }
        if let Some(p) = &self.pct {
            lane::execute(
                c,
                INSERT_PCT,
                &[&p.digest, &p.client_id, &p.party, &p.claims, &p.issued_at, &p.expires_at, &p.family],
            )?;
        }
        if let Some(t) = &self.ticket_digest
            && lane::execute(c, LINK_TICKET, &[&r.family, t])? != 1
        {
            return Ok(Written::Undo(false));
        }
        if let Some(a) = &self.audit {
            insert_audit_in(c, a)?;
        }
        Ok(Written::Keep(true))
    }
}

/// What a `need_info` / `request_submitted` answer writes, in one transaction.
#[derive(Debug)]
pub struct RotateTicket<'a> {
    pub ticket: &'a TicketRecord,
    /// A new pending approval to create.
    pub new_pending: Option<&'a PendingRequestRecord>,
    /// An existing pending approval polled again: its id, the interval now asked for, the poll time.
    pub polled: Option<(&'a str, i64)>,
    pub audit: &'a AuditRecord,
}

const INSERT_TICKET: &str =
    concat!("INSERT INTO ticket (", ticket_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");

const INSERT_AUDIT: &str =
    "INSERT INTO audit_event (at, client_id, party_iss, party_sub, owner, resource_ids, requested,
         granted, outcome, policies, claim_sources)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const INSERT_PENDING: &str = concat!(
    "INSERT INTO pending_request (",
    pending_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);
const POLLED: &str = "UPDATE pending_request SET poll_interval = $1, last_poll_at = $2 WHERE pending_id = $3";

const RETIRE_RPT: &str =
    "UPDATE access_token SET revoked_at = $1 WHERE digest = $2 AND kind = 'rpt' AND revoked_at IS NULL";
const RETIRE_REFRESH_FAMILY: &str = "UPDATE refresh_token SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL";
const FAMILY_REVOKED: &str = "SELECT 1 FROM refresh_token WHERE family = $1 AND revoked_at IS NOT NULL LIMIT 1";
const INSERT_RPT: &str = "INSERT INTO access_token
         (digest, client_id, scope, issued_at, expires_at, owner, family, revoked_at, kind, permissions, party)
     VALUES ($1, $2, '', $3, $4, $5, $6, NULL, 'rpt', $7, $8)";
const INSERT_PCT: &str = "INSERT INTO pct (digest, client_id, party, claims, issued_at, expires_at, revoked_at, family)
     VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)";
/// One grant per ticket, whatever else happens.
const LINK_TICKET: &str = "UPDATE ticket SET family = $1 WHERE digest = $2 AND family IS NULL";

fn insert_ticket_in(conn: &rusqlite::Connection, t: &TicketRecord) -> rusqlite::Result<()> {
    lane::execute(
        conn,
        INSERT_TICKET,
        &[
            &t.digest,
            &t.owner,
            &t.rs_client_id,
            &t.permissions,
            &t.created_at,
            &t.expires_at,
            &t.client_id,
            &t.carried,
            &t.pending_id,
        ],
    )?;
    Ok(())
}

fn insert_audit_in(conn: &rusqlite::Connection, a: &AuditRecord) -> rusqlite::Result<()> {
    lane::execute(
        conn,
        INSERT_AUDIT,
        &[
            &a.at,
            &a.client_id,
            &a.party_iss,
            &a.party_sub,
            &a.owner,
            &a.resource_ids,
            &a.requested,
            &a.granted,
            &a.outcome,
            &a.policies,
            &a.claim_sources,
        ],
    )?;
    Ok(())
}

pub(super) async fn insert_ticket_on(conn: &mut AnyConnection, t: &TicketRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_TICKET)
        .bind(&t.digest)
        .bind(&t.owner)
        .bind(&t.rs_client_id)
        .bind(&t.permissions)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(&t.client_id)
        .bind(&t.carried)
        .bind(&t.pending_id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert_audit_on(conn: &mut AnyConnection, a: &AuditRecord) -> Result<(), StoreError> {
    sqlx::query(INSERT_AUDIT)
        .bind(a.at)
        .bind(&a.client_id)
        .bind(&a.party_iss)
        .bind(&a.party_sub)
        .bind(&a.owner)
        .bind(&a.resource_ids)
        .bind(&a.requested)
        .bind(&a.granted)
        .bind(&a.outcome)
        .bind(&a.policies)
        .bind(&a.claim_sources)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    // ---- tickets ----

    pub async fn insert_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
        if let Some(lane) = &self.lane {
            let t = t.clone();
            return lane.write(move |c| insert_ticket_in(c, &t).map(Written::Keep)).await;
        }
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        insert_ticket_on(&mut conn, t).await
    }

    /// Marks a live ticket used and returns it: one statement, so of many concurrent presentations
    /// exactly one gets the row. A ticket bound to a client is not even touched by another client.
    async fn consume_ticket(
        &self,
        digest: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<TicketRecord>, StoreError> {
        const SQL: &str = concat!(
            "UPDATE ticket SET used_at = $1
             WHERE digest = $2 AND used_at IS NULL AND expires_at > $1 AND (client_id IS NULL OR client_id = $3)
             RETURNING ",
            ticket_columns!()
        );
        if let Some(lane) = &self.lane {
            let (digest, client_id) = (digest.to_owned(), client_id.to_owned());
            return lane
                .write(move |c| {
                    lane::query_one(c, SQL, &[&now, &digest, &client_id], lane::ticket_row).map(Written::Keep)
                })
                .await;
        }
        let _turn = self.write_turn().await;
        Ok(sqlx::query_as::<_, TicketRecord>(SQL)
            .bind(now)
            .bind(digest)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Spends a ticket (Grant §5.5): the live ticket, marked used; `None` when it cannot be used.
    /// A ticket presented again after it produced an RPT revokes that grant (threats D1).
    pub async fn spend_ticket(
        &self,
        digest: &str,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<TicketRecord>, StoreError> {
        if let Some(t) = self.consume_ticket(digest, client_id, now).await? {
            return Ok(Some(t));
        }
        if let Some(Some(family)) = self.used_ticket_family(digest).await? {
            self.revoke_family(&family, now).await?;
            tracing::warn!(client_id, "a redeemed ticket was presented again; its grant is revoked");
        }
        Ok(None)
    }

    /// For a ticket presented again after it was used: the grant family its first redemption produced
    /// (`Some(None)` when it produced none, or has not finished yet). `None`: not a used ticket.
    ///
    /// A presentation racing the first redemption does not stop it: of concurrent redemptions exactly
    /// one gets its RPT (checklist G-5.5-g); only a replay after it revokes what it produced.
    async fn used_ticket_family(&self, digest: &str) -> Result<Option<Option<String>>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT family FROM ticket WHERE digest = $1 AND used_at IS NOT NULL",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    // ---- the grant's one write ----

    /// Issues an RPT (with its refresh token and PCT), retires the upgraded RPT, links the ticket to
    /// the grant family and writes the audit record, all or nothing. `false`: the RPT to retire was
    /// retired by a concurrent request first (threats D4); nothing was written.
    pub async fn issue_rpt(&self, w: &IssueRpt<'_>) -> Result<bool, StoreError> {
        if let Some(lane) = &self.lane {
            let w = IssueRptOwned::from(w);
            return lane.write(move |c| w.write_in(c)).await;
        }
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        if let Some((old, old_family)) = w.retire {
            let done = sqlx::query(RETIRE_RPT).bind(w.rpt.issued_at).bind(old).execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(RETIRE_REFRESH_FAMILY).bind(w.rpt.issued_at).bind(old_family).execute(&mut *tx).await?;
        }
        if w.family_must_be_live {
            let revoked: Option<i64> =
                sqlx::query_scalar(FAMILY_REVOKED).bind(&w.rpt.family).fetch_optional(&mut *tx).await?;
            if revoked.is_some() {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        let r = w.rpt;
        sqlx::query(INSERT_RPT)
            .bind(&r.digest)
            .bind(&r.client_id)
            .bind(r.issued_at)
            .bind(r.expires_at)
            .bind(&r.owner)
            .bind(&r.family)
            .bind(&r.permissions)
            .bind(&r.party)
            .execute(&mut *tx)
            .await?;
        if let Some(rt) = w.refresh {
            insert_refresh_token_on(&mut tx, rt).await?;
        }
        if let Some(p) = w.pct {
            sqlx::query(INSERT_PCT)
                .bind(&p.digest)
                .bind(&p.client_id)
                .bind(&p.party)
                .bind(&p.claims)
                .bind(p.issued_at)
                .bind(p.expires_at)
                .bind(&p.family)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(t) = w.ticket_digest {
            let done = sqlx::query(LINK_TICKET).bind(&r.family).bind(t).execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        if let Some(a) = w.audit {
            insert_audit_on(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Hands back a new ticket (need_info, request_submitted) with its audit record and approval.
    pub async fn rotate_ticket(&self, w: &RotateTicket<'_>) -> Result<(), StoreError> {
        if let Some(lane) = &self.lane {
            let ticket = w.ticket.clone();
            let new_pending = w.new_pending.cloned();
            let polled = w.polled.map(|(id, interval)| (id.to_owned(), interval));
            let audit = w.audit.clone();
            return lane
                .write(move |c| {
                    if let Some(p) = &new_pending {
                        lane::execute(
                            c,
                            INSERT_PENDING,
                            &[
                                &p.pending_id,
                                &p.owner,
                                &p.rs_client_id,
                                &p.client_id,
                                &p.party,
                                &p.permissions,
                                &p.status,
                                &p.approved,
                                &p.approval_expires_at,
                                &p.poll_interval,
                                &p.last_poll_at,
                                &p.created_at,
                                &p.decided_at,
                            ],
                        )?;
                    }
                    if let Some((id, interval)) = &polled {
                        lane::execute(c, POLLED, &[interval, &ticket.created_at, id])?;
                    }
                    insert_ticket_in(c, &ticket)?;
                    insert_audit_in(c, &audit)?;
                    Ok(Written::Keep(()))
                })
                .await;
        }
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await?;
        if let Some(p) = w.new_pending {
            sqlx::query(INSERT_PENDING)
                .bind(&p.pending_id)
                .bind(&p.owner)
                .bind(&p.rs_client_id)
                .bind(&p.client_id)
                .bind(&p.party)
                .bind(&p.permissions)
                .bind(&p.status)
                .bind(&p.approved)
                .bind(p.approval_expires_at)
                .bind(p.poll_interval)
                .bind(p.last_poll_at)
                .bind(p.created_at)
                .bind(p.decided_at)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((id, interval)) = w.polled {
            sqlx::query(POLLED).bind(interval).bind(w.ticket.created_at).bind(id).execute(&mut *tx).await?;
        }
        insert_ticket_on(&mut tx, w.ticket).await?;
        insert_audit_on(&mut tx, w.audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An assessment that issued nothing and handed back no ticket (request_denied, invalid_scope).
    pub async fn insert_audit(&self, a: &AuditRecord) -> Result<(), StoreError> {
        if let Some(lane) = &self.lane {
            let a = a.clone();
            return lane.write(move |c| insert_audit_in(c, &a).map(Written::Keep)).await;
        }
        let _turn = self.write_turn().await;
        let mut conn = self.pool.acquire().await?;
        insert_audit_on(&mut conn, a).await
    }

    /// The newest `limit` audit records, oldest first; only those of `owner` when given.
    pub async fn audit_tail(&self, owner: Option<&str>, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let cols = "audit_id, at, client_id, party_iss, party_sub, owner, resource_ids, requested, granted, outcome, \
                    policies, claim_sources";
        let mut rows = match owner {
            Some(o) => {
                sqlx::query_as::<_, AuditRecord>(sqlx::AssertSqlSafe(format!(
                    "SELECT {cols} FROM audit_event WHERE owner = $1 ORDER BY audit_id DESC LIMIT $2"
                )))
                .bind(o)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as::<_, AuditRecord>(sqlx::AssertSqlSafe(format!(
                    "SELECT {cols} FROM audit_event ORDER BY audit_id DESC LIMIT $1"
                )))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.reverse();
        Ok(rows)
    }

    // ---- RPTs ----

    /// An RPT by digest, whatever its state (the caller decides what expiry and revocation mean).
    pub async fn find_rpt(&self, digest: &str) -> Result<Option<RptRecord>, StoreError> {
        const SQL: &str = concat!("SELECT ", rpt_columns!(), " FROM access_token WHERE digest = $1 AND kind = 'rpt'");
        if let Some(lane) = &self.lane {
            return lane.read(|c| lane::query_one(c, SQL, &[&digest], lane::rpt_row));
        }
        Ok(sqlx::query_as::<_, RptRecord>(SQL).bind(digest).fetch_optional(&self.pool).await?)
    }

    /// Checklist A-21: the owner removed a resource or a share of it: every RPT and refresh token of
    /// that owner that carries a permission on the resource is revoked (they are re-assessed on the
    /// next request). Resource ids are server-made UUIDs, so the pattern has no wildcard in it.
    pub async fn revoke_grants_on_resource(
        &self,
        owner: &str,
        resource_id: &str,
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        let pattern = format!("%\"resource_id\":\"{resource_id}\"%");
        let mut tx = self.pool.begin().await?;
        let a = sqlx::query(
            "UPDATE access_token SET revoked_at = $1
             WHERE owner = $2 AND kind = 'rpt' AND revoked_at IS NULL AND permissions LIKE $3",
        )
        .bind(now)
        .bind(owner)
        .bind(&pattern)
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query(
            "UPDATE refresh_token SET revoked_at = $1
             WHERE owner = $2 AND revoked_at IS NULL AND permissions IS NOT NULL AND permissions LIKE $3",
        )
        .bind(now)
        .bind(owner)
        .bind(&pattern)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(a.rows_affected() + r.rows_affected())
    }

    // ---- PCTs ----

    pub async fn find_pct(&self, digest: &str) -> Result<Option<PctRecord>, StoreError> {
        const SQL: &str = "SELECT digest, client_id, party, claims, issued_at, expires_at, revoked_at, family FROM pct WHERE digest = $1";
        if let Some(lane) = &self.lane {
            return lane.read(|c| lane::query_one(c, SQL, &[&digest], lane::pct_row));
        }
        Ok(sqlx::query_as::<_, PctRecord>(SQL).bind(digest).fetch_optional(&self.pool).await?)
    }

    /// Revokes a PCT of this client: its claims are deleted with it (threats D9). `false` if no PCT of
    /// this client matched.
    pub async fn revoke_pct(&self, digest: &str, client_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pct WHERE digest = $1 AND client_id = $2")
            .bind(digest)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- pending approvals ----

    pub async fn find_pending(&self, pending_id: &str) -> Result<Option<PendingRequestRecord>, StoreError> {
        const SQL: &str = concat!("SELECT ", pending_columns!(), " FROM pending_request WHERE pending_id = $1");
        if let Some(lane) = &self.lane {
            return lane.read(|c| lane::query_one(c, SQL, &[&pending_id], lane::pending_row));
        }
        Ok(sqlx::query_as::<_, PendingRequestRecord>(SQL).bind(pending_id).fetch_optional(&self.pool).await?)
    }

    /// Pending approvals of an owner's resources at one resource server, newest first.
    pub async fn list_pending(&self, owner: &str, rs_client_id: &str) -> Result<Vec<PendingRequestRecord>, StoreError> {
        Ok(sqlx::query_as::<_, PendingRequestRecord>(concat!(
            "SELECT ",
            pending_columns!(),
            " FROM pending_request WHERE owner = $1 AND rs_client_id = $2 ORDER BY created_at DESC, pending_id"
        ))
        .bind(owner)
        .bind(rs_client_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the owner's decision on a request still pending. `false`: unknown, not this owner's, or
    /// already decided.
    pub async fn decide_pending(
        &self,
        pending_id: &str,
        owner: &str,
        status: &str,
        approved: Option<&str>,
        approval_expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pending_request SET status = $1, approved = $2, approval_expires_at = $3, decided_at = $4
             WHERE pending_id = $5 AND owner = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(approved)
        .bind(approval_expires_at)
        .bind(now)
        .bind(pending_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
