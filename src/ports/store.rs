//! The ledger's interface: everything the engine records and reads, in the domain's types, with
//! one error whose kinds mean the same on every backend.
//!
//! The rules (may a code be redefined, does another campaign hold it at an upstream, what an
//! idempotency key says) are pure functions in `domain`; a store reads the rows they need and
//! writes their decision in the same transaction, so two concurrent callers cannot both pass.
//! Work in flight has an owner: the creates and jobs a process is working on carry its name and
//! a lease it renews, and another process may adopt them once the lease has run out.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::code::{CodeFilter, CodeRecord, Definition};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::job::{JobRecord, JobResult, JobState, JobWork, NewJob, StageAs, Staged};
use crate::domain::request::{Begin, NewCreate, NewRevoke, OpKind, StoredRequest, Unfinished};

/// What kind of failure a store met, the same on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The backend cannot be reached or written now (a full disk, a read-only file, a database
    /// gone); what the call would have written was not. It may succeed later.
    Unavailable,
    /// A concurrent writer changed what the call read; it may be tried again.
    Conflict,
    /// The backend holds a record the gateway cannot read.
    Corrupt,
}

/// A store's failure: its kind, and what happened in words fit for an answer (never a
/// credential: a database URL's password is not in it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Work another process left (or this one, before a restart), now this store's owner's.
#[derive(Debug, Clone, Default)]
pub struct Adopted {
    /// Creates with deliveries that may not have been sent.
    pub creates: Vec<Unfinished>,
    /// Sync jobs still running.
    pub jobs: Vec<i64>,
}

/// What a ledger's writer has done since start: how many writes (claims, outcomes, answers) it
/// took and in how many batches and transactions, for `/metrics`. Fewer transactions than
/// writes is the group commit at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub writes: u64,
    pub batches: u64,
    pub transactions: u64,
    pub largest_batch: u64,
}

/// How a store's connection to its backend is protected, for `/health` and `/metrics`, so that
/// an operator can see that a deployment's ledger traffic is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub tls: bool,
    /// The protocol the backend reports (`TLSv1.3`), when encrypted.
    pub version: Option<String>,
}

