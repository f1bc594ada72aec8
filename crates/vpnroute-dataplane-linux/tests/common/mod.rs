//! The lab lives in the library (`vpnroute_dataplane_linux::lab`): benchmarks use it too.
pub use vpnroute_dataplane_linux::lab::*;
