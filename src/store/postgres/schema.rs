//! The PostgreSQL ledger's schema, as numbered migrations. The tables are the SQLite ledger's
//! (`store::sqlite`), in PostgreSQL's types: timestamps as `timestamptz`, a job's targets as
//! `text[]`, and the texts the domain compares byte for byte (a code's definition, a request's
//! body) as `text`, never `jsonb`, which would reorder keys.

/// Migrations in order; `ledger_migrations` records those applied, one row each.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: codes with their deliveries, creates with their idempotency keys and owners, sync jobs
    // with their owners, items, staged items (a reservation while the intake runs) and tally.
    "
CREATE TABLE codes (
    id         BIGSERIAL PRIMARY KEY,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (campaign, code_key)
);
CREATE INDEX codes_by_key ON codes (code_key);
CREATE TABLE deliveries (
    code_id    BIGINT NOT NULL REFERENCES codes (id),
    upstream   TEXT NOT NULL,
    status     TEXT NOT NULL,
    vendor_id  TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    result     TEXT,
    job_id     BIGINT,
    request_id BIGINT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (code_id, upstream)
);
CREATE INDEX deliveries_by_status ON deliveries (upstream, status);
CREATE INDEX deliveries_by_job ON deliveries (job_id) WHERE status = 'pending';
CREATE TABLE requests (
    id              BIGSERIAL PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    key_expires_at  TIMESTAMPTZ,
    body            TEXT NOT NULL,
    code_id         BIGINT NOT NULL REFERENCES codes (id),
    targets         TEXT[] NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at     TIMESTAMPTZ,
    response        TEXT,
    owner           TEXT,
    lease_until     TIMESTAMPTZ
);
CREATE INDEX requests_unfinished ON requests (id) WHERE finished_at IS NULL;
CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    state       TEXT NOT NULL,
    campaign    TEXT NOT NULL,
    targets     TEXT[] NOT NULL,
    source      TEXT NOT NULL,
    options     TEXT NOT NULL,
    total       BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    owner       TEXT,
    lease_until TIMESTAMPTZ
);
CREATE TABLE job_items (
    job_id  BIGINT NOT NULL REFERENCES jobs (id),
    seq     BIGINT NOT NULL,
    code_id BIGINT NOT NULL REFERENCES codes (id),
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, code_id)
);
CREATE INDEX job_items_by_code ON job_items (code_id);
CREATE TABLE job_stage (
    job_id     BIGINT NOT NULL REFERENCES jobs (id),
    seq        BIGINT NOT NULL,
    campaign   TEXT NOT NULL,
    code       TEXT NOT NULL,
    code_key   TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, code_key)
);
CREATE INDEX job_stage_by_key ON job_stage (code_key);
-- A running tally of each job's deliveries by target and status, kept by a trigger as in the
-- SQLite ledger (its migration 3 says why): a job counts a delivery exactly when it has a row
-- for the delivery's target and old status.
CREATE TABLE job_tally (
    job_id   BIGINT NOT NULL REFERENCES jobs (id),
    upstream TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (job_id, upstream, status)
);
CREATE FUNCTION deliveries_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, NEW.upstream, NEW.status, 0 FROM job_tally t
         WHERE t.upstream = OLD.upstream AND t.status = OLD.status
           AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id)
    ON CONFLICT DO NOTHING;
    UPDATE job_tally SET n = n + 1
     WHERE upstream = NEW.upstream AND status = NEW.status
       AND job_id IN (SELECT t.job_id FROM job_tally t
                       WHERE t.upstream = OLD.upstream AND t.status = OLD.status
                         AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id));
    UPDATE job_tally SET n = n - 1
     WHERE upstream = OLD.upstream AND status = OLD.status
       AND job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_tally AFTER UPDATE OF status ON deliveries
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION deliveries_tally();
",
    // 2: the tally's trigger returns at once for a delivery of no job's code: a create's
    // outcome ran its three statements, each looking through every job's tally, for nothing.
    // (A trigger's WHEN cannot hold the subquery, as SQLite's does.)
    "
