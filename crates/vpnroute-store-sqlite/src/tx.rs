//! [`SqliteTx`]: a SQLite transaction (read or write) and its statements, implementing
//! [`ReadTx`] and [`WriteTx`].

use rusqlite::{params, Connection, OptionalExtension, Row};
use vpnroute_domain::model::{RouteKind, VpcRouteEntry, VpnRoute};

use std::cell::{Cell, RefCell};

use crate::auth_cache::AuthCache;
use crate::cache::{Query, ReadCache};
use crate::Error;
use vpnroute_store::{
    AccessKey, Account, AnyDoc, ChangeAtOnce, DocType, ReadTx, ReconcileClaim, ReconcileFailure, Resource,
    ResourceKind, StoreError, Task, WriteTx,
};

/// A connection whose read transaction begins on first use ([`crate::SqliteStore::read_fast`]).
pub(crate) trait LazyConnection {
    /// The connection; on first use also begins the read transaction and returns the
    /// generation of its snapshot.
    fn connection(&self) -> Result<(&Connection, Option<u64>), Error>;
    /// Publish a generation found committed but not yet published.
    fn publish(&self, generation: u64);
}

/// A cache of query results by commit generation (the read cache, the [`AuthCache`]).
pub(crate) trait GenerationCache {
    fn get<V: Clone + 'static>(&self, generation: u64, key: &Query) -> Option<V>;
    fn put<V: Send + Sync + 'static>(&self, generation: u64, key: Query, value: V);
}

impl GenerationCache for ReadCache {
    fn get<V: Clone + 'static>(&self, generation: u64, key: &Query) -> Option<V> {
        ReadCache::get(self, generation, key)
    }
    fn put<V: Send + Sync + 'static>(&self, generation: u64, key: Query, value: V) {
        ReadCache::put(self, generation, key, value)
    }
}

impl GenerationCache for AuthCache {
    fn get<V: Clone + 'static>(&self, generation: u64, key: &Query) -> Option<V> {
        AuthCache::get(self, generation, key)
    }
    fn put<V: Send + Sync + 'static>(&self, generation: u64, key: Query, value: V) {
        AuthCache::put(self, generation, key, value)
    }
}

/// A transaction (read or write) on the store. A read transaction also carries the read
/// cache and the commit generation it reads at (see [`crate::cache`]).
pub struct SqliteTx<'c> {
    conn: Conn<'c>,
    cache: Option<&'c ReadCache>,
    auth_cache: Option<&'c AuthCache>,
    /// Whether this (write) transaction wrote access keys, accounts or RAM directories.
    wrote_auth: Cell<bool>,
    /// The commit generation this transaction reads at.
    generation: Cell<u64>,
    /// Whether a result came from the cache (then the generation can no longer change).
    used_cache: Cell<bool>,
    /// Set when SQLite's snapshot turned out newer than results already taken from the
    /// cache: the closure's result is discarded and it runs again on a snapshot.
    torn: Cell<bool>,
    /// Versions recorded as applied by this transaction ([`WriteTx::change_at_once`]) and
    /// not taken yet, with their route writes.
    at_once: RefCell<Vec<ChangeAtOnce>>,
}

enum Conn<'c> {
    /// A transaction already begun on this connection.
    Open(&'c Connection),
    /// A read transaction begun only if some result is not in the cache.
    Lazy(&'c dyn LazyConnection),
}

/// `SELECT <route columns> FROM vpn_routes <rest>` as one literal, so the hot queries are not
/// rebuilt with `format!` on every call.
macro_rules! select_routes {
    ($rest:literal) => {
        concat!(
            "SELECT seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time FROM vpn_routes ",
            $rest
        )
    };
}

pub(crate) fn route_from_row(r: &Row<'_>) -> rusqlite::Result<VpnRoute> {
    let kind: String = r.get(1)?;
    Ok(VpnRoute {
        seq: r.get(0)?,
        kind: if kind == "pbr" { RouteKind::Pbr } else { RouteKind::Dbr },
        gateway_id: r.get(2)?,
        source: r.get(3)?,
        dest: r.get(4)?,
        next_hop: r.get(5)?,
        weight: r.get(6)?,
        priority: r.get(7)?,
        published: r.get::<_, i64>(8)? != 0,
        description: r.get(9)?,
        overlay_mode: r.get(10)?,
        create_time: r.get(11)?,
    })
}

/// `SELECT <entry columns> FROM vpc_route_entries <rest>` as one literal.
macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT id, route_table_id, dest, next_hop_type, next_hop_id, entry_type, name, description, create_time FROM vpc_route_entries ",
            $rest
        )
    };
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<VpcRouteEntry> {
    Ok(VpcRouteEntry {
        id: r.get(0)?,
        route_table_id: r.get(1)?,
        dest: r.get(2)?,
        next_hop_type: r.get(3)?,
        next_hop_id: r.get(4)?,
        entry_type: r.get(5)?,
        name: r.get(6)?,
        description: r.get(7)?,
        create_time: r.get(8)?,
    })
}

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<AccessKey> {
    Ok(AccessKey {
        id: r.get(0)?,
        account_id: r.get(1)?,
        secret: r.get(2)?,
        status: r.get(3)?,
        created_at: r.get(4)?,
        ram_user_id: r.get(5)?,
    })
}

