//! The gateway benchmarks of issue 7, each against a baseline measured in the same run with
//! rounds interleaved (A B, B A, ...), so that a noisy shared machine moves both sides alike:
//!
//! 1. Overhead: `POST /v1/promo-codes` through the real gateway binary to one fast upstream
//!    (Loop, answering at once) against the same load client posting Loop's own request to that
//!    upstream directly, with a dry run through the gateway alongside to take the difference
//!    apart: added p50/p99 latency on one connection, and the throughput ratio on several.
//! 2. Fan-out: one code to the six upstreams of mappings/example.toml, each answering after
//!    50 ms, against 50 ms (all in parallel) and 300 ms (one after another), with a direct call
//!    to one such upstream as the measured baseline.
//!
//! `cargo bench --bench gateway` runs all four (about three and a half minutes once built), prints the
//! tables and writes them into README.md and BENCHMARKS.md between `<!-- bench:start -->` and
//! `<!-- bench:end -->` (`BENCH_WRITE=0` skips that). `BENCH_ROUNDS`, `BENCH_SECONDS` (per
//! round), `BENCH_CONNECTIONS` and `BENCH_FANOUT` (creates) scale it; the gateway's temp
//! directory, ledger included, follows `TMPDIR`. Without `--bench` (as `cargo test
//! --all-targets` runs it) it does a short smoke run and writes nothing.
//!
//! 3. Rate-limit fidelity: a sync job of 2,000 codes to one upstream limited to 200 a second:
//!    the rate the upstream saw over the configured rate, and the most calls it saw in any
//!    one-second window against the quota plus its burst.
//! 4. Sync at scale: a sync job of 100,000 codes to three upstreams (Loop, Partnero, Moltin)
//!    with quotas too high to wait on, against the same load client making the same calls
//!    straight to those upstreams: codes a second, the gateway's peak RSS, and Moltin's calls
//!    against the codes it received.
//!
//! `BENCH_RATE_CODES` and `BENCH_SCALE_CODES` set the two jobs' sizes; `BENCH_ONLY=4` (a
//! comma-separated list of items) runs some alone and writes nothing.

mod support;

use std::time::Duration;

use promo_adapters::VendorKind;
use serde_json::json;
use support::gateway::{upstream_name, upstream_table, GatewayProcess, Quota, TOKEN};
use support::load::{self, ms, Call, Run, Side, Stop, Summary};
use support::upstream::{FastUpstream, Route};

const EXAMPLE_MAPPING: &str = include_str!("../mappings/example.toml");

/// The fan-out upstreams' delay.
const DELAY: Duration = Duration::from_millis(50);

/// The rate-limit fidelity job's quota: calls a second, and the burst on top (a tenth).
const RATE: u32 = 200;
const BURST: u32 = 20;

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
    /// Codes in the rate-limit fidelity job.
    rate_codes: u64,
    /// Codes in the sync-at-scale job.
    scale_codes: u64,
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
            rate_codes: (var("BENCH_RATE_CODES", if quick { 200.0 } else { 2000.0 }) as u64).max(RATE.into()),
            scale_codes: (var("BENCH_SCALE_CODES", if quick { 2000.0 } else { 100_000.0 }) as u64).max(1),
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
    // `BENCH_ONLY=3,4` runs some items alone (for profiling one); nothing is written then.
    let only: Option<Vec<u8>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').filter_map(|i| i.trim().parse().ok()).collect());
    let wanted = |item: u8| only.as_ref().is_none_or(|o| o.contains(&item));
    let mut sections = Vec::new();
    if wanted(1) {
        sections.push(runtime.block_on(overhead(&settings)));
        sections.push(runtime.block_on(overhead_on_postgres(&settings)));
    }
    if wanted(2) {
        sections.push(runtime.block_on(fan_out(&settings)));
    }
    if wanted(3) {
        sections.push(runtime.block_on(rate_fidelity(&settings)));
    }
    if wanted(4) {
        sections.push(runtime.block_on(sync_at_scale(&settings)));
    }
    let machine = support::machine();
    let full = publish_full(&sections, &machine);
    println!("{full}");
    if settings.quick || only.is_some() || std::env::var("BENCH_WRITE").as_deref() == Ok("0") {
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
        "`cargo bench --bench gateway` measures the gateway's overhead, fan-out, rate-limit fidelity\n\
         and a 100,000-code sync job against baselines taken in the same run (about three and a half\n\
         minutes); `cargo bench -p promo-adapters` times each adapter's translation with criterion.\n\
         [BENCHMARKS.md](BENCHMARKS.md) has every figure, the method, and profiles of where a create's\n\
         and a sync job's time goes. One run on {machine}:\n\n{}",
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
    out
}

