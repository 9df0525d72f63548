//! SQLite's fast lane for the hot paths.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each statement is a round trip
//! between threads (10–60 µs on a loaded 2-core machine, `research/performance.md` §2.3). A UMA
//! grant made about ten of them, eight while SQLite's single write lock was held, and that hold
//! time capped the grant near 1,400/s. The lane keeps the hot statements where their connection is:
//!
//! - **one writer thread** owns a connection. Write jobs queue on a channel; the thread takes every
//!   job waiting (group commit), runs them in one `BEGIN IMMEDIATE` transaction, commits, and only
//!   then answers them. A job that fails or asks to be undone must not take the others with it: when
//!   one does, the transaction is rolled back and the batch runs again with each job in its own
//!   savepoint (jobs are re-runnable closures), so only that job's changes are dropped. Savepoints
//!   cost ~5% of a grant's CPU, and a job undoing is rare (a lost ticket race), hence the second
//!   pass instead of savepoints every time. A commit that fails fails them all. Nobody is told
//!   "written" before the commit returned.
//! - **readers**: short indexed reads run on the calling thread, on a pooled connection (a
//!   primary-key lookup costs ~7 µs there, less than one hop to a sqlx worker).
//!
//! The statements are the very SQL texts of the sqlx path (`$N` placeholders, bound here by number),
//! on the same file in WAL mode, so the two paths cannot drift apart in meaning. Writes the lane
//! does not carry (administration, console, sweeps) still go through sqlx; SQLite's own locking
//! and busy timeout order them against the lane's writer.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, Row, ToSql};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// At most this many jobs share one transaction: bounds how long the first of them waits.
const MAX_BATCH: usize = 128;
/// Jobs waiting for the writer; a full queue makes callers wait (back-pressure), never drops.
const QUEUE: usize = 1024;
/// Idle reader connections kept; more are opened under load and closed when returned.
const MAX_IDLE_READERS: usize = 8;
/// The writer waits this long for a lock held by another process or by a sqlx writer.
const WRITER_BUSY_MS: u32 = 5_000;
/// How often the checkpointer copies the WAL back into the database. SQLite's default would make
/// the writer do it inside a commit every 1,000 pages, stalling every write queued behind it (p99
/// spikes); a passive checkpoint on another connection runs beside the writer instead.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// WAL frames (pages) past which the writer finishes a checkpoint itself, between two batches, so
/// that the log starts over from its beginning. The background checkpoints alone never catch up with
/// a writer that never pauses: the log then only grows (6.6 GB in one benchmark run).
const WAL_RESTART_FRAMES: i64 = 4_096;
/// After a restart, a log file larger than this is cut back to it.
const WAL_KEEP_BYTES: u64 = 64 << 20;
/// A reader blocks its caller's thread, so it gives up sooner (WAL readers rarely wait at all).
const READER_BUSY_MS: u32 = 1_000;

/// What a write job asks for its work: kept (committed with the batch) or undone (rolled back to its
/// savepoint), with the answer either way.
pub(super) enum Written<T> {
    Keep(T),
    Undo(T),
}

/// One job of the writer, type-erased so one channel carries jobs of every result type.
trait Work: Send {
    /// Runs the job on the writer's connection; `true` to keep its changes. May run twice (see
    /// `run_batch`): the last run's outcome is the answer.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn answer(self: Box<Self>, commit: Result<(), &str>);
}

struct Job<T, F> {
    work: F,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Work for Job<T, F>
where
    T: Send,
    F: Fn(&Connection) -> rusqlite::Result<Written<T>> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = &self.work;
        // A panic must not take the writer (and with it every later write) down: the job is undone
        // and answered as failed.
        let (keep, outcome) = match std::panic::catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(Ok(Written::Keep(v))) => (true, Ok(v)),
            Ok(Ok(Written::Undo(v))) => (false, Ok(v)),
            Ok(Err(e)) => (false, Err(StoreError::from(e))),
            Err(_) => (false, Err(StoreError::Lane("a write job panicked; it was undone".into()))),
        };
        self.outcome = Some(outcome);
        keep
    }

    fn answer(self: Box<Self>, commit: Result<(), &str>) {
        let answer = match (commit, self.outcome) {
            (Err(e), _) => Err(StoreError::Lane(format!("the batch was not committed: {e}"))),
            (Ok(()), Some(outcome)) => outcome,
            (Ok(()), None) => Err(StoreError::Lane("the write job did not run".into())),
        };
        // The caller may have gone (its request task ended): nothing to tell.
        let _ = self.reply.send(answer);
    }
}

