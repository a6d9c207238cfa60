//! The SQLite ledger's side of group commit ([`crate::store::group`]): a batch of claims and
//! outcomes written in one transaction, each claim in a savepoint of its own.
//!
//! A claim that refuses (a code held elsewhere) or fails for a reason of its own data rolls back
//! its savepoint alone and the rest of the batch goes on. A write that fails for a reason of the
//! file or disk (full, read-only, locked), or an outcome that fails at all, fails the batch: the
//! transaction is rolled back whole, every claim in it is answered "not written" (nothing of it
//! is sent), and every outcome in it is written again alone, where a full disk can still take it
//! through the reserve ([`super::space`]). While the ledger is short of room, each write goes
//! alone that way.
//!
//! A batch is written on the drain task's own thread when the connection is free: without an
//! fsync per commit (WAL, `synchronous = NORMAL`) it takes tens to hundreds of microseconds,
//! less than handing it to another thread and back would cost. Behind a job's intake slice, a
//! read or a checkpoint, or when another process (the CLI beside a server) holds the file's
//! write lock, it goes to the blocking pool: there it may wait out SQLite's busy timeout, which
//! would otherwise hold a runtime thread, one of two on a small machine, for up to 10 s.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tokio::sync::oneshot;

use super::space::{HeldWrite, Space};
use super::LedgerError;
use crate::ports::{StoreError, StoreErrorKind};
use crate::store::group::{Batch, Counters};

/// What a claim decided about its own changes: they stand, or a refusal drops them.
pub(super) enum Written<T> {
    Kept(T),
    Dropped(T),
}

/// One write of a batch.
pub(super) enum Write {
    /// New work (a create's claim): written only while the ledger can also record its outcomes.
    Claim(Box<dyn Claim>),
    /// What calls did (outcomes, a create's answer): written even on a full disk.
    Outcome(HeldWrite, oneshot::Sender<Result<(), StoreError>>),
}

/// A claim with its caller's typed answer behind it.
pub(super) trait Claim: Send {
    /// Runs the claim's reads and writes; whether its changes stand.
    fn run(&mut self, conn: &Connection) -> Result<bool, LedgerError>;
    /// Answers the caller: what the claim decided if its writes are durable, else the error.
    fn answer(self: Box<Self>, written: Result<(), StoreError>);
}

/// A claim as a closure and the channel its caller waits on.
pub(super) struct Typed<T, F> {
    run: Option<F>,
    decided: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<Written<T>, LedgerError> + Send + 'static,
{
    pub(super) fn queued(run: F) -> (Box<dyn Claim>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (
            Box::new(Self {
                run: Some(run),
                decided: None,
                reply,
            }),
            rx,
        )
    }
}

impl<T, F> Claim for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<Written<T>, LedgerError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> Result<bool, LedgerError> {
        let run = self.run.take().expect("a claim runs once");
        let (decided, keep) = match run(conn)? {
            Written::Kept(t) => (t, true),
            Written::Dropped(t) => (t, false),
        };
        self.decided = Some(decided);
        Ok(keep)
    }

    fn answer(self: Box<Self>, written: Result<(), StoreError>) {
        let Self { decided, reply, .. } = *self;
        let answer = written.and_then(|()| {
            decided.ok_or_else(|| StoreError::new(StoreErrorKind::Unavailable, "the claim was not written"))
        });
        let _ = reply.send(answer);
    }
}

/// The ledger's one writer.
pub(super) struct Writer {
    pub(super) conn: Arc<Mutex<Connection>>,
    pub(super) space: Arc<Space>,
}

impl Batch for Writer {
    type Write = Write;

    async fn write(self: Arc<Self>, writes: Vec<Write>, counters: Arc<Counters>) {
        let writes = match self.conn.try_lock() {
            Some(mut conn) => match self.write_now(&mut conn, writes, &counters, Wait::Never) {
                Ok(()) => return,
                Err(unwritten) => unwritten,
            },
            None => writes,
        };
        // The writes' callers hear of a panic through their dropped reply channels.
        let _ = tokio::task::spawn_blocking(move || {
            let mut conn = self.conn.lock();
            let written = self.write_now(&mut conn, writes, &counters, Wait::AsConfigured);
            debug_assert!(written.is_ok(), "a patient write always answers its callers");
        })
        .await;
    }
}

/// How long a batch may wait for the file's write lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not at all: on a runtime thread, a busy file sends the batch to the blocking pool.
    Never,
    /// The connection's busy timeout ([`super::LOCK_PATIENCE`]).
    AsConfigured,
}

