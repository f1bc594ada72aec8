//! Resource statuses as enums, and the VPN gateway's state machine and busy rule: the one
//! place that says which status a gateway moves to when a change is committed or applied, and
//! when a change must be refused. The serde names are the strings Alibaba answers and the
//! stored documents hold, so documents written before these types existed still load.

use serde::{Deserialize, Serialize};

use crate::ApiError;

macro_rules! status_names {
    ($t:ident { $($v:ident = $s:literal),+ $(,)? }) => {
        impl $t {
            /// The name Alibaba answers (and the stored documents hold).
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }
            /// The status named exactly `s`.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($t::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A VPN gateway's status (Alibaba's `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayStatus {
    /// Created; its first task has not been applied yet.
    Provisioning,
    /// A committed change is waiting for its task.
    Updating,
    /// Everything committed is in force.
    Active,
    /// Being deleted.
    Deleting,
}

status_names!(GatewayStatus {
    Provisioning = "provisioning",
    Updating = "updating",
    Active = "active",
    Deleting = "deleting",
});

/// What a change on a busy gateway gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyPolicy {
    /// Alibaba's behaviour: the action's busy error, which clients retry on.
    Reject,
    /// The change is queued behind the running task.
    Queue,
}

impl BusyPolicy {
    /// `reject` or `queue` (the `--on-busy` flag).
    pub fn parse(s: &str) -> Result<BusyPolicy, String> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(BusyPolicy::Reject),
            "queue" => Ok(BusyPolicy::Queue),
            _ => Err(format!("invalid value '{s}': expected reject or queue")),
        }
    }
}

impl GatewayStatus {
    /// A task of the gateway is still running: Alibaba refuses changes meanwhile.
    pub fn is_busy(self) -> bool {
        matches!(self, GatewayStatus::Provisioning | GatewayStatus::Updating)
    }

    /// The busy rule: under [`BusyPolicy::Reject`] a change to a busy gateway fails with
    /// `busy` (each action family has its own code).
    pub fn check_change(self, policy: BusyPolicy, busy: ApiError) -> Result<(), ApiError> {
        if policy == BusyPolicy::Reject && self.is_busy() {
            return Err(busy);
        }
        Ok(())
    }

    /// The status after a change was committed with a delayed task: an active gateway
    /// starts updating; a provisioning one stays provisioning.
    pub fn after_task_enqueued(self) -> GatewayStatus {
        match self {
            GatewayStatus::Active => GatewayStatus::Updating,
            s => s,
        }
    }

    /// The status after a change was put into force at once (task duration zero).
    pub fn after_applied_at_once(self) -> GatewayStatus {
        GatewayStatus::Active
    }

    /// The status once the gateway's last pending task was applied.
    pub fn after_last_task(self) -> GatewayStatus {
        if self.is_busy() {
            GatewayStatus::Active
        } else {
            self
        }
    }
}

/// A gateway's billing status (Alibaba's `BusinessStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BusinessStatus {
    Normal,
    /// Overdue: changes are refused (`VpnGateway.FinancialLocked`).
    FinancialLocked,
}

status_names!(BusinessStatus {
    Normal = "Normal",
    FinancialLocked = "FinancialLocked",
});

impl BusinessStatus {
    /// Changes to a financially locked gateway are refused.
    pub fn check_change(self) -> Result<(), ApiError> {
        match self {
            BusinessStatus::Normal => Ok(()),
            BusinessStatus::FinancialLocked => Err(ApiError::GATEWAY_FINANCIAL_LOCKED),
        }
    }
}

/// A VPC's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VpcStatus {
    Pending,
    Available,
}

status_names!(VpcStatus {
    Pending = "Pending",
    Available = "Available",
});

/// An access key's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    /// Disabled: requests signed with it get `InvalidAccessKeyId.Inactive`.
    Inactive,
}

status_names!(KeyStatus {
    Active = "Active",
    Inactive = "Inactive",
});

/// An IPsec connection's binding state (`State`): `active` once created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Active,
}

status_names!(ConnectionState { Active = "active" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_stored_strings() {
        for s in [
            GatewayStatus::Provisioning,
            GatewayStatus::Updating,
            GatewayStatus::Active,
            GatewayStatus::Deleting,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(GatewayStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            serde_json::to_value(BusinessStatus::FinancialLocked).unwrap(),
            "FinancialLocked"
        );
        assert_eq!(serde_json::to_value(VpcStatus::Available).unwrap(), "Available");
        assert_eq!(serde_json::to_value(KeyStatus::Inactive).unwrap(), "Inactive");
        assert_eq!(serde_json::to_value(ConnectionState::Active).unwrap(), "active");
        assert_eq!(BusinessStatus::parse("normal"), None);
    }

    #[test]
    fn gateway_state_machine() {
        use GatewayStatus::*;
        assert_eq!(Active.after_task_enqueued(), Updating);
        assert_eq!(Provisioning.after_task_enqueued(), Provisioning);
        assert_eq!(Updating.after_applied_at_once(), Active);
        assert_eq!(Provisioning.after_last_task(), Active);
        assert_eq!(Updating.after_last_task(), Active);
        assert_eq!(Deleting.after_last_task(), Deleting);
        let busy = ApiError::TASK_CONFLICT;
        assert_eq!(
            Updating.check_change(BusyPolicy::Reject, busy.clone()),
            Err(busy.clone())
        );
        assert_eq!(
            Provisioning.check_change(BusyPolicy::Reject, busy.clone()),
            Err(busy.clone())
        );
        assert_eq!(Updating.check_change(BusyPolicy::Queue, busy.clone()), Ok(()));
        assert_eq!(Active.check_change(BusyPolicy::Reject, busy), Ok(()));
    }
}
