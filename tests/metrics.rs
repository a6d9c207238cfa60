//! `GET /metrics`: the Prometheus text format, parsed line by line, after creates against a
//! wiremock Loop (a success, a 400, a 503 that is retried) and during a sync job.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use wiremock::ResponseTemplate;

/// One sample: its metric name, its labels and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly: every line is blank, a `# HELP`/`# TYPE`
/// comment, or `name{labels} value`; every sample's family has a HELP and a TYPE line before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut help = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(!text.is_empty(), "{line}");
            assert!(help.insert(name.to_owned()), "second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE for {name}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#'),
            "a comment that is neither HELP nor TYPE: {line}"
        );
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("no labels: {line}"));
        assert!(
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        let (labels, value) = rest.rsplit_once("} ").unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
            // The value ends at the first quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
            map.insert(key.to_owned(), after[..end].to_owned());
            rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            help.contains(family) && types.contains_key(family),
            "{name} has no HELP/TYPE before it"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels: map,
            value,
        });
    }
    samples
}

/// The value of the one sample `name` whose labels include every `(key, value)` of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn loop_upstream(url: &str) -> String {
    common::upstream(
        "loop",
        "loop",
        url,
        "retry = { max_attempts = 3, base_delay_ms = 10, max_delay_ms = 20 }",
    )
}

