//! The HTTP surface of sync jobs: `POST /v1/sync-jobs` and the job's own resources.
//!
//! A job's codes come as JSON (a list, a generator or a mirror) or as an uploaded CSV or NDJSON
//! file. Uploads are streamed to a temporary file as they arrive, so a 100,000-line file is
//! never held in memory; the job is then read from that file as the ledger takes it in.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use promo_adapters::Problems;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::domain::job::JobResult;
use crate::engine::jobs::{Format, JobSpec, JobStatus, Pattern, Source, MAX_GENERATE};
use crate::http::api::{page, query, status_param, AppState, Segment};
use crate::http::error::ApiError;

/// Start a sync job
///
/// `POST /v1/sync-jobs`: 202 with the job, which runs in the background.
#[utoipa::path(post, path = "/v1/sync-jobs", operation_id = "createSyncJob", tag = "sync-jobs", security(("api_key" = ["sync-jobs:write"])),
    params(
        ("campaign" = Option<String>, Query, description = "Uploads only (required there): the campaign of every code in the file"),
        ("targets" = Option<String>, Query, description = "Uploads only: comma-separated upstream names (default: the campaign's)"),
        ("on_unsupported" = Option<crate::http::openapi::OnUnsupportedDoc>, Query, description = "Uploads only"),
    ),
    request_body(description = "A JSON job, or a CSV (header row of promo-code fields) or NDJSON (one promo code per line) upload",
        content((crate::http::openapi::SyncJobRequestDoc = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
    responses(
        (status = 202, description = "The job, started in the background", body = crate::http::schemas::JobStatusDoc,
            headers(("Location" = String, description = "The job's URL")),
            links(
                ("getSyncJob" = (operation_id = "getSyncJob", parameters(("id" = "$response.body#/id")), description = "Its state and progress")),
                ("listSyncJobResults" = (operation_id = "listSyncJobResults", parameters(("id" = "$response.body#/id")), description = "Its results, a line per code and target")),
                ("cancelSyncJob" = (operation_id = "cancelSyncJob", parameters(("id" = "$response.body#/id")), description = "Stop it")),
                ("retrySyncJob" = (operation_id = "retrySyncJob", parameters(("id" = "$response.body#/id")), description = "Send its failed deliveries again once it ended")),
            )),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 408, response = crate::http::openapi::BodyTimeout),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 413, response = crate::http::openapi::TooLarge),
        (status = 415, response = crate::http::openapi::UnsupportedMediaType),
        (status = 422, response = crate::http::openapi::Unprocessable),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => None,
        "application/x-ndjson" | "application/jsonl" | "application/ndjson" => Some(Format::Ndjson),
        "text/csv" => Some(Format::Csv),
        other => return Err(ApiError::UnsupportedMediaType(other.to_owned())),
    };
    // The upload's temporary file lives until the job is written to the ledger.
    let mut upload = None;
    let spec = match format {
        None => {
            query(raw.as_deref(), &[])?;
            let bytes = axum::body::to_bytes(body, state.max_job_json_bytes)
                .await
                .map_err(|_| ApiError::TooLarge {
                    limit: state.max_job_json_bytes,
                })?;
            let value = promo_adapters::json::parse(&bytes)?;
            json_spec(&state, value)?
        }
        Some(format) => {
            let q = query(raw.as_deref(), &["campaign", "targets", "on_unsupported"])?;
            let (campaign, targets) = campaign_and_targets(&state, &q)?;
            let file = stream_to_file(body, state.max_upload_bytes).await?;
            let spec = JobSpec {
                campaign,
                targets,
                template: Map::new(),
                on_unsupported: q.get("on_unsupported").map(|s| Value::String(s.clone())),
                source: Source::File {
                    path: file.path().to_owned(),
                    format,
                    max_item_bytes: state.max_body_bytes,
                },
            };
            upload = Some(file);
            spec
        }
    };
    let id = state.engine.start_job(spec).await?;
    drop(upload);
    let status = state.engine.job_status(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/v1/sync-jobs/{id}"))],
        Json(status),
    )
        .into_response())
}

