//! The gateway benchmarks of issue 7, each against a baseline measured in the same run with
//! rounds interleaved (A B, B A, ...), so that a noisy shared machine moves both sides alike:
//!
//! 1. Overhead: `POST /v1/promo-codes` through the real gateway binary to one fast upstream
//!    (Loop, answering at once) against the same load client posting Loop's own request to that
//!    upstream directly: added p50/p99 latency on one connection, and the throughput ratio on
//!    several.
//! 2. Fan-out: one code to the six upstreams of mappings/example.toml, each answering after
//!    50 ms, against 50 ms (all in parallel) and 300 ms (one after another), with a direct call
//!    to one such upstream as the measured baseline.
//!
//! `cargo bench --bench gateway` runs both (about a minute and a half), prints the tables and
//! writes them into README.md and BENCHMARKS.md between `<!-- bench:start -->` and
//! `<!-- bench:end -->` (`BENCH_WRITE=0` skips that). `BENCH_ROUNDS`, `BENCH_SECONDS` (per
//! round), `BENCH_CONNECTIONS` and `BENCH_FANOUT` (creates) scale it. Without `--bench` (as
//! `cargo test --all-targets` runs it) it does a short smoke run and writes nothing.
//!
//! The sync-job benchmarks (items 3 and 4) are added as further sections the same way: an async
//! function that starts `FastUpstream`s and a `GatewayProcess`, drives it, and returns a
//! [`Section`] with its table and its verdicts against the targets.

mod support;

use std::future::Future;
use std::time::Duration;

use promo_adapters::VendorKind;
use serde_json::json;
use support::gateway::{upstream_name, upstream_table, GatewayProcess, Quota, TOKEN};
use support::load::{self, ms, Call, Run, Stop, Summary};
use support::upstream::{FastUpstream, Route};

const EXAMPLE_MAPPING: &str = include_str!("../mappings/example.toml");

/// The fan-out upstreams' delay.
const DELAY: Duration = Duration::from_millis(50);

struct Settings {
    quick: bool,
    /// Rounds per side in each interleaved comparison.
    rounds: usize,
    /// Length of one overhead round.
    round_time: Duration,
    /// Concurrent connections for the throughput comparison.
    connections: usize,
    /// Sequential creates per side in the fan-out comparison.
    fanout: usize,
}

