//! Several replicas on one PostgreSQL ledger: REAL binaries (three gateway processes) on a real,
//! throwaway PostgreSQL server (`common::postgres`), against vendors that count every call.
//!
//! - One code sent to all three replicas by 30 concurrent clients reaches the vendor once.
//! - An Idempotency-Key used on one replica is 409 on another while the first is in flight, 422
//!   with another body, and replays the first answer on every replica once it is done.
//! - A 600-code job whose replica is SIGKILLed mid-way is finished by the others once its lease
//!   runs out: no code lost, and the codes sent twice are at most the calls that were in flight.
//! - A replica SIGTERMed mid-job hands the job over at once (its lease here is an hour).
//! - A job cancelled on another replica than the one running it stays cancelled.
//! - PostgreSQL unreachable at start-up stops the process naming `ledger.url_env` and the host,
//!   never the password; lost while serving, creates are 503 with nothing sent, `/health` is
//!   degraded naming the ledger, and a running job waits and finishes once it is back.
//! - A CLI `sync` runs beside serving replicas on the same ledger (no lock file), and
//!   `check-config` says whether the database answers.
//!
//! Waiting is on what the vendor and the gateway report (calls arrived, calls held, a job's
//! state), never on a fixed sleep: the vendor holds calls at a gate the test opens.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use common::binary::{Binary, BIN};
use common::jobs::{count, job_action, job_status, wait_done_or};
use common::postgres::Postgres;

const TOKEN_VAR: &str = "PROMO_REPLICAS_TEST_LOOP_TOKEN";
const TOKEN: &str = "loop-replicas-secret-41f9";
const DB_VAR: &str = "PROMO_REPLICAS_TEST_LEDGER_URL";

/// Loop as its document has it (`POST /v1/admin/promos`, bearer token, 201 with the promo, 409
/// for a code it has), counting every call by code. Calls from the `hold_from`-th on wait at a
/// gate until the test opens it, so that a test knows exactly which calls are in flight.
struct Vendor {
    calls: Mutex<Vec<String>>,
    hold_from: AtomicUsize,
    held: AtomicUsize,
    /// Open for good, and how many times the calls held so far were let through.
    gate: tokio::sync::watch::Sender<(bool, u64)>,
}

impl Vendor {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// Calls per code.
    fn by_code(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.calls() {
            *out.entry(c).or_insert(0) += 1;
        }
        out
    }

    fn open(&self) {
        self.gate.send_modify(|(open, _)| *open = true);
    }

    /// Lets the calls held now through; calls arriving later are held as before.
    fn release_held(&self) {
        self.gate.send_modify(|(_, released)| *released += 1);
    }

    /// The codes called from the `from`-th call on, so far.
    fn calls_from(&self, from: usize) -> std::collections::BTreeSet<String> {
        self.calls().into_iter().skip(from).collect()
    }

    /// The codes called more than once.
    fn twice(&self) -> std::collections::BTreeSet<String> {
        self.by_code()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(c, _)| c)
            .collect()
    }

    /// Waits (at most 30 s) until `n` calls are held at the gate.
    async fn wait_held(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.held.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} calls held after 30 s ({} calls)",
                self.held.load(Ordering::SeqCst),
                self.calls().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Counts a held call while it waits, also when its caller goes away (a killed replica).
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn create(State(vendor): State<Arc<Vendor>>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    let (index, repeat) = {
        let mut calls = vendor.calls.lock().unwrap();
        let repeat = calls.contains(&code);
        calls.push(code.clone());
        (calls.len() - 1, repeat)
    };
    if index >= vendor.hold_from.load(Ordering::SeqCst) {
        vendor.held.fetch_add(1, Ordering::SeqCst);
        let _held = Held(&vendor.held);
        let mut gate = vendor.gate.subscribe();
        let at = gate.borrow().1;
        let _ = gate.wait_for(|(open, released)| *open || *released > at).await;
    }
    if repeat {
        let conflict = json!({ "error": "conflict", "message": "Promo code already exists" });
        return (StatusCode::CONFLICT, axum::Json(conflict)).into_response();
    }
    (
        StatusCode::CREATED,
        axum::Json(common::loop_promo(&format!("promo_{code}"), &code)),
    )
        .into_response()
}

