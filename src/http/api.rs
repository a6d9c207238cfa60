//! The HTTP API: routes, extraction, and the status codes that summarise a fan-out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use promo_adapters::Problems;
use serde::Serialize;

use crate::auth::{Auth, Credentials};
use crate::domain::request::OpKind;
use crate::engine::{CreateResponse, Engine, Status};
use crate::http::error::ApiError;
use crate::http::telemetry::AccessNote;

pub fn router(engine: Arc<Engine>, server: &crate::config::Server) -> Router {
    let max_body_bytes = server.max_body_bytes;
    let (routes, doc) = crate::http::routes::table().split_for_parts();
    crate::http::openapi::keep_generated(doc);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Gateway API keys and scopes (src/gateway_auth.rs); open when none is configured.
        .layer(axum::middleware::from_fn_with_state(
            crate::http::gateway_auth::Keys::from_server(server),
            crate::http::gateway_auth::require,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        // Outermost: a body's deadline runs from when its headers have arrived.
        .layer(axum::middleware::from_fn_with_state(
            crate::http::slow_clients::BodyTimeouts::of(server),
            crate::http::slow_clients::body_deadline,
        ))
        .with_state({
            // A gateway with no API key describes no security requirement: it checks none.
            let open = server.api_keys.is_empty();
            let names = engine.validation_context();
            let description = crate::http::openapi::served(open, names.campaigns, names.upstreams);
            AppState {
                engine,
                max_body_bytes,
                max_upload_bytes: server.max_upload_bytes,
                max_job_json_bytes: server.max_job_json_bytes,
                description,
            }
        })
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_upload_bytes: u64,
    pub(crate) max_job_json_bytes: usize,
    /// The description `GET /openapi.json` serves, this gateway's own (see
    /// [`crate::http::openapi::served`]).
    pub(crate) description: axum::body::Bytes,
}

/// Reads a query string of known parameters. Every problem names the parameter at fault (a
/// misspelt `dryrun` is named as such, not reported as a bad `dry_run`).
/// A route's one path parameter. axum answers a segment that is not UTF-8 with a plain-text
/// 400 of its own; no code or id can be spelt that way, so here it is the same 404 problem as
/// any other name the gateway does not hold.
pub(crate) struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(segment)) => Ok(Segment(segment)),
            Err(_) => Err(ApiError::NotFound(parts.uri.path().to_owned())),
        }
    }
}

pub(crate) fn query(raw: Option<&str>, known: &[&str]) -> Result<BTreeMap<String, String>, ApiError> {
    let mut p = Problems::default();
    let mut out = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !known.contains(&key.as_ref()) {
            p.push(
                key.as_ref(),
                if known.is_empty() {
                    "is not a query parameter of this endpoint, which takes none".to_owned()
                } else {
                    format!(
                        "is not a query parameter of this endpoint (known: {})",
                        known.join(", ")
                    )
                },
            );
        } else if out.insert(key.to_string(), value.to_string()).is_some() {
            p.push(key.as_ref(), "is given more than once");
        }
    }
    if p.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::BadQuery(p))
    }
}

/// Page size and position of a listing: `limit` (1 to 1000, default 100) and an opaque `cursor`
/// from the previous page's `next_cursor`.
pub(crate) fn page(q: &BTreeMap<String, String>) -> Result<(usize, i64), ApiError> {
    let mut p = Problems::default();
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                p.push("limit", format!("must be an integer from 1 to 1000, got `{l}`"));
                0
            }
        },
    };
    let after = match q.get("cursor") {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(n) => n,
            None => {
                p.push(
                    "cursor",
                    "is not a cursor this API gave out (use next_cursor as it came)",
                );
                0
            }
        },
    };
    if p.is_empty() {
        Ok((limit, after))
    } else {
        Err(ApiError::BadQuery(p))
    }
}

pub(crate) fn encode_cursor(after: i64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("after:")?.parse().ok()
}

