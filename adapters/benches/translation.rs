//! Translation benchmarks (issue 7, item 5), with criterion: for each of the six vendors, the
//! full translation of one fully specified code (policy check, build, as the engine calls it via
//! `translate`) and the parsing of the vendor's documented success answer. The golden code and
//! mapping are those of tests/golden.rs (mappings/example.toml, `on_unsupported: skip_field`).
//! A baseline in the same group, `serde_json::to_value` of the unified code, puts the figures
//! in proportion; bytes allocated per call are counted exactly and printed first.
//!
//! `cargo bench -p promo-adapters` (about 40 s); `cargo bench -p promo-adapters -- parse/loop`
//! runs one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use promo_adapters::adapter::translate;
use promo_adapters::mapping::Campaign;
use promo_adapters::model::{validate, ValidationContext};
use promo_adapters::money::Currency;
use promo_adapters::vendors::for_kind;
use promo_adapters::{BuildContext, CreateRequest, Outcome, VendorKind, VendorResponse};
use serde_json::json;

#[allow(dead_code)] // the token answer is the fast upstream's, not an adapter's
#[path = "../../benches/support/vendors.rs"]
mod vendors;

const EXAMPLE: &str = include_str!("../../mappings/example.toml");
const NETWORK_ID: &str = "9b2f4c1e-6a3d-4e8f-b7c5-1d2e3f4a5b6c";

/// Counts bytes allocated: the same work allocates the same bytes however busy the machine.
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

fn allocated(f: impl FnOnce()) -> u64 {
    let before = ALLOCATED.load(Ordering::Relaxed);
    f();
    ALLOCATED.load(Ordering::Relaxed) - before
}

/// Upstream names as mappings/example.toml keys them.
fn upstream_name(kind: VendorKind) -> &'static str {
    match kind {
        VendorKind::Spacebring => "spacebring",
        VendorKind::Partnero => "partnero",
        VendorKind::Moltin => "moltin",
        VendorKind::LimioV2 => "limio-v2",
        VendorKind::LimioV3 => "limio-v3",
        VendorKind::Loop => "loop",
    }
}

/// The golden code of tests/golden.rs: every unified field set but `duration`.
fn golden_request() -> CreateRequest {
    let body = json!({
        "code": "SPRING-20",
        "campaign": "example",
        "discount": { "percent_off": 20 },
        "active": false,
        "starts_at": "2026-03-01T09:00:00Z",
        "expires_at": "2026-04-01T12:00:00Z",
        "max_redemptions": 500,
        "first_time_only": true,
        "minimum_order": { "amount": 2550, "currency": "USD" },
        "customer": { "id": "cus_123", "name": "Ada Lovelace" },
        "partner": { "id": "p_9", "name": "Acme Affiliates" },
        "description": "Spring sale",
        "metadata": { "source": "crm" },
        "on_unsupported": "skip_field"
    });
    let upstreams: BTreeSet<String> = VendorKind::ALL.iter().map(|k| upstream_name(*k).to_owned()).collect();
    let campaigns: BTreeSet<String> = ["example".to_owned()].into();
    validate(
        &body,
        &ValidationContext {
            upstreams: &upstreams,
            campaigns: &campaigns,
        },
    )
    .expect("the golden request is valid")
}

fn translation(c: &mut Criterion) {
    let request = golden_request();
    let campaign: Campaign = toml::from_str(EXAMPLE).expect("mappings/example.toml parses");
    let code = &request.promo;
    let adapters: Vec<_> = VendorKind::ALL.into_iter().map(|k| (k, for_kind(k))).collect();
    let usd = Currency::parse("USD").expect("USD is a currency");
    let context = |kind: VendorKind| BuildContext {
        upstream: upstream_name(kind),
        mapping: campaign.upstreams.get(upstream_name(kind)),
        timezone: chrono_tz::Tz::UTC,
        network_id: (kind == VendorKind::Spacebring).then_some(NETWORK_ID),
        // The golden amounts are in USD: declare the Loop account's and Partnero program's currency.
        currency: matches!(kind, VendorKind::Loop | VendorKind::Partnero).then_some(usd),
    };
    let response = |kind: VendorKind| {
        let success = vendors::success(kind);
        VendorResponse {
            status: success.status,
            retry_after: None,
            body: success.body.as_bytes(),
        }
    };

    // Every benchmarked call does what it should, and what it allocates.
    println!("bytes allocated per call (exact):\n");
    println!("| vendor | build (translate) | parse |\n|---|---|---|");
    println!(
        "| baseline: serde_json::to_value of the unified code | {} | |",
        allocated(|| {
            black_box(serde_json::to_value(code).unwrap());
        })
    );
    for (kind, adapter) in &adapters {
        let ctx = context(*kind);
        let build = allocated(|| {
            translate(adapter.as_ref(), code, request.on_unsupported, None, &ctx)
                .unwrap_or_else(|e| panic!("{kind} builds: {e}"));
        });
        let answer = response(*kind);
        let parse = allocated(|| {
            let outcome = adapter.parse(code, &answer);
            assert!(matches!(outcome, Outcome::Created { .. }), "{kind}: {outcome:?}");
        });
        println!("| {kind} | {build} | {parse} |");
    }
    println!();

    let mut build = c.benchmark_group("build");
    build.bench_function("baseline_unified_to_value", |b| {
        b.iter(|| serde_json::to_value(black_box(code)).unwrap())
    });
    for (kind, adapter) in &adapters {
        let ctx = context(*kind);
        build.bench_function(upstream_name(*kind), |b| {
            b.iter(|| translate(adapter.as_ref(), black_box(code), request.on_unsupported, None, &ctx).unwrap())
        });
    }
    build.finish();

    let mut parse = c.benchmark_group("parse");
    for (kind, adapter) in &adapters {
        let answer = response(*kind);
        parse.bench_function(upstream_name(*kind), |b| {
            b.iter(|| adapter.parse(code, black_box(&answer)))
        });
    }
    parse.finish();
}

criterion_group! {
    name = benches;
    // Short windows: 13 benchmarks in about 40 s on a 2-core machine, stable to a few percent.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = translation
}
criterion_main!(benches);
