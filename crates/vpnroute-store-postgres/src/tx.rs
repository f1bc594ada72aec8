//! [`PgTx`]: a PostgreSQL transaction (read or write) and its statements, implementing
//! [`ReadTx`] and [`WriteTx`].
//!
//! Transaction control is deferred: `BEGIN`, `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` are
//! queued as text and sent in the same round trip as the next statement (or the commit), so
//! a request costs at most one round trip per store call. A statement that fails aborts the
//! PostgreSQL transaction: the caller rolls it (or its savepoint) back, as every caller of
//! the store does when a method fails.
//!
//! Fewer round trips in write transactions:
//! * a write that needs no answer of an earlier statement is folded into it (route insert,
//!   update and delete: the row, its before-image and the gateway's route count in one
//!   statement);
//! * on a writer thread, a write whose answer nothing needs (a route's insert, update or
//!   delete in a version recorded at once; an insert's `seq` is taken with the gateway's
//!   lock) is not sent on its own but with the next round trip, like the checks of
//!   predictions below ([`Deferred`]); a failed one fails every later statement and the
//!   commit with its error;
//! * statements a call needs together go out in one round trip (tokio-postgres pipelines the
//!   queries polled together): [`WriteTx::lock_gateway`] sends, after the lock, one statement
//!   with the reads a writer of the gateway makes next (the gateway's row and its children,
//!   the resources they name, its pending tasks, route counts and versions); a claim sends
//!   the gateway's tasks with it, a record of the applied version the tasks left and the
//!   gateway's row;
//! * on a writer thread, what is known without a read is *predicted* and checked in the next
//!   round trip ([`Deferred`]): the access key a request was first authenticated with (as
//!   read in the last second), and a change recorded at once ([`WriteTx::change_at_once`])
//!   when the lock's reads found nothing pending. The check fails the statement (so the
//!   transaction can never commit) unless the prediction held; the transaction is then run
//!   again without predictions. The key's check and the request's nonce (taken by the
//!   transaction, [`WriteTx::take_nonce`]) travel as one statement;
//! * those answers are kept in the transaction's memo ([`Memo`]) and answer the matching
//!   reads until this transaction writes what they read (each write forgets its part, a
//!   route's write is followed in the list of its gateway's routes; a savepoint forgets
//!   everything). Each is a statement run after the gateway lock was granted, so under READ
//!   COMMITTED a later read would have seen the same rows, or rows committed by writers that
//!   do not hold the gateway lock, which a statement-level snapshot may or may not see
//!   anyway.
//!
//! A read transaction's memo holds what it read ahead (`ahead.rs`): on its one snapshot
//! (REPEATABLE READ), a later single read would see the same rows. A write transaction does
//! not read ahead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use vpnroute_domain::model::{RouteKind, VpcRouteEntry, VpnRoute};
use vpnroute_store::cache::{Query, ReadCache};
use vpnroute_store::{
    AccessKey, Account, AnyDoc, ChangeAtOnce, ChangeFeed, DocType, ReadAhead, ReadTx, ReconcileClaim, ReconcileFailure,
    Resource, ResourceKind, StoreError, Task, WriteTx,
};

use crate::{current_generation, pg_err, PgStore};

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    Read,
    /// A read whose transaction begins (on a connection taken then) on the first cache miss.
    Lazy,
    /// A read of cached results only: a miss fails with [`StoreError::SnapshotMoved`] and
    /// marks the read torn (no connection, no database).
    CacheOnly,
}

/// A transaction (read or write) on the store. A read transaction also carries the read
/// cache and the commit generation it reads at (see [`vpnroute_store::cache`]).
pub struct PgTx<'s> {
    store: &'s PgStore,
    conn: RefCell<Option<Object>>,
    mode: Mode,
    /// Whether the database transaction is open (for `Lazy`: begun).
    begun: Cell<bool>,
    /// Transaction control to send before the next statement.
    pending: RefCell<String>,
    cache: Option<&'s ReadCache>,
    generation: Cell<u64>,
    used_cache: Cell<bool>,
    torn: Cell<bool>,
    /// Set once COMMIT or ROLLBACK was sent; else Drop rolls back.
    ended: Cell<bool>,
    /// Answers read together with a write's statements, and a read transaction's reads
    /// ahead (`ahead.rs`).
    memo: RefCell<Memo>,
    /// Versions recorded as applied by this transaction ([`WriteTx::change_at_once`]) and
    /// not taken yet, with their route writes.
    pub(crate) at_once: RefCell<Vec<ChangeAtOnce>>,
    /// A first check of a request (cache only): authentication data may come from
    /// `PgStore::recent_auth`.
    pub(crate) first_check: bool,
    /// Checks of predictions, sent with the next round trip ([`Deferred`]).
    deferred: RefCell<Vec<Deferred>>,
    /// Whether a savepoint was queued (no predictions then: a check sent after it could be
    /// undone with it).
    savepoints: Cell<bool>,
    /// On a writer thread's own connection (see `writer.rs`).
    own: bool,
    /// Whether this transaction changed or removed access keys or RAM directories: once it
    /// commits, what this replica read of them recently is forgotten (`recent_auth.rs`).
    wrote_auth: Cell<bool>,
    /// Whether this transaction took its request's nonce ([`WriteTx::take_nonce`]).
    took_nonce: Cell<bool>,
    /// A route `seq` taken with a gateway's lock on a writer thread, for a route insert of
    /// that gateway's version recorded at once (see `PgTx::insert_route`).
    route_seq: RefCell<Option<(String, i64)>>,
    /// The error of a round trip that carried deferred statements ([`Deferred`]), kept: the
    /// PostgreSQL transaction is aborted, so every later statement and the commit fail with
    /// it (not with "transaction aborted"), even if the call it reached ignored it.
    deferred_failed: RefCell<Option<StoreError>>,
}

/// The check of a prediction: something a write transaction took as known without reading
/// it (an access key as recently read, a gateway's versions as read with its lock), sent in
/// the transaction's next round trip. The statement fails (division by zero, SQLSTATE 22012)
/// unless the prediction holds, so a transaction never commits on a wrong one: it fails
/// retryably, and its retry on the same writer thread predicts nothing ([`predicting`]).
/// Under READ COMMITTED the check sees what a read at that point would have seen, so the
/// outcome is the one the read would have given. A write whose answer nothing needs travels
/// the same way ([`PgTx::write_or_defer`]).
pub(crate) struct Deferred {
    sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

thread_local! {
    /// Whether write transactions on this thread may predict (writer threads, between a
    /// missed prediction and the end of that job's retries: not).
    static PREDICTING: Cell<bool> = const { Cell::new(false) };
}

/// Let (or stop) write transactions on this thread predict (see [`Deferred`]).
pub(crate) fn predicting(on: bool) {
    PREDICTING.with(|p| p.set(on));
}

/// Whether write transactions on this thread may predict now.
pub(crate) fn is_predicting() -> bool {
    PREDICTING.with(Cell::get)
}

/// The retryable failure of a transaction whose prediction did not hold.
pub(crate) fn missed_prediction() -> StoreError {
    predicting(false);
    StoreError::Retryable("postgres: a prediction did not hold; retried reading".into())
}

/// The error of a prediction's check: a prediction that did not hold (22012), or what it is.
fn check_err(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO) {
        return missed_prediction();
    }
    pg_err(e)
}

/// Checks of an access key predicted as recently read, of an account's RAM directory, and
/// of a gateway's version change recorded at once (see [`Deferred`]).
const KEY_UNCHANGED: &str = "SELECT 1 / (count(*) = 1)::int FROM access_keys WHERE id = $1 AND account_id = $2 \
    AND secret = $3 AND status = $4 AND created_at = $5 AND ram_user_id IS NOT DISTINCT FROM $6";
const DIRECTORY_UNCHANGED: &str =
    "SELECT 1 / (count(*) = 1)::int FROM ram_directories WHERE account_id = $1 AND doc = $2";
/// A write's nonce taken by its transaction ([`WriteTx::take_nonce`]): recorded, or its
/// expired row kept anew, else (still refused) the check fails.
const NONCE_FRESH: &str = "WITH ins AS (INSERT INTO nonces AS s(access_key_id, nonce, keep_until) \
    VALUES ($1, $2, $3) ON CONFLICT (access_key_id, nonce) DO UPDATE SET keep_until = EXCLUDED.keep_until \
    WHERE s.keep_until < $4 RETURNING 1) SELECT 1 / (SELECT count(*) FROM ins)::int";
/// [`NONCE_FRESH`] and [`KEY_UNCHANGED`] (its `$1`…`$6` as `$5`…`$10`) in one statement: a
/// write's nonce and its access key are taken in the same request, so their checks travel
/// together; one execution less per write. Either failing fails it, as either alone would.
const NONCE_FRESH_AND_KEY_UNCHANGED: &str = "WITH ins AS (INSERT INTO nonces AS s(access_key_id, nonce, keep_until) \
    VALUES ($1, $2, $3) ON CONFLICT (access_key_id, nonce) DO UPDATE SET keep_until = EXCLUDED.keep_until \
    WHERE s.keep_until < $4 RETURNING 1) SELECT 1 / ((SELECT count(*) FROM ins) = 1 \
    AND (SELECT count(*) FROM access_keys WHERE id = $5 AND account_id = $6 AND secret = $7 AND status = $8 \
    AND created_at = $9 AND ram_user_id IS NOT DISTINCT FROM $10) = 1)::int";
pub(crate) const AT_ONCE_AS_PREDICTED: &str = "WITH u AS (UPDATE gateway_versions \
    SET desired = desired + 1, applied = applied + 1 \
    WHERE gateway_id = $1 AND desired = applied AND desired = $3 AND (lease_until IS NULL OR lease_until <= $2) \
    RETURNING 1) SELECT 1 / (count(*) = 1)::int FROM u";

/// A route's update, insert (its `seq` known) and delete in a version recorded at once (no
/// before-image): writes whose answer nothing needs, sent with the next round trip on a
/// writer thread ([`PgTx::write_or_defer`]).
const UPDATE_ROUTE_AT_ONCE: &str =
    "UPDATE vpn_routes SET weight = $2, priority = $3, published = $4, description = $5 WHERE seq = $1";
const INSERT_ROUTE_AT_ONCE: &str = "WITH r AS (INSERT INTO vpn_routes(kind, gateway_id, route_source, route_dest, \
    next_hop, weight, priority, published, description, overlay_mode, create_time, seq) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING seq) \
    INSERT INTO gateway_route_counts(gateway_id, kind, n) SELECT $2, $1, 1 FROM r \
    ON CONFLICT (gateway_id, kind) DO UPDATE SET n = gateway_route_counts.n + EXCLUDED.n";