/// A vendor that holds every call from the `hold_from`-th on (`usize::MAX`: none).
async fn vendor(hold_from: usize) -> (Arc<Vendor>, String) {
    let vendor = Arc::new(Vendor {
        calls: Mutex::new(Vec::new()),
        hold_from: AtomicUsize::new(hold_from),
        held: AtomicUsize::new(0),
        gate: tokio::sync::watch::channel((false, 0)).0,
    });
    let app = Router::new()
        .route("/v1/admin/promos", post(create))
        .with_state(vendor.clone());
    (vendor, common::serve_vendor(app).await)
}

/// A replica's config: the ledger in the database `DB_VAR` names, with `lease_seconds`; Loop
/// at `vendor`, at most 8 calls in flight, calls that wait for the gate as long as it takes.
fn replica(vendor: &str, lease_seconds: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[server]\nshutdown_grace_ms = 20000\n\n[ledger]\nurl_env = \"{DB_VAR}\"\nlease_seconds = {lease_seconds}\n\n{}",
        common::upstream(
            "loop",
            "loop",
            vendor,
            &format!(
                "auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\n\
                 max_in_flight = 8\ntimeout_ms = 120000\n\
                 retry = {{ max_attempts = 1, base_delay_ms = 10, max_delay_ms = 50 }}"
            )
        )
    );
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/many.toml"), "[upstreams.loop]\n").unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

fn command(dir: &Path, db_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .env(TOKEN_VAR, TOKEN)
        .env(DB_VAR, db_url)
        .stderr(Stdio::piped());
    cmd
}

fn spawn(dir: &Path, db_url: &str) -> Binary {
    let mut cmd = command(dir, db_url);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]);
    Binary::spawn(&mut cmd, false, Duration::from_secs(30))
        .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()))
}

/// Three replicas on one database, each with its own config folder.
fn three(vendor: &str, db_url: &str, lease_seconds: u32) -> (Vec<tempfile::TempDir>, Vec<Binary>) {
    let dirs: Vec<_> = (0..3).map(|_| replica(vendor, lease_seconds)).collect();
    let replicas = dirs.iter().map(|d| spawn(d.path(), db_url)).collect();
    (dirs, replicas)
}

fn code(code: &str) -> Value {
    json!({ "code": code, "discount": { "percent_off": 20 }, "targets": ["loop"] })
}

/// A job of `n` codes `{prefix}{i}` on Loop; its id.
async fn start_job(replica: &Binary, prefix: &str, n: usize) -> i64 {
    let codes: Vec<String> = (0..n).map(|i| format!("{prefix}{i:04}")).collect();
    let job = json!({ "campaign": "many", "targets": ["loop"], "template": { "discount": { "percent_off": 20 } }, "codes": codes });
    let (status, body) = replica.post("/v1/sync-jobs", job.to_string()).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_i64().unwrap()
}

