//! The transaction traits: [`ReadTx`] (every read a handler makes) and [`WriteTx`] (every
//! write), object-safe so handlers take `&dyn ReadTx` / `&dyn WriteTx` whatever the backend.
//! Resource documents cross the trait as JSON text or as type-erased decoded values
//! ([`DocType`]); [`ReadTxExt`] and [`WriteTxExt`] add the typed generic methods on top, so
//! a backend with a read cache can keep decoded documents and hand out clones.

use std::any::{Any, TypeId};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use vpnroute_domain::model::{RouteKind, VpcRouteEntry, VpnRoute};

use crate::{
    AccessKey, Account, ChangeAtOnce, ReconcileClaim, ReconcileFailure, Resource, ResourceKind, StoreError, Task,
};

/// A decoded value of some Rust type, shared with a read cache.
pub type AnyDoc = Arc<dyn Any + Send + Sync>;

/// How to decode the documents of one Rust type: what a backend needs to answer
/// [`ReadTx::resource_any`] and [`ReadTx::list_resources_any`] (and to key its cache by type).
pub struct DocType {
    /// The Rust type decoded (part of a cache key: one row may be decoded as several types).
    pub type_id: TypeId,
    /// `(account id, JSON)` → `Arc<Resource<T>>`.
    pub decode_one: fn(String, &str, ResourceKind) -> Result<AnyDoc, StoreError>,
    /// JSON documents and the total → `Arc<(Vec<T>, u64)>`.
    pub decode_page: fn(&[String], u64, ResourceKind) -> Result<AnyDoc, StoreError>,
}

impl DocType {
    pub fn of<T: DeserializeOwned + Send + Sync + 'static>() -> DocType {
        DocType {
            type_id: TypeId::of::<T>(),
            decode_one: |account_id, doc, kind| {
                Ok(Arc::new(Resource {
                    account_id,
                    doc: from_json::<T>(doc, kind)?,
                }))
            },
            decode_page: |docs, total, kind| {
                let items = docs
                    .iter()
                    .map(|d| from_json::<T>(d, kind))
                    .collect::<Result<Vec<T>, _>>()?;
                Ok(Arc::new((items, total)))
            },
        }
    }
}

/// Decode a stored document of `kind`.
pub fn from_json<T: DeserializeOwned>(doc: &str, kind: ResourceKind) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|source| StoreError::Json {
        what: kind.as_str(),
        source,
    })
}

/// Encode a document for storage.
pub fn to_json<T: Serialize>(doc: &T) -> Result<String, StoreError> {
    serde_json::to_string(doc).map_err(|source| StoreError::Json {
        what: "serialize",
        source,
    })
}

fn downcast<V: 'static>(doc: &AnyDoc) -> Result<&V, StoreError> {
    doc.downcast_ref::<V>()
        .ok_or_else(|| StoreError::Other("a decoded document of an unexpected type".into()))
}

/// Everything a read transaction answers. All reads of one transaction see one committed
/// state (a write transaction's reads also see its own uncommitted writes).
pub trait ReadTx {
    // ------------------------------------------------------------ accounts & keys
    fn accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// By id or by name.
    fn account(&self, id: &str) -> Result<Option<Account>, StoreError>;
    fn root_account(&self) -> Result<Option<Account>, StoreError>;
    fn access_key(&self, id: &str) -> Result<Option<AccessKey>, StoreError>;
    fn access_keys(&self) -> Result<Vec<AccessKey>, StoreError>;
    /// The access keys of one RAM user of an account, oldest first.
    fn ram_user_access_keys(&self, account_id: &str, user_id: &str) -> Result<Vec<AccessKey>, StoreError>;

    // ------------------------------------------------------------ RAM
    /// The account's RAM directory (a `vpnroute-ram` `Directory` as JSON), if it has one.
    fn ram_directory(&self, account_id: &str) -> Result<Option<String>, StoreError>;

    // ------------------------------------------------------------ service settings
    /// A setting every process of the service shares (the STS token key), if set.
    fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;

