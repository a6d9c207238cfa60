//! The embedded SQLite ledger: every code the gateway accepts and its delivery state on every
//! target, written *before* any upstream is called and updated as each answer arrives.
//!
//! It is what makes the gateway safe to call twice and safe to crash:
//! - a code is held once per campaign, compared without regard to case; a target where the
//!   code is already `created` is never called again, by a create or by a sync job;
//! - an upstream holds a code (in any case) for one campaign only: a create or job item that
//!   targets an upstream where another campaign's code is delivered or being delivered is
//!   refused whole, before anything is written or sent;
//! - an `Idempotency-Key` names a create: a repeat with the same body replays the first answer,
//!   with another body is refused, and while the first is running gets 409;
//! - a delivery is `pending` from the moment it is decided until its outcome is recorded, so a
//!   crash leaves exactly the deliveries that may not have happened, and the next start sends
//!   them (a vendor that did get the first call answers "already exists", recorded as such);
//! - a sync job's codes are staged, checked and then written in short slices before it starts
//!   (see [`Store::begin_job`]), so other writers are never held out for long, yet a job either
//!   holds all its codes or none, and a restart continues it.
//!
//! The rules are the domain's (`domain::code::decide`, `held_elsewhere`, `domain::request`);
//! this file reads the rows they need and writes what they decide, in one transaction. One file,
//! one connection: creates' claims, outcomes and answers are committed in batches by one writer
//! ([`writer`], group commit), the rest runs on tokio's blocking pool; one process owns the file
//! (its lock file), so opening it as the sole owner frees every lease the last process left.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::domain::code::{code_key, CodeConflict, CodeFilter, CodeRecord, Definition};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::job::{JobRecord, JobResult, JobState, JobWork, NewJob, StageAs, Staged, WorkItem};
use crate::domain::request::{
    self as rules, Begin, Claim, ClaimDecision, NewCreate, NewRevoke, OpKind, StoredRequest, Unfinished,
};
use crate::error::StartupError;
use crate::ports::{Adopted, Store, StoreError, StoreErrorKind};
use crate::store::RequestRow;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

mod checkpoint;
mod intake;
mod migrate;
mod rows;
mod space;
#[cfg(test)]
mod tests;
mod writer;

use crate::ports::WriteStats;
use crate::store::group::Group;
use migrate::migrate;
use rows::*;
use writer::{Typed, Write, Writer, Written};

/// What went wrong inside the SQLite store; the engine sees it as a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("the ledger could not be written: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the ledger's worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("the ledger holds a record it cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the ledger holds a timestamp it cannot read: {0}")]
    Time(#[from] chrono::ParseError),
    /// Nothing was written: the ledger cannot take new work now (its disk is full, it is
    /// read-only, or outcomes it could not record are still held).
    #[error("{0}")]
    Unwritable(String),
    /// An outcome is not on disk yet: it is held in memory and written before any new claim.
    #[error("{0}")]
    Held(String),
}

impl LedgerError {
    /// The disk (or the filesystem's quota) has no room for the write.
    fn is_out_of_space(&self) -> bool {
        use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
        matches!(self, LedgerError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) if matches!(e.code, DiskFull | SystemIoFailure))
    }

    /// The write failed for a reason of the file or disk, not of the data: it may succeed later.
    fn is_write_failure(&self) -> bool {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, ReadOnly};
        self.is_out_of_space()
            || matches!(self, LedgerError::Unwritable(_) | LedgerError::Held(_))
            || matches!(self, LedgerError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, CannotOpen | DatabaseBusy | DatabaseLocked | ReadOnly))
    }
}