#[tokio::test]
async fn metrics_count_each_upstream_call_by_outcome_with_latency_and_retries() {
    let server = common::strict_server().await;
    common::expect_loop_created(&server, "t", "OK-1", "promo_1").await;
    common::expect_loop_answer(
        &server,
        "t",
        "BAD-1",
        ResponseTemplate::new(400).set_body_json(json!({ "error": "validation_error", "message": "no" })),
    )
    .await;
    // The first call for RETRY-1 meets a 503 (a proxy's answer, retried), the second succeeds.
    common::loop_create("t", common::loop_body("RETRY-1"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    common::expect_loop_created(&server, "t", "RETRY-1", "promo_2").await;
    let gw = common::start(&loop_upstream(&server.uri()), &[], &[("LOOP_TOKEN", "t")]).await;

    // Before any call: every family is there, every counter 0, the breaker closed.
    let before = gw.get_raw("/metrics").await;
    assert_eq!(before.status, 200);
    assert!(
        before.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        before.content_type
    );
    let s = parse(&before.text);
    let up = [("upstream", "loop"), ("vendor", "loop")];
    assert_eq!(
        value(
            &s,
            "promo_gateway_upstream_calls_total",
            &[up[0], up[1], ("outcome", "created")]
        ),
        0.0
    );
    assert_eq!(
        value(&s, "promo_gateway_upstream_call_duration_seconds_count", &up),
        0.0
    );
    assert_eq!(value(&s, "promo_gateway_upstream_breaker_state", &up), 0.0);
    assert_eq!(value(&s, "promo_gateway_upstream_paused_until_seconds", &up), 0.0);

    let (status, body) = gw.create(&common::percent20("OK-1", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = gw.create(&common::percent20("BAD-1", &["loop"])).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(common::result(&body, "loop")["status"], "rejected");
    let (status, body) = gw.create(&common::percent20("RETRY-1", &["loop"])).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(common::result(&body, "loop")["attempts"], 2, "{body}");

    let raw = gw.get_raw("/metrics").await;
    assert_eq!(raw.status, 200);
    let s = parse(&raw.text);
    let calls = |outcome| {
        value(
            &s,
            "promo_gateway_upstream_calls_total",
            &[up[0], up[1], ("outcome", outcome)],
        )
    };
    assert_eq!(calls("created"), 2.0, "{}", raw.text);
    assert_eq!(calls("rejected"), 1.0);
    assert_eq!(calls("server_error"), 1.0);
    for other in [
        "already_exists",
        "throttled",
        "invalid_response",
        "timeout",
        "unreachable",
        "interrupted",
    ] {
        assert_eq!(calls(other), 0.0, "{other}");
    }
    assert_eq!(value(&s, "promo_gateway_upstream_retries_total", &up), 1.0);
    // Four HTTP calls: the histogram counts each, its buckets cumulative up to +Inf.
    let name = "promo_gateway_upstream_call_duration_seconds";
    assert_eq!(value(&s, &format!("{name}_count"), &up), 4.0);
    assert_eq!(
        value(&s, &format!("{name}_bucket"), &[up[0], up[1], ("le", "+Inf")]),
        4.0
    );
    let buckets: Vec<f64> = s
        .iter()
        .filter(|x| x.name == format!("{name}_bucket") && x.labels["upstream"] == "loop")
        .map(|x| x.value)
        .collect();
    assert_eq!(buckets.len(), 11);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    let sum = value(&s, &format!("{name}_sum"), &up);
    assert!(sum > 0.0 && sum < 4.0 * 2.0, "{sum}");
    // The rate limiter let every call through at once; the retry waited its back-off.
    assert!(value(&s, "promo_gateway_upstream_rate_limiter_wait_seconds_total", &up) >= 0.0);
    assert!(value(&s, "promo_gateway_upstream_pause_wait_seconds_total", &up) >= 0.0);
    assert_eq!(value(&s, "promo_gateway_upstream_breaker_state", &up), 0.0);
    assert_eq!(value(&s, "promo_gateway_upstream_fast_failures_total", &up), 0.0);
}

#[tokio::test]
async fn metrics_show_a_pause_the_vendor_asked_for_and_a_running_jobs_progress() {
    let server = common::strict_server().await;
    // A 429 with Retry-After: 3600 pauses Loop; an interactive create does not wait that long.
    common::loop_create("t", common::loop_body("SLOW-1"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3600")
                .set_body_json(json!({ "error": "rate_limited", "message": "slow down" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let gw = common::start(
        &loop_upstream(&server.uri()),
        &[("spring", "[upstreams.loop]\n")],
        &[("LOOP_TOKEN", "t")],
    )
    .await;
    let (_, body) = gw.create(&common::percent20("SLOW-1", &["loop"])).await;
    assert_eq!(common::result(&body, "loop")["status"], "throttled", "{body}");
    // A second create is held without a call while the pause lasts.
    let (_, body) = gw.create(&common::percent20("SLOW-2", &["loop"])).await;
    assert_eq!(common::result(&body, "loop")["status"], "throttled", "{body}");
    assert_eq!(common::result(&body, "loop")["attempts"], 0, "{body}");

    // A job for Loop now waits out the pause in the background: it stays running, pending.
    let (status, job) = gw
        .post(
            "/v1/sync-jobs",
            json!({
                "targets": ["loop"],
                "campaign": "spring",
                "codes": ["JOB-1", "JOB-2"],
                "template": { "discount": { "percent_off": 20 } }
            })
            .to_string(),
        )
        .await;
    let job_id = job["id"].as_i64();

    let raw = gw.get_raw("/metrics").await;
    let s = parse(&raw.text);
    let up = [("upstream", "loop"), ("vendor", "loop")];
    assert_eq!(
        value(
            &s,
            "promo_gateway_upstream_calls_total",
            &[up[0], up[1], ("outcome", "throttled")]
        ),
        1.0
    );
    let until = value(&s, "promo_gateway_upstream_paused_until_seconds", &up);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        until > now + 3590.0 && until <= now + 3601.0,
        "paused until {until}, now {now}"
    );
    assert_eq!(value(&s, "promo_gateway_upstream_held_total", &up), 1.0);

    if status == 202 || status == 201 {
        let id = job_id.unwrap().to_string();
        let job_label = [("job", id.as_str()), ("target", "loop")];
        assert_eq!(
            value(
                &s,
                "promo_gateway_sync_job_deliveries",
                &[job_label[0], job_label[1], ("status", "pending")]
            ),
            2.0,
            "{}",
            raw.text
        );
        assert_eq!(
            value(
                &s,
                "promo_gateway_sync_job_deliveries",
                &[job_label[0], job_label[1], ("status", "created")]
            ),
            0.0
        );
    } else {
        panic!("the sync job was not accepted: {status} {job}");
    }
}
