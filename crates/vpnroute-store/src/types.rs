//! The records the store keeps, shared by every backend.

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
}

/// The kinds of JSON-document resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Vpc,
    VpnGateway,
    CustomerGateway,
    VpnConnection,
    SslVpnServer,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Vpc => "vpc",
            ResourceKind::VpnGateway => "vpn_gateway",
            ResourceKind::CustomerGateway => "customer_gateway",
            ResourceKind::VpnConnection => "vpn_connection",
            ResourceKind::SslVpnServer => "ssl_vpn_server",
        }
    }
}

/// A stored resource together with its owner.
#[derive(Debug, Clone)]
pub struct Resource<T> {
    pub account_id: String,
    pub doc: T,
}

/// A per-gateway task: a committed change waiting to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: i64,
    pub gateway_id: String,
    pub op: String,
    pub version: i64,
    /// Epoch ms at which it may be applied; `None` in manual mode.
    pub due_at: Option<i64>,
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a process crash (`synchronous=NORMAL` with WAL on SQLite).
    Process,
    /// Survives power loss (`synchronous=FULL` on SQLite).
    Full,
}
