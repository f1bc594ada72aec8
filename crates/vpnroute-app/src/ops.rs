//! The operations table: for each of the 53 Actions its name, whether it reads or writes, its
//! RAM action (`vpc:<Name>`), the resource ARNs a request names (per Alibaba's authorization
//! tables, `/work/shared/spec/ram.md` §4; `*` where Alibaba says "All Resources") and the
//! handler the RPC layer runs.
//!
//! Every operation implements [`Operation`]: a typed input, a handler on
//! [`OpCtx`] and a store transaction, a typed output. Their table row runs them through
//! [`crate::rpc`] (Alibaba parameters → input, output → reply); a console or another protocol
//! calls [`ReadOperation::handle`] or [`WriteOperation::handle`] with a typed input instead.

use serde::Serialize;
use vpnroute_domain::ids::AccountId;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, WriteTx};

use crate::actions::{connection, customer_gateway, gateway, regions, routes, ssl, vpc};
use crate::dispatch::Handler;
use crate::rpc;
use crate::state::{Ctx, OpCtx};

/// Whether an operation only reads (runs on a snapshot, no ClientToken) or changes state
/// (runs in a write transaction of the group commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A value the RPC layer parsed whose error Alibaba reports only after the resource checks
/// (e.g. `DryRun`, or a policy route's `Priority` when it identifies a route). A typed caller
/// passes `Ok(value)`.
pub type Deferred<T> = Result<T, ApiError>;

/// `DryRun=true`: everything validated, answer `DryRunOperation`.
pub fn check_dry_run(dry_run: &Deferred<bool>) -> Result<(), ApiError> {
    match dry_run {
        Ok(false) => Ok(()),
        Ok(true) => Err(ApiError::DRY_RUN),
        Err(e) => Err(e.clone()),
    }
}

/// The empty answer of a change (`{}` plus `RequestId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Done {}

/// A typed operation: its name, input and output, and the resources an input names. Its
/// handler is that of [`ReadOperation`] (runs on a snapshot) or [`WriteOperation`] (runs in a
/// write transaction).
pub trait Operation {
    /// The Action name.
    const NAME: &'static str;
    const ACCESS: Access;
    type Input;
    type Output;
    /// The ARNs of the resources `input` names.
    fn resources(input: &Self::Input, account: &AccountId) -> Vec<String>;
}

