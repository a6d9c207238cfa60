//! Graceful shutdown of the REAL binary: SIGTERM stops accepting, lets the upstream calls in
//! flight finish within `server.shutdown_grace_ms`, exits 0, and what did not finish in time
//! (a create's pending delivery, a running sync job) is resumed by the next start.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::binary::{Binary, BIN};

const TOKEN_VAR: &str = "PROMO_SHUTDOWN_TEST_LOOP_TOKEN";

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

/// The binary on `dir`'s config, its stderr collected.
fn spawn(dir: &Path) -> Binary {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(TOKEN_VAR, "t")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped());
    Binary::spawn(&mut cmd, false, Duration::from_secs(10)).unwrap_or_else(|_| panic!("a `listening on` line"))
}

/// A fresh tempdir with [`write_config`] for Loop on `server`, and the binary started on it.
fn start(server: &wiremock::MockServer, grace_ms: u64) -> (tempfile::TempDir, Binary) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server.uri(), grace_ms);
    let gw = spawn(dir.path());
    (dir, gw)
}

/// Loop creates `code` twice, each exactly once: the first call is answered (`first_id`) only
/// after 1.5 s, the next one (`then_id`) at once.
async fn slow_then_quick(server: &wiremock::MockServer, code: &str, first_id: &str, then_id: &str) {
    common::loop_create("t", common::loop_body(code))
        .respond_with(common::loop_created(first_id, code).set_delay(Duration::from_millis(1500)))
        .up_to_n_times(1)
        .expect(1)
        .mount(server)
        .await;
    common::expect_loop_created(server, "t", code, then_id).await;
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
    common::expect_loop_answer(
        &server,
        "t",
        "SPRING-1",
        common::loop_created("promo_1", "SPRING-1").set_delay(Duration::from_millis(1000)),
    )
    .await;
    let (_dir, mut gw) = start(&server, 10_000);

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
    slow_then_quick(&server, "SLOW-1", "promo_slow", "promo_resent").await;
    let (dir, mut gw) = start(&server, 300);

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
    slow_then_quick(&server, "JOB-1", "promo_j1", "promo_j1").await;
    let (dir, mut gw) = start(&server, 300);
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
