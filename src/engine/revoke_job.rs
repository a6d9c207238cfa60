//! A revoke sync job's work on one target: each page of its codes planned from the ledger, as
//! a single revoke plans them (`Engine::plan_revoke`), and sent one code a call, or in the
//! vendor's bulk call where it has one (Moltin), halving a refused batch as a create job does.
//!
//! The job's codes were marked revoked when it was accepted, so from then on no create, job,
//! mirror, retry or recovery sends them again; a code a create was delivering at that moment
//! waits here for the create's outcome (see `Engine::run_target`).

use std::time::Duration;

use futures::future::BoxFuture;
use promo_adapters::operation::{Operation, RevokeCall, RevokePlan, RevokeTarget};
use promo_adapters::read::{ListPlan, ReadOutcome};
use promo_adapters::{BuildContext, PromoCode, Warning};
use serde_json::{Map, Value};

use super::jobs::{chunked, refused_the_caller, Gate};
use super::{refused, revoke, Call, Engine, Plan};
use crate::auth::Credentials;
use crate::domain::code::CodeRecord;
use crate::domain::job::{JobRecord, JobWork, WorkItem};
use crate::domain::request::OpKind;
use crate::engine::{ErrorKind, Status, TargetResult};
use crate::ports::StoreError;
use crate::upstream::{Delivery, Patience, Upstream};

/// How long a revoke job's code waits for a create that is delivering it to a target.
pub(super) const CREATE_WAIT: Duration = Duration::from_secs(30);
/// How often the job's codes that wait are read again.
pub(super) const CREATE_POLL: Duration = Duration::from_millis(250);
/// Revoke calls of one target in flight at once from a job (the upstream's own cap still holds).
const CONCURRENCY: usize = 32;
/// Bulk calls in flight at once.
const BATCHES: usize = 4;

/// One code ready to be revoked at one target: its single call, and what a bulk call needs.
struct Ready {
    code_id: i64,
    code: PromoCode,
    vendor_id: String,
    passthrough: Option<Map<String, Value>>,
    call: RevokeCall,
}

impl Engine {
    /// Revokes one page of a revoke job's codes at one target; how many codes wait for a
    /// create in flight (left `pending`, read again later), unless `give_up`, when they are
    /// settled as failed with nothing sent.
    pub(super) async fn revoke_page(
        &self,
        job: &JobRecord,
        target: &str,
        upstream: &Upstream,
        page: Vec<JobWork>,
        gate: &Gate,
        give_up: bool,
    ) -> Result<usize, StoreError> {
        let delete = job.options.get("delete").and_then(Value::as_bool).unwrap_or(false);
        let mut settled = Vec::new();
        let mut ready = Vec::new();
        let mut waiting = 0;
        for w in page {
            let WorkItem::Revoke(record) = w.item else {
                unreachable!("a revoke job's work is revokes")
            };
            if record
                .deliveries
                .get(target)
                .is_some_and(|d| d.status == Status::Pending)
            {
                if give_up {
                    let why = format!(
                        "a create was still delivering the code after {} s",
                        CREATE_WAIT.as_secs()
                    );
                    settled.push((w.code_id, revoke::undecided(target, Some(upstream.vendor), &why)));
                } else {
                    waiting += 1;
                }
                continue;
            }
            match self.plan_job_revoke(target, &record, delete).await? {
                Planned::Done(result) => settled.push((w.code_id, result)),
                Planned::Send {
                    code,
                    vendor_id,
                    passthrough,
                    call,
                } => ready.push(Ready {
                    code_id: w.code_id,
                    code,
                    vendor_id,
                    passthrough,
                    call,
                }),
            }
        }
        self.store.record(OpKind::Revoke, settled).await?;
        let batch = upstream.adapter.revoke_batch_size();
        if batch > 1 {
            let ctx = &self.job_context(job, target, upstream);
            let sends = chunked(ready, batch)
                .into_iter()
                .map(|chunk| send_batch(target, upstream, ctx, gate, delete, chunk))
                .collect();
            self.send_all(OpKind::Revoke, gate, sends, BATCHES).await?;
        } else {
            let sends = ready
                .into_iter()
                .map(|r| async move {
                    let result = revoke::send(target, &r.code, upstream, &r.call, Patience::Background(gate)).await;
                    vec![(r.code_id, result)]
                })
                .collect();
            self.send_all(OpKind::Revoke, gate, sends, CONCURRENCY).await?;
        }
        Ok(waiting)
    }