const DELETE_ROUTE_AT_ONCE: &str = "WITH d AS (DELETE FROM vpn_routes WHERE seq = $2 RETURNING kind) \
    INSERT INTO gateway_route_counts(gateway_id, kind, n) SELECT $1, kind, -1 FROM d \
    ON CONFLICT (gateway_id, kind) DO UPDATE SET n = gateway_route_counts.n + EXCLUDED.n";

/// A resource row: (account id, region id, JSON document).
#[derive(Clone)]
pub(crate) struct ResourceRow {
    pub(crate) account_id: String,
    pub(crate) region_id: String,
    pub(crate) doc: String,
}

/// What a write transaction read in the round trip of one of its writes (see the module
/// docs), and what any transaction read ahead (`ahead.rs`), until it writes what these rows
/// come from (a write of one route is followed in the list of its gateway's routes instead).
#[derive(Default)]
pub(crate) struct Memo {
    /// (kind, id) → the row (`None`: known absent: the locked gateway's own row, or a row
    /// read ahead).
    pub(crate) rows: HashMap<(&'static str, String), Option<ResourceRow>>,
    /// Parent id → every child as (kind, document), in creation order.
    pub(crate) children: HashMap<String, Vec<(String, String)>>,
    /// Gateway → its pending tasks, by version.
    pub(crate) tasks: HashMap<String, Vec<Task>>,
    /// Gateway → (kind, count) of each route kind it has a count row of.
    route_counts: HashMap<String, Vec<(String, u64)>>,
    /// Gateway → (desired, applied).
    pub(crate) versions: HashMap<String, (i64, i64)>,
    /// Gateway → (from, to, its route changes from version `from` to `to`).
    pub(crate) changes: HashMap<String, RouteChanges>,
    /// Gateway → its (desired, applied, lease_until) as read with its lock (`None`: no row),
    /// for a prediction of [`WriteTx::change_at_once`].
    pub(crate) locked_versions: HashMap<String, Option<(i64, i64, Option<i64>)>>,
    /// Gateway → every route it has, by seq, as read with its lock (only when it has at most
    /// [`MEMO_ROUTES`]).
    routes: HashMap<String, Vec<VpnRoute>>,
    /// Gateway → (version, its routes at that version), read ahead (`ahead.rs`).
    pub(crate) routes_at: HashMap<String, (i64, Vec<VpnRoute>)>,
}

/// `(from, to, changes)` of [`ReadTx::route_changes`].
pub(crate) type RouteChanges = (i64, i64, Vec<(i64, Option<VpnRoute>)>);

impl Memo {
    /// Forget every resource row and child list (after a write to `resources`).
    fn forget_resources(&mut self) {
        self.rows.clear();
        self.children.clear();
    }

    /// Forget what a change of a gateway's versions changes: its tasks, versions and route
    /// changes.
    pub(crate) fn forget_versions(&mut self, gateway_id: &str) {
        self.routes_at.remove(gateway_id);
        self.locked_versions.remove(gateway_id);
        self.tasks.remove(gateway_id);
        self.versions.remove(gateway_id);
        self.changes.remove(gateway_id);
    }

    /// Follow a write of one route of `gateway_id` in the list of its routes, if the memo
    /// holds it (the gateway's lock is held, so this transaction's writes are the list's only
    /// changes; the spec of a change recorded at once reads it next), and forget the rest of
    /// what the write changes: counts, route changes, routes at a version.
    fn route_written(&mut self, gateway_id: &str, written: RouteWrite<'_>) {
        self.routes_at.remove(gateway_id);
        self.route_counts.remove(gateway_id);
        self.changes.remove(gateway_id);
        let Some(routes) = self.routes.get_mut(gateway_id) else {
            return;
        };
        match written {
            RouteWrite::Inserted(r) => {
                let at = routes.partition_point(|x| x.seq < r.seq);
                routes.insert(at, r);
            }
            RouteWrite::Updated(r) => {
                if let Some(x) = routes.iter_mut().find(|x| x.seq == r.seq) {
                    // The columns `update_route` writes.
                    x.weight = r.weight;
                    x.priority = r.priority;
                    x.published = r.published;
                    x.description = r.description.clone();
                }
            }
            RouteWrite::Deleted(seq) => routes.retain(|x| x.seq != seq),
        }
    }
}

/// A write of one route ([`Memo::route_written`]).
enum RouteWrite<'a> {
    Inserted(VpnRoute),
    Updated(&'a VpnRoute),
    Deleted(i64),
}

/// The route columns in `route_from_row` order.
macro_rules! route_columns {
    () => {
        "seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time"
    };
}
pub(crate) use route_columns;

/// A route kind as stored (`dbr`, `pbr`).
fn route_kind(kind: &str) -> RouteKind {
    if kind == "pbr" {
        RouteKind::Pbr
    } else {
        RouteKind::Dbr
    }
}

pub(crate) fn route_from_row(r: &Row) -> VpnRoute {
    VpnRoute {
        seq: r.get(0),
        kind: route_kind(r.get(1)),
        gateway_id: r.get(2),
        source: r.get(3),
        dest: r.get(4),
        next_hop: r.get(5),
        weight: r.get(6),
        priority: r.get(7),
        published: r.get(8),
        description: r.get(9),
        overlay_mode: r.get(10),
        create_time: r.get(11),
    }
}

macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT id, route_table_id, dest, next_hop_type, next_hop_id, entry_type, name, description, create_time FROM vpc_route_entries ",
            $rest
        )
    };
}

fn entry_from_row(r: &Row) -> VpcRouteEntry {
    VpcRouteEntry {
        id: r.get(0),
        route_table_id: r.get(1),
        dest: r.get(2),
        next_hop_type: r.get(3),
        next_hop_id: r.get(4),
        entry_type: r.get(5),
        name: r.get(6),
        description: r.get(7),
        create_time: r.get(8),
    }
}

const KEY_COLUMNS: &str = "SELECT id, account_id, secret, status, created_at, ram_user_id FROM access_keys ";

fn key_from_row(r: &Row) -> AccessKey {
    AccessKey {
        id: r.get(0),
        account_id: r.get(1),
        secret: r.get(2),
        status: r.get(3),
        created_at: r.get(4),
        ram_user_id: r.get(5),
    }
}

fn count(r: Option<Row>) -> u64 {
    r.map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64
}

impl<'s> PgTx<'s> {
    fn new(store: &'s PgStore, conn: Option<Object>, mode: Mode) -> Self {
        PgTx {
            store,
            conn: RefCell::new(conn),
            mode,
            begun: Cell::new(false),
            pending: RefCell::new(String::new()),
            cache: None,
            generation: Cell::new(0),
            used_cache: Cell::new(false),
            torn: Cell::new(false),
            ended: Cell::new(false),
            memo: RefCell::new(Memo::default()),
            at_once: RefCell::new(Vec::new()),
            first_check: false,
            deferred: RefCell::new(Vec::new()),
            savepoints: Cell::new(false),
            own: false,
            wrote_auth: Cell::new(false),
            took_nonce: Cell::new(false),
            route_seq: RefCell::new(None),
            deferred_failed: RefCell::new(None),
        }
    }

