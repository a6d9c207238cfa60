//! The ledger: an embedded SQLite file that records every create and its delivery state on
//! every target *before* any upstream is called, and each target's outcome as it arrives.
//!
//! It is what makes the gateway safe to call twice and safe to crash:
//! - an `Idempotency-Key` names a create; the same key with the same body replays the recorded
//!   answer instead of calling the vendors again (only targets that failed or were throttled
//!   are sent once more), and with another body is refused;
//! - a create interrupted by a crash leaves targets `pending`, and the next start sends them
//!   (a vendor that did get the first call answers "already exists", which is recorded as such).
//!
//! SQLite calls are blocking, so they run on tokio's blocking pool behind one connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::engine::TargetResult;
use crate::error::StartupError;

#[derive(Clone)]
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger could not be written: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the ledger's worker stopped: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("the ledger holds a record it cannot read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// What the ledger says about a new create.
pub enum Begin {
    /// Recorded under this id; go ahead and send.
    New(i64),
    /// The key was used before with the same body and that create finished with every target
    /// settled for good: its answer.
    Replay {
        request_id: i64,
        results: Vec<TargetResult>,
    },
    /// The key was used before with the same body, and these targets had failed or been
    /// throttled: they are `pending` again, to be sent once more; the others stay as they were.
    Retry { request_id: i64, targets: Vec<String> },
    /// The key was used before with the same body and that create is still being delivered.
    InProgress(i64),
    /// The key was used before with a different body.
    KeyReused(i64),
}

/// One recorded create, as `GET /v1/requests/{id}` shows it.
pub struct Stored {
    pub request_id: i64,
    pub code: String,
    pub received_at: String,
    pub finished: bool,
    /// Targets still waiting for an answer (after a crash, until the restart resends them).
    pub pending: Vec<String>,
    pub results: Vec<TargetResult>,
}

/// A create a crash interrupted: its validated body and the targets still pending.
pub struct Unfinished {
    pub request_id: i64,
    pub body: Value,
    pub pending: Vec<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    code            TEXT NOT NULL,
    body            TEXT NOT NULL,
    received_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at     TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    upstream   TEXT NOT NULL,
    position   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    result     TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (request_id, upstream)
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(status) WHERE status = 'pending';
";

impl Ledger {
    /// Opens (creating if needed) the ledger file. Failure stops start-up: a gateway that
    /// cannot record would be one that can lose codes.
    pub fn open(path: &Path) -> Result<Self, StartupError> {
        let fail = |e: rusqlite::Error| StartupError::Ledger {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(fail)?;
        // A busy timeout (set first: switching to WAL takes a lock too) rides out a second
        // process holding the file briefly; WAL keeps readers from blocking the writer.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await?
    }

    /// Records a create before anything is sent: one row for the request, one per target,
    /// `pending` for those about to be called and final for those settled without a call.
    pub async fn begin(
        &self,
        key: Option<String>,
        code: String,
        body: Value,
        targets: Vec<(String, Option<TargetResult>)>,
    ) -> Result<Begin, LedgerError> {
        let body = body.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            if let Some(key) = &key {
                let seen: Option<(i64, String, Option<String>)> = tx
                    .prepare_cached("SELECT id, body, finished_at FROM requests WHERE idempotency_key = ?1")?
                    .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if let Some((id, seen_body, finished)) = seen {
                    if seen_body != body {
                        return Ok(Begin::KeyReused(id));
                    }
                    if finished.is_none() {
                        return Ok(Begin::InProgress(id));
                    }
                    // Marked pending again inside this transaction, so that a concurrent
                    // repeat sees the create in progress instead of sending a second time.
                    let retry: Vec<String> = {
                        let mut stmt = tx.prepare(
                            "SELECT upstream FROM deliveries WHERE request_id = ?1 AND status IN ('failed', 'throttled') ORDER BY position",
                        )?;
                        let rows = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
                        rows
                    };
                    if retry.is_empty() {
                        let results = results(&tx, id)?;
                        return Ok(Begin::Replay { request_id: id, results });
                    }
                    tx.execute(
                        "UPDATE deliveries SET status = 'pending' WHERE request_id = ?1 AND status IN ('failed', 'throttled')",
                        [id],
                    )?;
                    tx.execute("UPDATE requests SET finished_at = NULL WHERE id = ?1", [id])?;
                    tx.commit()?;
                    return Ok(Begin::Retry {
                        request_id: id,
                        targets: retry,
                    });
                }
            }
            tx.prepare_cached("INSERT INTO requests (idempotency_key, code, body) VALUES (?1, ?2, ?3)")?
                .execute(params![key, code, body])?;
            let id = tx.last_insert_rowid();
            for (position, (upstream, settled)) in targets.iter().enumerate() {
                let (status, result) = match settled {
                    Some(r) => (status_name(r)?, Some(serde_json::to_string(r)?)),
                    None => ("pending".to_owned(), None),
                };
                tx.prepare_cached(
                    "INSERT INTO deliveries (request_id, upstream, position, status, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, upstream, position as i64, status, result])?;
            }
            finish_if_settled(&tx, id)?;
            tx.commit()?;
            Ok(Begin::New(id))
        })
        .await
    }

