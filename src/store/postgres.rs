//! The PostgreSQL ledger: the same records and guarantees as the SQLite one (`store::sqlite`),
//! for several gateway replicas on one database.
//!
//! What one process's lock file gave the SQLite ledger, the database gives here:
//! - a write that reads before it decides (the held-elsewhere check, the redefinition rule, a
//!   claim, an idempotency key) runs in one transaction under advisory locks on the code's key
//!   and on the idempotency key (`queries::lock_codes`, `queries::lock_key`), so two replicas
//!   cannot both pass a check whichever campaigns they write; the primary keys on
//!   `(code_id, upstream)` and the unique keys back them;
//! - work in flight has an owner and a lease: [`Store::adopt`] takes only work whose lease ran
//!   out (`FOR UPDATE SKIP LOCKED`, so two adopters never take the same row), and a job's
//!   deliveries are handed out only to its owner ([`Store::job_work`]);
//! - a clean stop ([`Store::release`]) frees its leases and wakes the other replicas through
//!   `NOTIFY` ([`Store::work_released`]), so they adopt at once instead of after the lease;
//! - migrations run at start-up under an advisory lock, so replicas starting together apply
//!   each once.
//!
//! A transaction that meets a deadlock or a serialization failure is run again (a job's tally
//! rows are shared by its concurrent writers); any other database failure is the store's
//! `Unavailable`, and nothing of the transaction was written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};

use crate::domain::code::{code_key, CodeConflict, CodeFilter, CodeRecord, Definition};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::job::{JobRecord, JobResult, JobState, JobWork, NewJob, StageAs, Staged};
use crate::domain::request::{
    self as rules, Begin, Claim, ClaimDecision, KeyDecision, NewCreate, NewRevoke, OpKind, SeenKey, StoredRequest,
    Unfinished,
};
use crate::ports::{Adopted, Store, StoreError, StoreErrorKind, WriteStats};
use crate::store::group::Group;
use crate::store::RequestRow;
use queries::{exec, one, opt, rows};
use writer::{OutcomeRow, Outcomes, Writer};

mod connect;
mod jobs;
mod queries;
mod schema;
pub mod tls;
mod writer;

/// What went wrong inside the PostgreSQL store; the engine sees it as a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    #[error("{}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no connection: {}", with_causes(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("it holds a record the gateway cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("it holds a record the gateway cannot read: {0}")]
    State(String),
}

/// The driver's error with what the server or the socket said (its own text is only "db
/// error" or "error connecting to server"; the cause follows in its source).
fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// An error with the causes its text leaves out: the pool says only "error performing TLS
/// handshake", the certificate's fault (`invalid peer certificate: UnknownIssuer`) is two
/// sources down, and an operator needs that part.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

impl PgError {
    /// A deadlock or a serialization failure: the transaction was rolled back and may be run
    /// again as it was.
    fn is_retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, PgError::Db(e) if e.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE))
    }
}

/// How a PostgreSQL ledger is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// This process's name as an owner of work.
    pub owner: String,
    /// How long a lease on a create or job runs without renewal.
    pub lease: chrono::Duration,
    /// Connections kept at most.
    pub max_connections: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            owner: format!("pid-{}", std::process::id()),
            lease: chrono::Duration::seconds(30),
            max_connections: 16,
        }
    }
}

/// Why the ledger could not be opened. Never shows the URL: it may carry a password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the variable does not hold a postgres:// URL this gateway can read")]
    Url,
    #[error("PostgreSQL at {host} does not answer: {source}")]
    Connect { host: String, source: PgErrorMessage },
    #[error("PostgreSQL at {host}: the ledger's schema could not be brought up to date: {source}")]
    Migrate { host: String, source: PgErrorMessage },
    /// The URL's TLS parameters (libpq's) cannot be read.
    #[error("the URL's TLS parameters: {0}")]
    TlsSettings(String),
    /// A file the TLS parameters name cannot be used (a CA, a client certificate or key).
    #[error("PostgreSQL at {host}: TLS: {source}")]
    Tls { host: String, source: PgErrorMessage },
}

/// A database error in words (never the URL, which the driver's errors do not carry).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PgErrorMessage(String);

