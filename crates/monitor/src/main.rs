//! `husk-monitor --config <monitor.json>`: one small synchronous process per container that
//! outlives huskd (holds the container's stdio, writes CRI logs, records the exit).
#![forbid(unsafe_code)]

mod modes;
mod server;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.as_slice() {
        [flag] if flag == "--version" => {
            println!("husk-monitor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        [flag, path] if flag == "--config" => server::run(Path::new(path)),
        [mode, rest @ ..] if mode == "exec-sync" => modes::exec_sync(rest),
        [mode] if mode == "pause" => modes::pause(),
        [mode, flag, pin] if mode == "pause" && flag == "--userns" => {
            // The init of a user-namespaced pod's PID namespace: that namespace must belong to
            // the pod's user namespace, or the containers could not mount their /proc.
            if let Err(e) = husk_sys::ns::join_user(Path::new(pin)) {
                eprintln!("husk-monitor pause: joining the user namespace {pin:?}: {e}");
                return ExitCode::from(1);
            }
            modes::pause()
        }
        [mode] if mode == "userns" => husk_monitor::userns::run(),
        _ => {
            eprintln!(
                "usage: husk-monitor --config <monitor.json> | exec-sync ... | pause [--userns PIN] | userns | --version"
            );
            ExitCode::from(2)
        }
    }
}