/// Waits (at most 60 s) until `replica` reports `n` of the job's Loop deliveries in `state`.
async fn wait_for_count(replica: &Binary, job: i64, state: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = job_status(replica, job).await;
        if count(&status, "loop", state) >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn logs<'a>(replicas: &'a [&'a Binary]) -> impl Fn() -> String + 'a {
    move || {
        replicas
            .iter()
            .enumerate()
            .map(|(i, r)| format!("\n--- replica {i}:\n{}", r.log()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_code_sent_to_three_replicas_by_30_clients_reaches_the_vendor_once() {
    let Some(pg) = Postgres::start_or_skip("one_code_sent_to_three_replicas") else {
        return;
    };
    let server = common::strict_server().await;
    common::loop_create(TOKEN, common::loop_body("ONCE-30"))
        .respond_with(common::loop_created("promo_once", "ONCE-30"))
        .expect(1)
        .mount(&server)
        .await;
    let (_dirs, replicas) = three(&server.uri(), &pg.database(), 30);
    let body = code("ONCE-30");
    let answers = futures::future::join_all((0..30).map(|i| replicas[i % 3].create(&body))).await;
    let mut sent = 0;
    for (status, body) in &answers {
        // The one that sent it (201), the ones that found it created (201, not sent again), or
        // being sent by another (202).
        assert!(matches!(status, 201 | 202), "{status} {body}");
        sent += common::result(body, "loop")["attempts"].as_u64().unwrap();
    }
    assert_eq!(sent, 1, "{answers:?}");
    // Read back from every replica: the one code, created.
    for replica in &replicas {
        let (status, found) = replica.get("/v1/promo-codes/ONCE-30").await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["deliveries"]["loop"]["status"], "created", "{found}");
        assert_eq!(found["deliveries"]["loop"]["vendor_id"], "promo_once", "{found}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_used_on_one_replica_holds_on_the_others() {
    let Some(pg) = Postgres::start_or_skip("an_idempotency_key_used_on_one_replica") else {
        return;
    };
    let (vendor, url) = vendor(0).await;
    let (_dirs, replicas) = three(&url, &pg.database(), 30);
    let first = {
        let api = common::Gateway::at(replicas[0].base.clone());
        tokio::spawn(async move { api.create_with_key("key-shared", &code("KEYED-1")).await })
    };
    vendor.wait_held(1).await;
    // While the first is in flight on replica 0: 409 on replica 1, 422 with another body on 2.
    let (status, _, body) = replicas[1].create_with_key("key-shared", &code("KEYED-1")).await;
    assert_eq!(status, 409, "{body}");
    let other = json!({ "code": "KEYED-1", "discount": { "percent_off": 30 }, "targets": ["loop"] });
    let (status, _, body) = replicas[2].create_with_key("key-shared", &other).await;
    assert_eq!(status, 422, "{body}");
    vendor.open();
    let (status, replayed, answer) = first.await.unwrap();
    assert_eq!((status, replayed), (201, None), "{answer}");
    for replica in &replicas {
        let (status, replayed, body) = replica.create_with_key("key-shared", &code("KEYED-1")).await;
        assert_eq!((status, replayed.as_deref()), (201, Some("true")), "{body}");
        assert_eq!(body, answer);
        let id = answer["request_id"].as_i64().unwrap();
        let (status, request) = replica.get(&format!("/v1/requests/{id}")).await;
        assert_eq!(status, 200, "{request}");
        assert_eq!(request["finished"], true, "{request}");
    }
    assert_eq!(vendor.calls(), ["KEYED-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_replica_is_killed_is_finished_by_the_others_once_its_lease_runs_out() {
    let Some(pg) = Postgres::start_or_skip("a_job_whose_replica_is_killed") else {
        return;
    };
    // 200 calls answered, then 8 (the upstream's cap) held in flight when the replica dies.
    let (vendor, url) = vendor(200).await;
    let (_dirs, mut replicas) = three(&url, &pg.database(), 3);
    let job = start_job(&replicas[0], "KILL-", 600).await;
    vendor.wait_held(8).await;
    // The 200 answered are recorded (read from another replica): what is in flight is the 8.
    wait_for_count(&replicas[1], job, "created", 200).await;
    replicas[0].child.kill().unwrap();
    replicas[0].child.wait().unwrap();
    let in_flight = vendor.calls_from(200);
    assert_eq!(in_flight.len(), 8, "{in_flight:?}");
    vendor.open();
    // Another replica takes the job over after the lease (3 s) and finishes it.
    let survivors = [&replicas[1], &replicas[2]];
    let done = wait_done_or(&replicas[1], job, Duration::from_secs(120), logs(&survivors)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(count(&done, "loop", "pending"), 0, "{done}");
    let delivered = count(&done, "loop", "created") + count(&done, "loop", "already_exists");
    assert_eq!(delivered, 600, "{done}");
    // No code lost; resent only what was in flight when the replica died.
    let calls = vendor.by_code();
    assert_eq!(calls.len(), 600, "every code reached the vendor");
    assert!(calls.values().all(|n| *n <= 2), "{calls:?}");
    // The deliveries the dead replica had in flight may not have reached the vendor: exactly
    // those are sent again (and answered 409, `already_exists`), nothing else.
    assert_eq!(vendor.twice(), in_flight);
    // Every replica reads the same job.
    let read = job_status(&replicas[2], job).await;
    assert_eq!(read["state"], "done");
    drop(replicas.remove(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_mid_job_hands_it_over_at_once() {
    let Some(pg) = Postgres::start_or_skip("a_replica_stopped_mid_job_hands_it_over") else {
        return;
    };
    let (vendor, url) = vendor(100).await;
    // A lease of an hour: only the stopping replica's hand-over can move the job in time.
    let (_dirs, mut replicas) = three(&url, &pg.database(), 3600);
    let job = start_job(&replicas[0], "TERM-", 600).await;
    vendor.wait_held(8).await;
    replicas[0].sigterm();
    // The calls in flight answer, are recorded, and the job is paused and released.
    vendor.open();
    let status = replicas[0].exit_within(Duration::from_secs(60));
    assert!(status.success(), "{}", replicas[0].log());
    let survivors = [&replicas[1], &replicas[2]];
    let done = wait_done_or(&replicas[2], job, Duration::from_secs(60), logs(&survivors)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(count(&done, "loop", "created"), 600, "{done}");
    // A clean stop records what it sent: nothing is sent twice.
    let calls = vendor.by_code();
    assert_eq!(calls.len(), 600);
    assert!(calls.values().all(|n| *n == 1), "{calls:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cancelled_on_another_replica_stays_cancelled() {
    let Some(pg) = Postgres::start_or_skip("a_job_cancelled_on_another_replica") else {
        return;
    };
    let (vendor, url) = vendor(50).await;
    let (_dirs, replicas) = three(&url, &pg.database(), 30);
    let job = start_job(&replicas[0], "CANCEL-", 600).await;
    vendor.wait_held(8).await;
    let (status, cancelled) = job_action(&replicas[1], job, "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    // Replica 0 sees the cancel and starts no new call; then the calls in flight answer.
    replicas[0].wait_for_line("sync job ended by another process").await;
    vendor.open();
    let answered = 58;
    wait_for_count(&replicas[0], job, "created", answered).await;
    replicas[0]
        .wait_for_line("it was ended or taken over by another process")
        .await;
    for replica in &replicas {
        let read = job_status(replica, job).await;
        assert_eq!(read["state"], "cancelled", "{read}");
        assert_eq!(count(&read, "loop", "cancelled"), 600 - answered, "{read}");
    }
    assert_eq!(vendor.calls().len() as u64, answered, "nothing sent after the cancel");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_stops_start_up_naming_the_variable_and_the_host() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = replica("http://127.0.0.1:9", 30);
    let url = format!("postgres://gateway:hunter2-pw@127.0.0.1:{port}/ledger");
    let out = command(dir.path(), &url)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ledger.url_env") && stderr.contains(DB_VAR), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    // check-config says so too, before anything serves.
    let out = command(dir.path(), &url).arg("check-config").output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ledger: PROBLEM: ledger.url_env"), "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{port}")), "{stdout}");
    assert!(!stdout.contains("hunter2"), "the password leaked: {stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_lost_while_serving_refuses_creates_and_pauses_jobs_until_it_returns() {
    let Some(mut pg) = Postgres::start_or_skip("a_database_lost_while_serving") else {
        return;
    };
    let (vendor, url) = vendor(100).await;
    let dir = replica(&url, 30);
    let replica = spawn(dir.path(), &pg.database());
    let job = start_job(&replica, "LOST-", 300).await;
    vendor.wait_held(8).await;
    wait_for_count(&replica, job, "created", 100).await;
    pg.stop();
    // Nothing can be recorded: a create is refused before any call.
    let (status, body) = replica.create(&code("LOST-CREATE")).await;
    assert_eq!(status, 503, "{body}");
    let (status, health) = replica.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["ledger"]["status"], "degraded", "{health}");
    assert_eq!(health["ledger"]["backend"], "postgres", "{health}");
    let problem = health["ledger"]["problem"].as_str().unwrap();
    assert!(
        problem.contains("PostgreSQL") && problem.contains(&pg.port.to_string()),
        "{problem}"
    );
    // The calls in flight answer while the ledger is gone: their outcomes cannot be
    // recorded, and the job waits for the ledger, sending nothing new.
    vendor.release_held();
    replica.wait_for_line("sync job waiting for the ledger").await;
    let in_flight = vendor.calls_from(100);
    pg.restart();
    vendor.open();
    let done = wait_done_or(&replica, job, Duration::from_secs(120), || replica.log()).await;
    assert_eq!(done["state"], "done", "{done}");
    let delivered = count(&done, "loop", "created") + count(&done, "loop", "already_exists");
    assert_eq!(delivered, 300, "{done}");
    let calls = vendor.by_code();
    assert!(!calls.contains_key("LOST-CREATE"), "a refused create sent nothing");
    assert_eq!(calls.len(), 300);
    // Sent again: only calls made while the ledger was gone, whose outcomes it never got.
    let twice = vendor.twice();
    assert!(twice.is_subset(&in_flight), "{twice:?} beyond {in_flight:?}");
    let (status, health) = replica.get("/health").await;
    assert_eq!((status, &health["ledger"]["status"]), (200, &json!("ok")), "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_sync_runs_beside_serving_replicas() {
    let Some(pg) = Postgres::start_or_skip("a_cli_sync_runs_beside_serving_replicas") else {
        return;
    };
    let (vendor, url) = vendor(usize::MAX).await;
    let db = pg.database();
    let dir = replica(&url, 30);
    let serving = spawn(dir.path(), &db);
    let file = dir.path().join("codes.ndjson");
    let lines: String = (0..20)
        .map(|i| format!("{{\"code\": \"CLI-{i}\", \"discount\": {{\"percent_off\": 20}}}}\n"))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let out = command(dir.path(), &db)
        .arg("sync")
        .arg(&file)
        .args(["--campaign", "many"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(vendor.calls().len(), 20);
    let (status, found) = serving.get("/v1/promo-codes/CLI-7").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["deliveries"]["loop"]["status"], "created", "{found}");
    let out = command(dir.path(), &db).arg("check-config").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let answers = format!(
        "ledger: PostgreSQL at 127.0.0.1:{} (ledger.url_env ({DB_VAR})) answers",
        pg.port
    );
    assert!(stdout.contains(&answers), "{stdout}");
}

/// One revoke raced by 30 clients over three replicas: exactly one vendor call for the target,
/// and every answer says revoked, already revoked, or being revoked elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn one_revoke_sent_to_three_replicas_by_30_clients_calls_the_vendor_once() {
    use wiremock::matchers::{body_json, method, path};
    let Some(pg) = Postgres::start_or_skip("one_revoke_sent_to_three_replicas") else {
        return;
    };
    let partnero = common::strict_server().await;
    common::partnero_endpoint()
        .respond_with(common::partnero_created("GONE-30"))
        .expect(1)
        .mount(&partnero)
        .await;
    wiremock::Mock::given(method("DELETE"))
        .and(path("/v1/promotion-codes"))
        .and(body_json(
            json!({ "code": "GONE-30", "coupon": { "uuid_code": "coupon_many" } }),
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "status": 1, "message": "deleted" } }))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&partnero)
        .await;
    let dirs: Vec<_> = (0..3).map(|_| partnero_replica(&partnero.uri(), 30)).collect();
    let db = pg.database();
    let replicas: Vec<Binary> = dirs.iter().map(|d| spawn(d.path(), &db)).collect();
    let (status, body) = replicas[0]
        .create(&json!({ "code": "GONE-30", "campaign": "many", "discount": { "percent_off": 20 } }))
        .await;
    assert_eq!(status, 201, "{body}");
    let revoke = json!({ "campaign": "many", "delete": true }).to_string();
    let answers = futures::future::join_all(
        (0..30).map(|i| replicas[i % 3].post("/v1/promo-codes/GONE-30/revoke", revoke.clone())),
    )
    .await;
    let mut calls = 0;
    for (status, body) in &answers {
        assert!(matches!(status, 200 | 202), "{status} {body}");
        let r = common::result(body, "partnero");
        assert!(
            ["revoked", "already_revoked", "pending"].contains(&r["status"].as_str().unwrap()),
            "{r}"
        );
        calls += r["attempts"].as_u64().unwrap();
    }
    assert_eq!(calls, 1, "{answers:?}");
    for replica in &replicas {
        let (_, found) = replica.get("/v1/promo-codes/GONE-30?campaign=many").await;
        assert_eq!(found["revocations"]["partnero"]["status"], "revoked", "{found}");
    }
}

/// A replica's config with Partnero at `vendor` for campaign `many` (its coupon
/// `coupon_many`), the ledger in `DB_VAR`'s database with `lease_seconds`.
fn partnero_replica(vendor: &str, lease_seconds: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[ledger]\nurl_env = \"{DB_VAR}\"\nlease_seconds = {lease_seconds}\n\n{}",
        common::upstream(
            "partnero",
            "partnero",
            vendor,
            &format!("auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\nmax_in_flight = 4")
        )
    );
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(
        dir.path().join("mappings/many.toml"),
        "[upstreams.partnero]\ncoupon_uuid = \"coupon_many\"\ndiscount = { percent_off = 20 }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

/// A revoke job whose replica dies mid-run is taken over by another once its lease runs out and
/// finished: every code deleted, none lost, resent at most what was in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoke_job_whose_replica_is_killed_is_finished_by_another() {
    use wiremock::matchers::{method, path};
    let Some(pg) = Postgres::start_or_skip("a_revoke_job_whose_replica_is_killed") else {
        return;
    };
    let partnero = common::strict_server().await;
    wiremock::Mock::given(method("POST"))
        .and(path("/v1/promotion-codes"))
        .respond_with(|r: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            common::partnero_created(body["code"].as_str().unwrap())
        })
        .mount(&partnero)
        .await;
    let deletes = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = deletes.clone();
    // lifecycle/partnero.md §5, answered slowly so that the kill lands mid-job.
    wiremock::Mock::given(method("DELETE"))
        .and(path("/v1/promotion-codes"))
        .respond_with(move |r: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["coupon"], json!({ "uuid_code": "coupon_many" }), "{body}");
            seen.lock().unwrap().push(body["code"].as_str().unwrap().to_owned());
            wiremock::ResponseTemplate::new(200)
                .set_body_json(json!({ "data": { "status": 1, "message": "deleted" } }))
                .set_delay(Duration::from_millis(50))
        })
        .mount(&partnero)
        .await;
    let dirs: Vec<_> = (0..3).map(|_| partnero_replica(&partnero.uri(), 3)).collect();
    let db = pg.database();
    let mut replicas: Vec<Binary> = dirs.iter().map(|d| spawn(d.path(), &db)).collect();
    let codes: Vec<String> = (0..200).map(|i| format!("GONE-{i:03}")).collect();
    let create = json!({ "campaign": "many", "template": { "discount": { "percent_off": 20 } }, "codes": codes });
    let (status, body) = replicas[0].post("/v1/sync-jobs", create.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let created = wait_done_or(
        &replicas[1],
        body["id"].as_i64().unwrap(),
        Duration::from_secs(60),
        String::new,
    )
    .await;
    assert_eq!(count(&created, "partnero", "created"), 200, "{created}");

    let revoke = json!({ "revoke": { "campaign": "many", "delete": true } });
    let (status, body) = replicas[0].post("/v1/sync-jobs", revoke.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let job = body["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while deletes.lock().unwrap().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoke job made no progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replicas[0].child.kill().unwrap();
    replicas[0].child.wait().unwrap();
    let survivors = [&replicas[1], &replicas[2]];
    let done = wait_done_or(&replicas[1], job, Duration::from_secs(120), logs(&survivors)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["operation"], "revoke", "{done}");
    assert_eq!(count(&done, "partnero", "revoked"), 200, "{done}");
    let mut per_code: BTreeMap<String, usize> = BTreeMap::new();
    for code in deletes.lock().unwrap().iter() {
        *per_code.entry(code.clone()).or_default() += 1;
    }
    assert_eq!(per_code.len(), 200, "every code was deleted");
    // Resent: at most what the dead replica had in flight or answered and not yet recorded (a
    // job's 32 calls a target whose outcomes are written together).
    let twice = per_code.values().filter(|n| **n > 1).count();
    assert!(
        twice <= 32 && per_code.values().all(|n| *n <= 2),
        "resent more than was in flight: {per_code:?}"
    );
    drop(replicas.remove(0));
}
