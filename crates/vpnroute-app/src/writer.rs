//! Group commit of mutating requests. Write requests are queued to one writer thread, which
//! runs as many as are waiting in a single SQLite transaction, each inside its own savepoint:
//! a request that fails rolls back only its own work, and every request of the batch is
//! answered after the one commit. The commit (WAL append) dominated a write's cost, so
//! sharing it is what makes concurrent writes scale; the serialisation guarantees are those
//! of a single writer, exactly as before (checks and writes of a request see every earlier
//! request of the batch).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use vpnroute_domain::ApiError;
use vpnroute_store::{Store, Tx};

use crate::state::App;
use crate::tasks::Effects;

type JobFn = Box<dyn FnOnce(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send>;

struct Job {
    run: JobFn,
    reply: tokio::sync::oneshot::Sender<Result<Value, ApiError>>,
}

/// Most requests sharing one commit.
const MAX_BATCH: usize = 128;

pub struct Writer {
    queue: Mutex<Sender<Job>>,
}

impl Writer {
    /// Start the writer thread; `app` is resolved lazily because the writer is part of it.
    pub fn start(app: Arc<std::sync::OnceLock<std::sync::Weak<App>>>) -> Writer {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || run(app, rx))
            .expect("spawn writer thread");
        Writer { queue: Mutex::new(tx) }
    }

    /// Run `f` in the next group transaction; resolves after the commit.
    pub async fn submit(
        &self,
        f: impl FnOnce(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send + 'static,
    ) -> Result<Value, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Job {
                run: Box::new(f),
                reply,
            })
            .map_err(|_| ApiError::INTERNAL_ERROR)?;
        answer.await.unwrap_or(Err(ApiError::INTERNAL_ERROR))
    }
}

fn run(app: Arc<std::sync::OnceLock<std::sync::Weak<App>>>, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let Some(app) = app.get().and_then(|w| w.upgrade()) else {
            let _ = first.reply.send(Err(ApiError::INTERNAL_ERROR));
            continue;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&app, &app.store, batch);
    }
}

fn commit_batch(app: &App, store: &Store, batch: Vec<Job>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut outcomes: Vec<Result<(Value, Effects), ApiError>> = Vec::with_capacity(batch.len());
    let committed = store.write(|tx| {
        for job in batch {
            tx.savepoint()?;
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.run)(app, tx))).unwrap_or_else(|_| {
                    tracing::warn!("write handler panicked");
                    Err(ApiError::INTERNAL_ERROR)
                });
            match &outcome {
                Ok(_) => tx.release()?,
                Err(_) => tx.rollback_to()?,
            }
            outcomes.push(outcome);
            replies.push(job.reply);
        }
        Ok::<_, ApiError>(())
    });
    match committed {
        Ok(()) => {
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                let answer = outcome.map(|(body, effects)| {
                    crate::tasks::after_commit(app, effects);
                    body
                });
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            // Nothing of the batch is durable: every request fails.
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