/// An operation that only reads.
pub trait ReadOperation: Operation {
    fn handle(ctx: &OpCtx<'_>, tx: &dyn ReadTx, input: Self::Input) -> Result<Self::Output, ApiError>;
}

/// An operation that changes state. A store may run it again when it retries a transaction,
/// so it must not depend on anything but its input and the transaction.
pub trait WriteOperation: Operation {
    fn handle(ctx: &OpCtx<'_>, tx: &dyn WriteTx, input: Self::Input) -> Result<Self::Output, ApiError>;
}

/// `acs:vpc:{region}:{account}:{kind}/{id}`.
pub fn arn(region: &str, account: &str, kind: &str, id: &str) -> String {
    format!("acs:vpc:{region}:{account}:{kind}/{id}")
}

/// The ARNs a request names, from its parameters: `resources(ctx)` of a table row.
pub type ResourcesFn = fn(&Ctx<'_>) -> Result<Vec<String>, ApiError>;

/// One row of the operations table.
#[derive(Clone, Copy)]
pub struct OpEntry {
    pub name: &'static str,
    pub access: Access,
    /// The RAM action a policy names, `vpc:<Name>`.
    pub ram_action: &'static str,
    /// The ARNs of the resources the request names (for RAM authorization).
    pub resources: ResourcesFn,
    /// What the RPC layer runs.
    pub handler: Handler,
}

macro_rules! typed {
    ($op:ty, Write) => {
        OpEntry {
            name: <$op as Operation>::NAME,
            access: Access::Write,
            ram_action: concat!("vpc:", stringify!($op)),
            resources: rpc::resources::<$op>,
            handler: Handler::Write(rpc::write::<$op>),
        }
    };
    ($op:ty, Read) => {
        OpEntry {
            name: <$op as Operation>::NAME,
            access: Access::Read,
            ram_action: concat!("vpc:", stringify!($op)),
            resources: rpc::resources::<$op>,
            handler: Handler::Read(rpc::read::<$op>),
        }
    };
}

use crate::actions::tags::{ListTagResources, TagResources, UnTagResources};
use crate::actions::vswitch::{
    CreateVSwitch, DeleteVSwitch, DescribeVSwitchAttributes, DescribeVSwitches, DescribeVpcAttribute,
    DescribeVpnGatewayAvailableZones, DescribeZones, ModifyVSwitchAttribute,
};
use connection::{
    CreateVpnConnection, DeleteVpnConnection, DescribeVpnConnection, DescribeVpnConnections,
    ModifyVpnConnectionAttribute,
};
use customer_gateway::{
    CreateCustomerGateway, DeleteCustomerGateway, DescribeCustomerGateway, DescribeCustomerGateways,
    ModifyCustomerGatewayAttribute,
};
use gateway::{
    CreateVpnGateway, DeleteVpnGateway, DescribeVpnGateway, DescribeVpnGateways, ModifyVpnGatewayAttribute,
    MoveVpnResourceGroup,
};
use regions::DescribeRegions;
use routes::{
    CreateVpnPbrRouteEntry, CreateVpnRouteEntry, DeleteVpnPbrRouteEntry, DeleteVpnRouteEntry,
    DescribeVpnPbrRouteEntries, DescribeVpnRouteEntries, ModifyVpnPbrRouteEntryAttribute,
    ModifyVpnPbrRouteEntryPriority, ModifyVpnPbrRouteEntryWeight, ModifyVpnRouteEntryWeight, PublishVpnRouteEntry,
};
use ssl::{CreateSslVpnServer, DeleteSslVpnServer, DescribeSslVpnServers, ModifySslVpnServer};
use vpc::{
    CreateRouteEntry, CreateVpc, DeleteRouteEntry, DeleteVpc, DescribeRouteEntryList, DescribeRouteTableList,
    DescribeVpcs, ModifyRouteTableAttributes, ModifyVpcAttribute, MoveResourceGroup,
};

/// Every operation vpnroute serves.
pub static OPERATIONS: &[OpEntry] = &[
    typed!(DescribeRegions, Read),
    typed!(CreateVpc, Write),
    typed!(DescribeVpcs, Read),
    typed!(DeleteVpc, Write),
    typed!(DescribeRouteTableList, Read),
    typed!(DescribeRouteEntryList, Read),
    typed!(CreateRouteEntry, Write),
    typed!(DeleteRouteEntry, Write),
    typed!(CreateVpnGateway, Write),
    typed!(DescribeVpnGateway, Read),
    typed!(DescribeVpnGateways, Read),
    typed!(DeleteVpnGateway, Write),
    typed!(CreateCustomerGateway, Write),
    typed!(DescribeCustomerGateway, Read),
    typed!(DescribeCustomerGateways, Read),
    typed!(DeleteCustomerGateway, Write),
    typed!(CreateVpnConnection, Write),
    typed!(DescribeVpnConnection, Read),
    typed!(DescribeVpnConnections, Read),
    typed!(DeleteVpnConnection, Write),
    typed!(CreateSslVpnServer, Write),
    typed!(DescribeSslVpnServers, Read),
    typed!(DeleteSslVpnServer, Write),
    typed!(CreateVpnRouteEntry, Write),
    typed!(DeleteVpnRouteEntry, Write),
    typed!(DescribeVpnRouteEntries, Read),
    typed!(ModifyVpnRouteEntryWeight, Write),
    typed!(PublishVpnRouteEntry, Write),
    typed!(CreateVpnPbrRouteEntry, Write),
    typed!(DeleteVpnPbrRouteEntry, Write),
    typed!(DescribeVpnPbrRouteEntries, Read),
    typed!(ModifyVpnPbrRouteEntryWeight, Write),
    typed!(ModifyVpnPbrRouteEntryPriority, Write),
    typed!(ModifyVpnPbrRouteEntryAttribute, Write),
    typed!(TagResources, Write),
    typed!(UnTagResources, Write),
    typed!(ListTagResources, Read),
    typed!(DescribeVpcAttribute, Read),
    typed!(CreateVSwitch, Write),
    typed!(DescribeVSwitchAttributes, Read),
    typed!(DescribeVSwitches, Read),
    typed!(DeleteVSwitch, Write),
    typed!(DescribeZones, Read),
    typed!(DescribeVpnGatewayAvailableZones, Read),
    typed!(ModifyVpnGatewayAttribute, Write),
    typed!(MoveVpnResourceGroup, Write),
    typed!(ModifyVpnConnectionAttribute, Write),
    typed!(ModifyCustomerGatewayAttribute, Write),
    typed!(ModifySslVpnServer, Write),
    typed!(ModifyVpcAttribute, Write),
    typed!(ModifyVSwitchAttribute, Write),
    typed!(ModifyRouteTableAttributes, Write),
    typed!(MoveResourceGroup, Write),
];

/// The table row of an Action, `None` for an unknown one (`InvalidAction.NotFound`).
pub fn operation(name: &str) -> Option<&'static OpEntry> {
    OPERATIONS.iter().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_consistent() {
        assert_eq!(OPERATIONS.len(), 53);
        for o in OPERATIONS {
            assert_eq!(o.ram_action, format!("vpc:{}", o.name));
            let reads = o.name.starts_with("Describe") || o.name.starts_with("List");
            assert_eq!(o.access == Access::Read, reads, "{}", o.name);
            assert_eq!(matches!(o.handler, Handler::Read(_)), reads, "{}", o.name);
            assert_eq!(operation(o.name).map(|r| r.name), Some(o.name));
        }
        assert!(operation("Nope").is_none());
    }
}
