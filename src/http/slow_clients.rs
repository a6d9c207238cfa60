//! Clients that send slowly, or not at all, are dropped instead of holding a connection for
//! ever (a client sending one header byte a second was served for as long as it liked).
//!
//! - The request line and headers must arrive within `server.header_read_timeout_ms` (hyper's
//!   own HTTP/1 header-read timeout, which also closes an idle keep-alive connection then).
//! - A body must arrive in full within `server.body_read_timeout_ms` of the headers
//!   (`server.upload_read_timeout_ms` for a sync job's): [`body_deadline`] answers 408 and the
//!   connection closes. A deadline for the whole body, not between reads, because one byte a
//!   second never leaves a gap long enough for an idle timeout (tower-http's `TimeoutBody`).
//! - At most `server.max_connections` connections are served at once; the next waits in the
//!   listen backlog until one closes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::config::Server;
use crate::http::error::ApiError;

/// How long a connection's parts may take, and how many connections are served at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn of(server: &Server) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
            max_connections: server.max_connections,
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1) until `signal` resolves; then accepts no more
/// connections and returns once every open one has finished its request in flight (and its
/// keep-alive connection is closed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        // A permit first: beyond the cap, connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut signal => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("could not accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The body-read deadlines of [`body_deadline`].
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    body_ms: u64,
    upload_ms: u64,
}

impl BodyTimeouts {
    pub fn of(server: &Server) -> Self {
        Self {
            body_ms: server.body_read_timeout_ms,
            upload_ms: server.upload_read_timeout_ms,
        }
    }
}

/// Gives the request's body a deadline from now (the headers have arrived). A handler that is
/// still reading the body when it passes gets a read error, and whatever it answers becomes
/// 408 with `Connection: close`, so the slow client is dropped.
pub async fn body_deadline(State(timeouts): State<BodyTimeouts>, request: Request, next: Next) -> Response {
    let (limit_ms, key) = if request.method() == Method::POST && request.uri().path() == "/v1/sync-jobs" {
        (timeouts.upload_ms, "upload_read_timeout_ms")
    } else {
        (timeouts.body_ms, "body_read_timeout_ms")
    };
    let expired = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(DeadlineBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(Duration::from_millis(limit_ms))),
            expired: expired.clone(),
        })
    });
    let response = next.run(request).await;
    if !expired.load(Ordering::Relaxed) {
        return response;
    }
    let mut response = ApiError::BodyTimeout { limit_ms, key }.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A body that fails once its deadline passes before it has been read in full.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

/// The error a [`DeadlineBody`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct TooSlow;

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(TooSlow))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