/// The PostgreSQL store: a pool of connections, and this process's name as an owner.
#[derive(Clone)]
pub struct Ledger {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    /// The TLS every connection of the ledger is made with (see [`tls`]).
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// `host:port` of the database, for messages (never the user or password).
    host: Arc<str>,
    owner: Arc<str>,
    lease: chrono::Duration,
    /// How far this process's clock reads from true time: zero, except in a test of a replica
    /// whose clock is wrong (see [`Ledger::db_clock`]).
    clock_error: chrono::Duration,
    released: Arc<tokio::sync::Notify>,
    /// Outcomes and answers, committed in batches ([`writer`]).
    writer: Group<Writer>,
}

/// The channel a clean stop notifies on: its work is free for the others at once.
const RELEASED: &str = "promo_gateway_released";

/// How often a transaction that met a deadlock is tried, in all.
pub(crate) const ATTEMPTS: u32 = 8;

/// Runs `$body` in a transaction on a pooled connection (`$tx` names it) and commits it; a body
/// that returns early (`return Ok(..)` from inside) rolls back. A deadlock or serialization
/// failure runs it again, after a short random pause.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let result: Result<_, $crate::store::postgres::PgError> = async {
                let mut client = $store.pool.get().await?;
                let $tx = client.transaction().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if e.is_retryable() && attempt + 1 < $crate::store::postgres::ATTEMPTS => {
                    attempt += 1;
                    let pause = rand::random::<u64>() % (5 << attempt);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use in_tx;

/// A store error in the engine's terms, naming the database (never its password).
fn fail(host: &str, e: PgError) -> StoreError {
    let kind = match &e {
        PgError::Corrupt(_) | PgError::State(_) => StoreErrorKind::Corrupt,
        e if e.is_retryable() => StoreErrorKind::Conflict,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, format!("the ledger (PostgreSQL at {host}): {e}"))
}

/// A time on the database's clock: `clock_timestamp()` moved by the seconds of parameter `$n`
/// (see [`Ledger::db_clock`]).
macro_rules! db_time {
    ($n:literal) => {
        concat!("(clock_timestamp() + make_interval(secs => $", $n, "))")
    };
}
pub(crate) use db_time;

/// The caller's time carried over onto the database's clock (see [`Ledger::db_clock`]).
#[derive(Clone, Copy)]
struct DbClock {
    /// How far the caller's `now` is from this machine's clock.
    shift: chrono::Duration,
}

impl DbClock {
    /// The parameter of [`db_time!`] for the caller's `now` plus `plus`: seconds to add to
    /// the database's clock.
    fn at(self, plus: chrono::Duration) -> f64 {
        let moved = self.shift + plus;
        moved
            .num_microseconds()
            .map_or(moved.num_seconds() as f64, |us| us as f64 / 1e6)
    }

    fn now(self) -> f64 {
        self.at(chrono::Duration::zero())
    }
}

/// Writes an operation's request row; its id. Times are the database clock's (`db_time!`).
async fn insert_request<C: GenericClient>(
    tx: &C,
    row: &RequestRow<'_>,
    key_expires_at: Option<f64>,
    owner: &str,
    lease_until: f64,
) -> Result<i64, PgError> {
    let found = one(
        tx,
        concat!(
            "INSERT INTO requests (idempotency_key, key_expires_at, body, code_id, targets, owner, lease_until,
                                   operation, requested_by)
             VALUES ($1, ",
            db_time!(2),
            ", $3, $4, $5, $6, ",
            db_time!(7),
            ", $8, $9) RETURNING id"
        ),
        &[
            &row.key,
            &key_expires_at,
            &row.body,
            &row.code_id,
            &row.targets,
            &owner,
            &lease_until,
            &row.op.as_str(),
            &row.requested_by,
        ],
    )
    .await?;
    Ok(found.get(0))
}

/// What an idempotency key says before a request is recorded, as [`rules::decide_key`] rules
/// (an expired key is forgotten here), on the database's clock (`now`, a [`db_time!`]
/// parameter; `caller_now` where the key is new): `Some` answer when the request goes no
/// further. Takes the key's lock, so that one key is decided once across replicas.
async fn key_check(
    tx: &deadpool_postgres::Transaction<'_>,
    key: Option<&str>,
    body: &str,
    now: f64,
    caller_now: DateTime<Utc>,
) -> Result<Option<Begin>, PgError> {
    let Some(key) = key else { return Ok(None) };
    queries::lock_key(tx, key).await?;
    let seen = opt(
        tx,
        concat!(
            "SELECT id, body, key_expires_at, response, ",
            db_time!(2),
            " FROM requests WHERE idempotency_key = $1"
        ),
        &[&key, &now],
    )
    .await?;
    let now: DateTime<Utc> = seen.as_ref().map_or(caller_now, |r| r.get(4));
    let seen = seen.map(|r| SeenKey {
        request_id: r.get(0),
        body: r.get(1),
        expires_at: r.get(2),
        response: r.get(3),
    });
    Ok(match rules::decide_key(seen, body, now) {
        KeyDecision::Fresh => None,
        KeyDecision::Forget(id) => {
            exec(tx, "UPDATE requests SET idempotency_key = NULL WHERE id = $1", &[&id]).await?;
            None
        }
        KeyDecision::Reused(id) => Some(Begin::KeyReused(id)),
        KeyDecision::InProgress(id) => Some(Begin::InProgress(id)),
        KeyDecision::Replay(response) => Some(Begin::Replay(response)),
    })
}

impl Ledger {
    /// Leases (and idempotency keys' windows) are written and compared on the database's
    /// clock, the one clock all replicas share. On each replica's own clock, a replica whose
    /// clock runs behind would write leases that run out early for the others, and one whose
    /// clock runs ahead would adopt work whose owner is alive and sending: the same code sent
    /// twice. `now` is the caller's time, which is this machine's clock in production, and time
    /// moved forward by hand in tests; only how far it is from this machine's clock is carried
    /// over, read once so that every time of one operation is of the same instant.
    fn db_clock(&self, now: DateTime<Utc>) -> DbClock {
        DbClock {
            shift: now - (Utc::now() + self.clock_error),
        }
    }

    fn fail(&self, e: PgError) -> StoreError {
        fail(&self.host, e)
    }

    /// Outcomes (and a request's answer), committed with whatever other outcomes queued.
    async fn outcomes(
        &self,
        op: OpKind,
        outcomes: &[(i64, TargetResult)],
        answer: Option<(i64, String)>,
    ) -> Result<(), StoreError> {
        let rows = OutcomeRow::of(op, outcomes).map_err(|e| self.fail(e.into()))?;
        let (reply, written) = tokio::sync::oneshot::channel();
        self.writer.submit(Outcomes { rows, answer, reply });
        written.await.unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "the ledger's writer stopped before answering; the write may not have been recorded",
            ))
        })
    }
}

