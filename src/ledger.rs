//! The ledger: every code the gateway accepts and its delivery state on every target, written
//! *before* any upstream is called and updated as each answer arrives.
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
//!   (see [`Store::create_job`]), so other writers are never held out for long, yet a job either
//!   holds all its codes or none, and a restart continues it.
//!
//! [`Store`] is the interface the engine uses; [`Ledger`] is its SQLite implementation (one
//! file, one connection, calls on tokio's blocking pool). A PostgreSQL store for several
//! gateway replicas implements the same trait: nothing outside this file speaks SQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::delivery::{CreateResponse, ErrorKind, Status, TargetResult};
use crate::error::StartupError;

#[cfg(test)]
mod conformance;
mod space;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger could not be written: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the ledger's worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("the ledger holds a record it cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
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

/// A code as the ledger keys it: unique per campaign regardless of case, and immutable once
/// accepted (its definition is what every target was or will be sent).
#[derive(Debug, Clone)]
pub struct Definition {
    /// Empty when the code belongs to no campaign.
    pub campaign: String,
    pub code: String,
    /// The unified code without delivery instructions (targets, passthrough, on_unsupported),
    /// serialised with sorted keys so that equal definitions compare equal as text.
    pub json: String,
}

impl Definition {
    /// The instructions that say where and how to deliver, not what the code is.
    const DELIVERY_KEYS: [&'static str; 3] = ["targets", "passthrough", "on_unsupported"];

    pub fn of(body: &Value, campaign: Option<&str>, code: &str) -> Self {
        let mut def = body.clone();
        if let Some(obj) = def.as_object_mut() {
            for key in Self::DELIVERY_KEYS {
                obj.remove(key);
            }
        }
        Self {
            campaign: campaign.unwrap_or_default().to_owned(),
            code: code.to_owned(),
            json: def.to_string(),
        }
    }

    fn key(&self) -> String {
        code_key(&self.code)
    }
}

/// Codes are compared as vendors may compare them: without regard to case or Unicode
/// compatibility forms. The key has one home, in the unified model.
pub use promo_adapters::model::code_key;

pub use crate::domain::code::{CodeConflict, Holder};

/// What the ledger decided for one target of a create.
#[derive(Debug, Clone)]
pub enum Claim {
    /// Now `pending` under this create: call the vendor.
    Send,
    /// Settled without a call (the plan's result), recorded as such.
    Settled,
    /// Already `created` (or `already_exists`) by an earlier request or job: not called again.
    Done(Box<TargetResult>),
    /// Being delivered by another request or job right now.
    Elsewhere,
}

/// What the ledger says about a new create.
#[derive(Debug)]
pub enum Begin {
    /// Recorded; each target's claim says what to do.
    New {
        request_id: i64,
        code_id: i64,
        claims: Vec<Claim>,
    },
    /// Same key, same body, finished: the first answer.
    Replay(CreateResponse),
    /// Same key, same body, still running.
    InProgress(i64),
    /// Same key, another body.
    KeyReused(i64),
    /// The code clashes with one the ledger holds.
    Conflict(CodeConflict),
}

/// One target of a create as the engine planned it.
pub struct PlannedTarget {
    pub upstream: String,
    /// `Some` when settled without a call (unsupported, invalid, unconfigured).
    pub settled: Option<TargetResult>,
}

/// A create as `GET /v1/requests/{id}` shows it.
pub struct StoredRequest {
    pub request_id: i64,
    pub code: String,
    pub received_at: String,
    pub finished: bool,
    pub pending: Vec<String>,
    pub results: Vec<TargetResult>,
}

/// A create a crash interrupted.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub request_id: i64,
    pub code_id: i64,
    pub body: Value,
    pub targets: Vec<String>,
    /// Targets this create claimed that are still pending.
    pub pending: Vec<String>,
}

/// A code and its state on every target, as `GET /v1/promo-codes/{code}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeRecord {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    pub definition: Value,
    pub created_at: String,
    pub deliveries: BTreeMap<String, DeliveryRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    /// Calls made to the vendor for this code, over every request and job.
    pub attempts: u32,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TargetResult>,
    /// The sync job that last claimed this delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<i64>,
}

/// A filter for listing codes.
#[derive(Debug, Clone, Default)]
pub struct CodeFilter {
    pub campaign: Option<String>,
    pub upstream: Option<String>,
    pub status: Option<Status>,
    /// Codes after this ledger id.
    pub after: i64,
    pub limit: usize,
}

/// The state of a sync job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Cancelled,
}

/// A sync job's lasting description.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRecord {
    pub id: i64,
    pub state: JobState,
    pub campaign: String,
    pub targets: Vec<String>,
    /// Where its codes came from ("json", "csv", "ndjson", "generate", "mirror").
    pub source: String,
    pub total: u64,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Job options (on_unsupported) as given.
    #[serde(skip)]
    pub options: Value,
}

/// One code of a job, not yet settled on a target.
#[derive(Debug, Clone)]
pub struct JobWork {
    pub seq: i64,
    pub code_id: i64,
    pub definition: Value,
}

/// One line of a job's results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobResult {
    pub seq: i64,
    pub code: String,
    pub upstream: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::domain::delivery::TargetError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::domain::schema::WarningDoc>)]
    pub warnings: Vec<promo_adapters::Warning>,
}

/// Where a job's codes come from, as the store reads them inside its transaction.
pub enum JobCodes<'a> {
    /// Definitions, one per code, each already validated, with where the item is (`line 4`,
    /// `codes[3]`) for problems; an `Err` is an item that failed.
    Items(Box<dyn Iterator<Item = (String, Result<Definition, String>)> + Send + 'a>),
    /// `count` fresh codes from `next`, each unique against the ledger (drawn again on a clash).
    Generate {
        count: u64,
        /// How many distinct codes the pattern can make, for the message when it runs dry.
        capacity: u64,
        next: Box<dyn FnMut() -> Definition + Send + 'a>,
    },
    /// Every code the ledger holds for this campaign.
    Mirror { campaign: String },
}

/// A job refused at intake; nothing was written.
#[derive(Debug)]
pub enum JobRefused {
    /// Items at fault, each (where, problem) (at most [`MAX_REPORTED`]), and how many in all.
    Items {
        problems: Vec<(String, String)>,
        count: usize,
    },
    Ledger(LedgerError),
}

/// Problems listed in a refused job; the count says how many there were in all.
pub const MAX_REPORTED: usize = 20;

impl From<LedgerError> for JobRefused {
    fn from(e: LedgerError) -> Self {
        JobRefused::Ledger(e)
    }
}

impl From<rusqlite::Error> for JobRefused {
    fn from(e: rusqlite::Error) -> Self {
        JobRefused::Ledger(e.into())
    }
}

