//! A request the API refuses, and the one place refusals become HTTP answers (RFC 9457
//! problem+json listing every field and rule).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use promo_adapters::Problems;
use serde_json::json;

/// A request the API refuses as a whole, before any upstream is called.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// The body did not arrive in full within its read timeout (`server.<key>`).
    #[error("the request body did not arrive within {limit_ms} ms")]
    BodyTimeout { limit_ms: u64, key: &'static str },
    #[error("the request is invalid: {0}")]
    Invalid(Problems),
    #[error("the query string is invalid: {0}")]
    BadQuery(Problems),
    #[error("no resource at {0}")]
    NotFound(String),
    #[error("the ledger holds no code `{code}` {}", in_campaign(.campaign))]
    NoSuchCode { code: String, campaign: Option<String> },
    #[error("the ledger is unavailable, so nothing was sent: {0}")]
    Ledger(String),
    #[error("a create with this Idempotency-Key (request {0}) is still being delivered; ask again later or GET /v1/requests/{0}")]
    IdempotencyInProgress(i64),
    #[error("this Idempotency-Key was used for request {0} with a different body")]
    IdempotencyKeyReused(i64),
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error(
        "the Content-Type `{0}` is not one this endpoint reads (application/json, application/x-ndjson, text/csv)"
    )]
    UnsupportedMediaType(String),
    #[error("the code clashes with one the ledger holds: {0}")]
    CodeConflict(crate::domain::code::CodeConflict),
    #[error("`{code}` is held in several campaigns ({}); name one with ?campaign=", campaigns.join(", "))]
    AmbiguousCode { code: String, campaigns: Vec<String> },
    #[error("sync job {id} is {state}; {action} is not possible")]
    JobState {
        id: i64,
        state: String,
        action: &'static str,
    },
    /// No API key, or one the gateway does not know (the key is never echoed).
    #[error("{}", if *presented { "the API key is not valid" } else { "this endpoint needs an API key: Authorization: Bearer <key>" })]
    Unauthorized { presented: bool },
    /// A known key without the route's scope.
    #[error("the API key `{key}` lacks the scope {scope}")]
    Forbidden { key: String, scope: &'static str },
}

/// Every refusal of the engine's, as the answer the API has always given it.
impl From<crate::domain::error::DomainError> for ApiError {
    fn from(e: crate::domain::error::DomainError) -> Self {
        use crate::domain::error::DomainError as D;
        match e {
            D::Invalid(problems) => ApiError::Invalid(problems),
            D::Unavailable(why) => ApiError::Ledger(why),
            D::IdempotencyInProgress(id) => ApiError::IdempotencyInProgress(id),
            D::IdempotencyKeyReused(id) => ApiError::IdempotencyKeyReused(id),
            D::CodeConflict(conflict) => ApiError::CodeConflict(conflict),
            D::NotFound(path) => ApiError::NotFound(path),
            D::NoSuchCode { code, campaign } => ApiError::NoSuchCode { code, campaign },
            D::JobState { id, state, action } => ApiError::JobState { id, state, action },
            D::UnreadableUpload(why) => ApiError::BadBody(why),
        }
    }
}

/// A JSON body that does not parse is a 400; one that repeats a key is a 422 problem naming
/// the key's path, like any other field the request gets wrong.
impl From<promo_adapters::json::JsonError> for ApiError {
    fn from(e: promo_adapters::json::JsonError) -> Self {
        match e {
            promo_adapters::json::JsonError::Syntax(e) => ApiError::NotJson(e.to_string()),
            promo_adapters::json::JsonError::DuplicateKey { path } => {
                let mut p = Problems::default();
                p.push(path, promo_adapters::json::DUPLICATE_RULE);
                ApiError::Invalid(p)
            }
        }
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotJson(_) | ApiError::BadBody(_) | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) | ApiError::NoSuchCode { .. } => StatusCode::NOT_FOUND,
            ApiError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::IdempotencyInProgress(_) => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::CodeConflict(_) | ApiError::AmbiguousCode { .. } | ApiError::JobState { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// The problem type, a stable name clients can branch on (RFC 9457 `type`).
    fn slug(&self) -> &'static str {
        match self {
            ApiError::NotJson(_) => "body-not-json",
            ApiError::TooLarge { .. } => "body-too-large",
            ApiError::BadBody(_) => "body-unreadable",
            ApiError::BodyTimeout { .. } => "body-timeout",
            ApiError::Invalid(_) => "invalid-promo-code",
            ApiError::BadQuery(_) => "invalid-query",
            ApiError::NotFound(_) | ApiError::NoSuchCode { .. } => "not-found",
            ApiError::Ledger(_) => "ledger-unavailable",
            ApiError::IdempotencyInProgress(_) => "idempotency-in-progress",
            ApiError::IdempotencyKeyReused(_) => "idempotency-key-reused",
            ApiError::BadIdempotencyKey => "bad-idempotency-key",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::CodeConflict(_) => "code-conflict",
            ApiError::AmbiguousCode { .. } => "ambiguous-code",
            ApiError::JobState { .. } => "job-state",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::NotJson(_) => "Body is not JSON",
            ApiError::TooLarge { .. } => "Body too large",
            ApiError::BadBody(_) => "Body unreadable",
            ApiError::BodyTimeout { .. } => "Body too slow",
            ApiError::Invalid(_) => "Invalid promo code",
            ApiError::BadQuery(_) => "Invalid query parameter",
            ApiError::NotFound(_) | ApiError::NoSuchCode { .. } => "Not found",
            ApiError::Ledger(_) => "Ledger unavailable",
            ApiError::IdempotencyInProgress(_) => "Create in progress",
            ApiError::IdempotencyKeyReused(_) => "Idempotency-Key reused",
            ApiError::BadIdempotencyKey => "Invalid Idempotency-Key",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::CodeConflict(_) => "Code conflict",
            ApiError::AmbiguousCode { .. } => "Ambiguous code",
            ApiError::JobState { .. } => "Sync job state",
            ApiError::Unauthorized { .. } => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
        }
    }