impl<'c> SqliteTx<'c> {
    /// A write transaction: no cache (it sees its own uncommitted changes).
    pub(crate) fn new(conn: &'c Connection) -> Self {
        SqliteTx {
            conn: Conn::Open(conn),
            cache: None,
            auth_cache: None,
            wrote_auth: Cell::new(false),
            generation: Cell::new(0),
            used_cache: Cell::new(false),
            torn: Cell::new(false),
            at_once: RefCell::new(Vec::new()),
        }
    }

    /// A read transaction whose snapshot is at commit `generation`.
    pub(crate) fn cached(
        conn: &'c Connection,
        cache: &'c ReadCache,
        auth_cache: &'c AuthCache,
        generation: u64,
    ) -> Self {
        SqliteTx {
            cache: Some(cache),
            auth_cache: Some(auth_cache),
            generation: Cell::new(generation),
            ..SqliteTx::new(conn)
        }
    }

    /// A read at the published `generation` that begins a SQLite transaction only on a cache
    /// miss (see [`crate::SqliteStore::read_fast`]).
    pub(crate) fn optimistic(
        lazy: &'c dyn LazyConnection,
        cache: &'c ReadCache,
        auth_cache: &'c AuthCache,
        generation: u64,
    ) -> Self {
        SqliteTx {
            conn: Conn::Lazy(lazy),
            cache: Some(cache),
            auth_cache: Some(auth_cache),
            wrote_auth: Cell::new(false),
            generation: Cell::new(generation),
            used_cache: Cell::new(false),
            torn: Cell::new(false),
            at_once: RefCell::new(Vec::new()),
        }
    }

    /// Whether this transaction wrote authentication data (see [`AuthCache`]).
    pub(crate) fn wrote_auth(&self) -> bool {
        self.wrote_auth.get()
    }

    pub(crate) fn is_torn(&self) -> bool {
        self.torn.get()
    }

    /// The connection, beginning the lazy read transaction on first use.
    pub(crate) fn conn(&self) -> Result<&Connection, Error> {
        match self.conn {
            Conn::Open(c) => Ok(c),
            Conn::Lazy(lazy) => {
                let (conn, begun_at) = lazy.connection()?;
                if let Some(snapshot) = begun_at {
                    self.adopt_snapshot(snapshot, lazy)?;
                }
                Ok(conn)
            }
        }
    }

    /// SQLite's snapshot is at `snapshot`, this transaction so far read at its generation.
    fn adopt_snapshot(&self, snapshot: u64, lazy: &dyn LazyConnection) -> Result<(), Error> {
        let generation = self.generation.get();
        if snapshot == generation {
            return Ok(());
        }
        if self.used_cache.get() {
            // Results already taken belong to an older generation: start again.
            self.torn.set(true);
            return Err(StoreError::SnapshotMoved.into());
        }
        self.generation.set(snapshot);
        if snapshot > generation {
            // A writer committed but has not published yet (or died in between): publish
            // for it, so no later request reads older results than this one.
            lazy.publish(snapshot);
        }
        Ok(())
    }

