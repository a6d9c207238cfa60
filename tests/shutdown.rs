//! Graceful shutdown of the REAL binary: SIGTERM stops accepting, lets the upstream calls in
//! flight finish within `server.shutdown_grace_ms`, exits 0, and what did not finish in time
//! (a create's pending delivery, a running sync job) is resumed by the next start.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_promo-gateway");
const TOKEN_VAR: &str = "PROMO_SHUTDOWN_TEST_LOOP_TOKEN";

/// The binary on `dir`'s config, its stderr collected.
struct Running {
    child: Child,
    api: common::Gateway,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config with `[server] shutdown_grace_ms = grace_ms` and Loop on `loop_url`.
fn write_config(dir: &Path, loop_url: &str, grace_ms: u64) {
    let config = format!(
        "shutdown_grace_ms = {grace_ms}\n\n{}",
        common::upstream(
            "loop",
            "loop",
            loop_url,
            &format!(
                "auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\n\
                 timeout_ms = 5000\n\
                 retry = {{ max_attempts = 1 }}"
            ),
        )
    );
    common::write_files(dir, &config, &[("spring", "[upstreams.loop]\n")]);
}

fn spawn(dir: &Path) -> Running {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(TOKEN_VAR, "t")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("a `listening on` line");
    Running {
        child,
        api: common::Gateway::at(format!("http://{addr}")),
        lines,
    }
}

impl Running {
    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    /// Waits at most `bound` for the process to exit.
    fn exit_within(&mut self, bound: Duration) -> ExitStatus {
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

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Polls `GET /v1/promo-codes/{code}` until Loop's delivery is no longer pending (5 s at most).
async fn settled_delivery(api: &common::Gateway, code: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let raw = api.get_raw(&format!("/v1/promo-codes/{code}")).await;
        if raw.status == 200 {
            let record: Value = serde_json::from_str(&raw.text).unwrap();
            let delivery = record["deliveries"]["loop"].clone();
            if delivery["status"] != "pending" {
                return delivery;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{code} still pending: {} {}",
            raw.status,
            raw.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_create_in_flight_finish_then_exits_0() {
    let server = common::strict_server().await;
    common::loop_create("t", common::loop_body("SPRING-1"))
        .respond_with(common::loop_created("promo_1", "SPRING-1").set_delay(Duration::from_millis(1000)))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server.uri(), 10_000);
    let mut gw = spawn(dir.path());

    let api = common::Gateway::at(gw.api.base.clone());
    let create = tokio::spawn(async move { api.create(&common::percent20("SPRING-1", &["loop"])).await });
    common::wait_for_requests(&server, 1).await;
    gw.sigterm();
    // Stopped accepting: a new connection is refused while the create is still under way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/health", gw.api.base))
        .send()
        .await;
    assert!(refused.is_err(), "a new request was served after SIGTERM: {refused:?}");
    assert!(!create.is_finished(), "the call in flight takes 1 s");

    let (status, body) = create.await.unwrap();
    assert_eq!(status, 201, "{body}");
    let r = common::result(&body, "loop");
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(r["vendor_id"], "promo_1");
    let exit = gw.exit_within(Duration::from_secs(3));
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
    assert!(gw.log().contains("stopped"), "{}", gw.log());
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_outlasting_the_grace_stays_pending_and_the_next_start_resends_it() {
    let server = common::strict_server().await;
    // The first call answers only after 1.5 s, past the 300 ms grace; the resent one at once.
    common::loop_create("t", common::loop_body("SLOW-1"))
        .respond_with(common::loop_created("promo_slow", "SLOW-1").set_delay(Duration::from_millis(1500)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    common::loop_create("t", common::loop_body("SLOW-1"))
        .respond_with(common::loop_created("promo_resent", "SLOW-1"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server.uri(), 300);
    let mut gw = spawn(dir.path());

    let api = common::Gateway::at(gw.api.base.clone());
    let create = tokio::spawn(async move {
        api.http
            .post(format!("{}/v1/promo-codes", api.base))
            .json(&common::percent20("SLOW-1", &["loop"]))
            .send()
            .await
    });
    common::wait_for_requests(&server, 1).await;
    let signalled = Instant::now();
    gw.sigterm();
    let exit = gw.exit_within(Duration::from_millis(1200));
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
    assert!(signalled.elapsed() >= Duration::from_millis(300), "the grace was given");
    // The client got no answer: the create was cut off, and said so in the log.
    assert!(create.await.unwrap().is_err());
    let log = gw.log();
    assert!(
        log.contains("shutdown grace ran out") && log.contains("pending=[1]"),
        "{log}"
    );
    drop(gw);

    // The next start resends the pending delivery and records its final state.
    let gw = spawn(dir.path());
    common::wait_for_requests(&server, 2).await;
    let delivery = settled_delivery(&gw.api, "SLOW-1").await;
    assert_eq!(delivery["status"], "created", "{delivery}");
    assert_eq!(delivery["vendor_id"], "promo_resent", "{delivery}");
    let (status, request) = gw.api.get("/v1/requests/1").await;
    assert_eq!(status, 200, "{request}");
    let text = request.to_string();
    assert!(text.contains("resent after a restart"), "{text}");
    gw.sigterm();
    let mut gw = gw;
    assert_eq!(gw.exit_within(Duration::from_secs(3)).code(), Some(0));
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_sync_job_is_left_running_and_the_next_start_finishes_it() {
    let server = common::strict_server().await;
    common::loop_create("t", common::loop_body("JOB-1"))
        .respond_with(common::loop_created("promo_j1", "JOB-1").set_delay(Duration::from_millis(1500)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    common::loop_create("t", common::loop_body("JOB-1"))
        .respond_with(common::loop_created("promo_j1", "JOB-1"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server.uri(), 300);
    let mut gw = spawn(dir.path());
    let (status, job) = gw
        .api
        .post(
            "/v1/sync-jobs",
            json!({ "campaign": "spring", "targets": ["loop"], "codes": ["JOB-1"],
                    "template": { "discount": { "percent_off": 20 } } })
            .to_string(),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_i64().unwrap();
    common::wait_for_requests(&server, 1).await;
    gw.sigterm();
    assert_eq!(
        gw.exit_within(Duration::from_millis(1200)).code(),
        Some(0),
        "{}",
        gw.log()
    );
    let log = gw.log();
    assert!(
        log.contains("stay running in the ledger") && log.contains(&format!("jobs=[{id}]")),
        "{log}"
    );
    drop(gw);

    let gw = spawn(dir.path());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let (_, status) = gw.api.get(&format!("/v1/sync-jobs/{id}")).await;
        if status["state"] != "running" {
            break status;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["targets_progress"]["loop"]["counts"]["created"], 1, "{status}");
    drop(gw);
    server.verify().await;
}
