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
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use promo_adapters::adapter::translate;
use promo_adapters::vendors::for_kind;
use promo_adapters::{Outcome, VendorKind, VendorResponse};

#[allow(dead_code)] // the token answer is the fast upstream's, not an adapter's
#[path = "../../benches/support/vendors.rs"]
mod vendors;

#[allow(dead_code)] // the golden tests' fixture; the benchmarks use part of it
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

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

fn translation(c: &mut Criterion) {
    let request = fixtures::parse(&fixtures::full_request());
    let campaign = fixtures::campaign();
    let code = &request.promo;
    let adapters: Vec<_> = VendorKind::ALL.into_iter().map(|k| (k, for_kind(k))).collect();
    let context = |kind: VendorKind| fixtures::context(kind, &campaign);
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
        build.bench_function(fixtures::upstream_name(*kind), |b| {
            b.iter(|| translate(adapter.as_ref(), black_box(code), request.on_unsupported, None, &ctx).unwrap())
        });
    }
    build.finish();

    let mut parse = c.benchmark_group("parse");
    for (kind, adapter) in &adapters {
        let answer = response(*kind);
        parse.bench_function(fixtures::upstream_name(*kind), |b| {
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
