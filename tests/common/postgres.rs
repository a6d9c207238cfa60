//! A real PostgreSQL server for a test: a throwaway cluster (`initdb` of Debian's `postgresql`
//! package, which `scripts/test-servers` installs) in a temporary directory, run as the
//! unprivileged `postgres` user when the test runs as root (PostgreSQL refuses to run as root),
//! listening on a free loopback port and its own socket directory, with trust authentication
//! for loopback only. Stopped by PID (the postmaster's) when dropped; it can be stopped and
//! started again on the same port, to test what the gateway does while its database is gone.
//!
//! Also compiled into the library's unit tests (`store::postgres::tests`), so it uses nothing
//! but std and tempfile.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    databases: AtomicUsize,
    /// Server settings beyond the defaults (`-c ssl=on` ...).
    settings: Vec<String>,
}

/// The newest installed server's `bin` directory (Debian keeps each major version apart).
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when this process is root (`setpriv` execs it in
/// place, so the PID spawned is the server's own), as this user otherwise.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// A server of the test's own, or `None` (the test is skipped, and says so) on a developer
    /// machine without PostgreSQL. CI (`CI` set) never skips: there it is a failure.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        if server_bin().is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); scripts/test-servers installs it"
            );
            eprintln!(
                "{test}: SKIPPED: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; scripts/test-servers installs it)"
            );
            return None;
        }
        Some(Self::start())
    }

    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also speaks TLS (`ssl=on`) with this certificate chain and key (PEM).
    /// Clients may still connect in clear text, as `sslmode=prefer` or `disable` ask.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Self {
        let bin = server_bin().expect("PostgreSQL is installed: run scripts/test-servers");
        let dir = tempfile::Builder::new().prefix("promo-pg-").tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the cluster's directory failed");
        }
        let data = dir.path().join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut settings = Vec::new();
        if let Some((cert, key)) = tls {
            let (cert_file, key_file) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            // PostgreSQL refuses a key that others can read, or that its user does not own.
            let status = Command::new("chmod").arg("600").arg(&key_file).status().unwrap();
            assert!(status.success());
            if is_root() {
                let status = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cert_file)
                    .arg(&key_file)
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            for setting in [
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", cert_file.display()),
                format!("ssl_key_file={}", key_file.display()),
            ] {
                settings.extend(["-c".to_owned(), setting]);
            }
        }
        let mut pg = Postgres {
            port,
            dir,
            bin,
            child: None,
            databases: AtomicUsize::new(0),
            settings,
        };
        pg.restart();
        pg
    }

    /// The postmaster's PID while it runs (its backends are its children).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database of its own; its URL.
    pub fn database(&self) -> String {
        let name = format!("ledger_{}", self.databases.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs one statement through `psql` as the superuser in `database`; its output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server, gives it another certificate and key (PEM), and starts it again on
    /// the same port: a certificate rotated to one its clients may no longer trust.
    #[allow(dead_code)] // not every test binary rotates certificates
    pub fn reissue(&mut self, cert_pem: &str, key_pem: &str) {
        self.stop();
        let (cert_file, key_file) = (self.dir.path().join("server.crt"), self.dir.path().join("server.key"));
        assert!(cert_file.is_file(), "reissue needs a server started with start_tls");
        std::fs::write(&cert_file, cert_pem).unwrap();
        std::fs::write(&key_file, key_pem).unwrap();
        self.restart();
    }

    /// Starts the server (again) on its port and waits until it takes connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            // A throwaway cluster: no durability, room for three gateways' pools.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .args(["-c", "max_connections=200"])
            .args(&self.settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("PostgreSQL's server could not be started");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && Command::new(self.bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not take connections on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server by its PID with a fast shutdown (SIGINT: every connection is dropped at
    /// once, the cluster stays usable for [`Postgres::restart`]) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
