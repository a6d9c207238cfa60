//! The reads and writes the PostgreSQL store's operations share, each inside the caller's
//! transaction. The decisions are the domain's (`domain::code`, `domain::request`); these only
//! read the rows the rules need and write what they decide.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::PgError;
use crate::domain::code::{self, CodeConflict, CodeRecord, Decision, Definition, DeliveryRecord, Known};
use crate::domain::delivery::{Status, TargetResult};
use crate::domain::request::{OpKind, Unfinished};

pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Every query is prepared once per connection and reused (the pool's statement cache).
pub(super) async fn rows<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>, PgError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, p).await?)
}

pub(super) async fn opt<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Option<Row>, PgError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, p).await?)
}

pub(super) async fn one<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Row, PgError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_one(&stmt, p).await?)
}

pub(super) async fn exec<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64, PgError> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, p).await?)
}

pub(super) fn parse_status(s: &str) -> Status {
    Status::from_name(s).unwrap_or(Status::Failed)
}

/// A lock id for an advisory lock: the first eight bytes of a SHA-256 of the name, so that the
/// same name locks the same id on every replica (std's hasher is seeded per process).
pub(super) fn lock_id(space: &str, name: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(space.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("eight bytes"))
}

/// Writers that reopen deliveries across a whole job (a retry) take this lock alone; every
/// other writer of claims shares it.
const ALL_CODES: i64 = 0;

/// Serializes this transaction with every other writer of the same code keys, whichever
/// replica and campaign: the held-elsewhere check, the redefinition rule and the claim read
/// what they write next, so two replicas must not both read before either writes. Keys are
/// locked in one order (sorted), after the shared lock, so two writers never wait on each other
/// in a cycle; the locks end with the transaction.
pub(super) async fn lock_codes<C: GenericClient>(c: &C, keys: &[String]) -> Result<(), PgError> {
    exec(c, "SELECT pg_advisory_xact_lock_shared($1)", &[&ALL_CODES]).await?;
    let mut ids: Vec<i64> = keys.iter().map(|k| lock_id("code", k)).collect();
    ids.sort_unstable();
    ids.dedup();
    // `unnest` yields the array's order, and the aggregate takes the locks row by row in it.
    exec(
        c,
        "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// Holds out every writer of claims for the transaction (see [`lock_codes`]).
pub(super) async fn lock_all_codes<C: GenericClient>(c: &C) -> Result<(), PgError> {
    exec(c, "SELECT pg_advisory_xact_lock($1)", &[&ALL_CODES]).await?;
    Ok(())
}

/// Serializes the creates that use one idempotency key, so that a concurrent second one reads
/// the first's row (in progress, reused, replay) instead of failing on the unique key. Taken
/// before the code's lock, always.
pub(super) async fn lock_key<C: GenericClient>(c: &C, key: &str) -> Result<(), PgError> {
    exec(c, "SELECT pg_advisory_xact_lock($1)", &[&lock_id("idempotency", key)]).await?;
    Ok(())
}

/// Whether a code is delivered or being delivered at any target.
async fn is_held<C: GenericClient>(c: &C, code_id: i64) -> Result<bool, PgError> {
    let row = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE code_id = $1
                          AND status IN ('created', 'already_exists', 'pending'))",
        &[&code_id],
    )
    .await?;
    Ok(row.get(0))
}

/// The code the campaign holds under `def`'s key, for [`code::decide`].
pub(super) async fn known<C: GenericClient>(c: &C, def: &Definition) -> Result<Option<Known<i64>>, PgError> {
    let Some(row) = opt(
        c,
        "SELECT id, code, definition FROM codes WHERE campaign = $1 AND code_key = $2",
        &[&def.campaign, &def.key()],
    )
    .await?
    else {
        return Ok(None);
    };
    let (id, code, json): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    let held = def.differs_from(&code, &json).is_some() && is_held(c, id).await?;
    Ok(Some(Known { id, code, json, held }))
}

/// Finds a code in its campaign, or adds (or redefines) it, as [`code::decide`] rules.
pub(super) async fn find_or_add_code<C: GenericClient>(
    c: &C,
    def: &Definition,
) -> Result<Result<i64, CodeConflict>, PgError> {
    match code::decide(known(c, def).await?, def) {
        Decision::Add => {
            let row = one(
                c,
                "INSERT INTO codes (campaign, code, code_key, definition) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&def.campaign, &def.code, &def.key(), &def.json],
            )
            .await?;
            Ok(Ok(row.get(0)))
        }
        Decision::Keep(id) => Ok(Ok(id)),
        Decision::Redefine(id) => {
            exec(
                c,
                "UPDATE codes SET code = $1, definition = $2 WHERE id = $3",
                &[&def.code, &def.json, &id],
            )
            .await?;
            Ok(Ok(id))
        }
        Decision::Refuse(conflict) => Ok(Err(conflict)),
    }
}

