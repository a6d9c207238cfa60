//! A sync job run from the command line: a progress bar per target while it runs, and when it
//! ends a summary that tells a person what happened and what to do next, in numbers a person
//! reads (`1,183/s`, `2m05s`, `100,000`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressState, ProgressStyle};
use promo_gateway::domain::job::{JobResult, JobState};
use promo_gateway::domain::request::OpKind;
use promo_gateway::engine::jobs::{JobSpec, JobStatus};
use promo_gateway::engine::Status;
use promo_gateway::{Gateway, StartupError};

/// Where the job's ledger lives after this process, which decides how its results can be seen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// The configured ledger: `serve` on it lists the results and retries the failures.
    Kept,
    /// A `--sandbox` run's own ledger, deleted at exit: what is printed is all there will be.
    Sandbox,
}

/// How the job ended, as the exit status reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every code is on every target (or there was nothing to deliver); for a revoke job, off
    /// every target.
    Delivered,
    /// Some codes ended otherwise (not on the vendor; for a revoke, not revoked there).
    Undelivered,
}

/// Results read per status to group them by reason.
const GROUPED: usize = 1_000;
/// Distinct reasons shown per status.
const REASONS: usize = 5;
/// Codes named per reason; the rest are counted.
const NAMED: usize = 5;

/// Starts a job, draws a bar per target until it ends (Ctrl-C cancels it cleanly), and prints
/// the summary.
pub async fn run(
    gateway: &Gateway,
    spec: JobSpec,
    ledger: Ledger,
    results_csv: Option<&Path>,
) -> Result<Ended, StartupError> {
    // On a shared ledger the serving replicas would adopt a job whose lease ran out.
    gateway.keep_leases();
    let engine = &gateway.engine;
    let mirror = matches!(spec.source, promo_gateway::engine::jobs::Source::Mirror);
    let id = engine.start_job(spec).await.map_err(usage)?;
    let mut status = engine.job_status(id).await.map_err(usage)?;
    if mirror && status.job.total == 0 {
        println!(
            "nothing to mirror: the ledger holds no code of campaign {} that is missing from {}",
            status.job.campaign,
            status.job.targets.join(", ")
        );
        return Ok(Ended::Delivered);
    }
    let bars = MultiProgress::new();
    let style = bar_style();
    let progress: Vec<(String, ProgressBar)> = status
        .targets_progress
        .iter()
        .map(|(target, p)| {
            let bar = bars.add(
                ProgressBar::new(p.total)
                    .with_style(style.clone())
                    .with_prefix(target.clone()),
            );
            (target.clone(), bar)
        })
        .collect();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        for (target, bar) in &progress {
            if let Some(p) = status.targets_progress.get(target) {
                bar.set_position(p.total - p.pending);
                bar.set_message(problems(status.job.operation, &p.counts));
            }
        }
        if status.job.state != JobState::Running {
            break;
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                eprintln!("cancelling: calls in flight finish and are recorded");
                status = engine.cancel_job(id).await.map_err(usage)?;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        status = engine.job_status(id).await.map_err(usage)?;
    }
    for (_, bar) in &progress {
        bar.finish();
    }
    let mut out = table(&status);
    let op = status.job.operation;
    for (&s, &count) in &totals(&status) {
        if op.succeeded(s) || count == 0 {
            continue;
        }
        let results = engine
            .job_results(id, Some(s), None, (0, String::new()), GROUPED)
            .await
            .map_err(usage)?;
        out.push_str(&next_steps(id, op, s, count, &results, ledger));
    }
    print!("{out}");
    if let Some(path) = results_csv {
        let lines = write_csv(gateway, id, path).await?;
        println!("{} result lines written to {}", HumanCount(lines), path.display());
    }
    Ok(if undelivered(&status) > 0 {
        Ended::Undelivered
    } else {
        Ended::Delivered
    })
}

/// `moltin [=====>    ] 452/1,000 1,183/s eta 2m05s rejected 3`.
/// Writes every result of job `id` to `path` as CSV, a page at a time; how many lines.
async fn write_csv(gateway: &Gateway, id: i64, path: &Path) -> Result<u64, StartupError> {
    use futures::StreamExt as _;
    use std::io::Write as _;
    let cannot = |e: std::io::Error| StartupError::Usage(format!("--results-csv {}: {e}", path.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(cannot)?);
    let chunks = promo_gateway::export::stream(
        gateway.engine.clone(),
        id,
        None,
        None,
        promo_gateway::export::Format::Csv,
    );
    let mut chunks = std::pin::pin!(chunks);
    let mut lines = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(usage)?;
        lines += chunk.windows(2).filter(|w| *w == b"\r\n").count() as u64;
        file.write_all(&chunk).map_err(cannot)?;
    }
    file.flush().map_err(cannot)?;
    // The header is a line of the file, not a result.
    Ok(lines.saturating_sub(1))
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} [{bar:32}] {human_pos}/{human_len} {rate:>9} eta {remaining:>6} {msg}")
        .expect("a valid template")
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", HumanCount(state.per_sec().round() as u64));
        })
        .with_key("remaining", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&minutes(state.eta()));
        })
        .progress_chars("=> ")
}

/// A duration as a person reads a wait: `45s`, `2m05s`, `3h07m`.
pub fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
    }
}