CREATE OR REPLACE FUNCTION deliveries_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM job_items WHERE code_id = OLD.code_id) THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, NEW.upstream, NEW.status, 0 FROM job_tally t
         WHERE t.upstream = OLD.upstream AND t.status = OLD.status
           AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id)
    ON CONFLICT DO NOTHING;
    UPDATE job_tally SET n = n + 1
     WHERE upstream = NEW.upstream AND status = NEW.status
       AND job_id IN (SELECT t.job_id FROM job_tally t
                       WHERE t.upstream = OLD.upstream AND t.status = OLD.status
                         AND t.job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id));
    UPDATE job_tally SET n = n - 1
     WHERE upstream = OLD.upstream AND status = OLD.status
       AND job_id IN (SELECT job_id FROM job_items WHERE code_id = OLD.code_id);
    RETURN NULL;
END
$$;
",
    // 3: the same tally in two statements instead of three, as the SQLite ledger's migration 8:
    // each is driven from the code's job items (an index probe, one or two rows) rather than
    // through `IN` lists, and the new status is counted up by an upsert only for jobs that
    // counted the old one. An upsert that touched no row means no job counts this delivery, so
    // there is nothing to count down either.
    "
CREATE OR REPLACE FUNCTION deliveries_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_tally (job_id, upstream, status, n)
        SELECT t.job_id, NEW.upstream, NEW.status, 1
          FROM job_items i JOIN job_tally t
            ON t.job_id = i.job_id AND t.upstream = OLD.upstream AND t.status = OLD.status
         WHERE i.code_id = OLD.code_id
    ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = job_tally.n + 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE job_tally SET n = job_tally.n - 1
      FROM job_items i
     WHERE i.code_id = OLD.code_id AND job_tally.job_id = i.job_id
       AND job_tally.upstream = OLD.upstream AND job_tally.status = OLD.status;
    RETURN NULL;
END
$$;
",
    // 4: operations after a code's create, as the SQLite ledger's migration 9: a request is a
    // create or a revoke, a revoke's claims and outcomes live in `revocations` (the twin of
    // `deliveries`), and the code carries when it was first revoked.
    "
ALTER TABLE requests ADD COLUMN operation TEXT NOT NULL DEFAULT 'create';
ALTER TABLE requests ADD COLUMN requested_by TEXT;
ALTER TABLE codes ADD COLUMN revoked_at TIMESTAMPTZ;
CREATE TABLE revocations (
    code_id    BIGINT NOT NULL REFERENCES codes(id),
    upstream   TEXT NOT NULL,
    status     TEXT NOT NULL,
    vendor_id  TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    result     TEXT,
    job_id     BIGINT,
    request_id BIGINT,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (code_id, upstream)
);
",
    // 5: revoke jobs, as the SQLite ledger's migration 10: a job has an operation, and a revoke
    // job's revocations are counted in a tally of their own by a trigger of the deliveries' form.
    "
ALTER TABLE jobs ADD COLUMN operation TEXT NOT NULL DEFAULT 'create';
CREATE TABLE revoke_tally (
    job_id   BIGINT NOT NULL REFERENCES jobs(id),
    upstream TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (job_id, upstream, status)
);
CREATE FUNCTION revocations_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO revoke_tally (job_id, upstream, status, n)
        SELECT t.job_id, NEW.upstream, NEW.status, 1
          FROM job_items i JOIN revoke_tally t
            ON t.job_id = i.job_id AND t.upstream = OLD.upstream AND t.status = OLD.status
         WHERE i.code_id = OLD.code_id
    ON CONFLICT (job_id, upstream, status) DO UPDATE SET n = revoke_tally.n + 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE revoke_tally SET n = revoke_tally.n - 1
      FROM job_items i
     WHERE i.code_id = OLD.code_id AND revoke_tally.job_id = i.job_id
       AND revoke_tally.upstream = OLD.upstream AND revoke_tally.status = OLD.status;
    RETURN NULL;
END
$$;
CREATE TRIGGER revocations_tally AFTER UPDATE OF status ON revocations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION revocations_tally();
",
];
