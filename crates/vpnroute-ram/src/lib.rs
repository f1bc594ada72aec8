//! RAM authorization for vpnroute, with no HTTP and no SQL: the policy language
//! ([`policy`], [`condition`], [`wildcard`]), evaluation for a principal ([`mod@authorize`]),
//! the system policies ([`system`]), principals and ARNs ([`principal`]), the request context
//! ([`context`]), STS session tokens ([`token`]) and AssumeRole's parameter rules ([`sts`]).
//!
//! The server authenticates a request, builds a [`Principal`] and a [`RequestContext`], loads
//! the policies in force for the principal and asks [`authorize::authorize`] about the
//! operation's RAM action and resource ARNs.

pub mod authorize;
pub mod condition;
pub mod context;
pub mod directory;
pub mod errors;
pub mod identity;
pub mod policy;
pub mod principal;
pub mod ram_api;
pub mod sts;
pub mod sts_api;
pub mod system;
#[cfg(test)]
mod testkit;
pub mod token;
pub mod wildcard;

pub use authorize::{
    authorize, AccessDeniedDetail, AttachedPolicy, Decision, Outcome, PolicyKind, Request, TrustPolicy,
};
pub use context::RequestContext;
pub use policy::{PolicyDocument, PolicyError};
pub use principal::Principal;
