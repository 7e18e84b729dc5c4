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
    // Packaging (scripts/package.sh): `huskctl __generate-docs DIR` writes shell completions and
    // man pages from the clap definitions. Hidden: not a verb of the grammar.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().is_some_and(|a| a == "__generate-docs") {
        let Some(dir) = argv.next() else {
            eprintln!("usage: huskctl __generate-docs DIR");
            return ExitCode::FAILURE;
        };
        return match generate_docs(std::path::Path::new(&dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("huskctl: writing docs into {}: {e}", dir.to_string_lossy());
                ExitCode::FAILURE
            }
        };
    }
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

/// Writes `DIR/completions/{huskctl.bash,_huskctl,huskctl.fish}` and `DIR/man/huskctl.1` plus a
/// page per verb (`huskctl-pull.1`, …).
fn generate_docs(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory as _;
    let mut cmd = cli::Cli::command();
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "huskctl.bash"),
        (clap_complete::Shell::Zsh, "_huskctl"),
        (clap_complete::Shell::Fish, "huskctl.fish"),
    ] {
        let mut f = std::fs::File::create(completions.join(file))?;
        clap_complete::generate(shell, &mut cmd, "huskctl", &mut f);
    }
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    // A fresh command: generating completions built `cmd`, adding a `help` verb to it.
    clap_mangen::generate_to(cli::Cli::command(), &man)
}
