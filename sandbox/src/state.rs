//! What the simulated vendors hold: codes per account, issued tokens, queued faults, each
//! vendor's rate window, and the refusals so far. One lock: every operation is a few map
//! look-ups, never held across an await.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{HeldCode, Options, Refusal, Revocation};

/// A fault asked for with the `x-sandbox-fault` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// 429 with `Retry-After` (seconds).
    TooMany { retry_after: u64 },
    /// 503, with `Retry-After` when given.
    Unavailable { retry_after: Option<u64> },
    /// No answer until the client gives up (504 after [`Options::hang`]).
    Timeout,
    /// The connection is closed with no answer.
    Reset,
}

impl Fault {
    /// `429;retry-after=2`, `503`, `503;retry-after=5`, `timeout`, `reset`.
    pub(crate) fn parse(text: &str) -> Option<Fault> {
        let mut parts = text.split(';').map(str::trim);
        let kind = parts.next()?.to_ascii_lowercase();
        let mut retry_after = None;
        for p in parts {
            let (k, v) = p.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("retry-after") {
                return None;
            }
            retry_after = Some(v.trim().parse().ok()?);
        }
        match kind.as_str() {
            "429" => Some(Fault::TooMany {
                retry_after: retry_after.unwrap_or(1),
            }),
            "503" => Some(Fault::Unavailable { retry_after }),
            "timeout" if retry_after.is_none() => Some(Fault::Timeout),
            "reset" if retry_after.is_none() => Some(Fault::Reset),
            _ => None,
        }
    }
}

/// A token the sandbox issued: the vendor it is good at and the account it names.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub vendor: &'static str,
    pub account: String,
}

#[derive(Default)]
struct VendorState {
    codes: Vec<HeldCode>,
    /// Codes deleted, for the listing only: nothing finds them any more.
    deleted: Vec<HeldCode>,
    /// (account key, collection, code): what a duplicate is checked against.
    keys: HashSet<(String, String, String)>,
    faults: VecDeque<Fault>,
    window: Option<(Instant, u32)>,
}

struct Inner {
    vendors: BTreeMap<&'static str, VendorState>,
    tokens: HashMap<String, Issued>,
    refusals: Vec<Refusal>,
}

pub(crate) struct State {
    pub options: Options,
    inner: Mutex<Inner>,
    calls: std::sync::atomic::AtomicU64,
}

/// Why codes could not be held.
pub(crate) enum Hold {
    Held,
    /// This code exists already for the account, in the collection.
    Duplicate(String),
}

