//! The ledger's files as a test sees them from outside the gateway: their bytes (database, WAL
//! and shared memory) and read-only SQL against the database while a binary runs or after it
//! died.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// Every ledger file in `dir` (a name containing `.db`: the database, its `-wal` and `-shm`), as
/// (path, bytes).
pub fn ledger_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".db"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn read_only(ledger: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(ledger, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Polls the ledger (read-only) until `sql` yields a row; panics after `within`.
pub fn wait_for_row(ledger: &Path, sql: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(conn) = read_only(ledger) {
            let found: Result<i64, _> = conn.query_row(sql, [], |r| r.get(0));
            if found.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no row for {sql} in {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The single integer `sql` yields on the ledger (read-only), e.g. a `COUNT(*)`.
pub fn count_rows(ledger: &Path, sql: &str) -> i64 {
    read_only(ledger).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}
