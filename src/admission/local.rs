//! The rate budget of a single process: a governor GCRA limiter per upstream, and the vendor's
//! pause in memory.
//!
//! The limiter keeps real time (it paces real sockets); the pause is measured on the gateway's
//! [`crate::clock`], so that tests can move past a vendor's Retry-After by hand.

use std::num::NonZeroU32;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::clock::SharedClock;
use crate::ports::{Admission, AdmissionError, Admit};

pub struct LocalAdmission {
    limiter: DefaultDirectRateLimiter,
    pause: Mutex<Option<DateTime<Utc>>>,
    clock: SharedClock,
}

impl LocalAdmission {
    /// `per_second` calls a second on average, `burst` at once after a quiet spell.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32, clock: SharedClock) -> Self {
        Self {
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            pause: Mutex::new(None),
            clock,
        }
    }

    fn current_pause(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        (*self.pause.lock().unwrap_or_else(|p| p.into_inner())).filter(|until| *until > now)
    }
}

#[async_trait::async_trait]
impl Admission for LocalAdmission {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn admit(&self) -> Result<Admit, AdmissionError> {
        if let Some(until) = self.current_pause() {
            return Ok(Admit::Paused(until));
        }
        Ok(match self.limiter.check() {
            Ok(()) => Admit::Now,
            Err(not_until) => Admit::After(not_until.wait_time_from(DefaultClock::default().now())),
        })
    }

    async fn pause(&self, until: DateTime<Utc>) -> Result<bool, AdmissionError> {
        let mut pause = self.pause.lock().unwrap_or_else(|p| p.into_inner());
        let extends = pause.is_none_or(|p| p < until);
        if extends {
            *pause = Some(until);
        }
        Ok(extends)
    }

    async fn paused_until(&self) -> Result<Option<DateTime<Utc>>, AdmissionError> {
        Ok(self.current_pause())
    }
}