    // ------------------------------------------------------------ resources
    /// (account id, region id) of a resource, without decoding its document.
    fn resource_owner(&self, kind: ResourceKind, id: &str) -> Result<Option<(String, String)>, StoreError>;
    /// A resource by id decoded by `ty` (an `Arc<Resource<T>>`); see [`ReadTxExt::resource`].
    fn resource_any(&self, kind: ResourceKind, id: &str, ty: &DocType) -> Result<Option<AnyDoc>, StoreError>;
    /// A page of an account's resources decoded by `ty` (an `Arc<(Vec<T>, u64)>`); see
    /// [`ReadTxExt::list_resources`].
    #[allow(clippy::too_many_arguments)]
    fn list_resources_any(
        &self,
        kind: ResourceKind,
        account_id: &str,
        region_id: &str,
        parent: Option<&str>,
        offset: u64,
        limit: u64,
        ty: &DocType,
    ) -> Result<AnyDoc, StoreError>;
    /// The JSON documents of every resource of a kind that is a child of `parent_id` (any
    /// account), in creation order.
    fn children_docs(&self, kind: ResourceKind, parent_id: &str) -> Result<Vec<String>, StoreError>;
    fn count_children(&self, kind: ResourceKind, parent_id: &str) -> Result<u64, StoreError>;
    fn count_resources(&self, kind: ResourceKind, account_id: &str, region_id: &str) -> Result<u64, StoreError>;
    /// Every resource of a kind as JSON, across accounts, in creation order.
    fn all_resource_docs(&self, kind: ResourceKind) -> Result<Vec<Resource<String>>, StoreError>;

    // ------------------------------------------------------------ VPN routes
    /// Routes of a gateway with the same key: same kind, dest and (for pbr) source.
    fn routes_with_key(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        source: &str,
        dest: &str,
    ) -> Result<Vec<VpnRoute>, StoreError>;
    /// Routes of a gateway (both kinds) with the given destination.
    fn routes_with_dest(&self, gateway_id: &str, dest: &str) -> Result<Vec<VpnRoute>, StoreError>;
    /// Number of routes of a kind on a gateway.
    fn count_routes(&self, gateway_id: &str, kind: RouteKind) -> Result<u64, StoreError>;
    /// A page of a gateway's routes of a kind, in creation order.
    fn list_routes(
        &self,
        gateway_id: &str,
        kind: RouteKind,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<VpnRoute>, StoreError>;
    /// Every route of a gateway (both kinds), in creation order.
    fn gateway_routes(&self, gateway_id: &str) -> Result<Vec<VpnRoute>, StoreError>;
    fn count_routes_via(&self, next_hop: &str) -> Result<u64, StoreError>;

    // ------------------------------------------------------------ VPC route entries
    fn vpc_entries_for_dest(&self, route_table_id: &str, dest: &str) -> Result<Vec<VpcRouteEntry>, StoreError>;
    fn vpc_entries(&self, route_table_id: &str) -> Result<Vec<VpcRouteEntry>, StoreError>;
    fn vpc_entry(&self, id: &str) -> Result<Option<VpcRouteEntry>, StoreError>;
    fn count_vpc_entries_to(&self, route_table_id: &str, next_hop_id: &str) -> Result<u64, StoreError>;
    fn count_vpc_entries_via(&self, next_hop_id: &str) -> Result<u64, StoreError>;

    // ------------------------------------------------------------ ClientTokens
    /// The stored (params hash, response) of a token, if saved at or after `not_before_ms`.
    fn client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        not_before_ms: i64,
    ) -> Result<Option<(String, String)>, StoreError>;

