//! The process's argv, environment and working directory from the CRI config over the image
//! config (Docker's override rules, as containerd applies them).

use super::error::SpecError;
use super::input::{ContainerSettings, ImageConfig};

/// The default `PATH` when neither the image nor the config sets one.
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv: `command` replaces the image Entrypoint (and drops the image Cmd); `args` replace the
/// image Cmd. An image Entrypoint of `[""]` means none.
pub(crate) fn args(c: &ContainerSettings, image: &ImageConfig) -> Result<Vec<String>, SpecError> {
    let mut command = c.command.clone();
    let mut args = c.args.clone();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint.clone().unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    command.extend(args);
    Ok(command)
}

/// Sets or replaces `entry`'s key in `env`, keeping the position of the first occurrence.
/// An entry without `=` removes the key (Docker's convention for image env).
fn merge(env: &mut Vec<String>, entry: &str) {
    let (key, has_value) = match entry.split_once('=') {
        Some((k, _)) => (k, true),
        None => (entry, false),
    };
    let pos = env
        .iter()
        .position(|e| e.split_once('=').map(|(k, _)| k) == Some(key));
    match (pos, has_value) {
        (Some(i), true) => env[i] = entry.to_string(),
        (Some(i), false) => {
            env.remove(i);
        }
        (None, true) => env.push(entry.to_string()),
        (None, false) => {}
    }
}

/// The environment: default `PATH`, `TERM=xterm` with a tty, `HOSTNAME`, then the image env,
/// then the config envs, each overriding earlier values by key.
pub(crate) fn env(c: &ContainerSettings, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH.to_string()];
    if c.tty {
        env.push("TERM=xterm".to_string());
    }
    merge(&mut env, &format!("HOSTNAME={hostname}"));
    for e in image.env.iter().flatten() {
        merge(&mut env, e);
    }
    for e in &c.envs {
        merge(&mut env, &format!("{}={}", e.key, e.value));
    }
    env
}

/// The working directory: the config's, else the image's, else `/`.
pub(crate) fn cwd(c: &ContainerSettings, image: &ImageConfig) -> String {
    if !c.working_dir.is_empty() {
        return c.working_dir.clone();
    }
    match image.working_dir.as_deref() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::input::EnvVar;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_combinations() {
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
            ImageConfig,
            Option<&'a [&'a str]>,
        );
        let cases: Vec<Case> = vec![
            (
                "image only",
                &[],
                &[],
                image(Some(&["/ep"]), Some(&["c1"])),
                Some(&["/ep", "c1"]),
            ),
            (
                "cmd only image",
                &[],
                &[],
                image(None, Some(&["sh", "-c", "x"])),
                Some(&["sh", "-c", "x"]),
            ),
            (
                "args replace cmd",
                &[],
                &["a1"],
                image(Some(&["/ep"]), Some(&["c1"])),
                Some(&["/ep", "a1"]),
            ),
            (
                "command drops entrypoint and cmd",
                &["/bin/cmd"],
                &[],
                image(Some(&["/ep"]), Some(&["c1"])),
                Some(&["/bin/cmd"]),
            ),
            (
                "command and args",
                &["/bin/cmd"],
                &["a1", "a2"],
                image(Some(&["/ep"]), Some(&["c1"])),
                Some(&["/bin/cmd", "a1", "a2"]),
            ),
            (
                "empty-string entrypoint is none",
                &[],
                &[],
                image(Some(&[""]), Some(&["c1"])),
                Some(&["c1"]),
            ),
            (
                "args without any image",
                &[],
                &["/bin/true"],
                image(None, None),
                Some(&["/bin/true"]),
            ),
            ("nothing at all", &[], &[], image(None, None), None),
            (
                "empty-string entrypoint and no cmd",
                &[],
                &[],
                image(Some(&[""]), None),
                None,
            ),
        ];
        for (name, command, a, img, want) in cases {
            let c = ContainerSettings {
                command: v(command),
                args: v(a),
                ..Default::default()
            };
            match (args(&c, &img), want) {
                (Ok(got), Some(want)) => assert_eq!(got, v(want), "{name}"),
                (Err(SpecError::NoCommand), None) => {}
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_merge() {
        let img = ImageConfig {
            env: Some(v(&["PATH=/img/bin", "A=image", "B=image", "UNSET_ME"])),
            ..Default::default()
        };
        let c = ContainerSettings {
            envs: vec![
                EnvVar {
                    key: "B".into(),
                    value: "config".into(),
                },
                EnvVar {
                    key: "C".into(),
                    value: "x=y".into(),
                },
                EnvVar {
                    key: "C".into(),
                    value: "last".into(),
                },
            ],
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            env(&c, &img, "pod-a"),
            v(&[
                "PATH=/img/bin",
                "TERM=xterm",
                "HOSTNAME=pod-a",
                "A=image",
                "B=config",
                "C=last"
            ])
        );
    }

    #[test]
    fn env_defaults_and_hostname_override() {
        let img = ImageConfig {
            env: Some(v(&["HOSTNAME=from-image"])),
            ..Default::default()
        };
        assert_eq!(
            env(&ContainerSettings::default(), &img, "pod"),
            v(&[DEFAULT_PATH, "HOSTNAME=from-image"])
        );
        assert_eq!(
            env(
                &ContainerSettings::default(),
                &ImageConfig::default(),
                "pod"
            ),
            v(&[DEFAULT_PATH, "HOSTNAME=pod"])
        );
    }

    #[test]
    fn cwd_precedence() {
        let img = ImageConfig {
            working_dir: Some("/img".into()),
            ..Default::default()
        };
        let mut c = ContainerSettings::default();
        assert_eq!(cwd(&c, &ImageConfig::default()), "/");
        assert_eq!(cwd(&c, &img), "/img");
        c.working_dir = "/cfg".into();
        assert_eq!(cwd(&c, &img), "/cfg");
    }
}
