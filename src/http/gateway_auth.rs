//! The gateway's API keys checked on every request: the middleware, and the scope each route
//! needs (see `crate::gateway_auth` for the keys, scopes and the route table).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Server;
use crate::gateway_auth::{KeyDigest, Scope};
use crate::http::error::ApiError;

/// The keys the middleware checks, as digests. `required` is set whenever the config lists a
/// key, also one whose digest is unknown (so an unresolved key never opens the API).
pub struct Keys {
    entries: Vec<(String, KeyDigest, Vec<Scope>)>,
    required: bool,
}

impl Keys {
    /// From the config; a `key_env` entry that [`resolve`] has not read matches nothing.
    pub fn from_server(server: &Server) -> Arc<Self> {
        Arc::new(Self {
            entries: server
                .api_keys
                .iter()
                .filter_map(|k| {
                    let digest = k.digest()?;
                    Some((k.name.clone(), digest, k.scopes.clone()))
                })
                .collect(),
            required: !server.api_keys.is_empty(),
        })
    }

    /// The entry whose digest equals the presented key's, comparing against every entry.
    fn find(&self, presented: &[u8]) -> Option<&(String, KeyDigest, Vec<Scope>)> {
        let digest = KeyDigest::of(presented);
        let mut found = None;
        for entry in &self.entries {
            if entry.1.matches(&digest) {
                found = Some(entry);
            }
        }
        found
    }
}

/// What a request needs (also read by the OpenAPI description, src/http/openapi.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Nothing,
    AnyKey,
    Scope(Scope),
}

/// What a request to the route `matched` (its path template, `None` when no route matched)
/// needs: what the route declared with its handler (`crate::http::routes`). A path no route
/// serves needs a key, so the API's shape is not shown to strangers.
pub(crate) fn need(method: &Method, matched: Option<&str>) -> Need {
    matched
        .and_then(|path| crate::http::openapi::need_of(method, path))
        .unwrap_or(Need::AnyKey)
}

/// The key in `Authorization: Bearer <key>`, if the header has that shape.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let key = rest.trim_ascii();
    (!key.is_empty()).then_some(key)
}

/// The name of the API key a request was authenticated with, for the handlers that record who
/// asked (`requested_by`). Absent on an open gateway and on routes that need no key.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub String);

/// The middleware: checks the key and the route's scope before the handler (so before any body
/// is read or any upstream called).
pub async fn require(State(keys): State<Arc<Keys>>, mut request: Request, next: Next) -> Response {
    if !keys.required {
        return next.run(request).await;
    }
    let matched = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let need = need(request.method(), matched.as_deref());
    if need == Need::Nothing {
        return next.run(request).await;
    }
    let Some(presented) = bearer(&request) else {
        return ApiError::Unauthorized { presented: false }.into_response();
    };
    let Some((name, _, scopes)) = keys.find(presented) else {
        tracing::warn!(path = request.uri().path(), "refused an unknown API key");
        return ApiError::Unauthorized { presented: true }.into_response();
    };
    if let Need::Scope(scope) = need {
        if !scopes.contains(&scope) {
            tracing::warn!(key = %name, scope = scope.as_str(), path = request.uri().path(), "refused: the key lacks the scope");
            return ApiError::Forbidden {
                key: name.clone(),
                scope: scope.as_str(),
            }
            .into_response();
        }
    }
    tracing::debug!(key = %name, "authenticated");
    request.extensions_mut().insert(Caller(name.clone()));
    let mut response = next.run(request).await;
    // For the access line (`telemetry`): the key's name, never the key.
    response.extensions_mut().insert(Caller(name.clone()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_scopes() {
        let post = Method::POST;
        let get = Method::GET;
        let need = |method: &Method, path: &str| need(method, Some(path));
        assert_eq!(need(&post, "/v1/promo-codes"), Need::Scope(Scope::PromoCodesWrite));
        assert_eq!(need(&get, "/v1/promo-codes"), Need::Scope(Scope::PromoCodesRead));
        assert_eq!(need(&get, "/v1/promo-codes/{code}"), Need::Scope(Scope::PromoCodesRead));
        assert_eq!(need(&get, "/v1/requests/{id}"), Need::Scope(Scope::PromoCodesRead));
        assert_eq!(need(&post, "/v1/sync-jobs"), Need::Scope(Scope::SyncJobsWrite));
        assert_eq!(
            need(&post, "/v1/sync-jobs/{id}/retry"),
            Need::Scope(Scope::SyncJobsWrite)
        );
        assert_eq!(
            need(&get, "/v1/sync-jobs/{id}/results"),
            Need::Scope(Scope::SyncJobsRead)
        );
        assert_eq!(need(&get, "/metrics"), Need::Scope(Scope::MetricsRead));
        assert_eq!(need(&Method::HEAD, "/metrics"), Need::Scope(Scope::MetricsRead));
        assert_eq!(need(&get, "/health"), Need::Nothing);
        assert_eq!(need(&get, "/openapi.json"), Need::Nothing);
        assert_eq!(super::need(&get, None), Need::AnyKey);
    }
}
