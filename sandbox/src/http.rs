//! The sandbox's HTTP surface and its serving loop. Every path is dispatched by hand from one
//! handler, so that every answer passes the same fault, rate-limit and judging steps.

use std::future::Future;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::State as Extract;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::state::{Fault, Hold, Issued};
use crate::vendors::{self, Action, BodyRule, Vendor};
use crate::{Refusal, Sandbox, Violation, FAULT_HEADER};

/// The largest body read (a Moltin call carries many codes).
const MAX_BODY: usize = 8 << 20;

/// Closes the connection a request came on, for the `reset` fault.
#[derive(Clone)]
struct Reset(Arc<Notify>);

pub(crate) fn router(sandbox: Sandbox) -> Router {
    Router::new().fallback(handle).with_state(sandbox)
}

/// Serves the sandbox on `listener` until `shutdown` completes. Each connection is served by
/// hyper directly (not `axum::serve`) so that the `reset` fault can drop it mid-request.
pub async fn serve(
    listener: TcpListener,
    sandbox: Sandbox,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = sandbox.router();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return Ok(()),
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than stop serving.
                tracing::warn!("sandbox: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let reset = Arc::new(Notify::new());
        let service =
            hyper_util::service::TowerToHyperService::new(router.clone().layer(Extension(Reset(reset.clone()))));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = reset.notified() => {}
            }
        });
    }
}

fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).expect("a valid status");
    (status, Json(body)).into_response()
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

