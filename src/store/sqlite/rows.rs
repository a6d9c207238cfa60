//! The rows behind each decision: what the domain's rules need read, and their outcome written,
//! always inside the caller's transaction.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_stamp, parse_status, status_name, LedgerError, NOW};
use crate::domain::code::{self, CodeConflict, CodeRecord, Decision, Definition, DeliveryRecord, Known};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::request::{self as rules, Begin, KeyDecision, OpKind, SeenKey, Unfinished};

/// The code the campaign holds under `def`'s key, with whether a vendor holds it (asked only
/// where it differs from `def`, the one case the answer decides).
pub(super) fn known(tx: &Connection, def: &Definition) -> rusqlite::Result<Option<Known<i64>>> {
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

/// What an idempotency key says before a request is recorded, as [`rules::decide_key`] rules
/// (an expired key is forgotten here): `Some` answer when the request goes no further.
pub(super) fn key_check(
    tx: &Connection,
    key: Option<&str>,
    body: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Begin>, LedgerError> {
    let Some(key) = key else { return Ok(None) };
    let seen = tx
        .prepare_cached("SELECT id, body, key_expires_at, response FROM requests WHERE idempotency_key = ?1")?
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
    Ok(match rules::decide_key(seen, body, now) {
        KeyDecision::Fresh => None,
        KeyDecision::Forget(id) => {
            tx.execute("UPDATE requests SET idempotency_key = NULL WHERE id = ?1", [id])?;
            None
        }
        KeyDecision::Reused(id) => Some(Begin::KeyReused(id)),
        KeyDecision::InProgress(id) => Some(Begin::InProgress(id)),
        KeyDecision::Replay(response) => Some(Begin::Replay(response)),
    })
}

/// A code row found or written by [`find_or_add_code`].
#[derive(Debug, Clone, Copy)]
pub(super) struct CodeRow {
    pub(super) id: i64,
    /// Added just now: it has no deliveries yet, so none need be looked up.
    pub(super) added: bool,
}

/// Finds a code in its campaign, or adds (or redefines) it, as [`code::decide`] rules.
pub(super) fn find_or_add_code(
    tx: &Connection,
    def: &Definition,
) -> Result<Result<CodeRow, CodeConflict>, rusqlite::Error> {
    let kept = |id| Ok(Ok(CodeRow { id, added: false }));
    match code::decide(known(tx, def)?, def) {
        Decision::Add => {
            tx.prepare_cached("INSERT INTO codes (campaign, code, code_key, definition) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![def.campaign, def.code, def.key(), def.json])?;
            Ok(Ok(CodeRow {
                id: tx.last_insert_rowid(),
                added: true,
            }))
        }
        Decision::Keep(id) => kept(id),
        Decision::Redefine(id) => {
            tx.prepare_cached("UPDATE codes SET code = ?1, definition = ?2 WHERE id = ?3")?
                .execute(params![def.code, def.json, id])?;
            kept(id)
        }
        Decision::Refuse(conflict) => Ok(Err(conflict)),
    }
}

/// A job's staged code (see [`Store::begin_job`]) of the same campaign as `def`, in another
/// case or with another definition: a reservation that `def` cannot share, as it could not share
/// the code once the job holds it. `job_id` is the job asking, whose own items are checked
/// apart (as repeats).
pub(super) fn staged_conflict(
    tx: &Connection,
    def: &Definition,
    job_id: Option<i64>,
) -> rusqlite::Result<Option<CodeConflict>> {
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
pub(super) fn stage_check(
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
pub(super) fn is_free(tx: &Connection, def: &Definition, targets: &[String]) -> Result<bool, LedgerError> {
    let taken: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM codes WHERE campaign = ?1 AND code_key = ?2)
                 OR EXISTS (SELECT 1 FROM job_stage WHERE code_key = ?2 AND campaign = ?1)",
        )?
        .query_row(params![def.campaign, def.key()], |r| r.get(0))?;
    Ok(!taken && held_elsewhere(tx, &def.campaign, &def.key(), targets)?.is_none())
}

pub(super) fn stage_row(tx: &Connection, job_id: i64, seq: i64, def: &Definition) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_stage (job_id, seq, campaign, code, code_key, definition) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![job_id, seq, def.campaign, def.code, def.key(), def.json])?;
    Ok(())
}

/// Whether a code is delivered or being delivered at any target.
pub(super) fn is_held(tx: &Connection, code_id: i64) -> rusqlite::Result<bool> {
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
pub(super) fn held_elsewhere(
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
pub(super) fn delivery(
    tx: &Connection,
    code_id: i64,
    upstream: &str,
) -> rusqlite::Result<Option<(Status, Option<String>)>> {
    state(tx, OpKind::Create, code_id, upstream)
}

/// What a job does to its codes.
pub(super) fn job_operation(conn: &Connection, job_id: i64) -> rusqlite::Result<OpKind> {
    conn.prepare_cached("SELECT operation FROM jobs WHERE id = ?1")?
        .query_row([job_id], |r| Ok(OpKind::from_name(&r.get::<_, String>(0)?)))
}

/// The tally a job's counts are kept in, by its operation (see migration 10).
pub(super) fn tally(op: OpKind) -> &'static str {
    match op {
        OpKind::Create => "job_tally",
        OpKind::Revoke => "revoke_tally",
    }
}

/// The table an operation's claims and outcomes live in: a create's deliveries, a revoke's
/// revocations (the same columns).
pub(super) fn table(op: OpKind) -> &'static str {
    match op {
        OpKind::Create => "deliveries",
        OpKind::Revoke => "revocations",
    }
}

/// An operation's state at one target, and its recorded result.
pub(super) fn state(
    tx: &Connection,
    op: OpKind,
    code_id: i64,
    upstream: &str,
) -> rusqlite::Result<Option<(Status, Option<String>)>> {
    tx.prepare_cached(&format!(
        "SELECT status, result FROM {} WHERE code_id = ?1 AND upstream = ?2",
        table(op)
    ))?
    .query_row(params![code_id, upstream], |r| {
        Ok((parse_status(&r.get::<_, String>(0)?), r.get(1)?))
    })
    .optional()
}

/// When the code was first revoked, if it was.
pub(super) fn revoked_at(tx: &Connection, code_id: i64) -> Result<Option<chrono::DateTime<chrono::Utc>>, LedgerError> {
    let at: Option<String> = tx
        .prepare_cached("SELECT revoked_at FROM codes WHERE id = ?1")?
        .query_row([code_id], |r| r.get(0))
        .optional()?
        .flatten();
    at.as_deref().map(parse_stamp).transpose()
}

/// Claims a revocation for a revoke: `pending`, or settled as given.
pub(super) fn put_revocation(
    tx: &Connection,
    code_id: i64,
    upstream: &str,
    settled: Option<&TargetResult>,
    request_id: i64,
) -> Result<(), LedgerError> {
    let (status, result, attempts) = match settled {
        Some(r) => (status_name(r.status), Some(serde_json::to_string(r)?), r.attempts),
        None => ("pending", None, 0),
    };
    tx.prepare_cached(&format!(
        "INSERT INTO revocations (code_id, upstream, status, result, attempts, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (code_id, upstream) DO UPDATE SET status = ?3, result = ?4, attempts = attempts + ?5,
             request_id = ?6, updated_at = {NOW}"
    ))?
    .execute(params![code_id, upstream, status, result, attempts, request_id])?;
    Ok(())
}

/// Claims a delivery for a caller (a create or a job): `pending`, or settled as given.
pub(super) fn put_delivery(
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

/// A job's claims (`pending`) on every target of a code added just now, in one statement: such
/// a code has no deliveries to look up or to update.
pub(super) fn put_new_job_deliveries(
    tx: &Connection,
    code_id: i64,
    targets_json: &str,
    job_id: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO deliveries (code_id, upstream, status, job_id)
         SELECT ?1, value, 'pending', ?2 FROM json_each(?3)",
    )?
    .execute(params![code_id, job_id, targets_json])?;
    Ok(())
}

/// Gives the job's deliveries that a retry will not reopen, because another campaign's code of
/// the same name has reached that upstream since they failed, an error that says so: without
/// it they would keep their old error and a retry would silently pass them over. Their status
/// stays as it was (the code is not on the vendor for this campaign).
pub(super) fn explain_held_elsewhere(tx: &Connection, job_id: i64) -> Result<(), LedgerError> {
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
        let explained = code::held_since(previous, parse_status(&status), &campaign, &code, &upstream);
        tx.prepare_cached(&format!(
            "UPDATE deliveries SET result = ?1, updated_at = {NOW} WHERE code_id = ?2 AND upstream = ?3"
        ))?
        .execute(params![serde_json::to_string(&explained)?, code_id, upstream])?;
    }
    Ok(())
}

