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
    reply: tokio::sync::oneshot::Sender<Committed>,
}

/// What the writer hands back to [`submit`]: the request's outcome and, once committed, what
/// its answer waits for.
enum Committed {
    Answer(Result<Value, ApiError>),
    /// Committed with changes due at once: answered once they are in force.
    InForce(Value, Effects),
}

impl WriteJob for RequestJob {
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError> {
        // What a panic in the handler leaves as the outcome.
        self.outcome = Err(ApiError::INTERNAL_ERROR);
        self.outcome = (self.run)(&self.app, tx);
        if let Ok((_, effects)) = &mut self.outcome {
            if !effects.claims.is_empty() && self.app.data_plane.applies_inline() {
                // Last in the request's work: the state these reads see is what commits.
                effects.claimed_changes = effects
                    .claims
                    .iter()
                    .map(|c| {
                        crate::reconcile::spec_changes(tx, &c.gateway_id, c.applied_version, c.target_version)
                            .ok()
                            .flatten()
                    })
                    .collect();
            }
        }
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
        let committed = match (committed, outcome) {
            (Ok(()), Ok((body, effects))) if crate::tasks::after_commit(&app, &effects) => {
                if effects.in_force.is_empty() {
                    // Behind a delayed task: answered after the reconciler's next pass.
                    app.reconciler.after_next_pass(Box::new(move || {
                        let _ = reply.send(Committed::Answer(Ok(body)));
                    }));
                    return;
                }
                if app.data_plane.applies_inline() {
                    return answer_when_in_force_inline(&app, body, effects, reply);
                }
                Committed::InForce(body, effects)
            }
            (Ok(()), outcome) => Committed::Answer(outcome.map(|(body, _)| body)),
            (Err(e), _) => Committed::Answer(Err(ApiError::from(e))),
        };
        let _ = reply.send(committed);
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
    match answer.await {
        Ok(Committed::Answer(result)) => result,
        Ok(Committed::InForce(body, effects)) => {
            in_force(app, effects).await;
            Ok(body)
        }
        Err(_) => Err(ApiError::INTERNAL_ERROR),
    }
}

/// [`in_force`] on the writer thread, for a data plane that applies inline: the claimed
/// gateways are put in force right after the commit and the reply is sent from the last
/// waiter's callback, with no thread in between.
fn answer_when_in_force_inline(
    app: &Arc<App>,
    body: Value,
    effects: Effects,
    reply: tokio::sync::oneshot::Sender<Committed>,
) {
    let pending = Arc::new(std::sync::atomic::AtomicUsize::new(effects.in_force.len()));
    let answer = Arc::new(std::sync::Mutex::new(Some((reply, body))));
    for (gateway_id, version) in &effects.in_force {
        let (pending, answer) = (pending.clone(), answer.clone());
        app.reconciler.when_in_force(
            gateway_id,
            *version,
            Box::new(move || {
                if pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    if let Some((reply, body)) = answer.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = reply.send(Committed::Answer(Ok(body)));
                    }
                }
            }),
        );
    }
    if effects
        .in_force
        .iter()
        .any(|(g, _)| !effects.claims.iter().any(|c| &c.gateway_id == g))
    {
        app.reconciler.wake();
    }
    let mut changes = effects.claimed_changes.into_iter();
    for claim in effects.claims {
        app.reconciler.reconcile_claimed_inline(
            &crate::reconcile::to_claim(claim),
            changes.next().flatten(),
            crate::state::now_ms(),
        );
    }
}

/// Wait until the versions a committed request made due at once are in force here: reconcile
/// the gateways its transaction claimed, and for the others let a pass do it (on a blocking
/// thread: data-plane and store calls).
async fn in_force(app: &Arc<App>, effects: Effects) {
    let mut waiting = Vec::with_capacity(effects.in_force.len());
    let mut senders = Vec::with_capacity(effects.in_force.len());
    for _ in &effects.in_force {
        let (done, in_force) = tokio::sync::oneshot::channel::<()>();
        senders.push(done);
        waiting.push(in_force);
    }
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let reconciler = &app.reconciler;
        for ((gateway_id, version), done) in effects.in_force.iter().zip(senders) {
            reconciler.when_in_force(
                gateway_id,
                *version,
                Box::new(move || {
                    let _ = done.send(());
                }),
            );
        }
        if effects
            .in_force
            .iter()
            .any(|(g, _)| !effects.claims.iter().any(|c| &c.gateway_id == g))
        {
            reconciler.wake();
        }
        for claim in effects.claims {
            reconciler.reconcile_claimed(&crate::reconcile::to_claim(claim), crate::state::now_ms());
        }
    });
    for w in waiting {
        let _ = w.await;
    }
}
