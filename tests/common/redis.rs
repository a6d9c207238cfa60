//! A real Redis server for a test: `redis-server` (Debian's package, installed by `.ci/run`
//! and the README's set-up) started on a free loopback port with no persistence, stopped by
//! PID when dropped. It can be stopped and started again on the same port, to test what the
//! gateway does while its Redis is gone.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    /// How it listens: `--port P`, or TLS only (`--port 0 --tls-port P` and its files).
    listen: Vec<String>,
}

impl Redis {
    /// A server of the test's own, or `None` (the test is skipped, and says so) on a developer
    /// machine without `redis-server`. CI (`CI` set) never skips: there it is a failure.
    pub fn start_or_skip(test: &str) -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: redis-server is not installed; scripts/test-servers installs it"
            );
            eprintln!("{test}: SKIPPED: redis-server is not installed (scripts/test-servers installs it)");
            return None;
        }
        Some(Self::start())
    }

    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            child: None,
            listen: vec!["--port".into(), port.to_string()],
        };
        redis.restart();
        redis
    }

    /// A server that speaks TLS only (no clear-text port), with this certificate chain, key
    /// and CA (PEM files) and `password`; clients need no certificate of their own.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path, password: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = |p: &std::path::Path| p.display().to_string();
        let listen = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file(cert),
            "--tls-key-file".into(),
            file(key),
            "--tls-ca-cert-file".into(),
            file(ca),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        let mut redis = Redis {
            port,
            child: None,
            listen,
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it takes connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(&self.listen)
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run the README's set-up (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL by PID): every connection drops at once.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
