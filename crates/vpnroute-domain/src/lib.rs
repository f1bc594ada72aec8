//! # vpnroute-domain
//!
//! The domain layer of vpnroute: the resources of Alibaba Cloud's VPC API that VPN routes
//! refer to, the VPN route entries themselves, the error catalogue (Alibaba's codes, messages
//! and HTTP statuses), parameter validation and the route rules (conflicts, active/standby,
//! quotas, publishing). It knows nothing of HTTP or SQL: the wire layer hands it typed
//! parameters, and the store hands it the current state inside a transaction through the
//! [`rules::RouteView`] trait.

pub mod error;
pub mod ids;
pub mod ipsec;
pub mod model;
pub mod params;
pub mod quotas;
pub mod rules;
pub mod tags;
pub mod validate;
pub mod zones;

pub use error::{ApiError, Result};
