//! Upstream resilience, by fault injection through the real router: Retry-After pauses (on a
//! clock the test moves), retries that cannot duplicate a code, timeouts, broken connections,
//! garbage and huge answers, the circuit breaker, the limiter's wait bound, and one hanging
//! upstream beside a healthy one. Loop and Partnero stand in for every vendor; each upstream is a
//! wiremock server checking the exact documented call (or a raw socket, where the fault is below
//! HTTP), and every test asserts how many calls each upstream received.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{received, Gateway};
use promo_gateway::clock::ManualClock;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::{MockBuilder, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

use common::Vendor;

/// What these tests configure and send for Loop and Partnero (campaign `spring`, 20% off).
trait Spring: Copy {
    fn token(self) -> &'static str;
    fn env(self) -> [(&'static str, &'static str); 1];
    /// The body the vendor's document requires for a 20%-off `code`.
    fn spring_body(self, code: &str) -> Value;
    /// Exactly the documented call creating `code`: method, path, bearer token, headers, body.
    fn spring_create(self, code: &str) -> MockBuilder;
    /// The documented success answer for `code`.
    fn created_one(self, code: &str) -> ResponseTemplate;
    /// The gateway's request for a 20%-off `code` to this vendor alone.
    fn request(self, code: &str) -> Value;
    fn config(self, uri: &str, extra: &str) -> String;
}

impl Spring for Vendor {
    fn token(self) -> &'static str {
        match self {
            Vendor::Loop => "loop-token-5e1d",
            Vendor::Partnero => "partnero-token-9c2a",
            Vendor::Moltin => unreachable!("these tests drive Loop and Partnero"),
        }
    }

    fn env(self) -> [(&'static str, &'static str); 1] {
        match self {
            Vendor::Loop => [("LOOP_TOKEN", self.token())],
            _ => [("PARTNERO_TOKEN", self.token())],
        }
    }

    fn spring_body(self, code: &str) -> Value {
        self.body("coupon_spring", &[code.to_owned()])
    }

    fn spring_create(self, code: &str) -> MockBuilder {
        self.create(self.token(), self.spring_body(code))
    }

    fn created_one(self, code: &str) -> ResponseTemplate {
        self.created(&[code.to_owned()])
    }

    fn request(self, code: &str) -> Value {
        json!({ "code": code, "campaign": "spring", "discount": { "percent_off": 20 }, "targets": [self.name()] })
    }

    fn config(self, uri: &str, extra: &str) -> String {
        common::upstream(self.name(), self.name(), uri, extra)
    }
}

/// Fast retries, defaults otherwise (no retry after an unconfirmed outcome).
const FAST_RETRY: &str = "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50 }";

/// The gateway with one upstream for `v` at `uri`, on the system clock.
async fn gateway(v: Vendor, uri: &str, extra: &str) -> Gateway {
    common::start(
        &v.config(uri, extra),
        &[("spring", common::SPRING_LOOP_PARTNERO)],
        &v.env(),
    )
    .await
}

/// The gateway with one upstream for `v` at `uri`, on `clock`.
async fn gateway_on(v: Vendor, uri: &str, extra: &str, clock: &ManualClock) -> Gateway {
    common::start_with_clock(
        &v.config(uri, extra),
        &[("spring", common::SPRING_LOOP_PARTNERO)],
        &v.env(),
        Arc::new(clock.clone()),
    )
    .await
}

/// The manual clock's start: 2026-03-01 10:00:00 UTC, a Sunday.
fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Creates `code` at `v` and returns the HTTP status and `v`'s result.
async fn create(gw: &Gateway, v: Vendor, code: &str) -> (u16, Value) {
    let (status, body) = gw.create(&v.request(code)).await;
    common::assert_hides(&body.to_string(), &[v.token()]);
    (status, common::result(&body, v.name()).clone())
}

async fn health(gw: &Gateway, v: Vendor) -> (Value, Value) {
    let (status, body) = gw.get("/health").await;
    assert_eq!(status, 200, "{body}");
    (body["status"].clone(), body["upstreams"][v.name()].clone())
}

/// Waits (real time, bounded) until a call is sleeping on `clock`.
async fn sleeping_on(clock: &ManualClock) {
    let started = Instant::now();
    while clock.sleepers() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no call came to wait on the clock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn message(r: &Value) -> &str {
    r["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {r}"))
}

fn throttled_429(retry_after: &str) -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("Retry-After", retry_after)
        .set_body_json(json!({ "error": "rate_limited", "message": "Too Many Attempts." }))
}

// ---------------------------------------------------------------------------------------------
// 1. Retry-After pauses the upstream for every caller
// ---------------------------------------------------------------------------------------------