/// A delivery's outcome in the form its row takes, serialized before it reaches the writer
/// (so that the writer, which holds the ledger, only writes).
pub(super) struct OutcomeRow {
    table: &'static str,
    code_id: i64,
    upstream: String,
    status: &'static str,
    vendor_id: Option<String>,
    attempts: u32,
    result: String,
}

pub(super) fn outcome_rows(op: OpKind, outcomes: &[(i64, TargetResult)]) -> Result<Vec<OutcomeRow>, LedgerError> {
    outcomes
        .iter()
        .map(|(code_id, result)| {
            Ok(OutcomeRow {
                table: table(op),
                code_id: *code_id,
                upstream: result.upstream.clone(),
                status: status_name(result.status),
                vendor_id: result.vendor_id.clone(),
                attempts: result.attempts,
                result: serde_json::to_string(result)?,
            })
        })
        .collect()
}

/// Writes the outcomes of calls into their rows (deliveries or revocations).
pub(super) fn record_outcomes(tx: &Connection, outcomes: &[OutcomeRow]) -> Result<(), LedgerError> {
    for o in outcomes {
        tx.prepare_cached(&format!(
            "UPDATE {} SET status = ?1, vendor_id = ?2, attempts = attempts + ?3, result = ?4,
                 updated_at = {NOW} WHERE code_id = ?5 AND upstream = ?6",
            o.table
        ))?
        .execute(params![
            o.status,
            o.vendor_id,
            o.attempts,
            o.result,
            o.code_id,
            o.upstream
        ])?;
    }
    Ok(())
}

