//! Benchmarks, reported as ratios of two things measured side by side in one run (the machines
//! are shared and noisy, so absolute figures mean little). Run with
//! `cargo bench --bench gateway`; `BENCH_ROUNDS` and `BENCH_OPS` scale it.
//!
//! 1. Translation: each vendor's full translation of one fully-specified code (policy check,
//!    build, serialization) against serializing the unified code itself with serde_json.
//! 2. Gateway overhead: a create through the gateway to one wiremock vendor against the same
//!    POST sent straight to that vendor, and a create fanned out to six vendors against one.
//!
//! Rounds interleave the two sides so that drift in machine load hits both alike; the figure is
//! the ratio of the medians.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono_tz::Tz;
use promo_adapters::adapter::translate;
use promo_adapters::mapping::Campaign;
use promo_adapters::model::{validate, ValidationContext};
use promo_adapters::{BuildContext, OnUnsupported, VendorKind};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Counts bytes allocated, so memory is compared as exactly as instructions would be: the same
/// work allocates the same bytes however busy the machine is.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated by one call of `f`.
fn allocated(mut f: impl FnMut()) -> u64 {
    let before = ALLOCATED.load(Ordering::Relaxed);
    f();
    ALLOCATED.load(Ordering::Relaxed) - before
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Times `ops` calls of each side per round, alternating sides, and returns per-op medians.
fn side_by_side(rounds: usize, ops: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let time = |f: &mut dyn FnMut()| {
            let start = Instant::now();
            for _ in 0..ops {
                f();
            }
            start.elapsed() / ops as u32
        };
        // Alternate which side goes first so neither always runs on a warmer cache.
        if round % 2 == 0 {
            ta.push(time(&mut a));
            tb.push(time(&mut b));
        } else {
            tb.push(time(&mut b));
            ta.push(time(&mut a));
        }
    }
    (median(ta), median(tb))
}

fn full_code() -> Value {
    json!({
        "code": "SPRING-20", "campaign": "example", "discount": { "percent_off": 20 },
        "active": true, "starts_at": "2026-03-01T09:30:00Z", "expires_at": "2026-04-01T12:00:00Z",
        "max_redemptions": 500, "first_time_only": true,
        "minimum_order": { "amount": 2550, "currency": "USD" },
        "customer": { "id": "cus_123", "name": "Ada Lovelace" },
        "partner": { "id": "p_9", "name": "Acme Affiliates" },
        "description": "Spring sale", "metadata": { "source": "crm" },
        "on_unsupported": "skip_field"
    })
}

fn translation_bench(rounds: usize) {
    let campaign: Campaign = toml::from_str(include_str!("../mappings/example.toml")).unwrap();
    let names = ["spacebring", "partnero", "moltin", "limio-v2", "limio-v3", "loop"];
    let upstreams = names.iter().map(|s| s.to_string()).collect();
    let campaigns = ["example".to_string()].into_iter().collect();
    let request = validate(
        &full_code(),
        &ValidationContext {
            upstreams: &upstreams,
            campaigns: &campaigns,
        },
    )
    .unwrap();
    println!("## Translation, per code (ratios to serde_json::to_value of the unified code)\n");
    println!("| vendor | time | bytes allocated |\n|---|---|---|");
    for (kind, name) in
        VendorKind::ALL
            .into_iter()
            .zip(["spacebring", "partnero", "moltin", "limio-v2", "limio-v3", "loop"])
    {
        let adapter = promo_adapters::vendors::for_kind(kind);
        let ctx = BuildContext {
            upstream: name,
            mapping: campaign.upstreams.get(name),
            timezone: Tz::UTC,
            network_id: None,
        };
        let mut vendor = || {
            black_box(translate(adapter.as_ref(), &request.promo, OnUnsupported::SkipField, None, &ctx).unwrap());
        };
        let mut baseline = || {
            black_box(serde_json::to_value(&request.promo).unwrap());
        };
        let bytes = allocated(&mut vendor) as f64 / allocated(&mut baseline) as f64;
        let (t, base) = side_by_side(rounds, 2_000, vendor, baseline);
        println!("| {kind} | {:.2} | {bytes:.2} |", t.as_secs_f64() / base.as_secs_f64());
    }
    println!();
}