/// A `status` query parameter: one of the delivery states.
pub(crate) fn status_param(q: &BTreeMap<String, String>) -> Result<Option<Status>, ApiError> {
    q.get("status")
        .map(|s| {
            Status::from_name(s).filter(|s| *s != Status::WouldSend).ok_or_else(|| {
                let mut p = Problems::default();
                let known: Vec<&str> = Status::ALL
                    .iter()
                    .filter(|s| **s != Status::WouldSend)
                    .map(|s| s.as_str())
                    .collect();
                p.push("status", format!("must be one of {}, got `{s}`", known.join(", ")));
                ApiError::BadQuery(p)
            })
        })
        .transpose()
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CodePage {
    #[schema(value_type = Vec<crate::http::schemas::CodeRecordDoc>)]
    items: Vec<crate::domain::code::CodeRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// List the ledger's codes
///
/// `GET /v1/promo-codes?campaign=&upstream=&status=&limit=&cursor=`: the ledger's codes, oldest
/// first, with their state on every target.
#[utoipa::path(get, path = "/v1/promo-codes", operation_id = "listPromoCodes", tag = "promo-codes", security(("api_key" = ["promo-codes:read"])),
    params(
        ("campaign" = Option<String>, Query, description = "Only codes of this campaign"),
        ("upstream" = Option<String>, Query, description = "Only codes with a delivery to this upstream"),
        ("status" = Option<crate::http::schemas::StatusDoc>, Query, description = "Only codes with a delivery in this state (not would_send)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, default 100"),
        ("cursor" = Option<String>, Query, min_length = 1, description = "The previous page's next_cursor"),
    ),
    responses(
        (status = 200, description = "A page of codes, oldest first", body = CodePage),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn list_codes(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CodePage>, ApiError> {
    let q = query(raw.as_deref(), &["campaign", "upstream", "status", "limit", "cursor"])?;
    let (limit, after) = page(&q)?;
    let filter = crate::domain::code::CodeFilter {
        campaign: q.get("campaign").cloned(),
        upstream: q.get("upstream").cloned(),
        status: status_param(&q)?,
        after,
        limit: limit + 1,
    };
    let mut rows = state
        .engine
        .store
        .codes(filter)
        .await
        .map_err(crate::engine::ledger_error)?;
    let next_cursor = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        encode_cursor(rows.last().map_or(0, |(id, _)| *id))
    });
    Ok(Json(CodePage {
        items: rows.into_iter().map(|(_, r)| r).collect(),
        next_cursor,
    }))
}

/// Get a code and its state on every target
///
/// `GET /v1/promo-codes/{code}?campaign=`: one code (matched without regard to case) and its
/// state on every upstream.
#[utoipa::path(get, path = "/v1/promo-codes/{code}", operation_id = "getPromoCode", tag = "promo-codes", security(("api_key" = ["promo-codes:read"])),
    params(
        ("code" = String, Path, description = "The code, matched without regard to case"),
        ("campaign" = Option<String>, Query, description = "The campaign, when the code is held in several"),
    ),
    responses(
        (status = 200, description = "The code and its state on every target", body = crate::http::schemas::CodeRecordDoc),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn code(
    State(state): State<AppState>,
    Segment(code): Segment,
    RawQuery(raw): RawQuery,
) -> Result<Json<crate::domain::code::CodeRecord>, ApiError> {
    Ok(Json(one_code(&state, code, raw.as_deref()).await?))
}

/// Read a code back from every vendor
///
/// `GET /v1/promo-codes/{code}/live?campaign=`: what each vendor the ledger delivered the code
/// to holds of it now, read from the vendor (every read under the upstream's rate budget).
#[utoipa::path(get, path = "/v1/promo-codes/{code}/live", operation_id = "getLivePromoCode", tag = "promo-codes", security(("api_key" = ["promo-codes:read"])),
    params(
        ("code" = String, Path, description = "The code, matched without regard to case"),
        ("campaign" = Option<String>, Query, description = "The campaign, when the code is held in several"),
    ),
    responses(
        (status = 200, description = "Each target's copy of the code, as its vendor answered (a failed read is a target's `unknown` state, not an error of the request)", body = crate::http::schemas::LiveResponseDoc),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn live(
    State(state): State<AppState>,
    Segment(code): Segment,
    RawQuery(raw): RawQuery,
) -> Result<Json<crate::domain::live::LiveResponse>, ApiError> {
    let record = one_code(&state, code, raw.as_deref()).await?;
    Ok(Json(state.engine.live(&record).await))
}

/// The one code `?campaign=` picks among those the ledger holds under a name (any case).
async fn one_code(
    state: &AppState,
    code: String,
    raw: Option<&str>,
) -> Result<crate::domain::code::CodeRecord, ApiError> {
    let q = query(raw, &["campaign"])?;
    let mut found = state
        .engine
        .store
        .code(code.clone(), q.get("campaign").cloned())
        .await
        .map_err(crate::engine::ledger_error)?;
    match found.len() {
        0 => Err(ApiError::NotFound(format!("/v1/promo-codes/{code}"))),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::AmbiguousCode {
            code,
            campaigns: found
                .into_iter()
                .map(|c| c.campaign.unwrap_or_else(|| "(no campaign: ?campaign=)".into()))
                .collect(),
        }),
    }
}

/// Reads `?dry_run=true|false`, the only query parameter of a create.
fn dry_run(raw: Option<&str>) -> Result<bool, ApiError> {
    match query(raw, &["dry_run"])?.get("dry_run").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            let mut p = Problems::default();
            p.push("dry_run", format!("must be true or false, got `{other}`"));
            Err(ApiError::BadQuery(p))
        }
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

/// Why a write's body could not be read.
fn body_error(state: &AppState, e: BytesRejection) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge {
            limit: state.max_body_bytes,
        },
        _ => ApiError::BadBody(e.body_text()),
    }
}

/// An answer with what its access line adds (the code, each target's outcome).
fn noted(mut response: Response, note: AccessNote) -> Response {
    response.extensions_mut().insert(note);
    response
}

/// An operation's answer, marked when it replays an earlier one (same Idempotency-Key).
fn answered(status: StatusCode, body: impl Serialize, replayed: bool) -> Response {
    let mut response = (status, Json(body)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

/// Create a promo code on every target
///
/// `POST /v1/promo-codes[?dry_run=true]`: creates one code on every target.
#[utoipa::path(post, path = "/v1/promo-codes", operation_id = "createPromoCode", tag = "promo-codes", security(("api_key" = ["promo-codes:write"])),
    params(
        ("dry_run" = Option<bool>, Query, description = "Translate and show each request without sending anything"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a repeat replays the first answer"),
    ),
    request_body(content = crate::http::openapi::PromoCodeRequestDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Dry run: every target would be sent the request shown", body = crate::http::schemas::CreateResponseDoc),
        (status = 201, description = "The code is on every target (created now or before)", body = crate::http::schemas::CreateResponseDoc,
            headers(("idempotent-replayed" = String, description = "`true` when this is the replay of an earlier answer")),
            links(
                ("getPromoCode" = (operation_id = "getPromoCode", parameters(("code" = "$response.body#/code")), description = "The code and its state on every target")),
                ("getLivePromoCode" = (operation_id = "getLivePromoCode", parameters(("code" = "$response.body#/code")), description = "What each vendor holds of it now")),
                ("getRequest" = (operation_id = "getRequest", parameters(("id" = "$response.body#/request_id")), description = "This create as the ledger recorded it")),
                ("revokePromoCode" = (operation_id = "revokePromoCode", parameters(("code" = "$response.body#/code")), description = "Revoke it everywhere")),
            )),
        (status = 202, description = "The targets not yet there are being delivered by another request or sync job", body = crate::http::schemas::CreateResponseDoc),
        (status = 207, description = "Some targets have the code, or (dry run) some could not be sent to", body = crate::http::schemas::CreateResponseDoc),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 408, response = crate::http::openapi::BodyTimeout),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 413, response = crate::http::openapi::TooLarge),
        (status = 422, description = "Nothing could be sent to any target (per-target results), or the request is invalid or its Idempotency-Key was used with another body (problem)",
            content((crate::http::schemas::CreateResponseDoc = "application/json"), (crate::http::openapi::ProblemDoc = "application/problem+json"))),
        (status = 502, description = "Calls were made and no target has the code", body = crate::http::schemas::CreateResponseDoc),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    caller: Option<axum::Extension<crate::http::gateway_auth::Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dry_run = dry_run(query.as_deref())?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| body_error(&state, e))?;
    let value = promo_adapters::json::parse(&body)?;
    let requested_by = caller.map(|axum::Extension(c)| c.0);
    let answer = state.engine.create(&value, dry_run, key, requested_by).await?;
    let status = summary_status(&answer.response);
    let note = AccessNote::of(&answer.response.code, &answer.response.results);
    Ok(noted(answered(status, answer.response, answer.replayed), note))
}

/// Revoke a promo code everywhere
///
/// `POST /v1/promo-codes/{code}/revoke[?dry_run=true]`: makes the code unredeemable on every
/// target that holds it, and never sends it anywhere again.
#[utoipa::path(post, path = "/v1/promo-codes/{code}/revoke", operation_id = "revokePromoCode", tag = "promo-codes", security(("api_key" = ["promo-codes:write"])),
    params(
        ("code" = String, Path, description = "The code, in any case"),
        ("dry_run" = Option<bool>, Query, description = "Plan and show each exact request without sending anything"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a repeat replays the first answer"),
    ),
    request_body(content = crate::http::openapi::RevokeRequestDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Every target is revoked (now or before), not found at the vendor, or never held the code; or (dry run) every call could be sent", body = crate::http::schemas::RevokeResponseDoc,
            headers(("idempotent-replayed" = String, description = "`true` when this is the replay of an earlier answer"))),
        (status = 202, description = "The remaining targets are being revoked by another request", body = crate::http::schemas::RevokeResponseDoc),
        (status = 207, description = "Some targets are revoked and some are not", body = crate::http::schemas::RevokeResponseDoc),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 408, response = crate::http::openapi::BodyTimeout),
        (status = 409, response = crate::http::openapi::Conflict),
        (status = 413, response = crate::http::openapi::TooLarge),
        (status = 422, description = "No call could be made at any target (per-target results), or the request is invalid or its Idempotency-Key was used with another body (problem)",
            content((crate::http::schemas::RevokeResponseDoc = "application/json"), (crate::http::openapi::ProblemDoc = "application/problem+json"))),
        (status = 502, description = "Calls were made and no target is revoked", body = crate::http::schemas::RevokeResponseDoc),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Segment(code): Segment,
    RawQuery(query): RawQuery,
    caller: Option<axum::Extension<crate::http::gateway_auth::Caller>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let dry_run = dry_run(query.as_deref())?;
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| body_error(&state, e))?;
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        promo_adapters::json::parse(&body)?
    };
    let requested_by = caller.map(|axum::Extension(c)| c.0);
    let answer = state.engine.revoke(&code, &value, dry_run, key, requested_by).await?;
    let status = revoke_status(&answer.response);
    let note = AccessNote::of(&answer.response.code, &answer.response.results);
    Ok(noted(answered(status, answer.response, answer.replayed), note))
}

