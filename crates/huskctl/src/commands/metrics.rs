//! `metrics`: fetch huskd's Prometheus endpoint (`[metrics] address`) and print its text,
//! optionally only the families whose names start with given prefixes.

use clap::Args;

use crate::commands::Ctx;
use crate::output::emit;

/// Where huskd's endpoint is when neither `--url` nor `$HUSK_METRICS_URL` says.
pub const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:9090/metrics";

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// URL of huskd's metrics endpoint (huskd serves it when `[metrics] address` is set)
    #[arg(long, env = "HUSK_METRICS_URL", default_value = DEFAULT_METRICS_URL)]
    pub url: String,
    /// Only the metric families whose names start with PREFIX (repeatable)
    #[arg(long, value_name = "PREFIX")]
    pub filter: Vec<String>,
}

/// `huskctl metrics`: prints the exposition as served.
pub async fn metrics(ctx: &Ctx, args: MetricsArgs) -> anyhow::Result<()> {
    let text = fetch(&args.url, ctx.timeout).await?;
    emit(&filter_families(&text, &args.filter))?;
    Ok(())
}

async fn fetch(url: &str, timeout: Option<std::time::Duration>) -> anyhow::Result<String> {
    let mut b = reqwest::Client::builder().no_proxy();
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    let client = b.build()?;
    let hint = "is huskd running with [metrics] address set? pass --url or $HUSK_METRICS_URL";
    let resp = client.get(url).send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot fetch metrics from {url}: {} ({hint})",
            error_chain(&e)
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("cannot fetch metrics from {url}: HTTP {status}");
    }
    resp.text()
        .await
        .map_err(|e| anyhow::anyhow!("reading metrics from {url}: {}", error_chain(&e)))
}

/// An error and its causes on one line (reqwest's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Keeps the lines of the families whose names start with one of `prefixes` (all of them when
/// there are none). A sample belongs to the family named by the `# HELP`/`# TYPE` line before
/// it when its name extends that name (`x_bucket`, `x_sum`, `x_count` of histogram `x`; the
/// `x_total` of an OpenMetrics counter `x`, whose `# UNIT` line is metadata too).
pub fn filter_families(text: &str, prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        return text.to_string();
    }
    let mut out = String::new();
    let mut family = String::new();
    for line in text.lines() {
        let name = if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .or_else(|| line.strip_prefix("# UNIT "))
        {
            family = rest.split_whitespace().next().unwrap_or("").to_string();
            family.as_str()
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            let metric = line
                .split(|c: char| c == '{' || c.is_whitespace())
                .next()
                .unwrap_or("");
            if !family.is_empty() && metric.starts_with(family.as_str()) {
                family.as_str()
            } else {
                metric
            }
        };
        // An OpenMetrics counter family `x` is the text format's `x_total`.
        let counter = format!("{name}_total");
        if prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()) || counter.starts_with(p.as_str()))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP husk_a_total A.\n# TYPE husk_a_total counter\nhusk_a_total 1\n\
        # HELP husk_h H.\n# TYPE husk_h histogram\nhusk_h_bucket{le=\"1\"} 0\n\
        husk_h_bucket{le=\"+Inf\"} 0\nhusk_h_sum 0\nhusk_h_count 0\n\
        # HELP process_open_fds F.\n# TYPE process_open_fds gauge\nprocess_open_fds 9\n";

    #[test]
    fn no_filter_prints_everything() {
        assert_eq!(filter_families(TEXT, &[]), TEXT);
    }

    #[test]
    fn filters_keep_whole_families() {
        let got = filter_families(TEXT, &["husk_h".into()]);
        assert_eq!(
            got,
            "# HELP husk_h H.\n# TYPE husk_h histogram\nhusk_h_bucket{le=\"1\"} 0\n\
             husk_h_bucket{le=\"+Inf\"} 0\nhusk_h_sum 0\nhusk_h_count 0\n"
        );
        let got = filter_families(TEXT, &["process_".into(), "husk_a".into()]);
        assert_eq!(
            got,
            "# HELP husk_a_total A.\n# TYPE husk_a_total counter\nhusk_a_total 1\n\
             # HELP process_open_fds F.\n# TYPE process_open_fds gauge\nprocess_open_fds 9\n"
        );
        assert_eq!(filter_families(TEXT, &["nothing".into()]), "");
    }

    #[test]
    fn openmetrics_families_filter_alike() {
        let text = "# HELP husk_a A.\n# TYPE husk_a counter\nhusk_a_total 1\n\
            # HELP process_cpu_seconds C.\n# TYPE process_cpu_seconds counter\n\
            # UNIT process_cpu_seconds seconds\nprocess_cpu_seconds_total 0.5\n# EOF\n";
        assert_eq!(
            filter_families(text, &["process_".into()]),
            "# HELP process_cpu_seconds C.\n# TYPE process_cpu_seconds counter\n\
             # UNIT process_cpu_seconds seconds\nprocess_cpu_seconds_total 0.5\n"
        );
        assert_eq!(
            filter_families(text, &["husk_a_total".into()]),
            "# HELP husk_a A.\n# TYPE husk_a counter\nhusk_a_total 1\n"
        );
    }

    #[test]
    fn samples_without_metadata_go_by_their_own_name() {
        let got = filter_families("a_x 1\nb_y{l=\"v\"} 2\n", &["b_".into()]);
        assert_eq!(got, "b_y{l=\"v\"} 2\n");
    }
}
