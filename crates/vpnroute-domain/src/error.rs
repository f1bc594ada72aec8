//! The error catalogue: every error vpnroute returns, with Alibaba's code, message and HTTP
//! status. Codes and messages are copied from Alibaba's API reference pages (see
//! `docs/compatibility.md` for the trigger of each one); a few are vpnroute's own choice
//! where Alibaba documents none, and are marked so there.

use std::borrow::Cow;
use std::fmt;

/// An error as the API reports it: code, message and HTTP status; a RAM denial also carries
/// its `AccessDeniedDetail` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    pub status: u16,
    pub access_denied_detail: Option<Box<serde_json::Value>>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub const fn new_static(code: &'static str, message: &'static str, status: u16) -> Self {
        ApiError {
            code: Cow::Borrowed(code),
            message: Cow::Borrowed(message),
            status,
            access_denied_detail: None,
        }
    }

    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>, status: u16) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
            status,
            access_denied_detail: None,
        }
    }

    /// The same error with an `AccessDeniedDetail` (the 403 of a RAM denial).
    pub fn with_access_denied_detail(mut self, detail: serde_json::Value) -> Self {
        self.access_denied_detail = Some(Box::new(detail));
        self
    }

    // ---- gateway-level (protocol and authentication) errors ----

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
            400,
        )
    }

    pub fn invalid_parameter(name: &str) -> Self {
        Self::new(
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid."),
            400,
        )
    }

    pub fn invalid_parameter_msg(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new("InvalidParameter", message, 400)
    }

    pub const INVALID_ACCESS_KEY_NOT_FOUND: Self =
        Self::new_static("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404);
    pub const INVALID_ACCESS_KEY_INACTIVE: Self =
        Self::new_static("InvalidAccessKeyId.Inactive", "Specified access key is disabled.", 400);
    pub const INCOMPLETE_SIGNATURE: Self = Self::new_static(
        "IncompleteSignature",
        "The request signature does not conform to Aliyun standards.",
        400,
    );
    pub const TIMESTAMP_EXPIRED: Self = Self::new_static(
        "InvalidTimeStamp.Expired",
        "Specified time stamp or date value is expired.",
        400,
    );
    pub const TIMESTAMP_FORMAT: Self = Self::new_static(
        "InvalidTimeStamp.Format",
        "Specified time stamp or date value is not well formatted.",
        400,
    );
    pub const NONCE_USED: Self =
        Self::new_static("SignatureNonceUsed", "Specified signature nonce was used already.", 400);
    pub const INVALID_VERSION: Self =
        Self::new_static("InvalidVersion", "Specified parameter Version is not valid.", 400);
    pub const INVALID_ACTION: Self = Self::new_static(
        "InvalidAction.NotFound",
        "Specified api is not found, please check your url and method.",
        404,
    );
    pub const UNSUPPORTED_SIGNATURE_METHOD: Self = Self::new_static(
        "InvalidSignatureMethod",
        "Specified signature method is not supported.",
        400,
    );
    pub const INTERNAL_ERROR: Self = Self::new_static(
        "InternalError",
        "The request processing has failed due to some unknown error, exception or failure.",
        400,
    );
    /// A temporary failure: the store stayed busy through every retry, or the data
    /// directory is full. Nothing of the request was written; the client retries.
    pub const SERVICE_UNAVAILABLE: Self = Self::new_static(
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
        503,
    );
    pub const THROTTLING_USER: Self =
        Self::new_static("Throttling.User", "Request was denied due to user flow control.", 400);
    pub const IDEMPOTENT_MISMATCH: Self = Self::new_static(
        "IdempotentParameterMismatch",
        "The request uses the same client token as a previous, but non-identical request.",
        400,
    );
    pub const DRY_RUN: Self = Self::new_static(
        "DryRunOperation",
        "Request validation has been passed with DryRun flag set.",
        400,
    );
    pub const UNSUPPORTED_HTTP_METHOD: Self =
        Self::new_static("UnsupportedHTTPMethod", "This http method is not supported.", 403);
    pub const FORBIDDEN: Self = Self::new_static(
        "Forbidden",
        "User not authorized to operate on the specified resource.",
        403,
    );

    pub fn signature_mismatch(string_to_sign: &str) -> Self {
        Self::new(
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
            400,
        )
    }

    // ---- resource not found ----

    pub const REGION_NOT_FOUND: Self = Self::new_static(
        "InvalidRegionId.NotFound",
        "The specified RegionId does not exist.",
        404,
    );
    pub const VPC_NOT_FOUND: Self =
        Self::new_static("InvalidVpcId.NotFound", "The specified VpcId does not exist.", 404);
    pub const VSWITCH_NOT_FOUND: Self = Self::new_static(
        "InvalidVSwitchId.NotFound",
        "The specified VSwitchId does not exist.",
        404,
    );
    pub const GATEWAY_NOT_FOUND: Self = Self::new_static(
        "InvalidVpnGatewayInstanceId.NotFound",
        "The specified vpn gateway instance id does not exist.",
        404,
    );
    pub const CUSTOMER_GATEWAY_NOT_FOUND: Self = Self::new_static(
        "InvalidCustomerGatewayInstanceId.NotFound",
        "The specified customer gateway instance id does not exist.",
        404,
    );
    pub const CONNECTION_NOT_FOUND: Self = Self::new_static(
        "InvalidVpnConnectionInstanceId.NotFound",
        "The specified vpn connection instance id does not exist.",
        404,
    );
    pub const SSL_SERVER_NOT_FOUND: Self = Self::new_static(
        "InvalidSslVpnServerId.NotFound",
        "The specified ssl vpn server id does not exist.",
        404,
    );
    pub const ROUTE_TABLE_NOT_FOUND: Self = Self::new_static(
        "InvalidRouteTableId.NotFound",
        "The specified route table does not exist.",
        404,
    );
    pub const ROUTE_ENTRY_NOT_FOUND: Self = Self::new_static(
        "InvalidRouteEntry.NotFound",
        "The specified route entry does not exist.",
        404,
    );

    // ---- VPN route errors (seed pages) ----

    pub const QUOTA_FULL: Self = Self::new_static("Resource.QuotaFull", "The quota of resource is full", 400);
    pub const GATEWAY_CONFIGURING: Self =
        Self::new_static("VpnGateway.Configuring", "The specified service is configuring.", 400);
    pub const GATEWAY_FINANCIAL_LOCKED: Self = Self::new_static(
        "VpnGateway.FinancialLocked",
        "The specified service is financial locked.",
        400,
    );
    pub const ROUTE_ALREADY_EXISTS: Self = Self::new_static(
        "VpnRouteEntry.AlreadyExists",
        "The specified route entry is already exist.",
        400,
    );
    pub const ROUTE_CONFLICT: Self =
        Self::new_static("VpnRouteEntry.Conflict", "The specified route entry has conflict.", 400);
    pub const ROUTE_CONFLICT_SSL: Self = Self::new_static(
        "VpnRouteEntry.ConflictSSL",
        "The specified route entry has conflict with SSL client.",
        400,
    );
    pub const ROUTE_BACKUP: Self =
        Self::new_static("VpnRouteEntry.BackupRoute", "Validate backup route entry failed.", 400);
    pub const ROUTE_INVALID_WEIGHT: Self =
        Self::new_static("VpnRouteEntry.InvalidWeight", "Invalid route entry weight value.", 400);
    pub const NEXT_HOP_NOT_FOUND: Self =
        Self::new_static("InvalidNextHop.NotFound", "The specified NextHop does not exist.", 400);
    pub const ILLEGAL_ROUTE_DEST: Self =
        Self::new_static("IllegalParam.RouteDest", "The specified RouteDest is invalid", 400);
    pub const ILLEGAL_ROUTE_SOURCE: Self =
        Self::new_static("IllegalParam.RouteSource", "The specified RouteSource is invalid", 400);
    pub const VPC_ROUTE_CONFLICT_VPN: Self = Self::new_static(
        "OperationFailed.RouteConflict",
        "Operation failed because there is already a route in VPC route table to another VPN on the same network block.",
        400,
    );
    pub const VPC_ROUTE_CONFLICT_OTHER: Self = Self::new_static(
        "OperationFailed.RouteConflict",
        "Operation failed because there is already a route in VPC route table to a non-RI and non-VPN next hop on the same network block.",
        400,
    );
    pub const INVALID_CIDR_BLOCK: Self = Self::new_static(
        "OperationFailed.InvalidCidrBlock",
        "Operation failed because the specified network block is invalid.",
        400,
    );
    pub const VPC_ROUTE_QUOTA: Self = Self::new_static(
        "QuotaExceeded.VpnRouteEntry",
        "The number of route entries to the VPN gateway in the VPC routing table has reached the quota limit.",
        400,
    );
    pub const TASK_CONFLICT: Self = Self::new_static(
        "TaskConflict",
        "The operation is too frequent, please wait a moment and try again.",
        400,
    );
    pub const VPN_TASK_CONFLICT: Self = Self::new_static("VpnTask.CONFLICT", "Vpn task has conflict.", 400);
    pub const INCORRECT_VPC_STATUS: Self = Self::new_static(
        "IncorrectVpcStatus",
        "Current VPC status does not support this operation.",
        400,
    );
    pub const PBR_PRIORITY_NOT_SUPPORTED: Self = Self::new_static(
        "VpnPbrRouteEntryPriority.NotSupport",
        "Current version of the VPN does not support setting custom pbr route entry priority.",
        400,
    );

    // ---- resource lifecycle (vpnroute's choices where Alibaba's pages are silent) ----

    pub const INVALID_DESCRIPTION: Self = Self::new_static(
        "InvalidDescription.Malformed",
        "Specified description is not valid.",
        400,
    );
    pub const INVALID_NAME: Self = Self::new_static("InvalidName.Malformed", "Specified name is not valid.", 400);
    pub const INVALID_VPC_CIDR: Self =
        Self::new_static("InvalidCidrBlock.Malformed", "Specified CIDR block is not valid.", 400);
    pub const INCORRECT_GATEWAY_STATUS: Self = Self::new_static(
        "IncorrectStatus.VpnGateway",
        "The current status of the VPN gateway does not support this operation.",
        400,
    );
    pub const DEPENDENCY_VPN_GATEWAY: Self = Self::new_static(
        "DependencyViolation.VpnGateway",
        "The specified VPC still has VPN gateways.",
        400,
    );
    pub const DEPENDENCY_VPN_CONNECTION: Self = Self::new_static(
        "DependencyViolation.VpnConnection",
        "The specified resource is still used by VPN connections.",
        400,
    );
    pub const DEPENDENCY_SSL_SERVER: Self = Self::new_static(
        "DependencyViolation.SslVpnServer",
        "The specified VPN gateway still has an SSL-VPN server.",
        400,
    );
    pub const DEPENDENCY_ROUTE_ENTRY: Self = Self::new_static(
        "DependencyViolation.VpnRouteEntry",
        "The specified resource is still used by VPN route entries.",
        400,
    );
    pub const DEPENDENCY_ROUTE_TABLE_ENTRY: Self = Self::new_static(
        "DependencyViolation.RouteEntry",
        "The specified VPC still has custom route entries.",
        400,
    );
    pub const SSL_NOT_ENABLED: Self = Self::new_static(
        "VpnGateway.SslVpnDisabled",
        "The SSL-VPN function of the specified VPN gateway is not enabled.",
        400,
    );
    pub const SSL_SERVER_EXISTS: Self = Self::new_static(
        "SslVpnServer.AlreadyExists",
        "The specified VPN gateway already has an SSL-VPN server.",
        400,
    );
    pub const SSL_CLIENT_POOL_CONFLICT: Self = Self::new_static(
        "SslVpnServer.ClientIpPoolConflict",
        "The client IP pool conflicts with the local subnet, the VPC CIDR block or a VPN route.",
        400,
    );
    pub const INVALID_IP_ADDRESS: Self =
        Self::new_static("InvalidIpAddress", "The specified IpAddress is invalid.", 400);
    pub const CUSTOMER_GATEWAY_IP_EXISTS: Self = Self::new_static(
        "CustomerGateway.IpAddressAlreadyExists",
        "A customer gateway with the specified IP address already exists.",
        400,
    );
    pub const ROUTE_ENTRY_CONFLICT_DUPLICATED: Self = Self::new_static(
        "RouteEntryConflict.Duplicated",
        "Specified CIDR block already exists in the route table.",
        400,
    );
    pub const INVALID_NEXT_HOP_TYPE: Self =
        Self::new_static("InvalidNextHopType", "Specified next hop type is not valid.", 400);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parameter_names_the_parameter() {
        let e = ApiError::missing_parameter("VpnGatewayId");
        assert_eq!(e.code, "MissingParameter");
        assert!(e.message.contains("\"VpnGatewayId\""));
        assert_eq!(e.status, 400);
    }

    #[test]
    fn seed_statuses() {
        assert_eq!(ApiError::GATEWAY_NOT_FOUND.status, 404);
        assert_eq!(ApiError::FORBIDDEN.status, 403);
        assert_eq!(ApiError::ROUTE_CONFLICT_SSL.status, 400);
    }
}