    /// Run `f`, a statement on this transaction's connection, to completion: on the writer
    /// thread's own runtime for its own connection, else on the store's.
    fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if self.own {
            // Made on this thread's runtime: it runs there or nowhere.
            return crate::writer::on_own_runtime(self.store, f).expect("a writer's own connection off its thread");
        }
        self.store.block(f)
    }

    /// Whether this transaction took its request's nonce ([`WriteTx::take_nonce`]).
    pub(crate) fn took_nonce(&self) -> bool {
        self.took_nonce.get()
    }

    /// Whether this transaction may predict (see [`Deferred`]).
    pub(crate) fn may_predict(&self) -> bool {
        self.mode == Mode::Write && !self.savepoints.get() && is_predicting()
    }

    /// Check a prediction in the next round trip (see [`Deferred`]). A nonce's check and an
    /// access key's waiting together become one statement ([`NONCE_FRESH_AND_KEY_UNCHANGED`]).
    pub(crate) fn defer(&self, sql: &'static str, mut params: Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut deferred = self.deferred.borrow_mut();
        let partner = match sql {
            NONCE_FRESH => Some(KEY_UNCHANGED),
            KEY_UNCHANGED => Some(NONCE_FRESH),
            _ => None,
        };
        if let Some(at) = partner.and_then(|p| deferred.iter().position(|d| d.sql == p)) {
            let other = deferred.remove(at);
            params = if sql == NONCE_FRESH {
                params.into_iter().chain(other.params).collect()
            } else {
                other.params.into_iter().chain(params).collect()
            };
            // Where the first of the two was: before the statements deferred after it.
            deferred.insert(
                at,
                Deferred {
                    sql: NONCE_FRESH_AND_KEY_UNCHANGED,
                    params,
                },
            );
            return;
        }
        deferred.push(Deferred { sql, params });
    }

    /// The kept error of deferred statements, if one failed (see `deferred_failed`).
    fn deferred_ok(&self) -> Result<(), StoreError> {
        match &*self.deferred_failed.borrow() {
            Some(e) => Err(crate::batch::copy_err(e)),
            None => Ok(()),
        }
    }

    /// `answer` of a round trip; kept if it carried deferred statements (`checked`) and failed.
    fn keep_deferred_failure<T>(&self, checked: bool, answer: Result<T, StoreError>) -> Result<T, StoreError> {
        if let (true, Err(e)) = (checked, &answer) {
            *self.deferred_failed.borrow_mut() = Some(crate::batch::copy_err(e));
        }
        answer
    }

    /// A write whose answer nothing needs: sent with the next round trip (another
    /// statement's or the commit's) where this transaction may predict, like the checks of
    /// predictions ([`Deferred`]), so it costs no round trip of its own; else at once. Its
    /// error, if any, fails that next round trip, as it would have failed this call: the
    /// transaction cannot commit either way.
    fn write_or_defer(&self, sql: &'static str, params: Vec<Box<dyn ToSql + Sync + Send>>) -> Result<(), StoreError> {
        if self.may_predict() {
            self.defer(sql, params);
            return Ok(());
        }
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        self.execute(sql, &params).map(|_| ())
    }

    pub(crate) fn memo(&self) -> std::cell::RefMut<'_, Memo> {
        self.memo.borrow_mut()
    }

    /// A write transaction (`BEGIN` goes out with its first statement); `own`: on a writer
    /// thread's own connection, whose statements run on that thread's runtime.
    pub(crate) fn begin_write(store: &'s PgStore, conn: Object, own: bool) -> Self {
        let mut tx = PgTx::new(store, Some(conn), Mode::Write);
        tx.own = own;
        tx.queue("BEGIN");
        tx.begun.set(true);
        tx
    }

    /// A read transaction, its snapshot fixed now (one round trip: `BEGIN` and the
    /// generation).
    pub(crate) fn begin_read(store: &'s PgStore, conn: Object) -> Result<Self, StoreError> {
        let mut tx = PgTx::new(store, Some(conn), Mode::Read);
        tx.cache = Some(&store.cache);
        tx.queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        tx.begun.set(true);
        let g = tx.snapshot_generation()?;
        tx.generation.set(g);
        store.generation.publish(g);
        Ok(tx)
    }

    /// A read at `generation` that takes a connection and begins a transaction only on a
    /// cache miss.
    pub(crate) fn optimistic(store: &'s PgStore, generation: u64) -> Self {
        let mut tx = PgTx::new(store, None, Mode::Lazy);
        tx.cache = Some(&store.cache);
        tx.generation.set(generation);
        tx
    }

    /// A read of the results cached at `generation` only (see [`Mode::CacheOnly`]).
    pub(crate) fn cache_only(store: &'s PgStore, generation: u64) -> Self {
        let mut tx = PgTx::new(store, None, Mode::CacheOnly);
        tx.cache = Some(&store.cache);
        tx.generation.set(generation);
        tx
    }

    /// Whether this is a read transaction that may read from the database (not a write:
    /// at READ COMMITTED, without a gateway's lock, rows read ahead could be stale by a later
    /// statement; not a read of cached results only, which a statement would end).
    pub(crate) fn may_read_ahead(&self) -> bool {
        matches!(self.mode, Mode::Read | Mode::Lazy)
    }

    pub(crate) fn is_torn(&self) -> bool {
        self.torn.get()
    }

    fn queue(&self, sql: &str) {
        let mut p = self.pending.borrow_mut();
        if !p.is_empty() {
            p.push_str("; ");
        }
        p.push_str(sql);
    }

    /// The generation in this transaction's snapshot (the first statement of a read).
    fn snapshot_generation(&self) -> Result<u64, StoreError> {
        let pending = self.pending.take();
        let conn = self.conn.borrow();
        let client = conn.as_ref().ok_or_else(gone)?;
        self.block(after(client, pending, current_generation(client)))
    }

    /// Begin the lazy read transaction on the first statement that needs the database; its
    /// snapshot may be newer than the generation this read started at.
    fn ensure_begun(&self) -> Result<(), StoreError> {
        match self.mode {
            Mode::Write | Mode::Read => return Ok(()),
            Mode::Lazy if self.begun.get() => return Ok(()),
            Mode::Lazy => {}
            Mode::CacheOnly => {
                self.torn.set(true);
                return Err(StoreError::SnapshotMoved);
            }
        }
        if self.conn.borrow().is_none() {
            let conn = self.store.connection()?;
            *self.conn.borrow_mut() = Some(conn);
        }
        self.queue("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        self.begun.set(true);
        let snapshot = self.snapshot_generation()?;
        if snapshot != self.generation.get() {
            if self.used_cache.get() {
                // Results already taken belong to an older generation: start again.
                self.torn.set(true);
                return Err(StoreError::SnapshotMoved);
            }
            self.generation.set(snapshot);
            self.store.generation.publish(snapshot);
        }
        Ok(())
    }

    /// Run one statement (after the queued transaction control): its rows.
    pub(crate) fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        Ok(self.pipeline(&[(sql, params)])?.pop().unwrap_or_default())
    }

    /// Run `statements` in order, in one round trip (after the queued transaction control):
    /// the rows of each. The first that fails fails the call (and the transaction).
    pub(crate) fn pipeline(&self, statements: &[(&str, Params<'_>)]) -> Result<Vec<Vec<Row>>, StoreError> {
        self.deferred_ok()?;
        self.ensure_begun()?;
        let pending = self.pending.take();
        let deferred = self.deferred.take();
        let conn = self.conn.borrow();
        let client = conn.as_ref().ok_or_else(gone)?;
        let checked = !deferred.is_empty();
        let sqls = with_checks(&deferred, statements.iter().map(|(sql, _)| *sql));
        let deferred = &deferred;
        let answer = self.block(send(client, pending, &sqls, |mut prepared| async move {
            let rest = prepared.split_off(deferred.len());
            let queries = futures_util::future::try_join_all(
                rest.iter()
                    .zip(statements)
                    .map(|(st, (_, params))| async move { client.query(st, params).await.map_err(pg_err) }),
            );
            // The checks first: after a failed one every later statement fails too.
            let (_, answer) = futures_util::try_join!(checks(client, &prepared, deferred), queries)?;
            Ok::<_, StoreError>(answer)
        }));
        self.keep_deferred_failure(checked, after_checks(checked, answer))
    }

    pub(crate) fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    pub(crate) fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Backend(format!("no row from: {sql}")))
    }

    /// Run one statement; the number of rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, StoreError> {
        self.deferred_ok()?;
        self.ensure_begun()?;
        let pending = self.pending.take();
        let deferred = self.deferred.take();
        let conn = self.conn.borrow();
        let client = conn.as_ref().ok_or_else(gone)?;
        let checked = !deferred.is_empty();
        let sqls = with_checks(&deferred, [sql]);
        let deferred = &deferred;
        let answer = self.block(send(client, pending, &sqls, |mut prepared| async move {
            let rest = prepared.split_off(deferred.len());
            let changed = async { client.execute(&rest[0], params).await.map_err(pg_err) };
            let (_, n) = futures_util::try_join!(checks(client, &prepared, deferred), changed)?;
            Ok::<_, StoreError>(n)
        }));
        self.keep_deferred_failure(checked, after_checks(checked, answer))
    }

    fn routes(&self, sql: &str, params: Params<'_>) -> Result<Vec<VpnRoute>, StoreError> {
        Ok(self.query(sql, params)?.iter().map(route_from_row).collect())
    }

    fn entries(&self, sql: &str, params: Params<'_>) -> Result<Vec<VpcRouteEntry>, StoreError> {
        Ok(self.query(sql, params)?.iter().map(entry_from_row).collect())
    }

    /// `load()`, or its result cached at this transaction's generation.
    fn cached_or<V: Clone + Send + Sync + 'static>(
        &self,
        key: impl FnOnce() -> Query,
        load: impl FnOnce() -> Result<V, StoreError>,
    ) -> Result<V, StoreError> {
        let Some(cache) = self.cache else {
            return load();
        };
        let key = key();
        if let Some(v) = cache.get(self.generation.get(), &key) {
            self.used_cache.set(true);
            return Ok(v);
        }
        // Loading may begin the lazy transaction and move the generation to its snapshot.
        let v = load()?;
        cache.put(self.generation.get(), key, v.clone());
        Ok(v)
    }

    // ---------------------------------------------------------------- savepoints

    /// Start a nested unit of work (group commit runs each request in one).
    /// Commit this transaction without waiting for its WAL flush (bookkeeping a crash may
    /// lose: see [`vpnroute_store::Store::submit_write_deferred`]).
    pub(crate) fn relax_durability(&self) {
        self.queue("SET LOCAL synchronous_commit TO OFF");
    }

    pub(crate) fn savepoint(&self) {
        // What the memo holds may be undone by a `ROLLBACK TO`.
        *self.memo.borrow_mut() = Memo::default();
        self.savepoints.set(true);
        self.queue("SAVEPOINT request");
    }

    /// Keep the work since [`PgTx::savepoint`].
    pub(crate) fn release(&self) {
        if !self.drop_unsent_savepoint() {
            self.queue("RELEASE request");
        }
    }

    /// Undo the work since [`PgTx::savepoint`] (the transaction stays open).
    pub(crate) fn rollback_to(&self) {
        *self.memo.borrow_mut() = Memo::default();
        // The versions it took are undone with it.
        self.at_once.borrow_mut().clear();
        if !self.drop_unsent_savepoint() {
            self.queue("ROLLBACK TO request; RELEASE request");
        }
    }

    /// A savepoint with no statement after it needs no round trip at all.
    fn drop_unsent_savepoint(&self) -> bool {
        let mut p = self.pending.borrow_mut();
        for tail in ["; SAVEPOINT request", "SAVEPOINT request"] {
            if p.ends_with(tail) {
                let keep = p.len() - tail.len();
                p.truncate(keep);
                return true;
            }
        }
        false
    }

    // ---------------------------------------------------------------- ending

    /// Commit a write transaction: the checks of predictions, the generation bump and
    /// `COMMIT` in one round trip. Publishes the generation the bump saw (every commit before
    /// it and this one; a concurrent commit may make the one committed larger: reads take
    /// theirs from PostgreSQL, so a lower bound is all this process needs) and asks for the
    /// NOTIFY of the generation committed, which the store sends for a burst of commits
    /// together (`PgStore::notify_commits`).
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        self.ended.set(true);
        if let Err(e) = self.deferred_ok() {
            // Aborted already: nothing to commit.
            self.send_rollback();
            return Err(e);
        }
        let pending = self.pending.take();
        let conn = self.conn.borrow();
        let client = conn.as_ref().ok_or_else(gone)?;
        // Any slot: the generation is their sum. One per committing thread (see
        // `generation_slot`), so that writers committing side by side do not queue on one
        // row's lock.
        let slot = generation_slot();
        let deferred = self.deferred.take();
        let checked = !deferred.is_empty();
        let deferred = &deferred;
        let result = self.block(after(client, pending, async {
            // Prepared (once per connection) before any of them goes out, so that they
            // travel in this order in one round trip: the checks of predictions first (one
            // that fails aborts the transaction, and the COMMIT then rolls it back).
            let checked = futures_util::future::try_join_all(deferred.iter().map(|d| client.prepare_cached(d.sql)))
                .await
                .map_err(pg_err)?;
            let bump = client.prepare_cached(BUMP_GENERATION).await.map_err(pg_err)?;
            let (_, row, _) = futures_util::try_join!(
                checks(client, &checked, deferred),
                async { client.query_one(&bump, &[&slot]).await.map_err(pg_err) },
                async { client.batch_execute("COMMIT").await.map_err(pg_err) }
            )?;
            Ok::<_, StoreError>(row.get::<_, i64>(0) as u64)
        }));
        let result = after_checks(checked, result);
        match result {
            Ok(g) => {
                if self.wrote_auth.get() {
                    self.store.recent_auth.clear();
                }
                self.store.generation.publish(g);
                self.store.commit_notice.notify_one();
                Ok(())
            }
            Err(e) => {
                drop(conn);
                self.send_rollback();
                Err(e)
            }
        }
    }

    /// Roll a write transaction back.
    pub(crate) fn rollback(self) {
        self.send_rollback();
    }

    /// End a read (its result is already taken; a failure to end it only costs the
    /// connection). The `COMMIT` of a read-only transaction is sent without waiting for
    /// its answer: the connection's next user's statements follow it on the wire, so
    /// PostgreSQL ends this transaction first, and nothing a read-only `COMMIT` could answer
    /// changes what was read. One round trip less per read.
    pub(crate) fn end(self) -> Result<(), StoreError> {
        self.ended.set(true);
        if !self.begun.get() {
            return Ok(());
        }
        if self.mode == Mode::Write {
            return self.finish_with("COMMIT");
        }
        let mut pending = self.pending.take();
        if !pending.is_empty() {
            pending.push_str("; ");
        }
        pending.push_str("COMMIT");
        let sent = {
            let conn = self.conn.borrow();
            let client = conn.as_ref().ok_or_else(gone)?;
            // tokio-postgres writes a request when its future is first polled; the answer,
            // with nobody waiting for it, is read and dropped by the connection.
            let commit = client.batch_execute(&pending);
            let mut commit = std::pin::pin!(commit);
            let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
            match commit.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(Err(e)) => Err(pg_err(e)),
                _ => Ok(()),
            }
        };
        if sent.is_err() {
            if let Some(conn) = self.conn.borrow_mut().take() {
                let _ = Object::take(conn);
            }
        }
        sent
    }

    fn send_rollback(&self) {
        self.ended.set(true);
        if self.begun.get() {
            let _ = self.finish_with("ROLLBACK");
        }
    }

    /// Send `sql` (COMMIT or ROLLBACK) after whatever is queued; a connection that fails it
    /// is not given back to the pool (its transaction state is unknown).
    fn finish_with(&self, sql: &str) -> Result<(), StoreError> {
        let mut pending = self.pending.take();
        if sql == "ROLLBACK" {
            // Savepoint commands of an aborted transaction would fail: not needed.
            pending.clear();
        }
        if !pending.is_empty() {
            pending.push_str("; ");
        }
        pending.push_str(sql);
        let result = {
            let conn = self.conn.borrow();
            let client = conn.as_ref().ok_or_else(gone)?;
            self.block(async move { client.batch_execute(&pending).await.map_err(pg_err) })
        };
        if result.is_err() {
            if let Some(conn) = self.conn.borrow_mut().take() {
                let _ = Object::take(conn);
            }
        }
        result
    }

    // ---------------------------------------------------------------- counters

    pub fn next_counter(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self
            .query_one(
                "INSERT INTO counters(name, value) VALUES ($1, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
                &[&name],
            )?
            .get(0))
    }

    // ---------------------------------------------------------------- accounts & keys

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        Ok(self
            .query(
                "SELECT id, name, is_root, created_at FROM accounts ORDER BY created_at, id",
                &[],
            )?
            .iter()
            .map(|r| Account {
                id: r.get(0),
                name: r.get(1),
                is_root: r.get(2),
                created_at: r.get(3),
            })
            .collect())
    }

    pub fn access_key(&self, id: &str) -> Result<Option<AccessKey>, StoreError> {
        if self.may_predict() {
            // As recently read, checked in the next round trip (see `Deferred`).
            if let Some(k) = self
                .store
                .recent_auth
                .get::<AccessKey>(&Query::AccessKey(id.to_string()))
            {
                self.defer(
                    KEY_UNCHANGED,
                    vec![
                        Box::new(k.id.clone()),
                        Box::new(k.account_id.clone()),
                        Box::new(k.secret.clone()),
                        Box::new(k.status.clone()),
                        Box::new(k.created_at),
                        Box::new(k.ram_user_id.clone()),
                    ],
                );
                return Ok(Some(k));
            }
        }
        self.auth_or(
            || Query::AccessKey(id.to_string()),
            || {
                Ok(self
                    .query_opt(
                        "SELECT id, account_id, secret, status, created_at, ram_user_id FROM access_keys WHERE id = $1",
                        &[&id],
                    )?
                    .as_ref()
                    .map(key_from_row))
            },
        )
    }

    pub fn ram_directory(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        if self.may_predict() {
            let key = Query::RamDirectory(account_id.to_string());
            if let Some(doc) = self.store.recent_auth.get::<String>(&key) {
                self.defer(
                    DIRECTORY_UNCHANGED,
                    vec![Box::new(account_id.to_string()), Box::new(doc.clone())],
                );
                return Ok(Some(doc));
            }
        }
        self.auth_or(
            || Query::RamDirectory(account_id.to_string()),
            || {
                Ok(self
                    .query_opt("SELECT doc FROM ram_directories WHERE account_id = $1", &[&account_id])?
                    .map(|r| r.get(0)))
            },
        )
    }

    /// Authentication data: [`PgTx::cached_or`], and for a first check, what was read in the
    /// last second (`recent_auth.rs`). What a read transaction finds is remembered there (only
    /// what exists; a write transaction's rows may be its own, uncommitted).
    fn auth_or<V: Clone + Send + Sync + 'static>(
        &self,
        key: impl Fn() -> Query,
        load: impl FnOnce() -> Result<Option<V>, StoreError>,
    ) -> Result<Option<V>, StoreError> {
        if self.first_check {
            if let Some(v) = self.store.recent_auth.get::<V>(&key()) {
                return Ok(Some(v));
            }
        }
        let v = self.cached_or(&key, load)?;
        if let (Some(found), true) = (&v, self.cache.is_some()) {
            self.store.recent_auth.put(key(), found.clone());
        }
        Ok(v)
    }

    // ---------------------------------------------------------------- resources

    fn load_owner(&self, kind: ResourceKind, id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT account_id, region_id FROM resources WHERE id = $1 AND kind = $2",
                &[&id, &kind.as_str()],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn bump_resource_count(
        &self,
        account_id: &str,
        kind: ResourceKind,
        region_id: &str,
        delta: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO resource_counts(account_id, kind, region_id, n) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, kind, region_id) DO UPDATE SET n = resource_counts.n + EXCLUDED.n",
            &[&account_id, &kind.as_str(), &region_id, &delta],
        )?;
        Ok(())
    }

    pub fn count_resources(&self, kind: ResourceKind, account_id: &str, region_id: &str) -> Result<u64, StoreError> {
        self.cached_or(
            || Query::ResourceCount(kind, account_id.to_string(), region_id.to_string()),
            || {
                Ok(count(self.query_opt(
                    "SELECT n FROM resource_counts WHERE account_id = $1 AND kind = $2 AND region_id = $3",
                    &[&account_id, &kind.as_str(), &region_id],
                )?))
            },
        )
    }

    fn load_resources(
        &self,
        kind: ResourceKind,
        account_id: &str,
        region_id: &str,
        parent: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let total = match parent {
            // The maintained counter: no row count for unfiltered lists.
            None => self.count_resources(kind, account_id, region_id)?,
            Some(p) => count(self.query_opt(
                "SELECT COUNT(*) FROM resources WHERE account_id = $1 AND kind = $2 AND region_id = $3 AND parent_id = $4",
                &[&account_id, &kind.as_str(), &region_id, &p],
            )?),
        };
        let parent = parent.unwrap_or("");
        let (limit, offset) = (limit.min(i64::MAX as u64) as i64, offset.min(i64::MAX as u64) as i64);
        let docs = self
            .query(
                "SELECT doc FROM resources WHERE account_id = $1 AND kind = $2 AND region_id = $3 \
                 AND ($4 = '' OR parent_id = $4) ORDER BY seq LIMIT $5 OFFSET $6",
                &[&account_id, &kind.as_str(), &region_id, &parent, &limit, &offset],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((docs, total))
    }

    // ---------------------------------------------------------------- VPN routes
}

