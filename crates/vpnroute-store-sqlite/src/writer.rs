//! Group commit of write requests ([`vpnroute_store::Store::submit_write`]). Requests are
//! queued to one writer thread, which runs as many as are waiting in a single SQLite
//! transaction, each inside its own savepoint: a request that fails rolls back only its own
//! work, and every request of the batch is finished after the one commit. The commit (WAL
//! append) dominates a write's cost, so sharing it is what makes concurrent writes scale; the
//! serialisation guarantees are those of a single writer (checks and writes of a request see
//! every earlier request of the batch). A batch whose transaction fails with a retryable
//! error runs again, up to [`WRITE_RETRIES`] times.
//!
//! A deferred job ([`Queued::WithNext`]: bookkeeping nobody waits to see) waits for the next
//! request to share its commit, for [`DEFERRED_WAIT`] at most, so that it costs no commit of
//! its own; in a batch, deferred jobs run before the requests.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Weak;
use std::time::{Duration, Instant};

use vpnroute_store::{StoreError, WriteJob, WRITE_RETRIES};

use crate::SqliteStore;

/// Most requests sharing one commit.
const MAX_BATCH: usize = 128;

/// The longest a deferred job waits for a request to share its commit.
pub(crate) const DEFERRED_WAIT: Duration = Duration::from_millis(20);

/// A job for the writer thread.
pub(crate) enum Queued {
    /// Committed with whatever else is waiting, at once.
    Now(Box<dyn WriteJob>),
    /// Committed with the next [`Queued::Now`] job, or after [`DEFERRED_WAIT`].
    WithNext(Box<dyn WriteJob>),
}

impl Queued {
    pub(crate) fn into_job(self) -> Box<dyn WriteJob> {
        match self {
            Queued::Now(job) | Queued::WithNext(job) => job,
        }
    }
}

/// Start the writer thread of `store`; it ends when the returned sender is dropped.
pub(crate) fn start(store: Weak<SqliteStore>) -> Sender<Queued> {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || run(store, rx))
        .expect("spawn writer thread");
    tx
}

fn run(store: Weak<SqliteStore>, rx: Receiver<Queued>) {
    // Deferred jobs waiting, and when the first of them must be committed at the latest.
    let mut deferred: Vec<Box<dyn WriteJob>> = Vec::new();
    let mut deadline = Instant::now();
    loop {
        let next = if deferred.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        };
        let mut batch = match next {
            Ok(Queued::WithNext(job)) => {
                if deferred.is_empty() {
                    deadline = Instant::now() + DEFERRED_WAIT;
                }
                deferred.push(job);
                continue;
            }
            Ok(Queued::Now(job)) => {
                let mut batch = std::mem::take(&mut deferred);
                batch.push(job);
                batch
            }
            Err(RecvTimeoutError::Timeout) => std::mem::take(&mut deferred),
            Err(RecvTimeoutError::Disconnected) if deferred.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => std::mem::take(&mut deferred),
        };
        // Deferred jobs run first, also those queued behind a request: they are records of
        // versions in force already, and a request of the same gateway after them finds its
        // claim free and takes it in its own transaction (instead of waiting for a pass).
        let mut first = 0;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Queued::WithNext(job)) => {
                    batch.insert(first, job);
                    first += 1;
                }
                Ok(Queued::Now(job)) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(store) = store.upgrade() else {
            for job in batch {
                job.finish(Err(StoreError::Other("the store is closed".into())));
            }
            continue;
        };
        commit_batch(&store, batch);
    }
}

/// A copy of `e` for each request of a failed batch (`StoreError` is not `Clone`).
fn for_each_request(e: &StoreError) -> StoreError {
    match e {
        StoreError::Retryable(m) => StoreError::Retryable(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

pub(crate) fn commit_batch(store: &SqliteStore, mut batch: Vec<Box<dyn WriteJob>>) {
    let mut attempts = 0;
    let committed = loop {
        let result = store.write(|tx| {
            for job in batch.iter_mut() {
                tx.savepoint()?;
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(tx))).unwrap_or_else(|_| {
                        tracing::warn!("write handler panicked");
                        Ok(false)
                    });
                match outcome {
                    Ok(true) => tx.release()?,
                    // A request's own failure (also a non-retryable store error): undo it only.
                    Ok(false) => tx.rollback_to()?,
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(_) => tx.rollback_to()?,
                }
            }
            Ok::<_, StoreError>(())
        });
        match result {
            Err(e) if e.is_retryable() && attempts < WRITE_RETRIES => {
                attempts += 1;
                tracing::debug!(attempts, error = %e, "write batch retried");
            }
            other => break other,
        }
    };
    match committed {
        Ok(()) => batch.into_iter().for_each(|job| job.finish(Ok(()))),
        // Nothing of the batch is durable: every request fails.
        Err(e) => batch.into_iter().for_each(|job| job.finish(Err(for_each_request(&e)))),
    }
}