    // ------------------------------------------------------------ tasks & versions
    /// Pending tasks of a gateway, lowest version first.
    fn pending_tasks(&self, gateway_id: &str) -> Result<Vec<Task>, StoreError>;
    /// Every pending task, by gateway then version.
    fn all_pending_tasks(&self) -> Result<Vec<Task>, StoreError>;
    /// The routes of a gateway at `version` (not below its applied version), in creation
    /// order: every change committed with a later version is left out.
    fn routes_at_version(&self, gateway_id: &str, version: i64) -> Result<Vec<VpnRoute>, StoreError>;
    /// The routes changed by versions `from + 1 ..= to` (`from` not below the applied
    /// version), each with its state at `to` (`None`: absent then), by seq.
    fn route_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Vec<(i64, Option<VpnRoute>)>, StoreError>;
    /// The failure record of a gateway (`None`: its last reconcile succeeded, or none failed).
    fn reconcile_failure(&self, gateway_id: &str) -> Result<Option<ReconcileFailure>, StoreError>;
    /// The earliest time a claim of due work may succeed (a gateway's first task due, a
    /// retry time, a lease running out); `None`: nothing scheduled.
    fn next_reconcile_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreError>;
    /// (desired, applied) versions of a gateway; (0, 0) if it has none.
    fn gateway_versions(&self, gateway_id: &str) -> Result<(i64, i64), StoreError>;
    /// (gateway id, desired, applied) of every gateway, by id.
    fn all_gateway_versions(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;

    // ------------------------------------------------------------ reading ahead
    /// Read now, together, what the calls `ahead` names will ask this transaction for, so
    /// that they answer without a round trip each; their answers are the same either way.
    /// `false` (the default): this transaction read nothing ahead (the store has no round
    /// trips to save, or this kind of transaction does not read ahead), and a caller should
    /// not do extra work to tell it what is coming.
    fn read_ahead(&self, ahead: &[ReadAhead]) -> Result<bool, StoreError> {
        let _ = ahead;
        Ok(false)
    }
}

/// Reads a transaction is about to make ([`ReadTx::read_ahead`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAhead {
    /// [`ReadTx::resource_any`] and [`ReadTx::resource_owner`] of each id of one kind.
    Resources(ResourceKind, Vec<String>),
    /// [`ReadTx::children_docs`] of each parent, for every kind.
    Children(Vec<String>),
    /// [`ReadTx::gateway_versions`] of each gateway.
    GatewayVersions(Vec<String>),
    /// [`ReadTx::routes_at_version`] of each (gateway, version).
    RoutesAtVersion(Vec<(String, i64)>),
}

/// Everything a write transaction changes. The transaction commits as a whole or not at
/// all.
pub trait WriteTx: ReadTx {
    /// Serialise this transaction against every other writer of `gateway_id` until it ends
    /// (a row lock on a shared database; free where there is a single writer).
    /// Check-then-insert logic on a gateway's routes and connections takes it before reading.
    fn lock_gateway(&self, gateway_id: &str) -> Result<(), StoreError>;
    /// Record the request's signature nonce in this transaction instead of the nonce store,
    /// where the store can check it there at no round trip of its own. Taken (`true`): it is
    /// durable with the commit, a nonce still refused makes the transaction fail retryably
    /// (and the retry records it with the nonce store, which refuses it), and a request that
    /// fails on its own is run again rather than committed without its nonce. `false` (the
    /// default): not taken; record it with the nonce store.
    fn take_nonce(&self, access_key_id: &str, nonce: &str, now_ms: i64, keep_until_ms: i64) -> bool {
        let _ = (access_key_id, nonce, now_ms, keep_until_ms);
        false
    }
    /// The (account id, region id) of gateway `gateway_id` ([`ReadTx::resource_owner`]) and,
    /// if it exists, its lock ([`WriteTx::lock_gateway`]); `None`: no such gateway, nothing
    /// locked (no lock rows for ids that do not exist). One round trip where the store can do
    /// both together.
    fn lock_existing_gateway(&self, gateway_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let owner = self.resource_owner(ResourceKind::VpnGateway, gateway_id)?;
        if owner.is_some() {
            self.lock_gateway(gateway_id)?;
        }
        Ok(owner)
    }

    /// Next value of a named monotonic counter (resource ordering, versions).
    fn next_counter(&self, name: &str) -> Result<i64, StoreError>;

    // ------------------------------------------------------------ accounts & keys
    fn insert_account(&self, a: &Account) -> Result<(), StoreError>;
    fn insert_access_key(&self, k: &AccessKey) -> Result<(), StoreError>;
    /// Returns whether a key with that id existed.
    fn set_access_key_status(&self, id: &str, status: &str) -> Result<bool, StoreError>;
    fn delete_access_key(&self, id: &str) -> Result<bool, StoreError>;
    /// Store (insert or replace) the account's RAM directory document.
    fn put_ram_directory(&self, account_id: &str, doc: &str) -> Result<(), StoreError>;
    /// Set a shared setting unless it is set already (the first writer wins: replicas
    /// starting together agree on one value).
    fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<(), StoreError>;

