//! The load client: N concurrent tokio tasks, each sending one request after another over its
//! own keep-alive HTTP/1.1 connection (reqwest), for a fixed time or a fixed count, recording
//! every request's latency (send to last body byte). The same client drives the gateway and the
//! upstream directly, so the two are measured alike.
//!
//! Latencies are kept whole and sorted for percentiles: a side here makes about a million
//! requests at most (16 bytes each), so exact percentiles cost less than a histogram crate would.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

/// A client for `connections` concurrent keep-alive connections, never through a proxy.
pub fn client(connections: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections.max(1))
        .build()
        .expect("a reqwest client")
}

/// A fresh code on every call, unique within the process (so within every ledger it meets).
pub fn unique_code() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("BENCH-{:08}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One kind of request the client sends: a POST of the body made from a fresh code.
pub struct Call {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// The status every answer must have; any other is counted as a failure.
    pub expect: u16,
}

impl Call {
    /// A JSON POST to `url`, with `Authorization: Bearer token` if `bearer` is given.
    pub fn json(
        url: String,
        bearer: Option<&str>,
        expect: u16,
        body: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Arc<Call> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(token) = bearer {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
            );
        }
        Arc::new(Call {
            url,
            headers,
            body: Box::new(body),
            expect,
        })
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// No new request starts after this long.
    After(Duration),
    /// This many requests in all, over every connection.
    Count(usize),
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Run {
    /// Every request's latency, in no particular order.
    pub latencies: Vec<Duration>,
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
    /// Answers with another status than expected, or transport errors.
    pub failures: usize,
    pub first_failure: Option<String>,
    /// CPU time this process (load client and in-process upstreams) used during the run.
    pub cpu_self: Duration,
    /// CPU time the watched process (the gateway) used during the run.
    pub cpu_watched: Duration,
}

/// Sends `call` over `connections` concurrent connections until `stop`.
pub async fn drive(client: &reqwest::Client, call: &Arc<Call>, connections: usize, stop: Stop) -> Run {
    let started = Instant::now();
    let issued = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, call, issued) = (client.clone(), call.clone(), issued.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                loop {
                    let more = match stop {
                        Stop::After(d) => started.elapsed() < d,
                        Stop::Count(n) => issued.fetch_add(1, Ordering::Relaxed) < n,
                    };
                    if !more {
                        break;
                    }
                    let body = (call.body)(&unique_code());
                    let sent = Instant::now();
                    let answer = client
                        .post(&call.url)
                        .headers(call.headers.clone())
                        .body(body)
                        .send()
                        .await;
                    let outcome = match answer {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            match r.bytes().await {
                                Ok(_) if status == call.expect => Ok(()),
                                Ok(body) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    run.latencies.push(sent.elapsed());
                    if let Err(e) = outcome {
                        run.failures += 1;
                        run.first_failure.get_or_insert(e);
                    }
                }
                run
            })
        })
        .collect();
    let mut all = Run::default();
    for task in tasks {
        let run = task.await.expect("a load task panicked");
        all.latencies.extend(run.latencies);
        all.failures += run.failures;
        if all.first_failure.is_none() {
            all.first_failure = run.first_failure;
        }
    }
    all.elapsed = started.elapsed();
    all
}

/// One side of a comparison: a call, the client and connections it is sent with, and a
/// process (the gateway) whose CPU time is charged to the side's runs along with this one's.
pub struct Side<'a> {
    pub client: &'a reqwest::Client,
    pub call: &'a Arc<Call>,
    pub connections: usize,
    pub watch: Option<u32>,
}

/// Runs every side `rounds` times, one after another, starting each round one side further
/// (A B C, B C A, C A B, ...), so that drift in the machine's load hits all sides alike.
/// Returns each side's runs, in order.
pub async fn interleave(rounds: usize, sides: &[Side<'_>], stop: Stop) -> Vec<Vec<Run>> {
    let mut runs: Vec<Vec<Run>> = sides.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in 0..sides.len() {
            let at = (round + i) % sides.len();
            let side = &sides[at];
            let own = super::cpu_time("/proc/self/stat");
            let watched = side.watch.and_then(|pid| super::cpu_time(&format!("/proc/{pid}/stat")));
            let mut run = drive(side.client, side.call, side.connections, stop).await;
            if let (Some(before), Some(after)) = (own, super::cpu_time("/proc/self/stat")) {
                run.cpu_self = after.saturating_sub(before);
            }
            let watched_after = side.watch.and_then(|pid| super::cpu_time(&format!("/proc/{pid}/stat")));
            if let (Some(before), Some(after)) = (watched, watched_after) {
                run.cpu_watched = after.saturating_sub(before);
            }
            runs[at].push(run);
        }
    }
    runs
}

/// Latency and throughput of one side over all its runs.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub requests: usize,
    pub failures: usize,
    /// Requests a second over the runs' summed elapsed time.
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// CPU time per request: this process's, and the watched process's.
    pub cpu_self: Duration,
    pub cpu_watched: Duration,
}

impl Summary {
    /// Pools `runs` (their latencies, requests and elapsed times).
    pub fn of(runs: &[Run]) -> Summary {
        let mut latencies: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
        latencies.sort_unstable();
        let elapsed: Duration = runs.iter().map(|r| r.elapsed).sum();
        let per_request = |total: Duration| total / (latencies.len().max(1) as u32);
        Summary {
            cpu_self: per_request(runs.iter().map(|r| r.cpu_self).sum()),
            cpu_watched: per_request(runs.iter().map(|r| r.cpu_watched).sum()),
            requests: latencies.len(),
            failures: runs.iter().map(|r| r.failures).sum(),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
        }
    }

    /// Panics, quoting the first bad answer, if any request failed: a failed request is not a
    /// measurement of the path under test.
    pub fn assert_clean(&self, runs: &[Run], what: &str) {
        if self.failures > 0 {
            let first = runs.iter().find_map(|r| r.first_failure.as_deref()).unwrap_or("");
            panic!(
                "{what}: {} of {} requests failed; the first: {first}",
                self.failures, self.requests
            );
        }
    }
}

/// Nearest-rank percentile of sorted latencies (`q` in 0..=1).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One JSON POST outside a measured run (starting a job, checking an answer's shape):
/// the status and the parsed body (a string if it is not JSON).
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// One GET outside a measured run (polling a job): the status and the parsed body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = client.get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let text = r.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
