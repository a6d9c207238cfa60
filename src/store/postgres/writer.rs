//! The PostgreSQL ledger's side of group commit ([`crate::store::group`]): the outcomes and
//! answers of every create and job delivery that queued together, in one transaction, their
//! updates pipelined on one connection and committed once. A create's cost on the server was
//! mostly its two commits; this makes one of them shared. (One `UPDATE ... FROM unnest(...)`
//! over arrays was tried first: the planner, guessing the arrays' length, could choose to scan
//! the deliveries rather than look each one up, and a lone create's answer came later.)
//!
//! Claims are not batched here. A claim reads, decides and writes under advisory locks on its
//! code's key; in a batch it would hold those locks until the whole batch commits, and two
//! replicas' batches taking the same keys in different orders would deadlock each other whole.
//! They stay one transaction each (`Ledger::begin_create`).
//!
//! A batch that meets a deadlock (a job's tally rows are shared) is run again whole; any other
//! failure fails every write in it, and none of it was written.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::{fail, in_tx, PgError};
use crate::domain::delivery::TargetResult;
use crate::domain::request::OpKind;
use crate::ports::StoreError;
use crate::store::group::{Batch, Counters};

/// One caller's outcomes, and its create's answer if it is the create's last write.
pub(super) struct Outcomes {
    pub(super) rows: Vec<OutcomeRow>,
    pub(super) answer: Option<(i64, String)>,
    pub(super) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// A delivery's outcome as its row takes it, serialized before it reaches the writer.
pub(super) struct OutcomeRow {
    /// A revoke's outcome (its revocation's row) rather than a create's (its delivery's).
    revocation: bool,
    code_id: i64,
    upstream: String,
    status: &'static str,
    vendor_id: Option<String>,
    attempts: i32,
    result: String,
}

impl OutcomeRow {
    pub(super) fn of(op: OpKind, outcomes: &[(i64, TargetResult)]) -> Result<Vec<Self>, serde_json::Error> {
        outcomes
            .iter()
            .map(|(code_id, r)| {
                Ok(Self {
                    revocation: op == OpKind::Revoke,
                    code_id: *code_id,
                    upstream: r.upstream.clone(),
                    status: r.status.as_str(),
                    vendor_id: r.vendor_id.clone(),
                    attempts: r.attempts as i32,
                    result: serde_json::to_string(r)?,
                })
            })
            .collect()
    }
}

const DELIVERY: &str = "UPDATE deliveries SET status = $1, vendor_id = $2, attempts = attempts + $3, result = $4,
        updated_at = clock_timestamp() WHERE code_id = $5 AND upstream = $6";

const REVOCATION: &str = "UPDATE revocations SET status = $1, vendor_id = $2, attempts = attempts + $3, result = $4,
        updated_at = clock_timestamp() WHERE code_id = $5 AND upstream = $6";

const ANSWER: &str = "UPDATE requests SET response = $1, finished_at = clock_timestamp(), lease_until = NULL
  WHERE id = $2";

/// The ledger's one writer of outcomes.
pub(super) struct Writer {
    pub(super) pool: Pool,
    /// `host:port`, for messages.
    pub(super) host: Arc<str>,
}

impl Batch for Writer {
    type Write = Outcomes;

    async fn write(self: Arc<Self>, writes: Vec<Outcomes>, counters: Arc<Counters>) {
        let written = self.commit(&writes).await.map_err(|e| fail(&self.host, e));
        if written.is_ok() {
            counters.committed();
        }
        for write in writes {
            let _ = write.reply.send(written.clone());
        }
    }
}

impl Writer {
    async fn commit(&self, writes: &[Outcomes]) -> Result<(), PgError> {
        in_tx!(self, |tx| {
            let (delivery, revocation, answer) = futures::try_join!(
                tx.prepare_cached(DELIVERY),
                tx.prepare_cached(REVOCATION),
                tx.prepare_cached(ANSWER)
            )?;
            // Every statement goes out at once on the connection (the driver pipelines the
            // futures polled together) and the server runs them in this order: one round
            // trip for the batch, each a primary-key update with a plan of its own.
            let (tx, delivery, revocation, answer) = (&tx, &delivery, &revocation, &answer);
            let deliveries = writes.iter().flat_map(|w| &w.rows).map(|r| {
                futures::future::Either::Left(async move {
                    let p: [&(dyn ToSql + Sync); 6] =
                        [&r.status, &r.vendor_id, &r.attempts, &r.result, &r.code_id, &r.upstream];
                    tx.execute(if r.revocation { revocation } else { delivery }, &p).await
                })
            });
            let answers = writes.iter().filter_map(|w| w.answer.as_ref()).map(|(id, response)| {
                futures::future::Either::Right(async move { tx.execute(answer, &[response, id]).await })
            });
            futures::future::try_join_all(deliveries.chain(answers)).await?;
        })
    }
}
