//! Write requests ([`vpnroute_store::Store::submit_write`]) run on [`writers`] writer
//! threads, each request in a READ COMMITTED transaction of its own (the batch machinery of
//! the SQLite store is kept, in batches of one): round trips, not the commit, bound a
//! connection's rate, so several transactions run side by side and PostgreSQL groups their
//! WAL flushes itself. PostgreSQL's row locks and `lock_gateway` order the conflicting ones.
//! (Batches of several requests per transaction, measured with 6 writers and batches of up
//! to 32, deadlocked on each other's gateway locks: every deadlock costs PostgreSQL's
//! `deadlock_timeout`, 1 s, before the retry.) A batch of one request runs without a
//! savepoint (its failure rolls the transaction back); in a larger batch each request has
//! one, whose commands travel with the next statement (no round trip of their own). A transaction that fails with a retryable error
//! (a serialization failure, a deadlock with another replica, a lost connection) runs again,
//! up to [`WRITE_RETRIES`] times; then its request fails retryably (`ServiceUnavailable`).
//!
//! Each writer thread has its own current-thread runtime and its own connection, made on
//! that runtime: a write transaction on it sends its statements, and reads their answers, on
//! the writer thread itself (`PgTx::block`), not handed to the store's runtime and back (two
//! thread wake-ups per round trip; measured, server CPU per write 512 → 433 µs). Everything
//! else the writer does (nonces, reads) still goes through the store's runtime
//! ([`PgStore::block`]): a shared pool's connection made here would stall while this thread
//! idles.
//!
//! Jobs that name the gateway they lock ([`WriteJob::affinity`]) run one after the other on
//! the writer already running one of that gateway's jobs ([`WriteQueue`]): a second writer
//! taking it would only wait on the gateway's lock, holding a thread and a connection the
//! jobs of other gateways could use. Other jobs go to any writer, in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use vpnroute_store::{StoreError, WriteJob, WRITE_RETRIES};

use crate::PgStore;

/// A job for the writer threads.
pub(crate) struct Queued {
    pub(crate) job: Box<dyn WriteJob>,
    /// Bookkeeping nobody waits for ([`vpnroute_store::Store::submit_write_deferred`]): a
    /// batch of only such jobs commits without waiting for the WAL flush.
    pub(crate) deferred: bool,
}

/// Writer threads (each with one connection of its own): three per CPU core, at least 2, at
/// most 8. A writer spends much of a write waiting (round trips, the commit's WAL flush), so
/// a few more than the cores keep PostgreSQL busy and group its flushes. (Measured on two
/// cores shared with PostgreSQL and the load, one replica, create+delete at 16 clients,
/// alternating runs: 4 writers 746–906 pairs/s, median 796; 6 writers 794–1,050, median 914;
/// 8 writers 811–990. Before writes took fewer round trips, 8 writers were slower than 4:
/// 1,132–1,230 against 1,247–1,418 writes/s.)
pub(crate) fn writers() -> usize {
    std::thread::available_parallelism()
        .map_or(6, |n| n.get() * 3)
        .clamp(2, 8)
}

/// The queue of the writer threads; they end when it is dropped.
pub(crate) struct WriteQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<Dispatch>,
    ready: Condvar,
}

#[derive(Default)]
struct Dispatch {
    /// Jobs no writer has taken, in arrival order.
    queue: VecDeque<Queued>,
    /// The gateways a writer runs a job of, and their jobs queued behind it (that writer
    /// runs them next).
    running: HashMap<String, VecDeque<Queued>>,
    closed: bool,
}