    /// Every refusal names the fields at fault, also when there is only one.
    fn problems(&self) -> Problems {
        let mut p = Problems::default();
        match self {
            ApiError::Invalid(problems) | ApiError::BadQuery(problems) => return problems.clone(),
            ApiError::NotJson(detail) => p.push("body", format!("must be a JSON object ({detail})")),
            ApiError::TooLarge { limit } => p.push("body", format!("must be at most {limit} bytes")),
            ApiError::BadBody(detail) => p.push("body", detail.clone()),
            ApiError::BodyTimeout { limit_ms, key } => p.push(
                "body",
                format!("must arrive in full within {limit_ms} ms of the headers (server.{key})"),
            ),
            ApiError::Ledger(detail) => p.push("ledger", detail.clone()),
            ApiError::IdempotencyInProgress(id) => p.push(
                "Idempotency-Key",
                format!("request {id} with this key has not finished"),
            ),
            ApiError::IdempotencyKeyReused(id) => p.push(
                "Idempotency-Key",
                format!("was used for request {id} with a different body"),
            ),
            ApiError::BadIdempotencyKey => p.push("Idempotency-Key", "must be 1 to 255 visible ASCII characters"),
            ApiError::NotFound(path) => p.push(
                "path",
                format!(
                    "`{path}` names nothing here (routes: POST|GET /v1/promo-codes, GET /v1/promo-codes/{{code}}, POST /v1/promo-codes/{{code}}/revoke, GET /v1/requests/{{id}}, POST /v1/sync-jobs, GET /v1/sync-jobs/{{id}}[/results], POST /v1/sync-jobs/{{id}}/retry|cancel, GET /health, GET /metrics, GET /openapi.json)"
                ),
            ),
            ApiError::NoSuchCode { campaign, .. } => p.push(
                "campaign",
                format!(
                    "the ledger holds no such code {}: name the campaign it was created in (GET /v1/promo-codes/{{code}} lists them)",
                    in_campaign(campaign)
                ),
            ),
            ApiError::MethodNotAllowed { method, .. } => p.push("method", format!("{method} is not allowed here")),
            ApiError::UnsupportedMediaType(t) => p.push(
                "Content-Type",
                format!("`{t}` is not application/json, application/x-ndjson or text/csv"),
            ),
            ApiError::CodeConflict(c) => p.push("code", c.to_string()),
            ApiError::AmbiguousCode { campaigns, .. } => p.push(
                "campaign",
                format!("is required: the code is held in {}", campaigns.join(", ")),
            ),
            ApiError::JobState { state, action, .. } => p.push("state", format!("is {state}; cannot {action}")),
            ApiError::Unauthorized { presented: false } => p.push("Authorization", "must be `Bearer <key>`"),
            ApiError::Unauthorized { presented: true } => p.push("Authorization", "names no key this gateway knows"),
            ApiError::Forbidden { scope, .. } => p.push("Authorization", format!("the key needs the scope {scope}")),
        }
        p
    }
}

/// RFC 9457 problem details, with `errors` listing each field and rule.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // RFC 6750 §3: how to authenticate, and why the key was refused.
        let challenge = match &self {
            ApiError::Unauthorized { presented: false } => Some("Bearer realm=\"promo-gateway\"".to_owned()),
            ApiError::Unauthorized { presented: true } => {
                Some("Bearer realm=\"promo-gateway\", error=\"invalid_token\"".to_owned())
            }
            ApiError::Forbidden { scope, .. } => Some(format!(
                "Bearer realm=\"promo-gateway\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        };
        let mut body = json!({
            "type": format!("urn:promo-gateway:problem:{}", self.slug()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "errors": self.problems(),
        });
        // A code conflict also says what clashed, for clients to branch on (an RFC 9457
        // extension member): `{"kind": "other_case"|"redefined"|"repeated", "existing": ...}` or
        // `{"kind": "other_campaign", "held_by": [{"campaign", "code", "upstreams"}]}`.
        if let ApiError::CodeConflict(conflict) = &self {
            if let Ok(value) = serde_json::to_value(conflict) {
                body["conflict"] = value;
            }
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(value) = challenge.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

fn in_campaign(campaign: &Option<String>) -> String {
    match campaign {
        Some(c) => format!("in campaign `{c}`"),
        None => "of no campaign (no `campaign` was given)".to_owned(),
    }
}
