//! The HTTP API: routes, extraction, and the status codes that summarise a fan-out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::auth::{Auth, Credentials};
use crate::engine::{CreateResponse, Engine, Status};
use crate::error::ApiError;

pub fn router(engine: Arc<Engine>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/promo-codes", post(create))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(AppState { engine, max_body_bytes })
}

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    max_body_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn create(
    State(state): State<AppState>,
    query: Result<Query<CreateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery {
        name: "dry_run",
        rule: format!("must be true or false ({})", e.body_text()),
    })?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: state.max_body_bytes,
        },
        _ => ApiError::BadBody(e.body_text()),
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::NotJson(e.to_string()))?;
    let response = state.engine.create(&value, query.dry_run).await?;
    Ok((summary_status(&response), Json(response)).into_response())
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
    let not_sent = response.results.iter().filter(|r| r.attempts == 0).count();
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
