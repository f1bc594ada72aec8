//! `vpnroute-bench`: the load generator behind `scripts/bench`, a binary of its own so the
//! server does not link it. [`api`] holds the flags, the setup calls and the throughput
//! scenarios (`health`, `describe`, `create-delete`); [`scale`] the growth scenarios
//! (`scale-routes`, `scale-gateways`). Results and how to read them: BENCHMARKS.md.

mod api;
mod scale;

use clap::Parser;

/// mimalloc, as in the server: the generator shares the machine with the server, and its
/// allocation cost is load the server does not get.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "vpnroute-bench",
    version,
    about = "Load generator: signed requests against a running vpnroute server; throughput and latency"
)]
struct Cli {
    #[command(flatten)]
    args: api::BenchArgs,
}

fn main() -> std::process::ExitCode {
    match api::run(Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
