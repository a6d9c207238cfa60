//! Sync jobs against the real `promo-gateway` binary: a job killed with SIGKILL again and again
//! and restarted on the same config and ledger file ends with every code delivered exactly once,
//! and a 100,000-code NDJSON job runs to completion in flat memory.
//!
//! The upstream is a small in-test axum server (wiremock is too slow for these volumes) that
//! speaks Loop's and Moltin's documented create calls, checks each body, records every code it
//! receives and answers 409 to a code it has already created, so a code sent twice after a crash
//! is seen and answered as a real vendor would.
//!
//! The figures (kills, timings, peak memory) are printed: run with
//! `cargo test --test crash -- --nocapture` to see them.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use common::binary::{Binary as Gateway, BIN};
use common::jobs::{all_results, job_status, progress, start_upload, wait_done_or};

// Variable names no developer machine or CI runner sets.
const LOOP_VAR: &str = "PROMO_CRASH_TEST_LOOP_TOKEN";
const MOLTIN_VAR: &str = "PROMO_CRASH_TEST_MOLTIN_TOKEN";
const LOOP_TOKEN: &str = "loop-crash-secret-31aa";
const MOLTIN_TOKEN: &str = "moltin-crash-secret-77b2";
const PROMOTION: &str = "7005b249-300b-4cf6-964e-e663278af218";

// ---------------------------------------------------------------------------------------------
// The upstream: Loop and Moltin on one local server
// ---------------------------------------------------------------------------------------------

/// What the upstream did with one code.
#[derive(Default, Clone, Copy, Debug)]
struct Received {
    /// Calls carrying it that created it (answered 201).
    created: u32,
    /// Calls carrying it after it was created (answered 409).
    repeats: u32,
}

#[derive(Default)]
struct Books {
    codes: HashMap<&'static str, HashMap<String, Received>>,
    calls: HashMap<&'static str, u64>,
    /// The number of codes in each Moltin call.
    moltin_batches: Vec<usize>,
    /// Calls that were not the documented request.
    wrong: Vec<String>,
}

struct Shared {
    books: Mutex<Books>,
    /// How long a call is held after the code is created and before the answer goes back: a kill
    /// in that window leaves a code created upstream and pending in the ledger.
    delay: Duration,
}

impl Shared {
    /// Creates the call's codes, or none if any exists already (then 409); the status to answer.
    fn create(&self, vendor: &'static str, codes: &[String]) -> u16 {
        let mut books = self.books.lock().unwrap();
        *books.calls.entry(vendor).or_default() += 1;
        if vendor == "moltin" {
            books.moltin_batches.push(codes.len());
        }
        let held = books.codes.entry(vendor).or_default();
        let exists = codes.iter().any(|c| held.get(c).is_some_and(|r| r.created > 0));
        for c in codes {
            let r = held.entry(c.clone()).or_default();
            if r.created > 0 {
                r.repeats += 1;
            } else if !exists {
                r.created += 1;
            }
        }
        if exists {
            409
        } else {
            201
        }
    }

    fn wrong(&self, what: String) -> Response {
        self.books.lock().unwrap().wrong.push(what.clone());
        (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "validation_error", "message": what })),
        )
            .into_response()
    }
}

/// The headers both documents require; `None` when they are right.
fn bad_headers(headers: &HeaderMap, token: &str) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    if get("authorization") != format!("Bearer {token}") {
        return Some(format!("Authorization `{}`", get("authorization")));
    }
    if get("content-type") != "application/json" {
        return Some(format!("Content-Type `{}`", get("content-type")));
    }
    None
}

