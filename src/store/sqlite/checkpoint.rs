//! Checkpoints off the write path, and a log that does not grow without end.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint, with an fsync)
//! from inside whichever commit pushes the log past its threshold: one create in a thousand
//! paid milliseconds for it, on a runtime thread. The writer's connection turns that off and
//! this thread, with a connection of its own, checkpoints every [`INTERVAL`] instead.
//!
//! A `PASSIVE` checkpoint never blocks the writer, but SQLite starts the log again from the top
//! only when a write begins with every frame copied and no reader in the log. Under steady
//! writes that moment never comes, and the log grew by hundreds of megabytes a minute, each
//! commit appending to a longer file (new blocks, new page-cache pages, a larger shared-memory
//! index). So once the log passes [`RESTART_FRAMES`], the passive pass (which copies the bulk
//! without blocking anyone) is followed by a `RESTART` checkpoint with the writer's connection
//! lock held: it copies the few frames committed meanwhile and makes the next commit start the
//! log from the top. Writes queue for the writer while it runs (the group commit then takes
//! them as one batch) rather than wait in SQLite's busy handler, which sleeps a millisecond at
//! least. `journal_size_limit` trims a log that a burst made long.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;

/// How often the log is copied back.
pub(super) const INTERVAL: Duration = Duration::from_millis(200);

/// The log's length in frames (pages) past which a checkpoint finishes under the writer's lock:
/// SQLite's own automatic checkpoint threshold, about 4 MiB of 4 KiB pages.
pub(super) const RESTART_FRAMES: i64 = 1000;

/// The longest the log file is left after it starts again from the top (a burst can make it
/// longer in between).
pub(super) const LOG_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The checkpointing thread; it stops when this is dropped (with the last handle on the ledger).
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing `path`, whose writes go through `writer`. Failing to start (no
    /// thread, no connection) only leaves the checkpoints to SQLite's own, so it is not an
    /// error: it returns `None` and says why.
    pub(super) fn start(path: &Path, writer: &Arc<Mutex<Connection>>) -> Option<Self> {
        let conn = match Connection::open(path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("the ledger's checkpoints stay in its commits: {e}");
                return None;
            }
        };
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let (stop, stopped) = mpsc::channel::<()>();
        let lock = writer.clone();
        let spawned = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = checkpoint(&conn, &lock) {
                        tracing::debug!("a ledger checkpoint did not complete: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => {
                // Only once the thread runs: otherwise the commits keep doing it.
                let writer = writer.lock();
                let set = writer
                    .pragma_update(None, "wal_autocheckpoint", 0)
                    .and_then(|()| writer.pragma_update(None, "journal_size_limit", LOG_SIZE_LIMIT));
                if let Err(e) = set {
                    tracing::warn!("the ledger's checkpoints stay in its commits: {e}");
                }
                Some(Self { _stop: stop })
            }
            Err(e) => {
                tracing::warn!("the ledger's checkpoints stay in its commits: {e}");
                None
            }
        }
    }
}

/// How far one checkpoint got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pass {
    /// Frames in the log.
    pub(super) log: i64,
    /// Of those, the frames copied into the database file.
    pub(super) copied: i64,
    /// The log was long, and the next commit starts it again from the top.
    pub(super) restarted: bool,
}

/// How long the pass under the writer's lock waits for another process's writer or readers
/// (a CLI job beside the server): this process's writes queue meanwhile.
const RESTART_PATIENCE: Duration = Duration::from_millis(50);

/// One checkpoint: a passive pass; then, when the log is long, a `RESTART` pass with the
/// writer's connection held.
pub(super) fn checkpoint(conn: &Connection, writer: &Mutex<Connection>) -> rusqlite::Result<Pass> {
    let (_, log, copied) = pass(conn, "PASSIVE")?;
    if log < RESTART_FRAMES {
        return Ok(Pass {
            log,
            copied,
            restarted: false,
        });
    }
    let _no_commits = writer.lock();
    conn.busy_timeout(RESTART_PATIENCE)?;
    let restart = pass(conn, "RESTART");
    conn.busy_timeout(Duration::from_secs(1))?;
    let (busy, log, copied) = restart?;
    Ok(Pass {
        log,
        copied,
        restarted: !busy,
    })
}

/// `PRAGMA wal_checkpoint(mode)`: whether it was kept from finishing, the log's frames, and how
/// many of them are copied (both -1 when the database is not in WAL mode).
fn pass(conn: &Connection, mode: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("t.db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    /// Under writes that never pause, passive passes alone leave the log growing; the
    /// restarting pass makes the next commits write over the log's start instead.
    #[test]
    fn a_long_log_under_steady_writes_is_started_again_from_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        // As the ledger's: a commit that meets the checkpoint's momentary locks waits its turn.
        writer.busy_timeout(Duration::from_secs(10)).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        let writer = Arc::new(Mutex::new(writer));
        let write = |writer: &Mutex<Connection>| {
            writer
                .lock()
                .execute("INSERT INTO t (body) VALUES (zeroblob(3000))", [])
                .unwrap();
        };
        for _ in 0..3 * RESTART_FRAMES {
            write(&writer);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let steady = {
            let (writer, stop) = (writer.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    write(&writer);
                }
            })
        };
        let own = Connection::open(&path).unwrap();
        let first = checkpoint(&own, &writer).unwrap();
        assert!(first.restarted && first.copied == first.log, "{first:?}");
        let long = wal_bytes(dir.path());
        let passes: Vec<Pass> = (0..20).map(|_| checkpoint(&own, &writer).unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        steady.join().unwrap();
        // Every commit since went over the log's start: the file is no longer than it was.
        let writes = writer
            .lock()
            .query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap();
        assert!(writes > 3 * RESTART_FRAMES, "the steady writes ran: {writes}");
        assert!(
            wal_bytes(dir.path()) <= long,
            "{} > {long} {passes:?}",
            wal_bytes(dir.path())
        );
    }

    #[test]
    fn a_short_or_copied_log_takes_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        let writer = Mutex::new(writer);
        let own = Connection::open(&path).unwrap();
        // Held: a pass that tried to take it would never return.
        let _held = writer.lock();
        let pass = checkpoint(&own, &writer).unwrap();
        assert!(!pass.restarted && pass.copied == pass.log, "{pass:?}");
    }
}