/// The interface between the engine and its durable state.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Why the ledger cannot record new work now (a full disk, a read-only file, outcomes held
    /// in memory), for `/health`; `None` while it can.
    fn problem(&self) -> Option<String>;

    /// Records a create and claims its targets, before any call. `now` dates the idempotency
    /// key, which expires `key_window` later.
    async fn begin_create(
        &self,
        key: Option<String>,
        body: Value,
        definition: Definition,
        targets: Vec<PlannedTarget>,
        now: DateTime<Utc>,
        key_window: chrono::Duration,
    ) -> Result<Begin, LedgerError>;

    /// Records the outcomes of deliveries, each `(code_id, result)`, in one transaction.
    async fn record(&self, outcomes: Vec<(i64, TargetResult)>) -> Result<(), LedgerError>;

    /// Stores a create's answer, which an idempotent repeat replays, together with the
    /// outcomes not yet recorded (the last target's, which arrives with the answer: one
    /// transaction instead of two), atomically.
    async fn finish_request(
        &self,
        request_id: i64,
        response: &CreateResponse,
        outcomes: Vec<(i64, TargetResult)>,
    ) -> Result<(), LedgerError>;

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, LedgerError>;

    /// The current state of a code's targets, in the order given.
    async fn delivery_results(&self, code_id: i64, targets: Vec<String>) -> Result<Vec<TargetResult>, LedgerError>;

    /// Creates a crash interrupted. Read at start-up, before serving.
    fn unfinished_requests(&self) -> Result<Vec<Unfinished>, LedgerError>;

    /// Codes by case-insensitive name, in every campaign that holds one.
    async fn code(&self, code: String, campaign: Option<String>) -> Result<Vec<CodeRecord>, LedgerError>;

    /// Codes matching a filter, by ledger id; each with the id to continue after.
    async fn codes(&self, filter: CodeFilter) -> Result<Vec<(i64, CodeRecord)>, LedgerError>;

    /// Writes a job and all its codes, claiming (`pending`) every target a code is not yet on:
    /// a job is accepted whole or not at all. An item whose code another campaign holds at one
    /// of the targets is refused like any other clash.
    ///
    /// Intake never holds the ledger for more than a slice ([`INTAKE_SLICE`] items or
    /// [`INTAKE_SLICE_TIME`]), so creates and other jobs' outcomes are written in between. It
    /// runs in two phases. *Staging* checks each item and writes it to `job_stage` under a job
    /// in state `staging`; a staged code is a reservation that creates and other jobs respect
    /// as if the job held it (a clash with it is a conflict), and nothing else is changed, so a
    /// refused job only has its staged rows deleted. Once every item passed, the job is
    /// accepted (`promoting`) and its staged rows become codes, claims and job items, slice by
    /// slice; the last slice sets it `running`. A crash while staging leaves a job that the next
    /// start deletes; a crash while promoting, one that the next start finishes promoting.
    fn create_job(
        &self,
        campaign: &str,
        targets: &[String],
        source: &str,
        options: Value,
        codes: JobCodes<'_>,
    ) -> Result<i64, JobRefused>;

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, LedgerError>;

    /// Jobs to resume at start-up.
    fn running_jobs(&self) -> Result<Vec<i64>, LedgerError>;

    /// Per target, how many of the job's codes are in each state.
    async fn job_counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, LedgerError>;

    /// The next `limit` of the job's codes still pending on `upstream` under this job's claim,
    /// after `after_seq`. A delivery another create or job has claimed is theirs to send.
    async fn job_work(
        &self,
        id: i64,
        upstream: String,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<JobWork>, LedgerError>;

    async fn job_results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, LedgerError>;

    /// Sets the job running again with its failed, throttled and cancelled deliveries pending
    /// (except where another campaign's code has reached that upstream since, which stay as
    /// they are); how many deliveries it reopened.
    async fn retry_job(&self, id: i64) -> Result<u64, LedgerError>;

    /// Ends a job: `Done`, or `Cancelled` with its still pending deliveries marked cancelled.
    async fn end_job(&self, id: i64, state: JobState) -> Result<(), LedgerError>;
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct Ledger {
    /// One connection, one writer at a time. `parking_lot`'s mutex, because a job's intake
    /// hands it over fairly between slices (`unlock_fair`): a waiting create gets the ledger
    /// next instead of the intake taking it straight back.
    conn: Arc<Mutex<Connection>>,
    space: Arc<space::Space>,
}

/// The room [`Ledger::open`] keeps beside the ledger for outcomes when the disk fills
/// (`ledger.reserve_bytes`).
pub const DEFAULT_RESERVE_BYTES: u64 = 1024 * 1024;

/// One schema migration: SQL, or a step that needs the gateway's own code.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Items a job's intake writes per transaction, at most...
pub const INTAKE_SLICE: usize = 256;
/// ...and the longest it holds the ledger for one slice; other writers go in between.
pub const INTAKE_SLICE_TIME: Duration = Duration::from_millis(20);

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[Migration] = &[
    // 1: codes with their deliveries, creates with their idempotency keys, sync jobs.
    Migration::Sql(
        "
CREATE TABLE codes (
    id         INTEGER PRIMARY KEY,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (campaign, code_key)
);
CREATE TABLE deliveries (
    code_id    INTEGER NOT NULL REFERENCES codes(id),
    upstream   TEXT NOT NULL,
    status     TEXT NOT NULL,
    vendor_id  TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    result     TEXT,
    job_id     INTEGER,
    request_id INTEGER,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (code_id, upstream)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_status ON deliveries(upstream, status);
CREATE TABLE requests (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    key_expires_at  TEXT,
    body            TEXT NOT NULL,
    code_id         INTEGER NOT NULL REFERENCES codes(id),
    targets         TEXT NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at     TEXT,
    response        TEXT
);
CREATE INDEX requests_unfinished ON requests(id) WHERE finished_at IS NULL;
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    state       TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    targets     TEXT NOT NULL,
    source      TEXT NOT NULL,
    options     TEXT NOT NULL,
    total       INTEGER NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT
);
CREATE TABLE job_items (
    job_id  INTEGER NOT NULL REFERENCES jobs(id),
    seq     INTEGER NOT NULL,
    code_id INTEGER NOT NULL REFERENCES codes(id),
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX job_items_code ON job_items(job_id, code_id);
CREATE INDEX job_items_by_code ON job_items(code_id);
",
    ),
    // 2: a code's holders in every campaign, for the check that one upstream holds a code for
    // one campaign only.
    Migration::Sql("CREATE INDEX codes_by_key ON codes(code_key);"),
    // 3: a running tally of each job's deliveries by target and status, so that a job's
    // progress (polled by clients, the CLI's bars and /metrics) costs a few rows instead of a
    // join over every code of the job. `create_job` counts a new job's deliveries once; from
    // then on the trigger moves a delivery from its old status to its new one in every job
    // that counts it (a code can be in several jobs: a retry, a mirror). A job counts a
    // delivery exactly when it has a row for the delivery's target and old status: rows are
    // never deleted, only brought to 0. (No `OR IGNORE` in the trigger: the upsert that fires
    // it would override that conflict clause with its own.)
    Migration::Sql(
        "
CREATE TABLE job_tally (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    upstream TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (job_id, upstream, status)
) WITHOUT ROWID;
INSERT INTO job_tally (job_id, upstream, status, n)
    SELECT i.job_id, d.upstream, d.status, COUNT(*)
      FROM job_items i JOIN jobs j ON j.id = i.job_id JOIN deliveries d ON d.code_id = i.code_id
     WHERE d.upstream IN (SELECT value FROM json_each(j.targets))
     GROUP BY i.job_id, d.upstream, d.status;
CREATE TRIGGER deliveries_tally AFTER UPDATE OF status ON deliveries
WHEN old.status IS NOT new.status
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, new.upstream, new.status, 0 FROM job_tally t
         WHERE t.upstream = old.upstream AND t.status = old.status
           AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id)
           AND NOT EXISTS (SELECT 1 FROM job_tally x
                            WHERE x.job_id = t.job_id AND x.upstream = new.upstream AND x.status = new.status);
    UPDATE job_tally SET n = n + 1
     WHERE upstream = new.upstream AND status = new.status
       AND job_id IN (SELECT t.job_id FROM job_tally t
                       WHERE t.upstream = old.upstream AND t.status = old.status
                         AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id));
    UPDATE job_tally SET n = n - 1
     WHERE upstream = old.upstream AND status = old.status
       AND job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id);
END;
",
    ),
    // 4: codes are keyed by NFKC and case folding (`promo_adapters::model::code_key`) instead
    // of upper case, so that compatibility forms clash like case variants do.
    Migration::Rust(rekey_codes),
    // 5: a job's items while its intake runs (see `Store::create_job`): checked and staged in
    // short slices, then promoted to codes and claims. A staged code is a reservation: creates
    // and other jobs look it up by key.
    Migration::Sql(
        "
CREATE TABLE job_stage (
    job_id     INTEGER NOT NULL REFERENCES jobs(id),
    seq        INTEGER NOT NULL,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX job_stage_code ON job_stage(job_id, code_key);
CREATE INDEX job_stage_by_key ON job_stage(code_key);
",
    ),
];

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A timestamp in the ledger's text form, which sorts as time does.
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
        Self::open_with_reserve(path, DEFAULT_RESERVE_BYTES)
    }

    /// [`Ledger::open`], keeping `reserve_bytes` of room for outcomes (0: none).
    pub fn open_with_reserve(path: &Path, reserve_bytes: u64) -> Result<Self, StartupError> {
        let fail = |e: rusqlite::Error| StartupError::Ledger {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(path).map_err(fail)?;
        // A busy timeout (set first: switching to WAL takes a lock too) rides out a second
        // process (the CLI beside a server) holding the file briefly; WAL keeps readers from
        // blocking the writer.
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(fail)?;
        migrate(&mut conn).map_err(fail)?;
        let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)?;
        let ledger = Self {
            conn: Arc::new(Mutex::new(conn)),
            space: Arc::new(space::Space::new(path, reserve_bytes, read_only)),
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

    /// Jobs a crash stopped mid-intake: one still staging was never accepted, and goes (with
    /// its staged rows); one accepted and promoting is finished, so no half job is left.
    fn recover_intakes(&self) -> Result<(), LedgerError> {
        let (staging, promoting): (Vec<i64>, Vec<i64>) = {
            let conn = self.lock();
            let ids = |state: &str| -> rusqlite::Result<Vec<i64>> {
                conn.prepare("SELECT id FROM jobs WHERE state = ?1 ORDER BY id")?
                    .query_map([state], |r| r.get(0))?
                    .collect()
            };
            (ids("staging")?, ids("promoting")?)
        };
        for id in staging {
            tracing::warn!(
                job = id,
                "removing a sync job whose intake a stop cut short; it was never accepted"
            );
            self.discard_staged(id)?;
        }
        for id in promoting {
            tracing::info!(job = id, "finishing the intake of an accepted sync job");
            self.promote(id)?;
        }
        Ok(())
    }

    /// Deletes a job that was not accepted and its staged rows, a slice at a time.
    fn discard_staged(&self, job_id: i64) -> Result<(), LedgerError> {
        loop {
            let conn = self.lock();
            let n = conn
                .prepare_cached(
                    "DELETE FROM job_stage WHERE job_id = ?1 AND seq IN
                        (SELECT seq FROM job_stage WHERE job_id = ?1 ORDER BY seq LIMIT ?2)",
                )?
                .execute(params![job_id, (INTAKE_SLICE * 8) as i64])?;
            if n == 0 {
                conn.execute("DELETE FROM jobs WHERE id = ?1", [job_id])?;
                return Ok(());
            }
            MutexGuard::unlock_fair(conn);
        }
    }

    /// Stages a job's items (phase one of [`Store::create_job`]): each checked against the
    /// ledger, the other jobs' staged codes and the job's earlier items, and kept in
    /// `job_stage`. Refuses the job if any item is at fault (listing the first
    /// [`MAX_REPORTED`]); writes nothing outside `job_stage`.
    fn stage(&self, job_id: i64, targets: &[String], codes: JobCodes<'_>) -> Result<(), JobRefused> {
        let mut problems = Vec::new();
        let mut count = 0usize;
        let mut seq: i64 = 0;
        let mut refuse = |at: String, problem: String| {
            count += 1;
            if problems.len() < MAX_REPORTED {
                problems.push((at, problem));
            }
        };
        match codes {
            JobCodes::Items(mut items) => loop {
                // Read and validated before taking the ledger: only the checks below hold it.
                let slice: Vec<_> = items.by_ref().take(INTAKE_SLICE).collect();
                if slice.is_empty() {
                    break;
                }
                let mut slice = slice.into_iter().peekable();
                while slice.peek().is_some() {
                    let mut conn = self.lock();
                    let tx = conn.transaction()?;
                    let began = Instant::now();
                    while began.elapsed() < INTAKE_SLICE_TIME {
                        let Some((at, item)) = slice.next() else { break };
                        let def = match item {
                            Ok(def) => def,
                            Err(problem) => {
                                refuse(at, problem);
                                continue;
                            }
                        };
                        match stage_check(&tx, job_id, &def, targets)? {
                            Some(conflict) => refuse(at, format!("code: {conflict}")),
                            None => {
                                seq += 1;
                                stage_row(&tx, job_id, seq, &def)?;
                            }
                        }
                    }
                    tx.commit()?;
                    MutexGuard::unlock_fair(conn);
                }
            },
            JobCodes::Generate {
                count: wanted,
                capacity,
                mut next,
            } => {
                while (seq as u64) < wanted {
                    let mut conn = self.lock();
                    let tx = conn.transaction()?;
                    let began = Instant::now();
                    let mut n = 0;
                    while (seq as u64) < wanted && n < INTAKE_SLICE && began.elapsed() < INTAKE_SLICE_TIME {
                        let mut tries = 0;
                        let def = loop {
                            let def = next();
                            if is_free(&tx, &def, targets)? {
                                break def;
                            }
                            tries += 1;
                            if tries == 100 {
                                return Err(JobRefused::Items {
                                    problems: vec![(
                                        "generate.pattern".into(),
                                        format!(
                                            "drew 100 taken codes in a row after {seq} new ones: the pattern makes {capacity} codes, and too few of them are free for {wanted}"
                                        ),
                                    )],
                                    count: 1,
                                });
                            }
                        };
                        seq += 1;
                        n += 1;
                        stage_row(&tx, job_id, seq, &def)?;
                    }
                    tx.commit()?;
                    MutexGuard::unlock_fair(conn);
                }
            }
            JobCodes::Mirror { campaign: from } => {
                let mut after = 0i64;
                loop {
                    let mut conn = self.lock();
                    let tx = conn.transaction()?;
                    let rows: Vec<(i64, String, String)> = tx
                        .prepare_cached(
                            "SELECT id, code, definition FROM codes WHERE campaign = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                        )?
                        .query_map(params![from, after, INTAKE_SLICE as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })?
                        .collect::<Result<_, _>>()?;
                    let Some(last) = rows.last() else { break };
                    after = last.0;
                    for (_, code, json) in rows {
                        let def = Definition {
                            campaign: from.clone(),
                            code,
                            json,
                        };
                        if let Some(conflict) = held_elsewhere(&tx, &from, &def.key(), targets)? {
                            refuse("codes".into(), format!("code: {conflict}"));
                            continue;
                        }
                        seq += 1;
                        stage_row(&tx, job_id, seq, &def)?;
                    }
                    tx.commit()?;
                    MutexGuard::unlock_fair(conn);
                }
            }
        }
        if count == 0 && seq == 0 {
            return Err(JobRefused::Items {
                problems: vec![(
                    "codes".into(),
                    "a job needs at least one code, and none was given".into(),
                )],
                count: 1,
            });
        }
        if count > 0 {
            return Err(JobRefused::Items { problems, count });
        }
        Ok(())
    }

    /// Phase two of [`Store::create_job`]: turns an accepted job's staged rows into codes,
    /// claims (`pending` where a code is not yet on a target or being sent) and job items, a
    /// slice at a time, keeping the job's tally as it goes; the last slice sets it `running`.
    fn promote(&self, job_id: i64) -> Result<(), LedgerError> {
        let targets_json: String = self
            .lock()
            .query_row("SELECT targets FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
        let targets: Vec<String> = serde_json::from_str(&targets_json)?;
        loop {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let rows: Vec<(i64, Definition)> = tx
                .prepare_cached(
                    "SELECT seq, campaign, code, definition FROM job_stage WHERE job_id = ?1 ORDER BY seq LIMIT ?2",
                )?
                .query_map(params![job_id, INTAKE_SLICE as i64], |r| {
                    Ok((
                        r.get(0)?,
                        Definition {
                            campaign: r.get(1)?,
                            code: r.get(2)?,
                            json: r.get(3)?,
                        },
                    ))
                })?
                .collect::<Result<_, _>>()?;
            let Some(&(first, _)) = rows.first() else {
                tx.execute("UPDATE jobs SET state = 'running' WHERE id = ?1", [job_id])?;
                tx.commit()?;
                return Ok(());
            };
            let mut last = first;
            let mut added = 0i64;
            let began = Instant::now();
            for (seq, def) in rows {
                if seq != first && began.elapsed() >= INTAKE_SLICE_TIME {
                    break;
                }
                last = seq;
                // Staging reserved the code, so a clash here means a writer ignored the
                // reservation; the item is left out rather than the accepted job half written.
                let code_id = match find_or_add_code(&tx, &def)? {
                    Ok(id) => id,
                    Err(conflict) => {
                        tracing::error!(job = job_id, code = def.code, "left out of the job: {conflict}");
                        continue;
                    }
                };
                if let Some(conflict) = held_elsewhere(&tx, &def.campaign, &def.key(), &targets)? {
                    tracing::error!(job = job_id, code = def.code, "left out of the job: {conflict}");
                    continue;
                }
                // Claims first, the job item after: the tally's trigger must not count this
                // code for the job before the slice's tally below does.
                for t in &targets {
                    match delivery(&tx, code_id, t)? {
                        Some((status, _)) if is_final(status) || status == Status::Pending => {}
                        _ => put_delivery(&tx, code_id, t, None, None, Some(job_id))?,
                    }
                }
                tx.prepare_cached("INSERT INTO job_items (job_id, seq, code_id) VALUES (?1, ?2, ?3)")?
                    .execute(params![job_id, seq, code_id])?;
                added += 1;
            }
            tx.prepare_cached("DELETE FROM job_stage WHERE job_id = ?1 AND seq BETWEEN ?2 AND ?3")?
                .execute(params![job_id, first, last])?;
            // The slice's deliveries join the job's tally (see migration 3); the trigger keeps
            // them from now on.
            tx.prepare_cached(
                "INSERT INTO job_tally (job_id, upstream, status, n)
                     SELECT ?1, d.upstream, d.status, COUNT(*) FROM job_items i JOIN deliveries d ON d.code_id = i.code_id
                      WHERE i.job_id = ?1 AND i.seq BETWEEN ?3 AND ?4 AND d.upstream IN (SELECT value FROM json_each(?2))
                      GROUP BY d.upstream, d.status
                 ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![job_id, targets_json, first, last])?;
            tx.prepare_cached("UPDATE jobs SET total = total + ?1 WHERE id = ?2")?
                .execute(params![added, job_id])?;
            tx.commit()?;
            MutexGuard::unlock_fair(conn);
        }
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            f(&mut conn)
        })
        .await?
    }

    /// Writes new work (a claim): only while the ledger can also record its outcomes.
    async fn claim<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let space = self.space.clone();
        self.with(move |conn| {
            space.ready_for_claim(conn)?;
            let result = f(conn);
            space.observe(&result);
            result
        })
        .await
    }

    /// Writes outcomes of calls made: into the reserve's room on a full disk, or held in memory.
    async fn outcome(&self, write: space::HeldWrite) -> Result<(), LedgerError> {
        let space = self.space.clone();
        self.with(move |conn| space.write_outcome(conn, write)).await
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    if version == 0 {
        // A ledger from before versioned migrations kept creates in `requests`/`deliveries`
        // of another shape; they are kept aside, not dropped.
        let old: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests')",
            [],
            |r| r.get(0),
        )?;
        if old {
            tx.execute_batch(
                "ALTER TABLE requests RENAME TO v0_requests; ALTER TABLE deliveries RENAME TO v0_deliveries;
                 DROP INDEX IF EXISTS deliveries_pending;",
            )?;
        }
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Rust(step) => step(&tx)?,
        }
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()
}