async fn handle(Extract(sandbox): Extract<Sandbox>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let (first, rest) = match path.trim_start_matches('/').split_once('/') {
        Some((first, rest)) => (first.to_owned(), format!("/{rest}")),
        None => (path.trim_start_matches('/').to_owned(), String::new()),
    };
    let Some(vendor) = vendors::find(&first) else {
        return plain(
            StatusCode::NOT_FOUND,
            &format!("no simulated vendor at /{first}: the sandbox serves {:?}", crate::KINDS),
        );
    };
    let state = &sandbox.state;
    if let Some(admin) = rest.strip_prefix("/_sandbox/") {
        return admin_call(&sandbox, vendor, admin, &parts.method, &parts.headers);
    }
    let fault = match parts.headers.get(FAULT_HEADER) {
        Some(value) => match value.to_str().ok().and_then(Fault::parse) {
            Some(fault) => Some(fault),
            None => return bad_fault(),
        },
        None => state.next_fault(vendor.name),
    };
    if let Some(fault) = fault {
        return apply(fault, vendor, &sandbox, parts.extensions.get::<Reset>()).await;
    }
    if let Err(wait) = state.admit(vendor.name) {
        let mut response = answer(
            429,
            vendors::error_body(
                vendor.name,
                "rate_limited",
                "too many requests: the sandbox's rate limit",
                &[],
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return response;
    }
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than the sandbox reads",
        );
    };
    let refuse = |status: u16, kind: &str, violations: Vec<Violation>| {
        state.refuse(Refusal {
            vendor: vendor.name,
            method: parts.method.to_string(),
            path: path.clone(),
            status,
            violations: violations.clone(),
        });
        answer(
            status,
            vendors::error_body(vendor.name, kind, &vendors::summary(&violations), &violations),
        )
    };
    if rest == "/oauth2/token" {
        return token(vendor, &parts.method, &parts.headers, &bytes, &sandbox, refuse);
    }
    let ops = vendors::ops(vendor.name, &rest);
    if ops.is_empty() {
        return refuse(
            404,
            "not_found",
            vec![Violation::new(
                "path",
                "path",
                format!("{rest} is not a path of the {} documents", vendor.name),
            )],
        );
    }
    let methods: Vec<String> = ops.iter().map(|op| op.method.to_string()).collect();
    let Some(op) = ops.into_iter().find(|op| op.method == parts.method) else {
        let allow = methods.join(", ");
        let mut response = refuse(
            405,
            "method_not_allowed",
            vec![Violation::new(
                "method",
                "method",
                format!("{} {rest}: the documents' methods here are {allow}", parts.method),
            )],
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_str(&allow).expect("method names"));
        return response;
    };
    let account = match vendors::authenticate(vendor, &parts.headers, state) {
        Ok(account) => account,
        Err(violations) => return refuse(401, "unauthorized", violations),
    };
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    let schema = match (op.body, empty) {
        (BodyRule::Required(schema), _) | (BodyRule::Optional(schema), false) => Some(schema),
        (BodyRule::Optional(_) | BodyRule::Absent, true) => None,
        (BodyRule::Absent, false) => {
            return refuse(
                vendor.invalid_status,
                "validation_error",
                vec![Violation::new(
                    "",
                    "body",
                    format!("{} {rest}: the document's call takes no request body", parts.method),
                )],
            )
        }
    };
    let body = match schema {
        None => Value::Null,
        Some(schema) => {
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let media = content_type.split(';').next().unwrap_or_default().trim();
            if !media.eq_ignore_ascii_case("application/json") {
                return refuse(
                    vendor.invalid_status,
                    "validation_error",
                    vec![Violation::new(
                        "header:Content-Type",
                        "content-type",
                        format!("{content_type:?}: the document's request body is application/json"),
                    )],
                );
            }
            let body: Value = match serde_json::from_slice(&bytes) {
                Ok(body) => body,
                Err(e) => {
                    return refuse(
                        vendor.invalid_status,
                        "validation_error",
                        vec![Violation::new("", "json", format!("not JSON: {e}"))],
                    )
                }
            };
            let mut violations = crate::judge::violations(schema, &body);
            violations.extend(vendors::more_violations(&op, &body));
            if !violations.is_empty() {
                return refuse(vendor.invalid_status, "validation_error", violations);
            }
            body
        }
    };
    if matches!(op.action, Action::Get | Action::List) {
        return match crate::reads::read(vendor.name, &op, &account, parts.uri.query(), state) {
            Ok((status, body)) => answer(status, body),
            Err(violations) => refuse(vendor.invalid_status, "validation_error", violations),
        };
    }
    if op.action != Action::Create {
        let (status, body) = vendors::revoke(vendor.name, &op, &account, &body, state);
        return match status {
            204 => StatusCode::NO_CONTENT.into_response(),
            _ => answer(status, body),
        };
    }
    let names = vendors::names(vendor.name, &body);
    let (status, success, held) = vendors::created(vendor.name, &op, &account, &body, &names, state.next_call());
    match state.hold(vendor.name, &account.key, held) {
        Hold::Held => answer(status, success),
        Hold::Duplicate(code) => answer(
            409,
            vendors::error_body(
                vendor.name,
                "conflict",
                &format!("the promo code {code:?} already exists"),
                &[],
            ),
        ),
    }
}

fn bad_fault() -> Response {
    plain(
        StatusCode::BAD_REQUEST,
        "x-sandbox-fault: give `429;retry-after=N`, `503` (or `503;retry-after=N`), `timeout` or `reset`",
    )
}

async fn apply(fault: Fault, vendor: &Vendor, sandbox: &Sandbox, reset: Option<&Reset>) -> Response {
    let body = |message: &str| vendors::error_body(vendor.name, "fault", message, &[]);
    match fault {
        Fault::TooMany { retry_after } => {
            let mut response = answer(429, body("too many requests (x-sandbox-fault)"));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Fault::Unavailable { retry_after } => {
            let mut response = answer(503, body("service unavailable (x-sandbox-fault)"));
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(after));
            }
            response
        }
        Fault::Timeout => {
            tokio::time::sleep(sandbox.state.options.hang).await;
            answer(504, body("gateway timeout (x-sandbox-fault)"))
        }
        Fault::Reset => {
            if let Some(Reset(notify)) = reset {
                notify.notify_one();
                std::future::pending::<()>().await;
            }
            // Served without `serve`: no connection to drop, the closest is an empty 502.
            StatusCode::BAD_GATEWAY.into_response()
        }
    }
}