    /// Records one target's outcome as soon as it is known; the create is marked finished in
    /// the same transaction when this was its last pending target.
    pub async fn record(&self, request_id: i64, result: &TargetResult) -> Result<(), LedgerError> {
        let status = status_name(result)?;
        let json = serde_json::to_string(result)?;
        let upstream = result.upstream.clone();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            tx.prepare_cached(
                "UPDATE deliveries SET status = ?1, result = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE request_id = ?3 AND upstream = ?4",
            )?
            .execute(params![status, json, request_id, upstream])?;
            finish_if_settled(&tx, request_id)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn get(&self, request_id: i64) -> Result<Option<Stored>, LedgerError> {
        self.with(move |conn| {
            let row: Option<(String, String, Option<String>)> = conn
                .query_row(
                    "SELECT code, received_at, finished_at FROM requests WHERE id = ?1",
                    [request_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((code, received_at, finished_at)) = row else {
                return Ok(None);
            };
            Ok(Some(Stored {
                request_id,
                code,
                received_at,
                finished: finished_at.is_some(),
                pending: pending(conn, request_id)?,
                results: results(conn, request_id)?,
            }))
        })
        .await
    }

    /// Creates that a crash interrupted, oldest first. Read at start-up, before the gateway
    /// serves: a create begun after that is in flight, not interrupted, and must not be resent.
    pub fn interrupted(&self) -> Result<Vec<Unfinished>, LedgerError> {
        let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stmt = conn.prepare("SELECT id, body FROM requests WHERE finished_at IS NULL ORDER BY id")?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(request_id, body)| {
                Ok(Unfinished {
                    request_id,
                    body: serde_json::from_str(&body)?,
                    pending: pending(&conn, request_id)?,
                })
            })
            .collect()
    }

    /// Every settled result of a create, in target order.
    pub async fn results(&self, request_id: i64) -> Result<Vec<TargetResult>, LedgerError> {
        self.with(move |conn| results(conn, request_id)).await
    }
}

/// Marks a create finished once none of its targets is pending.
fn finish_if_settled(conn: &Connection, request_id: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE requests SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
         WHERE id = ?1 AND finished_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM deliveries WHERE request_id = ?1 AND status = 'pending')",
    )?
    .execute([request_id])
}

fn status_name(result: &TargetResult) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_value(result.status)?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn results(conn: &Connection, request_id: i64) -> Result<Vec<TargetResult>, LedgerError> {
    let mut stmt =
        conn.prepare("SELECT result FROM deliveries WHERE request_id = ?1 AND result IS NOT NULL ORDER BY position")?;
    let rows: Vec<String> = stmt.query_map([request_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows.iter().map(|r| serde_json::from_str(r)).collect::<Result<_, _>>()?)
}

fn pending(conn: &Connection, request_id: i64) -> Result<Vec<String>, LedgerError> {
    let mut stmt =
        conn.prepare("SELECT upstream FROM deliveries WHERE request_id = ?1 AND status = 'pending' ORDER BY position")?;
    let rows = stmt.query_map([request_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}