/// A write's generation bump (`$1`: its slot), answering the generation it sees: its own
/// slot after the bump and the others as committed (the statement's snapshot does not see
/// its own update).
const BUMP_GENERATION: &str = "WITH u AS (UPDATE store_gen SET n = n + 1 WHERE slot = $1 RETURNING n) \
    SELECT ((SELECT n FROM u) + (SELECT COALESCE(sum(n), 0) FROM store_gen WHERE slot <> $1))::int8";

/// After commits: the generation now committed, sent to every replica listening.
pub(crate) const NOTIFY_GENERATION: &str = concat!(
    "SELECT g, pg_notify('",
    "vpnroute_gen",
    "', g::TEXT) FROM (SELECT sum(n)::BIGINT AS g FROM store_gen) s"
);

/// Run `f` after the queued transaction control `pending`, in the same round trip: the
/// control text goes out first (so a statement `f` must prepare is parsed after it, e.g.
/// after a `ROLLBACK TO` that leaves an aborted transaction).
async fn after<T>(
    client: &Object,
    pending: String,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    if pending.is_empty() {
        return f.await;
    }
    let (_, v) = futures_util::try_join!(async { client.batch_execute(&pending).await.map_err(pg_err) }, f)?;
    Ok(v)
}

/// Prepare `sqls` (no round trip for statements this connection has prepared before), then
/// send the queued transaction control `pending` and the statements `run` sends with the
/// prepared statements in one round trip, in this order. `run` must send every statement on
/// its first poll (tokio-postgres does: a query is written when its future is first polled),
/// so they travel together. A `ROLLBACK TO` in `pending` goes out first on its own: after a
/// failed statement the transaction is aborted until then, and a prepare would fail.
async fn send<'a, T, Fut>(
    client: &'a Object,
    mut pending: String,
    sqls: &[&str],
    run: impl FnOnce(Vec<Statement>) -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>> + 'a,
{
    if pending.contains("ROLLBACK TO") {
        client.batch_execute(&pending).await.map_err(pg_err)?;
        pending.clear();
    }
    let prepared = futures_util::future::try_join_all(sqls.iter().map(|sql| client.prepare_cached(sql)))
        .await
        .map_err(pg_err)?;
    after(client, pending, run(prepared)).await
}

