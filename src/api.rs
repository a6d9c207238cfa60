//! The HTTP API: routes, extraction, and the status codes that summarise a fan-out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use promo_adapters::Problems;
use serde::Serialize;

use crate::auth::{Auth, Credentials};
use crate::engine::{CreateResponse, Engine, Status};
use crate::error::ApiError;

pub fn router(engine: Arc<Engine>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/promo-codes", post(create))
        .route("/v1/requests/{id}", get(recorded))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(AppState { engine, max_body_bytes })
}

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    max_body_bytes: usize,
}

/// Reads `?dry_run=true|false`, the only query parameter. Every problem names the parameter at
/// fault (a misspelt `dryrun` is named as such, not reported as a bad `dry_run`).
fn dry_run(raw: Option<&str>) -> Result<bool, ApiError> {
    let mut p = Problems::default();
    let mut dry_run = None;
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "dry_run" if dry_run.is_some() => p.push("dry_run", "is given more than once"),
            "dry_run" => match value.as_ref() {
                "true" => dry_run = Some(true),
                "false" => dry_run = Some(false),
                other => p.push("dry_run", format!("must be true or false, got `{other}`")),
            },
            other => p.push(other, "is not a query parameter of this endpoint (known: dry_run)"),
        }
    }
    if p.is_empty() {
        Ok(dry_run.unwrap_or(false))
    } else {
        Err(ApiError::BadQuery(p))
    }
}

/// The `Idempotency-Key` header, if any: visible ASCII, 1 to 255 characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| ApiError::BadIdempotencyKey)?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dry_run = dry_run(query.as_deref())?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: state.max_body_bytes,
        },
        _ => ApiError::BadBody(e.body_text()),
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::NotJson(e.to_string()))?;
    let answer = state.engine.create(&value, dry_run, key).await?;
    let status = summary_status(&answer.response);
    let mut response = (status, Json(answer.response)).into_response();
    if answer.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    Ok(response)
}

#[derive(Serialize)]
struct Recorded {
    request_id: i64,
    code: String,
    received_at: String,
    finished: bool,
    /// Targets still waiting for their answer.
    pending: Vec<String>,
    results: Vec<crate::engine::TargetResult>,
}

/// `GET /v1/requests/{id}`: what the ledger knows of a create, also while it is in flight.
async fn recorded(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Recorded>, ApiError> {
    let not_found = || ApiError::NotFound(format!("/v1/requests/{id}"));
    let request_id: i64 = id.parse().map_err(|_| not_found())?;
    let stored = state.engine.recorded(request_id).await?.ok_or_else(not_found)?;
    Ok(Json(Recorded {
        request_id: stored.request_id,
        code: stored.code,
        received_at: stored.received_at,
        finished: stored.finished,
        pending: stored.pending,
        results: stored.results,
    }))
}

/// The status that sums up every target: 201 all created, 207 some, 502 none although calls
/// were made, 422 when no call could even be made. A dry run that could send to every target
/// is 200, and 207 when some targets could not be sent to.
pub fn summary_status(response: &CreateResponse) -> StatusCode {
    let count = |s: Status| response.results.iter().filter(|r| r.status == s).count();
    let total = response.results.len();
    if response.dry_run {
        return if count(Status::WouldSend) == total {
            StatusCode::OK
        } else if count(Status::WouldSend) > 0 {
            StatusCode::MULTI_STATUS
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
    }
    let created = count(Status::Created);
    let not_sent = count(Status::Unsupported) + count(Status::Invalid) + count(Status::Unconfigured);
    if created == total {
        StatusCode::CREATED
    } else if created > 0 {
        StatusCode::MULTI_STATUS
    } else if not_sent == total {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_GATEWAY
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    upstreams: BTreeMap<String, UpstreamHealth>,
}

#[derive(Serialize)]
struct UpstreamHealth {
    vendor: promo_adapters::VendorKind,
    configured: bool,
    /// Environment variables to set, when not configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    /// OAuth2 upstreams: token fetches so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_fetches: Option<u64>,
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    let upstreams: BTreeMap<String, UpstreamHealth> = state
        .engine
        .upstreams()
        .map(|u| {
            let (configured, missing, token_fetches) = match &u.credentials {
                Credentials::Ready(Auth::OAuth2(source)) => (true, Vec::new(), Some(source.fetches())),
                Credentials::Ready(_) => (true, Vec::new(), None),
                Credentials::Missing(vars) => (false, vars.clone(), None),
            };
            (
                u.name.clone(),
                UpstreamHealth {
                    vendor: u.vendor,
                    configured,
                    missing,
                    token_fetches,
                },
            )
        })
        .collect();
    let status = if upstreams.values().all(|u| u.configured) {
        "ok"
    } else {
        "degraded"
    };
    Json(Health { status, upstreams })
}