pub(super) fn read_code(conn: &Connection, id: i64) -> Result<Option<CodeRecord>, LedgerError> {
    type Row = (String, String, String, String, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached("SELECT campaign, code, definition, created_at, revoked_at FROM codes WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((campaign, code, definition, created_at, revoked_at)) = row else {
        return Ok(None);
    };
    Ok(Some(CodeRecord {
        code,
        campaign: (!campaign.is_empty()).then_some(campaign),
        definition: serde_json::from_str(&definition)?,
        created_at: parse_stamp(&created_at)?,
        deliveries: records(conn, OpKind::Create, id)?,
        revoked_at: revoked_at.as_deref().map(parse_stamp).transpose()?,
        revocations: records(conn, OpKind::Revoke, id)?,
    }))
}

/// A code's rows of one operation, by upstream.
fn records(conn: &Connection, op: OpKind, id: i64) -> Result<BTreeMap<String, DeliveryRecord>, LedgerError> {
    let mut deliveries = BTreeMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT upstream, status, vendor_id, attempts, updated_at, result, job_id FROM {} WHERE code_id = ?1",
        table(op)
    ))?;
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
    Ok(deliveries)
}

/// The current result of each target of a code; a target still pending has none yet.
pub(super) fn current_results(
    conn: &Connection,
    op: OpKind,
    code_id: i64,
    targets: &[String],
) -> Result<Vec<TargetResult>, LedgerError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        if let Some((_, Some(result))) = state(conn, op, code_id, t)? {
            out.push(serde_json::from_str(&result)?);
        }
    }
    Ok(out)
}

pub(super) fn pending_of(
    conn: &Connection,
    op: OpKind,
    code_id: i64,
    targets: &[String],
    request_id: i64,
) -> Result<Vec<String>, LedgerError> {
    let mut pending = Vec::new();
    for t in targets {
        let claimed: Option<i64> = conn
            .prepare_cached(&format!(
                "SELECT request_id FROM {} WHERE code_id = ?1 AND upstream = ?2 AND status = 'pending'",
                table(op)
            ))?
            .query_row(params![code_id, t], |r| r.get(0))
            .optional()?
            .flatten();
        if claimed == Some(request_id) {
            pending.push(t.clone());
        }
    }
    Ok(pending)
}

/// Unfinished creates matching a condition on `requests`, oldest first.
pub(super) fn unfinished(
    conn: &Connection,
    condition: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Unfinished>, LedgerError> {
    let rows: Vec<(i64, i64, String, String, String)> = conn
        .prepare(&format!(
            "SELECT id, code_id, body, targets, operation FROM requests WHERE {condition} ORDER BY id"
        ))?
        .query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(request_id, code_id, body, targets, operation)| {
            let targets: Vec<String> = serde_json::from_str(&targets)?;
            let operation = OpKind::from_name(&operation);
            Ok(Unfinished {
                request_id,
                operation,
                code_id,
                body: serde_json::from_str(&body)?,
                pending: pending_of(conn, operation, code_id, &targets, request_id)?,
                targets,
            })
        })
        .collect()
}

/// The unfinished creates among `ids` (a JSON array).
pub(super) fn unfinished_in(conn: &Connection, ids: &str) -> Result<Vec<Unfinished>, LedgerError> {
    unfinished(
        conn,
        "finished_at IS NULL AND id IN (SELECT value FROM json_each(?1))",
        [ids],
    )
}
