//! Sync jobs on the PostgreSQL ledger: the staged intake (one transaction per slice, under the
//! locks of the slice's code keys), the job's reads, and ownership (adoption of the work whose
//! lease ran out, a job's deliveries handed only to its owner).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::queries::{self, exec, one, opt, rows};
use super::{db_time, in_tx, Ledger, PgError};
use crate::domain::code::{code_key, CodeConflict, Decision, Definition};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::job::{JobRecord, JobResult, JobState, JobWork, NewJob, StageAs, Staged, WorkItem, INTAKE_SLICE};
use crate::domain::request::{job_claims_revocation, OpKind};
use crate::ports::Adopted;

impl Ledger {
    pub(super) async fn begin_job_row(&self, job: NewJob) -> Result<i64, PgError> {
        let c = self.pool.get().await?;
        let until = self.db_clock(Utc::now()).at(self.lease);
        let row = one(
            &c,
            concat!(
                "INSERT INTO jobs (state, campaign, targets, source, options, total, owner, operation, lease_until)
                 VALUES ('staging', $1, $2, $3, $4, 0, $5, $6, ",
                db_time!(7),
                ") RETURNING id"
            ),
            &[
                &job.campaign,
                &job.targets,
                &job.source,
                &job.options.to_string(),
                &&*self.owner,
                &job.operation.as_str(),
                &until,
            ],
        )
        .await?;
        Ok(row.get(0))
    }

    /// What a job does to its codes.
    async fn operation(&self, job_id: i64) -> Result<OpKind, PgError> {
        let c = self.pool.get().await?;
        let row = opt(&c, "SELECT operation FROM jobs WHERE id = $1", &[&job_id]).await?;
        row.map(|r| OpKind::from_name(r.get(0)))
            .ok_or_else(|| PgError::State(format!("sync job {job_id} is not in the ledger")))
    }

    /// Runs an accepted job's promotion, by its operation.
    pub(super) async fn commit(&self, job_id: i64) -> Result<(), PgError> {
        match self.operation(job_id).await? {
            OpKind::Create => self.promote(job_id).await,
            OpKind::Revoke => self.promote_revokes(job_id).await,
        }
    }

    /// [`crate::ports::Store::stage_revokes`]: each slice in one transaction, under its code
    /// keys' locks.
    pub(super) async fn stage_revoke_items(&self, job_id: i64, codes: Vec<String>) -> Result<Vec<Staged>, PgError> {
        let campaign: String = {
            let c = self.pool.get().await?;
            one(&c, "SELECT campaign FROM jobs WHERE id = $1", &[&job_id])
                .await?
                .get(0)
        };
        let mut out = Vec::with_capacity(codes.len());
        for slice in codes.chunks(INTAKE_SLICE) {
            let keys: Vec<String> = slice.iter().map(|c| code_key(c)).collect();
            let verdicts = in_tx!(self, |tx| {
                queries::lock_codes(&tx, &keys).await?;
                let mut seq: i64 = one(
                    &tx,
                    "SELECT COALESCE(MAX(seq), 0)::bigint FROM job_items WHERE job_id = $1",
                    &[&job_id],
                )
                .await?
                .get(0);
                let mut verdicts = Vec::with_capacity(slice.len());
                for key in &keys {
                    let found = opt(
                        &tx,
                        "SELECT id, code FROM codes WHERE campaign = $1 AND code_key = $2",
                        &[&campaign, key],
                    )
                    .await?;
                    let verdict = match found {
                        None => Staged::Unknown,
                        Some(r) => {
                            let code_id: i64 = r.get(0);
                            let added = exec(
                                &tx,
                                "INSERT INTO job_items (job_id, seq, code_id) VALUES ($1, $2, $3)
                                 ON CONFLICT (job_id, code_id) DO NOTHING",
                                &[&job_id, &(seq + 1), &code_id],
                            )
                            .await?;
                            if added == 1 {
                                seq += 1;
                                Staged::Accepted
                            } else {
                                Staged::Refused(CodeConflict::Repeated { existing: r.get(1) })
                            }
                        }
                    };
                    verdicts.push(verdict);
                }
                verdicts
            })?;
            out.extend(verdicts);
        }
        Ok(out)
    }

    /// [`crate::ports::Store::commit_job`] for a revoke job, as the SQLite ledger's: a slice of
    /// items per transaction under their codes' locks (so that a revoke or create of one of them
    /// on another replica is decided before or after, never between), `total` marking how far
    /// it got; the last slice sets the job `running`.
    pub(super) async fn promote_revokes(&self, job_id: i64) -> Result<(), PgError> {
        let targets = self.targets(job_id).await?;
        loop {
            let more = in_tx!(self, |tx| {
                let items = rows(
                    &tx,
                    "SELECT i.code_id, c.code_key FROM job_items i JOIN codes c ON c.id = i.code_id
                      WHERE i.job_id = $1 AND i.seq > (SELECT total FROM jobs WHERE id = $1)
                      ORDER BY i.seq LIMIT $2",
                    &[&job_id, &(INTAKE_SLICE as i64)],
                )
                .await?;
                if items.is_empty() {
                    exec(&tx, "UPDATE jobs SET state = 'running' WHERE id = $1", &[&job_id]).await?;
                    false
                } else {
                    let keys: Vec<String> = items.iter().map(|r| r.get(1)).collect();
                    queries::lock_codes(&tx, &keys).await?;
                    let mut tally: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
                    for r in &items {
                        let code_id: i64 = r.get(0);
                        exec(
                            &tx,
                            "UPDATE codes SET revoked_at = COALESCE(revoked_at, clock_timestamp()) WHERE id = $1",
                            &[&code_id],
                        )
                        .await?;
                        for t in &targets {
                            let revocation = queries::state(&tx, OpKind::Revoke, code_id, t).await?.map(|(s, _)| s);
                            let delivered = queries::delivery(&tx, code_id, t).await?.map(|(s, _)| s);
                            let status = if job_claims_revocation(revocation, delivered) {
                                exec(
                                    &tx,
                                    "INSERT INTO revocations (code_id, upstream, status, job_id) VALUES ($1, $2, 'pending', $3)
                                     ON CONFLICT (code_id, upstream) DO UPDATE SET status = 'pending', result = NULL,
                                         job_id = EXCLUDED.job_id, request_id = NULL, updated_at = clock_timestamp()",
                                    &[&code_id, t, &job_id],
                                )
                                .await?;
                                "pending"
                            } else {
                                revocation.map_or("pending", Status::as_str)
                            };
                            *tally.entry((t.clone(), status)).or_default() += 1;
                        }
                    }
                    for ((upstream, status), n) in &tally {
                        exec(
                            &tx,
                            "INSERT INTO revoke_tally (job_id, upstream, status, n) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = revoke_tally.n + EXCLUDED.n",
                            &[&job_id, upstream, status, n],
                        )
                        .await?;
                    }
                    exec(
                        &tx,
                        "UPDATE jobs SET total = total + $1 WHERE id = $2",
                        &[&(items.len() as i64), &job_id],
                    )
                    .await?;
                    true
                }
            })?;
            if !more {
                return Ok(());
            }
        }
    }

    async fn targets(&self, job_id: i64) -> Result<Vec<String>, PgError> {
        let c = self.pool.get().await?;
        let row = opt(&c, "SELECT targets FROM jobs WHERE id = $1", &[&job_id]).await?;
        row.map(|r| r.get(0))
            .ok_or_else(|| PgError::State(format!("sync job {job_id} is not in the ledger")))
    }

    /// [`crate::ports::Store::stage`]: each slice in one transaction, under its code keys' locks.
    pub(super) async fn stage_items(
        &self,
        job_id: i64,
        items: Vec<Definition>,
        check: StageAs,
    ) -> Result<Vec<Staged>, PgError> {
        let targets = self.targets(job_id).await?;
        let mut out = Vec::with_capacity(items.len());
        for slice in items.chunks(INTAKE_SLICE) {
            let keys: Vec<String> = slice.iter().map(Definition::key).collect();
            let verdicts = in_tx!(self, |tx| {
                queries::lock_codes(&tx, &keys).await?;
                let mut seq: i64 = one(
                    &tx,
                    "SELECT COALESCE(MAX(seq), 0)::bigint FROM job_stage WHERE job_id = $1",
                    &[&job_id],
                )
                .await?
                .get(0);
                let mut verdicts = Vec::with_capacity(slice.len());
                for def in slice {
                    let verdict = match check {
                        StageAs::Given => match stage_check(&tx, job_id, def, &targets).await? {
                            Some(conflict) => Staged::Refused(conflict),
                            None => Staged::Accepted,
                        },
                        StageAs::Fresh if is_free(&tx, def, &targets).await? => Staged::Accepted,
                        StageAs::Fresh => Staged::Taken,
                    };
                    if verdict == Staged::Accepted {
                        seq += 1;
                        exec(
                            &tx,
                            "INSERT INTO job_stage (job_id, seq, campaign, code, code_key, definition)
                             VALUES ($1, $2, $3, $4, $5, $6)",
                            &[&job_id, &seq, &def.campaign, &def.code, &def.key(), &def.json],
                        )
                        .await?;
                    }
                    verdicts.push(verdict);
                }
                verdicts
            })?;
            out.extend(verdicts);
        }
        Ok(out)
    }

    /// Turns an accepted job's staged rows into codes, claims and job items, a slice per
    /// transaction, keeping the job's tally as it goes; the last slice sets it `running`.
    pub(super) async fn promote(&self, job_id: i64) -> Result<(), PgError> {
        let targets = self.targets(job_id).await?;
        loop {
            let more = in_tx!(self, |tx| {
                let staged = rows(
                    &tx,
                    "SELECT seq, campaign, code, definition FROM job_stage WHERE job_id = $1 ORDER BY seq LIMIT $2",
                    &[&job_id, &(INTAKE_SLICE as i64)],
                )
                .await?;
                // (A `return` would roll back: the last slice ends the loop by its value.)
                match staged.last().map(|r| r.get::<_, i64>(0)) {
                    None => {
                        exec(&tx, "UPDATE jobs SET state = 'running' WHERE id = $1", &[&job_id]).await?;
                        false
                    }
                    Some(last) => {
                        let first: i64 = staged[0].get(0);
                        let defs: Vec<(i64, Definition)> = staged
                            .iter()
                            .map(|r| {
                                (
                                    r.get(0),
                                    Definition {
                                        campaign: r.get(1),
                                        code: r.get(2),
                                        json: r.get(3),
                                    },
                                )
                            })
                            .collect();
                        let keys: Vec<String> = defs.iter().map(|(_, d)| d.key()).collect();
                        queries::lock_codes(&tx, &keys).await?;
                        let mut added = 0i64;
                        for (seq, def) in &defs {
                            // Staging reserved the code, so a clash here means a writer ignored the
                            // reservation; the item is left out rather than the accepted job half written.
                            let code_id = match queries::find_or_add_code(&tx, def).await? {
                                Ok(id) => id,
                                Err(conflict) => {
                                    tracing::error!(job = job_id, code = def.code, "left out of the job: {conflict}");
                                    continue;
                                }
                            };
                            if let Some(conflict) =
                                queries::held_elsewhere(&tx, &def.campaign, &def.key(), &targets).await?
                            {
                                tracing::error!(job = job_id, code = def.code, "left out of the job: {conflict}");
                                continue;
                            }
                            // Claims first, the job item after: the tally's trigger must not count this
                            // code for the job before the slice's tally below does.
                            for t in &targets {
                                match queries::delivery(&tx, code_id, t).await? {
                                    Some((status, _)) if status.holds() => {}
                                    _ => queries::put_delivery(&tx, code_id, t, None, None, Some(job_id)).await?,
                                }
                            }
                            exec(
                                &tx,
                                "INSERT INTO job_items (job_id, seq, code_id) VALUES ($1, $2, $3)",
                                &[&job_id, seq, &code_id],
                            )
                            .await?;
                            added += 1;
                        }
                        exec(
                            &tx,
                            "DELETE FROM job_stage WHERE job_id = $1 AND seq BETWEEN $2 AND $3",
                            &[&job_id, &first, &last],
                        )
                        .await?;
                        exec(
                    &tx,
                    "INSERT INTO job_tally (job_id, upstream, status, n)
                         SELECT $1, d.upstream, d.status, COUNT(*) FROM job_items i JOIN deliveries d ON d.code_id = i.code_id
                          WHERE i.job_id = $1 AND i.seq BETWEEN $3 AND $4 AND d.upstream = ANY($2)
                          GROUP BY d.upstream, d.status
                     ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = job_tally.n + EXCLUDED.n",
                    &[&job_id, &targets, &first, &last],
                )
                .await?;
                        exec(
                            &tx,
                            "UPDATE jobs SET total = total + $1 WHERE id = $2",
                            &[&added, &job_id],
                        )
                        .await?;
                        true
                    }
                }
            })?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Deletes a job that was not accepted and its staged rows.
    pub(super) async fn discard_staged(&self, job_id: i64) -> Result<(), PgError> {
        in_tx!(self, |tx| {
            exec(&tx, "DELETE FROM job_stage WHERE job_id = $1", &[&job_id]).await?;
            exec(&tx, "DELETE FROM job_tally WHERE job_id = $1", &[&job_id]).await?;
            // A staging revoke job's items are written as they are checked.
            exec(&tx, "DELETE FROM job_items WHERE job_id = $1", &[&job_id]).await?;
            exec(&tx, "DELETE FROM revoke_tally WHERE job_id = $1", &[&job_id]).await?;
            exec(&tx, "DELETE FROM jobs WHERE id = $1", &[&job_id]).await?;
        })
    }

    pub(super) async fn job_record(&self, id: i64) -> Result<Option<JobRecord>, PgError> {
        let c = self.pool.get().await?;
        let Some(r) = opt(
            &c,
            "SELECT state, campaign, targets, source, options, total, created_at, finished_at, operation FROM jobs
              WHERE id = $1 AND state IN ('running', 'done', 'cancelled')",
            &[&id],
        )
        .await?
        else {
            return Ok(None);
        };
        let state: String = r.get(0);
        let options: String = r.get(4);
        Ok(Some(JobRecord {
            id,
            operation: OpKind::from_name(r.get(8)),
            state: JobState::from_name(&state)
                .ok_or_else(|| PgError::State(format!("job {id} is in an unknown state `{state}`")))?,
            campaign: r.get(1),
            targets: r.get(2),
            source: r.get(3),
            total: r.get::<_, i64>(5) as u64,
            created_at: r.get(6),
            finished_at: r.get(7),
            options: serde_json::from_str(&options)?,
        }))
    }

    pub(super) async fn counts(&self, id: i64) -> Result<BTreeMap<String, BTreeMap<Status, u64>>, PgError> {
        let targets = self.targets(id).await?;
        let sql = match self.operation(id).await? {
            OpKind::Create => "SELECT upstream, status, n FROM job_tally WHERE job_id = $1 AND n > 0",
            OpKind::Revoke => "SELECT upstream, status, n FROM revoke_tally WHERE job_id = $1 AND n > 0",
        };
        let c = self.pool.get().await?;
        let tally = rows(&c, sql, &[&id]).await?;
        let mut out: BTreeMap<String, BTreeMap<Status, u64>> =
            targets.into_iter().map(|t| (t, BTreeMap::new())).collect();
        for r in tally {
            if let Some(counts) = out.get_mut(r.get::<_, &str>(0)) {
                counts.insert(queries::parse_status(r.get(1)), r.get::<_, i64>(2) as u64);
            }
        }
        Ok(out)
    }

    /// The job's pending deliveries on `upstream`, to its owner only: a replica whose job was
    /// adopted by another (its lease ran out) gets none, and stops.
    pub(super) async fn work(
        &self,
        id: i64,
        upstream: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<JobWork>, PgError> {
        let op = self.operation(id).await?;
        let c = self.pool.get().await?;
        let found = rows(
            &c,
            &format!(
                "SELECT i.seq, i.code_id, c.definition, c.revoked_at IS NOT NULL FROM job_items i
               JOIN {} d ON d.code_id = i.code_id AND d.upstream = $2
               JOIN codes c ON c.id = i.code_id
              WHERE i.job_id = $1 AND i.seq > $3 AND d.status = 'pending' AND d.job_id = $1
                AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = $1 AND j.owner = $5 AND j.state = 'running')
              ORDER BY i.seq LIMIT $4",
                queries::table(op)
            ),
            &[&id, &upstream, &after, &(limit as i64), &&*self.owner],
        )
        .await?;
        let mut out = Vec::with_capacity(found.len());
        for r in found {
            let code_id: i64 = r.get(1);
            let item = match op {
                OpKind::Create => WorkItem::Create {
                    definition: serde_json::from_str(r.get(2))?,
                    revoked: r.get(3),
                },
                OpKind::Revoke => {
                    WorkItem::Revoke(Box::new(queries::read_code(&c, code_id).await?.ok_or_else(|| {
                        PgError::State(format!("job {id} names code {code_id}, which is not in the ledger"))
                    })?))
                }
            };
            out.push(JobWork {
                seq: r.get(0),
                code_id,
                item,
            });
        }
        Ok(out)
    }

    pub(super) async fn results(
        &self,
        id: i64,
        status: Option<Status>,
        upstream: Option<String>,
        after: (i64, String),
        limit: usize,
    ) -> Result<Vec<JobResult>, PgError> {
        let op = self.operation(id).await?;
        let c = self.pool.get().await?;
        let found = rows(
            &c,
            &format!(
                "SELECT i.seq, c.code, d.upstream, d.status, d.vendor_id, d.attempts, d.result, d.job_id
               FROM job_items i
               JOIN codes c ON c.id = i.code_id
               JOIN {} d ON d.code_id = i.code_id
               JOIN jobs j ON j.id = i.job_id
              WHERE i.job_id = $1 AND (i.seq, d.upstream) > ($2, $6::text) AND d.upstream = ANY(j.targets)
                AND ($3::text IS NULL OR d.status = $3) AND ($4::text IS NULL OR d.upstream = $4)
              ORDER BY i.seq, d.upstream LIMIT $5",
                queries::table(op)
            ),
            &[
                &id,
                &after.0,
                &status.map(Status::as_str),
                &upstream,
                &(limit as i64),
                &after.1,
            ],
        )
        .await?;
        found
            .into_iter()
            .map(|r| {
                let result: Option<String> = r.get(6);
                let result: Option<TargetResult> = result.as_deref().map(serde_json::from_str).transpose()?;
                let line = JobResult::from_row(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    queries::parse_status(r.get(3)),
                    r.get(4),
                    r.get::<_, i32>(5) as u32,
                    result,
                );
                Ok(match op {
                    OpKind::Create => line,
                    OpKind::Revoke => line.revoked_elsewhere(id, r.get(7)),
                })
            })
            .collect()
    }

    /// [`crate::ports::Store::retry_job`]: under the lock that holds out every claim (a retry
    /// reopens deliveries of any number of codes), and the job becomes this owner's.
    pub(super) async fn retry(&self, id: i64) -> Result<u64, PgError> {
        let until = self.db_clock(Utc::now()).at(self.lease);
        let op = self.operation(id).await?;
        in_tx!(self, |tx| {
            queries::lock_all_codes(&tx).await?;
            let reopened = match op {
                // A revoke has no other campaign's hold to respect: its code is its own.
                OpKind::Revoke => {
                    exec(
                        &tx,
                        "UPDATE revocations SET status = 'pending', job_id = $1, updated_at = clock_timestamp()
                          WHERE status IN ('failed', 'throttled', 'cancelled')
                            AND upstream = ANY((SELECT targets FROM jobs WHERE id = $1)::text[])
                            AND code_id IN (SELECT code_id FROM job_items WHERE job_id = $1)",
                        &[&id],
                    )
                    .await?
                }
                OpKind::Create => {
                    explain_held_elsewhere(&tx, id).await?;
                    exec(
                        &tx,
                        "UPDATE deliveries SET status = 'pending', job_id = $1, updated_at = clock_timestamp()
                  WHERE status IN ('failed', 'throttled', 'cancelled')
                    AND upstream = ANY((SELECT targets FROM jobs WHERE id = $1)::text[])
                    AND code_id IN (SELECT code_id FROM job_items WHERE job_id = $1)
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
                         WHERE c.id = deliveries.code_id AND deliveries.upstream = ANY(sj.targets))",
                        &[&id],
                    )
                    .await?
                }
            };
            exec(
                &tx,
                concat!(
                    "UPDATE jobs SET state = 'running', finished_at = NULL, owner = $2, lease_until = ",
                    db_time!(3),
                    " WHERE id = $1"
                ),
                &[&id, &&*self.owner, &until],
            )
            .await?;
            reopened
        })
    }

    /// [`crate::ports::Store::end_job`]: only a running job ends, and only its owner finishes
    /// it (`Done`); a cancel ends it whoever asks. Whether it ended.
    pub(super) async fn end(&self, id: i64, state: JobState) -> Result<bool, PgError> {
        let cancel = match self.operation(id).await? {
            OpKind::Create => {
                "UPDATE deliveries SET status = 'cancelled', updated_at = clock_timestamp()
                  WHERE status = 'pending' AND job_id = $1"
            }
            OpKind::Revoke => {
                "UPDATE revocations SET status = 'cancelled', updated_at = clock_timestamp()
                  WHERE status = 'pending' AND job_id = $1"
            }
        };
        in_tx!(self, |tx| {
            let owner = opt(
                &tx,
                "SELECT owner FROM jobs WHERE id = $1 AND state = 'running' FOR UPDATE",
                &[&id],
            )
            .await?;
            let Some(owner) = owner.map(|r| r.get::<_, Option<String>>(0)) else {
                return Ok(false);
            };
            if state == JobState::Done && owner.as_deref() != Some(&*self.owner) {
                return Ok(false);
            }
            if state == JobState::Cancelled {
                exec(&tx, cancel, &[&id]).await?;
            }
            exec(
                &tx,
                "UPDATE jobs SET state = $1, finished_at = clock_timestamp(), lease_until = NULL WHERE id = $2",
                &[&state.as_str(), &id],
            )
            .await?;
            true
        })
    }

    /// [`crate::ports::Store::adopt`]: another owner's work whose lease ran out (or was
    /// released), row by row under `FOR UPDATE SKIP LOCKED`, so that two replicas adopting at
    /// once take disjoint work. A job cut short in its intake is finished (accepted) or
    /// removed (still staging), as the SQLite ledger does at its start.
    pub(super) async fn take_over(&self, now: DateTime<Utc>) -> Result<Adopted, PgError> {
        let clock = self.db_clock(now);
        let (now, until) = (clock.now(), clock.at(self.lease));
        let (requests, jobs) = in_tx!(self, |tx| {
            const FREE: &str = concat!(
                "owner IS DISTINCT FROM $2 AND (lease_until IS NULL OR lease_until <= ",
                db_time!(1),
                ")"
            );
            const UNTIL: &str = db_time!(3);
            let requests: Vec<i64> = rows(
                &tx,
                &format!(
                    "UPDATE requests SET owner = $2, lease_until = {UNTIL} WHERE id IN (
                        SELECT id FROM requests WHERE finished_at IS NULL AND {FREE} FOR UPDATE SKIP LOCKED)
                     RETURNING id"
                ),
                &[&now, &&*self.owner, &until],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            let jobs: Vec<(i64, String)> = rows(
                &tx,
                &format!(
                    "UPDATE jobs SET owner = $2, lease_until = {UNTIL} WHERE id IN (
                        SELECT id FROM jobs WHERE state IN ('staging', 'promoting', 'running') AND {FREE}
                           FOR UPDATE SKIP LOCKED)
                     RETURNING id, state"
                ),
                &[&now, &&*self.owner, &until],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            (requests, jobs)
        })?;
        let mut adopted = Adopted::default();
        for (id, state) in jobs {
            match state.as_str() {
                "staging" => {
                    tracing::warn!(
                        job = id,
                        "removing a sync job whose intake a stop cut short; it was never accepted"
                    );
                    self.discard_staged(id).await?;
                }
                "promoting" => {
                    tracing::info!(job = id, "finishing the intake of an accepted sync job");
                    self.commit(id).await?;
                    adopted.jobs.push(id);
                }
                _ => adopted.jobs.push(id),
            }
        }
        adopted.jobs.sort_unstable();
        if !requests.is_empty() {
            let c = self.pool.get().await?;
            adopted.creates = queries::unfinished(&c, Some(&requests)).await?;
        }
        Ok(adopted)
    }
}

/// Whether an item can be staged: not a repeat of the job's earlier items, no clash with the
/// ledger's codes or another job's staged ones (the checks promotion makes, without writing).
async fn stage_check<C: deadpool_postgres::GenericClient>(
    c: &C,
    job_id: i64,
    def: &Definition,
    targets: &[String],
) -> Result<Option<CodeConflict>, PgError> {
    let earlier = opt(
        c,
        "SELECT code FROM job_stage WHERE job_id = $1 AND code_key = $2",
        &[&job_id, &def.key()],
    )
    .await?;
    if let Some(existing) = earlier {
        return Ok(Some(CodeConflict::Repeated {
            existing: existing.get(0),
        }));
    }
    if let Decision::Refuse(conflict) = crate::domain::code::decide(queries::known(c, def).await?, def) {
        return Ok(Some(conflict));
    }
    if let Some(conflict) = queries::staged_conflict(c, def, Some(job_id)).await? {
        return Ok(Some(conflict));
    }
    queries::held_elsewhere(c, &def.campaign, &def.key(), targets).await
}

/// Whether a generated code is free: none of that name in the campaign, none staged by any
/// job, none of another campaign at the targets.
async fn is_free<C: deadpool_postgres::GenericClient>(
    c: &C,
    def: &Definition,
    targets: &[String],
) -> Result<bool, PgError> {
    let taken: bool = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM codes WHERE campaign = $1 AND code_key = $2)
             OR EXISTS (SELECT 1 FROM job_stage WHERE code_key = $2 AND campaign = $1)",
        &[&def.campaign, &def.key()],
    )
    .await?
    .get(0);
    Ok(!taken
        && queries::held_elsewhere(c, &def.campaign, &def.key(), targets)
            .await?
            .is_none())
}