/// A job's staged code of `def`'s campaign in another case or definition (a reservation `def`
/// cannot share); `job_id` is the job asking, whose own items are checked apart.
pub(super) async fn staged_conflict<C: GenericClient>(
    c: &C,
    def: &Definition,
    job_id: Option<i64>,
) -> Result<Option<CodeConflict>, PgError> {
    let row = opt(
        c,
        "SELECT code, definition FROM job_stage
          WHERE code_key = $1 AND campaign = $2 AND job_id IS DISTINCT FROM $3
            AND (code <> $4 OR definition <> $5) LIMIT 1",
        &[&def.key(), &def.campaign, &job_id, &def.code, &def.json],
    )
    .await?;
    Ok(row.and_then(|r| def.differs_from(r.get(0), r.get(1))))
}

/// Other campaigns' holds on a code at any of `targets` (delivered, being delivered, or staged
/// by another campaign's job for its targets), as [`code::held_elsewhere`] groups them.
pub(super) async fn held_elsewhere<C: GenericClient>(
    c: &C,
    campaign: &str,
    key: &str,
    targets: &[String],
) -> Result<Option<CodeConflict>, PgError> {
    let rows = rows(
        c,
        "SELECT campaign, code, upstream FROM (
            SELECT c.campaign, c.code, d.upstream, c.id AS ord FROM codes c JOIN deliveries d ON d.code_id = c.id
             WHERE c.code_key = $1 AND c.campaign <> $2 AND d.status IN ('created', 'already_exists', 'pending')
            UNION ALL
            SELECT s.campaign, s.code, t.upstream, -s.job_id FROM job_stage s JOIN jobs j ON j.id = s.job_id,
                   unnest(j.targets) AS t(upstream)
             WHERE s.code_key = $1 AND s.campaign <> $2) AS holds
          ORDER BY campaign, ord, upstream",
        &[&key, &campaign],
    )
    .await?;
    let holds = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2)));
    Ok(code::held_elsewhere(holds, targets))
}

/// The state of one delivery, if the ledger has it.
pub(super) async fn delivery<C: GenericClient>(
    c: &C,
    code_id: i64,
    upstream: &str,
) -> Result<Option<(Status, Option<String>)>, PgError> {
    state(c, OpKind::Create, code_id, upstream).await
}

/// The table an operation's claims and outcomes live in: a create's deliveries, a revoke's
/// revocations (the same columns).
pub(super) fn table(op: OpKind) -> &'static str {
    match op {
        OpKind::Create => "deliveries",
        OpKind::Revoke => "revocations",
    }
}

/// The statement that reads an operation's state at one target, by table: a create's
/// deliveries, a revoke's revocations (the same columns).
fn state_sql(op: OpKind) -> &'static str {
    match op {
        OpKind::Create => "SELECT status, result FROM deliveries WHERE code_id = $1 AND upstream = $2",
        OpKind::Revoke => "SELECT status, result FROM revocations WHERE code_id = $1 AND upstream = $2",
    }
}

/// An operation's state at one target, and its recorded result.
pub(super) async fn state<C: GenericClient>(
    c: &C,
    op: OpKind,
    code_id: i64,
    upstream: &str,
) -> Result<Option<(Status, Option<String>)>, PgError> {
    let row = opt(c, state_sql(op), &[&code_id, &upstream]).await?;
    Ok(row.map(|r| (parse_status(r.get(0)), r.get(1))))
}

