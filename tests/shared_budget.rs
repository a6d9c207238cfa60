//! One rate budget and one Retry-After pause per upstream for every replica, shared through a
//! real Redis server: REAL binaries (three replicas, each with its own SQLite ledger) against
//! a local Loop that records when each call arrives.
//!
//! - However many replicas send, no sliding one-second window at the vendor sees more than
//!   `per_second + burst` calls, and together they use at least 95% of the quota.
//! - A 429 with Retry-After seen by one replica holds every replica, and `/health` shows it.
//! - No Redis, no call: a create is answered `throttled` naming the rate budget, `/health` is
//!   degraded naming Redis, a sync job waits and finishes once Redis is back, and a Redis that
//!   does not answer at start-up stops start-up naming `rate_limit.redis_url_env`, never the
//!   password.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use common::binary::{Binary, BIN};
use common::jobs::wait_done;
use common::redis::Redis;

const TOKEN_VAR: &str = "PROMO_BUDGET_TEST_LOOP_TOKEN";
const TOKEN: &str = "loop-budget-secret-8c2d";
const REDIS_VAR: &str = "PROMO_BUDGET_TEST_REDIS_URL";

/// Loop, as its document has it: `POST /v1/admin/promos` with the bearer token and a JSON
/// body. Records when each call arrived; a code starting `PAUSE-` is answered 429 with
/// `Retry-After: 2` the first time.
#[derive(Default)]
struct Vendor {
    arrivals: Mutex<Vec<(Instant, String)>>,
}

impl Vendor {
    fn arrivals(&self) -> Vec<(Instant, String)> {
        self.arrivals.lock().unwrap().clone()
    }

    fn calls_for(&self, code: &str) -> usize {
        self.arrivals().iter().filter(|(_, c)| c == code).count()
    }
}

async fn create(State(vendor): State<Arc<Vendor>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    let first = {
        let mut arrivals = vendor.arrivals.lock().unwrap();
        let first = !arrivals.iter().any(|(_, c)| *c == code);
        arrivals.push((now, code.clone()));
        first
    };
    if code.starts_with("PAUSE-") && first {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "2")],
            axum::Json(json!({ "error": "rate_limited", "message": "slow down" })),
        )
            .into_response();
    }
    let promo = common::loop_promo(&format!("promo_{code}"), &code);
    (StatusCode::CREATED, axum::Json(promo)).into_response()
}

async fn vendor() -> (Arc<Vendor>, String) {
    let vendor = Arc::new(Vendor::default());
    let app = Router::new()
        .route("/v1/admin/promos", post(create))
        .with_state(vendor.clone());
    (vendor, common::serve_vendor(app).await)
}

/// A replica's config: its own ledger, Loop at `vendor` with the quota, the budget in Redis.
fn replica(vendor: &str, per_second: u32, burst: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[rate_limit]\nredis_url_env = \"{REDIS_VAR}\"\n\n{}",
        common::upstream(
            "loop",
            "loop",
            vendor,
            &format!(
                "auth = {{ scheme = \"bearer\", token_env = \"{TOKEN_VAR}\" }}\n\
                 rate_limit = {{ per_second = {per_second}, burst = {burst} }}\n\
                 limiter_wait_ms = 1000\nmax_in_flight = 64\n\
                 retry = {{ max_attempts = 1, base_delay_ms = 10, max_delay_ms = 50, max_wait_ms = 500 }}"
            )
        )
    );
    std::fs::create_dir_all(dir.path().join("mappings")).unwrap();
    std::fs::write(dir.path().join("mappings/budget.toml"), "[upstreams.loop]\n").unwrap();
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    dir
}

fn command(dir: &Path, redis_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(TOKEN_VAR, TOKEN)
        .env(REDIS_VAR, redis_url)
        .stderr(Stdio::piped());
    cmd
}

fn spawn(dir: &Path, redis_url: &str) -> Binary {
    Binary::spawn(&mut command(dir, redis_url), false, Duration::from_secs(10))
        .unwrap_or_else(|b| panic!("no `listening on` line: {:?}", b.lines.lock().unwrap()))
}

fn code(code: &str) -> Value {
    json!({ "code": code, "discount": { "percent_off": 20 }, "targets": ["loop"] })
}