/// Gives the job's deliveries a retry will not reopen (another campaign's code has reached that
/// upstream since) an error that says so, as the SQLite ledger does.
async fn explain_held_elsewhere<C: deadpool_postgres::GenericClient>(c: &C, job_id: i64) -> Result<(), PgError> {
    let held = rows(
        c,
        "SELECT d.code_id, d.upstream, d.status, d.result, o.campaign, o.code
           FROM deliveries d
           JOIN codes c ON c.id = d.code_id
           JOIN codes o ON o.code_key = c.code_key AND o.campaign <> c.campaign
           JOIN deliveries od ON od.code_id = o.id AND od.upstream = d.upstream
          WHERE d.status IN ('failed', 'throttled', 'cancelled')
            AND d.upstream = ANY((SELECT targets FROM jobs WHERE id = $1)::text[])
            AND d.code_id IN (SELECT code_id FROM job_items WHERE job_id = $1)
            AND od.status IN ('created', 'already_exists', 'pending')",
        &[&job_id],
    )
    .await?;
    for r in held {
        let (code_id, upstream, status, result, campaign, code): (i64, String, String, Option<String>, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let previous: Option<TargetResult> = result.as_deref().map(serde_json::from_str).transpose()?;
        let explained =
            crate::domain::code::held_since(previous, queries::parse_status(&status), &campaign, &code, &upstream);
        exec(
            c,
            "UPDATE deliveries SET result = $1, updated_at = clock_timestamp() WHERE code_id = $2 AND upstream = $3",
            &[&serde_json::to_string(&explained)?, &code_id, &upstream],
        )
        .await?;
    }
    Ok(())
}
