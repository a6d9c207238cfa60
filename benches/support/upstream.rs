//! The fast local upstream: a bare hyper 1 HTTP/1.1 server that answers every vendor's create
//! path with that vendor's documented success answer, after an optional fixed delay, and counts
//! what it received. No matching, no recording of bodies: it is meant to cost next to nothing, so
//! that what a benchmark measures is the gateway (wiremock's matching is too slow for that).
//!
//! It runs on its own thread with its own single-threaded tokio runtime, like a separate server,
//! and stops when the handle is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use promo_adapters::VendorKind;

use super::vendors::{self, Success};

/// What a request asked for, read from its method and path alone. Paths are matched by their
/// end, so a base URL with a path of its own (Limio's `/api`) needs nothing special.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Create(VendorKind),
    /// An OAuth2 token request (`POST .../oauth2/token`).
    Token,
    /// Anything else: answered 404.
    Unknown,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        if method != Method::POST {
            return Route::Unknown;
        }
        let kind = if path.ends_with("/discounts/promocodes/v1") {
            VendorKind::Spacebring
        } else if path.ends_with("/v1/promotion-codes") {
            VendorKind::Partnero
        } else if path.contains("/v2/promotions/") && path.ends_with("/codes") {
            VendorKind::Moltin
        } else if path.ends_with("/objects/limio/promo_codes_v2") {
            VendorKind::LimioV2
        } else if path.ends_with("/objects/limio/promo_codes_v3") {
            VendorKind::LimioV3
        } else if path.ends_with("/v1/admin/promos") {
            VendorKind::Loop
        } else if path.ends_with("/oauth2/token") {
            return Route::Token;
        } else {
            return Route::Unknown;
        };
        Route::Create(kind)
    }

    fn index(self) -> usize {
        match self {
            Route::Create(kind) => VendorKind::ALL
                .iter()
                .position(|k| *k == kind)
                .expect("every kind is listed"),
            Route::Token => VendorKind::ALL.len(),
            Route::Unknown => VendorKind::ALL.len() + 1,
        }
    }
}

const ROUTES: usize = VendorKind::ALL.len() + 2;

struct State {
    delay: Duration,
    calls: [AtomicU64; ROUTES],
    /// Codes received by create calls: one a call, except Moltin's batches.
    codes: AtomicU64,
    /// When each create call arrived, in order.
    arrivals: Mutex<Vec<Instant>>,
}

/// A running fast upstream. Stops (and its thread ends) when dropped.
pub struct FastUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FastUpstream {
    /// Starts a server on a loopback port that answers every create `delay` after it arrived.
    pub fn start(delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State {
            delay,
            calls: Default::default(),
            codes: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fast-upstream-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                runtime.block_on(serve(listener, thread_state, stopped));
            })
            .expect("spawn the upstream thread");
        FastUpstream {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls received on `route` so far.
    pub fn calls(&self, route: Route) -> u64 {
        self.state.calls[route.index()].load(Ordering::Relaxed)
    }

    /// Create calls received so far, all vendors together.
    pub fn creates(&self) -> u64 {
        VendorKind::ALL.iter().map(|k| self.calls(Route::Create(*k))).sum()
    }

    /// Codes received by create calls so far: one a call, and every code of a Moltin batch.
    pub fn codes(&self) -> u64 {
        self.state.codes.load(Ordering::Relaxed)
    }

    /// The most create calls that arrived within any `window` (a sliding window over every
    /// arrival, not fixed buckets): for a rate limit of N a second, `busiest(1 s)` must not
    /// exceed N plus the burst.
    pub fn busiest(&self, window: Duration) -> usize {
        let arrivals = self.state.arrivals.lock().unwrap();
        let mut most = 0;
        let mut first = 0;
        for (last, at) in arrivals.iter().enumerate() {
            while at.duration_since(arrivals[first]) >= window {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }

    /// Create calls a second between the first and the last arrival.
    pub fn achieved_rate(&self) -> f64 {
        let arrivals = self.state.arrivals.lock().unwrap();
        match (arrivals.first(), arrivals.last()) {
            (Some(first), Some(last)) if arrivals.len() > 1 => {
                (arrivals.len() - 1) as f64 / last.duration_since(*first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

impl Drop for FastUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        // Connection tasks end with the runtime when the server stops.
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(state.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let route = Route::of(request.method(), request.uri().path());
    // Read the whole body, as a vendor would, so the connection stays reusable.
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.calls[route.index()].fetch_add(1, Ordering::Relaxed);
    let success = match route {
        Route::Create(kind) => {
            state.arrivals.lock().unwrap().push(Instant::now());
            state.codes.fetch_add(codes_in(kind, &body), Ordering::Relaxed);
            if !state.delay.is_zero() {
                tokio::time::sleep(state.delay).await;
            }
            vendors::success(kind)
        }
        Route::Token => vendors::TOKEN,
        Route::Unknown => Success {
            status: 404,
            body: r#"{"message":"not found"}"#,
        },
    };
    let response = Response::builder()
        .status(StatusCode::from_u16(success.status).expect("a valid status"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(success.body.as_bytes())))
        .expect("a valid response");
    Ok(response)
}

/// Codes in one create body: Moltin's `data.codes` may hold many, every other vendor takes one.
fn codes_in(kind: VendorKind, body: &[u8]) -> u64 {
    if kind != VendorKind::Moltin {
        return 1;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/data/codes")
                .and_then(|c| c.as_array())
                .map(|c| c.len() as u64)
        })
        .unwrap_or(0)
}
