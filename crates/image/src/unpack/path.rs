//! Layer entry names: lexical cleaning as if rooted at `/` (so nothing climbs above the layer
//! root before the kernel even sees it) and classification of OCI whiteout names.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The OCI whiteout prefix: `.wh.name` deletes `name` from the lower layers.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of whiteout metadata names (aufs `.wh..wh.plnk`, `.wh..wh.aufs`, …).
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
pub(crate) const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// A path relative to a layer root with no empty, `.` or `..` components.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RelPath(Vec<OsString>);

impl RelPath {
    /// The layer root itself.
    pub(crate) fn root() -> RelPath {
        RelPath(Vec::new())
    }

    /// Cleans a raw tar name lexically as if it were rooted at `/`: `/abs/x` → `abs/x`,
    /// `../../etc/passwd` → `etc/passwd`, `a/../../b` → `b`, `./` → the root.
    pub(crate) fn clean(raw: &[u8]) -> RelPath {
        let mut comps: Vec<OsString> = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    comps.pop();
                }
                c => comps.push(OsStr::from_bytes(c).to_os_string()),
            }
        }
        RelPath(comps)
    }

    pub(crate) fn from_components(comps: &[OsString]) -> RelPath {
        RelPath(comps.to_vec())
    }

    pub(crate) fn components(&self) -> &[OsString] {
        &self.0
    }

    /// The final component (`None` for the root).
    pub(crate) fn name(&self) -> Option<&OsStr> {
        self.0.last().map(OsString::as_os_str)
    }

    /// Everything but the final component (the root for the root).
    pub(crate) fn parent(&self) -> RelPath {
        let n = self.0.len().saturating_sub(1);
        RelPath(self.0[..n].to_vec())
    }

    /// The first `n` components.
    pub(crate) fn prefix(&self, n: usize) -> RelPath {
        RelPath(self.0[..n.min(self.0.len())].to_vec())
    }

    pub(crate) fn join(&self, name: &OsStr) -> RelPath {
        let mut comps = self.0.clone();
        comps.push(name.to_os_string());
        RelPath(comps)
    }

    /// The path to hand to `*at` syscalls relative to the layer root (`.` for the root).
    pub(crate) fn to_path(&self) -> PathBuf {
        if self.0.is_empty() {
            return PathBuf::from(".");
        }
        self.0.iter().collect()
    }

    /// The path as shown in errors: absolute within the layer, e.g. `/usr/bin/env`.
    pub(crate) fn display(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        p.extend(self.0.iter());
        p
    }
}

/// What an entry's final name means for overlay whiteout handling.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary name.
    No,
    /// `.wh..wh..opq`: the parent directory hides its lower-layer content.
    Opaque,
    /// Another `.wh..wh.*` name (aufs metadata): skipped.
    Meta,
    /// `.wh.name`: `name` is deleted from the lower layers.
    Delete(&'a OsStr),
    /// `.wh.`, `.wh..` or `.wh...`: would whiteout the directory itself or its parent.
    Invalid,
}

/// Classifies a final path component.
pub(crate) fn classify(name: &OsStr) -> Whiteout<'_> {
    let b = name.as_bytes();
    if b == WHITEOUT_OPAQUE {
        return Whiteout::Opaque;
    }
    if b.starts_with(WHITEOUT_META_PREFIX) {
        return Whiteout::Meta;
    }
    match b.strip_prefix(WHITEOUT_PREFIX) {
        None => Whiteout::No,
        Some(b"" | b"." | b"..") => Whiteout::Invalid,
        Some(rest) => Whiteout::Delete(OsStr::from_bytes(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        RelPath::clean(s.as_bytes())
            .display()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn unpack_clean_contains_everything() {
        assert_eq!(clean("/abs/x"), "/abs/x");
        assert_eq!(clean("../../etc/passwd"), "/etc/passwd");
        assert_eq!(clean("a/../../b"), "/b");
        assert_eq!(clean("./a//b/./c/"), "/a/b/c");
        assert_eq!(clean("."), "/");
        assert_eq!(clean("/"), "/");
        assert_eq!(clean(""), "/");
        assert_eq!(clean("a/b/../.."), "/");
        assert!(RelPath::clean(b"..").components().is_empty());
        assert_eq!(RelPath::clean(b"a/b").to_path(), PathBuf::from("a/b"));
        assert_eq!(RelPath::root().to_path(), PathBuf::from("."));
    }

    #[test]
    fn unpack_classify_whiteouts() {
        fn c(s: &str) -> Whiteout<'_> {
            classify(OsStr::new(s))
        }
        assert_eq!(c("foo"), Whiteout::No);
        assert_eq!(c(".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(c(".wh..wh.plnk"), Whiteout::Meta);
        assert_eq!(c(".wh.foo"), Whiteout::Delete(OsStr::new("foo")));
        assert_eq!(c(".wh..hidden"), Whiteout::Delete(OsStr::new(".hidden")));
        assert_eq!(c(".wh."), Whiteout::Invalid);
        assert_eq!(c(".wh.."), Whiteout::Invalid);
        assert_eq!(c(".wh..."), Whiteout::Invalid);
        assert_eq!(c(".whfoo"), Whiteout::No);
    }
}