/// loop-create-promo.md: `{code, percent_off}` for a plain 20%-off code; 201 with the promo.
async fn loop_create(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(bad) = bad_headers(&headers, LOOP_TOKEN) {
        return s.wrong(format!("loop: {bad}"));
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(code) = v["code"].as_str().map(str::to_owned) else {
        return s.wrong(format!("loop: {v}"));
    };
    if v != json!({ "code": code, "percent_off": 20 }) {
        return s.wrong(format!("loop: {v}"));
    }
    let status = s.create("loop", std::slice::from_ref(&code));
    tokio::time::sleep(s.delay).await;
    match status {
        201 => (
            StatusCode::CREATED,
            Json(common::loop_promo(&format!("promo_{code}"), &code)),
        )
            .into_response(),
        _ => (StatusCode::CONFLICT, Json(common::loop_conflict_body())).into_response(),
    }
}

/// moltin-create-promotion-codes.md: `{data: {type: promotion_codes, codes: [{code}...]}}`;
/// 201 with the promotion.
async fn moltin_create(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(bad) = bad_headers(&headers, MOLTIN_TOKEN) {
        return s.wrong(format!("moltin: {bad}"));
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let codes: Option<Vec<String>> = v["data"]["codes"]
        .as_array()
        .and_then(|a| a.iter().map(|c| c["code"].as_str().map(str::to_owned)).collect());
    let Some(codes) = codes.filter(|c| !c.is_empty()) else {
        return s.wrong(format!("moltin: {v}"));
    };
    let expected = json!({
        "data": { "type": "promotion_codes", "codes": codes.iter().map(|c| json!({ "code": c })).collect::<Vec<_>>() }
    });
    if v != expected {
        return s.wrong(format!("moltin: {v}"));
    }
    let status = s.create("moltin", &codes);
    tokio::time::sleep(s.delay).await;
    match status {
        201 => (
            StatusCode::CREATED,
            Json(json!({
                "data": {
                    "type": "promotion", "id": PROMOTION, "name": "Promo #1",
                    "description": "Initial Promotion", "enabled": true, "promotion_type": "fixed_discount",
                    "schema": { "currencies": [ { "currency": "USD", "amount": 900 }, { "currency": "GBP", "amount": 1100 } ] },
                    "start": "2017-11-13T00:00:00Z", "end": "2019-11-13T00:00:00Z",
                    "created_at": "2018-05-10T15:25:21.164Z", "updated_at": "2018-05-10T15:26:18.203Z"
                }
            })),
        )
            .into_response(),
        _ => (
            StatusCode::CONFLICT,
            Json(json!({ "errors": [{ "status": 409, "title": "Duplicate code" }] })),
        )
            .into_response(),
    }
}

/// The upstream on its own thread and runtime, like a separate server; stops when dropped.
struct Upstream {
    shared: Arc<Shared>,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(delay: Duration) -> Self {
        let shared = Arc::new(Shared {
            books: Mutex::default(),
            delay,
        });
        let app = Router::new()
            .route("/v1/admin/promos", post(loop_create))
            .route(&format!("/v2/promotions/{PROMOTION}/codes"), post(moltin_create))
            .with_state(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            shared,
            base: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.shared.books.lock().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway: the real binary
// ---------------------------------------------------------------------------------------------

impl Gateway {
    /// Starts the binary on `<dir>/config.toml` (and so on the ledger beside it) and waits for
    /// its `listening on ADDR` line. Its log is appended to `<dir>/gateway.log`.
    fn start(dir: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("gateway.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(dir.join("config.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .env(LOOP_VAR, LOOP_TOKEN)
            .env(MOLTIN_VAR, MOLTIN_TOKEN)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stderr(log);
        Gateway::spawn(&mut cmd, false, Duration::from_secs(20)).unwrap_or_else(|mut gw| {
            panic!(
                "the binary printed no `listening on` line; exit status: {:?}; log:\n{}",
                gw.child.try_wait(),
                log_tail(dir)
            )
        })
    }

    /// A line of /proc/<pid>/status, in kB (VmHWM: the peak resident set).
    fn proc_status_kb(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/<pid>/status:\n{status}"))
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One upstream table for the binary, its bearer token in `var`.
fn table(name: &str, url: &str, var: &str, extra: &str) -> String {
    common::upstream(
        name,
        name,
        url,
        &format!("auth = {{ scheme = \"bearer\", token_env = \"{var}\" }}\n{extra}"),
    )
}

/// A campaign granting 20% off: inline on Loop, Moltin's promotion.
fn mapping() -> String {
    format!(
        "[upstreams.loop]\n\n[upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n"
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_six_times_ends_with_every_code_delivered_exactly_once() {
    let upstream = Upstream::start(Duration::from_millis(15));
    let dir = tempfile::tempdir().unwrap();
    // Rate limits make the job last a few seconds, so the kills land mid-run.
    let config = format!(
        "[ledger]\npath = \"ledger.db\"\n\n{}\n{}",
        table(
            "loop",
            &upstream.base,
            LOOP_VAR,
            "rate_limit = { per_second = 300, burst = 10 }"
        ),
        table(
            "moltin",
            &upstream.base,
            MOLTIN_VAR,
            "rate_limit = { per_second = 10, burst = 1 }"
        ),
    );
    let mapping = mapping();
    common::write_files(dir.path(), &config, &[("spring", &mapping)]);
    let codes: Vec<String> = (1..=2000).map(|i| format!("CRASH-{i:05}")).collect();
    let started = Instant::now();
    let mut gw = Gateway::start(dir.path());
    let job = json!({
        "campaign": "spring",
        "targets": ["loop", "moltin"],
        "template": { "discount": { "percent_off": 20 } },
        "codes": codes
    });
    let id = start_upload(&gw, "", "application/json", job.to_string()).await;

    // SIGKILL at increasing points of progress, each time restarting on the same files.
    let mut kills = Vec::new();
    'kills: for threshold in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8] {
        loop {
            let job = job_status(&gw, id).await;
            if job["state"] != "running" {
                break 'kills;
            }
            if progress(&job) >= threshold {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = progress(&job_status(&gw, id).await);
        drop(gw); // SIGKILL
        kills.push(at);
        gw = Gateway::start(dir.path());
    }
    let job = wait_done_or(&gw, id, Duration::from_secs(120), || {
        format!("\nlog:\n{}", log_tail(dir.path()))
    })
    .await;
    let elapsed = started.elapsed();
    println!(
        "crash test: {} kills at {:?} of progress; done in {elapsed:?}",
        kills.len(),
        kills.iter().map(|p| format!("{:.0}%", p * 100.0)).collect::<Vec<_>>()
    );
    assert!(
        kills.len() >= 5,
        "the job ended after {} kills; it should run long enough for 5 (kills at {kills:?})",
        kills.len()
    );

    // The job is done and every delivery has a final state.
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["total"], 2000, "{job}");
    for target in ["loop", "moltin"] {
        let p = &job["targets_progress"][target];
        assert_eq!(p["total"], 2000, "{target}: {job}");
        assert_eq!(p["pending"], 0, "{target}: {job}");
        let counts: BTreeMap<String, u64> = serde_json::from_value(p["counts"].clone()).unwrap();
        assert_eq!(counts.values().sum::<u64>(), 2000, "{target}: {job}");
        assert!(
            counts.keys().all(|s| s == "created" || s == "already_exists"),
            "{target}: deliveries ended other than created or already_exists: {counts:?}"
        );
    }
    let pending = all_results(&gw, id, "&status=pending").await;
    assert!(pending.is_empty(), "still pending: {pending:?}");
    let results = all_results(&gw, id, "").await;
    assert_eq!(results.len(), 4000);
    let status_of: HashMap<(String, String), String> = results
        .iter()
        .map(|r| {
            (
                (
                    r["upstream"].as_str().unwrap().to_owned(),
                    r["code"].as_str().unwrap().to_owned(),
                ),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    // Each upstream created each code exactly once; a code it received again was answered 409
    // and is reported already_exists.
    let books = upstream.books();
    assert!(books.wrong.is_empty(), "undocumented calls: {:?}", books.wrong);
    let expected: BTreeSet<&String> = codes.iter().collect();
    let mut sent_again = 0;
    for vendor in ["loop", "moltin"] {
        let held = &books.codes[vendor];
        assert_eq!(
            held.keys().collect::<BTreeSet<_>>(),
            expected,
            "{vendor} received other codes than the job's"
        );
        let mut repeated = 0;
        for code in &codes {
            let r = held[code];
            assert_eq!(r.created, 1, "{vendor} created `{code}` {} times: {r:?}", r.created);
            let status = &status_of[&(vendor.to_owned(), code.clone())];
            if r.repeats > 0 {
                repeated += 1;
                assert_eq!(
                    status, "already_exists",
                    "{vendor}: `{code}` was sent again after it was created ({r:?}) yet is reported {status}"
                );
            } else {
                assert_eq!(
                    status, "created",
                    "{vendor}: `{code}` was created once ({r:?}) yet is reported {status}"
                );
            }
        }
        println!(
            "crash test: {vendor}: {} calls, {repeated} codes sent again after a kill (answered 409, reported already_exists)",
            books.calls[vendor]
        );
        // What a kill can make the job send again is what it had in flight: a call's slot is
        // held until its outcome is in the ledger, and the job keeps at most 32 calls in flight
        // per target (Loop), or 4 batches of 50 codes (Moltin). Group commit must not widen it.
        let in_flight_cap = if vendor == "loop" { 32 } else { 4 * 50 };
        assert!(
            repeated <= kills.len() * in_flight_cap,
            "{vendor}: {repeated} codes sent again over {} kills, more than the {in_flight_cap} in flight at each",
            kills.len()
        );
        sent_again += repeated;
    }
    // With calls held 15 ms upstream, a kill lands between a code's creation and its record
    // almost every time: otherwise this test would not have exercised a crash at all.
    assert!(
        sent_again > 0,
        "no kill interrupted a delivery between the vendor's answer and the ledger's record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_code_ndjson_job_runs_to_completion_in_flat_memory() {
    const N: usize = 100_000;
    let upstream = Upstream::start(Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = table(
        "moltin",
        &upstream.base,
        MOLTIN_VAR,
        "rate_limit = { per_second = 100000, burst = 1000 }",
    );
    let mapping = format!("[upstreams.moltin]\npromotion_id = \"{PROMOTION}\"\ndiscount = {{ percent_off = 20 }}\n");
    common::write_files(dir.path(), &config, &[("bulk", &mapping)]);

    // The file, written line by line.
    let file: PathBuf = dir.path().join("codes.ndjson");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 1..=N {
            writeln!(out, "{{\"code\":\"BULK-{i:06}\",\"discount\":{{\"percent_off\":20}}}}").unwrap();
        }
        out.flush().unwrap();
    }
    let size = std::fs::metadata(&file).unwrap().len();

    let gw = Gateway::start(dir.path());
    let started = Instant::now();
    // TODO(lead): stream the file (reqwest::Body::wrap_stream over a tokio File) once reqwest's
    // `stream` feature is in Cargo.toml; without it the test holds the file (about 5 MB) in its
    // own memory. The gateway streams the upload to disk either way.
    let body = tokio::fs::read(&file).await.unwrap();
    let id = start_upload(&gw, "?campaign=bulk&targets=moltin", "application/x-ndjson", body).await;
    let accepted = started.elapsed();
    let job = wait_done_or(&gw, id, Duration::from_secs(300), || {
        format!("\nlog:\n{}", log_tail(dir.path()))
    })
    .await;
    let elapsed = started.elapsed();
    let peak_kb = gw.proc_status_kb("VmHWM");
    let rss_kb = gw.proc_status_kb("VmRSS");
    println!(
        "100k NDJSON job: file {:.1} MB; accepted (upload + intake) in {accepted:?}; done in {elapsed:?}; \
         gateway peak memory (VmHWM) {:.1} MB, RSS at the end {:.1} MB",
        size as f64 / 1e6,
        peak_kb as f64 / 1024.0,
        rss_kb as f64 / 1024.0
    );

    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["source"], "ndjson", "{job}");
    assert_eq!(job["total"], N, "{job}");
    let p = &job["targets_progress"]["moltin"];
    assert_eq!(p["pending"], 0, "{job}");
    assert_eq!(p["counts"], json!({ "created": N }), "{job}");
    assert!(all_results(&gw, id, "&status=pending").await.is_empty());
    {
        let books = upstream.books();
        assert!(
            books.wrong.is_empty(),
            "undocumented calls: {:?}",
            &books.wrong[..books.wrong.len().min(5)]
        );
        let held = &books.codes["moltin"];
        assert_eq!(held.len(), N, "Moltin received {} distinct codes", held.len());
        let not_once = held.values().filter(|r| r.created != 1 || r.repeats != 0).count();
        assert_eq!(not_once, 0, "codes not received exactly once");
    }
    assert!(
        peak_kb < 200 * 1024,
        "the gateway's peak memory was {:.1} MB (limit 200 MB)",
        peak_kb as f64 / 1024.0
    );
    let books = upstream.books();
    let sizes = &books.moltin_batches;
    assert!(
        sizes.iter().all(|n| (1..=50).contains(n)),
        "a Moltin call carried more than 50 codes"
    );
    let short = sizes.iter().filter(|n| **n < 50).count();
    assert_eq!(
        sizes.len(),
        N / 50,
        "100,000 codes to Moltin should take 2,000 calls of 50, but took {} ({short} short batches): a short \
         batch ends each page of the job's work, so the page size is not a multiple of 50",
        sizes.len()
    );
}
