//! The ledger file's schema, migrated in order at open; `PRAGMA user_version` counts the
//! migrations applied.

use std::collections::HashMap;

use rusqlite::{params, Connection, Transaction};

use crate::domain::code::code_key;

/// One schema migration: SQL, or a step that needs the gateway's own code.
pub(super) enum Migration {
    Sql(&'static str),
    Rust(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 1: codes with their deliveries, creates with their idempotency keys, sync jobs.
    Migration::Sql(
        "
CREATE TABLE codes (
    id         INTEGER PRIMARY KEY,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (campaign, code_key)
);
CREATE TABLE deliveries (
    code_id    INTEGER NOT NULL REFERENCES codes(id),
    upstream   TEXT NOT NULL,
    status     TEXT NOT NULL,
    vendor_id  TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    result     TEXT,
    job_id     INTEGER,
    request_id INTEGER,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (code_id, upstream)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_status ON deliveries(upstream, status);
CREATE TABLE requests (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    key_expires_at  TEXT,
    body            TEXT NOT NULL,
    code_id         INTEGER NOT NULL REFERENCES codes(id),
    targets         TEXT NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at     TEXT,
    response        TEXT
);
CREATE INDEX requests_unfinished ON requests(id) WHERE finished_at IS NULL;
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    state       TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    targets     TEXT NOT NULL,
    source      TEXT NOT NULL,
    options     TEXT NOT NULL,
    total       INTEGER NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT
);
CREATE TABLE job_items (
    job_id  INTEGER NOT NULL REFERENCES jobs(id),
    seq     INTEGER NOT NULL,
    code_id INTEGER NOT NULL REFERENCES codes(id),
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX job_items_code ON job_items(job_id, code_id);
CREATE INDEX job_items_by_code ON job_items(code_id);
",
    ),
    // 2: a code's holders in every campaign, for the check that one upstream holds a code for
    // one campaign only.
    Migration::Sql("CREATE INDEX codes_by_key ON codes(code_key);"),
    // 3: a running tally of each job's deliveries by target and status, so that a job's
    // progress (polled by clients, the CLI's bars and /metrics) costs a few rows instead of a
    // join over every code of the job. `create_job` counts a new job's deliveries once; from
    // then on the trigger moves a delivery from its old status to its new one in every job
    // that counts it (a code can be in several jobs: a retry, a mirror). A job counts a
    // delivery exactly when it has a row for the delivery's target and old status: rows are
    // never deleted, only brought to 0. (No `OR IGNORE` in the trigger: the upsert that fires
    // it would override that conflict clause with its own.)
    Migration::Sql(
        "
CREATE TABLE job_tally (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    upstream TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (job_id, upstream, status)
) WITHOUT ROWID;
INSERT INTO job_tally (job_id, upstream, status, n)
    SELECT i.job_id, d.upstream, d.status, COUNT(*)
      FROM job_items i JOIN jobs j ON j.id = i.job_id JOIN deliveries d ON d.code_id = i.code_id
     WHERE d.upstream IN (SELECT value FROM json_each(j.targets))
     GROUP BY i.job_id, d.upstream, d.status;
CREATE TRIGGER deliveries_tally AFTER UPDATE OF status ON deliveries
WHEN old.status IS NOT new.status
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, new.upstream, new.status, 0 FROM job_tally t
         WHERE t.upstream = old.upstream AND t.status = old.status
           AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id)
           AND NOT EXISTS (SELECT 1 FROM job_tally x
                            WHERE x.job_id = t.job_id AND x.upstream = new.upstream AND x.status = new.status);
    UPDATE job_tally SET n = n + 1
     WHERE upstream = new.upstream AND status = new.status
       AND job_id IN (SELECT t.job_id FROM job_tally t
                       WHERE t.upstream = old.upstream AND t.status = old.status
                         AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id));
    UPDATE job_tally SET n = n - 1
     WHERE upstream = old.upstream AND status = old.status
       AND job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id);
END;
",
    ),
    // 4: codes are keyed by NFKC and case folding (`promo_adapters::model::code_key`) instead
    // of upper case, so that compatibility forms clash like case variants do.
    Migration::Rust(rekey_codes),
    // 5: a job's items while its intake runs (see `Store::begin_job`): checked and staged in
    // short slices, then promoted to codes and claims. A staged code is a reservation: creates
    // and other jobs look it up by key.
    Migration::Sql(
        "
CREATE TABLE job_stage (
    job_id     INTEGER NOT NULL REFERENCES jobs(id),
    seq        INTEGER NOT NULL,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX job_stage_code ON job_stage(job_id, code_key);
CREATE INDEX job_stage_by_key ON job_stage(code_key);
",
    ),
    // 6: an owner and a lease on unfinished creates and running jobs: who is working on them,
    // until when (see `Store::adopt`).
    Migration::Sql(
        "
ALTER TABLE requests ADD COLUMN owner TEXT;
ALTER TABLE requests ADD COLUMN lease_until TEXT;
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;
",
    ),
    // 7: the tally's trigger (migration 3) only for deliveries of a job's code: a create's
    // outcome ran its three statements, each looking through every job's tally, for nothing.
    Migration::Sql(
        "
DROP TRIGGER deliveries_tally;
CREATE TRIGGER deliveries_tally AFTER UPDATE OF status ON deliveries
WHEN old.status IS NOT new.status AND EXISTS (SELECT 1 FROM job_items WHERE code_id = old.code_id)
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, new.upstream, new.status, 0 FROM job_tally t
         WHERE t.upstream = old.upstream AND t.status = old.status
           AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id)
           AND NOT EXISTS (SELECT 1 FROM job_tally x
                            WHERE x.job_id = t.job_id AND x.upstream = new.upstream AND x.status = new.status);
    UPDATE job_tally SET n = n + 1
     WHERE upstream = new.upstream AND status = new.status
       AND job_id IN (SELECT t.job_id FROM job_tally t
                       WHERE t.upstream = old.upstream AND t.status = old.status
                         AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id));
    UPDATE job_tally SET n = n - 1
     WHERE upstream = old.upstream AND status = old.status
       AND job_id IN (SELECT job_id FROM job_items WHERE code_id = old.code_id);
END;
",
    ),
    // 8: the same tally in two statements instead of three, each driven from the code's job
    // items (one or two rows) rather than materializing them as an `IN` list. On the tally's
    // tables alone (100,000 status updates of job codes) the trigger cost about five times the
    // update it follows; this form takes a quarter off it. The new status's row is counted up
    // by an upsert only for jobs that counted the old one, as before.
    Migration::Sql(
        "
DROP TRIGGER deliveries_tally;
CREATE TRIGGER deliveries_tally AFTER UPDATE OF status ON deliveries
WHEN old.status IS NOT new.status AND EXISTS (SELECT 1 FROM job_items WHERE code_id = old.code_id)
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, new.upstream, new.status, 1
          FROM job_items i JOIN job_tally t
            ON t.job_id = i.job_id AND t.upstream = old.upstream AND t.status = old.status
         WHERE i.code_id = old.code_id
        ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = n + 1;
    UPDATE job_tally SET n = n - 1
      FROM (SELECT job_id FROM job_items WHERE code_id = old.code_id) AS i
     WHERE job_tally.job_id = i.job_id AND job_tally.upstream = old.upstream AND job_tally.status = old.status;
END;
",
    ),
    // 9: operations after a code's create. A request is a create or a revoke; a revoke's claims
    // and outcomes live in `revocations`, the twin of `deliveries` (one row a code and
    // upstream), and the code carries when it was first revoked, after which nothing delivers
    // it again. Who asked (the API key's name) is kept with each request.
    Migration::Sql(
        "
ALTER TABLE requests ADD COLUMN operation TEXT NOT NULL DEFAULT 'create';
ALTER TABLE requests ADD COLUMN requested_by TEXT;
ALTER TABLE codes ADD COLUMN revoked_at TEXT;
CREATE TABLE revocations (
    code_id    INTEGER NOT NULL REFERENCES codes(id),
    upstream   TEXT NOT NULL,
    status     TEXT NOT NULL,
    vendor_id  TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    result     TEXT,
    job_id     INTEGER,
    request_id INTEGER,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (code_id, upstream)
) WITHOUT ROWID;
",
    ),
    // 10: revoke jobs. A job has an operation; a revoke job's items are claimed in
    // `revocations`, and counted in a tally of their own, kept by a trigger of the same form as
    // the deliveries' (migration 8): a code can be in a create job and a revoke job, and each
    // counts only its own operation's rows.
    Migration::Sql(
        "
ALTER TABLE jobs ADD COLUMN operation TEXT NOT NULL DEFAULT 'create';
CREATE TABLE revoke_tally (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    upstream TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (job_id, upstream, status)
) WITHOUT ROWID;
CREATE TRIGGER revocations_tally AFTER UPDATE OF status ON revocations
WHEN old.status IS NOT new.status AND EXISTS (SELECT 1 FROM job_items WHERE code_id = old.code_id)
BEGIN
    INSERT INTO revoke_tally (job_id, upstream, status, n)
        SELECT t.job_id, new.upstream, new.status, 1
          FROM job_items i JOIN revoke_tally t
            ON t.job_id = i.job_id AND t.upstream = old.upstream AND t.status = old.status
         WHERE i.code_id = old.code_id
        ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = n + 1;
    UPDATE revoke_tally SET n = n - 1
      FROM (SELECT job_id FROM job_items WHERE code_id = old.code_id) AS i
     WHERE revoke_tally.job_id = i.job_id AND revoke_tally.upstream = old.upstream AND revoke_tally.status = old.status;
END;
",
    ),
];

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tx = conn.transaction()?;
    if version == 0 {
        // A ledger from before versioned migrations kept creates in `requests`/`deliveries`
        // of another shape; they are kept aside, not dropped.
        let old: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests')",
            [],
            |r| r.get(0),
        )?;
        if old {
            tx.execute_batch(
                "ALTER TABLE requests RENAME TO v0_requests; ALTER TABLE deliveries RENAME TO v0_deliveries;
                 DROP INDEX IF EXISTS deliveries_pending;",
            )?;
        }
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Rust(step) => step(&tx)?,
        }
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()
}