/// The campaign (required) and targets (default: every upstream the campaign maps) of an upload.
fn campaign_and_targets(state: &AppState, q: &BTreeMap<String, String>) -> Result<(String, Vec<String>), ApiError> {
    let Some(campaign) = q.get("campaign") else {
        let mut p = Problems::default();
        p.push(
            "campaign",
            "is required: the campaign every code of the file belongs to",
        );
        return Err(ApiError::BadQuery(p));
    };
    let targets = match q.get("targets") {
        Some(t) => t
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        None => default_targets(state, campaign),
    };
    Ok((campaign.clone(), targets))
}

fn default_targets(state: &AppState, campaign: &str) -> Vec<String> {
    state.engine.targets_or_campaigns(campaign, Vec::new())
}

/// Writes the request body to a temporary file as it arrives.
async fn stream_to_file(body: Body, limit: u64) -> Result<tempfile::NamedTempFile, ApiError> {
    let io = |e: std::io::Error| ApiError::BadBody(format!("the upload could not be stored: {e}"));
    let file = tempfile::NamedTempFile::new().map_err(io)?;
    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file.reopen().map_err(io)?));
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(ApiError::TooLarge { limit: limit as usize });
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(file)
}

/// A JSON job: `{campaign, targets?, template?, on_unsupported?, codes | generate}`,
/// `{mirror: {campaign, to}}` or `{revoke: {campaign, codes?, targets?, delete?}}`.
fn json_spec(state: &AppState, value: Value) -> Result<JobSpec, ApiError> {
    const KEYS: [&str; 8] = [
        "campaign",
        "targets",
        "template",
        "on_unsupported",
        "codes",
        "generate",
        "mirror",
        "revoke",
    ];
    let mut p = Problems::default();
    let Value::Object(obj) = value else {
        p.push("body", "must be a JSON object");
        return Err(ApiError::Invalid(p));
    };
    refuse_unknown(&obj, "", &KEYS, "a sync job", &mut p);
    // Checked here, not only per code: a mirror has no code to check it with until it sends.
    if let Some(v) = obj.get("on_unsupported") {
        if !matches!(v.as_str(), Some("refuse" | "skip_field")) {
            p.push(
                "on_unsupported",
                format!("must be \"refuse\" or \"skip_field\", got {v}"),
            );
        }
    }
    let sources: Vec<&str> = ["codes", "generate", "mirror", "revoke"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if sources.len() != 1 {
        p.push(
            "codes",
            format!(
                "give exactly one of codes, generate, mirror or revoke (got {})",
                if sources.is_empty() {
                    "none".to_owned()
                } else {
                    sources.join(", ")
                }
            ),
        );
    }
    let strings = |v: &Value, field: &str, p: &mut Problems| -> Vec<String> {
        match v.as_array() {
            Some(a) if a.iter().all(Value::is_string) => {
                a.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            _ => {
                p.push(field, "must be a list of upstream names");
                Vec::new()
            }
        }
    };
    if let Some(revoke) = obj.get("revoke") {
        for key in ["campaign", "targets", "template", "codes", "generate", "on_unsupported"] {
            if obj.contains_key(key) {
                p.push(
                    key,
                    "is not taken with revoke (revoke names its campaign, codes and targets)",
                );
            }
        }
        let spec = revoke_spec(state, revoke, &mut p);
        return match spec {
            Some(spec) if p.is_empty() => Ok(spec),
            _ => Err(ApiError::Invalid(p)),
        };
    }
    if let Some(mirror) = obj.get("mirror") {
        for key in ["campaign", "targets", "template", "codes", "generate"] {
            if obj.contains_key(key) {
                p.push(key, "is not taken with mirror (mirror names its campaign and targets)");
            }
        }
        match mirror.as_object() {
            Some(fields) => refuse_unknown(fields, "mirror", &["campaign", "to"], "a mirror", &mut p),
            None => p.push("mirror", "must be an object: {\"campaign\": ..., \"to\": [...]}"),
        }
        let campaign = mirror.get("campaign").and_then(Value::as_str);
        if campaign.is_none() {
            p.push("mirror.campaign", "is required: the campaign whose codes to mirror");
        }
        let to = match mirror.get("to") {
            Some(v) => strings(v, "mirror.to", &mut p),
            None => {
                p.push("mirror.to", "is required: the upstreams to mirror the codes to");
                Vec::new()
            }
        };
        if !p.is_empty() {
            return Err(ApiError::Invalid(p));
        }
        return Ok(JobSpec {
            campaign: campaign.unwrap_or_default().to_owned(),
            targets: to,
            template: Map::new(),
            on_unsupported: obj.get("on_unsupported").cloned(),
            source: Source::Mirror,
        });
    }
    let campaign = match obj.get("campaign").and_then(Value::as_str) {
        Some(c) => c.to_owned(),
        None => {
            p.push("campaign", "is required: the campaign every code of the job belongs to");
            String::new()
        }
    };
    let targets = match obj.get("targets") {
        Some(v) => strings(v, "targets", &mut p),
        None => default_targets(state, &campaign),
    };
    let template = match obj.get("template") {
        None => Map::new(),
        Some(Value::Object(t)) => {
            for key in ["code", "campaign", "targets"] {
                if t.contains_key(key) {
                    p.push(
                        format!("template.{key}"),
                        "is set per job or per code, not in the template",
                    );
                }
            }
            t.clone()
        }
        Some(_) => {
            p.push("template", "must be an object of promo-code fields every code shares");
            Map::new()
        }
    };
    let source = match (obj.get("codes"), obj.get("generate")) {
        (Some(Value::Array(codes)), _) => {
            // Each item is a code: held to a create's body limit, as an upload's line is.
            for (i, code) in codes.iter().enumerate() {
                let size = json_size(code);
                if size > state.max_body_bytes {
                    p.push(
                        format!("codes[{i}]"),
                        format!(
                            "is {size} bytes: a code may be at most server.max_body_bytes ({} bytes), as in a create",
                            state.max_body_bytes
                        ),
                    );
                }
            }
            Some(Source::Inline(codes.clone()))
        }
        (Some(_), _) => {
            p.push("codes", "must be a list of codes (strings or objects)");
            None
        }
        (None, Some(g)) => {
            match g.as_object() {
                Some(fields) => refuse_unknown(fields, "generate", &["count", "pattern"], "a generator", &mut p),
                None => p.push("generate", "must be an object: {\"count\": ..., \"pattern\": ...}"),
            }
            let count = g
                .get("count")
                .and_then(Value::as_u64)
                .filter(|n| (1..=MAX_GENERATE).contains(n));
            if count.is_none() {
                p.push("generate.count", format!("must be an integer from 1 to {MAX_GENERATE}"));
            }
            let pattern = match g.get("pattern").and_then(Value::as_str).map(Pattern::parse) {
                Some(Ok(pattern)) => Some(pattern),
                Some(Err(rule)) => {
                    p.push("generate.pattern", rule);
                    None
                }
                None => {
                    p.push("generate.pattern", "is required, e.g. \"SPRING-{random:8}\"");
                    None
                }
            };
            // Drawing most of a pattern's codes would take ever more draws per new code (and
            // hold the intake for as long): at most half of them may be asked for.
            if let (Some(count), Some(pattern)) = (count, &pattern) {
                let capacity = pattern.capacity();
                if count > capacity / 2 {
                    p.push(
                        "generate.count",
                        format!(
                            "the pattern `{pattern}` makes {capacity} codes; a generator may ask for at most half of them ({}), got {count}",
                            capacity / 2
                        ),
                    );
                }
            }
            count
                .zip(pattern)
                .filter(|_| p.is_empty())
                .map(|(count, pattern)| Source::Generate { count, pattern })
        }
        (None, None) => None,
    };
    match source {
        Some(source) if p.is_empty() => Ok(JobSpec {
            campaign,
            targets,
            template,
            on_unsupported: obj.get("on_unsupported").cloned(),
            source,
        }),
        _ => Err(ApiError::Invalid(p)),
    }
}

/// A revoke job: `{campaign, codes?, targets?, delete?}`, every problem named under `revoke.`.
fn revoke_spec(state: &AppState, revoke: &Value, p: &mut Problems) -> Option<JobSpec> {
    let Some(fields) = revoke.as_object() else {
        p.push(
            "revoke",
            "must be an object: {\"campaign\": ..., \"codes\": [...], \"targets\": [...], \"delete\": false}",
        );
        return None;
    };
    refuse_unknown(
        fields,
        "revoke",
        &["campaign", "codes", "targets", "delete"],
        "a revoke job",
        p,
    );
    let campaign = match fields.get("campaign") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        _ => {
            p.push("revoke.campaign", "is required: the campaign whose codes to revoke");
            String::new()
        }
    };
    // An optional member is absent or of its type: `null` is refused, as in every job.
    let codes = match fields.get("codes") {
        None => None,
        Some(Value::Array(items)) if items.is_empty() => {
            p.push(
                "revoke.codes",
                "must name at least one code, or be left out to revoke every code of the campaign",
            );
            None
        }
        Some(Value::Array(items)) => {
            let mut codes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(code) if !code.is_empty() => codes.push(code.to_owned()),
                    _ => p.push(format!("revoke.codes[{i}]"), "must be a code (a non-empty string)"),
                }
            }
            Some(codes)
        }
        Some(_) => {
            p.push("revoke.codes", "must be a list of codes (strings)");
            None
        }
    };
    let targets = match fields.get("targets") {
        None => default_targets(state, &campaign),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Some(_) => {
            p.push("revoke.targets", "must be a list of upstream names");
            Vec::new()
        }
    };
    let delete = match fields.get("delete") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.push("revoke.delete", "must be true or false");
            false
        }
    };
    Some(JobSpec {
        campaign,
        targets,
        template: Map::new(),
        on_unsupported: None,
        source: Source::Revoke { codes, delete },
    })
}

