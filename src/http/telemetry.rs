//! Logs: a request id on every line a request writes, one access line per request, and the
//! subscriber (text or JSON lines).
//!
//! The access line is what an operator reads first, as in nginx's access log: `request
//! finished`, with the method, the path, the HTTP status, the latency, the API key's name (never
//! the key) and, for a create or a revoke, the code and each target's outcome
//! (`loop=created partnero=rejected(422)`). It is INFO, WARN for a 5xx; the lines of each
//! target's call are DEBUG.
//!
//! The id comes from the client's `x-request-id` when it sends one (reduced to the characters
//! `A-Z a-z 0-9 - _ . : /`, at most [`MAX_REQUEST_ID`] of them), else it is a fresh UUID v4. It
//! goes back in the `x-request-id` response header and is a field of the `request` span that
//! every log line of the request is written inside.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The longest request id taken from a client; longer ones are cut.
pub const MAX_REQUEST_ID: usize = 64;

const X_REQUEST_ID: &str = "x-request-id";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (fields, the span and its request id included).
    Json,
}

/// Installs the global subscriber on stderr: `RUST_LOG` if set, else `default_filter`.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // stdout carries only the "listening on" line that scripts read, or a job's summary.
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; a file or a log collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}

/// Wraps `router` in the request id and trace layers: sanitise the client's id, set one where
/// there is none, open a `request` span carrying it, log each answer, and return the id.
pub fn layer(router: Router) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let id = request
                .headers()
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!(
                "request",
                request_id = %id,
                method = %request.method(),
                path = %request.uri().path(),
            )
        })
        // The access line says it (`access_line`); these are for debugging the layers.
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        .on_failure(DefaultOnFailure::new().level(Level::DEBUG));
    // Layers run outermost last-added first: sanitise, set, propagate, the span, then the
    // access line, written inside the span (so with its request id).
    router
        .layer(axum::middleware::from_fn(access_line))
        .layer(trace)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(sanitise_request_id))
}

/// What a handler adds to its request's access line: the code, and each target's outcome.
#[derive(Debug, Clone)]
pub struct AccessNote {
    pub code: String,
    /// `upstream=status` per target, with the vendor's HTTP status where it refused or failed.
    pub targets: String,
}

impl AccessNote {
    pub fn of(code: &str, results: &[crate::engine::TargetResult]) -> Self {
        let targets = results
            .iter()
            .map(|r| match r.error.as_ref().and_then(|e| e.http_status) {
                Some(status) if !r.status.is_delivered() => format!("{}={}({status})", r.upstream, r.status.as_str()),
                _ => format!("{}={}", r.upstream, r.status.as_str()),
            })
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            code: code.to_owned(),
            targets,
        }
    }
}

/// The access line: one per request, once its answer is ready.
async fn access_line(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    let key = response
        .extensions()
        .get::<crate::http::gateway_auth::Caller>()
        .map(|c| c.0.as_str())
        .unwrap_or("");
    let note = response.extensions().get::<AccessNote>();
    let (code, targets) = (note.map(|n| n.code.as_str()), note.map(|n| n.targets.as_str()));
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(%method, %path, status, latency_ms, key, code, targets, "request finished")
        };
    }
    if status >= 500 {
        line!(warn);
    } else {
        line!(info);
    }
    response
}

/// Keeps a client's request id only in its safe form; drops it when nothing is left, so that
/// one is generated.
async fn sanitise_request_id(mut request: Request, next: Next) -> Response {
    let given = request.headers().get(X_REQUEST_ID).and_then(|v| sanitise(v.as_bytes()));
    match given.and_then(|id| HeaderValue::from_str(&id).ok()) {
        Some(id) => {
            request.headers_mut().insert(X_REQUEST_ID, id);
        }
        None => {
            request.headers_mut().remove(X_REQUEST_ID);
        }
    }
    next.run(request).await
}

/// The allowed characters of `raw`, at most [`MAX_REQUEST_ID`]; `None` when none are left.
pub fn sanitise(raw: &[u8]) -> Option<String> {
    let id: String = raw
        .iter()
        .map(|b| *b as char)
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
        .take(MAX_REQUEST_ID)
        .collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_keeps_only_safe_characters_and_is_bounded() {
        assert_eq!(sanitise(b"abc-123").as_deref(), Some("abc-123"));
        assert_eq!(sanitise(b"a b\"c\r\n{}").as_deref(), Some("abc"));
        assert_eq!(sanitise(b"\"\" ;"), None);
        assert_eq!(sanitise(&[b'x'; 500]).map(|s| s.len()), Some(MAX_REQUEST_ID));
    }
}