/// Recomputes every code's key with [`code_key`]. Every key is first moved out of the way (a
/// new key may equal another row's old one), then set. Two codes of one campaign that were
/// distinct before but fold alike now (`KEY` and `\u{212A}EY`) cannot share the unique key: the
/// later keeps a key no request can produce (the fold, a NUL, its id), so it stays readable by
/// id and in listings, while the earlier one answers for the key, and a request for either
/// spelling clashes with it. Each such pair is logged.
fn rekey_codes(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(i64, String, String)> = {
        let mut stmt = tx.prepare("SELECT id, campaign, code FROM codes ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    tx.execute("UPDATE codes SET code_key = char(1) || id", [])?;
    let mut taken: HashMap<(String, String), String> = HashMap::new();
    let mut update = tx.prepare("UPDATE codes SET code_key = ?1 WHERE id = ?2")?;
    for (id, campaign, code) in rows {
        let key = code_key(&code);
        let key = match taken.get(&(campaign.clone(), key.clone())) {
            Some(first) => {
                tracing::warn!(
                    campaign = %campaign, code = %code, clashes_with = %first,
                    "two codes of one campaign fold to one key; the later keeps a key of its own"
                );
                format!("{key}\u{0}{id}")
            }
            None => {
                taken.insert((campaign, key.clone()), code);
                key
            }
        };
        update.execute(params![key, id])?;
    }
    Ok(())
}