#[async_trait::async_trait]
impl Store for Ledger {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn problem(&self) -> Option<String> {
        let probe = async {
            let client = self.pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok::<_, PgError>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), probe).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("the ledger (PostgreSQL at {}) does not answer: {e}", self.host)),
            Err(_) => Some(format!(
                "the ledger (PostgreSQL at {}) did not answer within 2 s",
                self.host
            )),
        }
    }

    /// As the server sees this connection (`pg_stat_ssl`): the one account that cannot be
    /// mistaken about what crossed the network.
    async fn transport(&self) -> Option<crate::ports::Transport> {
        let probe = async {
            let client = self.pool.get().await?;
            let row = client
                .query_one("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
                .await?;
            Ok::<_, PgError>(crate::ports::Transport {
                tls: row.get(0),
                version: row.get(1),
            })
        };
        tokio::time::timeout(Duration::from_secs(2), probe).await.ok()?.ok()
    }

    async fn begin_create(&self, create: NewCreate) -> Result<Begin, StoreError> {
        let body = create.body.to_string();
        let names: Vec<String> = create.targets.iter().map(|t| t.upstream.clone()).collect();
        let def = &create.definition;
        let clock = self.db_clock(create.now);
        let lease_until = clock.at(self.lease);
        // An idempotency key's window, like a lease, runs on the database's clock: on each
        // replica's own, a key could still replay on one replica and be forgotten on another.
        let key_expires = create.key.as_ref().map(|_| clock.at(create.key_window));
        let now = clock.now();
        in_tx!(self, |tx| {
            if let Some(answer) = key_check(&tx, create.key.as_deref(), &body, now, create.now).await? {
                return Ok(answer);
            }
            queries::lock_codes(&tx, std::slice::from_ref(&def.key())).await?;
            // A refusal returns before the commit: the transaction is rolled back.
            if let Some(conflict) = queries::staged_conflict(&tx, def, None).await? {
                return Ok(Begin::Conflict(conflict));
            }
            let code_id = match queries::find_or_add_code(&tx, def).await? {
                Ok(id) => id,
                Err(conflict) => return Ok(Begin::Conflict(conflict)),
            };
            if let Some(revoked_at) = queries::revoked_at(&tx, code_id).await? {
                let existing = def.code.clone();
                return Ok(Begin::Conflict(CodeConflict::Revoked { existing, revoked_at }));
            }
            if let Some(conflict) = queries::held_elsewhere(&tx, &def.campaign, &def.key(), &names).await? {
                return Ok(Begin::Conflict(conflict));
            }
            let row = RequestRow {
                op: OpKind::Create,
                key: create.key.as_deref(),
                body: &body,
                code_id,
                targets: &names,
                requested_by: create.requested_by.as_deref(),
            };
            let request_id = insert_request(&tx, &row, key_expires, &self.owner, lease_until).await?;
            let mut claims = Vec::with_capacity(create.targets.len());
            for t in &create.targets {
                let current = queries::delivery(&tx, code_id, &t.upstream).await?;
                let decided = rules::decide_claim(current.as_ref().map(|(status, result)| (*status, result.is_some())));
                let claim = match (decided, current) {
                    (ClaimDecision::Done, Some((_, Some(result)))) => {
                        Claim::Done(Box::new(serde_json::from_str(&result)?))
                    }
                    (ClaimDecision::Elsewhere, _) => Claim::Elsewhere,
                    _ => {
                        queries::put_delivery(&tx, code_id, &t.upstream, t.settled.as_ref(), Some(request_id), None)
                            .await?;
                        if t.settled.is_some() {
                            Claim::Settled
                        } else {
                            Claim::Send
                        }
                    }
                };
                claims.push(claim);
            }
            Begin::New {
                request_id,
                code_id,
                claims,
            }
        })
        .map_err(|e| self.fail(e))
    }

    async fn begin_revoke(&self, revoke: NewRevoke) -> Result<Begin, StoreError> {
        let body = revoke.body.to_string();
        let names: Vec<String> = revoke.targets.iter().map(|t| t.upstream.clone()).collect();
        let clock = self.db_clock(revoke.now);
        let lease_until = clock.at(self.lease);
        let key_expires = revoke.key.as_ref().map(|_| clock.at(revoke.key_window));
        let now = clock.now();
        let key = code_key(&revoke.code);
        in_tx!(self, |tx| {
            if let Some(answer) = key_check(&tx, revoke.key.as_deref(), &body, now, revoke.now).await? {
                return Ok(answer);
            }
            // The code's lock, as a create or a job's intake of it takes: a revoke and a create
            // of one code are decided one after the other on every replica.
            queries::lock_codes(&tx, std::slice::from_ref(&key)).await?;
            let Some(row) = opt(
                &tx,
                "SELECT id FROM codes WHERE campaign = $1 AND code_key = $2",
                &[&revoke.campaign, &key],
            )
            .await?
            else {
                return Ok(Begin::NoSuchCode);
            };
            let code_id: i64 = row.get(0);
            // The first revocation's time stands; from it on, nothing delivers the code again.
            let revoked_at: DateTime<Utc> = one(
                &tx,
                concat!(
                    "UPDATE codes SET revoked_at = COALESCE(revoked_at, ",
                    db_time!(2),
                    ") WHERE id = $1 RETURNING revoked_at"
                ),
                &[&code_id, &now],
            )
            .await?
            .get(0);
            let row = RequestRow {
                op: OpKind::Revoke,
                key: revoke.key.as_deref(),
                body: &body,
                code_id,
                targets: &names,
                requested_by: revoke.requested_by.as_deref(),
            };
            let request_id = insert_request(&tx, &row, key_expires, &self.owner, lease_until).await?;
            let mut claims = Vec::with_capacity(revoke.targets.len());
            for t in &revoke.targets {
                let revocation = queries::state(&tx, OpKind::Revoke, code_id, &t.upstream).await?;
                let delivery = queries::delivery(&tx, code_id, &t.upstream).await?;
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
                        queries::put_revocation(&tx, code_id, &t.upstream, None, request_id).await?;
                        Claim::CreateInFlight
                    }
                    rules::RevokeDecision::NotDelivered(status) => Claim::NotDelivered(status),
                    rules::RevokeDecision::Take => {
                        queries::put_revocation(&tx, code_id, &t.upstream, t.settled.as_ref(), request_id).await?;
                        if t.settled.is_some() {
                            Claim::Settled
                        } else {
                            Claim::Send
                        }
                    }
                };
                claims.push(claim);
            }
            Begin::Revoking {
                request_id,
                code_id,
                revoked_at,
                claims,
            }
        })
        .map_err(|e| self.fail(e))
    }

    async fn record(&self, op: OpKind, outcomes: Vec<(i64, TargetResult)>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        self.outcomes(op, &outcomes, None).await
    }

    async fn finish_request(
        &self,
        request_id: i64,
        op: OpKind,
        response: String,
        outcomes: Vec<(i64, TargetResult)>,
    ) -> Result<(), StoreError> {
        self.outcomes(op, &outcomes, Some((request_id, response))).await
    }

    async fn request(&self, request_id: i64) -> Result<Option<StoredRequest>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            let Some(row) = opt(
                &c,
                "SELECT r.code_id, r.targets, r.received_at, r.finished_at, r.response, c.code, r.operation,
                        r.requested_by
                   FROM requests r JOIN codes c ON c.id = r.code_id WHERE r.id = $1",
                &[&request_id],
            )
            .await?
            else {
                return Ok(None);
            };
            let (code_id, targets, finished_at, response): (i64, Vec<String>, Option<DateTime<Utc>>, Option<String>) =
                (row.get(0), row.get(1), row.get(3), row.get(4));
            let operation = OpKind::from_name(row.get(6));
            let results = match &response {
                Some(r) => rules::answered_results(r)?,
                None => queries::current_results(&c, operation, code_id, &targets).await?,
            };
            Ok::<_, PgError>(Some(StoredRequest {
                request_id,
                operation,
                code: row.get(5),
                requested_by: row.get(7),
                received_at: row.get(2),
                finished: finished_at.is_some(),
                pending: queries::pending_of(&c, operation, code_id, &targets, request_id).await?,
                results,
            }))
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn create_body(
        &self,
        campaign: String,
        code: String,
        upstream: String,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            let row = opt(
                &c,
                "SELECT r.body FROM codes c
                   JOIN deliveries d ON d.code_id = c.id AND d.upstream = $3
                   JOIN requests r ON r.id = d.request_id
                  WHERE c.campaign = $1 AND c.code_key = $2",
                &[&campaign, &code_key(&code), &upstream],
            )
            .await?;
            let body = row.map(|r| serde_json::from_str::<serde_json::Value>(r.get::<_, &str>(0)));
            Ok::<_, PgError>(body.transpose()?)
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn target_results(
        &self,
        op: OpKind,
        code_id: i64,
        targets: Vec<String>,
    ) -> Result<Vec<TargetResult>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            queries::current_results(&c, op, code_id, &targets).await
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn unfinished_requests(&self) -> Result<Vec<Unfinished>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            queries::unfinished(&c, None).await
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn code(&self, code: String, campaign: Option<String>) -> Result<Vec<CodeRecord>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            let ids = rows(
                &c,
                "SELECT id FROM codes WHERE code_key = $1 AND ($2::text IS NULL OR campaign = $2) ORDER BY id",
                &[&code_key(&code), &campaign],
            )
            .await?;
            let mut out = Vec::new();
            for r in ids {
                out.extend(queries::read_code(&c, r.get(0)).await?);
            }
            Ok(out)
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn code_id(&self, campaign: String, code: String) -> Result<Option<i64>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            let found = rows(
                &c,
                "SELECT id FROM codes WHERE campaign = $1 AND code_key = $2",
                &[&campaign, &code_key(&code)],
            )
            .await?;
            Ok(found.first().map(|r| r.get(0)))
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn codes(&self, filter: CodeFilter) -> Result<Vec<(i64, CodeRecord)>, StoreError> {
        let read = async {
            let c = self.pool.get().await?;
            let ids = rows(
                &c,
                "SELECT c.id FROM codes c WHERE c.id > $1 AND ($2::text IS NULL OR c.campaign = $2)
                   AND ($3::text IS NULL AND $4::text IS NULL OR EXISTS (
                       SELECT 1 FROM deliveries d WHERE d.code_id = c.id
                          AND ($3::text IS NULL OR d.upstream = $3) AND ($4::text IS NULL OR d.status = $4)))
                 ORDER BY c.id LIMIT $5",
                &[
                    &filter.after,
                    &filter.campaign,
                    &filter.upstream,
                    &filter.status.map(Status::as_str),
                    &(filter.limit as i64),
                ],
            )
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for r in ids {
                let id: i64 = r.get(0);
                if let Some(record) = queries::read_code(&c, id).await? {
                    out.push((id, record));
                }
            }
            Ok(out)
        };
        read.await.map_err(|e| self.fail(e))
    }

    async fn begin_job(&self, job: NewJob) -> Result<i64, StoreError> {
        self.begin_job_row(job).await.map_err(|e| self.fail(e))
    }

    async fn stage(&self, job_id: i64, items: Vec<Definition>, check: StageAs) -> Result<Vec<Staged>, StoreError> {
        self.stage_items(job_id, items, check).await.map_err(|e| self.fail(e))
    }

    async fn stage_revokes(&self, job_id: i64, codes: Vec<String>) -> Result<Vec<Staged>, StoreError> {
        self.stage_revoke_items(job_id, codes).await.map_err(|e| self.fail(e))
    }

    async fn commit_job(&self, job_id: i64) -> Result<(), StoreError> {
        let accept = async {
            let c = self.pool.get().await?;
            // Accepted: from here the job is finished even across a crash (by its adopter).
            exec(&c, "UPDATE jobs SET state = 'promoting' WHERE id = $1", &[&job_id]).await?;
            drop(c);
            self.commit(job_id).await
        };
        accept.await.map_err(|e| self.fail(e))
    }

    async fn discard_job(&self, job_id: i64) -> Result<(), StoreError> {
        self.discard_staged(job_id).await.map_err(|e| self.fail(e))
    }

    async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        self.job_record(id).await.map_err(|e| self.fail(e))
    }

    async fn job_counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, StoreError> {
        self.counts(id).await.map_err(|e| self.fail(e))
    }

    async fn job_work(
        &self,
        id: i64,
        upstream: String,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<JobWork>, StoreError> {
        self.work(id, &upstream, after_seq, limit)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn job_results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, StoreError> {
        self.results(id, status, upstream, after, limit)
            .await
            .map_err(|e| self.fail(e))
    }

    async fn retry_job(&self, id: i64) -> Result<u64, StoreError> {
        self.retry(id).await.map_err(|e| self.fail(e))
    }

    async fn end_job(&self, id: i64, state: JobState) -> Result<bool, StoreError> {
        self.end(id, state).await.map_err(|e| self.fail(e))
    }

    async fn adopt(&self, now: DateTime<Utc>) -> Result<Adopted, StoreError> {
        self.take_over(now).await.map_err(|e| self.fail(e))
    }

    async fn renew(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let until = self.db_clock(now).at(self.lease);
        in_tx!(self, |tx| {
            exec(
                &tx,
                concat!(
                    "UPDATE requests SET lease_until = ",
                    db_time!(2),
                    " WHERE owner = $1 AND finished_at IS NULL"
                ),
                &[&&*self.owner, &until],
            )
            .await?;
            exec(
                &tx,
                concat!(
                    "UPDATE jobs SET lease_until = ",
                    db_time!(2),
                    " WHERE owner = $1 AND state IN ('staging', 'promoting', 'running')"
                ),
                &[&&*self.owner, &until],
            )
            .await?;
        })
        .map_err(|e| self.fail(e))
    }

    async fn release(&self) -> Result<(), StoreError> {
        // No owner, so that no renewal of this process's leases takes the work back.
        in_tx!(self, |tx| {
            exec(
                &tx,
                "UPDATE requests SET owner = NULL, lease_until = NULL WHERE owner = $1 AND finished_at IS NULL",
                &[&&*self.owner],
            )
            .await?;
            exec(
                &tx,
                "UPDATE jobs SET owner = NULL, lease_until = NULL WHERE owner = $1 AND state = 'running'",
                &[&&*self.owner],
            )
            .await?;
            // Delivered with the commit: the other replicas adopt what was released at once.
            exec(&tx, &format!("NOTIFY {RELEASED}"), &[]).await?;
        })
        .map_err(|e| self.fail(e))
    }

    async fn work_released(&self) {
        self.released.notified().await;
    }
}

#[cfg(test)]
mod tests;
