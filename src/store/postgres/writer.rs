//! The PostgreSQL ledger's side of group commit ([`crate::store::group`]): the outcomes and
//! answers of every create and job delivery that queued together, in one transaction of two
//! statements over arrays (one `UPDATE ... FROM unnest(...)` for the deliveries, one for the
//! creates' answers), sent together on one connection and committed once. A create's cost on
//! the server was mostly its two commits; this makes one of them shared.
//!
//! Claims are not batched here. A claim reads, decides and writes under advisory locks on its
//! code's key; in a batch it would hold those locks until the whole batch commits, and two
//! replicas' batches taking the same keys in different orders would deadlock each other whole.
//! They stay one transaction each (`Ledger::begin_create`).
//!
//! A batch that meets a deadlock (a job's tally rows are shared) is run again whole; any other
//! failure fails every write in it, and none of it was written.

use std::collections::HashSet;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio::sync::oneshot;

use super::queries::exec;
use super::{fail, in_tx, PgError};
use crate::domain::delivery::TargetResult;
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
    code_id: i64,
    upstream: String,
    status: &'static str,
    vendor_id: Option<String>,
    attempts: i32,
    result: String,
}

impl OutcomeRow {
    pub(super) fn of(outcomes: &[(i64, TargetResult)]) -> Result<Vec<Self>, serde_json::Error> {
        outcomes
            .iter()
            .map(|(code_id, r)| {
                Ok(Self {
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

const DELIVERIES: &str = "UPDATE deliveries d SET status = u.status, vendor_id = u.vendor_id,
        attempts = d.attempts + u.attempts, result = u.result, updated_at = clock_timestamp()
   FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[])
        AS u (code_id, upstream, status, vendor_id, attempts, result)
  WHERE d.code_id = u.code_id AND d.upstream = u.upstream";

const ANSWERS: &str = "UPDATE requests r SET response = u.response, finished_at = clock_timestamp(), lease_until = NULL
   FROM unnest($1::bigint[], $2::text[]) AS u (id, response)
  WHERE r.id = u.id";

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
        let rows: Vec<&OutcomeRow> = writes.iter().flat_map(|w| &w.rows).collect();
        let answers: Vec<&(i64, String)> = writes.iter().filter_map(|w| w.answer.as_ref()).collect();
        // A delivery twice in one batch (its outcome and a later one) is written in order, row
        // by row: one `UPDATE ... FROM` would apply only one of them.
        let mut seen = HashSet::new();
        let repeated = !rows.iter().all(|r| seen.insert((r.code_id, r.upstream.as_str())));
        in_tx!(self, |tx| {
            let deliveries = async {
                if repeated {
                    for r in &rows {
                        let one = [r.code_id];
                        exec(
                            &tx,
                            DELIVERIES,
                            &[
                                &&one[..],
                                &&[r.upstream.as_str()][..],
                                &&[r.status][..],
                                &&[r.vendor_id.as_deref()][..],
                                &&[r.attempts][..],
                                &&[r.result.as_str()][..],
                            ],
                        )
                        .await?;
                    }
                } else if !rows.is_empty() {
                    let code_ids: Vec<i64> = rows.iter().map(|r| r.code_id).collect();
                    let upstreams: Vec<&str> = rows.iter().map(|r| r.upstream.as_str()).collect();
                    let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
                    let vendor_ids: Vec<Option<&str>> = rows.iter().map(|r| r.vendor_id.as_deref()).collect();
                    let attempts: Vec<i32> = rows.iter().map(|r| r.attempts).collect();
                    let results: Vec<&str> = rows.iter().map(|r| r.result.as_str()).collect();
                    exec(
                        &tx,
                        DELIVERIES,
                        &[&code_ids, &upstreams, &statuses, &vendor_ids, &attempts, &results],
                    )
                    .await?;
                }
                Ok::<_, PgError>(())
            };
            let finished = async {
                if !answers.is_empty() {
                    let ids: Vec<i64> = answers.iter().map(|(id, _)| *id).collect();
                    let responses: Vec<&str> = answers.iter().map(|(_, r)| r.as_str()).collect();
                    exec(&tx, ANSWERS, &[&ids, &responses]).await?;
                }
                Ok::<_, PgError>(())
            };
            // Both statements go out at once on the connection (the driver pipelines them).
            futures::try_join!(deliveries, finished)?;
        })
    }
}