enum Message {
    Work(Box<dyn Work>),
    /// Finish what was queued before, close the connection, then say so.
    Close(oneshot::Sender<()>),
}

pub(super) struct Lane {
    jobs: mpsc::Sender<Message>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Dropped (or sent to) on close: the checkpointer does a last checkpoint and stops.
    stop_checkpoints: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// Set by the checkpointer when the log has grown past `WAL_RESTART_FRAMES`; the writer clears it.
type WalLong = std::sync::Arc<std::sync::atomic::AtomicBool>;

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("path", &self.path).finish_non_exhaustive()
    }
}

fn open(path: &Path, busy_ms: u32) -> rusqlite::Result<Connection> {
    // NO_MUTEX: each connection is used by one thread at a time (the writer's own, or a reader
    // taken out of the pool), so SQLite's per-connection mutex is pure overhead.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    // The same settings as the sqlx connections (`Store::connect`): WAL is kept in the file,
    // the others are per connection.
    // No mmap: the file grows with every batch, and each read transaction that sees a new size
    // unmaps and remaps it (munmap with TLB shootdowns cost ~5% of the grant's CPU in a profile).
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = {busy_ms}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
    ))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl Lane {
    /// Opens the writer and one reader on the SQLite file at `path` (which sqlx has already created
    /// and put in WAL mode).
    pub(super) fn open(path: &Path) -> Result<Lane, StoreError> {
        let writer = open(path, WRITER_BUSY_MS)?;
        writer
            .execute_batch(&format!("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"))?;
        let checkpoints = open(path, WRITER_BUSY_MS)?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel();
        let wal_long = WalLong::default();
        let wal_long_seen = wal_long.clone();
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, stopped, &wal_long_seen))
            .map_err(|e| StoreError::Setup(format!("cannot start the SQLite checkpoint thread: {e}")))?;
        let reader = open(path, READER_BUSY_MS)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || write_loop(writer, queue, &wal_long))
            .map_err(|e| StoreError::Setup(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Lane {
            jobs,
            readers: Mutex::new(vec![reader]),
            path: path.to_owned(),
            stop_checkpoints: Mutex::new(Some(stop_checkpoints)),
        })
    }

    /// Queues `work` for the writer and waits until its batch committed (or failed). `work` may run
    /// twice (the batch's second pass, after another job failed): it must do nothing but statements
    /// on the connection it is given.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<Written<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job { work, outcome: None, reply };
        self.jobs.send(Message::Work(Box::new(job))).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a short read on the calling thread, on a pooled connection.
    pub(super) fn read<T>(&self, work: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let idle = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => open(&self.path, READER_BUSY_MS)?,
        };
        let result = work(&conn);
        // A read that failed may have left the connection mid-statement: it is not reused.
        if result.is_ok() {
            let mut idle = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        Ok(result?)
    }

    /// Lets the writer finish every job queued so far, then stops it. Later writes fail with
    /// `StoreError::Closed`.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.stop_checkpoints.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Passive checkpoints every `CHECKPOINT_EVERY`: they copy what no reader still needs and never
