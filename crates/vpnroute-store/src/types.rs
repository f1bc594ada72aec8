//! The records the store keeps, shared by every backend.

use vpnroute_domain::model::VpnRoute;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub is_root: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub id: String,
    pub account_id: String,
    pub secret: String,
    /// `Active` or `Inactive`.
    pub status: String,
    pub created_at: i64,
    /// The RAM user (its UserId) the key belongs to; `None` for the account's own key.
    pub ram_user_id: Option<String>,
}

/// The kinds of JSON-document resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Vpc,
    VpnGateway,
    CustomerGateway,
    VpnConnection,
    SslVpnServer,
    VSwitch,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Vpc => "vpc",
            ResourceKind::VpnGateway => "vpn_gateway",
            ResourceKind::CustomerGateway => "customer_gateway",
            ResourceKind::VpnConnection => "vpn_connection",
            ResourceKind::SslVpnServer => "ssl_vpn_server",
            ResourceKind::VSwitch => "vswitch",
        }
    }
}

/// A stored resource together with its owner.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    pub account_id: String,
    pub doc: T,
}

/// A per-gateway task: the gateway's desired version `version`, committed with the change
/// that produced it, waiting to be in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub gateway_id: String,
    pub version: i64,
    /// Epoch ms at which it may be applied; `None` in manual mode.
    pub due_at: Option<i64>,
}

/// A version recorded as applied by the transaction that made it
/// ([`WriteTx::change_at_once`](crate::WriteTx::change_at_once)), with what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeAtOnce {
    pub gateway_id: String,
    /// The version recorded; the one before it is what the data plane must hold.
    pub version: i64,
    /// Route writes in order: `seq` and the route's state after the write (`None`: deleted).
    pub routes: Vec<(i64, Option<VpnRoute>)>,
}

impl ChangeAtOnce {
    /// A version just taken, with no route write yet.
    pub fn new(gateway_id: &str, version: i64) -> Self {
        ChangeAtOnce {
            gateway_id: gateway_id.to_string(),
            version,
            routes: Vec::new(),
        }
    }

    /// For a backend: add a route write to the gateway's version in `taken`, if this
    /// transaction took one; `false` when it did not (the write is versioned as usual).
    pub fn collect(
        taken: &mut [ChangeAtOnce],
        gateway_id: &str,
        seq: i64,
        state: impl FnOnce() -> Option<VpnRoute>,
    ) -> bool {
        match taken.iter_mut().rev().find(|c| c.gateway_id == gateway_id) {
            Some(change) => {
                change.routes.push((seq, state()));
                true
            }
            None => false,
        }
    }
}

/// A gateway claimed for reconciliation by one owner until `lease_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileClaim {
    pub gateway_id: String,
    pub owner: String,
    /// Fencing token: increases with every claim of the gateway; records made with an older
    /// one are refused.
    pub token: i64,
    pub lease_until_ms: i64,
    /// The highest version whose task (and every earlier one) is due; else the applied one.
    pub target_version: i64,
    /// The applied version when the claim was taken.
    pub applied_version: i64,
    /// Failed attempts in a row before this claim.
    pub attempts: u32,
}

/// The failure record of a gateway's last reconcile attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileFailure {
    pub attempts: u32,
    pub last_error: String,
    /// When the next attempt may be made (epoch ms).
    pub next_retry_ms: Option<i64>,
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a process crash (`synchronous=NORMAL` with WAL on SQLite).
    Process,
    /// Survives power loss (`synchronous=FULL` on SQLite).
    Full,
}
