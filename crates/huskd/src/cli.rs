//! huskd's subcommands and `--version`: `config default`, `config check [FILE]`, the version
//! with the git commit and the runtime handlers found, and (hidden, for packaging) shell
//! completions and man pages generated from the clap definitions.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use clap::Subcommand;

use crate::config::{Config, DEFAULT_CONFIG, Overrides};
use crate::config_cmd;

/// The git commit huskd was built from (`build.rs`), or `unknown`.
pub const GIT_COMMIT: &str = env!("HUSK_GIT_COMMIT");

/// What huskd does instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the default configuration or check a configuration file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write shell completions and man pages into DIR (used by scripts/package.sh)
    #[command(name = "__generate-docs", hide = true)]
    GenerateDocs {
        /// Output directory: completions/ and man/ are made in it
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the full default configuration, every key with a comment
    Default,
    /// Check a configuration file: every unknown key and bad value, with its line
    Check {
        /// The file [default: the --config file, else /etc/husk/config.toml]
        file: Option<PathBuf>,
    },
}

/// Runs `--version` or a subcommand; the process's exit code.
pub fn run(
    command: Option<Command>,
    version: bool,
    config: Option<&Path>,
    clap_command: fn() -> clap::Command,
) -> i32 {
    if version {
        print!("{}", version_text(config));
        return 0;
    }
    match command {
        None => 0,
        Some(Command::Config(ConfigCommand::Default)) => {
            config_cmd::print_default();
            0
        }
        Some(Command::Config(ConfigCommand::Check { file })) => {
            let explicit = file.is_some() || config.is_some();
            let path = file
                .or_else(|| config.map(Path::to_path_buf))
                .unwrap_or_else(|| DEFAULT_CONFIG.into());
            config_cmd::run_check(&path, explicit)
        }
        Some(Command::GenerateDocs { dir }) => {
            let cmd = clap_command().version(env!("CARGO_PKG_VERSION"));
            match generate_docs(cmd, "8", &dir) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("huskd: writing docs into {}: {e}", dir.display());
                    1
                }
            }
        }
    }
}

/// `huskd --version`: the version and commit, then each runtime handler of the config (the
/// `--config` file, else the default file if it exists, else the defaults) with its binary and
/// the first line of its `--version`.
pub fn version_text(config: Option<&Path>) -> String {
    let mut out = format!(
        "huskd {} (commit {GIT_COMMIT})\n",
        env!("CARGO_PKG_VERSION")
    );
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    let (cfg, source) = match Config::load(path, config.is_some(), &Overrides::default()) {
        Ok(c) if path.exists() => (c, path.display().to_string()),
        Ok(c) => (c, "the defaults".to_string()),
        Err(e) => (
            Config::default(),
            format!("the defaults; {}: {e:#}", path.display()),
        ),
    };
    let default = cfg.default_runtime_name();
    out.push_str(&format!("runtime handlers ({source}):\n"));
    for (name, rt) in &cfg.runtimes {
        let mark = if *name == default { " (default)" } else { "" };
        let found = match crate::config::find_binary(&rt.path) {
            Some(bin) => format!("{}: {}", bin.display(), first_version_line(&bin)),
            None => format!("{}: not found", rt.path),
        };
        out.push_str(&format!("  {name}{mark}: {found}\n"));
    }
    out
}

fn first_version_line(bin: &Path) -> String {
    match Process::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        Ok(o) => format!("--version failed ({})", o.status),
        Err(e) => format!("cannot run: {e}"),
    }
}

/// Writes `<dir>/completions/{NAME.bash,_NAME,NAME.fish}` and `<dir>/man/NAME.SECTION` plus a
/// page per visible subcommand (`NAME-SUB.SECTION`).
pub fn generate_docs(mut cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    let name = cmd.get_name().to_string();
    // Generating completions builds `cmd` (adding `help`): the pages start from a fresh copy.
    let mut pages = cmd.clone().disable_help_subcommand(true);
    let comp = dir.join("completions");
    std::fs::create_dir_all(&comp)?;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut f = std::fs::File::create(comp.join(file))?;
        clap_complete::generate(shell, &mut cmd, &name, &mut f);
    }
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    pages.build();
    man_pages(&pages, section, &man)
}

/// The page of `cmd` (named by its display name: `huskd`, `huskd-config-check`) and its
/// visible subcommands'.
fn man_pages(cmd: &clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut f = std::fs::File::create(dir.join(page.get_filename()))?;
    page.render(&mut f)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, section, dir)?;
    }
    Ok(())
}