async fn gateway_bench(rounds: usize, ops: usize) {
    let mut servers = Vec::new();
    for _ in 0..6 {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": "promo_1", "code": "X", "active": true, "percent_off": 20, "amount_off": null,
                "currency": null, "expires_at": null, "max_redemptions": null, "times_redeemed": 0,
                "created_at": "2026-01-01T00:00:00Z"
            })))
            .mount(&s)
            .await;
        servers.push(s);
    }
    // Six Loop upstreams: the same vendor six times isolates the engine's fan-out cost.
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[server]\n");
    for (i, s) in servers.iter().enumerate() {
        config.push_str(&format!(
            "[upstreams.loop{i}]\nkind = \"loop\"\nbase_url = \"{}\"\nauth = {{ scheme = \"bearer\", token_env = \"T\" }}\nrate_limit = {{ per_second = 1000000, burst = 1000000 }}\nmax_in_flight = 1024\n",
            s.uri()
        ));
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let (_, router) = promo_gateway::app_from_file(&path, &|_: &str| Some("bench-token".into())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}/v1/promo-codes", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let http = reqwest::Client::new();
    let one = json!({ "code": "BENCH-1", "discount": { "percent_off": 20 }, "targets": ["loop0"] }).to_string();
    let six = json!({ "code": "BENCH-6", "discount": { "percent_off": 20 },
        "targets": ["loop0", "loop1", "loop2", "loop3", "loop4", "loop5"] })
    .to_string();
    let direct_url = format!("{}/v1/admin/promos", servers[0].uri());
    let direct_body = json!({ "code": "BENCH-1", "percent_off": 20 }).to_string();

    let time = |url: String, body: String| {
        let http = http.clone();
        async move {
            let start = Instant::now();
            for _ in 0..ops {
                let r = http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("Authorization", "Bearer bench-token")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                black_box(r.bytes().await.unwrap());
            }
            start.elapsed() / ops as u32
        }
    };
    // The ledger's part of a create: the record made before the call and the outcome after it.
    let ledger = promo_gateway::ledger::Ledger::open(&dir.path().join("bench-ledger.db")).unwrap();
    let result: promo_gateway::engine::TargetResult = serde_json::from_value(json!({
        "upstream": "loop0", "vendor": "loop", "status": "created", "vendor_id": "promo_1",
        "warnings": [], "attempts": 1
    }))
    .unwrap();
    let body: Value = serde_json::from_str(&one).unwrap();
    let ledger_writes = || {
        let (ledger, result, body) = (ledger.clone(), result.clone(), body.clone());
        async move {
            let start = Instant::now();
            for _ in 0..ops {
                let begun = ledger
                    .begin(None, "BENCH-1".into(), body.clone(), vec![("loop0".into(), None)])
                    .await
                    .unwrap();
                let promo_gateway::ledger::Begin::New(id) = begun else {
                    unreachable!()
                };
                ledger.record(id, &result).await.unwrap();
            }
            start.elapsed() / ops as u32
        }
    };

    let (mut via, mut direct, mut fan, mut writes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(time(direct_url.clone(), direct_body.clone()).await);
        via.push(time(gateway.clone(), one.clone()).await);
        fan.push(time(gateway.clone(), six.clone()).await);
        writes.push(ledger_writes().await);
    }
    let (via, direct, fan, writes) = (median(via), median(direct), median(fan), median(writes));
    println!("## Gateway, per create (sequential requests over loopback, wiremock vendors)\n");
    println!("| comparison | ratio |\n|---|---|");
    println!(
        "| via the gateway to 1 vendor / straight to that vendor | {:.2} |",
        via.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "| the ledger's writes for one create / straight to that vendor | {:.2} |",
        writes.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "| via the gateway to 6 vendors / via the gateway to 1 | {:.2} |",
        fan.as_secs_f64() / via.as_secs_f64()
    );
}

fn main() {
    // `cargo test --all-targets` runs benches with `--bench` absent: do a quick smoke run then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = env_usize("BENCH_ROUNDS", if quick { 1 } else { 15 });
    let ops = env_usize("BENCH_OPS", if quick { 5 } else { 200 });
    translation_bench(rounds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(gateway_bench(rounds, ops));
}
