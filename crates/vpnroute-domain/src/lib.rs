//! # vpnroute-domain
//!
//! The domain layer of vpnroute: the resources of Alibaba Cloud's VPC API that VPN routes
//! refer to, the VPN route entries themselves, the error catalogue (Alibaba's codes, messages
//! and HTTP statuses), parameter validation and the route rules (conflicts, active/standby,
//! quotas, publishing). It knows nothing of HTTP or SQL: the application layer reads the
//! decoded request parameters through [`params::Params`], fetches the current state inside its
//! store transaction and passes it to the pure checks of [`rules`] and [`validate`].
//! [`status`] holds the status enums and the gateway's state machine; [`ids`] the id newtypes.
//! [`tags`] holds the user-tag rules, [`zones`] the zones and vswitch blocks, [`ipsec`] the
//! IPsec connection configurations and dual-tunnel specifications.

pub mod error;
pub mod ids;
pub mod ipsec;
pub mod model;
pub mod params;
pub mod quotas;
pub mod rules;
pub mod status;
pub mod tags;
pub mod validate;
pub mod zones;

pub use error::{ApiError, Result};