/// The statements of a round trip: the checks of predictions waiting ([`Deferred`]), then
/// `sqls`.
fn with_checks<'a>(deferred: &'a [Deferred], sqls: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    deferred.iter().map(|d| d.sql).chain(sqls).collect()
}

/// Send the checks of predictions (prepared as `prepared`, see [`Deferred`]).
async fn checks(client: &Object, prepared: &[Statement], deferred: &[Deferred]) -> Result<(), StoreError> {
    let sent = prepared.iter().zip(deferred).map(|(st, d)| async move {
        let params: Vec<&(dyn ToSql + Sync)> = d.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        client.query(st, &params).await.map(|_| ()).map_err(check_err)
    });
    futures_util::future::try_join_all(sent).await.map(|_| ())
}

/// The answer of a round trip that carried checks (`checked`): a statement after a failed
/// check (in the failed transaction) answered first only if the check's own answer was lost.
fn after_checks<T>(checked: bool, answer: Result<T, StoreError>) -> Result<T, StoreError> {
    match answer {
        Err(StoreError::Backend(m)) if checked && m.contains("25P02") => Err(missed_prediction()),
        other => other,
    }
}

fn gone() -> StoreError {
    StoreError::Retryable("postgres: the connection was lost".into())
}

impl Drop for PgTx<'_> {
    /// A transaction left open (its closure panicked) is rolled back before the connection
    /// goes back to the pool.
    fn drop(&mut self) {
        if !self.ended.get() {
            self.send_rollback();
        }
    }
}