/// When the code was first revoked, if it was.
pub(super) async fn revoked_at<C: GenericClient>(
    c: &C,
    code_id: i64,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, PgError> {
    let row = opt(c, "SELECT revoked_at FROM codes WHERE id = $1", &[&code_id]).await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Claims a revocation for a revoke: `pending`, or settled as given.
pub(super) async fn put_revocation<C: GenericClient>(
    c: &C,
    code_id: i64,
    upstream: &str,
    settled: Option<&TargetResult>,
    request_id: i64,
) -> Result<(), PgError> {
    let (status, result, attempts) = match settled {
        Some(r) => (r.status.as_str(), Some(serde_json::to_string(r)?), r.attempts as i32),
        None => ("pending", None, 0),
    };
    exec(
        c,
        "INSERT INTO revocations (code_id, upstream, status, result, attempts, request_id)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (code_id, upstream) DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result,
             attempts = revocations.attempts + EXCLUDED.attempts, request_id = EXCLUDED.request_id,
             updated_at = clock_timestamp()",
        &[&code_id, &upstream, &status, &result, &attempts, &request_id],
    )
    .await?;
    Ok(())
}

/// Claims a delivery for a caller (a create or a job): `pending`, or settled as given.
pub(super) async fn put_delivery<C: GenericClient>(
    c: &C,
    code_id: i64,
    upstream: &str,
    settled: Option<&TargetResult>,
    request_id: Option<i64>,
    job_id: Option<i64>,
) -> Result<(), PgError> {
    let (status, result, attempts) = match settled {
        Some(r) => (r.status.as_str(), Some(serde_json::to_string(r)?), r.attempts as i32),
        None => ("pending", None, 0),
    };
    exec(
        c,
        "INSERT INTO deliveries (code_id, upstream, status, result, attempts, request_id, job_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (code_id, upstream) DO UPDATE SET status = EXCLUDED.status, result = EXCLUDED.result,
             attempts = deliveries.attempts + EXCLUDED.attempts, request_id = EXCLUDED.request_id,
             job_id = EXCLUDED.job_id, vendor_id = NULL, updated_at = clock_timestamp()",
        &[&code_id, &upstream, &status, &result, &attempts, &request_id, &job_id],
    )
    .await?;
    Ok(())
}

pub(super) async fn read_code<C: GenericClient>(c: &C, id: i64) -> Result<Option<CodeRecord>, PgError> {
    let Some(row) = opt(
        c,
        "SELECT campaign, code, definition, created_at, revoked_at FROM codes WHERE id = $1",
        &[&id],
    )
    .await?
    else {
        return Ok(None);
    };
    let campaign: String = row.get(0);
    let definition: String = row.get(2);
    Ok(Some(CodeRecord {
        code: row.get(1),
        campaign: (!campaign.is_empty()).then_some(campaign),
        definition: serde_json::from_str(&definition)?,
        created_at: row.get(3),
        deliveries: records(c, OpKind::Create, id).await?,
        revoked_at: row.get(4),
        revocations: records(c, OpKind::Revoke, id).await?,
    }))
}

/// A code's rows of one operation, by upstream.
async fn records<C: GenericClient>(c: &C, op: OpKind, id: i64) -> Result<BTreeMap<String, DeliveryRecord>, PgError> {
    let sql = match op {
        OpKind::Create => {
            "SELECT upstream, status, vendor_id, attempts, updated_at, result, job_id FROM deliveries WHERE code_id = $1"
        }
        OpKind::Revoke => {
            "SELECT upstream, status, vendor_id, attempts, updated_at, result, job_id FROM revocations WHERE code_id = $1"
        }
    };
    let mut deliveries = BTreeMap::new();
    for r in rows(c, sql, &[&id]).await? {
        let result: Option<String> = r.get(5);
        deliveries.insert(
            r.get::<_, String>(0),
            DeliveryRecord {
                status: parse_status(r.get(1)),
                vendor_id: r.get(2),
                attempts: r.get::<_, i32>(3) as u32,
                updated_at: r.get(4),
                result: result.as_deref().map(serde_json::from_str).transpose()?,
                job_id: r.get(6),
            },
        );
    }
    Ok(deliveries)
}

/// The current result of each target of a code; a target still pending has none yet.
pub(super) async fn current_results<C: GenericClient>(
    c: &C,
    op: OpKind,
    code_id: i64,
    targets: &[String],
) -> Result<Vec<TargetResult>, PgError> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        if let Some((_, Some(result))) = state(c, op, code_id, t).await? {
            out.push(serde_json::from_str(&result)?);
        }
    }
    Ok(out)
}

/// The targets of a request still pending under its own claim.
pub(super) async fn pending_of<C: GenericClient>(
    c: &C,
    op: OpKind,
    code_id: i64,
    targets: &[String],
    request_id: i64,
) -> Result<Vec<String>, PgError> {
    let sql = match op {
        OpKind::Create => {
            "SELECT upstream FROM deliveries WHERE code_id = $1 AND upstream = ANY($2) AND status = 'pending'
                AND request_id = $3"
        }
        OpKind::Revoke => {
            "SELECT upstream FROM revocations WHERE code_id = $1 AND upstream = ANY($2) AND status = 'pending'
                AND request_id = $3"
        }
    };
    let claimed = rows(c, sql, &[&code_id, &targets, &request_id]).await?;
    let claimed: Vec<String> = claimed.iter().map(|r| r.get(0)).collect();
    Ok(targets.iter().filter(|t| claimed.contains(t)).cloned().collect())
}

/// Unfinished creates, oldest first: every one, or those among `ids`.
pub(super) async fn unfinished<C: GenericClient>(c: &C, ids: Option<&[i64]>) -> Result<Vec<Unfinished>, PgError> {
    let found = rows(
        c,
        "SELECT id, code_id, body, targets, operation FROM requests
          WHERE finished_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1)) ORDER BY id",
        &[&ids],
    )
    .await?;
    let mut out = Vec::with_capacity(found.len());
    for r in found {
        let (request_id, code_id, body, targets): (i64, i64, String, Vec<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let operation = OpKind::from_name(r.get(4));
        out.push(Unfinished {
            request_id,
            operation,
            code_id,
            body: serde_json::from_str(&body)?,
            pending: pending_of(c, operation, code_id, &targets, request_id).await?,
            targets,
        });
    }
    Ok(out)
}