impl From<LedgerError> for StoreError {
    fn from(e: LedgerError) -> Self {
        let kind = match &e {
            LedgerError::Corrupt(_) | LedgerError::Time(_) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Unavailable,
        };
        StoreError::new(kind, e.to_string())
    }
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct Ledger {
    /// One connection, one writer at a time. `parking_lot`'s mutex, because a job's intake
    /// hands it over fairly between slices (`unlock_fair`): a waiting create gets the ledger
    /// next instead of the intake taking it straight back.
    conn: Arc<Mutex<Connection>>,
    space: Arc<space::Space>,
    /// Claims, outcomes and answers, committed in batches ([`writer`]).
    writer: Group<Writer>,
    /// Copies the log into the file off the write path; `None` on a read-only file.
    _checkpoints: Option<Arc<checkpoint::Checkpointer>>,
    /// Whose work this handle begins and adopts, and for how long a lease runs.
    owner: Arc<str>,
    lease: chrono::Duration,
}

/// The room [`Ledger::open`] keeps beside the ledger for outcomes when the disk fills.
pub use crate::config::DEFAULT_RESERVE_BYTES;

/// How a handle on the ledger file is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Room kept for outcomes when the disk fills (0: none).
    pub reserve_bytes: u64,
    /// This process's name as an owner of work.
    pub owner: String,
    /// How long a lease on a create or job runs without renewal.
    pub lease: chrono::Duration,
    /// The process holds the file's lock: whatever the last process leased is free at once.
    pub sole_owner: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            owner: format!("pid-{}", std::process::id()),
            lease: chrono::Duration::seconds(30),
            sole_owner: true,
        }
    }
}

/// The longest it holds the ledger for one slice; other writers go in between.
pub const INTAKE_SLICE_TIME: Duration = Duration::from_millis(20);

/// Prepared statements kept per connection: more than the ledger has (about 40).
const STATEMENTS_KEPT: usize = 128;

/// How long a write waits for a second process (the CLI beside a server) to let go of the file's
/// write lock. Only off the runtime's threads (see [`writer`]).
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A timestamp in the ledger's text form, which sorts as time does.
fn stamp(t: DateTime<Utc>) -> String {
    crate::domain::time::format(&t)
}

/// A timestamp the ledger wrote.
fn parse_stamp(s: &str) -> Result<DateTime<Utc>, LedgerError> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

fn status_name(status: Status) -> &'static str {
    status.as_str()
}

fn parse_status(s: &str) -> Status {
    Status::from_name(s).unwrap_or(Status::Failed)
}

impl Ledger {
    /// Opens (creating and migrating if needed) the ledger file. Failure stops start-up: a
    /// gateway that cannot record would be one that can lose codes.
    pub fn open(path: &Path) -> Result<Self, StartupError> {
        Self::open_with(path, Options::default())
    }

    /// [`Ledger::open`], keeping `reserve_bytes` of room for outcomes (0: none).
    pub fn open_with_reserve(path: &Path, reserve_bytes: u64) -> Result<Self, StartupError> {
        Self::open_with(
            path,
            Options {
                reserve_bytes,
                ..Options::default()
            },
        )
    }

    /// [`Ledger::open`] with every option.
    pub fn open_with(path: &Path, options: Options) -> Result<Self, StartupError> {
        let fail = |e: rusqlite::Error| StartupError::Ledger {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        // A busy timeout (set first: switching to WAL takes a lock too) rides out a second
        // process (the CLI beside a server) holding the file briefly; WAL keeps readers from
        // blocking the writer.
        conn.busy_timeout(LOCK_PATIENCE).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(fail)?;
        // Every statement of the ledger stays prepared. With rusqlite's default of 16, a
        // create's claim and answer (about 15 statements, and the batch's BEGIN and COMMIT)
        // pushed each other out of the cache, least recently used first, so that every one of
        // them was parsed and planned anew on each create.
        conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        migrate(&mut conn).map_err(fail)?;
        let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)?;
        if options.sole_owner && !read_only {
            conn.execute_batch(
                "UPDATE requests SET lease_until = NULL WHERE finished_at IS NULL AND lease_until IS NOT NULL;
                 UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL;",
            )
            .map_err(fail)?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let checkpoints = (!read_only)
            .then(|| checkpoint::Checkpointer::start(path, &conn))
            .flatten()
            .map(Arc::new);
        let space = Arc::new(space::Space::new(path, options.reserve_bytes, read_only));
        let ledger = Self {
            writer: Group::new(Writer {
                conn: conn.clone(),
                space: space.clone(),
            }),
            _checkpoints: checkpoints,
            conn,
            space,
            owner: options.owner.into(),
            lease: options.lease,
        };
        ledger.recover_intakes().map_err(|e| StartupError::Ledger {
            path: path.to_owned(),
            message: format!("a sync job's intake could not be recovered: {e}"),
        })?;
        Ok(ledger)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            f(&mut conn)
        })
        .await
        .map_err(LedgerError::from)?
        .map_err(StoreError::from)
    }

    /// Writes new work (a claim): only while the ledger can also record its outcomes.
    async fn claim<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let space = self.space.clone();
        self.with(move |conn| space.claim(conn, f)).await
    }

    /// A create's claim, committed with whatever other writes are queued with it.
    async fn batched_claim<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<Written<T>, LedgerError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (claim, answer) = Typed::queued(f);
        self.writer.submit(Write::Claim(claim));
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    /// Outcomes of calls made, committed with whatever other writes are queued with them: into
    /// the reserve's room on a full disk, or held in memory.
    async fn outcome(&self, write: space::HeldWrite) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.submit(Write::Outcome(write, reply));
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }
}