impl WriteQueue {
    pub(crate) fn send(&self, queued: Queued) {
        self.shared.lock().queue.push_back(queued);
        self.shared.ready.notify_one();
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Dispatch> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job of the writer that last ran a job of gateway `mine` (updated to the
    /// gateway of the job returned): a job of `mine` queued behind it, or the first queued
    /// job whose gateway no other writer runs (waiting for one). `None` once the queue is
    /// closed and empty.
    fn next(&self, mine: &mut Option<String>) -> Option<Queued> {
        let mut d = self.lock();
        if let Some(gateway) = mine.take() {
            match d.running.get_mut(&gateway).and_then(VecDeque::pop_front) {
                Some(job) => {
                    *mine = Some(gateway);
                    return Some(job);
                }
                None => {
                    d.running.remove(&gateway);
                }
            }
        }
        loop {
            while let Some(job) = d.queue.pop_front() {
                let Some(gateway) = job.job.affinity().map(str::to_owned) else {
                    return Some(job);
                };
                if let Some(behind) = d.running.get_mut(&gateway) {
                    behind.push_back(job);
                    continue;
                }
                d.running.insert(gateway.clone(), VecDeque::new());
                *mine = Some(gateway);
                return Some(job);
            }
            if d.closed {
                return None;
            }
            d = self.ready.wait(d).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Start the writer threads of `store`.
pub(crate) fn start(store: Weak<PgStore>) -> WriteQueue {
    let shared = Arc::new(Shared {
        state: Mutex::new(Dispatch::default()),
        ready: Condvar::new(),
    });
    for i in 0..writers() {
        let (store, shared) = (store.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("pg-writer-{i}"))
            .spawn(move || run(store, &shared))
            .expect("spawn writer thread");
    }
    WriteQueue { shared }
}

/// A writer thread's own runtime and connection pool (of one), for the store `owner`.
struct Own {
    owner: *const PgStore,
    rt: tokio::runtime::Runtime,
    pool: deadpool_postgres::Pool,
}

thread_local! {
    static OWN: std::cell::RefCell<Option<Own>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` on this thread's own runtime, if this is a writer thread of `store` (and no
/// runtime runs on this thread already); `None` otherwise.
pub(crate) fn on_own_runtime<F: std::future::Future>(store: &PgStore, f: F) -> Option<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return None;
    }
    OWN.with(|own| {
        let own = own.try_borrow().ok()?;
        let own = own.as_ref().filter(|o| std::ptr::eq(o.owner, store))?;
        Some(own.rt.block_on(f))
    })
}

/// A connection of this writer thread's own pool (made on its own runtime), if this is a
/// writer thread of `store`.
pub(crate) fn own_connection(store: &PgStore) -> Option<Result<deadpool_postgres::Object, StoreError>> {
    let pool = OWN.with(|own| {
        let own = own.try_borrow().ok()?;
        own.as_ref()
            .filter(|o| std::ptr::eq(o.owner, store))
            .map(|o| o.pool.clone())
    })?;
    on_own_runtime(store, async move { pool.get().await.map_err(crate::pool_err) })
}

fn run(store: Weak<PgStore>, queue: &Shared) {
    if let Some(s) = store.upgrade() {
        let own = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("postgres writer runtime: {e}")))
            .and_then(|rt| Ok((rt, crate::make_pool(s.config.clone(), 1)?)));
        match own {
            Ok((rt, pool)) => OWN.with(|o| {
                *o.borrow_mut() = Some(Own {
                    owner: Arc::as_ptr(&s),
                    rt,
                    pool,
                })
            }),
            // The store's shared pool and runtime serve this thread instead.
            Err(e) => tracing::warn!(error = %e, "postgres: writer thread without its own connection"),
        }
    }
    crate::tx::predicting(true);
    let mut gateway = None;
    while let Some(batch) = queue.next(&mut gateway).map(|job| vec![job]) {
        let Some(store) = store.upgrade() else {
            for queued in batch {
                queued.job.finish(Err(StoreError::Other("the store is closed".into())));
            }
            continue;
        };
        let relaxed = batch.iter().all(|q| q.deferred);
        commit_batch(&store, batch.into_iter().map(|q| q.job).collect(), relaxed);
    }
    // The connection (its task on the runtime) before the runtime.
    if let Some(own) = OWN.with(|o| o.borrow_mut().take()) {
        drop(own.pool);
        drop(own.rt);
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

/// Why a batch's transaction ends without a commit.
enum Undo {
    /// The store failed (retried if retryable).
    Store(StoreError),
    /// The only request of the batch failed on its own: nothing to commit.
    Request,
}

impl From<StoreError> for Undo {
    fn from(e: StoreError) -> Undo {
        Undo::Store(e)
    }
}

fn commit_batch(store: &PgStore, mut batch: Vec<Box<dyn WriteJob>>, relaxed: bool) {
    let mut attempts = 0;
    // A batch of one needs no savepoint: its failure rolls the transaction back (no commit,
    // no subtransaction for PostgreSQL to keep).
    let alone = batch.len() == 1;
    let committed = loop {
        let result = store.write(|tx| {
            if relaxed {
                tx.relax_durability();
            }
            for job in batch.iter_mut() {
                if !alone {
                    tx.savepoint();
                }
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(tx))).unwrap_or_else(|_| {
                        tracing::warn!("write handler panicked");
                        Ok(false)
                    });
                match outcome {
                    Ok(true) if alone => {}
                    Ok(true) => tx.release(),
                    Err(e) if e.is_retryable() => return Err(Undo::Store(e)),
                    // The request failed on its own, but its nonce was taken by this
                    // transaction: run again without predictions, so that the nonce is
                    // recorded (or refused) on its own and outlives the failure.
                    Ok(false) | Err(_) if tx.took_nonce() => return Err(Undo::Store(crate::tx::missed_prediction())),
                    Ok(false) | Err(_) if alone => return Err(Undo::Request),
                    // A request's own failure (also a non-retryable store error): undo it only.
                    Ok(false) | Err(_) => tx.rollback_to(),
                }
            }
            Ok::<_, Undo>(())
        });
        match result {
            Err(Undo::Store(e)) if e.is_retryable() && attempts < WRITE_RETRIES => {
                attempts += 1;
                tracing::debug!(attempts, error = %e, "write batch retried");
                // A short random pause first: after a deadlock, the transaction that won goes
                // on; a retry racing it for the same first rows (a lock row both created)
                // would deadlock again. (None after a missed prediction: nobody to wait for.)
                if crate::tx::is_predicting() {
                    std::thread::sleep(std::time::Duration::from_millis(
                        rand::random_range(2..=10) * attempts as u64,
                    ));
                }
            }
            // The request's outcome is its own failure: it is answered as if committed.
            Err(Undo::Request) => break Ok(()),
            Err(Undo::Store(e)) => break Err(e),
            Ok(()) => break Ok(()),
        }
    };
    // A prediction that missed stopped them for this batch's retries only.
    crate::tx::predicting(true);
    match committed {
        Ok(()) => batch.into_iter().for_each(|job| job.finish(Ok(()))),
        // Nothing of the batch is durable: every request fails.
        Err(e) => batch.into_iter().for_each(|job| job.finish(Err(for_each_request(&e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job naming `gateway`; it does nothing (the dispatch is what is tested).
    struct Named(Option<&'static str>);

    impl WriteJob for Named {
        fn run(&mut self, _: &dyn vpnroute_store::WriteTx) -> Result<bool, StoreError> {
            Ok(true)
        }
        fn finish(self: Box<Self>, _: Result<(), StoreError>) {}
        fn affinity(&self) -> Option<&str> {
            self.0
        }
    }

    fn queued(gateway: Option<&'static str>) -> Queued {
        Queued {
            job: Box::new(Named(gateway)),
            deferred: false,
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(Dispatch::default()),
            ready: Condvar::new(),
        })
    }

    #[test]
    fn a_gateways_next_job_waits_for_the_writer_running_one_of_its_jobs() {
        let queue = WriteQueue { shared: shared() };
        for g in [Some("a"), Some("a"), Some("b"), None] {
            queue.send(queued(g));
        }
        let s = queue.shared.clone();
        drop(queue); // closed: `next` answers None instead of waiting once all is taken
        let (mut first, mut second) = (None, None);
        let gateway = |q: Option<Queued>| q.map(|q| q.job.affinity().map(str::to_owned));
        assert_eq!(gateway(s.next(&mut first)), Some(Some("a".into())));
        // The second `a` is not taken by another writer: it waits behind the first.
        assert_eq!(gateway(s.next(&mut second)), Some(Some("b".into())));
        assert_eq!(gateway(s.next(&mut second)), Some(None));
        assert_eq!(gateway(s.next(&mut second)), None);
        assert_eq!(gateway(s.next(&mut first)), Some(Some("a".into())));
        assert_eq!(gateway(s.next(&mut first)), None);
        assert!(s.lock().running.is_empty(), "every gateway released");
    }

    #[test]
    fn no_two_writers_run_jobs_of_one_gateway_at_once_and_every_job_runs() {
        let queue = WriteQueue { shared: shared() };
        const GATEWAYS: [&str; 3] = ["a", "b", "c"];
        let running: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (done, overlaps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (s, running, done, overlaps) =
                    (queue.shared.clone(), running.clone(), done.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    let mut mine = None;
                    while let Some(q) = s.next(&mut mine) {
                        let i = GATEWAYS.iter().position(|g| Some(*g) == q.job.affinity());
                        if let Some(i) = i {
                            if running[i].fetch_add(1, Ordering::SeqCst) > 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        std::thread::sleep(std::time::Duration::from_micros(50));
                        if let Some(i) = i {
                            running[i].fetch_sub(1, Ordering::SeqCst);
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for n in 0..300 {
            queue.send(queued(if n % 7 == 0 { None } else { Some(GATEWAYS[n % 3]) }));
        }
        drop(queue);
        writers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(done.load(Ordering::SeqCst), 300);
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }
}
