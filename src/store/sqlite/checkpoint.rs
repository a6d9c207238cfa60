//! Checkpoints off the write path.
//!
//! In WAL mode SQLite copies the log back into the database file (a checkpoint, with an fsync)
//! from inside whichever commit pushes the log past its threshold: one create in a thousand
//! paid milliseconds for it, on a runtime thread. The writer's connection turns that off and
//! this thread, with a connection of its own, checkpoints every [`INTERVAL`] instead. A
//! `PASSIVE` checkpoint never blocks the writer; once the log is all copied, the next commit
//! starts it again from the top, so it does not grow while the gateway runs.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::Connection;

/// How often the log is copied back.
pub(super) const INTERVAL: Duration = Duration::from_millis(200);

/// The checkpointing thread; it stops when this is dropped (with the last handle on the ledger).
pub(super) struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts checkpointing `path`. Failing to start (no thread, no connection) only leaves
    /// the checkpoints to SQLite's own, so it is not an error: it returns `None` and says why.
    pub(super) fn start(path: &Path, writer: &Connection) -> Option<Self> {
        let conn = match Connection::open(path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("the ledger's checkpoints stay in its commits: {e}");
                return None;
            }
        };
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("ledger-checkpoint".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::debug!("a ledger checkpoint did not complete: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => {
                // Only once the thread runs: otherwise the commits keep doing it.
                if let Err(e) = writer.pragma_update(None, "wal_autocheckpoint", 0) {
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
