//! `vpnroute`: the binary. Subcommands: `serve` (the API server), `admin` (accounts, keys and
//! operator switches on a data directory) and `explain` (the route engine's decision for a
//! packet). See the README for every flag.
//!
//! Request flow: [`http`] (axum, introspection) → [`vpnroute_wire`] (parameters, signatures,
//! encoding) → [`auth`] (keys, signatures, timestamps; `http` then checks throttle and nonce)
//! → [`dispatch`] (Action → handler) → [`actions`] (validation with [`vpnroute_domain`], one
//! store transaction each; writes grouped by [`writer`]) → [`tasks`] (asynchronous
//! application per gateway) → [`engines`] (route engine). The load generator is a separate
//! binary (`crates/vpnroute-bench`), not linked here.

mod actions;
mod admin;
mod app;
mod auth;
mod cli;
mod dispatch;
mod engines;
mod http;
mod reply;
mod tasks;
mod util;
mod writer;

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