    /// The commit generation of this transaction's snapshot (`store_meta.commit_seq`).
    pub(crate) fn commit_generation(&self) -> Result<i64, Error> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT commit_seq FROM store_meta WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// `load()`, or its result cached at this transaction's generation.
    fn cached_or<V: Clone + Send + Sync + 'static>(
        &self,
        key: impl FnOnce() -> Query,
        load: impl FnOnce() -> Result<V, Error>,
    ) -> Result<V, Error> {
        self.cached_in(self.cache, key, load)
    }

    /// [`SqliteTx::cached_or`] for authentication data, through the [`AuthCache`].
    fn auth_cached_or<V: Clone + Send + Sync + 'static>(
        &self,
        key: impl FnOnce() -> Query,
        load: impl FnOnce() -> Result<V, Error>,
    ) -> Result<V, Error> {
        self.cached_in(self.auth_cache, key, load)
    }

    fn cached_in<C: GenerationCache, V: Clone + Send + Sync + 'static>(
        &self,
        cache: Option<&C>,
        key: impl FnOnce() -> Query,
        load: impl FnOnce() -> Result<V, Error>,
    ) -> Result<V, Error> {
        let Some(cache) = cache else {
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

    fn query_routes(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<VpnRoute>, Error> {
        let mut st = self.conn()?.prepare_cached(sql)?;
        let rows = st.query_map(params, route_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn query_entries(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<VpcRouteEntry>, Error> {
        let mut st = self.conn()?.prepare_cached(sql)?;
        let rows = st.query_map(params, entry_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---------------------------------------------------------------- savepoints

    /// Start a nested unit of work (group commit runs each request in one).
    pub fn savepoint(&self) -> Result<(), Error> {
        self.conn()?.prepare_cached("SAVEPOINT request")?.execute([])?;
        Ok(())
    }

    /// Keep the work since [`SqliteTx::savepoint`].
    pub fn release(&self) -> Result<(), Error> {
        self.conn()?.prepare_cached("RELEASE request")?.execute([])?;
        Ok(())
    }

    /// Undo the work since [`SqliteTx::savepoint`] (the enclosing transaction stays open).
    pub fn rollback_to(&self) -> Result<(), Error> {
        self.conn()?.prepare_cached("ROLLBACK TO request")?.execute([])?;
        self.conn()?.prepare_cached("RELEASE request")?.execute([])?;
        // The versions it took are undone with it.
        self.at_once.borrow_mut().clear();
        Ok(())
    }

    // ---------------------------------------------------------------- counters

    /// Next value of a named monotonic counter (resource ordering, versions).
    pub fn next_counter(&self, name: &str) -> Result<i64, Error> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO counters(name, value) VALUES (?1, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
            )?
            .execute(params![name])?;
        Ok(self
            .conn()?
            .query_row("SELECT value FROM counters WHERE name = ?1", params![name], |r| {
                r.get(0)
            })?)
    }

    // ---------------------------------------------------------------- accounts & keys

    pub fn insert_account(&self, a: &Account) -> Result<(), Error> {
        self.wrote_auth.set(true);
        self.conn()?
            .prepare_cached("INSERT INTO accounts(id, name, is_root, created_at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![a.id, a.name, a.is_root as i64, a.created_at])?;
        Ok(())
    }

    pub fn accounts(&self) -> Result<Vec<Account>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT id, name, is_root, created_at FROM accounts ORDER BY created_at, id")?;
        let rows = st.query_map([], |r| {
            Ok(Account {
                id: r.get(0)?,
                name: r.get(1)?,
                is_root: r.get::<_, i64>(2)? != 0,
                created_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>, Error> {
        Ok(self.accounts()?.into_iter().find(|a| a.id == id || a.name == id))
    }

    pub fn root_account(&self) -> Result<Option<Account>, Error> {
        Ok(self.accounts()?.into_iter().find(|a| a.is_root))
    }

    pub fn insert_access_key(&self, k: &AccessKey) -> Result<(), Error> {
        self.wrote_auth.set(true);
        self.conn()?
            .prepare_cached(
                "INSERT INTO access_keys(id, account_id, secret, status, created_at, ram_user_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                k.id,
                k.account_id,
                k.secret,
                k.status,
                k.created_at,
                k.ram_user_id
            ])?;
        Ok(())
    }

    pub fn access_key(&self, id: &str) -> Result<Option<AccessKey>, Error> {
        self.auth_cached_or(
            || Query::AccessKey(id.to_string()),
            || {
                let mut st = self.conn()?.prepare_cached(
                    "SELECT id, account_id, secret, status, created_at, ram_user_id FROM access_keys WHERE id = ?1",
                )?;
                Ok(st.query_row(params![id], key_from_row).optional()?)
            },
        )
    }

    pub fn access_keys(&self) -> Result<Vec<AccessKey>, Error> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT id, account_id, secret, status, created_at, ram_user_id FROM access_keys ORDER BY created_at, id",
        )?;
        let rows = st.query_map([], key_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn ram_user_access_keys(&self, account_id: &str, user_id: &str) -> Result<Vec<AccessKey>, Error> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT id, account_id, secret, status, created_at, ram_user_id FROM access_keys \
             WHERE account_id = ?1 AND ram_user_id = ?2 ORDER BY created_at, id",
        )?;
        let rows = st.query_map(params![account_id, user_id], key_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn ram_directory(&self, account_id: &str) -> Result<Option<String>, Error> {
        self.auth_cached_or(
            || Query::RamDirectory(account_id.to_string()),
            || {
                let mut st = self
                    .conn()?
                    .prepare_cached("SELECT doc FROM ram_directories WHERE account_id = ?1")?;
                Ok(st.query_row(params![account_id], |r| r.get(0)).optional()?)
            },
        )
    }

    pub fn setting(&self, name: &str) -> Result<Option<String>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT value FROM settings WHERE name = ?1")?;
        Ok(st.query_row(params![name], |r| r.get(0)).optional()?)
    }

    pub fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<(), Error> {
        self.conn()?
            .prepare_cached("INSERT INTO settings(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING")?
            .execute(params![name, value])?;
        Ok(())
    }

    pub fn put_ram_directory(&self, account_id: &str, doc: &str) -> Result<(), Error> {
        self.wrote_auth.set(true);
        self.conn()?
            .prepare_cached(
                "INSERT INTO ram_directories(account_id, doc) VALUES (?1, ?2) \
                 ON CONFLICT(account_id) DO UPDATE SET doc = excluded.doc",
            )?
            .execute(params![account_id, doc])?;
        Ok(())
    }

    /// Returns whether a key with that id existed.
    pub fn set_access_key_status(&self, id: &str, status: &str) -> Result<bool, Error> {
        self.wrote_auth.set(true);
        Ok(self
            .conn()?
            .prepare_cached("UPDATE access_keys SET status = ?2 WHERE id = ?1")?
            .execute(params![id, status])?
            > 0)
    }

    pub fn delete_access_key(&self, id: &str) -> Result<bool, Error> {
        self.wrote_auth.set(true);
        Ok(self
            .conn()?
            .prepare_cached("DELETE FROM access_keys WHERE id = ?1")?
            .execute(params![id])?
            > 0)
    }

    // ---------------------------------------------------------------- resources

    pub fn insert_resource_doc(
        &self,
        kind: ResourceKind,
        id: &str,
        account_id: &str,
        region_id: &str,
        parent_id: &str,
        doc: &str,
    ) -> Result<(), Error> {
        let seq = self.next_counter("resource_seq")?;
        let mut st = self.conn()?.prepare_cached(
            "INSERT INTO resources(id, kind, account_id, region_id, parent_id, seq, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        st.execute(params![id, kind.as_str(), account_id, region_id, parent_id, seq, doc])?;
        self.bump_resource_count(account_id, kind, region_id, 1)
    }

    fn bump_resource_count(
        &self,
        account_id: &str,
        kind: ResourceKind,
        region_id: &str,
        delta: i64,
    ) -> Result<(), Error> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO resource_counts(account_id, kind, region_id, n) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(account_id, kind, region_id) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![account_id, kind.as_str(), region_id, delta])?;
        Ok(())
    }

    pub fn update_resource_doc(&self, kind: ResourceKind, id: &str, doc: &str) -> Result<(), Error> {
        let mut st = self
            .conn()?
            .prepare_cached("UPDATE resources SET doc = ?3 WHERE id = ?1 AND kind = ?2")?;
        st.execute(params![id, kind.as_str(), doc])?;
        Ok(())
    }

    pub fn delete_resource(&self, kind: ResourceKind, id: &str) -> Result<bool, Error> {
        let Some((account_id, region_id)) = self.load_owner(kind, id)? else {
            return Ok(false);
        };
        self.conn()?
            .prepare_cached("DELETE FROM resources WHERE id = ?1 AND kind = ?2")?
            .execute(params![id, kind.as_str()])?;
        self.bump_resource_count(&account_id, kind, &region_id, -1)?;
        Ok(true)
    }

    fn load_owner(&self, kind: ResourceKind, id: &str) -> Result<Option<(String, String)>, Error> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT account_id, region_id FROM resources WHERE id = ?1 AND kind = ?2")?
            .query_row(params![id, kind.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// (account id, region id) of a resource, without decoding its document.
    pub fn resource_owner(&self, kind: ResourceKind, id: &str) -> Result<Option<(String, String)>, Error> {
        self.cached_or(
            || Query::ResourceOwner(kind, id.to_string()),
            || self.load_owner(kind, id),
        )
    }

    /// A resource by id decoded by `ty`, from the cache when it holds it at this generation.
    pub fn resource_any(&self, kind: ResourceKind, id: &str, ty: &DocType) -> Result<Option<AnyDoc>, Error> {
        self.cached_or(
            || Query::Resource(kind, id.to_string(), ty.type_id),
            || {
                let mut st = self
                    .conn()?
                    .prepare_cached("SELECT account_id, doc FROM resources WHERE id = ?1 AND kind = ?2")?;
                let row = st
                    .query_row(params![id, kind.as_str()], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()?;
                match row {
                    None => Ok(None),
                    Some((account_id, doc)) => Ok(Some((ty.decode_one)(account_id, &doc, kind)?)),
                }
            },
        )
    }

    /// A page of an account's resources of one kind in a region decoded by `ty`, with the
    /// total count. `parent` restricts to children of one resource.
    #[allow(clippy::too_many_arguments)]
    pub fn list_resources_any(
        &self,
        kind: ResourceKind,
        account_id: &str,
        region_id: &str,
        parent: Option<&str>,
        offset: u64,
        limit: u64,
        ty: &DocType,
    ) -> Result<AnyDoc, Error> {
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
                Ok((ty.decode_page)(&docs, total, kind)?)
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
    ) -> Result<(Vec<String>, u64), Error> {
        let total: i64 = match parent {
            // The maintained counter: no row count for unfiltered lists.
            None => self.count_resources(kind, account_id, region_id)? as i64,
            Some(_) => -1,
        };
        let parent = parent.unwrap_or("");
        let total: i64 = if total >= 0 {
            total
        } else {
            self.conn()?.prepare_cached(
            "SELECT COUNT(*) FROM resources WHERE account_id = ?1 AND kind = ?2 AND region_id = ?3 AND (?4 = '' OR parent_id = ?4)",
        )?
        .query_row(params![account_id, kind.as_str(), region_id, parent], |r| r.get(0))?
        };
        let mut st = self.conn()?.prepare_cached(
            "SELECT doc FROM resources WHERE account_id = ?1 AND kind = ?2 AND region_id = ?3 AND (?4 = '' OR parent_id = ?4) ORDER BY seq LIMIT ?5 OFFSET ?6",
        )?;
        let docs = st
            .query_map(
                params![
                    account_id,
                    kind.as_str(),
                    region_id,
                    parent,
                    limit as i64,
                    offset as i64
                ],
                |r| r.get::<_, String>(0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((docs, total as u64))
    }

    /// The documents of every resource of a kind that is a child of `parent_id` (any account).
    pub fn children_docs(&self, kind: ResourceKind, parent_id: &str) -> Result<Vec<String>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT doc FROM resources WHERE parent_id = ?1 AND kind = ?2 ORDER BY seq")?;
        let docs = st
            .query_map(params![parent_id, kind.as_str()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(docs)
    }

    pub fn count_children(&self, kind: ResourceKind, parent_id: &str) -> Result<u64, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT COUNT(*) FROM resources WHERE parent_id = ?1 AND kind = ?2")?;
        Ok(st.query_row(params![parent_id, kind.as_str()], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn count_resources(&self, kind: ResourceKind, account_id: &str, region_id: &str) -> Result<u64, Error> {
        self.cached_or(
            || Query::ResourceCount(kind, account_id.to_string(), region_id.to_string()),
            || {
                let mut st = self.conn()?.prepare_cached(
                    "SELECT n FROM resource_counts WHERE account_id = ?1 AND kind = ?2 AND region_id = ?3",
                )?;
                let n: Option<i64> = st
                    .query_row(params![account_id, kind.as_str(), region_id], |r| r.get(0))
                    .optional()?;
                Ok(n.unwrap_or(0).max(0) as u64)
            },
        )
    }

    /// Every resource of a kind as JSON, across accounts (startup and admin use).
    pub fn all_resource_docs(&self, kind: ResourceKind) -> Result<Vec<Resource<String>>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT account_id, doc FROM resources WHERE kind = ?1 ORDER BY seq")?;
        let rows = st
            .query_map(params![kind.as_str()], |r| {
                Ok(Resource {
                    account_id: r.get::<_, String>(0)?,
                    doc: r.get::<_, String>(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ---------------------------------------------------------------- VPN routes

    /// Insert a route; returns its `seq`.
    pub fn insert_route(&self, r: &VpnRoute) -> Result<i64, Error> {
        let mut st = self.conn()?.prepare_cached(
            "INSERT INTO vpn_routes(kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        st.execute(params![
            r.kind.as_str(),
            r.gateway_id,
            r.source,
            r.dest,
            r.next_hop,
            r.weight,
            r.priority,
            r.published as i64,
            r.description,
            r.overlay_mode,
            r.create_time
        ])?;
        let seq = self.conn()?.last_insert_rowid();
        self.bump_route_count(&r.gateway_id, r.kind, 1)?;
        if !self.collect_at_once(&r.gateway_id, seq, || Some(VpnRoute { seq, ..r.clone() })) {
            self.remember_route_before(&r.gateway_id, seq, false)?;
        }
        Ok(seq)
    }

    /// For a gateway whose version this transaction recorded at once: collect a route write
    /// (its state after) instead of keeping the route's earlier state. Returns whether it did.
    fn collect_at_once(&self, gateway_id: &str, seq: i64, state: impl FnOnce() -> Option<VpnRoute>) -> bool {
        ChangeAtOnce::collect(&mut self.at_once.borrow_mut(), gateway_id, seq, state)
    }

    /// See [`WriteTx::change_at_once`].
    pub fn change_at_once(&self, gateway_id: &str, now_ms: i64) -> Result<Option<i64>, Error> {
        let version: Option<i64> = self
            .conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET desired = desired + 1, applied = applied + 1 \
                 WHERE gateway_id = ?1 AND desired = applied AND (lease_until IS NULL OR lease_until <= ?2) \
                 RETURNING desired",
            )?
            .query_row(params![gateway_id, now_ms], |r| r.get(0))
            .optional()?;
        if let Some(version) = version {
            self.at_once.borrow_mut().push(ChangeAtOnce::new(gateway_id, version));
        }
        Ok(version)
    }

    /// See [`WriteTx::take_changes_at_once`].
    pub fn take_changes_at_once(&self) -> Vec<ChangeAtOnce> {
        std::mem::take(&mut *self.at_once.borrow_mut())
    }

    fn bump_route_count(&self, gateway_id: &str, kind: RouteKind, delta: i64) -> Result<(), Error> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO gateway_route_counts(gateway_id, kind, n) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(gateway_id, kind) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![gateway_id, kind.as_str(), delta])?;
        Ok(())
    }

    pub fn update_route(&self, r: &VpnRoute) -> Result<(), Error> {
        if !self.collect_at_once(&r.gateway_id, r.seq, || Some(r.clone())) {
            self.remember_route_before(&r.gateway_id, r.seq, true)?;
        }
        let mut st = self.conn()?.prepare_cached(
            "UPDATE vpn_routes SET weight = ?2, priority = ?3, published = ?4, description = ?5 WHERE seq = ?1",
        )?;
        st.execute(params![r.seq, r.weight, r.priority, r.published as i64, r.description])?;
        Ok(())
    }

    pub fn delete_route(&self, r: &VpnRoute) -> Result<(), Error> {
        if !self.collect_at_once(&r.gateway_id, r.seq, || None) {
            self.remember_route_before(&r.gateway_id, r.seq, true)?;
        }
        if self
            .conn()?
            .prepare_cached("DELETE FROM vpn_routes WHERE seq = ?1")?
            .execute(params![r.seq])?
            > 0
        {
            self.bump_route_count(&r.gateway_id, r.kind, -1)?;
        }
        Ok(())
    }

    /// Routes of a gateway with the same key: same kind, dest and (for pbr) source.
    pub fn routes_with_key(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        source: &str,
        dest: &str,
    ) -> Result<Vec<VpnRoute>, Error> {
        self.query_routes(
            select_routes!(
                "WHERE gateway_id = ?1 AND kind = ?2 AND route_source = ?3 AND route_dest = ?4 ORDER BY seq"
            ),
            params![gateway_id, kind.as_str(), source, dest],
        )
    }

    /// Routes of a gateway (both kinds) with the given destination.
    pub fn routes_with_dest(&self, gateway_id: &str, dest: &str) -> Result<Vec<VpnRoute>, Error> {
        self.query_routes(
            select_routes!("WHERE gateway_id = ?1 AND route_dest = ?2 ORDER BY seq"),
            params![gateway_id, dest],
        )
    }

    /// Number of routes of a kind on a gateway (a maintained counter, not a scan).
    pub fn count_routes(&self, gateway_id: &str, kind: RouteKind) -> Result<u64, Error> {
        self.cached_or(
            || Query::RouteCount(gateway_id.to_string(), kind),
            || {
                let mut st = self
                    .conn()?
                    .prepare_cached("SELECT n FROM gateway_route_counts WHERE gateway_id = ?1 AND kind = ?2")?;
                Ok(st
                    .query_row(params![gateway_id, kind.as_str()], |r| r.get::<_, i64>(0))
                    .optional()?
                    .unwrap_or(0)
                    .max(0) as u64)
            },
        )
    }

    pub fn list_routes(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<VpnRoute>, Error> {
        self.cached_or(
            || Query::RoutePage(gateway_id.to_string(), kind, offset, limit),
            || {
                self.query_routes(
                    select_routes!("WHERE gateway_id = ?1 AND kind = ?2 ORDER BY seq LIMIT ?3 OFFSET ?4"),
                    params![gateway_id, kind.as_str(), limit as i64, offset as i64],
                )
            },
        )
    }

    /// Every route of a gateway (both kinds), in creation order.
    pub fn gateway_routes(&self, gateway_id: &str) -> Result<Vec<VpnRoute>, Error> {
        self.query_routes(
            select_routes!("WHERE gateway_id = ?1 ORDER BY seq"),
            params![gateway_id],
        )
    }

    pub fn count_routes_via(&self, next_hop: &str) -> Result<u64, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT COUNT(*) FROM vpn_routes WHERE next_hop = ?1")?;
        Ok(st.query_row(params![next_hop], |r| r.get::<_, i64>(0))? as u64)
    }

    // ---------------------------------------------------------------- VPC route entries

    pub fn insert_vpc_entry(&self, e: &VpcRouteEntry) -> Result<(), Error> {
        let seq = self.next_counter("vpc_entry_seq")?;
        let mut st = self.conn()?.prepare_cached(
            "INSERT INTO vpc_route_entries(id, route_table_id, dest, next_hop_type, next_hop_id, entry_type, name, description, create_time, seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        st.execute(params![
            e.id,
            e.route_table_id,
            e.dest,
            e.next_hop_type,
            e.next_hop_id,
            e.entry_type,
            e.name,
            e.description,
            e.create_time,
            seq
        ])?;
        Ok(())
    }

    pub fn delete_vpc_entry(&self, id: &str) -> Result<bool, Error> {
        Ok(self
            .conn()?
            .prepare_cached("DELETE FROM vpc_route_entries WHERE id = ?1")?
            .execute(params![id])?
            > 0)
    }

    pub fn vpc_entries_for_dest(&self, route_table_id: &str, dest: &str) -> Result<Vec<VpcRouteEntry>, Error> {
        self.query_entries(
            select_entries!("WHERE route_table_id = ?1 AND dest = ?2 ORDER BY seq"),
            params![route_table_id, dest],
        )
    }

    pub fn vpc_entries(&self, route_table_id: &str) -> Result<Vec<VpcRouteEntry>, Error> {
        self.query_entries(
            select_entries!("WHERE route_table_id = ?1 ORDER BY seq"),
            params![route_table_id],
        )
    }

    pub fn vpc_entry(&self, id: &str) -> Result<Option<VpcRouteEntry>, Error> {
        Ok(self
            .conn()?
            .prepare_cached(select_entries!("WHERE id = ?1"))?
            .query_row(params![id], entry_from_row)
            .optional()?)
    }

    pub fn count_vpc_entries_to(&self, route_table_id: &str, next_hop_id: &str) -> Result<u64, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT COUNT(*) FROM vpc_route_entries WHERE route_table_id = ?1 AND next_hop_id = ?2")?;
        Ok(st.query_row(params![route_table_id, next_hop_id], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn count_vpc_entries_via(&self, next_hop_id: &str) -> Result<u64, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT COUNT(*) FROM vpc_route_entries WHERE next_hop_id = ?1")?;
        Ok(st.query_row(params![next_hop_id], |r| r.get::<_, i64>(0))? as u64)
    }

    pub fn delete_vpc_entries_of_table(&self, route_table_id: &str) -> Result<(), Error> {
        self.conn()?
            .prepare_cached("DELETE FROM vpc_route_entries WHERE route_table_id = ?1")?
            .execute(params![route_table_id])?;
        Ok(())
    }

    // ---------------------------------------------------------------- ClientTokens

    /// The stored (params hash, response) of a token, if used within the retention window.
    pub fn client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        not_before_ms: i64,
    ) -> Result<Option<(String, String)>, Error> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT params_hash, response FROM client_tokens WHERE account_id = ?1 AND action = ?2 AND token = ?3 AND created_at >= ?4",
        )?;
        Ok(st
            .query_row(params![account_id, action, token, not_before_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    pub fn save_client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        params_hash: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), Error> {
        let mut st = self.conn()?.prepare_cached(
            "INSERT INTO client_tokens(account_id, action, token, params_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT(account_id, action, token) DO UPDATE SET params_hash = excluded.params_hash, response = excluded.response, created_at = excluded.created_at",
        )?;
        st.execute(params![account_id, action, token, params_hash, response, now_ms])?;
        Ok(())
    }

    pub fn prune_client_tokens(&self, older_than_ms: i64) -> Result<usize, Error> {
        Ok(self
            .conn()?
            .prepare_cached("DELETE FROM client_tokens WHERE created_at < ?1")?
            .execute(params![older_than_ms])?)
    }

    // ---------------------------------------------------------------- tasks & versions

    /// (desired, applied) versions of a gateway.
    pub fn gateway_versions(&self, gateway_id: &str) -> Result<(i64, i64), Error> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT desired, applied FROM gateway_versions WHERE gateway_id = ?1")?
            .query_row(params![gateway_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .unwrap_or((0, 0)))
    }

    pub fn all_gateway_versions(&self) -> Result<Vec<(String, i64, i64)>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT gateway_id, desired, applied FROM gateway_versions ORDER BY gateway_id")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_gateway_state(&self, gateway_id: &str) -> Result<(), Error> {
        self.conn()?
            .prepare_cached("DELETE FROM gateway_route_counts WHERE gateway_id = ?1")?
            .execute(params![gateway_id])?;
        self.conn()?
            .prepare_cached("DELETE FROM gateway_tasks WHERE gateway_id = ?1")?
            .execute(params![gateway_id])?;
        self.conn()?
            .prepare_cached("DELETE FROM vpn_route_history WHERE gateway_id = ?1")?
            .execute(params![gateway_id])?;
        self.conn()?
            .prepare_cached("DELETE FROM gateway_versions WHERE gateway_id = ?1")?
            .execute(params![gateway_id])?;
        Ok(())
    }
}

/// The trait methods are the inherent ones above, with the SQLite error mapped.
macro_rules! forward {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                Ok(SqliteTx::$name(self $(, $arg)*)?)
            }
        )*
    };
}

impl ReadTx for SqliteTx<'_> {
    forward! {
        fn accounts(&self) -> Vec<Account>;
        fn account(&self, id: &str) -> Option<Account>;
        fn root_account(&self) -> Option<Account>;
        fn access_key(&self, id: &str) -> Option<AccessKey>;
        fn access_keys(&self) -> Vec<AccessKey>;
        fn ram_user_access_keys(&self, account_id: &str, user_id: &str) -> Vec<AccessKey>;
        fn ram_directory(&self, account_id: &str) -> Option<String>;
        fn setting(&self, name: &str) -> Option<String>;
        fn resource_owner(&self, kind: ResourceKind, id: &str) -> Option<(String, String)>;
        fn resource_any(&self, kind: ResourceKind, id: &str, ty: &DocType) -> Option<AnyDoc>;
        fn list_resources_any(
            &self,
            kind: ResourceKind,
            account_id: &str,
            region_id: &str,
            parent: Option<&str>,
            offset: u64,
            limit: u64,
            ty: &DocType
        ) -> AnyDoc;
        fn children_docs(&self, kind: ResourceKind, parent_id: &str) -> Vec<String>;
        fn count_children(&self, kind: ResourceKind, parent_id: &str) -> u64;
        fn count_resources(&self, kind: ResourceKind, account_id: &str, region_id: &str) -> u64;
        fn all_resource_docs(&self, kind: ResourceKind) -> Vec<Resource<String>>;
        fn routes_with_key(&self, gateway_id: &str, kind: RouteKind, source: &str, dest: &str) -> Vec<VpnRoute>;
        fn routes_with_dest(&self, gateway_id: &str, dest: &str) -> Vec<VpnRoute>;
        fn count_routes(&self, gateway_id: &str, kind: RouteKind) -> u64;
        fn list_routes(&self, gateway_id: &str, kind: RouteKind, offset: u64, limit: u64) -> Vec<VpnRoute>;
        fn gateway_routes(&self, gateway_id: &str) -> Vec<VpnRoute>;
        fn count_routes_via(&self, next_hop: &str) -> u64;
        fn vpc_entries_for_dest(&self, route_table_id: &str, dest: &str) -> Vec<VpcRouteEntry>;
        fn vpc_entries(&self, route_table_id: &str) -> Vec<VpcRouteEntry>;
        fn vpc_entry(&self, id: &str) -> Option<VpcRouteEntry>;
        fn count_vpc_entries_to(&self, route_table_id: &str, next_hop_id: &str) -> u64;
        fn count_vpc_entries_via(&self, next_hop_id: &str) -> u64;
        fn client_token(&self, account_id: &str, action: &str, token: &str, not_before_ms: i64) -> Option<(String, String)>;
        fn pending_tasks(&self, gateway_id: &str) -> Vec<Task>;
        fn all_pending_tasks(&self) -> Vec<Task>;
        fn routes_at_version(&self, gateway_id: &str, version: i64) -> Vec<VpnRoute>;
        fn route_changes(&self, gateway_id: &str, from: i64, to: i64) -> Vec<(i64, Option<VpnRoute>)>;
        fn reconcile_failure(&self, gateway_id: &str) -> Option<ReconcileFailure>;
        fn next_reconcile_wake(&self, now_ms: i64) -> Option<i64>;
        fn gateway_versions(&self, gateway_id: &str) -> (i64, i64);
        fn all_gateway_versions(&self) -> Vec<(String, i64, i64)>;
    }
}

impl WriteTx for SqliteTx<'_> {
    /// SQLite has one writer: every write transaction already excludes every other.
    fn lock_gateway(&self, _gateway_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn take_changes_at_once(&self) -> Vec<ChangeAtOnce> {
        SqliteTx::take_changes_at_once(self)
    }

    forward! {
        fn next_counter(&self, name: &str) -> i64;
        fn insert_account(&self, a: &Account) -> ();
        fn insert_access_key(&self, k: &AccessKey) -> ();
        fn set_access_key_status(&self, id: &str, status: &str) -> bool;
        fn delete_access_key(&self, id: &str) -> bool;
        fn put_ram_directory(&self, account_id: &str, doc: &str) -> ();
        fn put_setting_if_absent(&self, name: &str, value: &str) -> ();
        fn insert_resource_doc(
            &self,
            kind: ResourceKind,
            id: &str,
            account_id: &str,
            region_id: &str,
            parent_id: &str,
            doc: &str
        ) -> ();
        fn update_resource_doc(&self, kind: ResourceKind, id: &str, doc: &str) -> ();
        fn delete_resource(&self, kind: ResourceKind, id: &str) -> bool;
        fn insert_route(&self, r: &VpnRoute) -> i64;
        fn update_route(&self, r: &VpnRoute) -> ();
        fn delete_route(&self, r: &VpnRoute) -> ();
        fn insert_vpc_entry(&self, e: &VpcRouteEntry) -> ();
        fn delete_vpc_entry(&self, id: &str) -> bool;
        fn delete_vpc_entries_of_table(&self, route_table_id: &str) -> ();
        fn save_client_token(
            &self,
            account_id: &str,
            action: &str,
            token: &str,
            params_hash: &str,
            response: &str,
            now_ms: i64
        ) -> ();
        fn prune_client_tokens(&self, older_than_ms: i64) -> usize;
        fn enqueue_version(&self, gateway_id: &str, due_at: Option<i64>, now_ms: i64) -> i64;
        fn change_at_once(&self, gateway_id: &str, now_ms: i64) -> Option<i64>;
        fn claim_due_gateways(&self, owner: &str, now_ms: i64, lease_ms: i64, max: usize) -> Vec<ReconcileClaim>;
        fn claim_gateway(&self, gateway_id: &str, owner: &str, now_ms: i64, lease_ms: i64) -> Option<ReconcileClaim>;
        fn record_applied(&self, claim: &ReconcileClaim, version: i64) -> bool;
        fn record_failure(&self, claim: &ReconcileClaim, error: &str, next_retry_ms: i64) -> Option<u32>;
        fn release_claim(&self, claim: &ReconcileClaim) -> ();
        fn release_owner_claims(&self, owner: &str) -> usize;
        fn reschedule_tasks(&self, gateway_id: &str, due_at: Option<i64>) -> usize;
        fn delete_gateway_state(&self, gateway_id: &str) -> ();
    }
}