impl Writer {
    /// Writes a batch and answers its callers, or hands the batch back untouched when it would
    /// have to wait (`Wait::Never`) for the file's room to be made or for its write lock.
    fn write_now(
        &self,
        conn: &mut Connection,
        mut writes: Vec<Write>,
        counters: &Counters,
        wait: Wait,
    ) -> Result<(), Vec<Write>> {
        if !self.space.is_clear() {
            if wait == Wait::Never {
                return Err(writes);
            }
            self.each_alone(conn, writes, counters);
            return Ok(());
        }
        let begun = match wait {
            Wait::AsConfigured => step(conn, "BEGIN IMMEDIATE"),
            Wait::Never => {
                let _ = conn.busy_timeout(Duration::ZERO);
                let begun = step(conn, "BEGIN IMMEDIATE");
                let _ = conn.busy_timeout(super::LOCK_PATIENCE);
                if matches!(&begun, Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)) {
                    return Err(writes);
                }
                begun
            }
        };
        let mut failed: Vec<Option<LedgerError>> = Vec::with_capacity(writes.len());
        let batch = (|| {
            begun?;
            let tx = &*conn;
            for write in &mut writes {
                match write {
                    // An outcome only updates rows it names: it fails only with the file, and
                    // then the whole batch goes again without the claims.
                    Write::Outcome(outcome, _) => {
                        outcome(tx)?;
                        failed.push(None);
                    }
                    // A claim may refuse after writing (a key forgotten, a code added): its
                    // changes are its savepoint's, kept or rolled back alone.
                    Write::Claim(claim) => {
                        step(tx, "SAVEPOINT claim")?;
                        match claim.run(tx) {
                            Ok(true) => {
                                step(tx, "RELEASE claim")?;
                                failed.push(None);
                            }
                            Err(e) if e.is_write_failure() => return Err(e),
                            ran => {
                                step(tx, "ROLLBACK TO claim")?;
                                step(tx, "RELEASE claim")?;
                                failed.push(ran.err());
                            }
                        }
                    }
                }
            }
            step(tx, "COMMIT")?;
            Ok::<_, LedgerError>(())
        })();
        if batch.is_err() && !conn.is_autocommit() {
            // Rolled back whole; SQLite may already have done so itself (a full disk, say).
            let _ = step(conn, "ROLLBACK");
        }
        match batch {
            Ok(()) => {
                counters.committed();
                self.space.observe(&Ok::<(), LedgerError>(()));
                for (write, failed) in writes.into_iter().zip(failed) {
                    let written = failed.map_or(Ok(()), |e| Err(StoreError::from(e)));
                    match write {
                        Write::Claim(claim) => claim.answer(written),
                        Write::Outcome(_, reply) => {
                            let _ = reply.send(written);
                        }
                    }
                }
            }
            Err(e) => {
                // Rolled back whole: no claim of it stands, and its outcomes go again alone.
                tracing::warn!("a batch of {} ledger writes could not be committed: {e}", writes.len());
                // `/health` hears the batch's own error, and only if it is the file's or disk's.
                self.space.failed(&e);
                let why = StoreError::from(e);
                let mut outcomes = Vec::new();
                for write in writes {
                    match write {
                        Write::Claim(claim) => claim.answer(Err(why.clone())),
                        outcome => outcomes.push(outcome),
                    }
                }
                self.each_alone(conn, outcomes, counters);
            }
        }
        Ok(())
    }

    /// Each write in a transaction of its own, as the ledger's room allows.
    fn each_alone(&self, conn: &mut Connection, writes: Vec<Write>, counters: &Counters) {
        for write in writes {
            match write {
                Write::Claim(mut claim) => {
                    let written = self.space.claim(conn, |conn| {
                        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                        if claim.run(&tx)? {
                            tx.commit()?;
                        }
                        Ok(())
                    });
                    if written.is_ok() {
                        counters.committed();
                    }
                    claim.answer(written.map_err(StoreError::from));
                }
                Write::Outcome(outcome, reply) => {
                    let written = self.space.write_outcome(conn, outcome);
                    if written.is_ok() {
                        counters.committed();
                    }
                    let _ = reply.send(written.map_err(StoreError::from));
                }
            }
        }
    }
}

/// Runs a statement without rows, prepared once per connection (rusqlite's own savepoints
/// parse `SAVEPOINT` and its kin anew each time).
fn step(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}