impl State {
    pub(crate) fn new(options: Options) -> Self {
        let vendors = crate::KINDS.iter().map(|k| (*k, VendorState::default())).collect();
        Self {
            options,
            inner: Mutex::new(Inner {
                vendors,
                tokens: HashMap::new(),
                refusals: Vec::new(),
            }),
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere leaves the maps consistent (each change is one insert or push).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers an accepted create call.
    pub(crate) fn next_call(&self) -> u64 {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    pub(crate) fn refusals(&self) -> Vec<Refusal> {
        self.lock().refusals.clone()
    }

    pub(crate) fn refuse(&self, refusal: Refusal) {
        tracing::debug!(vendor = refusal.vendor, path = %refusal.path, violations = ?refusal.violations, "sandbox refused a request");
        self.lock().refusals.push(refusal);
    }

    pub(crate) fn codes(&self, vendor: &str) -> Vec<HeldCode> {
        self.lock()
            .vendors
            .get(vendor)
            .map(|v| v.codes.clone())
            .unwrap_or_default()
    }

    pub(crate) fn deleted(&self, vendor: &str) -> Vec<HeldCode> {
        self.lock()
            .vendors
            .get(vendor)
            .map(|v| v.deleted.clone())
            .unwrap_or_default()
    }

    /// Empties what `vendor` holds, deleted codes included; the number of codes held dropped.
    pub(crate) fn clear(&self, vendor: &str) -> usize {
        let mut inner = self.lock();
        let Some(v) = inner.vendors.get_mut(vendor) else {
            return 0;
        };
        v.keys.clear();
        v.deleted.clear();
        std::mem::take(&mut v.codes).len()
    }

    /// Changes the code of `account_key` that `find` picks; what `change` returns, or `None`
    /// when the account holds no such code.
    pub(crate) fn update<R>(
        &self,
        vendor: &str,
        account_key: &str,
        find: impl Fn(&HeldCode) -> bool,
        change: impl FnOnce(&mut HeldCode) -> R,
    ) -> Option<R> {
        let mut inner = self.lock();
        let v = inner.vendors.get_mut(vendor)?;
        v.codes
            .iter_mut()
            .find(|c| c.account_key == account_key && find(c))
            .map(change)
    }

    /// Deletes, all or none, one code of `account_key` for each of `picks`; the codes deleted,
    /// or the indices of the picks that found none (then nothing is deleted). A deleted code's
    /// name is free again, as the vendor no longer holds it.
    pub(crate) fn delete<F: Fn(&HeldCode) -> bool>(
        &self,
        vendor: &str,
        account_key: &str,
        picks: &[F],
        revocation: &Revocation,
    ) -> Result<Vec<HeldCode>, Vec<usize>> {
        let mut inner = self.lock();
        let v = inner.vendors.get_mut(vendor).expect("a known vendor");
        let mut found: Vec<usize> = Vec::new();
        let mut missing = Vec::new();
        for (i, pick) in picks.iter().enumerate() {
            match v
                .codes
                .iter()
                .enumerate()
                .position(|(at, c)| c.account_key == account_key && pick(c) && !found.contains(&at))
            {
                Some(at) => found.push(at),
                None => missing.push(i),
            }
        }
        if !missing.is_empty() {
            return Err(missing);
        }
        found.sort_unstable();
        let mut out = Vec::new();
        for at in found.into_iter().rev() {
            let mut code = v.codes.remove(at);
            v.keys
                .remove(&(account_key.to_owned(), code.collection.clone(), code.code.clone()));
            code.revoked = Some(revocation.clone());
            out.push(code);
        }
        out.reverse();
        v.deleted.extend(out.iter().cloned());
        Ok(out)
    }

    /// Whether `account_key` ever held a code in `collection` at `vendor` (the sandbox knows a
    /// Moltin promotion only by the codes created on it).
    pub(crate) fn knows(&self, vendor: &str, account_key: &str, collection: &str) -> bool {
        let inner = self.lock();
        inner.vendors.get(vendor).is_some_and(|v| {
            v.codes
                .iter()
                .chain(&v.deleted)
                .any(|c| c.account_key == account_key && c.collection == collection)
        })
    }

    /// Holds every code of one call, or none when one exists already (or repeats in the call).
    pub(crate) fn hold(&self, vendor: &str, account_key: &str, codes: Vec<HeldCode>) -> Hold {
        let mut inner = self.lock();
        let v = inner.vendors.get_mut(vendor).expect("a known vendor");
        let mut seen = HashSet::new();
        for c in &codes {
            let key = (account_key.to_owned(), c.collection.clone(), c.code.clone());
            if v.keys.contains(&key) || !seen.insert(key) {
                return Hold::Duplicate(c.code.clone());
            }
        }
        for c in codes {
            v.keys
                .insert((account_key.to_owned(), c.collection.clone(), c.code.clone()));
            v.codes.push(c);
        }
        Hold::Held
    }

    pub(crate) fn queue_fault(&self, vendor: &str, fault: Fault) {
        if let Some(v) = self.lock().vendors.get_mut(vendor) {
            v.faults.push_back(fault);
        }
    }

    pub(crate) fn next_fault(&self, vendor: &str) -> Option<Fault> {
        self.lock().vendors.get_mut(vendor)?.faults.pop_front()
    }

    /// Counts a call against `vendor`'s limit: `Err(seconds)` to wait when over it.
    pub(crate) fn admit(&self, vendor: &str) -> Result<(), u64> {
        let Some(limit) = self.options.limit_of(vendor) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut inner = self.lock();
        let v = inner.vendors.get_mut(vendor).expect("a known vendor");
        match &mut v.window {
            Some((start, calls)) if now.duration_since(*start) < Duration::from_secs(1) => {
                if *calls >= limit {
                    return Err(1);
                }
                *calls += 1;
            }
            window => *window = Some((now, 1)),
        }
        Ok(())
    }

    pub(crate) fn issue(&self, token: String, issued: Issued) {
        self.lock().tokens.insert(token, issued);
    }

    /// The token's issue, if the sandbox's token endpoint issued it.
    pub(crate) fn issued(&self, token: &str) -> Option<Issued> {
        self.lock().tokens.get(token).cloned()
    }
}