impl ReadTx for PgTx<'_> {
    fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        PgTx::accounts(self)
    }

    fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        Ok(PgTx::accounts(self)?.into_iter().find(|a| a.id == id || a.name == id))
    }

    fn root_account(&self) -> Result<Option<Account>, StoreError> {
        Ok(PgTx::accounts(self)?.into_iter().find(|a| a.is_root))
    }

    fn access_key(&self, id: &str) -> Result<Option<AccessKey>, StoreError> {
        PgTx::access_key(self, id)
    }

    fn access_keys(&self) -> Result<Vec<AccessKey>, StoreError> {
        Ok(self
            .query(&format!("{KEY_COLUMNS}ORDER BY created_at, id"), &[])?
            .iter()
            .map(key_from_row)
            .collect())
    }

    fn ram_user_access_keys(&self, account_id: &str, user_id: &str) -> Result<Vec<AccessKey>, StoreError> {
        Ok(self
            .query(
                &format!("{KEY_COLUMNS}WHERE account_id = $1 AND ram_user_id = $2 ORDER BY created_at, id"),
                &[&account_id, &user_id],
            )?
            .iter()
            .map(key_from_row)
            .collect())
    }

    fn ram_directory(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        PgTx::ram_directory(self, account_id)
    }

    fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .query_opt("SELECT value FROM settings WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    }

    fn resource_owner(&self, kind: ResourceKind, id: &str) -> Result<Option<(String, String)>, StoreError> {
        if let Some(row) = self.memo_row(kind, id) {
            return Ok(row.map(|r| (r.account_id, r.region_id)));
        }
        self.cached_or(
            || Query::ResourceOwner(kind, id.to_string()),
            || self.load_owner(kind, id),
        )
    }

    fn resource_any(&self, kind: ResourceKind, id: &str, ty: &DocType) -> Result<Option<AnyDoc>, StoreError> {
        if let Some(row) = self.memo_row(kind, id) {
            return row.map(|r| (ty.decode_one)(r.account_id, &r.doc, kind)).transpose();
        }
        self.cached_or(
            || Query::Resource(kind, id.to_string(), ty.type_id),
            || {
                let row = self.query_opt(
                    "SELECT account_id, doc FROM resources WHERE id = $1 AND kind = $2",
                    &[&id, &kind.as_str()],
                )?;
                match row {
                    None => Ok(None),
                    Some(r) => Ok(Some((ty.decode_one)(r.get(0), r.get(1), kind)?)),
                }
            },
        )
    }

    fn list_resources_any(
        &self,
        kind: ResourceKind,
        account_id: &str,
        region_id: &str,
        parent: Option<&str>,
        offset: u64,
        limit: u64,
        ty: &DocType,
    ) -> Result<AnyDoc, StoreError> {
        self.cached_or(
            || Query::ResourcePage {
                kind,
                account_id: account_id.to_string(),
                region_id: region_id.to_string(),
                parent: parent.map(str::to_string),
                offset,
                limit,
                doc_type: ty.type_id,
            },
            || {
                let (docs, total) = self.load_resources(kind, account_id, region_id, parent, offset, limit)?;
                (ty.decode_page)(&docs, total, kind)
            },
        )
    }

    fn children_docs(&self, kind: ResourceKind, parent_id: &str) -> Result<Vec<String>, StoreError> {
        if let Some(children) = self.memo_children(kind, parent_id) {
            return Ok(children);
        }
        Ok(self
            .query(
                "SELECT doc FROM resources WHERE parent_id = $1 AND kind = $2 ORDER BY seq",
                &[&parent_id, &kind.as_str()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn count_children(&self, kind: ResourceKind, parent_id: &str) -> Result<u64, StoreError> {
        if let Some(children) = self.memo_children(kind, parent_id) {
            return Ok(children.len() as u64);
        }
        Ok(count(self.query_opt(
            "SELECT COUNT(*) FROM resources WHERE parent_id = $1 AND kind = $2",
            &[&parent_id, &kind.as_str()],
        )?))
    }

    fn count_resources(&self, kind: ResourceKind, account_id: &str, region_id: &str) -> Result<u64, StoreError> {
        PgTx::count_resources(self, kind, account_id, region_id)
    }

    fn all_resource_docs(&self, kind: ResourceKind) -> Result<Vec<Resource<String>>, StoreError> {
        Ok(self
            .query(
                "SELECT account_id, doc FROM resources WHERE kind = $1 ORDER BY seq",
                &[&kind.as_str()],
            )?
            .iter()
            .map(|r| Resource {
                account_id: r.get(0),
                doc: r.get(1),
            })
            .collect())
    }

    fn routes_with_key(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        source: &str,
        dest: &str,
    ) -> Result<Vec<VpnRoute>, StoreError> {
        if let Some(routes) = self.memo_routes(gateway_id, |r| r.kind == kind && r.source == source && r.dest == dest) {
            return Ok(routes);
        }
        self.routes(
            concat!(
                "SELECT ",
                route_columns!(),
                " FROM vpn_routes WHERE gateway_id = $1 AND kind = $2 AND route_source = $3 AND route_dest = $4 ORDER BY seq"
            ),
            &[&gateway_id, &kind.as_str(), &source, &dest],
        )
    }

    fn routes_with_dest(&self, gateway_id: &str, dest: &str) -> Result<Vec<VpnRoute>, StoreError> {
        if let Some(routes) = self.memo_routes(gateway_id, |r| r.dest == dest) {
            return Ok(routes);
        }
        self.routes(
            concat!(
                "SELECT ",
                route_columns!(),
                " FROM vpn_routes WHERE gateway_id = $1 AND route_dest = $2 ORDER BY seq"
            ),
            &[&gateway_id, &dest],
        )
    }

    fn count_routes(&self, gateway_id: &str, kind: RouteKind) -> Result<u64, StoreError> {
        if let Some(counts) = self.memo.borrow().route_counts.get(gateway_id) {
            let n = counts.iter().find(|(k, _)| k == kind.as_str()).map(|(_, n)| *n);
            return Ok(n.unwrap_or(0));
        }
        self.cached_or(
            || Query::RouteCount(gateway_id.to_string(), kind),
            || {
                Ok(count(self.query_opt(
                    "SELECT n FROM gateway_route_counts WHERE gateway_id = $1 AND kind = $2",
                    &[&gateway_id, &kind.as_str()],
                )?))
            },
        )
    }

    fn list_routes(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<VpnRoute>, StoreError> {
        self.cached_or(
            || Query::RoutePage(gateway_id.to_string(), kind, offset, limit),
            || {
                let (limit, offset) = (limit.min(i64::MAX as u64) as i64, offset.min(i64::MAX as u64) as i64);
                self.routes(
                    concat!(
                        "SELECT ",
                        route_columns!(),
                        " FROM vpn_routes WHERE gateway_id = $1 AND kind = $2 ORDER BY seq LIMIT $3 OFFSET $4"
                    ),
                    &[&gateway_id, &kind.as_str(), &limit, &offset],
                )
            },
        )
    }

    fn gateway_routes(&self, gateway_id: &str) -> Result<Vec<VpnRoute>, StoreError> {
        if let Some(routes) = self.memo_routes(gateway_id, |_| true) {
            return Ok(routes);
        }
        self.routes(
            concat!(
                "SELECT ",
                route_columns!(),
                " FROM vpn_routes WHERE gateway_id = $1 ORDER BY seq"
            ),
            &[&gateway_id],
        )
    }

    fn count_routes_via(&self, next_hop: &str) -> Result<u64, StoreError> {
        Ok(count(self.query_opt(
            "SELECT COUNT(*) FROM vpn_routes WHERE next_hop = $1",
            &[&next_hop],
        )?))
    }

    fn vpc_entries_for_dest(&self, route_table_id: &str, dest: &str) -> Result<Vec<VpcRouteEntry>, StoreError> {
        self.entries(
            select_entries!("WHERE route_table_id = $1 AND dest = $2 ORDER BY seq"),
            &[&route_table_id, &dest],
        )
    }

    fn vpc_entries(&self, route_table_id: &str) -> Result<Vec<VpcRouteEntry>, StoreError> {
        self.entries(
            select_entries!("WHERE route_table_id = $1 ORDER BY seq"),
            &[&route_table_id],
        )
    }

    fn vpc_entry(&self, id: &str) -> Result<Option<VpcRouteEntry>, StoreError> {
        Ok(self.entries(select_entries!("WHERE id = $1"), &[&id])?.pop())
    }

    fn count_vpc_entries_to(&self, route_table_id: &str, next_hop_id: &str) -> Result<u64, StoreError> {
        Ok(count(self.query_opt(
            "SELECT COUNT(*) FROM vpc_route_entries WHERE route_table_id = $1 AND next_hop_id = $2",
            &[&route_table_id, &next_hop_id],
        )?))
    }

    fn count_vpc_entries_via(&self, next_hop_id: &str) -> Result<u64, StoreError> {
        Ok(count(self.query_opt(
            "SELECT COUNT(*) FROM vpc_route_entries WHERE next_hop_id = $1",
            &[&next_hop_id],
        )?))
    }

    fn client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        not_before_ms: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT params_hash, response FROM client_tokens \
                 WHERE account_id = $1 AND action = $2 AND token = $3 AND created_at >= $4",
                &[&account_id, &action, &token, &not_before_ms],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn pending_tasks(&self, gateway_id: &str) -> Result<Vec<Task>, StoreError> {
        PgTx::pending_tasks(self, gateway_id)
    }

    fn all_pending_tasks(&self) -> Result<Vec<Task>, StoreError> {
        PgTx::all_pending_tasks(self)
    }

    fn routes_at_version(&self, gateway_id: &str, version: i64) -> Result<Vec<VpnRoute>, StoreError> {
        PgTx::routes_at_version(self, gateway_id, version)
    }

    fn route_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Vec<(i64, Option<VpnRoute>)>, StoreError> {
        PgTx::route_changes(self, gateway_id, from, to)
    }

    fn reconcile_failure(&self, gateway_id: &str) -> Result<Option<ReconcileFailure>, StoreError> {
        PgTx::reconcile_failure(self, gateway_id)
    }

    fn next_reconcile_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        PgTx::next_reconcile_wake(self, now_ms)
    }

    fn gateway_versions(&self, gateway_id: &str) -> Result<(i64, i64), StoreError> {
        if let Some(v) = self.memo.borrow().versions.get(gateway_id) {
            return Ok(*v);
        }
        Ok(self
            .query_opt(
                "SELECT desired, applied FROM gateway_versions WHERE gateway_id = $1",
                &[&gateway_id],
            )?
            .map(|r| (r.get(0), r.get(1)))
            .unwrap_or((0, 0)))
    }

    fn read_ahead(&self, ahead: &[ReadAhead]) -> Result<bool, StoreError> {
        self.read_ahead_into_memo(ahead)
    }

    fn all_gateway_versions(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        Ok(self
            .query(
                "SELECT gateway_id, desired, applied FROM gateway_versions ORDER BY gateway_id",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The two lock statements below, without their `RETURNING` (one text for all four).
macro_rules! lock_row {
    () => {
        "INSERT INTO gateway_locks(gateway_id) VALUES ($1) \
         ON CONFLICT (gateway_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id"
    };
    (if_exists) => {
        "INSERT INTO gateway_locks(gateway_id) \
         SELECT $1 WHERE EXISTS (SELECT 1 FROM resources WHERE id = $1 AND kind = $2) \
         ON CONFLICT (gateway_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id"
    };
}
/// The statement locking a gateway's lock row until the transaction ends (`$1`: the
/// gateway), creating it if it is missing: one statement, and a concurrent first insert of
/// the same row is waited for (then updated), never a duplicate-key error. (The update
/// changes no indexed value: a HOT update, as cheap as `SELECT … FOR UPDATE`.)
pub(crate) const LOCK_ROW: &str = lock_row!();
/// [`LOCK_ROW`] only if the gateway (`$1`, of kind `$2`) exists: a row when it was locked.
const LOCK_ROW_IF_EXISTS: &str = concat!(lock_row!(if_exists), " RETURNING 1");
/// [`LOCK_ROW`] and [`LOCK_ROW_IF_EXISTS`] answering, in their row, a route `seq` for an
/// insert that may follow. `RETURNING` runs once the row is locked, so the seq is taken
/// under the gateway's lock, in the order of that gateway's inserts (routes are listed per
/// gateway in `seq` order; one not used is a gap, as a rolled-back insert leaves). In the
/// lock's statement, not one of its own: one statement less for PostgreSQL per write.
const LOCK_ROW_SEQ: &str = concat!(
    lock_row!(),
    " RETURNING nextval(pg_get_serial_sequence('vpn_routes', 'seq'))"
);
const LOCK_ROW_IF_EXISTS_SEQ: &str = concat!(
    lock_row!(if_exists),
    " RETURNING nextval(pg_get_serial_sequence('vpn_routes', 'seq'))"
);

/// What a writer of a locked gateway reads next, in one statement (one executor run, not
/// seven): `(tag, id, kind, account_id, region_id, doc, n, m, l, t, k, b)` rows, tag 0 the gateway's own
/// row, 1 its children (by creation, at most `$3`), 2 its pending tasks (version, due_at in
/// `n`, `m`, by version), 3 its route counts (kind in `id`, count in `n`), 4 the resources
/// the gateway and its children name (its VPC, the customer gateways of its connections, …:
/// the values of their documents' `…_id` fields, whatever the fields are, found by splitting
/// the text at `_id":"` (a text search; `regexp_matches` cost three times as much); each
/// looked up by primary key, so the cost does not grow with the table (an `IN` let the
/// planner scan every resource); at most `$3`), 5
/// its versions (desired, applied, lease_until in `n`, `m`, `l`; for
/// [`WriteTx::change_at_once`]), 6 its routes, at most `$4` (source, kind, dest, next hop,
/// description in the text columns; seq, weight, priority in `n`, `m`, `l`; overlay mode,
/// create time, published in `t`, `k`, `b`; no order: the first `$4` the index gives, so a
/// gateway with many routes costs no more). In no order: sorted here by (tag, `n`), which
/// would cost PostgreSQL a sort node's set-up on every run.
const LOCKED_READS: &str = "\
    WITH own AS (SELECT id, kind, account_id, region_id, doc FROM resources WHERE id = $1 AND kind = $2), \
         children AS (SELECT id, kind, account_id, region_id, doc, seq FROM resources WHERE parent_id = $1 \
                      ORDER BY seq LIMIT $3) \
    SELECT * FROM ( \
      SELECT 0 AS tag, id, kind, account_id, region_id, doc, NULL::int8 AS n, NULL::int8 AS m, NULL::int8 AS l, \
             NULL::text AS t, NULL::int8 AS k, NULL::bool AS b FROM own \
      UNION ALL SELECT 1, id, kind, account_id, region_id, doc, seq, NULL, NULL, NULL, NULL, NULL FROM children \
      UNION ALL SELECT 2, NULL, NULL, NULL, NULL, NULL, version, due_at, NULL, NULL, NULL, NULL \
        FROM gateway_tasks WHERE gateway_id = $1 \
      UNION ALL SELECT 3, kind, NULL, NULL, NULL, NULL, n, NULL, NULL, NULL, NULL, NULL \
        FROM gateway_route_counts WHERE gateway_id = $1 \
      UNION ALL (SELECT 4, r.id, r.kind, r.account_id, r.region_id, r.doc, NULL, NULL, NULL, NULL, NULL, NULL \
        FROM (SELECT DISTINCT split_part(p, '\"', 1) AS named_id \
              FROM (SELECT doc FROM own UNION ALL SELECT doc FROM children) d, \
                   LATERAL unnest((string_to_array(d.doc, '_id\":\"'))[2:]) AS p) ids, \
             LATERAL (SELECT id, kind, account_id, region_id, doc FROM resources \
                      WHERE id = ids.named_id AND id <> $1 AND parent_id <> $1 OFFSET 0) r \
        LIMIT $3) \
      UNION ALL SELECT 5, NULL, NULL, NULL, NULL, NULL, desired, applied, lease_until, NULL, NULL, NULL \
        FROM gateway_versions WHERE gateway_id = $1 \
      UNION ALL (SELECT 6, route_source, kind, route_dest, next_hop, description, seq, weight, priority, \
               overlay_mode, create_time, published FROM vpn_routes WHERE gateway_id = $1 LIMIT $4) \
    ) r";

impl PgTx<'_> {
    /// Lock the gateway's row (`only_if_exists`: only if the gateway exists, creating no lock
    /// row otherwise) and read, in the same round trip, what a writer of it reads next; the
    /// reads are kept only if the lock was taken. Whether it was.
    fn lock_and_read(&self, gateway_id: &str, only_if_exists: bool) -> Result<bool, StoreError> {
        if gateway_id.contains('\0') {
            return Err(StoreError::Other("a gateway id with a NUL byte".into()));
        }
        let gateway_kind = ResourceKind::VpnGateway.as_str();
        let (children_max, routes_max) = (MEMO_CHILDREN as i64 + 1, MEMO_ROUTES as i64 + 1);
        let reads: (&str, Params<'_>) = (LOCKED_READS, &[&gateway_id, &gateway_kind, &children_max, &routes_max]);
        // On a writer thread, a route seq for an insert that may follow (see `insert_route`).
        let take_seq = self.may_predict();
        let lock: (&str, Params<'_>) = match (only_if_exists, take_seq) {
            (true, false) => (LOCK_ROW_IF_EXISTS, &[&gateway_id, &gateway_kind]),
            (true, true) => (LOCK_ROW_IF_EXISTS_SEQ, &[&gateway_id, &gateway_kind]),
            (false, false) => (LOCK_ROW, &[&gateway_id]),
            (false, true) => (LOCK_ROW_SEQ, &[&gateway_id]),
        };
        let mut answers = self.pipeline(&[lock, reads])?;
        let mut rows = answers.pop().unwrap_or_default();
        let locked = answers.pop().unwrap_or_default();
        if take_seq {
            let seq = locked.first().map(|r| r.get::<_, i64>(0));
            *self.route_seq.borrow_mut() = seq.map(|seq| (gateway_id.to_string(), seq));
        }
        if only_if_exists && locked.is_empty() {
            // No such gateway when the lock was tried: nothing locked, nothing kept.
            return Ok(false);
        }
        let (mut own, mut versions, mut routes) = (None, None, Vec::new());
        let (mut children, mut tasks, mut counts, mut named) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        rows.sort_by_key(|r| (r.get::<_, i32>(0), r.get::<_, Option<i64>>(6)));
        for r in rows {
            let text = |i: usize| r.get::<_, Option<String>>(i).unwrap_or_default();
            let resource = || {
                (
                    text(1),
                    text(2),
                    ResourceRow {
                        account_id: text(3),
                        region_id: text(4),
                        doc: text(5),
                    },
                )
            };
            match r.get::<_, i32>(0) {
                0 => own = Some(resource().2),
                1 => children.push(resource()),
                2 => tasks.push(Task {
                    gateway_id: gateway_id.to_string(),
                    version: r.get(6),
                    due_at: r.get(7),
                }),
                3 => counts.push((text(1), r.get::<_, i64>(6).max(0) as u64)),
                4 => named.push(resource()),
                5 => versions = Some((r.get::<_, i64>(6), r.get::<_, i64>(7), r.get::<_, Option<i64>>(8))),
                _ => routes.push(VpnRoute {
                    seq: r.get(6),
                    kind: route_kind(&text(2)),
                    gateway_id: gateway_id.to_string(),
                    source: text(1),
                    dest: text(3),
                    next_hop: text(4),
                    weight: r.get(7),
                    priority: r.get(8),
                    published: r.get(11),
                    description: text(5),
                    overlay_mode: text(9),
                    create_time: r.get(10),
                }),
            }
        }
        self.remember_locked(
            gateway_id,
            Locked {
                own,
                children,
                tasks,
                counts,
                versions,
                routes,
            },
        );
        self.remember_rows(named);
        Ok(true)
    }
}

impl WriteTx for PgTx<'_> {
    /// The gateway's lock row locked (created on first use, `LOCK_ROW`); held until the
    /// transaction ends. The same round trip reads, once the lock is granted, what a writer of
    /// the gateway reads next (see `remember_locked`).
    fn lock_gateway(&self, gateway_id: &str) -> Result<(), StoreError> {
        self.lock_and_read(gateway_id, false).map(|_| ())
    }

    /// A prediction that the nonce is fresh, checked by recording it in the next round trip
    /// (`Deferred`): on a writer thread, when predictions are on. (Not with a savepoint:
    /// its rollback would undo the record.)
    fn take_nonce(&self, access_key_id: &str, nonce: &str, now_ms: i64, keep_until_ms: i64) -> bool {
        if !self.own || !self.may_predict() {
            return false;
        }
        self.store.prune_nonces(now_ms);
        self.defer(
            NONCE_FRESH,
            vec![
                Box::new(access_key_id.as_bytes().to_vec()),
                Box::new(nonce.as_bytes().to_vec()),
                Box::new(keep_until_ms),
                Box::new(now_ms),
            ],
        );
        self.took_nonce.set(true);
        true
    }

    /// The lock only if the gateway exists, and its owner from the lock's reads: one round
    /// trip.
    fn lock_existing_gateway(&self, gateway_id: &str) -> Result<Option<(String, String)>, StoreError> {
        if !self.lock_and_read(gateway_id, true)? {
            return Ok(None);
        }
        Ok(self
            .memo_row(ResourceKind::VpnGateway, gateway_id)
            .flatten()
            .map(|r| (r.account_id, r.region_id)))
    }

    fn next_counter(&self, name: &str) -> Result<i64, StoreError> {
        PgTx::next_counter(self, name)
    }

    fn insert_account(&self, a: &Account) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO accounts(id, name, is_root, created_at) VALUES ($1, $2, $3, $4)",
            &[&a.id, &a.name, &a.is_root, &a.created_at],
        )?;
        Ok(())
    }

    fn insert_access_key(&self, k: &AccessKey) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO access_keys(id, account_id, secret, status, created_at, ram_user_id) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&k.id, &k.account_id, &k.secret, &k.status, &k.created_at, &k.ram_user_id],
        )?;
        Ok(())
    }

    fn set_access_key_status(&self, id: &str, status: &str) -> Result<bool, StoreError> {
        self.wrote_auth.set(true);
        Ok(self.execute("UPDATE access_keys SET status = $2 WHERE id = $1", &[&id, &status])? > 0)
    }

    fn delete_access_key(&self, id: &str) -> Result<bool, StoreError> {
        self.wrote_auth.set(true);
        Ok(self.execute("DELETE FROM access_keys WHERE id = $1", &[&id])? > 0)
    }

    fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO settings(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &value],
        )?;
        Ok(())
    }

    fn put_ram_directory(&self, account_id: &str, doc: &str) -> Result<(), StoreError> {
        self.wrote_auth.set(true);
        self.execute(
            "INSERT INTO ram_directories(account_id, doc) VALUES ($1, $2) \
             ON CONFLICT (account_id) DO UPDATE SET doc = EXCLUDED.doc",
            &[&account_id, &doc],
        )?;
        Ok(())
    }

    fn insert_resource_doc(
        &self,
        kind: ResourceKind,
        id: &str,
        account_id: &str,
        region_id: &str,
        parent_id: &str,
        doc: &str,
    ) -> Result<(), StoreError> {
        self.memo.borrow_mut().forget_resources();
        self.execute(
            "INSERT INTO resources(id, kind, account_id, region_id, parent_id, doc) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&id, &kind.as_str(), &account_id, &region_id, &parent_id, &doc],
        )?;
        self.bump_resource_count(account_id, kind, region_id, 1)
    }

    fn update_resource_doc(&self, kind: ResourceKind, id: &str, doc: &str) -> Result<(), StoreError> {
        self.memo.borrow_mut().forget_resources();
        self.execute(
            "UPDATE resources SET doc = $3 WHERE id = $1 AND kind = $2",
            &[&id, &kind.as_str(), &doc],
        )?;
        Ok(())
    }

    fn delete_resource(&self, kind: ResourceKind, id: &str) -> Result<bool, StoreError> {
        self.memo.borrow_mut().forget_resources();
        let Some(r) = self.query_opt(
            "DELETE FROM resources WHERE id = $1 AND kind = $2 RETURNING account_id, region_id",
            &[&id, &kind.as_str()],
        )?
        else {
            return Ok(false);
        };
        let (account_id, region_id): (String, String) = (r.get(0), r.get(1));
        self.bump_resource_count(&account_id, kind, &region_id, -1)?;
        Ok(true)
    }

    /// The route, its gateway's route count and its "absent" before-image (see
    /// `remember_existing`; none for a version recorded at once) in one statement.
    fn insert_route(&self, r: &VpnRoute) -> Result<i64, StoreError> {
        macro_rules! insert_route {
            ($history:literal) => {
                concat!(
                    "WITH r AS (INSERT INTO vpn_routes(kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq), \
                     c AS (INSERT INTO gateway_route_counts(gateway_id, kind, n) SELECT $2, $1, 1 FROM r \
                       ON CONFLICT (gateway_id, kind) DO UPDATE SET n = gateway_route_counts.n + EXCLUDED.n)",
                    $history,
                    " SELECT seq FROM r"
                )
            };
        }
        let at_once = self.is_at_once(&r.gateway_id);
        let taken = self.route_seq.borrow_mut().take_if(|(g, _)| *g == r.gateway_id);
        let seq = if let (true, Some((_, seq))) = (at_once && self.may_predict(), taken) {
            // The seq is known: nothing needs the statement's answer, so it travels with
            // the next round trip (see `write_or_defer`; this transaction may predict).
            self.defer(
                INSERT_ROUTE_AT_ONCE,
                vec![
                    Box::new(r.kind.as_str()),
                    Box::new(r.gateway_id.clone()),
                    Box::new(r.source.clone()),
                    Box::new(r.dest.clone()),
                    Box::new(r.next_hop.clone()),
                    Box::new(r.weight),
                    Box::new(r.priority),
                    Box::new(r.published),
                    Box::new(r.description.clone()),
                    Box::new(r.overlay_mode.clone()),
                    Box::new(r.create_time),
                    Box::new(seq),
                ],
            );
            seq
        } else {
            let sql = if at_once {
                insert_route!("")
            } else {
                insert_route!(
                    ", h AS (INSERT INTO vpn_route_history SELECT $2, \
                       COALESCE((SELECT desired FROM gateway_versions WHERE gateway_id = $2), 0) + 1, \
                       seq, FALSE, '', '', '', '', 0, 0, FALSE, '', '', 0 FROM r ON CONFLICT DO NOTHING)"
                )
            };
            self.query_one(
                sql,
                &[
                    &r.kind.as_str(),
                    &r.gateway_id,
                    &r.source,
                    &r.dest,
                    &r.next_hop,
                    &r.weight,
                    &r.priority,
                    &r.published,
                    &r.description,
                    &r.overlay_mode,
                    &r.create_time,
                ],
            )?
            .get(0)
        };
        let written = VpnRoute { seq, ..r.clone() };
        if at_once {
            self.collect_at_once(&r.gateway_id, seq, Some(written.clone()));
        }
        self.memo().route_written(&r.gateway_id, RouteWrite::Inserted(written));
        Ok(seq)
    }

    /// The route's before-image (see the before-images in `reconcile.rs`) and the update in one
    /// statement (both read the row as it was before it).
    fn update_route(&self, r: &VpnRoute) -> Result<(), StoreError> {
        self.memo().route_written(&r.gateway_id, RouteWrite::Updated(r));
        if self.is_at_once(&r.gateway_id) {
            self.write_or_defer(
                UPDATE_ROUTE_AT_ONCE,
                vec![
                    Box::new(r.seq),
                    Box::new(r.weight),
                    Box::new(r.priority),
                    Box::new(r.published),
                    Box::new(r.description.clone()),
                ],
            )?;
            self.collect_at_once(&r.gateway_id, r.seq, Some(r.clone()));
            return Ok(());
        }
        self.execute(
            concat!(
                "WITH h AS (",
                remember_existing!(),
                ") UPDATE vpn_routes SET weight = $3, priority = $4, published = $5, description = $6 WHERE seq = $2"
            ),
            &[
                &r.gateway_id,
                &r.seq,
                &r.weight,
                &r.priority,
                &r.published,
                &r.description,
            ],
        )?;
        Ok(())
    }

    /// The route's before-image, the delete and the route count in one statement.
    fn delete_route(&self, r: &VpnRoute) -> Result<(), StoreError> {
        self.memo().route_written(&r.gateway_id, RouteWrite::Deleted(r.seq));
        if self.is_at_once(&r.gateway_id) {
            self.write_or_defer(
                DELETE_ROUTE_AT_ONCE,
                vec![Box::new(r.gateway_id.clone()), Box::new(r.seq)],
            )?;
            self.collect_at_once(&r.gateway_id, r.seq, None);
            return Ok(());
        }
        self.execute(
            concat!(
                "WITH h AS (",
                remember_existing!(),
                "), d AS (DELETE FROM vpn_routes WHERE seq = $2 RETURNING kind) \
                 INSERT INTO gateway_route_counts(gateway_id, kind, n) SELECT $1, kind, -1 FROM d \
                 ON CONFLICT (gateway_id, kind) DO UPDATE SET n = gateway_route_counts.n + EXCLUDED.n"
            ),
            &[&r.gateway_id, &r.seq],
        )?;
        Ok(())
    }

    fn insert_vpc_entry(&self, e: &VpcRouteEntry) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO vpc_route_entries(id, route_table_id, dest, next_hop_type, next_hop_id, entry_type, name, description, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &e.id,
                &e.route_table_id,
                &e.dest,
                &e.next_hop_type,
                &e.next_hop_id,
                &e.entry_type,
                &e.name,
                &e.description,
                &e.create_time,
            ],
        )?;
        Ok(())
    }

    fn delete_vpc_entry(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute("DELETE FROM vpc_route_entries WHERE id = $1", &[&id])? > 0)
    }

    fn delete_vpc_entries_of_table(&self, route_table_id: &str) -> Result<(), StoreError> {
        self.execute(
            "DELETE FROM vpc_route_entries WHERE route_table_id = $1",
            &[&route_table_id],
        )?;
        Ok(())
    }

    fn save_client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        params_hash: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO client_tokens(account_id, action, token, params_hash, response, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id, action, token) DO UPDATE SET params_hash = EXCLUDED.params_hash, \
             response = EXCLUDED.response, created_at = EXCLUDED.created_at",
            &[&account_id, &action, &token, &params_hash, &response, &now_ms],
        )?;
        Ok(())
    }

    fn prune_client_tokens(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        Ok(self.execute("DELETE FROM client_tokens WHERE created_at < $1", &[&older_than_ms])? as usize)
    }

    fn enqueue_version(&self, gateway_id: &str, due_at: Option<i64>, now_ms: i64) -> Result<i64, StoreError> {
        PgTx::enqueue_version(self, gateway_id, due_at, now_ms)
    }

    fn change_at_once(&self, gateway_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        PgTx::change_at_once(self, gateway_id, now_ms)
    }

    fn take_changes_at_once(&self) -> Vec<ChangeAtOnce> {
        std::mem::take(&mut *self.at_once.borrow_mut())
    }

    fn claim_due_gateways(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<ReconcileClaim>, StoreError> {
        PgTx::claim_due_gateways(self, owner, now_ms, lease_ms, max)
    }

    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ReconcileClaim>, StoreError> {
        self.take_claim(gateway_id, owner, now_ms, lease_ms, true)
    }

    fn record_applied(&self, claim: &ReconcileClaim, version: i64) -> Result<bool, StoreError> {
        PgTx::record_applied(self, claim, version)
    }

    fn record_failure(
        &self,
        claim: &ReconcileClaim,
        error: &str,
        next_retry_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        PgTx::record_failure(self, claim, error, next_retry_ms)
    }

    fn release_claim(&self, claim: &ReconcileClaim) -> Result<(), StoreError> {
        self.memo.borrow_mut().versions.remove(&claim.gateway_id);
        self.execute(
            "UPDATE gateway_versions SET claim_owner = NULL, lease_until = NULL \
             WHERE gateway_id = $1 AND claim_token = $2 AND claim_owner = $3",
            &[&claim.gateway_id, &claim.token, &claim.owner],
        )?;
        Ok(())
    }

    fn release_owner_claims(&self, owner: &str) -> Result<usize, StoreError> {
        self.memo.borrow_mut().versions.clear();
        Ok(self.execute(
            "UPDATE gateway_versions SET claim_owner = NULL, lease_until = NULL WHERE claim_owner = $1",
            &[&owner],
        )? as usize)
    }

    fn reschedule_tasks(&self, gateway_id: &str, due_at: Option<i64>) -> Result<usize, StoreError> {
        self.memo.borrow_mut().tasks.remove(gateway_id);
        Ok(self.execute(
            "UPDATE gateway_tasks SET due_at = $2 WHERE gateway_id = $1",
            &[&gateway_id, &due_at],
        )? as usize)
    }

    fn delete_gateway_state(&self, gateway_id: &str) -> Result<(), StoreError> {
        *self.memo.borrow_mut() = Memo::default();
        for sql in [
            "DELETE FROM gateway_route_counts WHERE gateway_id = $1",
            "DELETE FROM gateway_tasks WHERE gateway_id = $1",
            "DELETE FROM vpn_route_history WHERE gateway_id = $1",
            "DELETE FROM gateway_versions WHERE gateway_id = $1",
            "DELETE FROM gateway_locks WHERE gateway_id = $1",
        ] {
            self.execute(sql, &[&gateway_id])?;
        }
        Ok(())
    }
}