/// A record the ledger holds that cannot be what it is.
fn corrupt(what: String) -> LedgerError {
    LedgerError::Corrupt(serde::de::Error::custom(what))
}

fn writer_stopped() -> StoreError {
    StoreError::new(
        StoreErrorKind::Unavailable,
        "the ledger's writer stopped before answering; the write may not have been recorded",
    )
}

/// Writes an operation's request row; its id. The key expires `key_expires_at` (when a key
/// was given).
fn insert_request(
    tx: &Connection,
    row: &RequestRow<'_>,
    key_expires_at: DateTime<Utc>,
    owner: &str,
    lease_until: &str,
) -> Result<i64, LedgerError> {
    tx.prepare_cached(
        "INSERT INTO requests (idempotency_key, key_expires_at, body, code_id, targets, owner, lease_until,
                               operation, requested_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        row.key,
        row.key.map(|_| stamp(key_expires_at)),
        row.body,
        row.code_id,
        serde_json::to_string(row.targets)?,
        owner,
        lease_until,
        row.op.as_str(),
        row.requested_by
    ])?;
    Ok(tx.last_insert_rowid())
}

#[async_trait::async_trait]
impl Store for Ledger {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn problem(&self) -> Option<String> {
        self.space.problem()
    }

    async fn begin_create(&self, create: NewCreate) -> Result<Begin, StoreError> {
        let NewCreate {
            key,
            body,
            definition,
            targets,
            requested_by,
            now,
            key_window,
        } = create;
        let owner = self.owner.clone();
        let lease_until = stamp(now + self.lease);
        let body = body.to_string();
        // The batch's transaction is immediate: the write lock is taken before the reads the
        // claim decides on, so a second connection on the file (another handle, as in the
        // contract's cases) waits its turn instead of failing to upgrade a read into a write.
        self.batched_claim(move |tx| {
            use Written::{Dropped, Kept};
            if let Some(answer) = key_check(tx, key.as_deref(), &body, now)? {
                return Ok(Dropped(answer));
            }
            // A refusal's changes are dropped (its savepoint rolled back).
            if let Some(conflict) = staged_conflict(tx, &definition, None)? {
                return Ok(Dropped(Begin::Conflict(conflict)));
            }
            let code = match find_or_add_code(tx, &definition)? {
                Ok(code) => code,
                Err(conflict) => return Ok(Dropped(Begin::Conflict(conflict))),
            };
            // A code added just now was never revoked.
            if !code.added {
                if let Some(revoked_at) = rows::revoked_at(tx, code.id)? {
                    let existing = definition.code.clone();
                    return Ok(Dropped(Begin::Conflict(CodeConflict::Revoked { existing, revoked_at })));
                }
            }
            let names: Vec<String> = targets.iter().map(|t| t.upstream.clone()).collect();
            if let Some(conflict) = held_elsewhere(tx, &definition.campaign, &definition.key(), &names)? {
                return Ok(Dropped(Begin::Conflict(conflict)));
            }
            let row = RequestRow {
                op: OpKind::Create,
                key: key.as_deref(),
                body: &body,
                code_id: code.id,
                targets: &names,
                requested_by: requested_by.as_deref(),
            };
            let request_id = insert_request(tx, &row, now + key_window, &owner, &lease_until)?;
            let mut claims = Vec::with_capacity(targets.len());
            for t in &targets {
                // A code added just now has no deliveries.
                let current = if code.added {
                    None
                } else {
                    delivery(tx, code.id, &t.upstream)?
                };
                let decided = rules::decide_claim(current.as_ref().map(|(status, result)| (*status, result.is_some())));
                let claim = match (decided, current) {
                    (ClaimDecision::Done, Some((_, Some(result)))) => {
                        Claim::Done(Box::new(serde_json::from_str(&result)?))
                    }
                    (ClaimDecision::Elsewhere, _) => Claim::Elsewhere,
                    _ => {
                        put_delivery(tx, code.id, &t.upstream, t.settled.as_ref(), Some(request_id), None)?;
                        if t.settled.is_some() {
                            Claim::Settled
                        } else {
                            Claim::Send
                        }
                    }
                };
                claims.push(claim);
            }
            Ok(Kept(Begin::New {
                request_id,
                code_id: code.id,
                claims,
            }))
        })
        .await
    }

