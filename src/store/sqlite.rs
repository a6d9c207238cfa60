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
//! one connection, calls on tokio's blocking pool; one process owns the file (its lock file), so
//! opening it as the sole owner frees every lease the last process left.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::domain::code::{
    self, code_key, CodeConflict, CodeFilter, CodeRecord, Decision, Definition, DeliveryRecord, Known,
};
use crate::domain::delivery::{CreateResponse, ErrorKind, Status, TargetResult};
use crate::domain::job::{JobRecord, JobResult, JobState, JobWork, NewJob, StageAs, Staged, INTAKE_SLICE};
use crate::domain::request::{
    self as rules, Begin, Claim, ClaimDecision, KeyDecision, NewCreate, SeenKey, StoredRequest, Unfinished,
};
use crate::error::StartupError;
use crate::ports::{Adopted, Store, StoreError, StoreErrorKind};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

mod space;

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

/// One schema migration: SQL, or a step that needs the gateway's own code.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// The longest it holds the ledger for one slice; other writers go in between.
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
    // 5: a job's items while its intake runs (see `Store::begin_job`): checked and staged in
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
    // 6: an owner and a lease on unfinished creates and running jobs: who is working on them,
    // until when (see `Store::adopt`).
    Migration::Sql(
        "
ALTER TABLE requests ADD COLUMN owner TEXT;
ALTER TABLE requests ADD COLUMN lease_until TEXT;
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;
",
    ),
];

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
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(fail)?;
        migrate(&mut conn).map_err(fail)?;
        let read_only = conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)?;
        if options.sole_owner && !read_only {
            conn.execute_batch(
                "UPDATE requests SET lease_until = NULL WHERE finished_at IS NULL AND lease_until IS NOT NULL;
                 UPDATE jobs SET lease_until = NULL WHERE lease_until IS NOT NULL;",
            )
            .map_err(fail)?;
        }
        let ledger = Self {
            conn: Arc::new(Mutex::new(conn)),
            space: Arc::new(space::Space::new(path, options.reserve_bytes, read_only)),
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

    /// Stages a slice of a job's items (see [`Store::stage`]), in transactions of at most
    /// [`INTAKE_SLICE_TIME`], handing the ledger over fairly in between.
    fn stage_items(&self, job_id: i64, items: Vec<Definition>, check: StageAs) -> Result<Vec<Staged>, LedgerError> {
        let targets: Vec<String> = {
            let conn = self.lock();
            let targets: String = conn.query_row("SELECT targets FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
            serde_json::from_str(&targets)?
        };
        let mut out = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let mut seq: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM job_stage WHERE job_id = ?1")?
                .query_row([job_id], |r| r.get(0))?;
            let began = Instant::now();
            while began.elapsed() < INTAKE_SLICE_TIME {
                let Some(def) = items.next() else { break };
                let verdict = match check {
                    StageAs::Given => match stage_check(&tx, job_id, &def, &targets)? {
                        Some(conflict) => Staged::Refused(conflict),
                        None => Staged::Accepted,
                    },
                    StageAs::Fresh if is_free(&tx, &def, &targets)? => Staged::Accepted,
                    StageAs::Fresh => Staged::Taken,
                };
                if verdict == Staged::Accepted {
                    seq += 1;
                    stage_row(&tx, job_id, seq, &def)?;
                }
                out.push(verdict);
            }
            tx.commit()?;
            MutexGuard::unlock_fair(conn);
        }
        Ok(out)
    }

    /// [`Store::commit_job`]: turns an accepted job's staged rows into codes,
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
                        Some((status, _)) if status.holds() => {}
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
        self.with(move |conn| {
            space.ready_for_claim(conn)?;
            let result = f(conn);
            space.observe(&result);
            result
        })
        .await
    }

    /// Writes outcomes of calls made: into the reserve's room on a full disk, or held in memory.
    async fn outcome(&self, write: space::HeldWrite) -> Result<(), StoreError> {
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

/// The code the campaign holds under `def`'s key, with whether a vendor holds it (asked only
/// where it differs from `def`, the one case the answer decides).
fn known(tx: &Connection, def: &Definition) -> rusqlite::Result<Option<Known<i64>>> {
    let existing: Option<(i64, String, String)> = tx
        .prepare_cached("SELECT id, code, definition FROM codes WHERE campaign = ?1 AND code_key = ?2")?
        .query_row(params![def.campaign, def.key()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    existing
        .map(|(id, code, json)| {
            Ok(Known {
                held: def.differs_from(&code, &json).is_some() && is_held(tx, id)?,
                id,
                code,
                json,
            })
        })
        .transpose()
}

/// Finds a code in its campaign, or adds (or redefines) it, as [`code::decide`] rules.
fn find_or_add_code(tx: &Transaction<'_>, def: &Definition) -> Result<Result<i64, CodeConflict>, rusqlite::Error> {
    match code::decide(known(tx, def)?, def) {
        Decision::Add => {
            tx.prepare_cached("INSERT INTO codes (campaign, code, code_key, definition) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![def.campaign, def.code, def.key(), def.json])?;
            Ok(Ok(tx.last_insert_rowid()))
        }
        Decision::Keep(id) => Ok(Ok(id)),
        Decision::Redefine(id) => {
            tx.prepare_cached("UPDATE codes SET code = ?1, definition = ?2 WHERE id = ?3")?
                .execute(params![def.code, def.json, id])?;
            Ok(Ok(id))
        }
        Decision::Refuse(conflict) => Ok(Err(conflict)),
    }
}

/// A job's staged code (see [`Store::begin_job`]) of the same campaign as `def`, in another
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
    Ok(staged.and_then(|(code, json)| def.differs_from(&code, &json)))
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
    if let Decision::Refuse(conflict) = code::decide(known(tx, def)?, def) {
        return Ok(Some(conflict));
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
    // A code another job has staged (see `Store::begin_job`) is held at that job's targets.
    let mut stmt = tx.prepare_cached(
        "SELECT campaign, code, upstream FROM (
            SELECT c.campaign, c.code, d.upstream, c.id AS ord FROM codes c JOIN deliveries d ON d.code_id = c.id
             WHERE c.code_key = ?1 AND c.campaign <> ?2 AND d.status IN ('created', 'already_exists', 'pending')
            UNION ALL
            SELECT s.campaign, s.code, t.value, -s.job_id FROM job_stage s JOIN jobs j ON j.id = s.job_id, json_each(j.targets) t
             WHERE s.code_key = ?1 AND s.campaign <> ?2)
          ORDER BY campaign, ord, upstream",
    )?;
    let rows = stmt
        .query_map(params![key, campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<code::HoldRow>>>()?;
    Ok(code::held_elsewhere(rows, targets))
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
        let explained = previous
            .unwrap_or_else(|| TargetResult::new(&upstream, None, parse_status(&status)))
            .with_error(ErrorKind::CodeConflict, code::held_since(&campaign, &code, &upstream));
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
                updated_at: parse_stamp(&updated_at)?,
                result,
                job_id,
            },
        );
    }
    Ok(Some(CodeRecord {
        code,
        campaign: (!campaign.is_empty()).then_some(campaign),
        definition: serde_json::from_str(&definition)?,
        created_at: parse_stamp(&created_at)?,
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
    fn backend(&self) -> &'static str {
        "sqlite"
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
            now,
            key_window,
        } = create;
        let owner = self.owner.clone();
        let lease_until = stamp(now + self.lease);
        let body = body.to_string();
        self.claim(move |conn| {
            // Immediate: the write lock is taken before the reads the claim decides on, so a
            // second connection on the file (another handle, as in the contract's cases)
            // waits its turn instead of failing to upgrade a read into a write.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(key) = &key {
                let seen = tx
                    .prepare_cached(
                        "SELECT id, body, key_expires_at, response FROM requests WHERE idempotency_key = ?1",
                    )?
                    .query_row([key], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, Option<String>>(3)?,
                        ))
                    })
                    .optional()?
                    .map(|(request_id, body, expires, response)| {
                        Ok::<_, LedgerError>(SeenKey {
                            request_id,
                            body,
                            expires_at: expires.as_deref().map(parse_stamp).transpose()?,
                            response,
                        })
                    })
                    .transpose()?;
                match rules::decide_key(seen, &body, now) {
                    KeyDecision::Fresh => {}
                    KeyDecision::Forget(id) => {
                        tx.execute("UPDATE requests SET idempotency_key = NULL WHERE id = ?1", [id])?;
                    }
                    KeyDecision::Reused(id) => return Ok(Begin::KeyReused(id)),
                    KeyDecision::InProgress(id) => return Ok(Begin::InProgress(id)),
                    KeyDecision::Replay(response) => return Ok(Begin::Replay(serde_json::from_str(&response)?)),
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
                "INSERT INTO requests (idempotency_key, key_expires_at, body, code_id, targets, owner, lease_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                key,
                key.as_ref().map(|_| stamp(now + key_window)),
                body,
                code_id,
                serde_json::to_string(&names)?,
                &*owner,
                lease_until
            ])?;
            let request_id = tx.last_insert_rowid();
            let mut claims = Vec::with_capacity(targets.len());
            for t in &targets {
                let current = delivery(&tx, code_id, &t.upstream)?;
                let decided = rules::decide_claim(current.as_ref().map(|(status, result)| (*status, result.is_some())));
                let claim = match (decided, current) {
                    (ClaimDecision::Done, Some((_, Some(result)))) => {
                        Claim::Done(Box::new(serde_json::from_str(&result)?))
                    }
                    (ClaimDecision::Elsewhere, _) => Claim::Elsewhere,
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

    async fn record(&self, outcomes: Vec<(i64, TargetResult)>) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
        let response = serde_json::to_string(response).map_err(LedgerError::from)?;
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

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, StoreError> {
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
                received_at: parse_stamp(&received_at)?,
                finished: finished_at.is_some(),
                pending: pending_of(conn, code_id, &targets, request_id)?,
                results,
            }))
        })
        .await
    }

    async fn delivery_results(&self, code_id: i64, targets: Vec<String>) -> Result<Vec<TargetResult>, StoreError> {
        self.with(move |conn| current_results(conn, code_id, &targets)).await
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
                "INSERT INTO jobs (state, campaign, targets, source, options, total, owner, lease_until)
                 VALUES ('staging', ?1, ?2, ?3, ?4, 0, ?5, ?6)",
                params![
                    job.campaign,
                    serde_json::to_string(&job.targets)?,
                    job.source,
                    job.options.to_string(),
                    &*owner,
                    lease_until
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

    async fn commit_job(&self, job_id: i64) -> Result<(), StoreError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || {
            // Accepted: from here the job is finished even across a crash (`recover_intakes`).
            ledger
                .lock()
                .execute("UPDATE jobs SET state = 'promoting' WHERE id = ?1", [job_id])?;
            ledger.promote(job_id)
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
                state: JobState::from_name(&state).ok_or_else(|| {
                    LedgerError::Corrupt(serde::de::Error::custom(format!(
                        "job {id} is in an unknown state `{state}`"
                    )))
                })?,
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
    ) -> Result<Vec<JobWork>, StoreError> {
        let owner = self.owner.clone();
        self.with(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT i.seq, i.code_id, c.definition FROM job_items i
                   JOIN deliveries d ON d.code_id = i.code_id AND d.upstream = ?2
                   JOIN codes c ON c.id = i.code_id
                  WHERE i.job_id = ?1 AND i.seq > ?3 AND d.status = 'pending' AND d.job_id = ?1
                    AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = ?1 AND j.owner = ?5 AND j.state = 'running')
                  ORDER BY i.seq LIMIT ?4",
            )?;
            let rows: Vec<(i64, i64, String)> = stmt
                .query_map(params![id, upstream, after_seq, limit as i64, &*owner], |r| {
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
    ) -> Result<Vec<JobResult>, StoreError> {
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

    async fn retry_job(&self, id: i64) -> Result<u64, StoreError> {
        let owner = self.owner.clone();
        let until = stamp(Utc::now() + self.lease);
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
                        "UPDATE deliveries SET status = 'cancelled', updated_at = {NOW}
                          WHERE status = 'pending' AND job_id = ?1"
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

/// Unfinished creates matching a condition on `requests`, oldest first.
fn unfinished(conn: &Connection, condition: &str, p: impl rusqlite::Params) -> Result<Vec<Unfinished>, LedgerError> {
    let rows: Vec<(i64, i64, String, String)> = conn
        .prepare(&format!(
            "SELECT id, code_id, body, targets FROM requests WHERE {condition} ORDER BY id"
        ))?
        .query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(request_id, code_id, body, targets)| {
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            Ok(Unfinished {
                request_id,
                code_id,
                body: serde_json::from_str(&body)?,
                pending: pending_of(conn, code_id, &targets, request_id)?,
                targets,
            })
        })
        .collect()
}

/// The unfinished creates among `ids` (a JSON array).
fn unfinished_in(conn: &Connection, ids: &str) -> Result<Vec<Unfinished>, LedgerError> {
    unfinished(
        conn,
        "finished_at IS NULL AND id IN (SELECT value FROM json_each(?1))",
        [ids],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::code::Holder;
    use crate::domain::request::PlannedTarget;
    use crate::store::conformance;
    use serde_json::json;

    /// The SQLite store keeps the `Store` contract (`conformance.rs`), each case on a new file.
    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let opened = std::sync::atomic::AtomicUsize::new(0);
        let options = |owner: &str| Options {
            owner: owner.into(),
            lease: conformance::LEASE,
            sole_owner: false,
            ..Options::default()
        };
        let open = move || {
            let path = root.join(format!(
                "ledger-{}.db",
                opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let store: Arc<dyn Store> = Arc::new(Ledger::open_with(&path, options("first")).unwrap());
            // The peer opens the same file as another process would.
            let peer = move || -> Arc<dyn Store> { Arc::new(Ledger::open_with(&path, options("second")).unwrap()) };
            conformance::Opened {
                store,
                peer: Box::new(peer),
            }
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
            .begin_create(NewCreate {
                key: None,
                body,
                definition: def,
                targets,
                now: Utc::now(),
                key_window: chrono::Duration::hours(1),
            })
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

    async fn job_of(ledger: &Ledger, campaign: &str, targets: &[&str], codes: &[&str]) -> i64 {
        let items: Vec<Definition> = codes
            .iter()
            .map(|code| {
                let body = json!({ "code": code, "campaign": campaign, "discount": { "percent_off": 20 } });
                Definition::of(&body, Some(campaign), code)
            })
            .collect();
        let job = ledger
            .begin_job(NewJob {
                campaign: campaign.into(),
                targets: targets.iter().map(|t| t.to_string()).collect(),
                source: "json".into(),
                options: json!({}),
            })
            .await
            .unwrap();
        let staged = ledger.stage(job, items, StageAs::Given).await.unwrap();
        assert!(staged.iter().all(|s| *s == Staged::Accepted), "{staged:?}");
        ledger.commit_job(job).await.unwrap();
        job
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
        let job = job_of(&ledger, "c", &["a", "b"], &["HELD", "BUSY", "N1", "N2", "N3", "N4"]).await;
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
        let second = job_of(&ledger, "c", &["a"], &["N3", "N4"]).await;
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
            let job = job_of(&ledger, "c", &["a", "b"], &["N1", "N2", "N3"]).await;
            settle(&ledger, job, "a", &[Status::Created, Status::Failed]).await;
            // Back to version 2, as a ledger written before the tally.
            ledger
                .lock()
                .execute_batch(concat!(
                    "DROP TABLE job_stage; DROP TRIGGER deliveries_tally; DROP TABLE job_tally; PRAGMA user_version = 2;",
                    " ALTER TABLE requests DROP COLUMN owner; ALTER TABLE requests DROP COLUMN lease_until; ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;"
                ))
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
            conn.execute_batch(concat!("DROP TABLE job_stage;", " ALTER TABLE requests DROP COLUMN owner; ALTER TABLE requests DROP COLUMN lease_until; ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN lease_until;")).unwrap();
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
        let adopted = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(ledger.adopt(Utc::now()))
            .unwrap();
        assert_eq!(adopted.jobs, vec![promoting]);
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
