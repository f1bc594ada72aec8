//! Write requests as [`WriteJob`]s for the store's write path ([`Store::submit_write`]): the
//! store runs the job in a transaction (SQLite: in a savepoint of a group commit) and
//! finishes it after the commit, when the reply is sent and the route-engine effects are
//! applied. A job may run more than once if the store retries a transaction that failed
//! with a retryable error; the handler closure is therefore `FnMut`.
//!
//! [`Store::submit_write`]: vpnroute_store::Store::submit_write

use std::sync::Arc;

use serde_json::Value;
use vpnroute_domain::ApiError;
use vpnroute_store::{StoreError, Tx, WriteJob, WriteTx};

use crate::state::App;
use crate::tasks::Effects;

type Handler = Box<dyn FnMut(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send>;

struct RequestJob {
    app: Arc<App>,
    run: Handler,
    outcome: Result<(Value, Effects), ApiError>,
    reply: tokio::sync::oneshot::Sender<Result<Value, ApiError>>,
}

impl WriteJob for RequestJob {
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError> {
        // What a panic in the handler leaves as the outcome.
        self.outcome = Err(ApiError::INTERNAL_ERROR);
        self.outcome = (self.run)(&self.app, tx);
        match &self.outcome {
            Ok(_) => Ok(true),
            // The store was busy (mapped from `StoreError::Retryable`): the whole transaction
            // is retried.
            Err(e) if e.code == ApiError::SERVICE_UNAVAILABLE.code => Err(StoreError::Retryable(e.message.to_string())),
            Err(_) => Ok(false),
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let RequestJob {
            app, outcome, reply, ..
        } = *self;
        match (committed, outcome) {
            // A change due at once is answered once the reconciler's next pass put it in
            // force (many requests share that pass, as they share the commit).
            (Ok(()), Ok((body, effects))) if crate::tasks::after_commit(&app, &effects) => {
                app.reconciler.after_next_pass(Box::new(move || {
                    let _ = reply.send(Ok(body));
                }));
            }
            (Ok(()), outcome) => {
                let _ = reply.send(outcome.map(|(body, _)| body));
            }
            (Err(e), _) => {
                let _ = reply.send(Err(ApiError::from(e)));
            }
        }
    }
}

/// Run `f` in the store's write path; resolves after the commit.
pub async fn submit(
    app: &Arc<App>,
    f: impl FnMut(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send + 'static,
) -> Result<Value, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    app.store.submit_write(Box::new(RequestJob {
        app: app.clone(),
        run: Box::new(f),
        outcome: Err(ApiError::INTERNAL_ERROR),
        reply,
    }));
    answer.await.unwrap_or(Err(ApiError::INTERNAL_ERROR))
}