    async fn begin_revoke(&self, revoke: NewRevoke) -> Result<Begin, StoreError> {
        let owner = self.owner.clone();
        let lease_until = stamp(revoke.now + self.lease);
        let body = revoke.body.to_string();
        self.batched_claim(move |tx| {
            use Written::{Dropped, Kept};
            let NewRevoke {
                key,
                campaign,
                code,
                targets,
                requested_by,
                now,
                key_window,
                ..
            } = revoke;
            if let Some(answer) = key_check(tx, key.as_deref(), &body, now)? {
                return Ok(Dropped(answer));
            }
            let code_id: Option<i64> = tx
                .prepare_cached("SELECT id FROM codes WHERE campaign = ?1 AND code_key = ?2")?
                .query_row(params![campaign, code_key(&code)], |r| r.get(0))
                .optional()?;
            let Some(code_id) = code_id else {
                return Ok(Dropped(Begin::NoSuchCode));
            };
            // The first revocation's time stands; from it on, nothing delivers the code again.
            tx.prepare_cached("UPDATE codes SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
                .execute(params![code_id, stamp(now)])?;
            let revoked_at = rows::revoked_at(tx, code_id)?.unwrap_or(now);
            let names: Vec<String> = targets.iter().map(|t| t.upstream.clone()).collect();
            let row = RequestRow {
                op: OpKind::Revoke,
                key: key.as_deref(),
                body: &body,
                code_id,
                targets: &names,
                requested_by: requested_by.as_deref(),
            };
            let request_id = insert_request(tx, &row, now + key_window, &owner, &lease_until)?;
            let mut claims = Vec::with_capacity(targets.len());
            for t in &targets {
                let revocation = rows::state(tx, OpKind::Revoke, code_id, &t.upstream)?;
                let delivery = delivery(tx, code_id, &t.upstream)?;
                let decided = rules::decide_revoke_claim(
                    revocation.as_ref().map(|(s, _)| *s),
                    delivery.as_ref().map(|(s, _)| *s),
                );
                let claim = match decided {
                    rules::RevokeDecision::Done => match revocation {
                        Some((_, Some(result))) => Claim::Done(Box::new(serde_json::from_str(&result)?)),
                        _ => Claim::Elsewhere,
                    },
                    rules::RevokeDecision::Elsewhere => Claim::Elsewhere,
                    rules::RevokeDecision::CreateInFlight => {
                        // Claimed now (pending under this revoke), sent once the create's
                        // outcome says there is a code to revoke.
                        rows::put_revocation(tx, code_id, &t.upstream, None, request_id)?;
                        Claim::CreateInFlight
                    }
                    rules::RevokeDecision::NotDelivered(status) => Claim::NotDelivered(status),
                    rules::RevokeDecision::Take => {
                        rows::put_revocation(tx, code_id, &t.upstream, t.settled.as_ref(), request_id)?;
                        if t.settled.is_some() {
                            Claim::Settled
                        } else {
                            Claim::Send
                        }
                    }
                };
                claims.push(claim);
            }
            Ok(Kept(Begin::Revoking {
                request_id,
                code_id,
                revoked_at,
                claims,
            }))
        })
        .await
    }

    async fn record(&self, op: OpKind, outcomes: Vec<(i64, TargetResult)>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let rows = outcome_rows(op, &outcomes).map_err(StoreError::from)?;
        self.outcome(Arc::new(move |tx: &Connection| record_outcomes(tx, &rows)))
            .await
    }

    async fn finish_request(
        &self,
        request_id: i64,
        op: OpKind,
        response: String,
        outcomes: Vec<(i64, TargetResult)>,
    ) -> Result<(), StoreError> {
        let rows = outcome_rows(op, &outcomes).map_err(StoreError::from)?;
        self.outcome(Arc::new(move |tx: &Connection| {
            record_outcomes(tx, &rows)?;
            tx.prepare_cached(&format!(
                "UPDATE requests SET response = ?1, finished_at = {NOW} WHERE id = ?2"
            ))?
            .execute(params![response, request_id])?;
            Ok(())
        }))
        .await
    }

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, StoreError> {
        self.with(move |conn| {
            type Row = (
                i64,
                String,
                String,
                Option<String>,
                Option<String>,
                String,
                Option<String>,
            );
            let row: Option<Row> = conn
                .query_row(
                    "SELECT code_id, targets, received_at, finished_at, response, operation, requested_by
                       FROM requests WHERE id = ?1",
                    [request_id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((code_id, targets, received_at, finished_at, response, operation, requested_by)) = row else {
                return Ok(None);
            };
            let operation = OpKind::from_name(&operation);
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            let code: String = conn.query_row("SELECT code FROM codes WHERE id = ?1", [code_id], |r| r.get(0))?;
            let results = match &response {
                Some(r) => rules::answered_results(r)?,
                None => current_results(conn, operation, code_id, &targets)?,
            };
            Ok(Some(StoredRequest {
                request_id,
                operation,
                code,
                requested_by,
                received_at: parse_stamp(&received_at)?,
                finished: finished_at.is_some(),
                pending: pending_of(conn, operation, code_id, &targets, request_id)?,
                results,
            }))
        })
        .await
    }

    async fn create_body(
        &self,
        campaign: String,
        code: String,
        upstream: String,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.with(move |conn| {
            let body: Option<String> = conn
                .prepare_cached(
                    "SELECT r.body FROM codes c
                       JOIN deliveries d ON d.code_id = c.id AND d.upstream = ?3
                       JOIN requests r ON r.id = d.request_id
                      WHERE c.campaign = ?1 AND c.code_key = ?2",
                )?
                .query_row(params![campaign, code_key(&code), upstream], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
        .await
    }

    async fn target_results(
        &self,
        op: OpKind,
        code_id: i64,
        targets: Vec<String>,
    ) -> Result<Vec<TargetResult>, StoreError> {
        self.with(move |conn| current_results(conn, op, code_id, &targets))
            .await
    }

    async fn unfinished_requests(&self) -> Result<Vec<Unfinished>, StoreError> {
        self.with(|conn| unfinished(conn, "finished_at IS NULL", [])).await
    }

    async fn code(&self, code: String, campaign: Option<String>) -> Result<Vec<CodeRecord>, StoreError> {
        self.with(move |conn| {
            let ids: Vec<i64> = {
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM codes WHERE code_key = ?1 AND (?2 IS NULL OR campaign = ?2) ORDER BY id",
                )?;
                let rows = stmt
                    .query_map(params![code_key(&code), campaign], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                rows
            };
            let mut out = Vec::new();
            for id in ids {
                out.extend(read_code(conn, id)?);
            }
            Ok(out)
        })
        .await
    }

    async fn code_id(&self, campaign: String, code: String) -> Result<Option<i64>, StoreError> {
        self.with(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id FROM codes WHERE campaign = ?1 AND code_key = ?2")?
                .query_row(params![campaign, code_key(&code)], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn codes(&self, filter: CodeFilter) -> Result<Vec<(i64, CodeRecord)>, StoreError> {
        self.with(move |conn| {
            let ids: Vec<i64> = {
                let mut stmt = conn.prepare_cached(
                    "SELECT c.id FROM codes c WHERE c.id > ?1 AND (?2 IS NULL OR c.campaign = ?2)
                       AND (?3 IS NULL AND ?4 IS NULL OR EXISTS (
                           SELECT 1 FROM deliveries d WHERE d.code_id = c.id
                              AND (?3 IS NULL OR d.upstream = ?3) AND (?4 IS NULL OR d.status = ?4)))
                     ORDER BY c.id LIMIT ?5",
                )?;
                let rows = stmt
                    .query_map(
                        params![
                            filter.after,
                            filter.campaign,
                            filter.upstream,
                            filter.status.map(status_name),
                            filter.limit as i64
                        ],
                        |r| r.get(0),
                    )?
                    .collect::<Result<_, _>>()?;
                rows
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(record) = read_code(conn, id)? {
                    out.push((id, record));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn begin_job(&self, job: NewJob) -> Result<i64, StoreError> {
        let owner = self.owner.clone();
        let lease_until = stamp(Utc::now() + self.lease);
        self.claim(move |conn| {
            conn.execute(
                "INSERT INTO jobs (state, campaign, targets, source, options, total, owner, lease_until, operation)
                 VALUES ('staging', ?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
                params![
                    job.campaign,
                    serde_json::to_string(&job.targets)?,
                    job.source,
                    job.options.to_string(),
                    &*owner,
                    lease_until,
                    job.operation.as_str()
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn stage(&self, job_id: i64, items: Vec<Definition>, check: StageAs) -> Result<Vec<Staged>, StoreError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || ledger.stage_items(job_id, items, check))
            .await
            .map_err(LedgerError::from)?
            .map_err(StoreError::from)
    }

    async fn stage_revokes(&self, job_id: i64, codes: Vec<String>) -> Result<Vec<Staged>, StoreError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || ledger.stage_revoke_items(job_id, codes))
            .await
            .map_err(LedgerError::from)?
            .map_err(StoreError::from)
    }

    async fn commit_job(&self, job_id: i64) -> Result<(), StoreError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || {
            // Accepted: from here the job is finished even across a crash (`recover_intakes`).
            ledger
                .lock()
                .execute("UPDATE jobs SET state = 'promoting' WHERE id = ?1", [job_id])?;
            ledger.commit(job_id)
        })
        .await
        .map_err(LedgerError::from)?
        .map_err(StoreError::from)
    }

    async fn discard_job(&self, job_id: i64) -> Result<(), StoreError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || ledger.discard_staged(job_id))
            .await
            .map_err(LedgerError::from)?
            .map_err(StoreError::from)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT state, campaign, targets, source, options, total, created_at, finished_at, operation
                       FROM jobs WHERE id = ?1 AND state IN ('running', 'done', 'cancelled')",
                    [id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, String>(6)?,
                            r.get::<_, Option<String>>(7)?,
                            r.get::<_, String>(8)?,
                        ))
                    },
                )
                .optional()?;
            let Some((state, campaign, targets, source, options, total, created_at, finished_at, operation)) = row
            else {
                return Ok(None);
            };
            Ok(Some(JobRecord {
                id,
                operation: OpKind::from_name(&operation),
                state: JobState::from_name(&state)
                    .ok_or_else(|| corrupt(format!("job {id} is in an unknown state `{state}`")))?,
                campaign,
                targets: serde_json::from_str(&targets)?,
                source,
                total: total as u64,
                created_at: parse_stamp(&created_at)?,
                finished_at: finished_at.as_deref().map(parse_stamp).transpose()?,
                options: serde_json::from_str(&options)?,
            }))
        })
        .await
    }

    async fn job_counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, StoreError> {
        self.with(move |conn| {
            let targets: String = conn.query_row("SELECT targets FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            let op = job_operation(conn, id)?;
            let mut out = BTreeMap::new();
            for t in targets {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT status, n FROM {} WHERE job_id = ?1 AND upstream = ?2 AND n > 0",
                    tally(op)
                ))?;
                let counts: BTreeMap<Status, u64> = stmt
                    .query_map(params![id, t], |r| {
                        Ok((parse_status(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<Result<_, _>>()?;
                out.insert(t, counts);
            }
            Ok(out)
        })
        .await
    }

    async fn job_work(
        &self,
        id: i64,
        upstream: String,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<JobWork>, StoreError> {
        let owner = self.owner.clone();
        self.with(move |conn| {
            let op = job_operation(conn, id)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT i.seq, i.code_id, c.definition, c.revoked_at IS NOT NULL FROM job_items i
                   JOIN {} d ON d.code_id = i.code_id AND d.upstream = ?2
                   JOIN codes c ON c.id = i.code_id
                  WHERE i.job_id = ?1 AND i.seq > ?3 AND d.status = 'pending' AND d.job_id = ?1
                    AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = ?1 AND j.owner = ?5 AND j.state = 'running')
                  ORDER BY i.seq LIMIT ?4",
                table(op)
            ))?;
            let rows: Vec<(i64, i64, String, bool)> = stmt
                .query_map(params![id, upstream, after_seq, limit as i64, &*owner], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(seq, code_id, definition, revoked)| {
                    let item = match op {
                        OpKind::Create => WorkItem::Create {
                            definition: serde_json::from_str::<serde_json::Value>(&definition)?,
                            revoked,
                        },
                        OpKind::Revoke => WorkItem::Revoke(Box::new(read_code(conn, code_id)?.ok_or_else(|| {
                            corrupt(format!("job {id} names code {code_id}, which is not in the ledger"))
                        })?)),
                    };
                    Ok(JobWork { seq, code_id, item })
                })
                .collect()
        })
        .await
    }

    async fn job_results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, StoreError> {
        self.with(move |conn| {
            let op = job_operation(conn, id)?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT i.seq, c.code, d.upstream, d.status, d.vendor_id, d.attempts, d.result, d.job_id
                   FROM job_items i
                   JOIN codes c ON c.id = i.code_id
                   JOIN {} d ON d.code_id = i.code_id
                   JOIN jobs j ON j.id = i.job_id
                  WHERE i.job_id = ?1 AND (i.seq, d.upstream) > (?2, ?6)
                    AND EXISTS (SELECT 1 FROM json_each(j.targets) t WHERE t.value = d.upstream)
                    AND (?3 IS NULL OR d.status = ?3) AND (?4 IS NULL OR d.upstream = ?4)
                  ORDER BY i.seq, d.upstream LIMIT ?5",
                table(op)
            ))?;
            type Row = (
                i64,
                String,
                String,
                String,
                Option<String>,
                u32,
                Option<String>,
                Option<i64>,
            );
            let rows: Vec<Row> = stmt
                .query_map(
                    params![id, after.0, status.map(status_name), upstream, limit as i64, after.1],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(
                    |(seq, code, upstream, status, vendor_id, attempts, result, claimed_by)| {
                        let result: Option<TargetResult> = result.map(|r| serde_json::from_str(&r)).transpose()?;
                        let line = JobResult::from_row(
                            seq,
                            code,
                            upstream,
                            parse_status(&status),
                            vendor_id,
                            attempts,
                            result,
                        );
                        Ok(match op {
                            OpKind::Create => line,
                            OpKind::Revoke => line.revoked_elsewhere(id, claimed_by),
                        })
                    },
                )
                .collect()
        })
        .await
    }

    async fn retry_job(&self, id: i64) -> Result<u64, StoreError> {
        let owner = self.owner.clone();
        let until = stamp(Utc::now() + self.lease);
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let op = job_operation(&tx, id)?;
            let reopened = match op {
                // A revoke has no other campaign's hold to respect: its code is its own.
                OpKind::Revoke => tx.execute(
                    &format!(
                        "UPDATE revocations SET status = 'pending', job_id = ?1, updated_at = {NOW}
                          WHERE status IN ('failed', 'throttled', 'cancelled')
                            AND upstream IN (SELECT value FROM json_each((SELECT targets FROM jobs WHERE id = ?1)))
                            AND code_id IN (SELECT code_id FROM job_items WHERE job_id = ?1)"
                    ),
                    [id],
                )?,
                OpKind::Create => {
                    explain_held_elsewhere(&tx, id)?;
                    tx.execute(
                        &format!(
                            "UPDATE deliveries SET status = 'pending', job_id = ?1, updated_at = {NOW}
                      WHERE status IN ('failed', 'throttled', 'cancelled')
                        AND upstream IN (SELECT value FROM json_each((SELECT targets FROM jobs WHERE id = ?1)))
                        AND code_id IN (SELECT code_id FROM job_items WHERE job_id = ?1)
                        -- Not where another campaign's code has reached the upstream since.
                        AND NOT EXISTS (
                            SELECT 1 FROM codes c
                              JOIN codes o ON o.code_key = c.code_key AND o.campaign <> c.campaign
                              JOIN deliveries od ON od.code_id = o.id AND od.upstream = deliveries.upstream
                             WHERE c.id = deliveries.code_id
                               AND od.status IN ('created', 'already_exists', 'pending'))
                        -- Nor where another campaign's job has staged it for the upstream.
                        AND NOT EXISTS (
                            SELECT 1 FROM codes c
                              JOIN job_stage s ON s.code_key = c.code_key AND s.campaign <> c.campaign
                              JOIN jobs sj ON sj.id = s.job_id
                             WHERE c.id = deliveries.code_id
                               AND deliveries.upstream IN (SELECT value FROM json_each(sj.targets)))"
                        ),
                        [id],
                    )?
                }
            };
            tx.execute(
                "UPDATE jobs SET state = 'running', finished_at = NULL, owner = ?2, lease_until = ?3 WHERE id = ?1",
                params![id, &*owner, until],
            )?;
            tx.commit()?;
            Ok(reopened as u64)
        })
        .await
    }

    async fn end_job(&self, id: i64, state: JobState) -> Result<bool, StoreError> {
        let me = self.owner.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let owner: Option<Option<String>> = tx
                .query_row(
                    "SELECT owner FROM jobs WHERE id = ?1 AND state = 'running'",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(owner) = owner else { return Ok(false) };
            if state == JobState::Done && owner.as_deref() != Some(&*me) {
                return Ok(false);
            }
            if state == JobState::Cancelled {
                tx.execute(
                    &format!(
                        "UPDATE {} SET status = 'cancelled', updated_at = {NOW}
                          WHERE status = 'pending' AND job_id = ?1",
                        table(job_operation(&tx, id)?)
                    ),
                    [id],
                )?;
            }
            tx.execute(
                &format!("UPDATE jobs SET state = ?1, finished_at = {NOW}, lease_until = NULL WHERE id = ?2"),
                params![state.as_str(), id],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn adopt(&self, now: DateTime<Utc>) -> Result<Adopted, StoreError> {
        let owner = self.owner.clone();
        let (now, until) = (stamp(now), stamp(now + self.lease));
        self.with(move |conn| {
            let tx = conn.transaction()?;
            // Free: another owner's, with no lease or one run out. This owner's own work is in
            // flight here, whatever its lease says (a renewal may have failed).
            const FREE: &str = "owner IS NOT ?2 AND (lease_until IS NULL OR lease_until <= ?1)";
            let requests: Vec<i64> = tx
                .prepare(&format!(
                    "UPDATE requests SET owner = ?2, lease_until = ?3 WHERE finished_at IS NULL AND {FREE} RETURNING id"
                ))?
                .query_map(params![now, &*owner, until], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut jobs: Vec<i64> = tx
                .prepare(&format!(
                    "UPDATE jobs SET owner = ?2, lease_until = ?3 WHERE state = 'running' AND {FREE} RETURNING id"
                ))?
                .query_map(params![now, &*owner, until], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            jobs.sort_unstable();
            let ids = serde_json::to_string(&requests)?;
            let creates = unfinished_in(&tx, &ids)?;
            tx.commit()?;
            Ok(Adopted { creates, jobs })
        })
        .await
    }

    async fn renew(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        let until = stamp(now + self.lease);
        self.with(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE requests SET lease_until = ?2 WHERE owner = ?1 AND finished_at IS NULL",
                params![&*owner, until],
            )?;
            tx.execute(
                "UPDATE jobs SET lease_until = ?2 WHERE owner = ?1 AND state IN ('staging', 'promoting', 'running')",
                params![&*owner, until],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn release(&self) -> Result<(), StoreError> {
        let owner = self.owner.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            // No owner, so that no renewal of this process's leases takes the work back.
            tx.execute(
                "UPDATE requests SET owner = NULL, lease_until = NULL WHERE owner = ?1 AND finished_at IS NULL",
                [&*owner],
            )?;
            tx.execute(
                "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE owner = ?1 AND state = 'running'",
                [&*owner],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