/// Recomputes every code's key with [`code_key`]. Every key is first moved out of the way (a
/// new key may equal another row's old one), then set. Two codes of one campaign that were
/// distinct before but fold alike now (`KEY` and `\u{212A}EY`) cannot share the unique key: the
/// later keeps a key no request can produce (the fold, a NUL, its id), so it stays readable by
/// id and in listings, while the earlier one answers for the key, and a request for either
/// spelling clashes with it. Each such pair is logged.
fn rekey_codes(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String, String)> = {
        let mut stmt = tx.prepare("SELECT id, campaign, code FROM codes ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    tx.execute("UPDATE codes SET code_key = char(1) || id", [])?;
    let mut taken: std::collections::HashMap<(String, String), String> = std::collections::HashMap::new();
    let mut update = tx.prepare("UPDATE codes SET code_key = ?1 WHERE id = ?2")?;
    for (id, campaign, code) in rows {
        let key = code_key(&code);
        let key = match taken.get(&(campaign.clone(), key.clone())) {
            Some(first) => {
                tracing::warn!(
                    campaign = %campaign, code = %code, clashes_with = %first,
                    "two codes of one campaign fold to one key; the later keeps a key of its own"
                );
                format!("{key}\u{0}{id}")
            }
            None => {
                taken.insert((campaign, key.clone()), code);
                key
            }
        };
        update.execute(params![key, id])?;
    }
    Ok(())
}

/// Finds a code in its campaign, or adds it. Once a vendor holds the code (or a delivery of it
/// is under way), another case or another definition of it is a conflict; a code no vendor
/// holds (every target refused it) is simply redefined.
fn find_or_add_code(tx: &Transaction<'_>, def: &Definition) -> Result<Result<i64, CodeConflict>, rusqlite::Error> {
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached("SELECT id, code, definition FROM codes WHERE campaign = ?1 AND code_key = ?2")?
        .query_row(params![def.campaign, def.key()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((id, code, definition)) = existing else {
        tx.prepare_cached("INSERT INTO codes (campaign, code, code_key, definition) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![def.campaign, def.code, def.key(), def.json])?;
        return Ok(Ok(tx.last_insert_rowid()));
    };
    if code == def.code && definition == def.json {
        return Ok(Ok(id));
    }
    if is_held(tx, id)? {
        return Ok(Err(if code != def.code {
            CodeConflict::OtherCase { existing: code }
        } else {
            CodeConflict::Redefined { existing: code }
        }));
    }
    tx.prepare_cached("UPDATE codes SET code = ?1, definition = ?2 WHERE id = ?3")?
        .execute(params![def.code, def.json, id])?;
    Ok(Ok(id))
}

/// A job's staged code (see [`Store::create_job`]) of the same campaign as `def`, in another
/// case or with another definition: a reservation that `def` cannot share, as it could not share
/// the code once the job holds it. `job_id` is the job asking, whose own items are checked
/// apart (as repeats).
fn staged_conflict(tx: &Connection, def: &Definition, job_id: Option<i64>) -> rusqlite::Result<Option<CodeConflict>> {
    let staged: Option<(String, String)> = tx
        .prepare_cached(
            "SELECT code, definition FROM job_stage
              WHERE code_key = ?1 AND campaign = ?2 AND job_id IS NOT ?3
                AND (code <> ?4 OR definition <> ?5) LIMIT 1",
        )?
        .query_row(params![def.key(), def.campaign, job_id, def.code, def.json], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(staged.map(|(code, _)| {
        if code != def.code {
            CodeConflict::OtherCase { existing: code }
        } else {
            CodeConflict::Redefined { existing: code }
        }
    }))
}

/// Whether an item of job `job_id` can be staged: not a repeat of one of its earlier items,
/// and no clash with the ledger's codes or another job's staged ones (the checks
/// [`find_or_add_code`] and [`held_elsewhere`] make when it is promoted, without writing).
fn stage_check(
    tx: &Connection,
    job_id: i64,
    def: &Definition,
    targets: &[String],
) -> Result<Option<CodeConflict>, LedgerError> {
    let earlier: Option<String> = tx
        .prepare_cached("SELECT code FROM job_stage WHERE job_id = ?1 AND code_key = ?2")?
        .query_row(params![job_id, def.key()], |r| r.get(0))
        .optional()?;
    if let Some(existing) = earlier {
        return Ok(Some(CodeConflict::Repeated { existing }));
    }
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached("SELECT id, code, definition FROM codes WHERE campaign = ?1 AND code_key = ?2")?
        .query_row(params![def.campaign, def.key()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    if let Some((id, code, definition)) = existing {
        if (code != def.code || definition != def.json) && is_held(tx, id)? {
            return Ok(Some(if code != def.code {
                CodeConflict::OtherCase { existing: code }
            } else {
                CodeConflict::Redefined { existing: code }
            }));
        }
    }
    if let Some(conflict) = staged_conflict(tx, def, Some(job_id))? {
        return Ok(Some(conflict));
    }
    Ok(held_elsewhere(tx, &def.campaign, &def.key(), targets)?)
}

/// Whether a generated code is free: no code of that name in the campaign (held or not), none
/// staged by any job, and none of another campaign at the targets.
fn is_free(tx: &Connection, def: &Definition, targets: &[String]) -> Result<bool, LedgerError> {
    let taken: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM codes WHERE campaign = ?1 AND code_key = ?2)
                 OR EXISTS (SELECT 1 FROM job_stage WHERE code_key = ?2 AND campaign = ?1)",
        )?
        .query_row(params![def.campaign, def.key()], |r| r.get(0))?;
    Ok(!taken && held_elsewhere(tx, &def.campaign, &def.key(), targets)?.is_none())
}

fn stage_row(tx: &Connection, job_id: i64, seq: i64, def: &Definition) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_stage (job_id, seq, campaign, code, code_key, definition) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![job_id, seq, def.campaign, def.code, def.key(), def.json])?;
    Ok(())
}

/// Whether a code is delivered or being delivered at any target.
fn is_held(tx: &Connection, code_id: i64) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE code_id = ?1
                          AND status IN ('created', 'already_exists', 'pending'))",
    )?
    .query_row([code_id], |r| r.get(0))
}

