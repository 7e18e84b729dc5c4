//! huskctl: the husk CLI. Parses the command line, runs the verb, prints `huskctl: <error>`
//! and exits 1 on failure.
#![forbid(unsafe_code)]

mod cli;
mod client;
mod commands;
mod cri_config;
mod cri_display;
mod cri_log;
mod output;
mod probe;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("huskctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `huskctl images | head` closing the pipe early is not a failure.
        Err(e) if commands::is_broken_pipe(&e) => ExitCode::SUCCESS,
        // `exec` passing on the command's exit code: nothing to print.
        Err(e) => match e.downcast_ref::<commands::Exit>() {
            Some(exit) => ExitCode::from(exit.0),
            None => {
                eprintln!("huskctl: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
