//! Write requests as [`WriteJob`]s for the store's write path ([`Store::submit_write`]): the
//! store runs the job in a transaction (SQLite: in a savepoint of a group commit) and
//! finishes it after the commit. A change due at once is answered once its version is in force
//! here: the gateways the request claimed are reconciled right away (on the writer thread for a
//! data plane that applies inline, else on a blocking thread), the others by a pass; a change
//! its own transaction recorded as applied ([`crate::tasks::change_at_once`]) is put in force
//! from its route writes on the writer thread. A job may
//! run more than once if the store retries a transaction that failed
//! with a retryable error; the handler closure is therefore `FnMut`.
//!
//! [`Store::submit_write`]: vpnroute_store::Store::submit_write

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use vpnroute_domain::ApiError;
use vpnroute_reconciler::AfterPass;
use vpnroute_store::{StoreError, Tx, WriteJob, WriteTx};

use crate::state::App;
use crate::tasks::Effects;

type Handler = Box<dyn FnMut(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send>;

struct RequestJob {
    app: Arc<App>,
    /// The gateway the request names (its `VpnGatewayId`), if any: see [`WriteJob::affinity`].
    gateway: Option<String>,
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
        // Taken whatever the outcome: a failed request's are undone with its savepoint.
        let at_once = tx.take_changes_at_once();
        if let Ok((_, effects)) = &mut self.outcome {
            let data_plane = &self.app.data_plane;
            for change in &at_once {
                // Behind (another replica changed the gateway since this data plane last
                // followed): the whole spec, read here with the gateway still locked, instead of
                // a read of it after the commit.
                let held = data_plane
                    .observe(&change.gateway_id)
                    .ok()
                    .flatten()
                    .filter(|o| o.in_sync)
                    .and_then(|o| o.applied_version);
                if held != Some(change.version - 1) {
                    if let Ok(Some(spec)) =
                        crate::reconcile::spec_recorded_at_once(tx, &change.gateway_id, change.version)
                    {
                        effects.at_once_specs.push(spec);
                    }
                }
            }
            effects.at_once = at_once;
            if self.app.data_plane.applies_inline() {
                // Last in the request's work: the state these reads see is what commits.
                for claimed in &mut effects.claims {
                    let c = &claimed.claim;
                    let (from, to) = (c.applied_version, c.target_version);
                    claimed.changes = if claimed.routes_only && claimed.first_version == from + 1 {
                        // Only this request's route changes lie between: no connection to read.
                        crate::reconcile::route_changes(tx, &c.gateway_id, from, to).ok()
                    } else {
                        crate::reconcile::spec_changes(tx, &c.gateway_id, from, to)
                            .ok()
                            .flatten()
                    };
                }
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

    fn affinity(&self) -> Option<&str> {
        self.gateway.as_deref()
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let RequestJob {
            app, outcome, reply, ..
        } = *self;
        let committed = match (committed, outcome) {
            (Ok(()), Ok((body, effects))) if crate::tasks::after_commit(&app, &effects) => {
                if effects.in_force.is_empty() && effects.at_once.is_empty() {
                    // Behind a delayed task: answered after the reconciler's next pass.
                    app.reconciler.after_next_pass(Box::new(move || {
                        let _ = reply.send(Committed::Answer(Ok(body)));
                    }));
                    return;
                }
                if app.data_plane.applies_inline() {
                    // On the writer thread: the reply is sent from the last waiter's callback,
                    // with no thread in between.
                    return put_in_force(
                        &app,
                        effects,
                        true,
                        Box::new(move || {
                            let _ = reply.send(Committed::Answer(Ok(body)));
                        }),
                    );
                }
                Committed::InForce(body, effects)
            }
            (Ok(()), outcome) => Committed::Answer(outcome.map(|(body, _)| body)),
            (Err(e), _) => Committed::Answer(Err(ApiError::from(e))),
        };
        let _ = reply.send(committed);
    }
}

/// Run `f` in the store's write path (`gateway`: the gateway it locks, if known; see
/// [`WriteJob::affinity`]); resolves after the commit.
pub async fn submit(
    app: &Arc<App>,
    gateway: Option<String>,
    f: impl FnMut(&App, &Tx<'_>) -> Result<(Value, Effects), ApiError> + Send + 'static,
) -> Result<Value, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    app.metrics
        .write_jobs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.store.submit_write(Box::new(RequestJob {
        app: app.clone(),
        gateway,
        run: Box::new(f),
        outcome: Err(ApiError::INTERNAL_ERROR),
        reply,
    }));
    match answer.await {
        Ok(Committed::Answer(result)) => result,
        Ok(Committed::InForce(body, effects)) => {
            // Data-plane and store calls: off the async threads.
            let (done, in_force) = tokio::sync::oneshot::channel::<()>();
            let app = app.clone();
            tokio::task::spawn_blocking(move || {
                put_in_force(
                    &app,
                    effects,
                    false,
                    Box::new(move || {
                        let _ = done.send(());
                    }),
                )
            });
            let _ = in_force.await;
            Ok(body)
        }
        Err(_) => Err(ApiError::INTERNAL_ERROR),
    }
}

/// Put the versions a committed request made due at once in force here and call `done` once
/// they all are: reconcile the gateways its transaction claimed (`inline`: on this thread,
/// the store's writer, for a data plane that applies inline), and for the others wake the
/// reconciler, whose pass does it.
fn put_in_force(app: &Arc<App>, mut effects: Effects, inline: bool, done: AfterPass) {
    let reconciler = &app.reconciler;
    let pending = Arc::new(AtomicUsize::new(effects.in_force.len() + effects.at_once.len()));
    let done = Arc::new(Mutex::new(Some(done)));
    let answer = || -> AfterPass {
        let (pending, done) = (pending.clone(), done.clone());
        Box::new(move || {
            if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(done) = done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    done();
                }
            }
        })
    };
    // Recorded already: put in force from the request's own route writes (or the whole spec
    // read with them, for a data plane that was behind).
    let mut specs = std::mem::take(&mut effects.at_once_specs);
    for change in std::mem::take(&mut effects.at_once) {
        match specs
            .iter()
            .position(|s| s.gateway_id == change.gateway_id && s.version == change.version)
        {
            Some(i) => reconciler.put_recorded_spec_in_force_inline(specs.swap_remove(i), answer()),
            None => reconciler.put_recorded_in_force_inline(crate::reconcile::changes_at_once(change), answer()),
        }
    }
    let mut unclaimed = false;
    for (gateway_id, version) in &effects.in_force {
        let answer = answer();
        if effects.claims.iter().any(|c| &c.claim.gateway_id == gateway_id) {
            reconciler.when_claimed_in_force(gateway_id, *version, answer);
        } else {
            unclaimed = true;
            reconciler.when_in_force(gateway_id, *version, answer);
        }
    }
    if unclaimed {
        reconciler.wake();
    }
    for claimed in effects.claims {
        let claim = crate::reconcile::to_claim(claimed.claim);
        if inline {
            reconciler.reconcile_claimed_inline(&claim, claimed.changes, crate::state::now_ms());
        } else {
            reconciler.reconcile_claimed(&claim, crate::state::now_ms());
        }
    }
}
