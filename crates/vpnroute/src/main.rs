//! `vpnroute`: the binary. Subcommands: `serve` (the API server), `admin` (accounts, keys and
//! operator switches on a data directory) and `explain` (the route engine's decision for a
//! packet). See the README for every flag.
//!
//! This crate is the process edge only: HTTP serving, authentication glue, the CLI and admin
//! wiring. Request flow: [`http`] (axum, introspection) → [`vpnroute_wire`] (parameters,
//! signatures, encoding) → [`auth`] (keys, signatures, timestamps; `http` then checks throttle
//! and nonce) → [`vpnroute_app`] (dispatch, the operations table, typed inputs parsed by its
//! RPC layer, handlers in one store transaction, writes grouped by its writer, gateway tasks
//! and the reconciler's store side) → [`vpnroute_reconciler`] → the data plane
//! (`vpnroute-dataplane-sim`). The load generator is a separate binary (`crates/vpnroute-bench`), not
//! linked here.

mod admin;
mod auth;
mod backend;
mod cli;
mod http;
mod limits;
mod operator;
mod sts_key;

use clap::Parser;

/// mimalloc: the request path allocates many small objects (parameters, JSON values); glibc's
/// allocator showed as ~20% of server CPU in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