    // ------------------------------------------------------------ resources
    /// Insert a resource with its JSON document; see [`WriteTxExt::insert_resource`].
    fn insert_resource_doc(
        &self,
        kind: ResourceKind,
        id: &str,
        account_id: &str,
        region_id: &str,
        parent_id: &str,
        doc: &str,
    ) -> Result<(), StoreError>;
    /// Replace a resource's JSON document; see [`WriteTxExt::update_resource`].
    fn update_resource_doc(&self, kind: ResourceKind, id: &str, doc: &str) -> Result<(), StoreError>;
    /// Returns whether it existed.
    fn delete_resource(&self, kind: ResourceKind, id: &str) -> Result<bool, StoreError>;

    // ------------------------------------------------------------ VPN routes
    /// Insert a route; returns its `seq` (creation order). A route with the same gateway,
    /// kind, source, dest and next hop is refused.
    fn insert_route(&self, r: &VpnRoute) -> Result<i64, StoreError>;
    /// Weight, priority, published and description of the route with `r.seq`.
    fn update_route(&self, r: &VpnRoute) -> Result<(), StoreError>;
    /// Idempotent.
    fn delete_route(&self, r: &VpnRoute) -> Result<(), StoreError>;

    // ------------------------------------------------------------ VPC route entries
    fn insert_vpc_entry(&self, e: &VpcRouteEntry) -> Result<(), StoreError>;
    fn delete_vpc_entry(&self, id: &str) -> Result<bool, StoreError>;
    fn delete_vpc_entries_of_table(&self, route_table_id: &str) -> Result<(), StoreError>;