/// The most calls any one-second window (sliding, starting at a call) holds.
fn busiest_second(arrivals: &[Instant]) -> usize {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t - sorted[i] < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_draw_on_one_budget_and_use_it_whole_through_a_redis_outage() {
    let Some(mut redis) = Redis::start_or_skip("three_replicas_draw_on_one_budget") else {
        return;
    };
    let (vendor, url) = vendor().await;
    let (per_second, burst) = (50, 5);
    let dirs: Vec<_> = (0..3).map(|_| replica(&url, per_second, burst)).collect();
    let replicas: Vec<Binary> = dirs.iter().map(|d| spawn(d.path(), &redis.url())).collect();

    // A sync job of 120 codes on each replica: 360 calls, far more than a second's quota.
    let mut jobs = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        let codes: Vec<String> = (0..120).map(|n| format!("R{r}-{n}")).collect();
        let job = json!({ "campaign": "budget", "targets": ["loop"], "template": { "discount": { "percent_off": 20 } }, "codes": codes });
        let (status, body) = replica.post("/v1/sync-jobs", job.to_string()).await;
        assert_eq!(status, 202, "{body}");
        jobs.push(body["id"].as_i64().unwrap());
    }
    // Redis goes away for two seconds mid-job.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.stop();
    let outage = Instant::now();
    let during_before = vendor.arrivals().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = vendor.arrivals().len() - during_before;
    redis.restart();
    let outage = outage.elapsed();
    for (replica, id) in replicas.iter().zip(&jobs) {
        let job = wait_done(&replica.api, *id, Duration::from_secs(30)).await;
        assert_eq!(job["state"], "done", "{job}");
    }

    let arrivals: Vec<Instant> = vendor.arrivals().into_iter().map(|(t, _)| t).collect();
    assert_eq!(arrivals.len(), 360, "every code sent once");
    let busiest = busiest_second(&arrivals);
    let span = (*arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap()).as_secs_f64();
    // The pace while there was a budget to ask: the outage and the first burst left out.
    let pace = (arrivals.len() as f64 - f64::from(burst)) / (span - outage.as_secs_f64());
    eprintln!(
        "360 calls from 3 replicas in {span:.2} s, {during} during a {:.2} s Redis outage; busiest second {busiest}; pace {pace:.1}/s for a quota of {per_second}/s",
        outage.as_secs_f64()
    );
    assert!(during <= 1, "{during} calls went out while Redis was down");
    assert!(
        busiest <= (per_second + burst) as usize,
        "a one-second window saw {busiest} calls, over {per_second} + {burst}"
    );
    assert!(
        pace >= 0.95 * f64::from(per_second),
        "the replicas' pace was {pace:.1}/s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_seen_by_one_replica_holds_them_all() {
    let Some(redis) = Redis::start_or_skip("a_retry_after_seen_by_one_replica_holds_them_all") else {
        return;
    };
    let (vendor, url) = vendor().await;
    let (a_dir, b_dir) = (replica(&url, 100, 10), replica(&url, 100, 10));
    let (a, b) = (spawn(a_dir.path(), &redis.url()), spawn(b_dir.path(), &redis.url()));

    let (status, body) = a.create(&code("PAUSE-1")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "throttled", "{body}");
    // Replica B never met the 429, and still holds off.
    let (_, health) = b.get("/health").await;
    assert!(health["upstreams"]["loop"]["paused_until"].is_string(), "{health}");
    assert_eq!(health["upstreams"]["loop"]["rate_limit_backend"], "redis", "{health}");
    let (status, body) = b.create(&code("HELD-1")).await;
    assert_eq!(status, 502, "{body}");
    let result = common::result(&body, "loop");
    assert_eq!(result["status"], "throttled", "{body}");
    assert_eq!(result["attempts"], 0, "{body}");
    assert_eq!(vendor.calls_for("HELD-1"), 0, "a call went out during the pause");
    // Once it is over, both send again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = b.create(&code("AFTER-1")).await;
    assert_eq!(status, 201, "{body}");
    let (_, health) = a.get("/health").await;
    assert!(health["upstreams"]["loop"].get("paused_until").is_none(), "{health}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_redis_no_call_and_the_work_goes_on_when_it_is_back() {
    let Some(mut redis) = Redis::start_or_skip("no_redis_no_call") else {
        return;
    };
    let (vendor, url) = vendor().await;
    let dir = replica(&url, 100, 10);
    let gw = spawn(dir.path(), &redis.url());
    let (status, body) = gw.create(&code("BEFORE-1")).await;
    assert_eq!(status, 201, "{body}");

    redis.stop();
    let started = Instant::now();
    let (status, body) = gw.create(&code("GONE-1")).await;
    assert_eq!(status, 502, "{body}");
    let result = common::result(&body, "loop");
    assert_eq!(result["status"], "throttled", "{body}");
    let message = result["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("rate budget") && message.contains("Redis"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(vendor.calls_for("GONE-1"), 0, "a call went out without admission");
    let (_, health) = gw.get("/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["upstreams"]["loop"]["rate_limit_problem"]
            .as_str()
            .unwrap()
            .contains("Redis"),
        "{health}"
    );
    // A sync job waits for Redis instead of failing.
    let job = json!({ "campaign": "budget", "targets": ["loop"], "template": { "discount": { "percent_off": 20 } }, "codes": ["JOB-1", "JOB-2", "JOB-3"] });
    let (status, body) = gw.post("/v1/sync-jobs", job.to_string()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(vendor.calls_for("JOB-1"), 0, "a job's call went out without admission");
    let (_, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
    assert_eq!(job["state"], "running", "{job}");

    redis.restart();
    let job = wait_done(&gw.api, id, Duration::from_secs(15)).await;
    assert_eq!(job["state"], "done", "{job}");
    for c in ["JOB-1", "JOB-2", "JOB-3"] {
        assert_eq!(vendor.calls_for(c), 1, "{c}");
    }
    let (status, body) = gw.create(&code("BACK-1")).await;
    assert_eq!(status, 201, "{body}");
    let (_, health) = gw.get("/health").await;
    assert!(
        health["upstreams"]["loop"].get("rate_limit_problem").is_none(),
        "{health}"
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_stops_start_up_naming_the_variable_not_the_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = replica("http://127.0.0.1:9", 10, 1);
    for (url, expect) in [
        (
            format!("redis://:pw-hunter2-secret@127.0.0.1:{closed}"),
            "Redis does not answer",
        ),
        (String::new(), "not set"),
    ] {
        let out = command(dir.path(), &url).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains("rate_limit.redis_url_env"), "{stderr}");
        assert!(stderr.contains(REDIS_VAR) && stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
    }
}