/// wait for the writer or readers, so writes go on meanwhile.
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>, wal_long: &WalLong) {
    loop {
        let stopping = !matches!(stop.recv_timeout(CHECKPOINT_EVERY), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
        match checkpoint(&conn) {
            Ok(frames) if frames > WAL_RESTART_FRAMES => wal_long.store(true, std::sync::atomic::Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries"),
        }
        if stopping {
            return;
        }
    }
}

/// A passive checkpoint (copies what no reader still needs, waits for nobody); the log's length in
/// frames.
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
}

fn write_loop(conn: Connection, mut queue: mpsc::Receiver<Message>, wal_long: &WalLong) {
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        let Some(first) = queue.blocking_recv() else { break };
        let mut batch: Vec<Box<dyn Work>> = Vec::new();
        match first {
            Message::Work(w) => batch.push(w),
            Message::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Message::Work(w)) => batch.push(w),
                Ok(Message::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, batch);
        }
        // Between batches nobody else writes, so this checkpoint can reach the log's end (the
        // background one has copied most of it already); the next `BEGIN` then restarts the log.
        if wal_long.swap(false, std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = checkpoint(&conn)
        {
            tracing::warn!(error = %e, "SQLite checkpoint failed; the next one retries");
        }
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs a fixed statement (transaction control) through the statement cache: no parse per batch.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One transaction for the whole batch: first without savepoints; if a job does not keep its
/// changes, the transaction is rolled back and the batch runs again with one savepoint per job.
fn run_batch(conn: &Connection, mut batch: Vec<Box<dyn Work>>) {
    let result = (|| -> rusqlite::Result<()> {
        control(conn, "BEGIN IMMEDIATE")?;
        let mut every_job_kept = true;
        for job in &mut batch {
            if !job.run(conn) {
                every_job_kept = false;
                break;
            }
        }
        if !every_job_kept {
            // The failing job may have left half its changes: nothing of this pass is kept.
            if !conn.is_autocommit() {
                control(conn, "ROLLBACK")?;
            }
            control(conn, "BEGIN IMMEDIATE")?;
            for job in &mut batch {
                control(conn, "SAVEPOINT job")?;
                if job.run(conn) {
                    control(conn, "RELEASE job")?;
                } else {
                    control(conn, "ROLLBACK TO job")?;
                    control(conn, "RELEASE job")?;
                }
            }
        }
        control(conn, "COMMIT")
    })();
    match result {
        Ok(()) => batch.into_iter().for_each(|job| job.answer(Ok(()))),
        Err(e) => {
            tracing::error!(error = %e, jobs = batch.len(), "SQLite write batch failed; nothing of it was kept");
            if !conn.is_autocommit()
                && let Err(e) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(error = %e, "SQLite rollback failed");
            }
            let reason = e.to_string();
            batch.into_iter().for_each(|job| job.answer(Err(&reason)));
        }
    }
}

/// Names of the `$N` placeholders, so binding does not format a string per argument.
const NAMES: [&str; 16] =
    ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];

/// Prepares (cached) `sql` and binds `args` to its `$1…$N` placeholders. Every placeholder must get
/// an argument: an unbound one would silently be NULL.
pub(super) fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    args: &[&dyn ToSql],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut stmt = conn.prepare_cached(sql)?;
    if stmt.parameter_count() != args.len() {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), stmt.parameter_count()));
    }
    for (i, arg) in args.iter().enumerate() {
        let owned;
        let name = match NAMES.get(i) {
            Some(n) => *n,
            None => {
                owned = format!("${}", i + 1);
                owned.as_str()
            }
        };
        let index = stmt.parameter_index(name)?.ok_or_else(|| rusqlite::Error::InvalidParameterName(name.into()))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(stmt)
}

/// Runs a statement that returns no rows; the number of rows it changed.
pub(super) fn execute(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    prepare(conn, sql, args)?.raw_execute()
}

/// Every row of a query, mapped.
pub(super) fn query<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = prepare(conn, sql, args)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row of a query, mapped, if any.
pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn ToSql],
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let mut stmt = prepare(conn, sql, args)?;
    let mut rows = stmt.raw_query();
    match rows.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

// ---- rows → records, by column name (the SQL lists the columns; see the record types) ----

use super::records::{
    AccessTokenRecord, ClientRecord, PctRecord, PendingRequestRecord, ResourceRecord, RptRecord, TicketRecord,
};
use super::shares::ShareRecord;

pub(super) fn client_row(r: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    Ok(ClientRecord {
        client_id: r.get("client_id")?,
        secret_digest: r.get("secret_digest")?,
        registration_token_digest: r.get("registration_token_digest")?,
        metadata: r.get("metadata")?,
        source: r.get("source")?,
        issued_at: r.get("issued_at")?,
        secret_expires_at: r.get("secret_expires_at")?,
        updated_at: r.get("updated_at")?,
        bound_owner: r.get("bound_owner")?,
    })
}