impl Settings {
    fn from_env() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --all-targets` runs the binary without it.
        let quick = !std::env::args().any(|a| a == "--bench");
        let var = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(default)
        };
        let rounds = var("BENCH_ROUNDS", if quick { 2.0 } else { 6.0 }).max(1.0) as usize;
        Settings {
            quick,
            rounds,
            round_time: Duration::from_secs_f64(var("BENCH_SECONDS", if quick { 0.2 } else { 2.0 })),
            connections: var("BENCH_CONNECTIONS", 16.0).max(1.0) as usize,
            fanout: (var("BENCH_FANOUT", if quick { 6.0 } else { 200.0 }) as usize).max(1),
        }
    }
}

/// One benchmark's published part: its table and its verdicts against issue 7's targets.
struct Section {
    table: String,
    verdicts: Vec<Verdict>,
}

struct Verdict {
    target: &'static str,
    measured: String,
    met: bool,
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let sections = vec![
        runtime.block_on(overhead(&settings)),
        runtime.block_on(fan_out(&settings)),
    ];
    let machine = support::machine();
    let full = publish_full(&sections, &machine);
    println!("{full}");
    if settings.quick || std::env::var("BENCH_WRITE").as_deref() == Ok("0") {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    support::write_between_markers(&root.join("BENCHMARKS.md"), &full);
    support::write_between_markers(&root.join("README.md"), &publish_summary(&sections, &machine));
}

/// Every table and the verdicts, for BENCHMARKS.md.
fn publish_full(sections: &[Section], machine: &str) -> String {
    let mut out = format!("Measured on {machine}.\n\n");
    for s in sections {
        out.push_str(&s.table);
        out.push('\n');
    }
    out.push_str(&verdict_table(sections));
    out
}

/// The verdicts and where the rest is, for the README.
fn publish_summary(sections: &[Section], machine: &str) -> String {
    format!(
        "`cargo bench --bench gateway` measures the gateway's overhead and fan-out against baselines \
         taken in the same run; `cargo bench -p promo-adapters` times each adapter's translation \
         (criterion). [BENCHMARKS.md](BENCHMARKS.md) has every figure, the method and the profile. \
         One run on {machine}:\n\n{}",
        verdict_table(sections)
    )
}

fn verdict_table(sections: &[Section]) -> String {
    let mut out = String::from("| issue 7 target | measured | met |\n|---|---|---|\n");
    for v in sections.iter().flat_map(|s| &s.verdicts) {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            v.target,
            v.measured,
            if v.met { "yes" } else { "**no**" }
        ));
    }
    out.push_str(
        "| rate-limit fidelity ≥ 95% of quota, no 1 s window above quota + burst | comes with sync jobs (issue 5) | — |\n\
         | 100,000-code sync job under 100 MB peak RSS | comes with sync jobs (issue 5) | — |\n",
    );
    out
}

/// Runs `drive` while adding the CPU time this process and the gateway use to `cpu`.
async fn with_cpu(gateway: &GatewayProcess, cpu: &mut (Duration, Duration), drive: impl Future<Output = Run>) -> Run {
    let (own, gw) = (support::cpu_time("/proc/self/stat"), gateway.cpu_time());
    let run = drive.await;
    if let (Some(a), Some(b), Some(a2), Some(b2)) = (own, gw, support::cpu_time("/proc/self/stat"), gateway.cpu_time())
    {
        cpu.0 += a2.saturating_sub(a);
        cpu.1 += b2.saturating_sub(b);
    }
    run
}

fn micros_per(total: Duration, requests: usize) -> f64 {
    total.as_secs_f64() * 1e6 / requests.max(1) as f64
}

/// Item 1: the gateway's own cost on the path of one create to one upstream.
async fn overhead(s: &Settings) -> Section {
    let upstream = FastUpstream::start(Duration::ZERO);
    let table = upstream_table("loop", VendorKind::Loop, &upstream.base_url(), Quota::UNLIMITED);
    let gateway = tokio::task::block_in_place(|| GatewayProcess::start(&table, &[]));
    let direct = Call::json(
        format!("{}/v1/admin/promos", upstream.base_url()),
        Some(TOKEN),
        201,
        |code| json!({ "code": code, "percent_off": 20 }).to_string(),
    );
    let via = Call::json(format!("{}/v1/promo-codes", gateway.base_url()), None, 201, |code| {
        json!({ "code": code, "discount": { "percent_off": 20 }, "targets": ["loop"] }).to_string()
    });
    let one = load::client(1);
    let many = load::client(s.connections);

    // The gateway answers as documented before anything is timed.
    let (status, body) = load::post_json(
        &one,
        &via.url,
        &json!({ "code": load::unique_code(), "discount": { "percent_off": 20 }, "targets": ["loop"] }),
    )
    .await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (201, &json!("created")),
        "{body}"
    );
    // Warm-up: connections open, caches and the ledger's file warm on both sides.
    let warm = Stop::Count(if s.quick { 20 } else { 500 });
    for call in [&direct, &via] {
        load::drive(&one, call, 1, warm).await;
        load::drive(&many, call, s.connections, warm).await;
    }

    let stop = Stop::After(s.round_time);
    let (seq_direct, seq_via) = load::interleave(
        s.rounds,
        async || load::drive(&one, &direct, 1, stop).await,
        async || load::drive(&one, &via, 1, stop).await,
    )
    .await;
    // (this process, the gateway process) CPU time during each side's runs.
    let (mut tcpu_direct, mut tcpu_via) = ((Duration::ZERO, Duration::ZERO), (Duration::ZERO, Duration::ZERO));
    let (par_direct, par_via) = load::interleave(
        s.rounds,
        async || {
            with_cpu(
                &gateway,
                &mut tcpu_direct,
                load::drive(&many, &direct, s.connections, stop),
            )
            .await
        },
        async || with_cpu(&gateway, &mut tcpu_via, load::drive(&many, &via, s.connections, stop)).await,
    )
    .await;
    let summaries = [
        (Summary::of(&seq_direct), &seq_direct, "direct, 1 connection"),
        (Summary::of(&seq_via), &seq_via, "gateway, 1 connection"),
        (Summary::of(&par_direct), &par_direct, "direct, many connections"),
        (Summary::of(&par_via), &par_via, "gateway, many connections"),
    ];
    for (summary, runs, what) in &summaries {
        summary.assert_clean(runs, what);
    }
    let [sd, sv, pd, pv] = summaries.map(|(summary, _, _)| summary);
    // Every create through the gateway reached the upstream exactly once.
    let sent_direct = upstream.calls(Route::Create(VendorKind::Loop));
    assert!(sent_direct > 0 && upstream.calls(Route::Unknown) == 0);

    let added_p50 = ms(sv.p50) - ms(sd.p50);
    let added_p99 = ms(sv.p99) - ms(sd.p99);
    let c = s.connections;
    let mut t = String::from(
        "### 1. Overhead: one create to one upstream (Loop, answering at once)\n\n\
         | `POST`, same load client | straight to the upstream | through the gateway | the gateway adds |\n\
         |---|---|---|---|\n",
    );
    t.push_str(&format!(
        "| 1 connection, p50 latency | {:.3} ms | {:.3} ms | **{:+.3} ms** |\n",
        ms(sd.p50),
        ms(sv.p50),
        added_p50
    ));
    t.push_str(&format!(
        "| 1 connection, p99 latency | {:.3} ms | {:.3} ms | **{:+.3} ms** |\n",
        ms(sd.p99),
        ms(sv.p99),
        added_p99
    ));
    t.push_str(&format!(
        "| 1 connection, requests/s | {:.0} | {:.0} | ×{:.2} |\n",
        sd.per_second,
        sv.per_second,
        sv.per_second / sd.per_second
    ));
    t.push_str(&format!(
        "| {c} connections, requests/s | {:.0} | {:.0} | **×{:.2}** (throughput ratio) |\n",
        pd.per_second,
        pv.per_second,
        pv.per_second / pd.per_second
    ));
    t.push_str(&format!(
        "| {c} connections, p50 / p99 latency | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:+.2} / {:+.2} ms |\n",
        ms(pd.p50),
        ms(pd.p99),
        ms(pv.p50),
        ms(pv.p99),
        ms(pv.p50) - ms(pd.p50),
        ms(pv.p99) - ms(pd.p99)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per request: load client + upstream | {:.0} µs | {:.0} µs | |\n",
        micros_per(tcpu_direct.0, pd.requests),
        micros_per(tcpu_via.0, pv.requests)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per request: gateway process | — | {:.0} µs | |\n",
        micros_per(tcpu_via.1, pv.requests)
    ));
    t.push_str(&format!(
        "\n{} rounds of {:.1} s a side, interleaved; {} + {} requests on 1 connection, {} + {} on {c}; \
         none failed. p50/p99 pool every request of a side.\n",
        s.rounds,
        s.round_time.as_secs_f64(),
        sd.requests,
        sv.requests,
        pd.requests,
        pv.requests
    ));
    Section {
        table: t,
        verdicts: vec![Verdict {
            target: "overhead: added p50 latency under 0.5 ms",
            measured: format!(
                "{added_p50:+.3} ms ({:.3} → {:.3} ms); throughput ×{:.2} on {c} connections",
                ms(sd.p50),
                ms(sv.p50),
                pv.per_second / pd.per_second
            ),
            met: added_p50 < 0.5,
        }],
    }
}

/// Item 2: one code to six targets whose upstreams each take 50 ms.
async fn fan_out(s: &Settings) -> Section {
    let upstreams: Vec<(VendorKind, FastUpstream)> = VendorKind::ALL
        .into_iter()
        .map(|kind| (kind, FastUpstream::start(DELAY)))
        .collect();
    let tables: String = upstreams
        .iter()
        .map(|(kind, u)| upstream_table(upstream_name(*kind), *kind, &u.base_url(), Quota::UNLIMITED))
        .collect();
    let gateway = tokio::task::block_in_place(|| GatewayProcess::start(&tables, &[("example", EXAMPLE_MAPPING)]));
    // The example campaign's default targets are all six upstreams.
    let create = Call::json(format!("{}/v1/promo-codes", gateway.base_url()), None, 201, |code| {
        json!({ "code": code, "campaign": "example", "discount": { "percent_off": 20 } }).to_string()
    });
    let loop_url = upstreams
        .iter()
        .find(|(k, _)| *k == VendorKind::Loop)
        .unwrap()
        .1
        .base_url();
    let direct = Call::json(format!("{loop_url}/v1/admin/promos"), Some(TOKEN), 201, |code| {
        json!({ "code": code, "percent_off": 20 }).to_string()
    });
    let client = load::client(1);

    // Every target is created (Limio's tokens fetched) before anything is timed.
    let (status, body) = load::post_json(
        &client,
        &create.url,
        &json!({ "code": load::unique_code(), "campaign": "example", "discount": { "percent_off": 20 } }),
    )
    .await;
    let results = body["results"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert!(
        status == 201 && results.len() == 6 && results.iter().all(|r| r["status"] == "created"),
        "{status} {body}"
    );
    let warm = Stop::Count(5);
    load::drive(&client, &create, 1, warm).await;
    load::drive(&client, &direct, 1, warm).await;

    let per_round = Stop::Count(s.fanout.div_ceil(s.rounds));
    let (via, straight) = load::interleave(
        s.rounds,
        async || load::drive(&client, &create, 1, per_round).await,
        async || load::drive(&client, &direct, 1, per_round).await,
    )
    .await;
    let (fv, fd) = (Summary::of(&via), Summary::of(&straight));
    fv.assert_clean(&via, "fan-out through the gateway");
    fd.assert_clean(&straight, "one upstream directly");
    // Each upstream took every create (Loop also every direct call), and no token was fetched
    // again after the first.
    let creates = 1 + 5 + fv.requests as u64;
    for (kind, u) in &upstreams {
        let direct_calls = if *kind == VendorKind::Loop {
            5 + fd.requests as u64
        } else {
            0
        };
        assert_eq!(u.calls(Route::Create(*kind)), creates + direct_calls, "{kind}");
        assert!(u.calls(Route::Token) <= 1, "{kind}");
    }

    let delay = ms(DELAY);
    let mut t = String::from(
        "### 2. Fan-out: one code to six upstreams, each answering after 50 ms\n\n\
         | sequential creates, 1 connection | p50 | p99 |\n|---|---|---|\n",
    );
    t.push_str(&format!(
        "| through the gateway to all six (spacebring, partnero, moltin, limio-v2, limio-v3, loop) | {:.2} ms | {:.2} ms |\n",
        ms(fv.p50),
        ms(fv.p99)
    ));
    t.push_str(&format!(
        "| straight to one of those upstreams (the slowest upstream, measured) | {:.2} ms | {:.2} ms |\n",
        ms(fd.p50),
        ms(fd.p99)
    ));
    t.push_str(&format!(
        "| gateway / 50 ms (all six in parallel) | **{:.3}** | {:.3} |\n",
        ms(fv.p50) / delay,
        ms(fv.p99) / delay
    ));
    t.push_str(&format!(
        "| gateway / 300 ms (one after another) | {:.3} | {:.3} |\n",
        ms(fv.p50) / (6.0 * delay),
        ms(fv.p99) / (6.0 * delay)
    ));
    t.push_str(&format!(
        "| gateway / straight to one upstream | {:.3} | {:.3} |\n",
        ms(fv.p50) / ms(fd.p50),
        ms(fv.p99) / ms(fd.p99)
    ));
    t.push_str(&format!(
        "\n{} + {} creates in {} interleaved rounds; none failed; each upstream received every create once.\n",
        fv.requests, fd.requests, s.rounds
    ));
    Section {
        table: t,
        verdicts: vec![Verdict {
            target: "fan-out to six 50 ms upstreams within 10% of the slowest (p50 ≤ 55 ms)",
            measured: format!(
                "p50 {:.2} ms (×{:.3} of 50 ms; serial would be 300 ms), p99 {:.2} ms",
                ms(fv.p50),
                ms(fv.p50) / delay,
                ms(fv.p99)
            ),
            met: ms(fv.p50) <= 1.1 * delay,
        }],
    }
}