/// The interface between the engine and its durable state. A handle speaks for one owner (a
/// process), whose name and lease length it was opened with.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite`, `postgres`), for `/health`.
    fn backend(&self) -> &'static str;

    /// What the group-committing writer has done, for `/metrics`.
    fn write_stats(&self) -> WriteStats;

    /// Why the ledger cannot record new work now (a full disk, a read-only file, outcomes held
    /// in memory, a database gone), for `/health`; `None` while it can.
    async fn problem(&self) -> Option<String>;

    /// How the connection to the backend is protected; `None` for a store with no connection
    /// (a file), or one that cannot say now.
    async fn transport(&self) -> Option<Transport> {
        None
    }

    /// Records a create and claims its targets, before any call, under this owner's lease. A
    /// code that was revoked is a conflict: nothing delivers it again.
    async fn begin_create(&self, create: NewCreate) -> Result<Begin, StoreError>;

    /// Records a revoke and claims its targets' revocations, before any call, under this
    /// owner's lease, in the same transaction marking the code revoked (if it was not yet),
    /// from when on no create, job, mirror, retry or recovery delivers it again. Each target's
    /// claim follows [`crate::domain::request::decide_revoke_claim`].
    async fn begin_revoke(&self, revoke: NewRevoke) -> Result<Begin, StoreError>;

    /// Records the outcomes of one operation's calls, each `(code_id, result)`, in one
    /// transaction: a create's deliveries, a revoke's revocations.
    async fn record(&self, op: OpKind, outcomes: Vec<(i64, TargetResult)>) -> Result<(), StoreError>;

    /// Stores a request's answer (its JSON, which an idempotent repeat replays as written),
    /// together with the outcomes not yet recorded (the last target's, which arrives with the
    /// answer: one transaction instead of two), atomically. The request has no owner from
    /// then on.
    async fn finish_request(
        &self,
        request_id: i64,
        op: OpKind,
        response: String,
        outcomes: Vec<(i64, TargetResult)>,
    ) -> Result<(), StoreError>;

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, StoreError>;

    /// The current state of one operation on a code's targets, in the order given.
    async fn target_results(
        &self,
        op: OpKind,
        code_id: i64,
        targets: Vec<String>,
    ) -> Result<Vec<TargetResult>, StoreError>;

    /// The body of the create request that last claimed the delivery of `code` (of `campaign`,
    /// empty for none) to `upstream`, if a request (not a job) did: what a later operation on
    /// that delivery must send again (its passthrough) to leave the vendor's object as it was.
    async fn create_body(
        &self,
        campaign: String,
        code: String,
        upstream: String,
    ) -> Result<Option<serde_json::Value>, StoreError>;

    /// Every create not yet finished, whoever owns it (for a stop's report).
    async fn unfinished_requests(&self) -> Result<Vec<Unfinished>, StoreError>;

    /// Codes by case-insensitive name, in every campaign that holds one.
    async fn code(&self, code: String, campaign: Option<String>) -> Result<Vec<CodeRecord>, StoreError>;

    /// The ledger's id of `code` (compared as [`crate::domain::code::code_key`] compares) in
    /// `campaign` (empty for none), which an outcome is recorded under.
    async fn code_id(&self, campaign: String, code: String) -> Result<Option<i64>, StoreError>;

    /// Codes matching a filter, by ledger id; each with the id to continue after.
    async fn codes(&self, filter: CodeFilter) -> Result<Vec<(i64, CodeRecord)>, StoreError>;

    /// Starts a job's intake: the job exists, staging, owned by this handle. Its codes are
    /// then staged ([`Store::stage`]) and the job committed or discarded: a job is accepted
    /// whole or not at all, and no call holds the ledger for more than a slice.
    async fn begin_job(&self, job: NewJob) -> Result<i64, StoreError>;

    /// Checks and reserves a slice of a staging job's codes: each item against the ledger's
    /// codes, other jobs' staged ones and this job's earlier items. A staged code is a
    /// reservation that creates and other jobs respect as if the job held it; nothing else is
    /// written.
    async fn stage(&self, job_id: i64, items: Vec<Definition>, check: StageAs) -> Result<Vec<Staged>, StoreError>;

    /// Checks and takes a slice of a staging revoke job's codes, by name: each must be a code
    /// the job's campaign holds (else `Unknown`), named once in the job (else `Refused` as
    /// repeated). An accepted code is the job's item; nothing else is written until the job is
    /// committed.
    async fn stage_revokes(&self, job_id: i64, codes: Vec<String>) -> Result<Vec<Staged>, StoreError>;

    /// Accepts a staged job and runs it. A create job's staged codes become codes, claims
    /// (`pending` where a code is not on a target or being sent there) and job items. A revoke
    /// job's codes are marked revoked and their revocations claimed (`pending` under the job
    /// where [`crate::domain::request::job_claims_revocation`] says so). Once this is called
    /// the job is finished even across a crash.
    async fn commit_job(&self, job_id: i64) -> Result<(), StoreError>;

    /// Drops a staging job that was refused, with its staged codes.
    async fn discard_job(&self, job_id: i64) -> Result<(), StoreError>;

    /// A job that was accepted (running, done or cancelled).
    async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError>;

    /// Per target, how many of the job's codes are in each state.
    async fn job_counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, StoreError>;

    /// The next `limit` of the job's codes still pending on `upstream` under this job's claim
    /// (a delivery for a create job, a revocation for a revoke job),
    /// after `after_seq`, while the job runs and this owner holds it (none otherwise: the job
    /// was ended or adopted elsewhere). A delivery another create or job has claimed is theirs
    /// to send.
    async fn job_work(
        &self,
        id: i64,
        upstream: String,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<JobWork>, StoreError>;

    async fn job_results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, StoreError>;

    /// Sets the job running again, owned by this handle, with its failed, throttled and
    /// cancelled deliveries (a revoke job's: revocations) pending
    /// (except where another campaign's code has reached that upstream since, which stay as
    /// they are); how many deliveries it reopened.
    async fn retry_job(&self, id: i64) -> Result<u64, StoreError>;

    /// Ends a running job: `Done` (by its owner only: a process whose job another adopted must
    /// not end it under the adopter), or `Cancelled` with its still pending deliveries marked
    /// cancelled (whoever asks). Whether it ended: a job already ended (a cancel on another
    /// replica) stays as it is.
    async fn end_job(&self, id: i64, state: JobState) -> Result<bool, StoreError>;

    /// Takes the unfinished creates and running jobs of other owners whose lease has run out by
    /// `now` (or was released), leasing them to this owner. This owner's own work is never
    /// returned, even past its lease: it is in flight here.
    async fn adopt(&self, now: DateTime<Utc>) -> Result<Adopted, StoreError>;

    /// Extends the lease on everything this owner holds, from `now`.
    async fn renew(&self, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Gives up this owner's leases (a clean stop): another process may adopt its work at once.
    async fn release(&self) -> Result<(), StoreError>;

    /// Resolves when another owner may have released work (a shared backend tells its
    /// processes), so that they adopt it at once instead of at their next periodic look.
    /// A store only one process uses never resolves it.
    async fn work_released(&self) {
        std::future::pending::<()>().await
    }
}
