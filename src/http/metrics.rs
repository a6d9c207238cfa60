//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written by hand from
//! the snapshots the gateway already keeps ([`Upstream::stats`], the breaker, the pause, and
//! the ledger's counts of each running sync job). Nothing is registered or updated per request
//! here: a scrape reads the current state, so the numbers cannot drift from `/health` and
//! `GET /v1/sync-jobs/{id}`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::engine::{Engine, Status};
use crate::http::api::AppState;
use crate::upstream::{BreakerState, Upstream, LATENCY_BUCKETS_SECS};

/// The Content-Type of the text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics
///
/// `GET /metrics`: the gateway's metrics, in the Prometheus text exposition format 0.0.4.
///
/// Every upstream's calls by outcome, call durations, rate-limiter and pause waits, retries,
/// breaker and pause, and each running sync job's deliveries, read when scraped.
#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "operations", security(("api_key" = ["metrics:read"])),
    responses(
        (status = 200, description = "The current metrics, in the Prometheus text format (version 0.0.4)",
            body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = render(&state.engine).await;
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text).into_response()
}

/// Every metric family, HELP and TYPE first, then one sample a line.
pub async fn render(engine: &Engine) -> String {
    let upstreams: Vec<&std::sync::Arc<Upstream>> = engine.upstreams().collect();
    let stats: Vec<_> = upstreams.iter().map(|u| u.stats()).collect();
    let mut out = String::new();
    let labels = |u: &Upstream| {
        format!(
            "upstream=\"{}\",vendor=\"{}\"",
            escape(&u.name),
            escape(&vendor_label(u))
        )
    };

    family(
        &mut out,
        "promo_gateway_upstream_calls_total",
        "counter",
        "HTTP calls made to the upstream, by how each ended.",
    );
    for (u, s) in upstreams.iter().zip(&stats) {
        let c = &s.calls;
        for (outcome, n) in [
            ("created", c.created),
            ("already_exists", c.already_exists),
            ("revoked", c.revoked),
            ("read", c.read),
            ("not_found", c.not_found),
            ("rejected", c.rejected),
            ("throttled", c.throttled),
            ("server_error", c.server_error),
            ("invalid_response", c.invalid_response),
            ("timeout", c.timeout),
            ("unreachable", c.unreachable),
            ("interrupted", c.interrupted),
        ] {
            sample(
                &mut out,
                "promo_gateway_upstream_calls_total",
                &format!("{},outcome=\"{outcome}\"", labels(u)),
                n as f64,
            );
        }
    }

    family(
        &mut out,
        "promo_gateway_upstream_call_duration_seconds",
        "histogram",
        "Duration of each HTTP call to the upstream, connect to last byte read.",
    );
    for (u, s) in upstreams.iter().zip(&stats) {
        let name = "promo_gateway_upstream_call_duration_seconds";
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_SECS.iter().enumerate() {
            cumulative += s.latency.counts[i];
            sample(
                &mut out,
                &format!("{name}_bucket"),
                &format!("{},le=\"{bound}\"", labels(u)),
                cumulative as f64,
            );
        }
        sample(
            &mut out,
            &format!("{name}_bucket"),
            &format!("{},le=\"+Inf\"", labels(u)),
            s.latency.count as f64,
        );
        sample(&mut out, &format!("{name}_sum"), &labels(u), s.latency.sum_secs);
        sample(&mut out, &format!("{name}_count"), &labels(u), s.latency.count as f64);
    }

    let counters: [(&str, &str, StatOf); 5] = [
        (
            "promo_gateway_upstream_rate_limiter_wait_seconds_total",
            "Seconds spent waiting for the upstream's rate limiter and an in-flight slot.",
            |s| s.limiter_wait_secs,
        ),
        (
            "promo_gateway_upstream_pause_wait_seconds_total",
            "Seconds spent waiting out Retry-After pauses and back-off.",
            |s| s.pause_wait_secs,
        ),
        ("promo_gateway_upstream_retries_total", "Calls made again after a retryable outcome.", |s| s.retries as f64),
        (
            "promo_gateway_upstream_fast_failures_total",
            "Deliveries answered without a call because the circuit breaker was open.",
            |s| s.fast_failures as f64,
        ),
        (
            "promo_gateway_upstream_held_total",
            "Deliveries answered throttled without a call (a pause or the rate limiter outlasted the caller's patience).",
            |s| s.held as f64,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        for (u, s) in upstreams.iter().zip(&stats) {
            sample(&mut out, name, &labels(u), value(s));
        }
    }

    family(
        &mut out,
        "promo_gateway_upstream_breaker_state",
        "gauge",
        "Circuit breaker: 0 closed, 1 half-open, 2 open.",
    );
    for u in &upstreams {
        let state = match u.breaker().0 {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        sample(&mut out, "promo_gateway_upstream_breaker_state", &labels(u), state);
    }

    family(
        &mut out,
        "promo_gateway_upstream_paused_until_seconds",
        "gauge",
        "End of the Retry-After pause the vendor asked for, in Unix seconds; 0 when none is under way.",
    );
    for u in &upstreams {
        let until = u
            .paused_until()
            .await
            .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0);
        sample(
            &mut out,
            "promo_gateway_upstream_paused_until_seconds",
            &labels(u),
            until,
        );
    }

    if upstreams.iter().any(|u| u.rate_limit_tls().is_some()) {
        family(
            &mut out,
            "promo_gateway_rate_limit_tls",
            "gauge",
            "1 when the connection to the upstream's shared rate budget (Redis) is TLS.",
        );
        for u in &upstreams {
            if let Some(tls) = u.rate_limit_tls() {
                sample(
                    &mut out,
                    "promo_gateway_rate_limit_tls",
                    &labels(u),
                    f64::from(u8::from(tls)),
                );
            }
        }
    }

    let writes = engine.ledger_writes();
    let backend = format!("backend=\"{}\"", engine.ledger_backend());
    for (name, kind, help, value) in [
        (
            "promo_gateway_ledger_writes_total",
            "counter",
            "Writes given to the ledger's writer: claims, outcomes and answers.",
            writes.writes,
        ),
        (
            "promo_gateway_ledger_batches_total",
            "counter",
            "Batches the ledger's writer took; each is written in one transaction unless it fails.",
            writes.batches,
        ),
        (
            "promo_gateway_ledger_transactions_total",
            "counter",
            "Transactions the ledger's writer committed (fewer than writes: group commit).",
            writes.transactions,
        ),
        (
            "promo_gateway_ledger_largest_batch",
            "gauge",
            "The most writes one batch has taken since start.",
            writes.largest_batch,
        ),
    ] {
        family(&mut out, name, kind, help);
        sample(&mut out, name, &backend, value as f64);
    }

    if let Some(t) = engine.ledger_transport().await {
        let name = "promo_gateway_ledger_tls";
        family(
            &mut out,
            name,
            "gauge",
            "1 when the ledger's connections are encrypted, as its server reports them; `version` is the protocol.",
        );
        let labels = format!("{backend},version=\"{}\"", t.version.as_deref().unwrap_or(""));
        sample(&mut out, name, &labels, f64::from(u8::from(t.tls)));
    }

    family(
        &mut out,
        "promo_gateway_sync_job_deliveries",
        "gauge",
        "Deliveries of each running sync job, by target and state.",
    );
    for id in engine.running_job_ids() {
        let Ok(status) = engine.job_status(id).await else {
            continue;
        };
        for (target, progress) in &status.targets_progress {
            for s in Status::ALL {
                if s == Status::WouldSend {
                    continue;
                }
                let n = progress.counts.get(&s).copied().unwrap_or(0);
                sample(
                    &mut out,
                    "promo_gateway_sync_job_deliveries",
                    &format!("job=\"{id}\",target=\"{}\",status=\"{}\"", escape(target), s.as_str()),
                    n as f64,
                );
            }
        }
    }
    out
}

/// Reads one number out of an upstream's stats.
type StatOf = fn(&crate::upstream::UpstreamStats) -> f64;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "{name}{{{labels}}} {}", number(value));
}

/// A sample value: integers without a fraction, others as Rust prints them (valid Go floats).
fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The vendor as the API names it (`loop`, `limio_v2`...), not its display name.
fn vendor_label(u: &Upstream) -> String {
    match serde_json::to_value(u.vendor) {
        Ok(serde_json::Value::String(s)) => s,
        _ => u.vendor.to_string(),
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_numbers_are_escaped_and_printed_as_the_format_wants() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
    }
}
