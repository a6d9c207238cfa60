//! Room to record what was sent: the ledger's answer to a full (or read-only) disk.
//!
//! A create writes its claim before any call and its outcomes after. If the disk fills between
//! the two, the vendors have the code but the ledger still says `pending`: the create would be
//! answered "nothing was sent", later creates would wait on a delivery no one is making, and
//! the next start would send the code again. So the ledger keeps a *reserve*: a file of
//! `ledger.reserve_bytes` beside it, held while the disk has room. Claims (new work) are only
//! written while the reserve is held; an outcome that meets a full disk releases the reserve
//! and is written into the room it leaves. Until the reserve can be taken again, new claims are
//! refused (nothing is sent) and `/health` says why. An outcome that cannot be written even
//! then is held in memory and written before the ledger takes any new claim.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::LedgerError;

/// An outcome's write, kept to be written again if the disk refuses it. It runs inside a
/// transaction its caller opens (its own, or a group commit's batch).
pub(super) type HeldWrite = Arc<dyn Fn(&Connection) -> Result<(), LedgerError> + Send + Sync>;

/// Writes `write` in a transaction of its own.
fn alone(conn: &mut Connection, write: &HeldWrite) -> Result<(), LedgerError> {
    let tx = conn.transaction()?;
    write(&tx)?;
    tx.commit()?;
    Ok(())
}

pub(super) struct Space {
    reserve: Reserve,
    /// Outcomes not yet written, oldest first.
    held: Mutex<Vec<HeldWrite>>,
    /// Why the ledger cannot write, as the last write found it; `None` while it can.
    problem: Mutex<Option<String>>,
    /// Set at open when SQLite could only open the file read-only.
    read_only: Option<String>,
}

impl Space {
    pub(super) fn new(db: &Path, reserve_bytes: u64, read_only: bool) -> Self {
        let reserve = Reserve {
            path: reserve_path(db),
            bytes: reserve_bytes,
            held: AtomicBool::new(false),
        };
        let read_only = read_only.then(|| {
            format!(
                "the ledger {} can only be read (a read-only file or filesystem)",
                db.display()
            )
        });
        let problem = match (&read_only, reserve.take()) {
            (Some(why), _) => Some(why.clone()),
            (None, Ok(())) => None,
            (None, Err(e)) => Some(reserve.missing(&e)),
        };
        if let Some(problem) = &problem {
            tracing::warn!("{problem}");
        }
        Self {
            reserve,
            held: Mutex::new(Vec::new()),
            problem: Mutex::new(problem),
            read_only,
        }
    }

    /// Why the ledger cannot write now, if it cannot.
    pub(super) fn problem(&self) -> Option<String> {
        self.read_only.clone().or_else(|| lock(&self.problem).clone())
    }

    /// Before a claim: every held outcome written, and the reserve held. Otherwise the claim is
    /// refused, so that nothing new is sent while the ledger could not record it.
    pub(super) fn ready_for_claim(&self, conn: &mut Connection) -> Result<(), LedgerError> {
        if let Some(why) = &self.read_only {
            return Err(LedgerError::Unwritable(why.clone()));
        }
        self.write_held(conn)?;
        if !self.reserve.is_held() {
            if let Err(e) = self.reserve.take() {
                let why = self.reserve.missing(&e);
                *lock(&self.problem) = Some(why.clone());
                return Err(LedgerError::Unwritable(why));
            }
            tracing::info!("the ledger's reserve is held again: creates are taken");
        }
        Ok(())
    }

    /// Nothing stands in the way of writing claims and outcomes together: the file is
    /// writable, no outcome is held in memory and the reserve is held. Otherwise each write
    /// goes alone, through [`Space::ready_for_claim`] or [`Space::write_outcome`].
    pub(super) fn is_clear(&self) -> bool {
        self.read_only.is_none() && self.reserve.is_held() && lock(&self.held).is_empty()
    }