/// This thread's `store_gen` slot: the writer threads of one process take consecutive slots
/// from a random start, so they never wait for each other's bump (a random slot per commit
/// collides with one of eight concurrent committers one time in eight, and then waits for
/// that commit's WAL flush); another replica's threads collide with one only by chance.
fn generation_slot() -> i32 {
    use std::sync::atomic::{AtomicI32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicI32> = std::sync::OnceLock::new();
    thread_local!(static SLOT: Cell<Option<i32>> = const { Cell::new(None) });
    SLOT.with(|slot| {
        if let Some(s) = slot.get() {
            return s;
        }
        let next = NEXT.get_or_init(|| AtomicI32::new(rand::random_range(0..crate::GEN_SLOTS)));
        let s = next.fetch_add(1, Ordering::Relaxed).rem_euclid(crate::GEN_SLOTS);
        slot.set(Some(s));
        s
    })
}

/// Most children of a gateway the lock's round trip reads (a gateway with more is read by
/// statements of its own).
const MEMO_CHILDREN: usize = 64;
/// Routes of a locked gateway kept in the memo at most (more: none are, see `LOCKED_READS`).
const MEMO_ROUTES: usize = 64;

/// Before an update or delete of route `$2` of gateway `$1`: its row as its before-image
/// (see the before-images in `reconcile.rs`), as a CTE body.
macro_rules! remember_existing {
    () => {
        "INSERT INTO vpn_route_history \
         SELECT gateway_id, COALESCE((SELECT desired FROM gateway_versions WHERE gateway_id = $1), 0) + 1, seq, TRUE, \
         kind, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time \
         FROM vpn_routes WHERE seq = $2 ON CONFLICT DO NOTHING"
    };
}
use remember_existing;

pub(crate) fn task_from_row(r: &Row) -> Task {
    Task {
        gateway_id: r.get(0),
        version: r.get(1),
        due_at: r.get(2),
    }
}

/// What `lock_gateway` read of a gateway after its lock (see `LOCKED_READS`).
struct Locked {
    /// Its own row (`None`: no such gateway).
    own: Option<ResourceRow>,
    /// Its children as `(id, kind, row)`, in creation order.
    children: Vec<(String, String, ResourceRow)>,
    tasks: Vec<Task>,
    /// `(kind, count)` per route kind.
    counts: Vec<(String, u64)>,
    /// `(desired, applied, lease_until)` (`None`: no versions row).
    versions: Option<(i64, i64, Option<i64>)>,
    /// Its routes by seq (more than `MEMO_ROUTES`: some only).
    routes: Vec<VpnRoute>,
}

/// The `&'static` name of a stored kind (memo keys).
pub(crate) fn kind_named(kind: &str) -> Option<&'static str> {
    [
        ResourceKind::Vpc,
        ResourceKind::VpnGateway,
        ResourceKind::CustomerGateway,
        ResourceKind::VpnConnection,
        ResourceKind::SslVpnServer,
        ResourceKind::VSwitch,
    ]
    .into_iter()
    .map(ResourceKind::as_str)
    .find(|k| *k == kind)
}