/// A refusal, worded as the API words it.
fn usage(e: impl Into<promo_gateway::http::error::ApiError>) -> StartupError {
    StartupError::Usage(e.into().to_string())
}

/// Codes whose target ended otherwise than the job's operation wants.
fn undelivered(status: &JobStatus) -> u64 {
    totals(status)
        .into_iter()
        .filter(|(s, _)| !status.job.operation.succeeded(*s))
        .map(|(_, n)| n)
        .sum()
}

/// Deliveries by status, over every target.
fn totals(status: &JobStatus) -> BTreeMap<Status, u64> {
    let mut totals = BTreeMap::new();
    for p in status.targets_progress.values() {
        for (s, n) in &p.counts {
            *totals.entry(*s).or_insert(0) += n;
        }
    }
    totals.retain(|_, n| *n > 0);
    totals
}

fn problems(op: OpKind, counts: &BTreeMap<Status, u64>) -> String {
    counts
        .iter()
        .filter(|(s, n)| !op.succeeded(**s) && **s != Status::Pending && **n > 0)
        .map(|(s, n)| format!("{} {}", s.as_str(), HumanCount(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table printed when a job ends: one row per target, one column per state seen.
fn table(status: &JobStatus) -> String {
    let columns: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| status.targets_progress.values().any(|p| p.counts.contains_key(s)))
        .collect();
    let mut out = format!(
        "{} job {} {}: {} codes, campaign {}\n",
        match status.job.operation {
            OpKind::Create => "sync",
            OpKind::Revoke => "revoke",
        },
        status.job.id,
        format!("{:?}", status.job.state).to_lowercase(),
        HumanCount(status.job.total),
        status.job.campaign
    );
    let _ = write!(out, "{:<14}", "target");
    for c in &columns {
        let _ = write!(out, "{:>16}", c.as_str());
    }
    out.push('\n');
    for (target, p) in &status.targets_progress {
        let _ = write!(out, "{target:<14}");
        for c in &columns {
            let n = p.counts.get(c).copied().unwrap_or(0);
            let _ = write!(out, "{:>16}", HumanCount(n).to_string());
        }
        out.push('\n');
    }
    out
}

/// For one status that is not a success: how many, why (grouped by reason, the commonest
/// first, each with the first codes it struck), and how to list or retry them all.
fn next_steps(job: i64, op: OpKind, status: Status, count: u64, results: &[JobResult], ledger: Ledger) -> String {
    let noun = match (op, count) {
        (OpKind::Create, 1) => "delivery",
        (OpKind::Create, _) => "deliveries",
        (OpKind::Revoke, 1) => "revocation",
        (OpKind::Revoke, _) => "revocations",
    };
    let mut out = format!("\n{}: {} {noun}", status.as_str(), HumanCount(count));
    if (results.len() as u64) < count {
        let _ = write!(out, " (the first {} by reason)", HumanCount(results.len() as u64));
    }
    out.push('\n');
    let mut groups: BTreeMap<String, Vec<&JobResult>> = BTreeMap::new();
    for r in results {
        groups.entry(reason(r)).or_default().push(r);
    }
    let mut groups: Vec<(String, Vec<&JobResult>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    for (why, struck) in groups.iter().take(REASONS) {
        let _ = writeln!(out, "  {} × {why}", HumanCount(struck.len() as u64));
        let named: Vec<String> = struck
            .iter()
            .take(NAMED)
            .map(|r| format!("{} on {}", r.code, r.upstream))
            .collect();
        let _ = write!(out, "      {}", named.join(", "));
        if struck.len() > NAMED {
            let _ = write!(out, ", and {} more", HumanCount((struck.len() - NAMED) as u64));
        }
        out.push('\n');
    }
    if groups.len() > REASONS {
        let _ = writeln!(out, "  and {} other reasons", groups.len() - REASONS);
    }
    let filter = format!("GET /v1/sync-jobs/{job}/results?status={}", status.as_str());
    match ledger {
        Ledger::Kept => {
            let _ = writeln!(
                out,
                "  list them all: {filter} (promo-gateway serve, on this config's ledger)"
            );
            if matches!(status, Status::Failed | Status::Throttled | Status::Cancelled) {
                let _ = writeln!(out, "  send them again: POST /v1/sync-jobs/{job}/retry");
            }
        }
        Ledger::Sandbox => {}
    }
    out
}

/// Why a delivery did not end on the vendor, as one line.
fn reason(r: &JobResult) -> String {
    match &r.error {
        Some(e) => match serde_json::to_value(e.kind) {
            Ok(serde_json::Value::String(kind)) => format!("{kind}: {}", e.message),
            _ => e.message.clone(),
        },
        None => "no error recorded".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_in_minutes_and_seconds() {
        assert_eq!(minutes(Duration::from_secs(0)), "0s");
        assert_eq!(minutes(Duration::from_secs(59)), "59s");
        assert_eq!(minutes(Duration::from_secs(125)), "2m05s");
        assert_eq!(minutes(Duration::from_secs(3_600 * 3 + 420)), "3h07m");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(HumanCount(1_182).to_string(), "1,182");
        assert_eq!(HumanCount(100_000).to_string(), "100,000");
    }
}