/// Refuses every key of `obj` (at `path`, empty for the top level) that `known` does not list,
/// naming its path: an ignored key is a setting the client believes in and the job does not
/// honour.
fn refuse_unknown(obj: &Map<String, Value>, path: &str, known: &[&str], what: &str, p: &mut Problems) {
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        p.push(at, format!("is not a field of {what} (known: {})", known.join(", ")));
    }
}

/// The length of a value written as compact JSON, counted without writing it anywhere.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn job_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("/v1/sync-jobs/{id}")))
}

/// Get a sync job's state and progress
///
/// `GET /v1/sync-jobs/{id}`: state, per-target counts and ETA.
#[utoipa::path(get, path = "/v1/sync-jobs/{id}", operation_id = "getSyncJob", tag = "sync-jobs", security(("api_key" = ["sync-jobs:read"])),
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job's state and per-target progress", body = crate::http::schemas::JobStatusDoc),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn status(State(state): State<AppState>, Segment(id): Segment) -> Result<Json<JobStatus>, ApiError> {
    Ok(Json(state.engine.job_status(job_id(&id)?).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ResultPage {
    #[schema(value_type = Vec<crate::http::schemas::JobResultDoc>)]
    items: Vec<JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List a sync job's results
///
/// `GET /v1/sync-jobs/{id}/results?status=&upstream=&limit=&cursor=`: one line per code and
/// target, in the job's order. With `Accept: text/csv` every result (not one page) is streamed
/// as RFC 4180 CSV (`code,upstream,status,vendor_id,error_kind,error_message`; a cell a
/// spreadsheet would run as a formula is prefixed with `'`), with `Accept: application/x-ndjson`
/// as one JSON line each; `limit` and `cursor` are then refused, as there are no pages.
#[utoipa::path(get, path = "/v1/sync-jobs/{id}/results", operation_id = "listSyncJobResults", tag = "sync-jobs", security(("api_key" = ["sync-jobs:read"])),
    params(
        ("id" = i64, Path, description = "The job's id"),
        ("status" = Option<crate::http::schemas::StatusDoc>, Query, description = "Only results in this state (not would_send)"),
        ("upstream" = Option<String>, Query, description = "Only results of this upstream"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
        ("cursor" = Option<String>, Query, min_length = 1, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, description = "A page of results, in the job's order; or every result, as CSV or NDJSON",
            content((ResultPage = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn results(
    State(state): State<AppState>,
    Segment(id): Segment,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use base64::Engine as _;
    let id = job_id(&id)?;
    let q = query(raw.as_deref(), &["status", "upstream", "limit", "cursor"])?;
    let status = status_param(&q)?;
    if let Some(format) = export_format(&headers) {
        let mut p = Problems::default();
        for key in ["limit", "cursor"].into_iter().filter(|k| q.contains_key(*k)) {
            p.push(
                key,
                "an export streams every result: limit and cursor page the JSON answer only",
            );
        }
        if !p.is_empty() {
            return Err(ApiError::BadQuery(p));
        }
        // The job must exist before the answer starts: a 404 cannot follow a 200's first line.
        state.engine.job_status(id).await?;
        let chunks = crate::export::stream(state.engine.clone(), id, status, q.get("upstream").cloned(), format);
        let body = Body::from_stream(futures::StreamExt::map(chunks, |c| c.map_err(std::io::Error::other)));
        return Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response());
    }
    // The cursor of a result line is its (position, upstream).
    let mut paging = q.clone();
    let after = match paging.remove("cursor") {
        None => (0, String::new()),
        Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (seq, upstream) = s.strip_prefix("after:")?.split_once(':')?;
                Some((seq.parse().ok()?, upstream.to_owned()))
            })
            .ok_or_else(|| {
                let mut p = Problems::default();
                p.push(
                    "cursor",
                    "is not a cursor this API gave out (use next_cursor as it came)",
                );
                ApiError::BadQuery(p)
            })?,
    };
    let (limit, _) = page(&paging)?;
    let mut items = state
        .engine
        .job_results(id, status, q.get("upstream").cloned(), after, limit + 1)
        .await?;
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        let last = items.last().expect("limit is at least 1");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{}:{}", last.seq, last.upstream))
    });
    Ok(Json(ResultPage { items, next_cursor }).into_response())
}

/// The export an `Accept` header asks for, if any: `text/csv` or `application/x-ndjson`,
/// whichever of the three the client lists first (JSON, or anything, gets the JSON page).
fn export_format(headers: &HeaderMap) -> Option<crate::export::Format> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for media in accept.split(',') {
        match media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "text/csv" => return Some(crate::export::Format::Csv),
            "application/x-ndjson" => return Some(crate::export::Format::Ndjson),
            "application/json" | "application/*" | "*/*" => return None,
            _ => {}
        }
    }
    None
}

/// Retry a sync job's failed deliveries
///
/// `POST /v1/sync-jobs/{id}/retry`: sends the failed, throttled and cancelled deliveries again.
#[utoipa::path(post, path = "/v1/sync-jobs/{id}/retry", operation_id = "retrySyncJob", tag = "sync-jobs", security(("api_key" = ["sync-jobs:write"])),
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 202, description = "The job, running again", body = crate::http::schemas::JobStatusDoc),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn retry(State(state): State<AppState>, Segment(id): Segment) -> Result<Response, ApiError> {
    let status = state.engine.retry_job(job_id(&id)?).await?;
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

/// Cancel a sync job
///
/// `POST /v1/sync-jobs/{id}/cancel`: stops a running job once its calls in flight are recorded.
#[utoipa::path(post, path = "/v1/sync-jobs/{id}/cancel", operation_id = "cancelSyncJob", tag = "sync-jobs", security(("api_key" = ["sync-jobs:write"])),
    params(("id" = i64, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job, cancelled", body = crate::http::schemas::JobStatusDoc),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn cancel(State(state): State<AppState>, Segment(id): Segment) -> Result<Json<JobStatus>, ApiError> {
    Ok(Json(state.engine.cancel_job(job_id(&id)?).await?))
}
