//! # vpnroute-domain
//!
//! The domain layer of vpnroute: the resources of Alibaba Cloud's VPC API that VPN routes
//! refer to, the VPN route entries themselves, the error catalogue (Alibaba's codes, messages
//! and HTTP statuses), parameter validation and the route rules (conflicts, active/standby,
//! quotas, publishing). It knows nothing of HTTP or SQL: actions read the decoded request
//! parameters through [`params::Params`], fetch the current state inside their store
//! transaction and pass it to the pure checks of [`rules`] and [`validate`].

pub mod error;
pub mod ids;
pub mod model;
pub mod params;
pub mod quotas;
pub mod rules;
pub mod validate;

pub use error::{ApiError, Result};
