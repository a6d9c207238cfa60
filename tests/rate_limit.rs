//! Per-upstream rate limits and Retry-After, measured where it matters: at the vendor. Each
//! wiremock upstream records when every call arrived.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wiremock::matchers::header;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

/// The request for one 20%-off code sent to `target`.
fn promo(code: &str, target: &str) -> Value {
    common::percent20(code, &[target])
}

/// A Loop upstream that records each call's arrival. It answers 201 to a call whose body is
/// exactly Loop's `{code, percent_off: 20}`, and 400 otherwise; the first `throttle` calls get
/// 429 with `Retry-After: 1`.
#[derive(Clone, Default)]
struct Recorder {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    throttle: usize,
}

impl Recorder {
    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

impl Respond for Recorder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let seen = {
            let mut arrivals = self.arrivals.lock().unwrap();
            arrivals.push(Instant::now());
            arrivals.len()
        };
        if seen <= self.throttle {
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"error": "rate_limited", "message": "slow down"}));
        }
        let body: Value = req.body_json().unwrap_or(Value::Null);
        match body["code"].as_str() {
            Some(code) if body == common::loop_body(code) => common::loop_created(&format!("promo_{code}"), code),
            _ => {
                ResponseTemplate::new(400).set_body_json(json!({"error": "bad_request", "message": "unexpected body"}))
            }
        }
    }
}

/// Mounts `recorder` as the Loop create endpoint for bearer `token`, expecting `calls` calls, and
/// a catch-all that must stay unused.
async fn mount(server: &MockServer, recorder: &Recorder, token: &str, calls: u64) {
    common::loop_endpoint()
        .and(header("Authorization", format!("Bearer {token}").as_str()))
        .and(header("Content-Type", "application/json"))
        .respond_with(recorder.clone())
        .expect(calls)
        .mount(server)
        .await;
    common::no_other_calls(server).await;
}

fn assert_created(status: u16, body: &Value, upstream: &str) {
    assert_eq!(status, 201, "{body}");
    let r = common::result(body, upstream);
    assert_eq!(r["status"], "created", "{body}");
    assert_eq!(
        r["vendor_id"],
        format!("promo_{}", body["code"].as_str().unwrap()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limiter_holds_at_the_vendor() {
    const PER_SECOND: usize = 20;
    const BURST: usize = 4;
    const N: usize = 40;
    let vendor = MockServer::start().await;
    let recorder = Recorder::default();
    mount(&vendor, &recorder, "loop-token", N as u64).await;
    let config = common::upstream(
        "loop",
        "loop",
        &vendor.uri(),
        &format!("rate_limit = {{ per_second = {PER_SECOND}, burst = {BURST} }}"),
    );
    let gw = common::start(&config, &[], &[("LOOP_TOKEN", "loop-token")]).await;

    let codes: Vec<String> = (0..N).map(|i| format!("RL-{i}")).collect();
    let answers = gw
        .create_all(&codes.iter().map(|c| promo(c, "loop")).collect::<Vec<_>>())
        .await;

    for (status, body) in &answers {
        assert_created(*status, body, "loop");
        assert_eq!(common::result(body, "loop")["attempts"], 1, "{body}");
    }
    let mut arrivals = recorder.arrivals();
    arrivals.sort();
    assert_eq!(arrivals.len(), N);
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) <= Duration::from_secs(1))
            .count();
        assert!(
            in_window <= PER_SECOND + BURST,
            "{in_window} calls reached the vendor within one second of call {i} (limit {PER_SECOND}/s, burst {BURST})"
        );
    }
    // (N - BURST) calls at 1/PER_SECOND intervals: about 1.8 s. Not much more either.
    let span = arrivals[N - 1].duration_since(arrivals[0]);
    assert!(
        span >= Duration::from_millis(1500),
        "the calls were not spread out: {span:?}"
    );
    assert!(
        span < Duration::from_secs(4),
        "the limiter was far slower than its quota: {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_upstream_does_not_slow_another() {
    const SLOW_CALLS: usize = 6; // at 2/s after a burst of 1: 2.5 s to drain
    const FAST_CALLS: usize = 10;
    let slow_server = MockServer::start().await;
    let fast_server = MockServer::start().await;
    let slow = Recorder::default();
    let fast = Recorder::default();
    mount(&slow_server, &slow, "slow-token", SLOW_CALLS as u64).await;
    mount(&fast_server, &fast, "fast-token", FAST_CALLS as u64).await;
    let config = format!(
        "{}\n{}",
        common::upstream(
            "slow",
            "loop",
            &slow_server.uri(),
            "rate_limit = { per_second = 2, burst = 1 }"
        ),
        common::upstream("fast", "loop", &fast_server.uri(), "")
    );
    let gw = Arc::new(
        common::start(
            &config,
            &[],
            &[("SLOW_TOKEN", "slow-token"), ("FAST_TOKEN", "fast-token")],
        )
        .await,
    );

    let slow_tasks: Vec<_> = (0..SLOW_CALLS)
        .map(|i| {
            let gw = gw.clone();
            tokio::spawn(async move { gw.create(&promo(&format!("SLOW-{i}"), "slow")).await })
        })
        .collect();
    // Wait until the slow upstream's burst is spent, so the rest of its calls queue.
    let waited = Instant::now();
    while slow.count() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(2),
            "the slow upstream got no call"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let answers = gw
        .create_all(
            &(0..FAST_CALLS)
                .map(|i| promo(&format!("FAST-{i}"), "fast"))
                .collect::<Vec<_>>(),
        )
        .await;
    let fast_took = started.elapsed();
    let slow_done_meanwhile = slow.count();

    for (status, body) in &answers {
        assert_created(*status, body, "fast");
    }
    assert!(
        slow_done_meanwhile < SLOW_CALLS,
        "the slow queue had drained ({slow_done_meanwhile} calls) before the fast creates finished, so this proves nothing"
    );
    assert!(
        fast_took < Duration::from_millis(1200),
        "{FAST_CALLS} creates on an idle upstream took {fast_took:?} while another upstream was saturated"
    );

    for task in slow_tasks {
        let (status, body) = task.await.unwrap();
        assert_created(status, &body, "slow");
    }
    let arrivals = slow.arrivals();
    let span = arrivals
        .iter()
        .max()
        .unwrap()
        .duration_since(*arrivals.iter().min().unwrap());
    assert!(
        span >= Duration::from_secs(2),
        "the slow upstream's limit did not hold: {SLOW_CALLS} calls within {span:?}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let vendor = MockServer::start().await;
    let recorder = Recorder {
        throttle: 1,
        ..Recorder::default()
    };
    mount(&vendor, &recorder, "loop-token", 2).await;
    let config = common::upstream(
        "loop",
        "loop",
        &vendor.uri(),
        "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 5000 }",
    );
    let gw = common::start(&config, &[], &[("LOOP_TOKEN", "loop-token")]).await;

    let (status, body) = gw.create(&promo("PATIENT", "loop")).await;

    assert_created(status, &body, "loop");
    let r = common::result(&body, "loop");
    assert_eq!(r["attempts"], 2, "{body}");
    assert!(r.get("error").is_none(), "{body}");
    let arrivals = recorder.arrivals();
    assert_eq!(arrivals.len(), 2);
    let gap = arrivals[1].duration_since(arrivals[0]);
    assert!(
        gap >= Duration::from_millis(990),
        "retried {gap:?} after a Retry-After of 1 s"
    );
    assert!(
        gap < Duration::from_millis(2500),
        "waited {gap:?}, far longer than Retry-After: 1"
    );
}