/// Drives every call on one connection and on many before anything is measured: connections
/// open, caches and the ledger's file warm on every side.
async fn warm_up(s: &Settings, one: &reqwest::Client, many: &reqwest::Client, calls: &[&std::sync::Arc<Call>]) {
    let warm = Stop::Count(if s.quick { 20 } else { 500 });
    for call in calls {
        load::drive(one, call, 1, warm).await;
        load::drive(many, call, s.connections, warm).await;
    }
}

/// Each side's runs pooled, every request checked to have succeeded.
fn summarize(runs: &[Vec<Run>], names: &[&str], connections: usize) -> Vec<Summary> {
    runs.iter()
        .zip(names)
        .map(|(runs, name)| {
            let summary = Summary::of(runs);
            summary.assert_clean(runs, &format!("{name}, {connections} connection(s)"));
            summary
        })
        .collect()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Item 1 on a PostgreSQL ledger (issue 13): the same create through two gateways, one on its
/// SQLite file and one on a real PostgreSQL server on loopback, interleaved with the direct call
/// in one run; and the database server's own CPU per create, read from its processes. Skipped,
/// and said so, where PostgreSQL is not installed.
async fn overhead_on_postgres(s: &Settings) -> Section {
    let Some(pg) = support::postgres::Postgres::start_or_skip("item 1 on PostgreSQL") else {
        return Section {
            table: "### 1b. The create on a PostgreSQL ledger\n\nSkipped: PostgreSQL is not installed \
                    (scripts/test-servers installs it).\n"
                .into(),
            verdicts: Vec::new(),
        };
    };
    let upstream = FastUpstream::start(Duration::ZERO);
    let table = upstream_table("loop", VendorKind::Loop, &upstream.base_url(), Quota::UNLIMITED);
    let database = pg.database();
    let (sqlite, postgres) = tokio::task::block_in_place(|| {
        (
            GatewayProcess::start(&table, &[]),
            GatewayProcess::start_on(&table, &[], None, Some(&database)),
        )
    });
    let request = |code: &str| json!({ "code": code, "discount": { "percent_off": 20 }, "targets": ["loop"] });
    let direct = Call::json(
        format!("{}/v1/admin/promos", upstream.base_url()),
        Some(TOKEN),
        201,
        |code| json!({ "code": code, "percent_off": 20 }).to_string(),
    );
    let create = |gateway: &GatewayProcess| {
        Call::json(
            format!("{}/v1/promo-codes", gateway.base_url()),
            None,
            201,
            move |code| request(code).to_string(),
        )
    };
    let (on_sqlite, on_postgres) = (create(&sqlite), create(&postgres));
    let one = load::client(1);
    let many = load::client(s.connections);
    for call in [&on_sqlite, &on_postgres] {
        let (status, body) = load::post_json(&one, &call.url, &request(&load::unique_code())).await;
        assert_eq!(
            (status, &body["results"][0]["status"]),
            (201, &json!("created")),
            "{body}"
        );
    }
    warm_up(s, &one, &many, &[&direct, &on_sqlite, &on_postgres]).await;
    let side = |client, call, connections, watch: &GatewayProcess| Side {
        client,
        call,
        connections,
        watch: Some(watch.pid()),
    };
    let c = s.connections;
    let stop = Stop::After(s.round_time);
    let sequential = load::interleave(
        s.rounds,
        &[
            Side {
                client: &one,
                call: &direct,
                connections: 1,
                watch: None,
            },
            side(&one, &on_sqlite, 1, &sqlite),
            side(&one, &on_postgres, 1, &postgres),
        ],
        stop,
    )
    .await;
    let server = pg.pid().expect("the server runs");
    let server_before = support::tree_cpu_time(server);
    let concurrent = load::interleave(
        s.rounds,
        &[
            Side {
                client: &many,
                call: &direct,
                connections: c,
                watch: None,
            },
            side(&many, &on_sqlite, c, &sqlite),
            side(&many, &on_postgres, c, &postgres),
        ],
        stop,
    )
    .await;
    let server_cpu = support::tree_cpu_time(server).saturating_sub(server_before);
    let names = [
        "straight to the upstream",
        "create, SQLite ledger",
        "create, PostgreSQL ledger",
    ];
    let (seq, par) = (summarize(&sequential, &names, 1), summarize(&concurrent, &names, c));
    let [sd, ss, sp] = [seq[0], seq[1], seq[2]];
    let [pd, ps, pp] = [par[0], par[1], par[2]];
    let server_per_create = micros(server_cpu) / pp.requests.max(1) as f64;
    let mut t = String::from(
        "### 1b. The create on a PostgreSQL ledger (issue 13)\n\n\
         | `POST`, same load client | straight to the upstream | create, SQLite ledger | create, PostgreSQL ledger | PostgreSQL against SQLite |\n\
         |---|---|---|---|---|\n",
    );
    t.push_str(&format!(
        "| 1 connection, p50 latency | {:.3} ms | {:.3} ms | {:.3} ms | {:+.3} ms |\n",
        ms(sd.p50),
        ms(ss.p50),
        ms(sp.p50),
        ms(sp.p50) - ms(ss.p50)
    ));
    t.push_str(&format!(
        "| 1 connection, p99 latency | {:.3} ms | {:.3} ms | {:.3} ms | {:+.3} ms |\n",
        ms(sd.p99),
        ms(ss.p99),
        ms(sp.p99),
        ms(sp.p99) - ms(ss.p99)
    ));
    t.push_str(&format!(
        "| {c} connections, requests/s | {:.0} | {:.0} (×{:.2} of direct) | {:.0} (×{:.2} of direct) | ×{:.2} |\n",
        pd.per_second,
        ps.per_second,
        ps.per_second / pd.per_second,
        pp.per_second,
        pp.per_second / pd.per_second,
        pp.per_second / ps.per_second
    ));
    t.push_str(&format!(
        "| {c} connections, p50 / p99 latency | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:+.2} / {:+.2} ms |\n",
        ms(pd.p50),
        ms(pd.p99),
        ms(ps.p50),
        ms(ps.p99),
        ms(pp.p50),
        ms(pp.p99),
        ms(pp.p50) - ms(ps.p50),
        ms(pp.p99) - ms(ps.p99)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per create: gateway process | — | {:.0} µs | {:.0} µs | {:+.0} µs |\n",
        micros(ps.cpu_watched),
        micros(pp.cpu_watched),
        micros(pp.cpu_watched) - micros(ps.cpu_watched)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per create: PostgreSQL server (postmaster and backends) | — | — | {server_per_create:.0} µs | |\n"
    ));
    t.push_str(&format!(
        "\nWhere the PostgreSQL time goes: a create's claim is a transaction of its own, a few network \
         round trips under an advisory lock on the code's key, and its outcome with the answer is \
         committed in a batch with other creates' (group commit), so the gateway's CPU per create \
         changes by {:+.0} µs while the server spends \
         {server_per_create:.0} µs per create of its own; on one connection the create adds {:+.3} ms at \
         p50 against SQLite. {} rounds of {:.1} s a side, the three sides interleaved; {} / {} / {} \
         requests on 1 connection, {} / {} / {} on {c}; none failed. Both gateways run side by side on \
         the same machine as the server and the load client.\n",
        micros(pp.cpu_watched) - micros(ps.cpu_watched),
        ms(sp.p50) - ms(ss.p50),
        s.rounds,
        s.round_time.as_secs_f64(),
        sd.requests,
        ss.requests,
        sp.requests,
        pd.requests,
        ps.requests,
        pp.requests
    ));
    Section {
        table: t,
        verdicts: Vec::new(),
    }
}

/// Item 1: the gateway's own cost on the path of one create to one upstream, taken apart with a
/// dry run (validation and translation, no ledger, no call) measured alongside.
async fn overhead(s: &Settings) -> Section {
    let upstream = FastUpstream::start(Duration::ZERO);
    let table = upstream_table("loop", VendorKind::Loop, &upstream.base_url(), Quota::UNLIMITED);
    let gateway = tokio::task::block_in_place(|| GatewayProcess::start(&table, &[]));
    let request = |code: &str| json!({ "code": code, "discount": { "percent_off": 20 }, "targets": ["loop"] });
    let direct = Call::json(
        format!("{}/v1/admin/promos", upstream.base_url()),
        Some(TOKEN),
        201,
        |code| json!({ "code": code, "percent_off": 20 }).to_string(),
    );
    let dry_run = Call::json(
        format!("{}/v1/promo-codes?dry_run=true", gateway.base_url()),
        None,
        200,
        move |code| request(code).to_string(),
    );
    let create = Call::json(
        format!("{}/v1/promo-codes", gateway.base_url()),
        None,
        201,
        move |code| request(code).to_string(),
    );
    let one = load::client(1);
    let many = load::client(s.connections);

    // The gateway answers as documented before anything is timed.
    let (status, body) = load::post_json(&one, &create.url, &request(&load::unique_code())).await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (201, &json!("created")),
        "{body}"
    );
    let (status, body) = load::post_json(&one, &dry_run.url, &request(&load::unique_code())).await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (200, &json!("would_send")),
        "{body}"
    );
    warm_up(s, &one, &many, &[&direct, &dry_run, &create]).await;
    let creates_before = upstream.calls(Route::Create(VendorKind::Loop));

    let pid = Some(gateway.pid());
    let side = |client, call, connections| Side {
        client,
        call,
        connections,
        watch: pid,
    };
    let c = s.connections;
    let stop = Stop::After(s.round_time);
    let sequential = load::interleave(
        s.rounds,
        &[side(&one, &direct, 1), side(&one, &dry_run, 1), side(&one, &create, 1)],
        stop,
    )
    .await;
    let concurrent = load::interleave(
        s.rounds,
        &[
            side(&many, &direct, c),
            side(&many, &dry_run, c),
            side(&many, &create, c),
        ],
        stop,
    )
    .await;
    let names = ["straight to the upstream", "gateway, dry run", "gateway, create"];
    let (seq, par) = (summarize(&sequential, &names, 1), summarize(&concurrent, &names, c));
    let [sd, sr, sc] = [seq[0], seq[1], seq[2]];
    let [pd, pr, pc] = [par[0], par[1], par[2]];
    // Every create reached the upstream exactly once (direct calls land there too).
    assert_eq!(
        upstream.calls(Route::Create(VendorKind::Loop)) - creates_before,
        (sd.requests + sc.requests + pd.requests + pc.requests) as u64
    );

    let added_p50 = ms(sc.p50) - ms(sd.p50);
    let added_p99 = ms(sc.p99) - ms(sd.p99);
    let mut t = String::from(
        "### 1. Overhead: one create to one upstream (Loop, answering at once)\n\n\
         | `POST`, same load client | straight to the upstream | gateway, dry run (no ledger, no call) | gateway, create | the create adds |\n\
         |---|---|---|---|---|\n",
    );
    t.push_str(&format!(
        "| 1 connection, p50 latency | {:.3} ms | {:.3} ms | {:.3} ms | **{added_p50:+.3} ms** |\n",
        ms(sd.p50),
        ms(sr.p50),
        ms(sc.p50)
    ));
    t.push_str(&format!(
        "| 1 connection, p99 latency | {:.3} ms | {:.3} ms | {:.3} ms | {added_p99:+.3} ms |\n",
        ms(sd.p99),
        ms(sr.p99),
        ms(sc.p99)
    ));
    t.push_str(&format!(
        "| 1 connection, requests/s | {:.0} | {:.0} | {:.0} | ×{:.2} |\n",
        sd.per_second,
        sr.per_second,
        sc.per_second,
        sc.per_second / sd.per_second
    ));
    t.push_str(&format!(
        "| {c} connections, requests/s | {:.0} | {:.0} | {:.0} | **×{:.2}** (throughput ratio) |\n",
        pd.per_second,
        pr.per_second,
        pc.per_second,
        pc.per_second / pd.per_second
    ));
    t.push_str(&format!(
        "| {c} connections, p50 / p99 latency | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:+.2} / {:+.2} ms |\n",
        ms(pd.p50),
        ms(pd.p99),
        ms(pr.p50),
        ms(pr.p99),
        ms(pc.p50),
        ms(pc.p99),
        ms(pc.p50) - ms(pd.p50),
        ms(pc.p99) - ms(pd.p99)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per request: gateway process | — | {:.0} µs | {:.0} µs | {:.0} µs |\n",
        micros(pr.cpu_watched),
        micros(pc.cpu_watched),
        micros(pc.cpu_watched)
    ));
    t.push_str(&format!(
        "| {c} connections, CPU per request: load client + upstream (bench process) | {:.0} µs | {:.0} µs | {:.0} µs | {:+.0} µs |\n",
        micros(pd.cpu_self),
        micros(pr.cpu_self),
        micros(pc.cpu_self),
        micros(pc.cpu_self) - micros(pd.cpu_self)
    ));
    let serving = ms(sr.p50) - ms(sd.p50);
    let rest = ms(sc.p50) - ms(sr.p50) - ms(sd.p50);
    t.push_str(&format!(
        "\nThe added p50 taken apart (1 connection): {serving:.3} ms receiving, validating, translating and \
         answering (dry run − direct: both are one loopback round trip), {:.3} ms the call to the upstream \
         itself (direct), and {rest:.3} ms the rest of a create: the ledger's writes and the outbound call's \
         plumbing (create − dry run − direct). On {c} connections the gateway spends {:.0} µs of CPU on a \
         create against {:.0} µs on a dry run: {:.0} µs go to the ledger and the outbound call.\n",
        ms(sd.p50),
        micros(pc.cpu_watched),
        micros(pr.cpu_watched),
        micros(pc.cpu_watched) - micros(pr.cpu_watched)
    ));
    t.push_str(&format!(
        "\n{} rounds of {:.1} s a side, the three sides interleaved; {} / {} / {} requests on 1 connection, \
         {} / {} / {} on {c}; none failed. p50/p99 pool every request of a side.\n",
        s.rounds,
        s.round_time.as_secs_f64(),
        sd.requests,
        sr.requests,
        sc.requests,
        pd.requests,
        pr.requests,
        pc.requests
    ));
    Section {
        table: t,
        verdicts: vec![Verdict {
            target: "overhead: added p50 latency under 0.5 ms",
            measured: format!(
                "{added_p50:+.3} ms ({:.3} → {:.3} ms); throughput ×{:.2} on {c} connections",
                ms(sd.p50),
                ms(sc.p50),
                pc.per_second / pd.per_second
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
    let side = |call| Side {
        client: &client,
        call,
        connections: 1,
        watch: Some(gateway.pid()),
    };
    let mut runs = load::interleave(s.rounds, &[side(&create), side(&direct)], per_round).await;
    let (straight, via) = (runs.pop().unwrap(), runs.pop().unwrap());
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

/// A gateway for the example campaign, which maps all six upstreams: the `measured` ones on
/// their own fast upstreams and quotas, the others on `idle` (never called).
fn example_gateway(measured: &[(VendorKind, &FastUpstream, Quota)], idle: &FastUpstream) -> GatewayProcess {
    example_replica(measured, idle, None)
}

/// [`example_gateway`], one of several replicas sharing their rate budgets in Redis when
/// `redis_url` is given.
fn example_replica(
    measured: &[(VendorKind, &FastUpstream, Quota)],
    idle: &FastUpstream,
    redis_url: Option<&str>,
) -> GatewayProcess {
    let tables: String = VendorKind::ALL
        .into_iter()
        .map(|kind| match measured.iter().find(|(k, ..)| *k == kind) {
            Some((_, upstream, quota)) => upstream_table(upstream_name(kind), kind, &upstream.base_url(), *quota),
            None => upstream_table(upstream_name(kind), kind, &idle.base_url(), Quota::UNLIMITED),
        })
        .collect();
    tokio::task::block_in_place(|| GatewayProcess::start_with(&tables, &[("example", EXAMPLE_MAPPING)], redis_url))
}

/// Starts a sync job, polls it every 50 ms until it ends, and returns its last status with the
/// time from sending the job to seeing it done, and the time the `POST` took (intake: the codes
/// written to the ledger).
async fn run_job(
    client: &reqwest::Client,
    gateway: &GatewayProcess,
    job: &serde_json::Value,
) -> (serde_json::Value, Duration, Duration) {
    let started = std::time::Instant::now();
    let (status, body) = load::post_json(client, &format!("{}/v1/sync-jobs", gateway.base_url()), job).await;
    let intake = started.elapsed();
    assert_eq!(status, 202, "{body}");
    let url = format!("{}/v1/sync-jobs/{}", gateway.base_url(), body["id"]);
    loop {
        let (status, body) = load::get_json(client, &url).await;
        assert_eq!(status, 200, "{body}");
        if body["state"] != "running" {
            assert_eq!(body["state"], "done", "{body}");
            return (body, started.elapsed(), intake);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that every code of a job was created on `target`.
fn assert_all_created(status: &serde_json::Value, target: &str, codes: u64) {
    let progress = &status["targets_progress"][target];
    assert_eq!(progress["counts"]["created"], codes, "{target}: {status}");
    assert_eq!(progress["pending"], 0, "{target}: {status}");
}

/// Item 3: a job of 2,000 codes to one upstream limited to 200 calls a second (burst 20).
async fn rate_fidelity(s: &Settings) -> Section {
    let upstream = FastUpstream::start(Duration::ZERO);
    let quota = Quota {
        per_second: RATE,
        burst: BURST,
        max_in_flight: 64,
    };
    let idle = FastUpstream::start(Duration::ZERO);
    let gateway = example_gateway(&[(VendorKind::Loop, &upstream, quota)], &idle);
    let client = load::client(1);
    let codes = s.rate_codes;
    let job = json!({
        "campaign": "example",
        "targets": ["loop"],
        "template": { "discount": { "percent_off": 20 } },
        "generate": { "count": codes, "pattern": "RATE-{random:12}" },
    });
    let (status, wall, intake) = run_job(&client, &gateway, &job).await;
    assert_all_created(&status, "loop", codes);
    assert_eq!(
        upstream.calls(Route::Create(VendorKind::Loop)),
        codes,
        "each code sent once"
    );

    let configured = f64::from(RATE);
    let achieved = upstream.achieved_rate();
    let busiest = upstream.busiest(Duration::from_secs(1));
    let ceiling = (RATE + BURST) as usize;
    // What an exact limiter allows: the burst at once, then one call every 1/RATE s.
    let ideal = (codes - u64::from(BURST)) as f64 / configured;
    let job_rate = codes as f64 / wall.as_secs_f64();
    let mut t = format!(
        "### 3. Rate-limit fidelity: {codes} codes to one upstream limited to {RATE}/s (burst {BURST})\n\n\
         | | measured | against |\n|---|---|---|\n"
    );
    t.push_str(&format!(
        "| calls a second the upstream saw (first to last arrival) | {achieved:.1} | **×{:.3}** of the quota ({RATE}/s) |\n",
        achieved / configured
    ));
    t.push_str(&format!(
        "| most calls in any one-second window (sliding, every arrival) | {busiest} | quota + burst = {ceiling} |\n"
    ));
    t.push_str(&format!(
        "| the job, from `POST` to `done` | {:.2} s | {ideal:.2} s for an exact limiter ({:.3}×) |\n",
        wall.as_secs_f64(),
        wall.as_secs_f64() / ideal
    ));
    t.push_str(&format!(
        "| codes a second over the whole job | {job_rate:.1} | ×{:.3} of the quota |\n",
        job_rate / configured
    ));
    t.push_str(&format!(
        "\nOne job (`generate`), the upstream answering at once; every code created, each sent once. The \
         job's intake (the `POST`, {codes} codes written to the ledger) took {:.0} ms of the job's time.\n",
        ms(intake)
    ));
    let fidelity = achieved / configured;
    let mut verdicts = vec![Verdict {
        target: "rate-limit fidelity: ≥ 95% of the quota, no 1 s window above quota + burst",
        measured: format!(
            "{achieved:.1}/s of {RATE}/s (×{fidelity:.3}); busiest 1 s window {busiest} calls (quota + burst {ceiling})"
        ),
        met: fidelity >= 0.95 && busiest <= ceiling,
    }];
    drop(gateway);

    // The same job split over three replicas whose budgets are one, in Redis.
    match three_replicas(codes, quota).await {
        Some((shared, shared_busiest, shared_wall)) => {
            let shared_fidelity = shared / configured;
            t.push_str(&format!(
                "\nThe same {codes} codes as three jobs of {} on three replicas (three gateway processes, each \
                 its own ledger) sharing one budget in Redis (`[rate_limit] redis_url_env`), beside the one \
                 process above:\n\n\
                 | | one process (governor) | three replicas (Redis) |\n|---|---|---|\n\
                 | calls a second the upstream saw | {achieved:.1} (×{fidelity:.3}) | {shared:.1} (×{shared_fidelity:.3}) |\n\
                 | most calls in any one-second window | {busiest} | {shared_busiest} |\n\
                 | from `POST` to `done` | {:.2} s | {:.2} s |\n",
                codes / 3,
                wall.as_secs_f64(),
                shared_wall.as_secs_f64()
            ));
            verdicts.push(Verdict {
                target: "three replicas on one Redis budget: ≥ 95% of the quota, no 1 s window above quota + burst",
                measured: format!(
                    "{shared:.1}/s of {RATE}/s (×{shared_fidelity:.3}); busiest 1 s window {shared_busiest} calls (quota + burst {ceiling})"
                ),
                met: shared_fidelity >= 0.95 && shared_busiest <= ceiling,
            });
        }
        None => t.push_str(
            "\nThree replicas on Redis: skipped, redis-server is not installed (scripts/test-servers installs it).\n",
        ),
    }
    Section { table: t, verdicts }
}

/// A job of `codes` split over three replicas sharing their budgets in a real Redis: the rate
/// the upstream saw, its busiest one-second window and the time until all three jobs were done.
/// `None` where redis-server is not installed.
async fn three_replicas(codes: u64, quota: Quota) -> Option<(f64, usize, Duration)> {
    let redis = support::redis::Redis::start_or_skip("rate-limit fidelity on three replicas")?;
    let upstream = FastUpstream::start(Duration::ZERO);
    let idle = FastUpstream::start(Duration::ZERO);
    let replicas: Vec<GatewayProcess> = (0..3)
        .map(|_| example_replica(&[(VendorKind::Loop, &upstream, quota)], &idle, Some(&redis.url())))
        .collect();
    let client = load::client(3);
    let each = codes / 3;
    let started = std::time::Instant::now();
    let jobs = replicas.iter().enumerate().map(|(i, gateway)| {
        let job = json!({
            "campaign": "example",
            "targets": ["loop"],
            "template": { "discount": { "percent_off": 20 } },
            "generate": { "count": each, "pattern": format!("R{i}-{{random:12}}") },
        });
        let client = &client;
        async move { run_job(client, gateway, &job).await }
    });
    for (status, ..) in futures::future::join_all(jobs).await {
        assert_all_created(&status, "loop", each);
    }
    let wall = started.elapsed();
    assert_eq!(
        upstream.calls(Route::Create(VendorKind::Loop)),
        each * 3,
        "each code sent once"
    );
    Some((upstream.achieved_rate(), upstream.busiest(Duration::from_secs(1)), wall))
}

/// The request the gateway sends to `target` for `code`, read from a dry run: the direct side of
/// item 4 makes exactly the gateway's calls.
async fn vendor_request(
    client: &reqwest::Client,
    gateway: &GatewayProcess,
    target: &str,
    code: &str,
) -> (String, serde_json::Value) {
    let (status, body) = load::post_json(
        client,
        &format!("{}/v1/promo-codes?dry_run=true", gateway.base_url()),
        &json!({ "code": code, "campaign": "example", "discount": { "percent_off": 20 }, "targets": [target] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let request = &body["results"][0]["request"];
    let url = request["url"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    (url, request["body"].clone())
}

/// Item 4: a job of 100,000 codes to Loop, Partnero and Moltin, against the same calls made
/// straight to those upstreams by the load client.
async fn sync_at_scale(s: &Settings) -> Section {
    let targets = [VendorKind::Loop, VendorKind::Partnero, VendorKind::Moltin];
    let upstreams: Vec<(VendorKind, FastUpstream)> = targets
        .into_iter()
        .map(|kind| (kind, FastUpstream::start(Duration::ZERO)))
        .collect();
    let idle = FastUpstream::start(Duration::ZERO);
    let measured: Vec<_> = upstreams.iter().map(|(k, u)| (*k, u, Quota::UNLIMITED)).collect();
    let gateway = example_gateway(&measured, &idle);
    let client = load::client(1);
    let idle_rss = gateway.rss_kib().unwrap_or(0);
    let codes = s.scale_codes;
    let upstream = |kind| &upstreams.iter().find(|(k, _)| *k == kind).expect("started").1;

    // The direct side: each vendor's request as the gateway builds it (from a dry run), the
    // code replaced; Moltin's with 50 codes a call, as the job sends them.
    const PLACEHOLDER: &str = "PLACEHOLDER-CODE";
    let mut direct = Vec::new();
    for kind in targets {
        let (url, body) = vendor_request(&client, &gateway, upstream_name(kind), PLACEHOLDER).await;
        let expect = support::vendors::success(kind).status;
        let (call, count, connections) = if kind == VendorKind::Moltin {
            let one = body.pointer("/data/codes/0").cloned().expect("a Moltin batch");
            let call = Call::json(url, Some(TOKEN), expect, move |_| {
                let mut body = body.clone();
                body["data"]["codes"] = (0..MOLTIN_BATCH)
                    .map(|_| {
                        let mut c = one.clone();
                        c["code"] = json!(load::unique_code());
                        c
                    })
                    .collect();
                body.to_string()
            });
            (call, codes.div_ceil(MOLTIN_BATCH as u64) as usize, MOLTIN_CONNECTIONS)
        } else {
            let template = body.to_string();
            let call = Call::json(url, Some(TOKEN), expect, move |code| {
                template.replace(PLACEHOLDER, code)
            });
            (call, codes as usize, JOB_CONNECTIONS)
        };
        direct.push((kind, call, count, connections));
    }
    let many = load::client(JOB_CONNECTIONS);
    let started = std::time::Instant::now();
    let runs = futures::future::join_all(
        direct
            .iter()
            .map(|(_, call, count, connections)| load::drive(&many, call, *connections, Stop::Count(*count))),
    )
    .await;
    let direct_wall = started.elapsed();
    for ((kind, ..), run) in direct.iter().zip(&runs) {
        Summary::of(std::slice::from_ref(run)).assert_clean(std::slice::from_ref(run), &format!("direct to {kind}"));
    }
    let before: Vec<(u64, u64)> = targets
        .iter()
        .map(|k| (upstream(*k).calls(Route::Create(*k)), upstream(*k).codes()))
        .collect();
    let direct_rss = gateway.peak_rss_kib().unwrap_or(0);
    let cpu_before = gateway.cpu_time().unwrap_or_default();

    let job = json!({
        "campaign": "example",
        "targets": targets.map(upstream_name),
        "template": { "discount": { "percent_off": 20 } },
        "generate": { "count": codes, "pattern": "SCALE-{random:12}" },
    });
    let (status, wall, intake) = run_job(&client, &gateway, &job).await;
    let cpu = gateway.cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let peak_rss = gateway.peak_rss_kib().unwrap_or(0);
    let (ledger_bytes, log_bytes) = gateway.ledger_bytes();
    let mut counts = Vec::new();
    for (kind, (calls_before, codes_before)) in targets.iter().zip(before) {
        assert_all_created(&status, upstream_name(*kind), codes);
        let u = upstream(*kind);
        let (calls, received) = (u.calls(Route::Create(*kind)) - calls_before, u.codes() - codes_before);
        assert_eq!(received, codes, "{kind}: each code received once");
        counts.push((*kind, calls, received));
    }
    let moltin_calls = counts.iter().find(|c| c.0 == VendorKind::Moltin).map_or(0, |c| c.1);
    assert_eq!(
        moltin_calls,
        codes.div_ceil(MOLTIN_BATCH as u64),
        "Moltin in whole batches"
    );

    let per_second = |d: Duration| codes as f64 / d.as_secs_f64();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut t = format!(
        "### 4. Sync at scale: {codes} codes to Loop, Partnero and Moltin\n\n\
         | | the same calls straight to the upstreams | the sync job through the gateway | ratio |\n|---|---|---|---|\n"
    );
    t.push_str(&format!(
        "| wall time | {:.2} s | {:.2} s (intake {:.2} s) | ×{:.2} |\n",
        direct_wall.as_secs_f64(),
        wall.as_secs_f64(),
        intake.as_secs_f64(),
        wall.as_secs_f64() / direct_wall.as_secs_f64()
    ));
    t.push_str(&format!(
        "| codes a second (each to all three) | {:.0} | **{:.0}** | ×{:.2} |\n",
        per_second(direct_wall),
        per_second(wall),
        per_second(wall) / per_second(direct_wall)
    ));
    t.push_str(&format!(
        "| gateway CPU per code (all three targets) | — | {:.0} µs | |\n",
        micros(cpu) / codes as f64
    ));
    t.push_str(&format!(
        "| gateway resident memory | {:.1} MiB idle | **{:.1} MiB peak** (VmHWM) | |\n",
        mib(idle_rss),
        mib(peak_rss)
    ));
    // The log is copied back and started again from the top while the job writes: it stays
    // about as long as a few checkpoint intervals of writes, whatever the job's size.
    t.push_str(&format!(
        "| the ledger on disk at the end: its file, its write-ahead log | — | {:.1} MiB, {:.1} MiB | |\n",
        mib(ledger_bytes / 1024),
        mib(log_bytes / 1024)
    ));
    for (kind, calls, received) in &counts {
        t.push_str(&format!(
            "| {kind}: calls / codes received | {} / {} | {calls} / {received} | {:.3} calls a code |\n",
            if *kind == VendorKind::Moltin {
                codes.div_ceil(MOLTIN_BATCH as u64)
            } else {
                codes
            },
            codes,
            *calls as f64 / *received as f64
        ));
    }
    t.push_str(&format!(
        "\nOne job (`generate`, {codes} codes, every one created on all three), after the direct side \
         ({JOB_CONNECTIONS} connections each to Loop and Partnero, {MOLTIN_CONNECTIONS} to Moltin with {MOLTIN_BATCH} \
         codes a call: what the job's workers keep in flight). The gateway's peak RSS before the job, after \
         its start-up and dry runs, was {:.1} MiB.\n",
        mib(direct_rss)
    ));
    Section {
        table: t,
        verdicts: vec![Verdict {
            target: "sync at scale: 100,000 codes under 100 MB peak RSS",
            measured: format!(
                "{codes} codes × 3 targets in {:.1} s ({:.0} codes/s, ×{:.2} of direct calls); peak RSS {:.1} MiB; Moltin {moltin_calls} calls for {codes} codes",
                wall.as_secs_f64(),
                per_second(wall),
                per_second(wall) / per_second(direct_wall),
                mib(peak_rss)
            ),
            met: peak_rss < 100 * 1000 && codes >= 100_000,
        }],
    }
}

/// Codes in one Moltin call (`BATCH_SIZE` of its adapter), and the calls in flight the job
/// keeps on Moltin and on every other target (src/jobs.rs).
const MOLTIN_BATCH: usize = 50;
const MOLTIN_CONNECTIONS: usize = 4;
const JOB_CONNECTIONS: usize = 32;
