//! Group commit of write requests ([`vpnroute_store::Store::submit_write`]), as in the SQLite
//! store: one writer thread per store runs as many queued requests as are waiting in one
//! READ COMMITTED transaction, each inside its own savepoint, so a request that fails rolls
//! back only its own work and every request of the batch is finished after the one commit.
//! The commit (a WAL flush) dominates a write's cost, so sharing it is what makes concurrent
//! writes scale. Savepoint commands travel with the next statement (no round trip of their
//! own). A batch whose transaction fails with a retryable error (a serialization failure, a
//! deadlock with another replica, a lost connection) runs again, up to [`WRITE_RETRIES`]
//! times; then each of its requests fails retryably (`ServiceUnavailable`).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Weak;

use vpnroute_store::{StoreError, WriteJob, WRITE_RETRIES};

use crate::PgStore;

/// Most requests sharing one commit.
const MAX_BATCH: usize = 128;

/// Start the writer thread of `store`; it ends when the returned sender is dropped.
pub(crate) fn start(store: Weak<PgStore>) -> Sender<Box<dyn WriteJob>> {
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("pg-writer".into())
        .spawn(move || run(store, rx))
        .expect("spawn writer thread");
    tx
}

fn run(store: Weak<PgStore>, rx: Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = rx.recv() {
        let Some(store) = store.upgrade() else {
            first.finish(Err(StoreError::Other("the store is closed".into())));
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
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

fn commit_batch(store: &PgStore, mut batch: Vec<Box<dyn WriteJob>>) {
    let mut attempts = 0;
    let committed = loop {
        let result = store.write(|tx| {
            for job in batch.iter_mut() {
                tx.savepoint();
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(tx))).unwrap_or_else(|_| {
                        tracing::warn!("write handler panicked");
                        Ok(false)
                    });
                match outcome {
                    Ok(true) => tx.release(),
                    Err(e) if e.is_retryable() => return Err(e),
                    // A request's own failure (also a non-retryable store error): undo it only.
                    Ok(false) | Err(_) => tx.rollback_to(),
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
