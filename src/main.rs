//! `swarm-node`: the program people run. `start` runs a node in the foreground; every other
//! command is a client of a running node's control socket.
//!
//! # Layout
//!
//! | path | responsibility |
//! |---|---|
//! | `cmd/` | one file per command, dispatched by [`cmd::Command`] |
//! | `control/` | the control API: protocol, the node's server, the commands' client |
//! | `output.rs` | tables and JSON lines as Docker prints them |
//!
//! The runtime itself lives in the `swarm-actors` crate (`actors/`).

// The program people run is shell through and through (commands poll and wait, the control
// API retries with a backoff, `start` reads the clock for certificates): clippy.toml refuses
// clocks and sleeps to the deciding code in `actors/`, not here.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

mod cmd;
mod control;
mod output;
mod stack;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cmd::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
