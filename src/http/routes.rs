//! Every operation of the API, registered once. A handler's `#[utoipa::path]` says its method,
//! path, OpenAPI entry and the scope an API key needs for it (`security`); `routes!` turns that
//! one declaration into both the axum route and the description's operation, and the API-key
//! middleware reads the scope back from the description (`gateway_auth::need`). The router, the
//! scope table and the OpenAPI paths therefore cannot drift apart.

use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::api::{self, AppState};
use crate::http::{metrics, openapi, sync_api};

/// The routes with their description, before the middleware and the state.
pub(crate) fn table() -> OpenApiRouter<AppState> {
    // A job streams its own body (see `sync_api::create`), within its own limits.
    let job_intake = OpenApiRouter::new()
        .routes(routes!(sync_api::create))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api::create, api::list_codes))
        .routes(routes!(api::code))
        .routes(routes!(api::live))
        .routes(routes!(api::revoke))
        .routes(routes!(api::recorded))
        .merge(job_intake)
        .routes(routes!(sync_api::status))
        .routes(routes!(sync_api::results))
        .routes(routes!(sync_api::retry))
        .routes(routes!(sync_api::cancel))
        .routes(routes!(api::health))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi_json))
}
