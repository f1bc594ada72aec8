//! # vpnroute-domain
//!
//! The domain layer of vpnroute: the resources of Alibaba Cloud's VPC API that VPN routes
//! refer to, the VPN route entries themselves, the error catalogue (Alibaba's codes, messages
//! and HTTP statuses), parameter validation and the route rules (conflicts, active/standby,
//! quotas, publishing). It knows nothing of HTTP or SQL: the wire layer hands it typed
//! parameters, and the store hands it the current state inside a transaction (the rules take
//! the routes they judge as slices). [`status`] holds the status enums and the gateway's
//! state machine; [`ids`] the id newtypes.

pub mod error;
pub mod ids;
pub mod model;
pub mod params;
pub mod quotas;
pub mod rules;
pub mod status;
pub mod validate;

pub use error::{ApiError, Result};
