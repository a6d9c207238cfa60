//! The REAL `promo-gateway` binary as a child process: started from a `Command`, found by its
//! `listening on ADDR` line, killed (SIGKILL) when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::Gateway;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_promo-gateway");

/// A running binary. Killed when dropped, so a failing assertion does not leak it; derefs to a
/// client for it.
pub struct Binary {
    pub child: Child,
    pub api: Gateway,
    /// The lines read from the streams [`Binary::spawn`] keeps, in the order they came.
    pub lines: Arc<Mutex<Vec<String>>>,
    pub readers: Vec<JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl Drop for Binary {
    fn drop(&mut self) {
        // std::process::Child::kill is SIGKILL on unix: no shutdown code runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::ops::Deref for Binary {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.api
    }
}

impl Binary {
    /// Spawns `cmd` with its stdout piped and waits at most `within` for the first
    /// `listening on ADDR` line; the client then points at ADDR. Every piped stream (stdout, and
    /// stderr if `cmd` pipes it) is drained by a thread, so the child never blocks on a full pipe,
    /// and searched for that line. Stderr's lines are kept in `lines`, stdout's too when
    /// `keep_stdout`. `Err` (the client pointing nowhere, the child still killed on drop) when no such line came in time.
    pub fn spawn(cmd: &mut Command, keep_stdout: bool, within: Duration) -> Result<Binary, Box<Binary>> {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let mut streams = vec![(out, keep_stdout)];
        if let Some(err) = child.stderr.take() {
            streams.push((Box::new(err), true));
        }
        for (stream, keep) in streams {
            let lines = lines.clone();
            let mut tx = Some(tx.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.trim().to_owned());
                        }
                    }
                    if keep {
                        lines.lock().unwrap().push(line);
                    }
                }
            }));
        }
        let addr = rx.recv_timeout(within);
        let mut binary = Binary {
            child,
            api: Gateway::at(String::new()),
            lines,
            readers,
            _dir: None,
        };
        match addr {
            Ok(addr) => {
                binary.api.base = format!("http://{addr}");
                Ok(binary)
            }
            Err(_) => Err(Box::new(binary)),
        }
    }

    /// Keeps `dir` (the binary's config, say) until the binary is dropped.
    pub fn keeping(mut self, dir: TempDir) -> Self {
        self._dir = Some(dir);
        self
    }

    /// The folder [`Binary::keeping`] keeps (the binary's config and, by default, its ledger).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(TempDir::path)
    }

    /// Every line kept so far, joined by newlines.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (at most 30 s) until a kept line contains `text`.
    pub async fn wait_for_line(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.lines.lock().unwrap().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "no line with `{text}` in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    /// Waits at most `bound` for the process to exit.
    pub fn exit_within(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {bound:?} after SIGTERM: {:#?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