impl PgTx<'_> {
    /// Keep what `lock_gateway` read after the lock: the gateway's row (or its absence), its
    /// children and routes (each list only if complete), pending tasks, route counts and
    /// versions.
    fn remember_locked(&self, gateway_id: &str, locked: Locked) {
        if self.mode != Mode::Write {
            return;
        }
        let Locked {
            own,
            children,
            tasks,
            counts,
            versions,
            routes,
        } = locked;
        let mut memo = self.memo.borrow_mut();
        memo.locked_versions.insert(gateway_id.to_string(), versions);
        if routes.len() <= MEMO_ROUTES {
            memo.routes.insert(gateway_id.to_string(), routes);
        }
        let gateway_kind = ResourceKind::VpnGateway.as_str();
        memo.rows.insert((gateway_kind, gateway_id.to_string()), own);
        let read = children.len();
        let mut list = Vec::with_capacity(read);
        for (id, kind, row) in children {
            if let Some(kind) = kind_named(&kind) {
                list.push((kind.to_string(), row.doc.clone()));
                memo.rows.insert((kind, id), Some(row));
            }
        }
        if read <= MEMO_CHILDREN && list.len() == read {
            memo.children.insert(gateway_id.to_string(), list);
        }
        memo.tasks.insert(gateway_id.to_string(), tasks);
        memo.route_counts.insert(gateway_id.to_string(), counts);
    }

    /// Keep resource rows `(id, kind, row)` read with a write.
    fn remember_rows(&self, rows: Vec<(String, String, ResourceRow)>) {
        if self.mode != Mode::Write {
            return;
        }
        let mut memo = self.memo.borrow_mut();
        for (id, kind, row) in rows {
            if let Some(kind) = kind_named(&kind) {
                memo.rows.insert((kind, id), Some(row));
            }
        }
    }

    /// Keep a resource row read with a write (`None`: absent).
    pub(crate) fn remember_row(&self, kind: ResourceKind, id: &str, row: Option<ResourceRow>) {
        if self.mode == Mode::Write {
            self.memo.borrow_mut().rows.insert((kind.as_str(), id.to_string()), row);
        }
    }

    /// The routes of `gateway_id` that `keep`, by seq, if the memo holds all its routes.
    fn memo_routes(&self, gateway_id: &str, keep: impl Fn(&VpnRoute) -> bool) -> Option<Vec<VpnRoute>> {
        let memo = self.memo.borrow();
        Some(
            memo.routes
                .get(gateway_id)?
                .iter()
                .filter(|r| keep(r))
                .cloned()
                .collect(),
        )
    }

    /// The memo's answer for a resource: `Some(None)` known absent, `None` not known.
    fn memo_row(&self, kind: ResourceKind, id: &str) -> Option<Option<ResourceRow>> {
        let memo = self.memo.borrow();
        if memo.rows.is_empty() {
            return None;
        }
        memo.rows.get(&(kind.as_str(), id.to_string())).cloned()
    }

    fn memo_children(&self, kind: ResourceKind, parent_id: &str) -> Option<Vec<String>> {
        let memo = self.memo.borrow();
        let list = memo.children.get(parent_id)?;
        Some(
            list.iter()
                .filter(|(k, _)| k == kind.as_str())
                .map(|(_, doc)| doc.clone())
                .collect(),
        )
    }
}
