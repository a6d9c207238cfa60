//! Graceful shutdown: on the signal the server stops accepting, the requests in flight get
//! `server.shutdown_grace_ms` to finish their upstream calls, and whatever is still unfinished
//! then stays in the ledger for the next start to resume. A create whose call had not answered
//! keeps its delivery `pending` (the next start resends it, with a warning that the first call
//! may have reached the vendor); a running sync job is stopped for now but stays `running` in
//! the ledger, and the next start carries on with its pending deliveries.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::engine::Engine;

/// Serves `router` until `signal` resolves, then waits at most `grace` for the requests in
/// flight, logs what did not finish, and returns (the process then exits 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    engine: Arc<Engine>,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        signal.await;
        let _ = signalled_tx.send(());
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    let grace_over = async move {
        if signalled_rx.await.is_ok() {
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new connections; requests in flight may finish"
            );
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => {
            served?;
            report(&engine, false);
        }
        () = grace_over => report(&engine, true),
    }
    Ok(())
}

/// Logs what the stop leaves for the next start: creates with deliveries still `pending` and
/// sync jobs still `running`.
fn report(engine: &Engine, grace_ran_out: bool) {
    let pending: Vec<i64> = match engine.store.unfinished_requests() {
        Ok(unfinished) => unfinished
            .into_iter()
            .filter(|u| !u.pending.is_empty())
            .map(|u| u.request_id)
            .collect(),
        Err(e) => {
            tracing::error!("could not read the unfinished creates from the ledger: {e}");
            Vec::new()
        }
    };
    let jobs: Vec<i64> = engine
        .jobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .keys()
        .copied()
        .collect();
    if grace_ran_out {
        tracing::warn!(
            ?pending,
            "shutdown grace ran out; creates whose calls did not answer stay pending and the next start resends them"
        );
    } else if !pending.is_empty() {
        tracing::warn!(?pending, "creates still pending stay for the next start");
    }
    if !jobs.is_empty() {
        tracing::warn!(
            ?jobs,
            "sync jobs stopped for now; they stay running in the ledger and the next start resumes them"
        );
    }
    tracing::info!("stopped");
}
