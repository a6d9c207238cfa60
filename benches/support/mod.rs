//! What the gateway benchmarks share (issue 7):
//! - [`upstream::FastUpstream`]: a bare hyper server answering every vendor's create path with
//!   its documented success body, after an optional delay, counting calls, codes and arrivals;
//! - [`gateway::GatewayProcess`]: the real binary on a temp config, mappings and ledger;
//! - [`load`]: the load client (N keep-alive connections, latencies, interleaved rounds);
//! - [`vendors`]: the documented success answers (also used by adapters/benches/translation.rs);
//! - [`machine`] and [`write_between_markers`]: describing the machine and publishing figures.
//!
//! The sync-job benchmarks (items 3 and 4) use `GatewayProcess::start` with an upstream
//! limited by [`gateway::Quota`], `load::post_json` / `load::get_json` to start and poll a job,
//! then `FastUpstream::busiest` and `achieved_rate` (rate-limit fidelity), `FastUpstream::codes`
//! against `calls` (Moltin batching) and `GatewayProcess::peak_rss_kib`.
// Each bench binary uses a different part of this module.
#![allow(dead_code)]

/// The adapters' golden fixture: the upstream names mappings/example.toml uses, one home.
#[path = "../../adapters/tests/fixtures/mod.rs"]
pub mod fixtures;
pub mod gateway;
pub mod load;
/// A real PostgreSQL server for item 1's PostgreSQL ledger: the tests' harness, one home.
#[path = "../../tests/common/postgres.rs"]
pub mod postgres;
/// A real redis-server for the three-replica fidelity run: the tests' harness, one home.
#[path = "../../tests/common/redis.rs"]
pub mod redis;
pub mod upstream;
pub mod vendors;

use std::path::Path;
use std::time::Duration;

/// CPU time (user + system) of a process from its `/proc/PID/stat` (`/proc/self/stat` for this
/// one), in steps of 10 ms.
pub fn cpu_time(stat_path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) are counted from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / USER_HZ))
}

/// CPU time of a process and its children (a PostgreSQL postmaster and its backends), read from
/// `/proc`.
pub fn tree_cpu_time(pid: u32) -> Duration {
    let mut total = cpu_time(&format!("/proc/{pid}/stat")).unwrap_or_default();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat_path = entry.path().join("stat");
        let Ok(stat) = std::fs::read_to_string(&stat_path) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let parent = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(pid) {
            total += cpu_time(&stat_path.to_string_lossy()).unwrap_or_default();
        }
    }
    total
}

/// The unit of /proc/PID/stat's CPU times (`sysconf(_SC_CLK_TCK)`), 100 on Linux.
const USER_HZ: f64 = 100.0;

/// Cores, CPU model and memory, as read from the machine: for the published figures.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!(
        "{cores} cores ({model}), {mem_gib:.0} GiB RAM, {}",
        std::env::consts::OS
    )
}

/// Replaces what lies between the lines `<!-- bench:start -->` and `<!-- bench:end -->` of
/// the file at `path` with `content`; leaves the file alone (and says so) if either is missing.
pub fn write_between_markers(path: &Path, content: &str) {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("{} not found; figures not written there", path.display());
        return;
    };
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        eprintln!("{} has no {START} ... {END}; figures not written there", path.display());
        return;
    };
    if end < start {
        eprintln!(
            "{}: {END} comes before {START}; figures not written there",
            path.display()
        );
        return;
    }
    let updated = format!("{}{START}\n{}\n{}", &text[..start], content.trim_end(), &text[end..]);
    std::fs::write(path, updated).expect("write the figures");
    println!("figures written to {}", path.display());
}