pub(super) fn access_token_row(r: &Row<'_>) -> rusqlite::Result<AccessTokenRecord> {
    Ok(AccessTokenRecord {
        digest: r.get("digest")?,
        client_id: r.get("client_id")?,
        scope: r.get("scope")?,
        issued_at: r.get("issued_at")?,
        expires_at: r.get("expires_at")?,
        owner: r.get("owner")?,
        family: r.get("family")?,
        revoked_at: r.get("revoked_at")?,
    })
}

pub(super) fn ticket_row(r: &Row<'_>) -> rusqlite::Result<TicketRecord> {
    Ok(TicketRecord {
        digest: r.get("digest")?,
        owner: r.get("owner")?,
        rs_client_id: r.get("rs_client_id")?,
        permissions: r.get("permissions")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        client_id: r.get("client_id")?,
        carried: r.get("carried")?,
        pending_id: r.get("pending_id")?,
    })
}

pub(super) fn rpt_row(r: &Row<'_>) -> rusqlite::Result<RptRecord> {
    Ok(RptRecord {
        digest: r.get("digest")?,
        client_id: r.get("client_id")?,
        owner: r.get("owner")?,
        party: r.get("party")?,
        permissions: r.get("permissions")?,
        issued_at: r.get("issued_at")?,
        expires_at: r.get("expires_at")?,
        family: r.get("family")?,
        revoked_at: r.get("revoked_at")?,
    })
}

