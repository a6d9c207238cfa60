//! The ledger on a filesystem that fills, or that cannot be written: the REAL binary, its ledger
//! on a 1 MiB tmpfs mounted for the test (tests run as root, as CI does), Loop on wiremock
//! counting every code it receives.
//!
//! A create whose calls went out must never be answered "nothing was sent", a restart must
//! never send again a code whose vendor answer the gateway saw, and `/health` must say when the
//! ledger cannot take new work.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::{MockServer, Request};

use common::binary::{Binary, BIN};

const TOKEN_VAR: &str = "PROMO_DISK_TEST_LOOP_TOKEN";
const TOKEN: &str = "loop-disk-secret-5e1f";

/// A tmpfs of `size` mounted on a fresh folder; unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "these tests mount a tmpfs and so run as root (as CI does): mount exited {status}"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Loop answering 201 to every code, the call checked as its document requires.
async fn loop_vendor() -> MockServer {
    let server = MockServer::start().await;
    common::loop_endpoint()
        .and(wiremock::matchers::header(
            "Authorization",
            format!("Bearer {TOKEN}").as_str(),
        ))
        .and(wiremock::matchers::header("Content-Type", "application/json"))
        .respond_with(|r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            common::loop_created("promo_1", body["code"].as_str().unwrap())
        })
        .mount(&server)
        .await;
    server
}

/// How many calls carried each code.
async fn received(server: &MockServer) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in server.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        *out.entry(body["code"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    out
}

fn config_dir(vendor: &str, ledger: &Path, reserve_bytes: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ledger]\npath = \"{}\"\nreserve_bytes = {reserve_bytes}\n\n{}",
        ledger.display(),
        common::upstream(
            "loop",
            "loop",
            vendor,
            &format!("auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}")
        )
    );
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

fn spawn(config: &Path) -> Binary {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(TOKEN_VAR, TOKEN)
        .stderr(std::process::Stdio::piped());
    Binary::spawn(&mut cmd, false, Duration::from_secs(10))
        .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()))
}

fn create(code: &str, description_bytes: usize) -> Value {
    json!({
        "code": code,
        "discount": { "percent_off": 20 },
        "targets": ["loop"],
        "description": "d".repeat(description_bytes),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_that_fills_mid_create_loses_no_outcome_and_a_restart_resends_nothing() {
    let fs = Tmpfs::mount("1m");
    let ledger = fs.path().join("ledger.db");
    let vendor = loop_vendor().await;
    let dir = config_dir(&vendor.uri(), &ledger, 128 * 1024);
    let config = dir.path().join("config.toml");
    let mut gw = spawn(&config);

    // 50 KB descriptions until the disk refuses one, then ever smaller ones, so that some claim
    // fits in what is left and its outcome does not.
    let mut answers: Vec<(String, u16, Value)> = Vec::new();
    let mut size = 50_000;
    let mut refused = 0;
    for i in 0..200 {
        let code = format!("FILL-{i}");
        let (status, body) = gw.create(&create(&code, size)).await;
        if status != 201 {
            refused += 1;
            size = (size / 2).max(100);
        }
        answers.push((code, status, body));
        if refused >= 12 {
            break;
        }
    }
    assert!(refused >= 12, "the disk never filled: {:?}", answers.last());

    let sent = received(&vendor).await;
    for (code, status, body) in &answers {
        let calls = sent.get(code).copied().unwrap_or(0);
        match status {
            201 => assert_eq!(calls, 1, "{code} answered 201: sent once, {body}"),
            503 => {
                assert_eq!(calls, 0, "{code} answered 503 (nothing sent) but Loop got it: {body}");
                assert_eq!(body["status"], 503, "{body}");
            }
            other => panic!("{code}: {other} {body}"),
        }
    }
    // The ledger says why it takes no new creates.
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["ledger"]["status"], "degraded", "{health}");
    let problem = health["ledger"]["problem"].as_str().unwrap();
    assert!(problem.contains("ledger"), "{problem}");
    // No create is left waiting on a delivery no one makes: every code answered 201 is recorded.
    for (code, status, _) in answers.iter().filter(|(_, s, _)| *s == 201) {
        let (s, record) = gw.get(&format!("/v1/promo-codes/{code}")).await;
        assert_eq!(s, 200, "{record}");
        assert_eq!(
            record["deliveries"]["loop"]["status"], "created",
            "{code} ({status}): {record}"
        );
    }

    // A restart on the same (still full) ledger sends nothing again.
    gw.sigterm();
    assert!(gw.exit_within(Duration::from_secs(10)).success());
    let before = received(&vendor).await;
    let gw = spawn(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received(&vendor).await, before, "a restart sent a code again");
    // Room again: the reserve is taken back and so are creates.
    fs.resize("4m");
    let (status, body) = gw.create(&create("AFTER-1", 10)).await;
    assert_eq!(status, 201, "{body}");
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["ledger"]["status"], "ok", "{health}");
    assert_eq!(health["ledger"]["backend"], "sqlite", "{health}");
    drop(gw);
    let _ = dir;
}

/// A file bind-mounted read-only over itself (what a ledger file the gateway's user may not
/// write looks like; as root, file modes alone would not stop a write); unmounted when dropped.
struct ReadOnlyFile(PathBuf);

impl ReadOnlyFile {
    fn over(path: &Path) -> Self {
        for args in [&["--bind"][..], &["-o", "remount,ro,bind"][..]] {
            let status = Command::new("mount").args(args).arg(path).arg(path).status().unwrap();
            assert!(
                status.success(),
                "mount {args:?} (tests run as root, as CI does): {status}"
            );
        }
        Self(path.to_owned())
    }
}

impl Drop for ReadOnlyFile {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_that_cannot_be_written_is_reported_by_health() {
    let data = tempfile::tempdir().unwrap();
    let ledger = data.path().join("ledger.db");
    let vendor = loop_vendor().await;
    let dir = config_dir(&vendor.uri(), &ledger, 64 * 1024);
    let config = dir.path().join("config.toml");
    // A ledger made by a first run, then made read-only.
    {
        let mut gw = spawn(&config);
        let (status, health) = gw.get("/health").await;
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")), "{health}");
        assert_eq!(health["ledger"]["status"], "ok", "{health}");
        gw.sigterm();
        let status = gw.exit_within(Duration::from_secs(10));
        assert!(status.success(), "{status}: {:#?}", gw.lines.lock().unwrap());
    }
    let read_only = ReadOnlyFile::over(&ledger);
    let gw = spawn(&config);
    let (status, health) = gw.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["ledger"]["status"], "degraded", "{health}");
    let problem = health["ledger"]["problem"].as_str().unwrap();
    assert!(
        problem.contains(&ledger.display().to_string()) && problem.contains("read"),
        "names the ledger and why: {problem}"
    );
    let (status, body) = gw.create(&create("RO-1", 10)).await;
    assert_eq!(status, 503, "{body}");
    assert!(received(&vendor).await.is_empty(), "nothing sent");
    drop(gw);
    drop(read_only);
}
