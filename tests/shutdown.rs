//! Graceful shutdown of the REAL binary: SIGTERM stops accepting, lets the upstream calls in
//! flight finish within `server.shutdown_grace_ms`, exits 0, and what did not finish in time
//! (a create's pending delivery, a running sync job) is resumed by the next start. A running
//! sync job is paused: it starts no new call, its calls in flight are recorded, and it stays
//! `running` for the next start.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::binary::{Binary, BIN};
use common::jobs::{job_status, start_job, wait_done};

const TOKEN_VAR: &str = "PROMO_SHUTDOWN_TEST_LOOP_TOKEN";

/// Writes a config with `[server] shutdown_grace_ms = grace_ms` and Loop on `loop_url`, with
/// `extra` TOML lines (a rate limit) in Loop's table.
fn write_config(dir: &Path, loop_url: &str, grace_ms: u64, extra: &str) {
    let config = format!(
        "shutdown_grace_ms = {grace_ms}\n\n{}",
        common::upstream(
            "loop",
            "loop",
            loop_url,
            &format!(
                "auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\n\
                 timeout_ms = 5000\n\
                 retry = {{ max_attempts = 1 }}\n{extra}"
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
fn start(server: &wiremock::MockServer, grace_ms: u64, extra: &str) -> (tempfile::TempDir, Binary) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server.uri(), grace_ms, extra);
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
    let (_dir, mut gw) = start(&server, 10_000, "");

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
    let (dir, mut gw) = start(&server, 300, "");

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

/// Loop at 4 calls a second, one at a time at most: a job's calls go out 250 ms apart.
const SLOW_RATE: &str = "rate_limit = { per_second = 4, burst = 1 }";

/// Starts a sync job of `codes` to Loop (20% off each); its id.
async fn start_loop_job(api: &common::Gateway, codes: &[String]) -> i64 {
    start_job(
        api,
        &json!({ "campaign": "spring", "targets": ["loop"], "codes": codes,
                 "template": { "discount": { "percent_off": 20 } } }),
    )
    .await
}

/// Polls the job until it is no longer `running` (5 s at most).
async fn ended(api: &common::Gateway, id: i64) -> Value {
    wait_done(api, id, Duration::from_secs(5)).await
}

/// Loop's deliveries of the job by state (0 for a state not listed).
fn count(job: &Value, state: &str) -> u64 {
    common::jobs::count(job, "loop", state)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_pauses_a_sync_job_its_calls_in_flight_recorded_and_the_next_start_finishes_it() {
    const N: usize = 8;
    let server = common::strict_server().await;
    let codes: Vec<String> = (1..=N).map(|i| format!("PAUSE-{i}")).collect();
    // Each code is created exactly once at Loop, over both runs; every answer takes 400 ms.
    for (i, code) in codes.iter().enumerate() {
        common::expect_loop_answer(
            &server,
            "t",
            code,
            common::loop_created(&format!("promo_{}", i + 1), code).set_delay(Duration::from_millis(400)),
        )
        .await;
    }
    let (dir, mut gw) = start(&server, 3_000, SLOW_RATE);
    let id = start_loop_job(&gw.api, &codes).await;

    // Mid-way: the third call has gone out (at ~500 ms), the next is due 250 ms later.
    common::wait_for_requests(&server, 3).await;
    let at_signal = common::received(&server).await;
    let signalled = Instant::now();
    gw.sigterm();
    let exit = gw.exit_within(Duration::from_secs(3));
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
    // It waited for the calls in flight (400 ms each at most), not for the whole grace.
    assert!(took < Duration::from_millis(1500), "took {took:?}: {}", gw.log());
    // No call started after the signal.
    assert_eq!(common::received(&server).await, at_signal, "{}", gw.log());
    let log = gw.log();
    assert!(
        log.contains(&format!("paused=[{id}]")) && log.contains("stay running in the ledger"),
        "{log}"
    );
    assert!(!log.contains("cut_off"), "{log}");
    assert!(!log.contains("shutdown grace ran out"), "{log}");
    drop(gw);

    // The next start finds the job still running, the calls that were in flight recorded as
    // created (not pending: the next start does not resend them), and finishes it.
    let gw = spawn(dir.path());
    let job = job_status(&gw.api, id).await;
    assert_eq!(job["state"], "running", "{job}");
    assert!(count(&job, "created") >= at_signal as u64, "{job}");
    assert_eq!(count(&job, "already_exists"), 0, "{job}");
    let job = ended(&gw.api, id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(count(&job, "created"), N as u64, "{job}");
    assert_eq!(job["targets_progress"]["loop"]["pending"], 0, "{job}");
    let (status, record) = gw.api.get("/v1/promo-codes/PAUSE-1").await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["deliveries"]["loop"]["status"], "created", "{record}");
    assert_eq!(record["deliveries"]["loop"]["vendor_id"], "promo_1", "{record}");
    drop(gw);
    // Each code reached Loop once: N calls in all.
    assert_eq!(common::received(&server).await, N);
    server.verify().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_call_outlasting_the_grace_is_cut_off_on_time_and_the_next_start_finishes_the_job() {
    let server = common::strict_server().await;
    // JOB-1's first call answers only after 1.5 s, past the 300 ms grace; the resent one at once.
    slow_then_quick(&server, "JOB-1", "promo_j1", "promo_j1").await;
    common::expect_loop_created(&server, "t", "JOB-2", "promo_j2").await;
    common::expect_loop_created(&server, "t", "JOB-3", "promo_j3").await;
    let (dir, mut gw) = start(&server, 300, SLOW_RATE);
    let codes: Vec<String> = ["JOB-1", "JOB-2", "JOB-3"].map(String::from).to_vec();
    let id = start_loop_job(&gw.api, &codes).await;
    common::wait_for_requests(&server, 1).await;
    let signalled = Instant::now();
    gw.sigterm();
    assert_eq!(
        gw.exit_within(Duration::from_millis(1200)).code(),
        Some(0),
        "{}",
        gw.log()
    );
    assert!(signalled.elapsed() >= Duration::from_millis(300), "the grace was given");
    // JOB-2 was due 250 ms after JOB-1: the paused job did not send it.
    assert_eq!(common::received(&server).await, 1, "{}", gw.log());
    let log = gw.log();
    assert!(
        log.contains("shutdown grace ran out")
            && log.contains(&format!("cut_off=[{id}]"))
            && log.contains("stay running in the ledger"),
        "{log}"
    );
    assert!(!log.contains("paused=["), "{log}");
    drop(gw);

    // The next start resumes the job: JOB-1, cut off, is sent again; the others once.
    let gw = spawn(dir.path());
    let job = ended(&gw.api, id).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(count(&job, "created"), 3, "{job}");
    drop(gw);
    server.verify().await;
}

/// The signal handlers are in place before the `listening on` line: a SIGTERM sent the moment a
/// supervisor (or a test) reads it stops the gateway cleanly instead of killing it, which is
/// what the default action of a signal not yet handled would do.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_right_after_the_listening_line_exits_0() {
    let server = common::strict_server().await;
    for _ in 0..5 {
        let (_dir, mut gw) = start(&server, 1000, "");
        gw.sigterm();
        let status = gw.exit_within(Duration::from_secs(10));
        assert!(status.success(), "{status}: {:#?}", gw.lines.lock().unwrap());
    }
}