/// A 429 with `retry_after` (30 s from t0, as seconds or as a date) ends the first create
/// `throttled` (one attempt allowed); a second create waits, without calling, until the test moves
/// the clock past the pause; then it goes through.
async fn retry_after_pauses_every_caller(v: Vendor, retry_after: &str) {
    let clock = ManualClock::new(t0());
    let server = common::strict_server().await;
    v.spring_create("PAUSE-1")
        .respond_with(throttled_429(retry_after))
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("PAUSE-2")
        .respond_with(v.created_one("PAUSE-2"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = Arc::new(
        gateway_on(
            v,
            &server.uri(),
            "retry = { max_attempts = 1, base_delay_ms = 10, max_delay_ms = 50 }",
            &clock,
        )
        .await,
    );

    let (status, r) = create(&gw, v, "PAUSE-1").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["kind"], "rate_limited", "{r}");
    assert_eq!(r["error"]["http_status"], 429, "{r}");
    assert_eq!(r["error"]["retry_after_secs"], 30, "{r}");
    assert_eq!(r["error"]["retry_at"], "2026-03-01T10:00:30Z", "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    let (overall, h) = health(&gw, v).await;
    assert_eq!(h["paused_until"], "2026-03-01T10:00:30Z", "{h}");
    assert_eq!(h["breaker"], "closed", "{h}");
    assert_eq!(overall, "ok", "a pause is the vendor's pace, not a fault: {h}");
    assert_eq!(received(&server).await, 1);

    let second = tokio::spawn({
        let gw = gw.clone();
        async move { create(&gw, v, "PAUSE-2").await }
    });
    sleeping_on(&clock).await;
    assert_eq!(received(&server).await, 1, "a call went out during the pause");
    clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second create did not wait out the pause");
    assert_eq!(
        received(&server).await,
        1,
        "a call went out a second before the pause ended"
    );

    clock.advance(Duration::from_secs(1));
    let (status, r) = tokio::time::timeout(Duration::from_secs(2), second)
        .await
        .expect("the second create still waits after the pause ended")
        .unwrap();
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], v.vendor_id("PAUSE-2"), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 2);
    let (_, h) = health(&gw, v).await;
    assert!(h.get("paused_until").is_none(), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_retry_after_seconds_pauses_every_caller() {
    retry_after_pauses_every_caller(Vendor::Loop, "30").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partnero_retry_after_seconds_pauses_every_caller() {
    retry_after_pauses_every_caller(Vendor::Partnero, "30").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_retry_after_http_date_pauses_every_caller() {
    retry_after_pauses_every_caller(Vendor::Loop, "Sun, 01 Mar 2026 10:00:30 GMT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partnero_retry_after_http_date_pauses_every_caller() {
    retry_after_pauses_every_caller(Vendor::Partnero, "Sun, 01 Mar 2026 10:00:30 GMT").await;
}

/// An hour-long Retry-After is beyond what a client's call waits (max_wait_ms): the create that
/// met it and the next one are answered at once `throttled`, with the time the upstream is back;
/// the second makes no call. Once the clock reaches that time, calls go through again.
async fn long_retry_after_answers_at_once(v: Vendor) {
    let clock = ManualClock::new(t0());
    let server = common::strict_server().await;
    v.spring_create("LONG-1")
        .respond_with(throttled_429("3600"))
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("LONG-2")
        .respond_with(v.created_one("LONG-2"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway_on(
        v,
        &server.uri(),
        "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50, max_wait_ms = 10000 }",
        &clock,
    )
    .await;

    let started = Instant::now();
    let (status, r) = create(&gw, v, "LONG-1").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["http_status"], 429, "{r}");
    assert_eq!(r["attempts"], 1, "no retry into an hour-long pause: {r}");
    assert_eq!(r["error"]["retry_after_secs"], 3600, "{r}");
    assert_eq!(r["error"]["retry_at"], "2026-03-01T11:00:00Z", "{r}");

    let (status, r) = create(&gw, v, "LONG-2").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["kind"], "rate_limited", "{r}");
    assert!(r["error"].get("http_status").is_none(), "no call, no status: {r}");
    assert_eq!(r["attempts"], 0, "{r}");
    assert_eq!(r["error"]["retry_after_secs"], 3600, "{r}");
    assert_eq!(r["error"]["retry_at"], "2026-03-01T11:00:00Z", "{r}");
    assert!(message(&r).contains("pause until 2026-03-01T11:00:00Z"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the creates waited instead of answering at once"
    );
    let (_, h) = health(&gw, v).await;
    assert_eq!(h["paused_until"], "2026-03-01T11:00:00Z", "{h}");
    assert_eq!(received(&server).await, 1);

    clock.advance(Duration::from_secs(3600));
    let (status, r) = create(&gw, v, "LONG-2").await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["vendor_id"], v.vendor_id("LONG-2"), "{r}");
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn loop_retry_after_beyond_max_wait_is_throttled_at_once() {
    long_retry_after_answers_at_once(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_retry_after_beyond_max_wait_is_throttled_at_once() {
    long_retry_after_answers_at_once(Vendor::Partnero).await;
}

// ---------------------------------------------------------------------------------------------
// 2. What is retried, and what is not
// ---------------------------------------------------------------------------------------------

/// A 502/503 comes from in front of the vendor's application: retried, and one code created.
async fn proxy_error_then_created(v: Vendor, status: u16) {
    let server = common::strict_server().await;
    v.spring_create("FLAKY")
        .respond_with(
            ResponseTemplate::new(status).set_body_raw("<html><body>Service Unavailable</body></html>", "text/html"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("FLAKY")
        .respond_with(v.created_one("FLAKY"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(v, &server.uri(), FAST_RETRY).await;

    let (status, r) = create(&gw, v, "FLAKY").await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], v.vendor_id("FLAKY"), "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn loop_503_is_retried_and_creates_one_code() {
    proxy_error_then_created(Vendor::Loop, 503).await;
}

#[tokio::test]
async fn partnero_503_is_retried_and_creates_one_code() {
    proxy_error_then_created(Vendor::Partnero, 503).await;
}

#[tokio::test]
async fn partnero_502_is_retried_and_creates_one_code() {
    proxy_error_then_created(Vendor::Partnero, 502).await;
}

/// A 504 may follow a create the vendor made: by default it is not retried.
#[tokio::test]
async fn loop_504_is_not_retried_by_default() {
    let v = Vendor::Loop;
    let server = common::strict_server().await;
    v.spring_create("LATE")
        .respond_with(ResponseTemplate::new(504).set_body_raw("upstream request timeout", "text/plain"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(v, &server.uri(), FAST_RETRY).await;

    let (status, r) = create(&gw, v, "LATE").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "upstream_error", "{r}");
    assert_eq!(r["error"]["http_status"], 504, "{r}");
    assert!(message(&r).contains("upstream request timeout"), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 1);
}

/// A 400 is the vendor's answer: never retried.
async fn rejection_is_not_retried(v: Vendor) {
    let server = common::strict_server().await;
    let answer = match v {
        Vendor::Loop => json!({ "error": "validation_error", "message": "percent_off must be between 1 and 100" }),
        Vendor::Partnero => json!({ "message": "The coupon uuid field is invalid." }),
        Vendor::Moltin => unreachable!("these tests drive Loop and Partnero"),
    };
    v.spring_create("BAD")
        .respond_with(ResponseTemplate::new(400).set_body_json(&answer))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(v, &server.uri(), FAST_RETRY).await;

    let (status, r) = create(&gw, v, "BAD").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["error"]["kind"], "vendor_rejected", "{r}");
    assert_eq!(r["error"]["http_status"], 400, "{r}");
    assert!(message(&r).contains(answer["message"].as_str().unwrap()), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn loop_400_is_not_retried() {
    rejection_is_not_retried(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_400_is_not_retried() {
    rejection_is_not_retried(Vendor::Partnero).await;
}

/// A timeout: by default not retried (the code may exist); the answer says so.
async fn timeout_is_not_retried_by_default(v: Vendor) {
    let server = common::strict_server().await;
    v.spring_create("SLOW")
        .respond_with(v.created_one("SLOW").set_delay(Duration::from_millis(1500)))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(v, &server.uri(), &format!("timeout_ms = 300\n{FAST_RETRY}")).await;

    let started = Instant::now();
    let (status, r) = create(&gw, v, "SLOW").await;
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert!(r["error"].get("http_status").is_none(), "{r}");
    assert!(message(&r).contains("may exist upstream"), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn loop_timeout_is_not_retried_by_default() {
    timeout_is_not_retried_by_default(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_timeout_is_not_retried_by_default() {
    timeout_is_not_retried_by_default(Vendor::Partnero).await;
}

fn assert_lost_answer_warning(r: &Value) {
    assert_eq!(common::warning_fields(r), ["code"], "{r}");
    let w = common::warning(r, "code");
    assert!(w.contains("answer was lost") && w.contains("already exists"), "{w}");
}

/// With `retry.unconfirmed`, a timed-out create is retried; the vendor's 409 to the retry
/// (the first call did create the code) is `already_exists`, with a warning saying why.
async fn timeout_retried_when_unconfirmed_allowed(v: Vendor) {
    let server = common::strict_server().await;
    v.spring_create("SLOW")
        .respond_with(v.created_one("SLOW").set_delay(Duration::from_millis(1500)))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("SLOW")
        .respond_with(v.conflict())
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(
        v,
        &server.uri(),
        "timeout_ms = 300\nretry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50, unconfirmed = true }",
    )
    .await;

    let (_, r) = create(&gw, v, "SLOW").await;
    assert_eq!(r["status"], "already_exists", "{r}");
    assert_eq!(r["error"]["kind"], "already_exists", "{r}");
    assert_eq!(r["error"]["http_status"], 409, "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_lost_answer_warning(&r);
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn loop_timeout_is_retried_with_unconfirmed_and_409_is_already_exists() {
    timeout_retried_when_unconfirmed_allowed(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_timeout_is_retried_with_unconfirmed_and_409_is_already_exists() {
    timeout_retried_when_unconfirmed_allowed(Vendor::Partnero).await;
}

/// A refused connection never carried the request: retried up to max_attempts.
#[tokio::test]
async fn a_refused_connection_is_retried() {
    let v = Vendor::Loop;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gw = gateway(v, &format!("http://127.0.0.1:{port}"), FAST_RETRY).await;

    let (status, r) = create(&gw, v, "NOBODY").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "unreachable", "{r}");
    assert!(message(&r).contains("could not be reached"), "{r}");
    // Three connection attempts; no request reached anyone (nothing listens on the port).
    assert_eq!(r["attempts"], 3, "{r}");
}

// ---------------------------------------------------------------------------------------------
// 3. Broken connections (a raw socket: the fault is below HTTP)
// ---------------------------------------------------------------------------------------------

/// What the raw server does with each connection, in order (the last repeats).
#[derive(Clone)]
enum Raw {
    /// Reads the request, then resets the connection (RST).
    Reset,
    /// Reads the request, then answers `status` with a JSON `body`.
    Answer(u16, Value),
    /// Reads the request, then answers `status` with a chunked body that never ends.
    Endless(u16),
    /// Reads the request, then sends `status`, headers announcing a 100-byte body, the first
    /// bytes of that body, and closes the connection.
    CutOff(u16, &'static str),
}

/// The requests a raw server received, one per connection: head (request line and headers) and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct RawServer {
    uri: String,
    requests: Seen,
}

impl RawServer {
    async fn start(script: Vec<Raw>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            for n in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let step = script[n.min(script.len() - 1)].clone();
                let seen = seen.clone();
                tokio::spawn(async move { serve_raw(stream, step, seen).await });
            }
        });
        RawServer { uri, requests }
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Every request was exactly `v`'s documented call for `code`.
    fn assert_each_is(&self, v: Vendor, code: &str) {
        for (head, body) in self.requests.lock().unwrap().iter() {
            let lower = head.to_ascii_lowercase();
            assert!(head.starts_with(&format!("POST {} HTTP/1.1\r\n", v.path())), "{head}");
            assert!(
                lower.contains(&format!("\r\nauthorization: bearer {}\r\n", v.token())),
                "{head}"
            );
            assert!(lower.contains("\r\ncontent-type: application/json\r\n"), "{head}");
            if let Vendor::Partnero = v {
                assert!(lower.contains("\r\naccept: application/json\r\n"), "{head}");
            }
            let body: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(body, v.spring_body(code));
        }
    }
}

async fn serve_raw(mut stream: TcpStream, step: Raw, seen: Seen) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    seen.lock().unwrap().push((head, buf[head_end..].to_vec()));
    match step {
        Raw::Reset => {
            // SO_LINGER 0: closing sends RST, not FIN. It does not block with a zero linger.
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }
        Raw::Answer(status, body) => {
            let body = body.to_string();
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Raw::CutOff(status, partial) => {
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{partial}"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Raw::Endless(status) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{{\"id\":\"\r\n",
                "{\"id\":\"".len()
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let piece = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            // Until the gateway hangs up (or, if it never did, 1 GB).
            for _ in 0..16 * 1024 {
                if stream.write_all(piece.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// An outcome after which the vendor may have created the code (`first`), then a 409: by default
/// not retried (the gateway reports a failure that says the code may exist, checked further by
/// `failed`); with `retry.unconfirmed` retried, and the retry's 409 read as `already_exists`
/// with a warning that an answer was lost.
async fn unconfirmed_outcome(v: Vendor, first: Raw, code: &str, unconfirmed: bool, failed: impl FnOnce(&Value)) {
    let server = RawServer::start(vec![first, Raw::Answer(409, common::loop_conflict_body())]).await;
    let retry =
        format!("retry = {{ max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50, unconfirmed = {unconfirmed} }}");
    let gw = gateway(v, &server.uri, &retry).await;

    let (status, r) = create(&gw, v, code).await;
    // A code the vendor already has is on the vendor: 201; a lost answer is a failure: 502.
    if unconfirmed {
        assert_eq!(status, 201, "{r}");
        assert_eq!(r["status"], "already_exists", "{r}");
        assert_eq!(r["error"]["http_status"], 409, "{r}");
        assert_eq!(r["attempts"], 2, "{r}");
        assert_lost_answer_warning(&r);
        assert_eq!(server.count(), 2);
    } else {
        assert_eq!(status, 502, "{r}");
        assert_eq!(r["status"], "failed", "{r}");
        assert!(message(&r).contains("may exist upstream"), "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        assert_eq!(server.count(), 1);
        failed(&r);
    }
    server.assert_each_is(v, code);
}

/// A connection reset after the request went out: the vendor never answered.
async fn reset_after_sending(v: Vendor, unconfirmed: bool) {
    unconfirmed_outcome(v, Raw::Reset, "RESET", unconfirmed, |r| {
        assert_eq!(r["error"]["kind"], "unreachable", "{r}");
        assert!(message(r).contains("broke after the request was sent"), "{r}");
        assert!(r["error"].get("http_status").is_none(), "{r}");
    })
    .await;
}

#[tokio::test]
async fn loop_reset_after_sending_is_not_retried_by_default() {
    reset_after_sending(Vendor::Loop, false).await;
}

#[tokio::test]
async fn partnero_reset_after_sending_is_not_retried_by_default() {
    reset_after_sending(Vendor::Partnero, false).await;
}

#[tokio::test]
async fn loop_reset_is_retried_with_unconfirmed_and_409_is_already_exists() {
    reset_after_sending(Vendor::Loop, true).await;
}

#[tokio::test]
async fn partnero_reset_is_retried_with_unconfirmed_and_409_is_already_exists() {
    reset_after_sending(Vendor::Partnero, true).await;
}

/// The body Loop and Partnero begin their success answers with, cut off after 6 bytes.
const CUT: &str = r#"{"id":"#;

/// A success status whose body breaks off: the vendor answered (`http_status`), and may have
/// created the code, so this is an unreadable answer (`invalid_response`) that is, like a
/// timeout, retried only with `retry.unconfirmed`.
async fn success_cut_off(v: Vendor, unconfirmed: bool) {
    unconfirmed_outcome(v, Raw::CutOff(v.success(), CUT), "CUT-OFF", unconfirmed, |r| {
        assert_eq!(r["error"]["kind"], "invalid_response", "{r}");
        assert_eq!(r["error"]["http_status"], v.success(), "{r}");
        let expected = format!(
            "{} answered {} but the body broke off after 6 bytes (",
            v.display(),
            v.success()
        );
        assert!(message(r).starts_with(&expected), "{r}");
        assert!(r["warnings"].as_array().unwrap().is_empty(), "{r}");
    })
    .await;
}

#[tokio::test]
async fn loop_201_with_its_body_cut_off_reports_201_and_is_not_retried_by_default() {
    success_cut_off(Vendor::Loop, false).await;
}

#[tokio::test]
async fn partnero_200_with_its_body_cut_off_reports_200_and_is_not_retried_by_default() {
    success_cut_off(Vendor::Partnero, false).await;
}

#[tokio::test]
async fn loop_201_cut_off_is_retried_with_unconfirmed_and_409_is_already_exists() {
    success_cut_off(Vendor::Loop, true).await;
}

/// A 503 whose body breaks off is still a proxy's 503: retried by default, like any 503.
#[tokio::test]
async fn a_503_with_its_body_cut_off_is_retried() {
    let v = Vendor::Loop;
    let server = RawServer::start(vec![
        Raw::CutOff(503, "<html>"),
        Raw::Answer(201, common::loop_promo("promo_CUT-503", "CUT-503")),
    ])
    .await;
    let gw = gateway(v, &server.uri, FAST_RETRY).await;

    let (status, r) = create(&gw, v, "CUT-503").await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"], "created", "{r}");
    assert_eq!(r["vendor_id"], "promo_CUT-503", "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(server.count(), 2);
    server.assert_each_is(v, "CUT-503");
}

/// A 4xx whose body breaks off: a refusal whose reason is lost, reported with its status.
#[tokio::test]
async fn a_422_with_its_body_cut_off_reports_422_and_is_not_retried() {
    let v = Vendor::Loop;
    let server = RawServer::start(vec![Raw::CutOff(422, r#"{"error":"#)]).await;
    let gw = gateway(v, &server.uri, FAST_RETRY).await;

    let (status, r) = create(&gw, v, "CUT-422").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_response", "{r}");
    assert_eq!(r["error"]["http_status"], 422, "{r}");
    assert!(
        message(&r).contains("answered 422 but the body broke off after 9 bytes"),
        "{r}"
    );
    assert!(message(&r).contains("reason was lost"), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(server.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Garbage and huge answers
// ---------------------------------------------------------------------------------------------

/// HTML, empty, truncated JSON, plain text: each a `failed` with the status it came with.
async fn garbage_answers_fail(v: Vendor) {
    let ok = v.success();
    let cases: [(&str, ResponseTemplate, &str, u16, &str); 5] = [
        (
            "G-HTML",
            ResponseTemplate::new(ok).set_body_raw("<html><body><h1>Please sign in</h1></body></html>", "text/html"),
            "invalid_response",
            ok,
            "Please sign in",
        ),
        (
            "G-EMPTY",
            ResponseTemplate::new(201),
            "invalid_response",
            201,
            "empty body",
        ),
        (
            "G-TRUNCATED",
            ResponseTemplate::new(201).set_body_raw(r#"{"id":"promo_1","code":"G-TRUN"#, "application/json"),
            "invalid_response",
            201,
            r#"{"id":"promo_1""#,
        ),
        (
            "G-PLAIN",
            ResponseTemplate::new(ok).set_body_raw("Created", "text/plain"),
            "invalid_response",
            ok,
            "Created",
        ),
        (
            "G-500",
            ResponseTemplate::new(500).set_body_raw(
                "upstream connect error or disconnect/reset before headers",
                "text/plain",
            ),
            "upstream_error",
            500,
            "reset before headers",
        ),
    ];
    let server = common::strict_server().await;
    for (code, answer, ..) in &cases {
        v.spring_create(code)
            .respond_with(answer.clone())
            .expect(1)
            .mount(&server)
            .await;
    }
    // Five failures in a row would open the default breaker; this test is about each answer.
    let gw = gateway(
        v,
        &server.uri(),
        &format!("{FAST_RETRY}\nbreaker = {{ failures = 100 }}"),
    )
    .await;

    for (code, _, kind, http_status, quoted) in &cases {
        let (status, r) = create(&gw, v, code).await;
        assert_eq!(status, 502, "{code}: {r}");
        assert_eq!(r["status"], "failed", "{code}: {r}");
        assert_eq!(r["error"]["kind"], *kind, "{code}: {r}");
        assert_eq!(r["error"]["http_status"], *http_status, "{code}: {r}");
        assert!(message(&r).contains(quoted), "{code}: {r}");
        assert!(r.get("vendor_id").is_none(), "{code}: {r}");
        assert_eq!(r["attempts"], 1, "{code}: {r}");
        if *kind == "invalid_response" {
            assert!(message(&r).contains("may exist upstream"), "{code}: {r}");
        }
    }
    assert_eq!(received(&server).await, cases.len());
}

#[tokio::test]
async fn loop_garbage_answers_fail_with_their_status() {
    garbage_answers_fail(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_garbage_answers_fail_with_their_status() {
    garbage_answers_fail(Vendor::Partnero).await;
}

/// A 10 MB answer is not read past max_response_bytes (1 MiB by default).
async fn huge_answer_fails_quickly(v: Vendor) {
    let server = common::strict_server().await;
    let huge = format!("{{\"id\":\"{}\"}}", "x".repeat(10 * 1024 * 1024));
    v.spring_create("HUGE")
        .respond_with(ResponseTemplate::new(v.success()).set_body_raw(huge, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(v, &server.uri(), FAST_RETRY).await;

    let started = Instant::now();
    let (status, r) = create(&gw, v, "HUGE").await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_response", "{r}");
    assert_eq!(r["error"]["http_status"], v.success(), "{r}");
    assert!(message(&r).contains("more than 1048576 bytes"), "{r}");
    assert!(message(&r).len() < 500, "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn loop_10_mb_answer_fails_quickly() {
    huge_answer_fails_quickly(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_10_mb_answer_fails_quickly() {
    huge_answer_fails_quickly(Vendor::Partnero).await;
}

/// An answer with no Content-Length that never ends is cut at the cap, not read into memory.
#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap() {
    let v = Vendor::Loop;
    let server = RawServer::start(vec![Raw::Endless(201)]).await;
    let gw = gateway(v, &server.uri, &format!("{FAST_RETRY}\nmax_response_bytes = 65536")).await;

    let started = Instant::now();
    let (status, r) = create(&gw, v, "ENDLESS").await;
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_response", "{r}");
    assert_eq!(r["error"]["http_status"], 201, "{r}");
    assert!(message(&r).contains("more than 65536 bytes"), "{r}");
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(server.count(), 1);
    server.assert_each_is(v, "ENDLESS");
}

// ---------------------------------------------------------------------------------------------
// 5. The circuit breaker
// ---------------------------------------------------------------------------------------------

/// Three 500s in a row open the breaker: calls fail fast (the upstream sees none) until the
/// cool-down is over on the clock; then one trial call decides. With `trial_fails`, the trial
/// meets another 500 and the breaker opens again for a full cool-down, then a second trial closes it.
async fn breaker_opens_and_closes(v: Vendor, trial_fails: bool) {
    let clock = ManualClock::new(t0());
    let server = common::strict_server().await;
    let failing = ["BRK-1", "BRK-2", "BRK-3"];
    for code in failing {
        v.spring_create(code)
            .respond_with(ResponseTemplate::new(500).set_body_json(json!({ "message": "database down" })))
            .expect(1)
            .mount(&server)
            .await;
    }
    v.spring_create("BRK-TRIAL")
        .respond_with(if trial_fails {
            ResponseTemplate::new(500).set_body_json(json!({ "message": "still down" }))
        } else {
            v.created_one("BRK-TRIAL")
        })
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("BRK-BACK")
        .respond_with(v.created_one("BRK-BACK"))
        .expect(u64::from(trial_fails))
        .mount(&server)
        .await;
    let gw = gateway_on(
        v,
        &server.uri(),
        "retry = { max_attempts = 1, base_delay_ms = 10, max_delay_ms = 50 }\nbreaker = { failures = 3, cool_down_ms = 30000 }",
        &clock,
    )
    .await;

    for (i, code) in failing.iter().enumerate() {
        let (_, h) = health(&gw, v).await;
        assert_eq!(h["breaker"], "closed", "after {i} failures: {h}");
        let (_, r) = create(&gw, v, code).await;
        assert_eq!(r["error"]["kind"], "upstream_error", "{r}");
        assert_eq!(r["error"]["http_status"], 500, "{r}");
    }
    let (overall, h) = health(&gw, v).await;
    assert_eq!(h["breaker"], "open", "{h}");
    assert_eq!(h["breaker_open_until"], "2026-03-01T10:00:30Z", "{h}");
    assert_eq!(overall, "degraded", "{h}");

    // Open: every call fails fast and the upstream sees none.
    for _ in 0..3 {
        let (status, r) = create(&gw, v, "BRK-TRIAL").await;
        assert_eq!(status, 502, "{r}");
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(r["error"]["kind"], "upstream_unavailable", "{r}");
        assert_eq!(r["error"]["retry_at"], "2026-03-01T10:00:30Z", "{r}");
        assert_eq!(r["error"]["retry_after_secs"], 30, "{r}");
        assert!(r["error"].get("http_status").is_none(), "{r}");
        assert!(
            message(&r).contains(v.display()) && message(&r).contains("2026-03-01T10:00:30Z"),
            "{r}"
        );
        assert_eq!(r["attempts"], 0, "{r}");
    }
    assert_eq!(
        received(&server).await,
        3,
        "calls reached the upstream while the breaker was open"
    );

    clock.advance(Duration::from_secs(30));
    let (_, h) = health(&gw, v).await;
    assert_eq!(h["breaker"], "half_open", "{h}");
    assert!(h.get("breaker_open_until").is_none(), "{h}");

    let (_, r) = create(&gw, v, "BRK-TRIAL").await;
    assert_eq!(r["attempts"], 1, "{r}");
    assert_eq!(received(&server).await, 4);
    if trial_fails {
        assert_eq!(r["error"]["kind"], "upstream_error", "{r}");
        let (_, h) = health(&gw, v).await;
        assert_eq!(h["breaker"], "open", "a failed trial re-opens the breaker: {h}");
        assert_eq!(h["breaker_open_until"], "2026-03-01T10:01:00Z", "{h}");
        let (_, r) = create(&gw, v, "BRK-BACK").await;
        assert_eq!(r["error"]["kind"], "upstream_unavailable", "{r}");
        assert_eq!(received(&server).await, 4);

        clock.advance(Duration::from_secs(30));
        let (status, r) = create(&gw, v, "BRK-BACK").await;
        assert_eq!(status, 201, "{r}");
        assert_eq!(r["vendor_id"], v.vendor_id("BRK-BACK"), "{r}");
        assert_eq!(received(&server).await, 5);
    } else {
        assert_eq!(r["status"], "created", "{r}");
        assert_eq!(r["vendor_id"], v.vendor_id("BRK-TRIAL"), "{r}");
    }
    let (overall, h) = health(&gw, v).await;
    assert_eq!(h["breaker"], "closed", "{h}");
    assert!(h.get("breaker_open_until").is_none(), "{h}");
    assert_eq!(overall, "ok", "{h}");
}

#[tokio::test]
async fn loop_breaker_opens_fails_fast_and_a_trial_closes_it() {
    breaker_opens_and_closes(Vendor::Loop, false).await;
}

#[tokio::test]
async fn partnero_breaker_reopens_when_its_trial_fails() {
    breaker_opens_and_closes(Vendor::Partnero, true).await;
}

#[tokio::test]
async fn loop_breaker_reopens_when_its_trial_fails() {
    breaker_opens_and_closes(Vendor::Loop, true).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Waiting for the limiter, and one sick upstream beside a healthy one
// ---------------------------------------------------------------------------------------------

/// At one call a second, a second create right after the first would wait about a second for the
/// limiter; with limiter_wait_ms = 100 it is answered `throttled` at once instead, with no call.
async fn limiter_wait_is_bounded(v: Vendor) {
    let server = common::strict_server().await;
    v.spring_create("LIM-1")
        .respond_with(v.created_one("LIM-1"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway(
        v,
        &server.uri(),
        &format!("rate_limit = {{ per_second = 1, burst = 1 }}\nlimiter_wait_ms = 100\n{FAST_RETRY}"),
    )
    .await;

    let (status, r) = create(&gw, v, "LIM-1").await;
    assert_eq!(status, 201, "{r}");
    let started = Instant::now();
    let (status, r) = create(&gw, v, "LIM-2").await;
    let took = started.elapsed();
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["kind"], "rate_limited", "{r}");
    assert!(r["error"].get("http_status").is_none(), "{r}");
    assert!(message(&r).contains("100 ms (limiter_wait_ms)"), "{r}");
    assert_eq!(r["attempts"], 0, "{r}");
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_millis(600),
        "waited {took:?} for the limiter"
    );
    assert_eq!(received(&server).await, 1);
}

#[tokio::test]
async fn loop_limiter_wait_is_bounded() {
    limiter_wait_is_bounded(Vendor::Loop).await;
}

#[tokio::test]
async fn partnero_limiter_wait_is_bounded() {
    limiter_wait_is_bounded(Vendor::Partnero).await;
}

/// `hanging` answers after 10 s, beyond its 300 ms timeout; the other target's result does not
/// wait for more than that timeout.
async fn a_hanging_upstream_does_not_delay_the_other(hanging: Vendor) {
    let healthy = match hanging {
        Vendor::Loop => Vendor::Partnero,
        _ => Vendor::Loop,
    };
    let hanging_srv = common::strict_server().await;
    let healthy_srv = common::strict_server().await;
    hanging
        .spring_create("BOTH")
        .respond_with(hanging.created_one("BOTH").set_delay(Duration::from_secs(10)))
        .expect(1)
        .mount(&hanging_srv)
        .await;
    healthy
        .spring_create("BOTH")
        .respond_with(healthy.created_one("BOTH"))
        .expect(1)
        .mount(&healthy_srv)
        .await;
    let config = format!(
        "{}\n{}",
        hanging.config(&hanging_srv.uri(), &format!("timeout_ms = 300\n{FAST_RETRY}")),
        healthy.config(&healthy_srv.uri(), FAST_RETRY)
    );
    let env = [hanging.env()[0], healthy.env()[0]];
    let gw = common::start(&config, &[("spring", common::SPRING_LOOP_PARTNERO)], &env).await;

    let started = Instant::now();
    let (status, body) = gw
        .create(&json!({
            "code": "BOTH", "campaign": "spring", "discount": { "percent_off": 20 },
            "targets": [hanging.name(), healthy.name()]
        }))
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "the answer took {took:?}");
    assert_eq!(status, 207, "{body}");
    let ok = common::result(&body, healthy.name());
    assert_eq!(ok["status"], "created", "{body}");
    assert_eq!(ok["vendor_id"], healthy.vendor_id("BOTH"), "{body}");
    let late = common::result(&body, hanging.name());
    assert_eq!(late["status"], "failed", "{body}");
    assert_eq!(late["error"]["kind"], "timeout", "{body}");
    assert_eq!(late["attempts"], 1, "{body}");
    assert_eq!(received(&hanging_srv).await, 1);
    assert_eq!(received(&healthy_srv).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_loop_does_not_delay_partnero() {
    a_hanging_upstream_does_not_delay_the_other(Vendor::Loop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_partnero_does_not_delay_loop() {
    a_hanging_upstream_does_not_delay_the_other(Vendor::Partnero).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Configuration
// ---------------------------------------------------------------------------------------------

/// Each resilience setting is checked at start-up, and the error names its key.
#[test]
fn bad_resilience_settings_stop_start_up_naming_the_key() {
    let cases = [
        (
            "connect_timeout_ms = 0",
            "upstreams.loop.connect_timeout_ms: must be at least 1",
        ),
        (
            "limiter_wait_ms = 0",
            "upstreams.loop.limiter_wait_ms: must be at least 1",
        ),
        (
            "max_response_bytes = 0",
            "upstreams.loop.max_response_bytes: must be at least 1",
        ),
        (
            "breaker = { failures = 0 }",
            "upstreams.loop.breaker.failures: must be at least 1",
        ),
        (
            "breaker = { cool_down_ms = 0 }",
            "upstreams.loop.breaker.cool_down_ms: must be at least 1",
        ),
        ("breaker = { failure = 3 }", "upstreams.loop.breaker"),
        (
            "retry = { base_delay_ms = 500, max_delay_ms = 100 }",
            "upstreams.loop.retry.max_delay_ms: must be at least retry.base_delay_ms (500)",
        ),
        ("retry = { unconfirmed = \"yes\" }", "upstreams.loop.retry.unconfirmed"),
    ];
    for (extra, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = common::write_files(dir.path(), &Vendor::Loop.config("http://127.0.0.1:9", extra), &[]);
        let err = match promo_gateway::app_from_file(&path, &|_: &str| None) {
            Ok(_) => panic!("`{extra}` was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "`{extra}`: {err}");
    }
}

#[test]
fn resilience_defaults() {
    let config = promo_gateway::Config::parse(
        r#"
[upstreams.loop]
kind = "loop"
base_url = "https://payments.platform.loop.health"
auth = { scheme = "bearer", token_env = "LOOP_API_TOKEN" }
rate_limit = { per_second = 10, burst = 10 }
"#,
    )
    .unwrap();
    let u = &config.upstreams["loop"];
    assert_eq!(
        (
            u.connect_timeout_ms,
            u.timeout_ms,
            u.limiter_wait_ms,
            u.max_response_bytes,
            u.max_in_flight
        ),
        (2000, 10_000, 5000, 1_048_576, 16)
    );
    assert_eq!(
        (
            u.retry.max_attempts,
            u.retry.base_delay_ms,
            u.retry.max_delay_ms,
            u.retry.max_wait_ms,
            u.retry.unconfirmed
        ),
        (3, 200, 5000, 30_000, false)
    );
    assert_eq!((u.breaker.failures, u.breaker.cool_down_ms), (5, 30_000));
}

/// A Retry-After beyond any sense (22 digits of seconds is the year 262142; an HTTP date in the
/// year 9999) pauses the upstream for at most an hour (`MAX_PAUSE`): the result says when it is
/// back, `/health` shows the pause and is `degraded` while it lasts, and an hour later calls go
/// through again.
async fn endless_retry_after_is_cut_to_an_hour(v: Vendor, retry_after: &str) {
    let clock = ManualClock::new(t0());
    let server = common::strict_server().await;
    v.spring_create("ENDLESS-1")
        .respond_with(throttled_429(retry_after))
        .expect(1)
        .mount(&server)
        .await;
    v.spring_create("ENDLESS-2")
        .respond_with(v.created_one("ENDLESS-2"))
        .expect(1)
        .mount(&server)
        .await;
    let gw = gateway_on(
        v,
        &server.uri(),
        "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 50, max_wait_ms = 10000 }",
        &clock,
    )
    .await;

    let (status, r) = create(&gw, v, "ENDLESS-1").await;
    assert_eq!(status, 502, "{r}");
    assert_eq!(r["status"], "throttled", "{r}");
    assert_eq!(r["error"]["retry_after_secs"], 3600, "{r}");
    assert_eq!(r["error"]["retry_at"], "2026-03-01T11:00:00Z", "{r}");
    let (overall, h) = health(&gw, v).await;
    assert_eq!(h["paused_until"], "2026-03-01T11:00:00Z", "{h}");
    assert_eq!(h["pause_capped"], true, "{h}");
    assert_eq!(overall, "degraded", "a pause cut to the maximum is a fault: {h}");

    clock.advance(Duration::from_secs(3600));
    let (overall, h) = health(&gw, v).await;
    assert!(
        h.get("paused_until").is_none() && h.get("pause_capped").is_none(),
        "{h}"
    );
    assert_eq!(overall, "ok", "{h}");
    let (status, r) = create(&gw, v, "ENDLESS-2").await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn loop_endless_retry_after_seconds_is_cut_to_an_hour() {
    endless_retry_after_is_cut_to_an_hour(Vendor::Loop, "9999999999999999999999").await;
}

#[tokio::test]
async fn partnero_endless_retry_after_date_is_cut_to_an_hour() {
    endless_retry_after_is_cut_to_an_hour(Vendor::Partnero, "Fri, 31 Dec 9999 23:59:59 GMT").await;
}
