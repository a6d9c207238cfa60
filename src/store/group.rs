//! Group commit: one writer per ledger, taking the writes of every concurrent create and job
//! delivery and committing them together.
//!
//! A create's claim and its outcome each must be durable before the create goes on, but they
//! need not each be a transaction of their own. Callers queue their write and wait for its
//! answer; one drain task at a time takes everything queued, hands it to the backend as one
//! batch (one transaction), and takes the next batch that queued meanwhile. Nothing waits for a
//! batch to fill: a write that finds the writer idle starts a drain at once (after the tasks
//! already ready to run have had their turn) and is written alone, so a lone create pays for no
//! batching; under load, the writes that arrive while one batch commits form the next, and the
//! batches grow with the load by themselves.
//!
//! The drain is a task of its own rather than the first caller's future, so that a caller that
//! goes away (a client hanging up) cannot strand the writes queued behind its own.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ports::WriteStats;

/// The most writes one transaction takes: a bound on how long the writer holds the ledger
/// (and on what one failed commit can fail).
pub(crate) const MAX_BATCH: usize = 256;

/// A backend's writer: writes a batch in one transaction and answers each write's caller once
/// it is durable, or with the error that kept it (or the whole batch) from being written.
pub(crate) trait Batch: Send + Sync + 'static {
    type Write: Send + 'static;
    fn write(self: Arc<Self>, writes: Vec<Self::Write>, stats: Arc<Counters>) -> impl Future<Output = ()> + Send;
}

/// What the writer has done, for `/metrics` and for the tests that prove the batching.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: AtomicU64,
    batches: AtomicU64,
    transactions: AtomicU64,
    largest: AtomicU64,
}

impl Counters {
    /// A transaction the backend committed (a batch, or one write of a batch that had to be
    /// written alone).
    pub(crate) fn committed(&self) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
    }

    fn batch(&self, len: usize) {
        self.writes.fetch_add(len as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WriteStats {
        WriteStats {
            writes: self.writes.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            largest_batch: self.largest.load(Ordering::Relaxed),
        }
    }
}

/// The queue in front of one backend's writer.
pub(crate) struct Group<B: Batch> {
    writer: Arc<B>,
    state: Arc<Mutex<Queue<B::Write>>>,
    counters: Arc<Counters>,
}

impl<B: Batch> Clone for Group<B> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            state: self.state.clone(),
            counters: self.counters.clone(),
        }
    }
}

struct Queue<W> {
    writes: Vec<W>,
    /// A drain task is running: it will take what is queued.
    draining: bool,
}

impl<B: Batch> Group<B> {
    pub(crate) fn new(writer: B) -> Self {
        Self {
            writer: Arc::new(writer),
            state: Arc::new(Mutex::new(Queue {
                writes: Vec::new(),
                draining: false,
            })),
            counters: Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> WriteStats {
        self.counters.snapshot()
    }

    /// Writes queued and not yet taken by a batch.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.state.lock().writes.len()
    }

    /// Queues a write; its answer comes through whatever channel the write carries. Starts
    /// the drain if none is running. Needs a tokio runtime.
    pub(crate) fn submit(&self, write: B::Write) {
        {
            let mut queue = self.state.lock();
            queue.writes.push(write);
            if queue.draining {
                return;
            }
            queue.draining = true;
        }
        let (writer, state, counters) = (self.writer.clone(), self.state.clone(), self.counters.clone());
        tokio::spawn(async move {
            // Should the writer panic, the writes still queued are dropped with their reply
            // channels (their callers hear that the ledger's writer stopped), and the next
            // write starts a new drain.
            let _reset = Reset(&state);
            loop {
                // Let the tasks that are ready to run on this thread run first: those that
                // are about to write join this batch instead of each starting the next. This
                // waits for no timer and no new event, so a lone write is not held back.
                tokio::task::yield_now().await;
                let batch = {
                    let mut queue = state.lock();
                    if queue.writes.is_empty() {
                        queue.draining = false;
                        return;
                    }
                    let rest = queue.writes.len().saturating_sub(MAX_BATCH);
                    let mut batch = std::mem::take(&mut queue.writes);
                    if rest > 0 {
                        queue.writes = batch.split_off(MAX_BATCH);
                    }
                    batch
                };
                counters.batch(batch.len());
                writer.clone().write(batch, counters.clone()).await;
            }
        });
    }
}

struct Reset<'a, W>(&'a Mutex<Queue<W>>);

impl<W> Drop for Reset<'_, W> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.lock();
            queue.writes.clear();
            queue.draining = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{oneshot, Semaphore};

    /// Records each batch's size; holds every batch until the test lets it through.
    struct Recorder {
        sizes: Mutex<Vec<usize>>,
        gate: Semaphore,
    }

    impl Batch for Recorder {
        type Write = oneshot::Sender<usize>;
        async fn write(self: Arc<Self>, writes: Vec<Self::Write>, stats: Arc<Counters>) {
            self.gate.acquire().await.expect("open").forget();
            self.sizes.lock().push(writes.len());
            stats.committed();
            let n = writes.len();
            for w in writes {
                let _ = w.send(n);
            }
        }
    }

    fn group(permits: usize) -> Group<Recorder> {
        Group::new(Recorder {
            sizes: Mutex::new(Vec::new()),
            gate: Semaphore::new(permits),
        })
    }

    #[tokio::test]
    async fn a_lone_write_is_written_alone_at_once() {
        let group = group(10);
        let (tx, rx) = oneshot::channel();
        group.submit(tx);
        assert_eq!(rx.await.unwrap(), 1);
        let stats = group.stats();
        assert_eq!((stats.writes, stats.batches, stats.transactions), (1, 1, 1));
    }

    #[tokio::test]
    async fn writes_that_queue_behind_a_batch_form_the_next() {
        let group = group(0);
        let (first, first_rx) = oneshot::channel();
        group.submit(first);
        while group.stats().batches == 0 {
            tokio::task::yield_now().await;
        }
        // The first batch is being written (held at the gate): these queue behind it.
        let rest: Vec<_> = (0..40)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                group.submit(tx);
                rx
            })
            .collect();
        group.writer.gate.add_permits(2);
        assert_eq!(first_rx.await.unwrap(), 1);
        for rx in rest {
            assert_eq!(rx.await.unwrap(), 40);
        }
        assert_eq!(*group.writer.sizes.lock(), vec![1, 40]);
        let stats = group.stats();
        assert_eq!((stats.writes, stats.batches, stats.largest_batch), (41, 2, 40));
    }

    #[tokio::test]
    async fn a_batch_takes_at_most_max_batch_writes() {
        let group = group(0);
        let receivers: Vec<_> = (0..MAX_BATCH + 10)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                group.submit(tx);
                rx
            })
            .collect();
        group.writer.gate.add_permits(10);
        for rx in receivers {
            rx.await.unwrap();
        }
        assert_eq!(*group.writer.sizes.lock(), vec![MAX_BATCH, 10]);
    }
}