/// The status that sums up a revoke: 200 when no target holds a live copy the revoke could
/// reach (revoked now or before, not found at the vendor, never delivered there), 202 when the
/// rest is another request's, 207 mixed, 502 none although calls were made, 422 when no call
/// could even be made. A dry run is 200 when every call could be made, 207 some, 422 none.
pub fn revoke_status(response: &crate::engine::RevokeResponse) -> StatusCode {
    let count = |pick: fn(Status) -> bool| response.results.iter().filter(|r| pick(r.status)).count();
    let total = response.results.len();
    let not_sent = count(|s| matches!(s, Status::Unsupported | Status::Invalid | Status::Unconfigured));
    if response.dry_run {
        return if not_sent == 0 {
            StatusCode::OK
        } else if not_sent < total {
            StatusCode::MULTI_STATUS
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
    }
    let done = count(|s| OpKind::Revoke.succeeded(s));
    let pending = count(|s| s == Status::Pending);
    if done == total {
        StatusCode::OK
    } else if pending > 0 && done + pending == total {
        StatusCode::ACCEPTED
    } else if done > 0 || pending > 0 {
        StatusCode::MULTI_STATUS
    } else if not_sent == total {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_GATEWAY
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Recorded {
    request_id: i64,
    code: String,
    /// `create` or `revoke`.
    operation: String,
    /// The name of the API key that asked; absent on an open gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
    received_at: String,
    finished: bool,
    /// Targets still waiting for their answer.
    pending: Vec<String>,
    #[schema(value_type = Vec<crate::http::schemas::TargetResultDoc>)]
    results: Vec<crate::engine::TargetResult>,
}

/// Get what the ledger knows of a create or revoke
///
/// `GET /v1/requests/{id}`: what the ledger knows of a create or revoke, also while it is in
/// flight.
#[utoipa::path(get, path = "/v1/requests/{id}", operation_id = "getRequest", tag = "promo-codes", security(("api_key" = ["promo-codes:read"])),
    params(("id" = i64, Path, description = "The create's request_id")),
    responses(
        (status = 200, description = "The create and its results so far", body = Recorded),
        (status = 404, response = crate::http::openapi::NotFound),
        (status = 503, response = crate::http::openapi::LedgerUnavailable),
    )
)]
pub(crate) async fn recorded(State(state): State<AppState>, Segment(id): Segment) -> Result<Json<Recorded>, ApiError> {
    let not_found = || ApiError::NotFound(format!("/v1/requests/{id}"));
    let request_id: i64 = id.parse().map_err(|_| not_found())?;
    let stored = state.engine.recorded(request_id).await?.ok_or_else(not_found)?;
    Ok(Json(Recorded {
        request_id: stored.request_id,
        code: stored.code,
        operation: stored.operation.as_str().to_owned(),
        requested_by: stored.requested_by,
        received_at: crate::domain::time::format(&stored.received_at),
        finished: stored.finished,
        pending: stored.pending,
        results: stored.results,
    }))
}

/// The status that sums up every target: 201 the code is on every target (created now or
/// before), 202 the rest is being delivered by another request or job, 207 some, 502 none
/// although calls were made, 422 when no call could even be made. A dry run that could send to every target
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
    // A code the vendor already had is on the vendor all the same.
    let delivered = count(Status::Created) + count(Status::AlreadyExists);
    let pending = count(Status::Pending);
    let not_sent = count(Status::Unsupported) + count(Status::Invalid) + count(Status::Unconfigured);
    if delivered == total {
        StatusCode::CREATED
    } else if pending > 0 && delivered + pending == total {
        StatusCode::ACCEPTED
    } else if delivered > 0 || pending > 0 {
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

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    #[schema(value_type = crate::http::openapi::HealthStatus)]
    status: &'static str,
    ledger: LedgerHealth,
    upstreams: BTreeMap<String, UpstreamHealth>,
}

/// Whether the ledger can record new work: when it cannot, creates are refused with 503 and
/// nothing is sent.
#[derive(Serialize, utoipa::ToSchema)]
struct LedgerHealth {
    #[schema(value_type = crate::http::openapi::HealthStatus)]
    status: &'static str,
    /// Where the ledger lives: `sqlite` (this process's file) or `postgres` (a database every
    /// replica shares).
    backend: &'static str,
    /// Why the ledger cannot write, while it cannot (a full disk, a read-only file).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    /// A database ledger: whether its connections are encrypted, as the server reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    /// The TLS protocol of its connections (`TLSv1.3`), when encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_version: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct UpstreamHealth {
    #[schema(value_type = crate::http::schemas::VendorKindDoc)]
    vendor: promo_adapters::VendorKind,
    configured: bool,
    /// Environment variables to set, when not configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    /// OAuth2 upstreams: token fetches so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_fetches: Option<u64>,
    /// RFC 3339: the end of the pause the vendor asked for with Retry-After, while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_until: Option<String>,
    /// `true` while the pause is one the vendor asked to last longer than the gateway's maximum
    /// (one hour), cut to it: the gateway is then `degraded`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pause_capped: bool,
    #[schema(value_type = crate::http::openapi::BreakerStateDoc)]
    breaker: crate::upstream::BreakerState,
    /// Where the upstream's rate budget lives: `local` (this process's own) or `redis` (one
    /// budget shared by every replica).
    rate_limit_backend: &'static str,
    /// A shared budget (`redis`): whether its connection is TLS (`rediss://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_tls: Option<bool>,
    /// Why the upstream's rate budget cannot be asked (a shared budget whose backend does not
    /// answer): no call goes out until it can.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_problem: Option<String>,
    /// RFC 3339: when the open breaker lets a trial call through.
    #[serde(skip_serializing_if = "Option::is_none")]
    breaker_open_until: Option<String>,
    /// With `serve --sandbox`: the simulated vendor this upstream's calls go to (its base URL);
    /// no real vendor is called.
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<String>,
}

/// Health of the gateway, its ledger and its upstreams
///
/// `GET /health`: every upstream's configuration, pause and breaker. `degraded` while any
/// upstream lacks credentials, has a breaker that is not closed, or sits in a Retry-After pause
/// the gateway cut to its maximum.
#[utoipa::path(get, path = "/health", operation_id = "getHealth", tag = "operations", security(()),
    responses(
        (status = 200, description = "The gateway and its upstreams", body = Health),
        (status = 400, response = crate::http::openapi::BadRequest),
    )
)]
pub(crate) async fn health(State(state): State<AppState>, RawQuery(raw): RawQuery) -> Result<Json<Health>, ApiError> {
    query(raw.as_deref(), &[])?;
    let mut upstreams: BTreeMap<String, UpstreamHealth> = BTreeMap::new();
    for u in state.engine.upstreams() {
        let (configured, missing, token_fetches) = match &u.credentials {
            Credentials::Ready(Auth::OAuth2(source)) => (true, Vec::new(), Some(source.fetches())),
            Credentials::Ready(_) => (true, Vec::new(), None),
            Credentials::Missing(vars) => (false, vars.clone(), None),
        };
        let rfc3339 = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        let (breaker, breaker_open_until) = u.breaker();
        let pause = u.pause_state().await;
        upstreams.insert(
            u.name.clone(),
            UpstreamHealth {
                vendor: u.vendor,
                configured,
                missing,
                token_fetches,
                paused_until: pause.as_ref().ok().copied().flatten().map(rfc3339),
                rate_limit_backend: u.rate_limit_backend(),
                rate_limit_tls: u.rate_limit_tls(),
                rate_limit_problem: pause.err().map(|e| e.to_string()),
                pause_capped: u.pause_capped(),
                breaker,
                breaker_open_until: breaker_open_until.map(rfc3339),
                sandbox: u.sandbox.as_ref().map(|url| url.to_string()),
            },
        );
    }
    let problem = state.engine.ledger_problem().await;
    let transport = match problem {
        None => state.engine.ledger_transport().await,
        Some(_) => None,
    };
    let ledger = LedgerHealth {
        status: if problem.is_some() { "degraded" } else { "ok" },
        backend: state.engine.ledger_backend(),
        problem,
        tls: transport.as_ref().map(|t| t.tls),
        tls_version: transport.and_then(|t| t.version),
    };
    // A pause is the vendor's pace, not a fault, unless it asked for more than the gateway waits.
    let status = if ledger.problem.is_none()
        && upstreams.values().all(|u| {
            u.configured
                && u.breaker == crate::upstream::BreakerState::Closed
                && !u.pause_capped
                && u.rate_limit_problem.is_none()
        }) {
        "ok"
    } else {
        "degraded"
    };
    Ok(Json(Health {
        status,
        ledger,
        upstreams,
    }))
}
