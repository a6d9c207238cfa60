//! The gateway's sense of time for everything a vendor can make it wait on: Retry-After pauses,
//! back-off between retries, circuit-breaker cool-downs, sync-job ETAs.
//!
//! It is a trait so that tests can hold time still and move it by hand ([`ManualClock`]): a
//! test of "a 30 s Retry-After pauses every caller" then checks the pause without waiting
//! 30 s, and without tokio's paused time, which would also fire the HTTP timeouts of calls
//! that are waiting on real sockets. Per-call HTTP timeouts and the governor rate limiter keep
//! real time: they bound I/O, not vendor instructions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    /// The current wall time (Retry-After dates are wall times).
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now() + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX);
        self.sleep_until(deadline)
    }
}

/// Real time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Time that moves only when [`ManualClock::advance`] is called. For tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    changed: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
            changed: watch::Sender::new(start),
        }
    }

    /// Moves time forward, waking every sleeper whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += chrono::Duration::from_std(by).expect("a test advances by a sane amount");
        self.changed.send_replace(*now);
    }

    /// How many sleeps are waiting on this clock now: a test can tell that a call has reached
    /// a pause before it moves time.
    pub fn sleepers(&self) -> usize {
        self.changed.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut changed = self.changed.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if the clock is gone, so is the test.
            let _ = changed.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// The clock a gateway runs on.
pub type SharedClock = Arc<dyn Clock>;
