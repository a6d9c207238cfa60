//! Sync jobs over HTTP: starting one (JSON or an upload), reading its status and results,
//! waiting for it to end, acting on it (retry, cancel), and reading the problems of a refusal.

use std::time::Duration;

use serde_json::Value;

use super::{header_of, Gateway};

/// A POST to `/v1/sync-jobs{query}` with `body` as `content_type`: status, Location header and
/// the body (parsed as JSON, else as a string). An answer of 400 or more must be
/// `application/problem+json`.
pub async fn post_job(
    gw: &Gateway,
    query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Option<String>, Value) {
    let r = gw
        .http
        .post(format!("{}/v1/sync-jobs{query}", gw.base))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = header_of(&r, "location");
    let content_type = header_of(&r, "content-type").unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{body}");
    }
    (status, location, body)
}

/// A JSON job POSTed to `/v1/sync-jobs`: the status and the parsed body.
pub async fn post_json_job(gw: &Gateway, job: &Value) -> (u16, Value) {
    gw.post("/v1/sync-jobs", job.to_string()).await
}

/// Checks an answer to [`post_job`] is 202 with a Location naming the job; the job's id.
pub fn accepted(status: u16, location: Option<String>, body: &Value) -> i64 {
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_i64().unwrap_or_else(|| panic!("no job id in {body}"));
    assert_eq!(location.as_deref(), Some(format!("/v1/sync-jobs/{id}").as_str()));
    id
}

/// Starts a JSON job, asserting 202 with a Location naming it; its id.
pub async fn start_job(gw: &Gateway, job: &Value) -> i64 {
    start_upload(gw, "", "application/json", job.to_string()).await
}

/// Starts a job from `body` as `content_type` (query `query`), asserting 202 with a Location
/// naming it; its id.
pub async fn start_upload(gw: &Gateway, query: &str, content_type: &str, body: impl Into<reqwest::Body>) -> i64 {
    let (status, location, body) = post_job(gw, query, content_type, body).await;
    accepted(status, location, &body)
}

/// `GET /v1/sync-jobs/{id}`, which must answer 200.
pub async fn job_status(gw: &Gateway, id: i64) -> Value {
    let (status, job) = gw.get(&format!("/v1/sync-jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    job
}

/// Polls job `id` (every answer 200) until it is no longer running, for at most `within`; its
/// last status.
pub async fn wait_done(gw: &Gateway, id: i64, within: Duration) -> Value {
    wait_done_or(gw, id, within, String::new).await
}

/// [`wait_done`], adding `context()` (e.g. the binary's log) to the failure when time runs out.
pub async fn wait_done_or(gw: &Gateway, id: i64, within: Duration, context: impl Fn() -> String) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job = job_status(gw, id).await;
        if job["state"] != "running" {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} still running after {within:?}: {job}{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// POSTs `/v1/sync-jobs/{id}/{action}` (`retry`, `cancel`) with no body: the status and the
/// parsed body (`null` if it is not JSON).
pub async fn job_action(gw: &Gateway, id: i64, action: &str) -> (u16, Value) {
    let r = gw
        .http
        .post(format!("{}/v1/sync-jobs/{id}/{action}", gw.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every result line of the job matching `filter` (`&status=...`), following next_cursor.
pub async fn all_results(gw: &Gateway, id: i64, filter: &str) -> Vec<Value> {
    gw.all_items(&format!("/v1/sync-jobs/{id}/results?limit=1000{filter}"))
        .await
}

/// The job's per-state counts for `target`, e.g. `{"created": 3}`.
pub fn counts<'a>(job: &'a Value, target: &str) -> &'a Value {
    &job["targets_progress"][target]["counts"]
}

/// `target`'s deliveries of the job in `state` (0 for a state not listed).
pub fn count(job: &Value, target: &str, state: &str) -> u64 {
    counts(job, target)[state].as_u64().unwrap_or(0)
}

/// The share of the job's deliveries that are settled, from 0 to 1.
pub fn progress(job: &Value) -> f64 {
    let (mut total, mut pending) = (0, 0);
    for p in job["targets_progress"].as_object().unwrap().values() {
        total += p["total"].as_u64().unwrap();
        pending += p["pending"].as_u64().unwrap();
    }
    (total - pending) as f64 / total.max(1) as f64
}