    // ------------------------------------------------------------ ClientTokens
    fn save_client_token(
        &self,
        account_id: &str,
        action: &str,
        token: &str,
        params_hash: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    fn prune_client_tokens(&self, older_than_ms: i64) -> Result<usize, StoreError>;

    // ------------------------------------------------------------ tasks & versions
    /// Bump the gateway's desired version with a task due at `due_at` (`None`: manual).
    /// Route writes of the same transaction belong to that version (the store keeps each
    /// route's state before them until the version is applied). Returns the new version.
    fn enqueue_version(&self, gateway_id: &str, due_at: Option<i64>, now_ms: i64) -> Result<i64, StoreError>;
    /// A change due at once that this transaction puts on record as applied, for a data plane
    /// whose state is this process's memory and is put in force right after the commit (the
    /// `sim`: `DataPlane::per_process` and `DataPlane::applies_inline`): bump the gateway's desired *and*
    /// applied version by one when nothing is pending for it (desired = applied, no live
    /// claim). Later route writes of this gateway in this transaction keep no earlier state
    /// (nothing is left to reconcile): they are collected for [`WriteTx::take_changes_at_once`]
    /// instead, to be put in force from memory. `None`: something is pending; the caller
    /// versions the change with [`WriteTx::enqueue_version`] as usual. Why this is safe: such a
    /// data plane holds nothing that survives the process, every replica (and this one after
    /// a restart) converges its own copy to the recorded version anyway (mirroring), and a
    /// failed or skipped apply is repaired the same way.
    fn change_at_once(&self, gateway_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError>;
    /// The versions [`WriteTx::change_at_once`] took in this transaction since the last call,
    /// with their route writes in order, and forget them. A rolled-back request's are
    /// dropped by the store.
    fn take_changes_at_once(&self) -> Vec<ChangeAtOnce>;
    /// Claim up to `max` gateways with work due at `now_ms` (a first task due, or a failure
    /// whose retry time has come) for `owner` until `now_ms + lease_ms`; gateways under an
    /// unexpired claim or waiting for a retry are skipped.
    fn claim_due_gateways(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<ReconcileClaim>, StoreError>;
    /// Claim one gateway whatever is due (drift repair), with the same exclusions.
    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ReconcileClaim>, StoreError>;
    /// Record `version` in force if `claim` is the gateway's latest claim and `version` is not
    /// below the applied version: completes the tasks up to it, forgets their routes'
    /// earlier states, clears the failure record and ends the claim. Returns whether it did.
    /// Takes the gateway's lock first ([`WriteTx::lock_gateway`]), as every writer of the
    /// gateway does: the caller may then rewrite the gateway's document (its status) without
    /// overwriting a concurrent change of it with an older copy.
    fn record_applied(&self, claim: &ReconcileClaim, version: i64) -> Result<bool, StoreError>;
    /// Record a failed attempt (attempts + 1, the error, no claim before `next_retry_ms`) and
    /// end the claim, if it is the latest; returns the attempts so far.
    fn record_failure(
        &self,
        claim: &ReconcileClaim,
        error: &str,
        next_retry_ms: i64,
    ) -> Result<Option<u32>, StoreError>;
    /// End a claim without a record (if it is the latest).
    fn release_claim(&self, claim: &ReconcileClaim) -> Result<(), StoreError>;
    /// End every claim of `owner` (its previous run is gone); returns how many.
    fn release_owner_claims(&self, owner: &str) -> Result<usize, StoreError>;
    /// Set the due time of every pending task of a gateway; returns how many.
    fn reschedule_tasks(&self, gateway_id: &str, due_at: Option<i64>) -> Result<usize, StoreError>;
    /// Forget a deleted gateway's route counts, tasks and versions.
    fn delete_gateway_state(&self, gateway_id: &str) -> Result<(), StoreError>;
}

/// The typed reads of resource documents, on every [`ReadTx`].
pub trait ReadTxExt: ReadTx {
    /// A resource by id, whoever owns it (callers check the owner).
    fn resource<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<Resource<T>>, StoreError> {
        match self.resource_any(kind, id, &DocType::of::<T>())? {
            None => Ok(None),
            Some(doc) => Ok(Some(downcast::<Resource<T>>(&doc)?.clone())),
        }
    }

    /// A page of an account's resources of one kind in a region, in creation order, with the
    /// total count. `parent` restricts to children of one resource.
    fn list_resources<T: DeserializeOwned + Clone + Send + Sync + 'static>(
        &self,
        kind: ResourceKind,
        account_id: &str,
        region_id: &str,
        parent: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<T>, u64), StoreError> {
        let page = self.list_resources_any(kind, account_id, region_id, parent, offset, limit, &DocType::of::<T>())?;
        Ok(downcast::<(Vec<T>, u64)>(&page)?.clone())
    }

    /// Every resource of a kind that is a child of `parent_id` (any account).
    fn children<T: DeserializeOwned>(&self, kind: ResourceKind, parent_id: &str) -> Result<Vec<T>, StoreError> {
        self.children_docs(kind, parent_id)?
            .iter()
            .map(|d| from_json(d, kind))
            .collect()
    }

    /// Every resource of a kind, across accounts (startup and admin use).
    fn all_resources<T: DeserializeOwned>(&self, kind: ResourceKind) -> Result<Vec<Resource<T>>, StoreError> {
        self.all_resource_docs(kind)?
            .into_iter()
            .map(|r| {
                Ok(Resource {
                    account_id: r.account_id,
                    doc: from_json(&r.doc, kind)?,
                })
            })
            .collect()
    }
}

impl<X: ReadTx + ?Sized> ReadTxExt for X {}

/// The typed writes of resource documents, on every [`WriteTx`].
pub trait WriteTxExt: WriteTx {
    fn insert_resource<T: Serialize>(
        &self,
        kind: ResourceKind,
        id: &str,
        account_id: &str,
        region_id: &str,
        parent_id: &str,
        doc: &T,
    ) -> Result<(), StoreError> {
        self.insert_resource_doc(kind, id, account_id, region_id, parent_id, &to_json(doc)?)
    }

    fn update_resource<T: Serialize>(&self, kind: ResourceKind, id: &str, doc: &T) -> Result<(), StoreError> {
        self.update_resource_doc(kind, id, &to_json(doc)?)
    }
}

impl<X: WriteTx + ?Sized> WriteTxExt for X {}