/// Other campaigns' holds on a code at any of `targets`: each code of another campaign (or of
/// none) with the same key that is delivered or being delivered there. A vendor keeps one code
/// per name, so another campaign's code there would be answered "already exists" with that
/// campaign's discount. Read inside the transaction that claims the targets, so two creates
/// cannot both pass it.
fn held_elsewhere(
    tx: &Connection,
    campaign: &str,
    key: &str,
    targets: &[String],
) -> rusqlite::Result<Option<CodeConflict>> {
    // A code another job has staged (see `Store::create_job`) is held at that job's targets.
    let mut stmt = tx.prepare_cached(
        "SELECT campaign, code, upstream FROM (
            SELECT c.campaign, c.code, d.upstream, c.id AS ord FROM codes c JOIN deliveries d ON d.code_id = c.id
             WHERE c.code_key = ?1 AND c.campaign <> ?2 AND d.status IN ('created', 'already_exists', 'pending')
            UNION ALL
            SELECT s.campaign, s.code, t.value, -s.job_id FROM job_stage s JOIN jobs j ON j.id = s.job_id, json_each(j.targets) t
             WHERE s.code_key = ?1 AND s.campaign <> ?2)
          ORDER BY campaign, ord, upstream",
    )?;
    let rows = stmt.query_map(params![key, campaign], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut held_by: Vec<Holder> = Vec::new();
    for row in rows {
        let (campaign, code, upstream) = row?;
        if !targets.contains(&upstream) {
            continue;
        }
        let campaign = (!campaign.is_empty()).then_some(campaign);
        match held_by.last_mut() {
            Some(h) if h.campaign == campaign && h.code == code => h.upstreams.push(upstream),
            _ => held_by.push(Holder {
                campaign,
                code,
                upstreams: vec![upstream],
            }),
        }
    }
    Ok((!held_by.is_empty()).then_some(CodeConflict::OtherCampaign { held_by }))
}