    /// Writes a claim (new work): only once [`Space::ready_for_claim`] passes, noting how the
    /// write went.
    pub(super) fn claim<T>(
        &self,
        conn: &mut Connection,
        write: impl FnOnce(&mut Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.ready_for_claim(conn)?;
        let result = write(conn);
        self.observe(&result);
        result
    }

    /// Notes how a write went, for `/health`.
    pub(super) fn observe<T>(&self, result: &Result<T, LedgerError>) {
        match result {
            Ok(_) if self.reserve.is_held() && lock(&self.held).is_empty() => *lock(&self.problem) = None,
            Ok(_) => {}
            Err(e) => self.failed(e),
        }
    }

    /// Notes a failed write, for `/health`: a failure of the file or disk is the ledger's
    /// problem until a write succeeds; a failure of one write's data is not.
    pub(super) fn failed(&self, e: &LedgerError) {
        if e.is_write_failure() {
            *lock(&self.problem) = Some(format!("the ledger could not be written: {e}"));
        }
    }

    /// Writes an outcome: on a full disk, into the reserve's room; failing that, held in memory.
    pub(super) fn write_outcome(&self, conn: &mut Connection, write: HeldWrite) -> Result<(), LedgerError> {
        // Older outcomes first; one that still cannot be written stays held.
        let _ = self.write_held(conn);
        let mut result = alone(conn, &write);
        if matches!(&result, Err(e) if e.is_out_of_space()) && self.reserve.release() {
            tracing::warn!(
                "the ledger's disk is full: its reserve is released to record outcomes, and new creates are refused until there is room again"
            );
            *lock(&self.problem) = Some(self.reserve.released());
            result = alone(conn, &write);
        }
        match result {
            Ok(()) => {
                self.observe(&Ok::<(), LedgerError>(()));
                Ok(())
            }
            Err(e) if e.is_write_failure() => {
                lock(&self.held).push(write);
                let why = format!(
                    "the ledger could not record an outcome ({e}); it is held in memory and recorded before the ledger takes any new create"
                );
                *lock(&self.problem) = Some(why.clone());
                Err(LedgerError::Held(why))
            }
            Err(e) => Err(e),
        }
    }

    fn write_held(&self, conn: &mut Connection) -> Result<(), LedgerError> {
        let mut held = lock(&self.held);
        while let Some(write) = held.first().cloned() {
            if let Err(e) = alone(conn, &write) {
                return Err(LedgerError::Unwritable(format!(
                    "{} outcome(s) the ledger could not record are still held in memory ({e})",
                    held.len()
                )));
            }
            held.remove(0);
        }
        Ok(())
    }
}

/// `ledger.db` -> `ledger.db.reserve`.
fn reserve_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".reserve");
    db.with_file_name(name)
}

/// A file of `bytes` zeros, written out (not sparse), so that deleting it frees that much room.
struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: AtomicBool,
}

impl Reserve {
    fn is_held(&self) -> bool {
        self.bytes == 0 || self.held.load(Ordering::Acquire)
    }

    fn take(&self) -> std::io::Result<()> {
        if self.is_held() {
            return Ok(());
        }
        let written = (|| {
            let mut file = std::fs::File::create(&self.path)?;
            let chunk = vec![0u8; 64 * 1024];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        })();
        match written {
            Ok(()) => {
                self.held.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                Err(e)
            }
        }
    }

    /// Frees the reserve's room; whether there was any to free.
    fn release(&self) -> bool {
        if self.bytes == 0 || !self.held.swap(false, Ordering::AcqRel) {
            return false;
        }
        std::fs::remove_file(&self.path).is_ok()
    }

    fn missing(&self, e: &std::io::Error) -> String {
        format!(
            "the ledger's reserve {} ({} bytes, ledger.reserve_bytes) cannot be written ({e}): new creates are refused until there is room",
            self.path.display(),
            self.bytes
        )
    }

    fn released(&self) -> String {
        format!(
            "the ledger's disk is full: its reserve ({}) was used to record outcomes, and new creates are refused until there is room for it again",
            self.path.display()
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
