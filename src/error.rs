//! The gateway's errors, and the one place they become HTTP answers.

use std::path::PathBuf;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use promo_adapters::Problems;
use serde_json::json;

/// What stops the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the ledger {path}: {message}")]
    Ledger { path: PathBuf, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A request the API refuses as a whole, before any upstream is called.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    #[error("the request is invalid: {0}")]
    Invalid(Problems),
    #[error("the query string is invalid: {0}")]
    BadQuery(Problems),
    #[error("no resource at {0}")]
    NotFound(String),
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
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotJson(_) | ApiError::BadBody(_) | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Ledger(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::IdempotencyInProgress(_) => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The problem type, a stable name clients can branch on (RFC 9457 `type`).
    fn slug(&self) -> &'static str {
        match self {
            ApiError::NotJson(_) => "body-not-json",
            ApiError::TooLarge { .. } => "body-too-large",
            ApiError::BadBody(_) => "body-unreadable",
            ApiError::Invalid(_) => "invalid-promo-code",
            ApiError::BadQuery(_) => "invalid-query",
            ApiError::NotFound(_) => "not-found",
            ApiError::Ledger(_) => "ledger-unavailable",
            ApiError::IdempotencyInProgress(_) => "idempotency-in-progress",
            ApiError::IdempotencyKeyReused(_) => "idempotency-key-reused",
            ApiError::BadIdempotencyKey => "bad-idempotency-key",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::NotJson(_) => "Body is not JSON",
            ApiError::TooLarge { .. } => "Body too large",
            ApiError::BadBody(_) => "Body unreadable",
            ApiError::Invalid(_) => "Invalid promo code",
            ApiError::BadQuery(_) => "Invalid query parameter",
            ApiError::NotFound(_) => "Not found",
            ApiError::Ledger(_) => "Ledger unavailable",
            ApiError::IdempotencyInProgress(_) => "Create in progress",
            ApiError::IdempotencyKeyReused(_) => "Idempotency-Key reused",
            ApiError::BadIdempotencyKey => "Invalid Idempotency-Key",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
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
                    "`{path}` names nothing here (routes: POST /v1/promo-codes, GET /v1/requests/{{id}}, GET /health)"
                ),
            ),
            ApiError::MethodNotAllowed { method, .. } => p.push("method", format!("{method} is not allowed here")),
        }
        p
    }
}

/// RFC 9457 problem details, with `errors` listing each field and rule.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({
            "type": format!("urn:promo-gateway:problem:{}", self.slug()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "errors": self.problems(),
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