/// The state of one delivery, if the ledger has it.
fn delivery(tx: &Connection, code_id: i64, upstream: &str) -> rusqlite::Result<Option<(Status, Option<String>)>> {
    tx.prepare_cached("SELECT status, result FROM deliveries WHERE code_id = ?1 AND upstream = ?2")?
        .query_row(params![code_id, upstream], |r| {
            Ok((parse_status(&r.get::<_, String>(0)?), r.get(1)?))
        })
        .optional()
}

/// Claims a delivery for a caller (a create or a job): `pending`, or settled as given.
fn put_delivery(
    tx: &Connection,
    code_id: i64,
    upstream: &str,
    settled: Option<&TargetResult>,
    request_id: Option<i64>,
    job_id: Option<i64>,
) -> Result<(), LedgerError> {
    let (status, result, attempts) = match settled {
        Some(r) => (status_name(r.status), Some(serde_json::to_string(r)?), r.attempts),
        None => ("pending", None, 0),
    };
    tx.prepare_cached(&format!(
        "INSERT INTO deliveries (code_id, upstream, status, result, attempts, request_id, job_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (code_id, upstream) DO UPDATE SET status = ?3, result = ?4, attempts = attempts + ?5,
             request_id = ?6, job_id = ?7, vendor_id = NULL, updated_at = {NOW}"
    ))?
    .execute(params![code_id, upstream, status, result, attempts, request_id, job_id])?;
    Ok(())
}

/// Gives the job's deliveries that a retry will not reopen, because another campaign's code of
/// the same name has reached that upstream since they failed, an error that says so: without
/// it they would keep their old error and a retry would silently pass them over. Their status
/// stays as it was (the code is not on the vendor for this campaign).
fn explain_held_elsewhere(tx: &Connection, job_id: i64) -> Result<(), LedgerError> {
    let held: Vec<(i64, String, String, Option<String>, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT d.code_id, d.upstream, d.status, d.result, o.campaign, o.code
               FROM deliveries d
               JOIN codes c ON c.id = d.code_id
               JOIN codes o ON o.code_key = c.code_key AND o.campaign <> c.campaign
               JOIN deliveries od ON od.code_id = o.id AND od.upstream = d.upstream
              WHERE d.status IN ('failed', 'throttled', 'cancelled')
                AND d.upstream IN (SELECT value FROM json_each((SELECT targets FROM jobs WHERE id = ?1)))
                AND d.code_id IN (SELECT code_id FROM job_items WHERE job_id = ?1)
                AND od.status IN ('created', 'already_exists', 'pending')",
        )?;
        let rows = stmt
            .query_map([job_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?
            .collect::<Result<_, _>>()?;
        rows
    };
    for (code_id, upstream, status, result, campaign, code) in held {
        let previous: Option<TargetResult> = result.as_deref().map(serde_json::from_str).transpose()?;
        let held_by = if campaign.is_empty() {
            format!("`{code}` (of no campaign)")
        } else {
            format!("`{code}` of campaign `{campaign}`")
        };
        let explained = previous
            .unwrap_or_else(|| TargetResult::new(&upstream, None, parse_status(&status)))
            .with_error(
                ErrorKind::CodeConflict,
                format!(
                    "not sent again: {held_by} has reached {upstream} since this delivery failed, and a vendor keeps one code per name whatever the case"
                ),
            );
        tx.prepare_cached(&format!(
            "UPDATE deliveries SET result = ?1, updated_at = {NOW} WHERE code_id = ?2 AND upstream = ?3"
        ))?
        .execute(params![serde_json::to_string(&explained)?, code_id, upstream])?;
    }
    Ok(())
}

/// Writes the outcomes of deliveries (each `(code_id, result)`) into their rows.
fn record_outcomes(tx: &Connection, outcomes: &[(i64, TargetResult)]) -> Result<(), LedgerError> {
    for (code_id, result) in outcomes {
        tx.prepare_cached(&format!(
            "UPDATE deliveries SET status = ?1, vendor_id = ?2, attempts = attempts + ?3, result = ?4,
                 updated_at = {NOW} WHERE code_id = ?5 AND upstream = ?6"
        ))?
        .execute(params![
            status_name(result.status),
            result.vendor_id,
            result.attempts,
            serde_json::to_string(result)?,
            code_id,
            result.upstream
        ])?;
    }
    Ok(())
}

/// Whether a delivery in this state is settled for good: never sent again.
fn is_final(status: Status) -> bool {
    matches!(status, Status::Created | Status::AlreadyExists)
}

fn read_code(conn: &Connection, id: i64) -> Result<Option<CodeRecord>, LedgerError> {
    let row: Option<(String, String, String, String)> = conn
        .prepare_cached("SELECT campaign, code, definition, created_at FROM codes WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((campaign, code, definition, created_at)) = row else {
        return Ok(None);
    };
    let mut deliveries = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT upstream, status, vendor_id, attempts, updated_at, result, job_id FROM deliveries WHERE code_id = ?1",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<i64>>(6)?,
        ))
    })?;
    for row in rows {
        let (upstream, status, vendor_id, attempts, updated_at, result, job_id) = row?;
        let result: Option<TargetResult> = result.map(|r| serde_json::from_str(&r)).transpose()?;
        deliveries.insert(
            upstream,
            DeliveryRecord {
                status: parse_status(&status),
                vendor_id,
                attempts,
                updated_at,
                result,
                job_id,
            },
        );
    }
    Ok(Some(CodeRecord {
        code,
        campaign: (!campaign.is_empty()).then_some(campaign),
        definition: serde_json::from_str(&definition)?,
        created_at,
        deliveries,
    }))
}

/// The current result of each target of a code; a target still pending has none yet.
fn current_results(conn: &Connection, code_id: i64, targets: &[String]) -> Result<Vec<TargetResult>, LedgerError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        if let Some((_, Some(result))) = delivery(conn, code_id, t)? {
            out.push(serde_json::from_str(&result)?);
        }
    }
    Ok(out)
}

