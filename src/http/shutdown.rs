//! Graceful shutdown: on the signal the server stops accepting, and the requests in flight and
//! the running sync jobs share `server.shutdown_grace_ms` to finish their upstream calls.
//!
//! Each running sync job is paused, not cancelled ([`Engine::pause_jobs`]): its workers start no
//! new vendor call, the calls already in flight finish and their outcomes are recorded, and the
//! job stays `running` in the ledger, so the next start resumes it with its `pending`
//! deliveries. A job started by a request still in flight begins paused.
//!
//! Whatever is unfinished when the grace runs out stays in the ledger for the next start: a
//! create whose call had not answered keeps its delivery `pending` (the next start resends it,
//! with a warning that the first call may have reached the vendor), and so does a job's delivery
//! whose call had not answered. The log says which jobs were paused cleanly and which were cut
//! off by the grace.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::engine::jobs::Paused;
use crate::engine::Engine;

/// Serves `router` until `signal` resolves, then pauses the sync jobs and waits at most `grace`
/// for the requests in flight and the jobs' calls in flight, logs what did not finish, and
/// returns (the process then exits 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: crate::http::slow_clients::Limits,
    engine: Arc<Engine>,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (signalled_tx, mut signalled_rx) = tokio::sync::oneshot::channel::<(tokio::time::Instant, Paused)>();
    let jobs = engine.clone();
    let signal = async move {
        signal.await;
        let at = tokio::time::Instant::now();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: no new connections; requests in flight may finish, sync jobs pause once their calls in flight are recorded"
        );
        let _ = signalled_tx.send((at, jobs.pause_jobs()));
    };
    let server = crate::http::slow_clients::serve(listener, router, limits, signal);
    let mut server = std::pin::pin!(server);
    // The server ends only after the signal (or on an error); either way the grace starts then.
    let mut served = None;
    let signalled = tokio::select! {
        s = &mut server => {
            served = Some(s);
            (&mut signalled_rx).await.ok()
        }
        s = &mut signalled_rx => s.ok(),
    };
    let Some((at, paused)) = signalled else {
        return served.unwrap_or(Ok(()));
    };
    let everything = async {
        let server = async {
            match served {
                Some(s) => s,
                None => server.await,
            }
        };
        tokio::join!(server, paused.stopped()).0
    };
    match tokio::time::timeout_at(at + grace, everything).await {
        Ok(served) => {
            served?;
            report(&engine, &paused, false).await;
        }
        Err(_) => report(&engine, &paused, true).await,
    }
    Ok(())
}

/// Logs what the stop leaves for the next start: creates with deliveries still `pending`, sync
/// jobs paused cleanly, and sync jobs whose calls in flight the grace cut off.
async fn report(engine: &Engine, paused: &Paused, grace_ran_out: bool) {
    // What is left is handed over: another process on the same ledger may take it at once.
    if let Err(e) = engine.store.release().await {
        tracing::error!("could not hand this process's work over in the ledger: {e}");
    }
    let pending: Vec<i64> = match engine.store.unfinished_requests().await {
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
    // Still at work: paused jobs waiting on calls in flight (and a job a cancel is ending).
    let cut_off = engine.running_job_ids();
    let clean: Vec<i64> = paused.ids().into_iter().filter(|id| !cut_off.contains(id)).collect();
    if grace_ran_out {
        tracing::warn!(
            ?pending,
            "shutdown grace ran out; creates whose calls did not answer stay pending and the next start resends them"
        );
    } else if !pending.is_empty() {
        tracing::warn!(?pending, "creates still pending stay for the next start");
    }
    if !clean.is_empty() {
        tracing::info!(
            paused = ?clean,
            "sync jobs paused with their calls in flight recorded; they stay running in the ledger and the next start resumes them"
        );
    }
    if !cut_off.is_empty() {
        tracing::warn!(
            ?cut_off,
            "shutdown grace ran out before these sync jobs' calls in flight answered; they stay running in the ledger, those deliveries pending, and the next start resends them"
        );
    }
    tracing::info!("stopped");
}