pub(super) fn resource_row(r: &Row<'_>) -> rusqlite::Result<ResourceRecord> {
    Ok(ResourceRecord {
        resource_id: r.get("resource_id")?,
        owner: r.get("owner")?,
        rs_client_id: r.get("rs_client_id")?,
        description: r.get("description")?,
        name: r.get("name")?,
        resource_type: r.get("type")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

pub(super) fn share_row(r: &Row<'_>) -> rusqlite::Result<ShareRecord> {
    Ok(ShareRecord {
        share_id: r.get("share_id")?,
        owner: r.get("owner")?,
        resource_id: r.get("resource_id")?,
        scopes: r.get("scopes")?,
        matcher: r.get("matcher")?,
        expires_at: r.get("expires_at")?,
        created_at: r.get("created_at")?,
        revoked_at: r.get("revoked_at")?,
    })
}

pub(super) fn pct_row(r: &Row<'_>) -> rusqlite::Result<PctRecord> {
    Ok(PctRecord {
        digest: r.get("digest")?,
        client_id: r.get("client_id")?,
        party: r.get("party")?,
        claims: r.get("claims")?,
        issued_at: r.get("issued_at")?,
        expires_at: r.get("expires_at")?,
        revoked_at: r.get("revoked_at")?,
        family: r.get("family")?,
    })
}

pub(super) fn pending_row(r: &Row<'_>) -> rusqlite::Result<PendingRequestRecord> {
    Ok(PendingRequestRecord {
        pending_id: r.get("pending_id")?,
        owner: r.get("owner")?,
        rs_client_id: r.get("rs_client_id")?,
        client_id: r.get("client_id")?,
        party: r.get("party")?,
        permissions: r.get("permissions")?,
        status: r.get("status")?,
        approved: r.get("approved")?,
        approval_expires_at: r.get("approval_expires_at")?,
        poll_interval: r.get("poll_interval")?,
        last_poll_at: r.get("last_poll_at")?,
        created_at: r.get("created_at")?,
        decided_at: r.get("decided_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane_on_new_file(dir: &Path) -> Lane {
        let path = dir.join("lane.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);").unwrap();
        Lane::open(&path).unwrap()
    }

    fn count(lane: &Lane) -> i64 {
        lane.read(|c| query_one(c, "SELECT COUNT(*) AS n FROM t", &[], |r| r.get::<_, i64>("n"))).unwrap().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_one_batch_keep_undo_and_fail_independently() {
        let dir = tempfile::tempdir().unwrap();
        let lane = std::sync::Arc::new(lane_on_new_file(dir.path()));
        // Many concurrent jobs end up in shared batches; every third asks to be undone after writing,
        // every fifth fails on a duplicate of the row it has just written.
        let mut handles = Vec::new();
        for i in 0..300i64 {
            let lane = lane.clone();
            handles.push(tokio::spawn(async move {
                lane.write(move |c| {
                    execute(c, "INSERT INTO t (k, v) VALUES ($1, $2)", &[&format!("k{i}"), &i])?;
                    if i % 5 == 0 {
                        execute(c, "INSERT INTO t (k, v) VALUES ($1, $2)", &[&format!("k{i}"), &i])?;
                    }
                    Ok(if i % 3 == 0 { Written::Undo(i) } else { Written::Keep(i) })
                })
                .await
            }));
        }
        let mut kept = 0;
        for (i, h) in handles.into_iter().enumerate() {
            let i = i as i64;
            match h.await.unwrap() {
                Ok(v) => {
                    assert_eq!(v, i);
                    assert!(i % 5 != 0, "job {i} should have failed");
                    if i % 3 != 0 {
                        kept += 1;
                    }
                }
                Err(e) => {
                    assert!(i % 5 == 0, "job {i} failed: {e}");
                    assert!(matches!(e, StoreError::Lane(_)));
                }
            }
        }
        assert_eq!(count(&lane), kept);
        // A failed job's first row did not survive; a kept job's did.
        let k5 =
            lane.read(|c| query_one(c, "SELECT v FROM t WHERE k = $1", &[&"k5"], |r| r.get::<_, i64>("v"))).unwrap();
        assert_eq!(k5, None);
        let k7 =
            lane.read(|c| query_one(c, "SELECT v FROM t WHERE k = $1", &[&"k7"], |r| r.get::<_, i64>("v"))).unwrap();
        assert_eq!(k7, Some(7));
    }

    #[tokio::test]
    async fn a_panicking_job_is_undone_and_the_writer_lives_on() {
        let dir = tempfile::tempdir().unwrap();
        let lane = lane_on_new_file(dir.path());
        let r: Result<(), StoreError> = lane
            .write(|c| {
                execute(c, "INSERT INTO t (k, v) VALUES ($1, $2)", &[&"p", &1])?;
                panic!("boom")
            })
            .await;
        assert!(matches!(r, Err(StoreError::Lane(_))));
        lane.write(|c| execute(c, "INSERT INTO t (k, v) VALUES ($1, $2)", &[&"q", &2]).map(Written::Keep))
            .await
            .unwrap();
        assert_eq!(count(&lane), 1);
    }

    #[tokio::test]
    async fn close_finishes_queued_writes_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let lane = std::sync::Arc::new(lane_on_new_file(dir.path()));
        let queued: Vec<_> = (0..50i64)
            .map(|i| {
                let lane = lane.clone();
                tokio::spawn(async move {
                    lane.write(move |c| execute(c, "INSERT INTO t (k, v) VALUES ($1, $1)", &[&i]).map(Written::Keep))
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        lane.close().await;
        let mut written = 0;
        for h in queued {
            match h.await.unwrap() {
                Ok(_) => written += 1,
                Err(e) => assert!(matches!(e, StoreError::Closed), "{e}"),
            }
        }
        let after = lane.write(|c| execute(c, "INSERT INTO t (k, v) VALUES ('x', 1)", &[]).map(Written::Keep)).await;
        assert!(matches!(after, Err(StoreError::Closed)));
        // Whatever was answered as written is in the file.
        let c = Connection::open(dir.path().join("lane.db")).unwrap();
        let n: i64 = c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, written);
    }

    #[test]
    fn every_placeholder_needs_an_argument() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a TEXT, b TEXT)").unwrap();
        let sql = "INSERT INTO t (a, b) VALUES ($1, $2)";
        assert!(matches!(execute(&c, sql, &[&"x"]), Err(rusqlite::Error::InvalidParameterCount(1, 2))));
        // `$2` bound to the second argument even when it appears first.
        execute(&c, "INSERT INTO t (b, a) VALUES ($2, $1)", &[&"a", &"b"]).unwrap();
        let (a, b): (String, String) = c.query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
    }
}