fn pending_of(
    conn: &Connection,
    code_id: i64,
    targets: &[String],
    request_id: i64,
) -> Result<Vec<String>, LedgerError> {
    let mut pending = Vec::new();
    for t in targets {
        let claimed: Option<i64> = conn
            .prepare_cached(
                "SELECT request_id FROM deliveries WHERE code_id = ?1 AND upstream = ?2 AND status = 'pending'",
            )?
            .query_row(params![code_id, t], |r| r.get(0))
            .optional()?
            .flatten();
        if claimed == Some(request_id) {
            pending.push(t.clone());
        }
    }
    Ok(pending)
}

#[async_trait::async_trait]
impl Store for Ledger {
    fn problem(&self) -> Option<String> {
        self.space.problem()
    }

    async fn begin_create(
        &self,
        key: Option<String>,
        body: Value,
        definition: Definition,
        targets: Vec<PlannedTarget>,
        now: DateTime<Utc>,
        key_window: chrono::Duration,
    ) -> Result<Begin, LedgerError> {
        let body = body.to_string();
        self.claim(move |conn| {
            let tx = conn.transaction()?;
            if let Some(key) = &key {
                let seen: Option<(i64, String, Option<String>, Option<String>)> = tx
                    .prepare_cached(
                        "SELECT id, body, key_expires_at, response FROM requests WHERE idempotency_key = ?1",
                    )?
                    .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()?;
                match seen {
                    // An expired key is forgotten: the old create keeps its record, not its key.
                    Some((id, _, Some(expires), _)) if expires <= stamp(now) => {
                        tx.execute("UPDATE requests SET idempotency_key = NULL WHERE id = ?1", [id])?;
                    }
                    Some((id, seen_body, _, _)) if seen_body != body => return Ok(Begin::KeyReused(id)),
                    Some((id, _, _, None)) => return Ok(Begin::InProgress(id)),
                    Some((_, _, _, Some(response))) => return Ok(Begin::Replay(serde_json::from_str(&response)?)),
                    None => {}
                }
            }
            // A refusal returns before the commit: dropping the transaction rolls it back.
            if let Some(conflict) = staged_conflict(&tx, &definition, None)? {
                return Ok(Begin::Conflict(conflict));
            }
            let code_id = match find_or_add_code(&tx, &definition)? {
                Ok(id) => id,
                Err(conflict) => return Ok(Begin::Conflict(conflict)),
            };
            let names: Vec<String> = targets.iter().map(|t| t.upstream.clone()).collect();
            if let Some(conflict) = held_elsewhere(&tx, &definition.campaign, &definition.key(), &names)? {
                return Ok(Begin::Conflict(conflict));
            }
            tx.prepare_cached(
                "INSERT INTO requests (idempotency_key, key_expires_at, body, code_id, targets) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key,
                key.as_ref().map(|_| stamp(now + key_window)),
                body,
                code_id,
                serde_json::to_string(&names)?
            ])?;
            let request_id = tx.last_insert_rowid();
            let mut claims = Vec::with_capacity(targets.len());
            for t in &targets {
                let claim = match delivery(&tx, code_id, &t.upstream)? {
                    Some((status, Some(result))) if is_final(status) => Claim::Done(Box::new(serde_json::from_str(&result)?)),
                    Some((Status::Pending, _)) => Claim::Elsewhere,
                    _ => {
                        put_delivery(&tx, code_id, &t.upstream, t.settled.as_ref(), Some(request_id), None)?;
                        if t.settled.is_some() {
                            Claim::Settled
                        } else {
                            Claim::Send
                        }
                    }
                };
                claims.push(claim);
            }
            tx.commit()?;
            Ok(Begin::New {
                request_id,
                code_id,
                claims,
            })
        })
        .await
    }

    async fn record(&self, outcomes: Vec<(i64, TargetResult)>) -> Result<(), LedgerError> {
        self.outcome(Arc::new(move |conn: &mut Connection| {
            let tx = conn.transaction()?;
            record_outcomes(&tx, &outcomes)?;
            tx.commit()?;
            Ok(())
        }))
        .await
    }

    async fn finish_request(
        &self,
        request_id: i64,
        response: &CreateResponse,
        outcomes: Vec<(i64, TargetResult)>,
    ) -> Result<(), LedgerError> {
        let response = serde_json::to_string(response)?;
        self.outcome(Arc::new(move |conn: &mut Connection| {
            let tx = conn.transaction()?;
            record_outcomes(&tx, &outcomes)?;
            tx.prepare_cached(&format!(
                "UPDATE requests SET response = ?1, finished_at = {NOW} WHERE id = ?2"
            ))?
            .execute(params![response, request_id])?;
            tx.commit()?;
            Ok(())
        }))
        .await
    }

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, LedgerError> {
        self.with(move |conn| {
            let row: Option<(i64, String, String, Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT code_id, targets, received_at, finished_at, response FROM requests WHERE id = ?1",
                    [request_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((code_id, targets, received_at, finished_at, response)) = row else {
                return Ok(None);
            };
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            let code: String = conn.query_row("SELECT code FROM codes WHERE id = ?1", [code_id], |r| r.get(0))?;
            let results = match &response {
                Some(r) => serde_json::from_str::<CreateResponse>(r)?.results,
                None => current_results(conn, code_id, &targets)?,
            };
            Ok(Some(StoredRequest {
                request_id,
                code,
                received_at,
                finished: finished_at.is_some(),
                pending: pending_of(conn, code_id, &targets, request_id)?,
                results,
            }))
        })
        .await
    }

    async fn delivery_results(&self, code_id: i64, targets: Vec<String>) -> Result<Vec<TargetResult>, LedgerError> {
        self.with(move |conn| current_results(conn, code_id, &targets)).await
    }

    fn unfinished_requests(&self) -> Result<Vec<Unfinished>, LedgerError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare("SELECT id, code_id, body, targets FROM requests WHERE finished_at IS NULL ORDER BY id")?;
        let rows: Vec<(i64, i64, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(request_id, code_id, body, targets)| {
                let targets: Vec<String> = serde_json::from_str(&targets)?;
                Ok(Unfinished {
                    request_id,
                    code_id,
                    body: serde_json::from_str(&body)?,
                    pending: pending_of(&conn, code_id, &targets, request_id)?,
                    targets,
                })
            })
            .collect()
    }

    async fn code(&self, code: String, campaign: Option<String>) -> Result<Vec<CodeRecord>, LedgerError> {
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

    async fn codes(&self, filter: CodeFilter) -> Result<Vec<(i64, CodeRecord)>, LedgerError> {
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

    fn create_job(
        &self,
        campaign: &str,
        targets: &[String],
        source: &str,
        options: Value,
        codes: JobCodes<'_>,
    ) -> Result<i64, JobRefused> {
        let job_id = {
            let mut conn = self.lock();
            // A job's codes are new work: taken only while the ledger can record their outcomes.
            self.space.ready_for_claim(&mut conn)?;
            conn.execute(
                "INSERT INTO jobs (state, campaign, targets, source, options, total) VALUES ('staging', ?1, ?2, ?3, ?4, 0)",
                params![
                    campaign,
                    serde_json::to_string(targets).map_err(LedgerError::from)?,
                    source,
                    options.to_string()
                ],
            )?;
            conn.last_insert_rowid()
        };
        if let Err(refused) = self.stage(job_id, targets, codes) {
            // A refused job leaves nothing behind (a failure here leaves it to the next start).
            if let Err(e) = self.discard_staged(job_id) {
                tracing::error!(
                    job = job_id,
                    "a refused job's staged codes stay until the next start: {e}"
                );
            }
            return Err(refused);
        }
        // Accepted: from here the job is finished even across a crash (`recover_intakes`).
        self.lock()
            .execute("UPDATE jobs SET state = 'promoting' WHERE id = ?1", [job_id])?;
        self.promote(job_id)?;
        Ok(job_id)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, LedgerError> {
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT state, campaign, targets, source, options, total, created_at, finished_at FROM jobs
                      WHERE id = ?1 AND state IN ('running', 'done', 'cancelled')",
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
                        ))
                    },
                )
                .optional()?;
            let Some((state, campaign, targets, source, options, total, created_at, finished_at)) = row else {
                return Ok(None);
            };
            Ok(Some(JobRecord {
                id,
                state: serde_json::from_value(Value::String(state))?,
                campaign,
                targets: serde_json::from_str(&targets)?,
                source,
                total: total as u64,
                created_at,
                finished_at,
                options: serde_json::from_str(&options)?,
            }))
        })
        .await
    }

    fn running_jobs(&self) -> Result<Vec<i64>, LedgerError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT id FROM jobs WHERE state = 'running' ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }

    async fn job_counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, LedgerError> {
        self.with(move |conn| {
            let targets: String = conn.query_row("SELECT targets FROM jobs WHERE id = ?1", [id], |r| r.get(0))?;
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            let mut out = BTreeMap::new();
            for t in targets {
                let mut stmt = conn
                    .prepare_cached("SELECT status, n FROM job_tally WHERE job_id = ?1 AND upstream = ?2 AND n > 0")?;
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
    ) -> Result<Vec<JobWork>, LedgerError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT i.seq, i.code_id, c.definition FROM job_items i
                   JOIN deliveries d ON d.code_id = i.code_id AND d.upstream = ?2
                   JOIN codes c ON c.id = i.code_id
                  WHERE i.job_id = ?1 AND i.seq > ?3 AND d.status = 'pending' AND d.job_id = ?1
                  ORDER BY i.seq LIMIT ?4",
            )?;
            let rows: Vec<(i64, i64, String)> = stmt
                .query_map(params![id, upstream, after_seq, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(seq, code_id, definition)| {
                    Ok(JobWork {
                        seq,
                        code_id,
                        definition: serde_json::from_str(&definition)?,
                    })
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
    ) -> Result<Vec<JobResult>, LedgerError> {
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT i.seq, c.code, d.upstream, d.status, d.vendor_id, d.attempts, d.result
                   FROM job_items i
                   JOIN codes c ON c.id = i.code_id
                   JOIN deliveries d ON d.code_id = i.code_id
                   JOIN jobs j ON j.id = i.job_id
                  WHERE i.job_id = ?1 AND (i.seq, d.upstream) > (?2, ?6)
                    AND EXISTS (SELECT 1 FROM json_each(j.targets) t WHERE t.value = d.upstream)
                    AND (?3 IS NULL OR d.status = ?3) AND (?4 IS NULL OR d.upstream = ?4)
                  ORDER BY i.seq, d.upstream LIMIT ?5",
            )?;
            let rows: Vec<(i64, String, String, String, Option<String>, u32, Option<String>)> = stmt
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
                        ))
                    },
                )?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(|(seq, code, upstream, status, vendor_id, attempts, result)| {
                    let result: Option<TargetResult> = result.map(|r| serde_json::from_str(&r)).transpose()?;
                    let (error, warnings) = match result {
                        Some(r) => (r.error, r.warnings),
                        None => (None, Vec::new()),
                    };
                    Ok(JobResult {
                        seq,
                        code,
                        upstream,
                        status: parse_status(&status),
                        vendor_id,
                        attempts,
                        error,
                        warnings,
                    })
                })
                .collect()
        })
        .await
    }

    async fn retry_job(&self, id: i64) -> Result<u64, LedgerError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            explain_held_elsewhere(&tx, id)?;
            let reopened = tx.execute(
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
            )?;
            tx.execute(
                "UPDATE jobs SET state = 'running', finished_at = NULL WHERE id = ?1",
                [id],
            )?;
            tx.commit()?;
            Ok(reopened as u64)
        })
        .await
    }

    async fn end_job(&self, id: i64, state: JobState) -> Result<(), LedgerError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if state == JobState::Cancelled {
                tx.execute(
                    &format!(
                        "UPDATE deliveries SET status = 'cancelled', updated_at = {NOW}
                          WHERE status = 'pending' AND job_id = ?1"
                    ),
                    [id],
                )?;
            }
            let name = match state {
                JobState::Running => "running",
                JobState::Done => "done",
                JobState::Cancelled => "cancelled",
            };
            tx.execute(
                &format!("UPDATE jobs SET state = ?1, finished_at = {NOW} WHERE id = ?2"),
                params![name, id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The SQLite store keeps the `Store` contract (`conformance.rs`), each case on a new file.
    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let opened = std::sync::atomic::AtomicUsize::new(0);
        let open = move || -> Arc<dyn Store> {
            let n = opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Arc::new(Ledger::open(&root.join(format!("ledger-{n}.db"))).unwrap())
        };
        conformance::run(&open).await;
    }

    fn open(dir: &tempfile::TempDir) -> Ledger {
        Ledger::open(&dir.path().join("ledger.db")).unwrap()
    }

    fn to(upstream: &str) -> PlannedTarget {
        PlannedTarget {
            upstream: upstream.into(),
            settled: None,
        }
    }

    async fn begin(ledger: &Ledger, campaign: &str, code: &str, targets: &[&str]) -> Begin {
        let body = json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } });
        let def = Definition::of(&body, Some(campaign), code);
        let targets = targets.iter().map(|t| to(t)).collect();
        ledger
            .begin_create(None, body, def, targets, Utc::now(), chrono::Duration::hours(1))
            .await
            .unwrap()
    }

    fn count(ledger: &Ledger, table: &str) -> i64 {
        ledger
            .lock()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn another_campaigns_pending_code_at_a_target_is_a_conflict_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir);
        assert!(matches!(
            begin(&ledger, "a", "SPRING20", &["loop"]).await,
            Begin::New { .. }
        ));
        let (codes, requests) = (count(&ledger, "codes"), count(&ledger, "requests"));
        match begin(&ledger, "b", "spring20", &["loop2", "loop"]).await {
            Begin::Conflict(conflict) => assert_eq!(
                conflict,
                CodeConflict::OtherCampaign {
                    held_by: vec![Holder {
                        campaign: Some("a".into()),
                        code: "SPRING20".into(),
                        upstreams: vec!["loop".into()],
                    }]
                }
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!((count(&ledger, "codes"), count(&ledger, "requests")), (codes, requests));
        // Elsewhere, it is b's to claim.
        match begin(&ledger, "b", "spring20", &["loop2"]).await {
            Begin::New { claims, .. } => assert!(matches!(claims[..], [Claim::Send])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_version_1_ledger_gains_the_code_key_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let conn = Connection::open(&path).unwrap();
            let Migration::Sql(first) = MIGRATIONS[0] else {
                unreachable!("the first migration is SQL")
            };
            conn.execute_batch(first).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let ledger = Ledger::open(&path).unwrap();
        let conn = ledger.lock();
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len());
        let indexed: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'codes_by_key')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(indexed);
    }

    /// A job's counts as the tally's trigger must keep them: by a join over the job's codes.
    fn counted_by_join(ledger: &Ledger, job: i64, targets: &[&str]) -> BTreeMap<String, BTreeMap<Status, u64>> {
        let conn = ledger.lock();
        let mut out = BTreeMap::new();
        for t in targets {
            let mut stmt = conn
                .prepare(
                    "SELECT d.status, COUNT(*) FROM job_items i
                       JOIN deliveries d ON d.code_id = i.code_id AND d.upstream = ?2
                      WHERE i.job_id = ?1 GROUP BY d.status",
                )
                .unwrap();
            let counts = stmt
                .query_map(params![job, t], |r| {
                    Ok((parse_status(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as u64))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.insert(t.to_string(), counts);
        }
        out
    }

    fn job_of(ledger: &Ledger, campaign: &str, targets: &[&str], codes: &[&str]) -> i64 {
        let items: Vec<(String, Result<Definition, String>)> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let body = json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } });
                (format!("codes[{i}]"), Ok(Definition::of(&body, Some(campaign), code)))
            })
            .collect();
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        ledger
            .create_job(
                campaign,
                &targets,
                "json",
                json!({}),
                JobCodes::Items(Box::new(items.into_iter())),
            )
            .unwrap()
    }

    async fn settle(ledger: &Ledger, job: i64, upstream: &str, statuses: &[Status]) {
        let work = ledger.job_work(job, upstream.into(), 0, 100).await.unwrap();
        let outcomes = work
            .iter()
            .zip(statuses)
            .map(|(w, s)| (w.code_id, TargetResult::new(upstream, None, *s)))
            .collect();
        ledger.record(outcomes).await.unwrap();
    }

    #[tokio::test]
    async fn a_jobs_tally_follows_every_change_of_its_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir);
        // One code is already on `a` before the job; a create claims another on `b`.
        let Begin::New { code_id, .. } = begin(&ledger, "c", "HELD", &["a"]).await else {
            panic!("a new code")
        };
        ledger
            .record(vec![(code_id, TargetResult::new("a", None, Status::Created))])
            .await
            .unwrap();
        let Begin::New { code_id: busy, .. } = begin(&ledger, "c", "BUSY", &["b"]).await else {
            panic!("a new code")
        };
        let job = job_of(&ledger, "c", &["a", "b"], &["HELD", "BUSY", "N1", "N2", "N3", "N4"]);
        let check = |what: &str| {
            let ledger = ledger.clone();
            let what = what.to_owned();
            async move {
                let tally = ledger.job_counts(job).await.unwrap();
                assert_eq!(tally, counted_by_join(&ledger, job, &["a", "b"]), "{what}");
                tally
            }
        };
        let start = check("intake").await;
        assert_eq!(start["a"][&Status::Created], 1);
        assert_eq!(start["a"][&Status::Pending], 5);
        assert_eq!(start["b"][&Status::Pending], 6);

        settle(&ledger, job, "a", &[Status::Created, Status::Failed, Status::Throttled]).await;
        check("some settled on a").await;
        // The create's own delivery of BUSY on b ends outside the job and moves the job's count.
        ledger
            .record(vec![(busy, TargetResult::new("b", None, Status::Created))])
            .await
            .unwrap();
        check("another caller's delivery settled").await;
        ledger.end_job(job, JobState::Cancelled).await.unwrap();
        let cancelled = check("cancelled").await;
        assert!(cancelled["b"][&Status::Cancelled] > 0);
        // A second job shares codes with the first: both tallies move on one record.
        let second = job_of(&ledger, "c", &["a"], &["N3", "N4"]);
        ledger.retry_job(job).await.unwrap();
        check("retried").await;
        settle(&ledger, second, "a", &[Status::Created, Status::Rejected]).await;
        check("the second job's deliveries").await;
        assert_eq!(
            ledger.job_counts(second).await.unwrap(),
            counted_by_join(&ledger, second, &["a"])
        );
        settle(&ledger, job, "b", &[Status::Created; 6]).await;
        let end = check("all of b").await;
        assert_eq!(end["b"].get(&Status::Pending), None);
    }

    #[tokio::test]
    async fn a_version_2_ledgers_jobs_are_tallied_by_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let job = {
            let ledger = Ledger::open(&path).unwrap();
            let job = job_of(&ledger, "c", &["a", "b"], &["N1", "N2", "N3"]);
            settle(&ledger, job, "a", &[Status::Created, Status::Failed]).await;
            // Back to version 2, as a ledger written before the tally.
            ledger
                .lock()
                .execute_batch("DROP TABLE job_stage; DROP TRIGGER deliveries_tally; DROP TABLE job_tally; PRAGMA user_version = 2;")
                .unwrap();
            job
        };
        let ledger = Ledger::open(&path).unwrap();
        let counts = ledger.job_counts(job).await.unwrap();
        assert_eq!(counts, counted_by_join(&ledger, job, &["a", "b"]));
        assert_eq!(counts["a"][&Status::Failed], 1);
        assert_eq!(counts["b"][&Status::Pending], 3);
    }

    /// A version 3 ledger keyed codes by upper case. Migration 4 rekeys every code by NFKC and
    /// case folding; of two codes of one campaign that now fold alike, the earlier answers for
    /// the key and the later keeps a key of its own, so the migration cannot fail on them.
    #[tokio::test]
    async fn a_version_3_ledger_is_rekeyed_by_nfkc_and_case_folding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let ledger = Ledger::open(&path).unwrap();
            let conn = ledger.lock();
            for (campaign, code) in [
                ("a", "KEY"),
                ("a", "\u{212A}EY"),
                ("b", "Stra\u{DF}e"),
                ("b", "ＳＰＲＩＮＧ"),
            ] {
                conn.execute(
                    "INSERT INTO codes (campaign, code, code_key, definition) VALUES (?1, ?2, ?3, '{}')",
                    params![campaign, code, code.to_uppercase()],
                )
                .unwrap();
            }
            // What a version 3 ledger lacks: the later migrations' tables.
            conn.execute_batch("DROP TABLE job_stage").unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        let ledger = Ledger::open(&path).unwrap();
        let keys: Vec<(String, String)> = {
            let conn = ledger.lock();
            let mut stmt = conn.prepare("SELECT code, code_key FROM codes ORDER BY id").unwrap();
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        assert_eq!(
            keys,
            [
                ("KEY".to_owned(), "key".to_owned()),
                ("\u{212A}EY".to_owned(), "key\u{0}2".to_owned()),
                ("Stra\u{DF}e".to_owned(), "strasse".to_owned()),
                ("ＳＰＲＩＮＧ".to_owned(), "spring".to_owned()),
            ]
        );
        // A request for either spelling meets the code that answers for the key (no vendor
        // holds it yet, so it is redefined in place): no second row appears.
        assert!(matches!(
            begin(&ledger, "a", "\u{212A}ey", &["loop"]).await,
            Begin::New { .. }
        ));
        let first: String = ledger
            .lock()
            .query_row("SELECT code FROM codes WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(first, "\u{212A}ey");
        assert_eq!(count(&ledger, "codes"), 4);
    }

    /// A stop during intake leaves no half job: a job still staging (never accepted) is gone
    /// at the next start with its staged codes, and one accepted and promoting is finished.
    #[test]
    fn a_job_cut_short_in_its_intake_is_removed_or_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let stage = |ledger: &Ledger, state: &str, codes: &[&str]| -> i64 {
            let conn = ledger.lock();
            conn.execute(
                "INSERT INTO jobs (state, campaign, targets, source, options, total) VALUES (?1, 'c', '[\"a\"]', 'json', '{}', 0)",
                [state],
            )
            .unwrap();
            let job = conn.last_insert_rowid();
            for (i, code) in codes.iter().enumerate() {
                let body = json!({ "code": code, "campaign": "c", "discount": { "percent_off": 20 } });
                stage_row(&conn, job, i as i64 + 1, &Definition::of(&body, Some("c"), code)).unwrap();
            }
            job
        };
        let (staging, promoting) = {
            let ledger = Ledger::open(&path).unwrap();
            // Accepted (every code staged and checked), not yet promoted when the stop came.
            let promoting = stage(&ledger, "promoting", &["P1", "P2", "P3"]);
            let staging = stage(&ledger, "staging", &["S1", "S2"]);
            (staging, promoting)
        };
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(count(&ledger, "job_stage"), 0);
        assert_eq!(ledger.running_jobs().unwrap(), vec![promoting]);
        let exists: bool = ledger
            .lock()
            .query_row("SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1)", [staging], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(!exists, "the job never accepted is gone");
        let codes: Vec<String> = ledger
            .lock()
            .prepare("SELECT code FROM codes ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(codes, ["P1", "P2", "P3"]);
        let job = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(ledger.job(promoting))
            .unwrap()
            .unwrap();
        assert_eq!((job.state, job.total), (JobState::Running, 3));
    }

    /// While a job's intake runs, its staged codes are reserved: a create of one in another
    /// campaign at the job's target, or in another case, is a conflict, as it would be once the
    /// job holds it; the same code as staged, or at another target, goes ahead.
    #[tokio::test]
    async fn a_code_staged_by_a_job_is_reserved_against_clashing_creates() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = open(&dir);
        {
            let conn = ledger.lock();
            conn.execute(
                "INSERT INTO jobs (state, campaign, targets, source, options, total) VALUES ('staging', 'a', '[\"loop\"]', 'json', '{}', 0)",
                [],
            )
            .unwrap();
            let body = json!({ "code": "STAGED", "campaign": "a", "discount": { "percent_off": 20 } });
            stage_row(
                &conn,
                conn.last_insert_rowid(),
                1,
                &Definition::of(&body, Some("a"), "STAGED"),
            )
            .unwrap();
        }
        match begin(&ledger, "b", "staged", &["loop"]).await {
            Begin::Conflict(CodeConflict::OtherCampaign { held_by }) => {
                assert_eq!(held_by[0].campaign.as_deref(), Some("a"));
                assert_eq!(held_by[0].upstreams, ["loop"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            begin(&ledger, "a", "Staged", &["loop"]).await,
            Begin::Conflict(CodeConflict::OtherCase { .. })
        ));
        assert!(matches!(
            begin(&ledger, "b", "STAGED", &["loop2"]).await,
            Begin::New { .. }
        ));
        assert!(matches!(
            begin(&ledger, "a", "STAGED", &["loop"]).await,
            Begin::New { .. }
        ));
    }
}