    /// Once a revoke job's bulk calls at `target` are done, reads the vendor's list back once,
    /// as lifecycle/moltin.md §6b says to ("after a 204, list the promotion's codes and retry,
    /// one by one, any code that is still there"): a code this job revoked in a bulk call that
    /// the list still holds is revoked again in its own call, whose answer is the code's own.
    /// It runs on every run of the job's worker there, so a job resumed after a stop reads back
    /// too; what it finds gone needs nothing. A list that cannot be read leaves the bulk
    /// answers as they are (their lines say they were for the batch).
    pub(super) async fn read_back_bulk(
        &self,
        job: &JobRecord,
        target: &str,
        upstream: &Upstream,
        gate: &Gate,
    ) -> Result<(), StoreError> {
        let Credentials::Ready(auth) = &upstream.credentials else {
            return Ok(());
        };
        let delete = job.options.get("delete").and_then(Value::as_bool).unwrap_or(false);
        let ctx = self.job_context(job, target, upstream);
        let adapter = upstream.adapter.as_ref();
        let mut after = None;
        loop {
            if !gate.open() {
                return Ok(());
            }
            let Ok(ListPlan::Page(request)) = adapter.plan_list(after.as_ref(), &ctx) else {
                return Ok(());
            };
            let cursor = after.clone();
            let sent = upstream
                .send_as(auth, &request, Operation::Read, Patience::Background(gate), |a| {
                    adapter.parse_list(cursor.as_ref(), a)
                })
                .await;
            let page = match sent.delivery {
                Delivery::Answered(ReadOutcome::Found(page)) => page,
                other => {
                    tracing::warn!(job = job.id, upstream = %target, outcome = ?other, "could not read the codes back after the bulk revokes; their bulk answers stand");
                    return Ok(());
                }
            };
            let mut again = Vec::new();
            for listed in &page.codes {
                let Some(record) = self
                    .store
                    .code(listed.code.clone(), Some(job.campaign.clone()))
                    .await?
                    .into_iter()
                    .find(|r| r.code == listed.code)
                else {
                    continue;
                };
                let ours = record
                    .revocations
                    .get(target)
                    .is_some_and(|r| r.status == Status::Revoked && r.job_id == Some(job.id));
                if ours {
                    again.push(record);
                }
            }
            for record in again {
                if let Some((code_id, result)) =
                    self.revoke_again(target, upstream, &ctx, gate, &record, delete).await?
                {
                    self.store.record(OpKind::Revoke, vec![(code_id, result)]).await?;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// A code the vendor still lists after a bulk revoke, revoked in its own call.
    async fn revoke_again(
        &self,
        target: &str,
        upstream: &Upstream,
        ctx: &BuildContext<'_>,
        gate: &Gate,
        record: &CodeRecord,
        delete: bool,
    ) -> Result<Option<(i64, TargetResult)>, StoreError> {
        let (Ok(code), Some(vendor_id)) = (
            self.promo_of(record),
            record.deliveries.get(target).and_then(|d| d.vendor_id.clone()),
        ) else {
            return Ok(None);
        };
        let Some(code_id) = self
            .store
            .code_id(record.campaign.clone().unwrap_or_default(), record.code.clone())
            .await?
        else {
            return Ok(None);
        };
        let revoke_target = RevokeTarget {
            code: &code,
            vendor_id: &vendor_id,
            passthrough: None,
        };
        let Ok(RevokePlan::Call(call)) = upstream.adapter.plan_revoke(&revoke_target, delete, ctx) else {
            return Ok(None);
        };
        let mut result = revoke::send(target, &code, upstream, &call, Patience::Background(gate)).await;
        if result.status == Status::Pending {
            // Withheld: the job stopped; the bulk answer stands until its next run reads back.
            return Ok(None);
        }
        result.warnings.push(Warning {
            field: "code".into(),
            message: format!(
                "{} still listed the code after the bulk call that revoked it: revoked again in its own call, as its document advises",
                upstream.vendor
            ),
        });
        Ok(Some((code_id, result)))
    }

    /// One code of a revoke job at one target, planned as a single revoke plans it.
    async fn plan_job_revoke(&self, target: &str, record: &CodeRecord, delete: bool) -> Result<Planned, StoreError> {
        let promo = self.promo_of(record);
        let mut passthrough = self
            .passthroughs(record, std::slice::from_ref(&target.to_owned()))
            .await?;
        let passthrough = passthrough.remove(target);
        let plan = self
            .plan_revoke(target, record, promo.as_ref(), delete, passthrough.as_ref())
            .settle_credentials(target);
        Ok(match (plan, promo) {
            (
                Plan::Send {
                    call: Call::Revoke(call),
                    ..
                },
                Ok(code),
            ) => Planned::Send {
                code,
                // A plan that sends was made from the delivery's id.
                vendor_id: record
                    .deliveries
                    .get(target)
                    .and_then(|d| d.vendor_id.clone())
                    .unwrap_or_default(),
                passthrough,
                call,
            },
            (Plan::Done(result), _) => Planned::Done(result),
            (Plan::Send { upstream, call }, _) => Planned::Done(super::ready(target, &upstream, &call)),
        })
    }
}

/// A revoke job's code, planned.
enum Planned {
    Done(TargetResult),
    Send {
        code: PromoCode,
        vendor_id: String,
        passthrough: Option<Map<String, Value>>,
        call: RevokeCall,
    },
}

/// Revokes codes in one bulk call. A batch the vendor refuses is split in halves until the
/// codes at fault stand alone (each then sent in its single call, whose answer is documented
/// for that code), so one bad code does not sink its neighbours.
fn send_batch<'a>(
    target: &'a str,
    upstream: &'a Upstream,
    ctx: &'a BuildContext<'a>,
    gate: &'a Gate,
    delete: bool,
    chunk: Vec<Ready>,
) -> BoxFuture<'a, Vec<(i64, TargetResult)>> {
    Box::pin(async move {
        if let [r] = chunk.as_slice() {
            let result = revoke::send(target, &r.code, upstream, &r.call, Patience::Background(gate)).await;
            return vec![(r.code_id, result)];
        }
        let targets: Vec<RevokeTarget<'_>> = chunk
            .iter()
            .map(|r| RevokeTarget {
                code: &r.code,
                vendor_id: &r.vendor_id,
                passthrough: r.passthrough.as_ref(),
            })
            .collect();
        let call = match upstream.adapter.plan_revoke_batch(&targets, delete, ctx) {
            Ok(RevokePlan::Call(call)) => call,
            Ok(RevokePlan::Unsupported { reason }) => {
                return chunk
                    .iter()
                    .map(|r| {
                        let result = TargetResult::new(target, Some(upstream.vendor), Status::Unsupported)
                            .with_error(ErrorKind::UnsupportedOperation, reason.clone());
                        (r.code_id, result)
                    })
                    .collect()
            }
            Err(e) => {
                return chunk
                    .iter()
                    .map(|r| (r.code_id, refused(target, upstream.vendor, e.clone())))
                    .collect()
            }
        };
        let sent = revoke::send(target, &chunk[0].code, upstream, &call, Patience::Background(gate)).await;
        match sent.status {
            Status::Rejected if !refused_the_caller(&sent) => {
                let mut left = chunk;
                let right = left.split_off(left.len() / 2);
                let mut out = send_batch(target, upstream, ctx, gate, delete, left).await;
                out.extend(send_batch(target, upstream, ctx, gate, delete, right).await);
                out
            }
            _ => {
                let n = chunk.len();
                chunk
                    .into_iter()
                    .map(|r| {
                        let mut result = super::translated(target, upstream, &r.call.translation);
                        result.status = sent.status;
                        result.attempts = sent.attempts;
                        result.error = sent.error.clone();
                        result.action = sent.action;
                        if sent.status == Status::Revoked {
                            result.warnings.push(Warning {
                                field: "code".into(),
                                message: format!(
                                    "revoked in one bulk call of {n} codes, whose answer is for all of them: {} gives no outcome per code, so the job reads its list back when its calls are done and revokes again, one by one, any code still there",
                                    upstream.vendor
                                ),
                            });
                        }
                        (r.code_id, result)
                    })
                    .collect()
            }
        }
    })
}
