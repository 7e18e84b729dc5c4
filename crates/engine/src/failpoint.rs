//! Named failpoints between the steps of the lifecycle operations, so that a test can stop huskd
//! exactly there: `HUSK_FAILPOINTS="sandbox.after_cni_add=abort;container.after_create=error"`,
//! read once when the engine opens. `abort` ends the process on the spot
//! (`std::process::abort`, as containerd's failpoint tests do: no destructor and no rollback
//! runs, like a SIGKILL); `error` fails the operation there, so that its rollback runs. With the
//! variable unset a failpoint costs one atomic load.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::error::{EngineError, Result};

/// The environment variable naming the active failpoints.
pub const ENV: &str = "HUSK_FAILPOINTS";

/// Every failpoint, in the order the operations pass them.
pub const ALL: &[&str] = &[
    // RunPodSandbox
    "sandbox.after_name",
    "sandbox.after_intent",
    "sandbox.after_pins",
    "sandbox.after_infra",
    "sandbox.after_cni_add",
    "sandbox.before_persist",
    // StopPodSandbox
    "sandbox.stop.after_intent",
    "sandbox.stop.after_cni_del",
    "sandbox.stop.after_unpin",
    // RemovePodSandbox
    "sandbox.remove.after_intent",
    "sandbox.remove.after_release",
    // CreateContainer
    "container.after_name",
    "container.after_intent",
    "container.after_rootfs",
    "container.after_create",
    "container.before_persist",
    // StartContainer
    "container.start.after_intent",
    "container.start.after_runtime",
    // StopContainer
    "container.stop.after_signal",
    // RemoveContainer
    "container.remove.after_intent",
    "container.remove.after_delete",
    "container.remove.after_unmount",
];

/// What a failpoint does when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `std::process::abort()`.
    Abort,
    /// The operation fails with [`EngineError::Failpoint`].
    Error,
}

/// A set of active failpoints.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Failpoints {
    points: BTreeMap<&'static str, Action>,
}

impl Failpoints {
    /// Parses `name=action` pairs separated by `;` or `,` (`action`: `abort`, `error` or `off`).
    /// Unknown names and actions are errors, so that a typo never silently tests nothing.
    pub fn parse(spec: &str) -> Result<Failpoints> {
        let mut points = BTreeMap::new();
        for item in spec
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let bad = |why: String| EngineError::Invalid(format!("{ENV}: {item:?}: {why}"));
            let (name, action) = item
                .split_once('=')
                .ok_or_else(|| bad("expected name=action".into()))?;
            let name = ALL
                .iter()
                .copied()
                .find(|n| *n == name.trim())
                .ok_or_else(|| bad(format!("unknown failpoint (known: {})", ALL.join(", "))))?;
            match action.trim() {
                "abort" => points.insert(name, Action::Abort),
                "error" => points.insert(name, Action::Error),
                "off" => points.remove(name),
                other => return Err(bad(format!("unknown action {other:?} (abort, error, off)"))),
            };
        }
        Ok(Failpoints { points })
    }

    /// What `name` does, if it is active.
    pub fn action(&self, name: &str) -> Option<Action> {
        self.points.get(name).copied()
    }

    /// Reaching `name`: aborts, fails or (inactive) passes.
    pub fn check(&self, name: &'static str) -> Result<()> {
        match self.action(name) {
            None => Ok(()),
            Some(Action::Error) => {
                tracing::warn!(failpoint = name, "failpoint: failing the operation");
                Err(EngineError::Failpoint { name })
            }
            Some(Action::Abort) => {
                tracing::error!(failpoint = name, "failpoint: aborting");
                eprintln!("husk failpoint {name}: abort");
                std::process::abort()
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

static ACTIVE: OnceLock<Failpoints> = OnceLock::new();

/// Reads [`ENV`] (once per process: later calls keep what the first one read).
pub fn init() -> Result<()> {
    if ACTIVE.get().is_some() {
        return Ok(());
    }
    let fp = match std::env::var(ENV) {
        Ok(spec) => Failpoints::parse(&spec)?,
        Err(_) => Failpoints::default(),
    };
    if !fp.is_empty() {
        tracing::warn!(failpoints = ?fp.points, "failpoints are active");
    }
    let _ = ACTIVE.set(fp);
    Ok(())
}

/// Passes failpoint `name` (see [`Failpoints::check`]).
#[inline]
pub(crate) fn hit(name: &'static str) -> Result<()> {
    debug_assert!(ALL.contains(&name), "failpoint {name} is not in ALL");
    match ACTIVE.get() {
        Some(fp) if !fp.is_empty() => fp.check(name),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_typos_are_refused() {
        let fp =
            Failpoints::parse(" sandbox.after_cni_add=abort; container.after_create = error ,")
                .unwrap();
        assert_eq!(fp.action("sandbox.after_cni_add"), Some(Action::Abort));
        assert_eq!(fp.action("container.after_create"), Some(Action::Error));
        assert_eq!(fp.action("sandbox.after_pins"), None);
        assert!(fp.check("sandbox.after_pins").is_ok());
        assert!(matches!(
            fp.check("container.after_create"),
            Err(EngineError::Failpoint {
                name: "container.after_create"
            })
        ));
        let off = Failpoints::parse("sandbox.after_pins=error;sandbox.after_pins=off").unwrap();
        assert!(off.is_empty());
        assert!(Failpoints::parse("").unwrap().is_empty());
        for bad in [
            "sandbox.after_cni=abort",
            "sandbox.after_pins",
            "sandbox.after_pins=explode",
        ] {
            let e = Failpoints::parse(bad).unwrap_err();
            assert!(e.to_string().contains(ENV), "{e}");
        }
    }

    #[test]
    fn names_are_unique() {
        let mut v = ALL.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), ALL.len());
    }
}
