//! What `ps` and `pods` share: `--label KEY=VALUE` parsing, `--name` patterns, newest-first
//! order and `--last`/`--latest`.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use clap::Args;
use regex::Regex;

/// Listing flags common to `ps` and `pods`.
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Only those with this label (repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Only print IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Only the N most recently created (0: all)
    #[arg(short = 'n', long, value_name = "N", default_value_t = 0)]
    pub last: usize,
    /// Only the most recently created
    #[arg(short, long)]
    pub latest: bool,
}

impl ListArgs {
    /// How many items to keep, newest first; `None` for all.
    pub fn keep(&self) -> Option<usize> {
        if self.latest {
            Some(1)
        } else {
            (self.last > 0).then_some(self.last)
        }
    }
}

/// `--label a=b --label c=` → `{a: b, c: ""}`.
pub fn parse_labels(labels: &[String]) -> anyhow::Result<HashMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid --label {l:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// A `--name`/`--namespace` regular expression (unanchored, as crictl's).
pub fn pattern(flag: &str, re: Option<&str>) -> anyhow::Result<Option<Regex>> {
    re.filter(|r| !r.is_empty())
        .map(|r| Regex::new(r).with_context(|| format!("invalid {flag} pattern {r:?}")))
        .transpose()
}

/// Whether `text` matches `re` (no pattern matches everything).
pub fn matches(re: Option<&Regex>, text: &str) -> bool {
    re.is_none_or(|re| re.is_match(text))
}

/// Sorts newest first and keeps what `--last`/`--latest` ask for.
pub fn newest_first<T>(items: &mut Vec<T>, created: impl Fn(&T) -> i64, keep: Option<usize>) {
    items.sort_by_key(|i| std::cmp::Reverse(created(i)));
    if let Some(n) = keep {
        items.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let l = |v: &[&str]| parse_labels(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let got = l(&["app=web", "tier=", "x=a=b"]).expect("parses");
        assert_eq!(got.get("app").map(String::as_str), Some("web"));
        assert_eq!(got.get("tier").map(String::as_str), Some(""));
        assert_eq!(got.get("x").map(String::as_str), Some("a=b"));
        assert!(l(&["novalue"]).is_err());
        assert!(l(&["=v"]).is_err());
    }

    #[test]
    fn patterns() {
        let re = pattern("--name", Some("^ng")).expect("valid");
        assert!(matches(re.as_ref(), "nginx"));
        assert!(!matches(re.as_ref(), "busybox"));
        assert!(matches(None, "anything"));
        assert_eq!(
            pattern("--name", Some(""))
                .ok()
                .flatten()
                .map(|r| r.to_string()),
            None
        );
        assert!(pattern("--name", Some("(")).is_err());
    }

    #[test]
    fn order_and_last() {
        let mut v = vec![1, 3, 2];
        newest_first(&mut v, |x| *x, None);
        assert_eq!(v, [3, 2, 1]);
        newest_first(&mut v, |x| *x, Some(2));
        assert_eq!(v, [3, 2]);
        let args = ListArgs {
            latest: true,
            last: 5,
            ..Default::default()
        };
        assert_eq!(args.keep(), Some(1));
        assert_eq!(ListArgs::default().keep(), None);
    }
}
