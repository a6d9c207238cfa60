//! A sync job's intake in the SQLite ledger: staged slice by slice, promoted to codes and claims
//! once accepted, and after a crash discarded (never accepted) or finished (accepted).

use std::time::Instant;

use parking_lot::MutexGuard;
use rusqlite::{params, OptionalExtension};

use std::collections::BTreeMap;

use super::rows::{
    delivery, find_or_add_code, held_elsewhere, is_free, job_operation, put_delivery, put_new_job_deliveries,
    stage_check, stage_row, state,
};
use super::{status_name, Ledger, LedgerError, INTAKE_SLICE_TIME, NOW};
use crate::domain::code::{code_key, CodeConflict, Definition};
use crate::domain::job::{StageAs, Staged, INTAKE_SLICE};
use crate::domain::request::{job_claims_revocation, OpKind};

impl Ledger {
    /// Jobs a crash stopped mid-intake: one still staging was never accepted, and goes (with
    /// its staged rows); one accepted and promoting is finished, so no half job is left.
    pub(super) fn recover_intakes(&self) -> Result<(), LedgerError> {
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
            self.commit(id)?;
        }
        Ok(())
    }

    /// Runs an accepted job's promotion, by its operation.
    pub(super) fn commit(&self, job_id: i64) -> Result<(), LedgerError> {
        let op = job_operation(&self.lock(), job_id)?;
        match op {
            OpKind::Create => self.promote(job_id),
            OpKind::Revoke => self.promote_revokes(job_id),
        }
    }

    /// Deletes a job that was not accepted and its staged rows, a slice at a time.
    pub(super) fn discard_staged(&self, job_id: i64) -> Result<(), LedgerError> {
        loop {
            let conn = self.lock();
            let n = conn
                .prepare_cached(
                    "DELETE FROM job_stage WHERE job_id = ?1 AND seq IN
                        (SELECT seq FROM job_stage WHERE job_id = ?1 ORDER BY seq LIMIT ?2)",
                )?
                .execute(params![job_id, (INTAKE_SLICE * 8) as i64])?;
            if n == 0 {
                // A staging revoke job's items are written as they are checked.
                conn.execute("DELETE FROM job_items WHERE job_id = ?1", [job_id])?;
                conn.execute("DELETE FROM revoke_tally WHERE job_id = ?1", [job_id])?;
                conn.execute("DELETE FROM jobs WHERE id = ?1", [job_id])?;
                return Ok(());
            }
            MutexGuard::unlock_fair(conn);
        }
    }

    /// Stages a slice of a job's items (see [`Store::stage`]), in transactions of at most
    /// [`INTAKE_SLICE_TIME`], handing the ledger over fairly in between.
    pub(super) fn stage_items(
        &self,
        job_id: i64,
        items: Vec<Definition>,
        check: StageAs,
    ) -> Result<Vec<Staged>, LedgerError> {
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
    pub(super) fn promote(&self, job_id: i64) -> Result<(), LedgerError> {
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
                let code = match find_or_add_code(&tx, &def)? {
                    Ok(code) => code,
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
                if code.added {
                    put_new_job_deliveries(&tx, code.id, &targets_json, job_id)?;
                } else {
                    for t in &targets {
                        match delivery(&tx, code.id, t)? {
                            Some((status, _)) if status.holds() => {}
                            _ => put_delivery(&tx, code.id, t, None, None, Some(job_id))?,
                        }
                    }
                }
                tx.prepare_cached("INSERT INTO job_items (job_id, seq, code_id) VALUES (?1, ?2, ?3)")?
                    .execute(params![job_id, seq, code.id])?;
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

    /// [`Store::stage_revokes`]: each code looked up in the job's campaign and, if there and not
    /// yet in the job, made the job's next item, in transactions of at most
    /// [`INTAKE_SLICE_TIME`].
    pub(super) fn stage_revoke_items(&self, job_id: i64, codes: Vec<String>) -> Result<Vec<Staged>, LedgerError> {
        let campaign: String = self
            .lock()
            .query_row("SELECT campaign FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
        let mut out = Vec::with_capacity(codes.len());
        let mut codes = codes.into_iter().peekable();
        while codes.peek().is_some() {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let mut seq: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM job_items WHERE job_id = ?1")?
                .query_row([job_id], |r| r.get(0))?;
            let began = Instant::now();
            while began.elapsed() < INTAKE_SLICE_TIME {
                let Some(code) = codes.next() else { break };
                let found: Option<(i64, String)> = tx
                    .prepare_cached("SELECT id, code FROM codes WHERE campaign = ?1 AND code_key = ?2")?
                    .query_row(params![campaign, code_key(&code)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let verdict = match found {
                    None => Staged::Unknown,
                    Some((code_id, existing)) => {
                        let added = tx
                            .prepare_cached(
                                "INSERT INTO job_items (job_id, seq, code_id) VALUES (?1, ?2, ?3)
                                 ON CONFLICT (job_id, code_id) DO NOTHING",
                            )?
                            .execute(params![job_id, seq + 1, code_id])?;
                        if added == 1 {
                            seq += 1;
                            Staged::Accepted
                        } else {
                            Staged::Refused(CodeConflict::Repeated { existing })
                        }
                    }
                };
                out.push(verdict);
            }
            tx.commit()?;
            MutexGuard::unlock_fair(conn);
        }
        Ok(out)
    }

    /// [`Store::commit_job`] for a revoke job: its codes marked revoked (the first time
    /// stands) and each target's revocation claimed (`pending` under the job) where
    /// [`job_claims_revocation`] says so, a slice of items at a time in their order, counting
    /// them in the job's tally; `total` is how far it got, so a crash resumes after it. The last
    /// slice sets the job `running`.
    pub(super) fn promote_revokes(&self, job_id: i64) -> Result<(), LedgerError> {
        let targets: Vec<String> = {
            let conn = self.lock();
            let targets: String = conn.query_row("SELECT targets FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
            serde_json::from_str(&targets)?
        };
        loop {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            let done: i64 = tx.query_row("SELECT total FROM jobs WHERE id = ?1", [job_id], |r| r.get(0))?;
            let items: Vec<i64> = tx
                .prepare_cached("SELECT code_id FROM job_items WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?
                .query_map(params![job_id, done, INTAKE_SLICE as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if items.is_empty() {
                tx.execute("UPDATE jobs SET state = 'running' WHERE id = ?1", [job_id])?;
                tx.commit()?;
                return Ok(());
            }
            let mut tally: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
            for &code_id in &items {
                tx.prepare_cached(&format!(
                    "UPDATE codes SET revoked_at = COALESCE(revoked_at, {NOW}) WHERE id = ?1"
                ))?
                .execute([code_id])?;
                for t in &targets {
                    let revocation = state(&tx, OpKind::Revoke, code_id, t)?.map(|(s, _)| s);
                    let delivered = delivery(&tx, code_id, t)?.map(|(s, _)| s);
                    let status = if job_claims_revocation(revocation, delivered) {
                        tx.prepare_cached(&format!(
                            "INSERT INTO revocations (code_id, upstream, status, job_id) VALUES (?1, ?2, 'pending', ?3)
                             ON CONFLICT (code_id, upstream) DO UPDATE SET status = 'pending', result = NULL,
                                 job_id = ?3, request_id = NULL, updated_at = {NOW}"
                        ))?
                        .execute(params![code_id, t, job_id])?;
                        "pending"
                    } else {
                        revocation.map_or("pending", status_name)
                    };
                    *tally.entry((t.clone(), status)).or_default() += 1;
                }
            }
            for ((upstream, status), n) in tally {
                tx.prepare_cached(
                    "INSERT INTO revoke_tally (job_id, upstream, status, n) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = n + excluded.n",
                )?
                .execute(params![job_id, upstream, status, n])?;
            }
            tx.prepare_cached("UPDATE jobs SET total = total + ?1 WHERE id = ?2")?
                .execute(params![items.len() as i64, job_id])?;
            tx.commit()?;
            MutexGuard::unlock_fair(conn);
        }
    }
}