/// `GET`/`DELETE /<kind>/_sandbox/codes`, `GET /<kind>/_sandbox/refusals`,
/// `POST /<kind>/_sandbox/faults` (with the fault header).
fn admin_call(sandbox: &Sandbox, vendor: &Vendor, what: &str, method: &Method, headers: &HeaderMap) -> Response {
    let state = &sandbox.state;
    match (what, method) {
        ("codes", &Method::GET) => {
            let codes = state.codes(vendor.name);
            let deleted = state.deleted(vendor.name);
            answer(
                200,
                json!({ "vendor": vendor.name, "count": codes.len(), "codes": codes, "deleted": deleted }),
            )
        }
        ("codes", &Method::DELETE) => {
            let n = state.clear(vendor.name);
            answer(200, json!({ "vendor": vendor.name, "deleted": n }))
        }
        ("refusals", &Method::GET) => {
            let refusals: Vec<Refusal> = state
                .refusals()
                .into_iter()
                .filter(|r| r.vendor == vendor.name)
                .collect();
            answer(
                200,
                json!({ "vendor": vendor.name, "count": refusals.len(), "refusals": refusals }),
            )
        }
        ("faults", &Method::POST) => match headers
            .get(FAULT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Fault::parse)
        {
            Some(fault) => {
                state.queue_fault(vendor.name, fault);
                StatusCode::NO_CONTENT.into_response()
            }
            None => bad_fault(),
        },
        ("codes" | "refusals" | "faults", _) => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => plain(
            StatusCode::NOT_FOUND,
            "the sandbox's own paths: _sandbox/codes, _sandbox/refusals, _sandbox/faults",
        ),
    }
}

/// An OAuth2 token endpoint (RFC 6749 §4.4 client credentials, §6 refresh): the client
/// authenticates with HTTP Basic (form-encoded id and secret) or in the form; any non-empty
/// pair is an account of its own.
fn token(
    vendor: &Vendor,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    sandbox: &Sandbox,
    refuse: impl Fn(u16, &str, Vec<Violation>) -> Response,
) -> Response {
    let oauth_error = |status: u16, error: &str, description: &str| {
        sandbox.state.refuse(Refusal {
            vendor: vendor.name,
            method: method.to_string(),
            path: format!("/{}/oauth2/token", vendor.name),
            status,
            violations: vec![Violation::new("token", error, description)],
        });
        answer(status, json!({ "error": error, "error_description": description }))
    };
    if method != Method::POST {
        return refuse(
            405,
            "method_not_allowed",
            vec![Violation::new("method", "method", "the token endpoint takes POST")],
        );
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/x-www-form-urlencoded" {
        return oauth_error(
            400,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((decode(id)?, decode(secret)?))
        });
    let client = basic.or_else(|| Some((field("client_id")?, field("client_secret")?)));
    let Some((client_id, _secret)) = client.filter(|(id, secret)| !id.is_empty() && !secret.is_empty()) else {
        let mut response = oauth_error(
            401,
            "invalid_client",
            "authenticate the client with HTTP Basic, or client_id and client_secret in the form",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        return response;
    };
    let refresh = match field("grant_type").as_deref() {
        Some("client_credentials") => None,
        Some("refresh_token") => match field("refresh_token") {
            Some(rt) => Some(rt),
            None => return oauth_error(400, "invalid_request", "the refresh_token grant needs refresh_token"),
        },
        Some(other) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                &format!("{other}: this endpoint issues client_credentials and refresh_token grants"),
            )
        }
        None => return oauth_error(400, "invalid_request", "grant_type is required"),
    };
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = json!({ "iss": "promo-sandbox", "sub": client_id, "aud": vendor.name, "jti": uuid::Uuid::new_v4().to_string() });
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"none","typ":"JWT"}"#.into()),
        b64(claims.to_string()),
        b64("sandbox".into())
    );
    sandbox.state.issue(
        token.clone(),
        Issued {
            vendor: vendor.name,
            account: format!("client {client_id}"),
        },
    );
    let mut answer_body = json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 });
    if let Some(scope) = field("scope") {
        answer_body["scope"] = scope.into();
    }
    if let Some(rt) = refresh {
        answer_body["refresh_token"] = rt.into();
    }
    answer(200, answer_body)
}
