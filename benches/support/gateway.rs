//! The gateway under measurement: the real `promo-gateway` binary (built by `cargo bench` in the
//! bench profile), started as a child process on a config file, mappings and ledger in a temp
//! directory, listening on a loopback port.
//!
//! A separate process rather than the router in the bench's own runtime: it runs as deployed
//! (its own tokio runtime and threads, its own `main` with request tracing, the SQLite ledger
//! on disk), the load client's and the fast upstream's work is not mixed into its scheduler,
//! and its own memory can be read from /proc (peak RSS, for the sync benchmarks).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use promo_adapters::VendorKind;

/// The binary `cargo bench` built, or `BENCH_GATEWAY_BIN` (another build of the gateway, to
/// compare two versions on the same harness).
fn binary() -> String {
    std::env::var("BENCH_GATEWAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_promo-gateway").to_owned())
}

/// Credentials every bench upstream is configured with: the fast upstream checks none of them.
const ENV: [(&str, &str); 5] = [
    ("BENCH_TOKEN", "bench-token"),
    ("BENCH_USER", "bench-user"),
    ("BENCH_PASSWORD", "bench-password"),
    ("BENCH_CLIENT_ID", "bench-client"),
    ("BENCH_CLIENT_SECRET", "bench-secret"),
];

/// The bearer token the gateway sends to bearer upstreams; a direct call sends the same.
pub const TOKEN: &str = "bench-token";

/// How fast the gateway may call one upstream.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub per_second: u32,
    pub burst: u32,
    pub max_in_flight: usize,
}

impl Quota {
    /// So high that neither the rate limiter nor the in-flight cap ever waits: what is measured
    /// is the gateway's own cost.
    pub const UNLIMITED: Quota = Quota {
        per_second: 1_000_000,
        burst: 1_000_000,
        max_in_flight: 1024,
    };
}

pub use super::fixtures::upstream_name;

/// One `[upstreams.NAME]` table for a vendor served at `base_url` (a fast upstream's), with
/// the auth scheme the vendor documents: HTTP Basic for Spacebring, OAuth2 client credentials
/// (token endpoint on the same server) for Limio, a bearer token for the others.
pub fn upstream_table(name: &str, kind: VendorKind, base_url: &str, quota: Quota) -> String {
    let (kind_version, base, auth) = match kind {
        VendorKind::Spacebring => (
            "kind = \"spacebring\"".to_owned(),
            base_url.to_owned(),
            "{ scheme = \"basic\", username_env = \"BENCH_USER\", password_env = \"BENCH_PASSWORD\" }".to_owned(),
        ),
        VendorKind::LimioV2 | VendorKind::LimioV3 => (
            format!(
                "kind = \"limio\"\nversion = \"{}\"",
                if kind == VendorKind::LimioV2 { "v2" } else { "v3" }
            ),
            format!("{base_url}/api"),
            format!(
                "{{ scheme = \"oauth2\", grant = \"client_credentials\", token_url = \"{base_url}/oauth2/token\", \
                 client_id_env = \"BENCH_CLIENT_ID\", client_secret_env = \"BENCH_CLIENT_SECRET\" }}"
            ),
        ),
        VendorKind::Partnero | VendorKind::Moltin | VendorKind::Loop => (
            format!("kind = \"{}\"", upstream_name(kind)),
            base_url.to_owned(),
            "{ scheme = \"bearer\", token_env = \"BENCH_TOKEN\" }".to_owned(),
        ),
    };
    format!(
        "[upstreams.{name}]\n{kind_version}\nbase_url = \"{base}\"\nauth = {auth}\n\
         rate_limit = {{ per_second = {}, burst = {} }}\nmax_in_flight = {}\ntimeout_ms = 10000\n\n",
        quota.per_second, quota.burst, quota.max_in_flight
    )
}

/// A running gateway process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    // Held open: the gateway writes only its "listening on" line to stdout, but a closed pipe
    // would turn any later write into an error.
    _stdout: BufReader<ChildStdout>,
}

impl GatewayProcess {
    /// Starts the binary on `upstreams` (`[upstreams.*]` tables, see [`upstream_table`]) and
    /// mapping files `(campaign, toml)`; returns once it listens.
    pub fn start(upstreams: &str, mappings: &[(&str, &str)]) -> Self {
        Self::start_with(upstreams, mappings, None)
    }

    /// [`GatewayProcess::start`], its rate budgets shared through the Redis at `redis_url` when
    /// given (`[rate_limit] redis_url_env`): one replica of several.
    pub fn start_with(upstreams: &str, mappings: &[(&str, &str)], redis_url: Option<&str>) -> Self {
        Self::start_on(upstreams, mappings, redis_url, None)
    }

    /// [`GatewayProcess::start_with`], its ledger in the PostgreSQL database at `postgres_url`
    /// when given (`[ledger] url_env`) instead of a SQLite file.
    pub fn start_on(
        upstreams: &str,
        mappings: &[(&str, &str)],
        redis_url: Option<&str>,
        postgres_url: Option<&str>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("mappings")).unwrap();
        for (name, text) in mappings {
            std::fs::write(dir.path().join("mappings").join(format!("{name}.toml")), text).unwrap();
        }
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 65536\nmappings_dir = \"mappings\"\n\n\
                 [ledger]\n{}\n\n{}{upstreams}",
                if postgres_url.is_some() {
                    "url_env = \"BENCH_POSTGRES_URL\""
                } else {
                    "path = \"ledger.db\""
                },
                if redis_url.is_some() {
                    "[rate_limit]\nredis_url_env = \"BENCH_REDIS_URL\"\n\n"
                } else {
                    ""
                }
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&config)
            .envs(ENV)
            .envs(redis_url.map(|url| ("BENCH_REDIS_URL", url)))
            .envs(postgres_url.map(|url| ("BENCH_POSTGRES_URL", url)))
            // Logging as deployed (the binary's default filter), and no proxy between the
            // gateway and its loopback upstreams.
            .env_remove("RUST_LOG")
            .env("NO_PROXY", "*")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env_remove(var);
        }
        let mut child = command.spawn().expect("start the promo-gateway binary");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        // Read the first line on a thread, so that a gateway that never says it listens
        // cannot hang the benchmark.
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            stdout
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
            panic!(
                "the gateway did not start (first line `{}`); its log:\n{log}",
                line.trim()
            );
        };
        let base = format!("http://{addr}");
        GatewayProcess {
            child,
            base,
            _stdout: reader.join().unwrap(),
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding config.toml, mappings/, ledger.db and gateway.log (its stderr).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The sizes of the SQLite ledger file and of its write-ahead log, in bytes (0 for a file
    /// not there).
    pub fn ledger_bytes(&self) -> (u64, u64) {
        let size = |name: &str| std::fs::metadata(self.dir.path().join(name)).map_or(0, |m| m.len());
        (size("ledger.db"), size("ledger.db-wal"))
    }

    /// Peak resident memory of the gateway process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Resident memory of the gateway process now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// CPU time (user + system) the gateway process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        super::cpu_time(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
