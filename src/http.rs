//! The HTTP layer: the router and its handlers (`api`, `sync_api`), the OpenAPI description,
//! `/metrics`, and the server that drops slow clients. The one place meant to name axum and
//! utoipa (`tests/layers.rs` lists what still does elsewhere), turning the domain's refusals
//! into problem+json (`crate::http::error::ApiError`).

pub mod api;
pub mod error;
pub mod gateway_auth;
pub mod metrics;
pub mod openapi;
mod routes;
pub mod schemas;
pub mod shutdown;
pub mod slow_clients;
pub(crate) mod sync_api;
pub mod telemetry;

/// The router the composition root builds and serves.
pub use axum::Router;
