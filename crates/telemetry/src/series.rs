//! [`Series`]: a metric family (one metric per label set) for the prometheus-client registry
//! that scrapes in label order and holds a bounded number of label sets.
//!
//! prometheus-client's own `Family` keeps its metrics in a `HashMap`, so the order of the series
//! changes from one scrape (and one process) to the next, and it grows without bound. huskd's
//! families are labelled by what clients send (the gRPC method), so a misbehaving client must
//! not grow the daemon; and a stable order keeps `huskctl metrics` readable and the exposition
//! testable line by line.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Label sets → metrics, sorted, at most `cap` of them.
pub(crate) struct Series<L, M> {
    metrics: Arc<RwLock<BTreeMap<L, M>>>,
    new: fn() -> M,
    cap: usize,
}

impl<L, M> Clone for Series<L, M> {
    fn clone(&self) -> Self {
        Series {
            metrics: self.metrics.clone(),
            new: self.new,
            cap: self.cap,
        }
    }
}

impl<L, M> std::fmt::Debug for Series<L, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl<L: Ord + Clone, M> Series<L, M> {
    /// An empty family whose metrics `new` makes, holding at most `cap` label sets.
    pub(crate) fn new(new: fn() -> M, cap: usize) -> Self {
        Series {
            metrics: Arc::new(RwLock::new(BTreeMap::new())),
            new,
            cap,
        }
    }

    /// Runs `f` on the metric of `labels`, made on first use. Returns `false` without running
    /// `f` when `labels` is new and the family is full.
    pub(crate) fn with(&self, labels: &L, f: impl FnOnce(&M)) -> bool {
        {
            let metrics = self.metrics.read().unwrap_or_else(|p| p.into_inner());
            if let Some(m) = metrics.get(labels) {
                f(m);
                return true;
            }
        }
        let mut metrics = self.metrics.write().unwrap_or_else(|p| p.into_inner());
        if !metrics.contains_key(labels) && metrics.len() >= self.cap {
            return false;
        }
        f(metrics.entry(labels.clone()).or_insert_with(self.new));
        true
    }

    /// The label sets held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.metrics.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl<L, M> TypedMetric for Series<L, M>
where
    M: TypedMetric,
{
    const TYPE: MetricType = M::TYPE;
}

impl<L, M> EncodeMetric for Series<L, M>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let metrics = self.metrics.read().unwrap_or_else(|p| p.into_inner());
        for (labels, m) in metrics.iter() {
            m.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    // An empty family still shows its HELP and TYPE (prometheus-client's `Family` does not):
    // a scraper sees every family huskd has from the first scrape on.
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    #[derive(
        Clone, Debug, PartialEq, Eq, PartialOrd, Ord, prometheus_client::encoding::EncodeLabelSet,
    )]
    struct L {
        k: String,
    }

    fn l(v: &str) -> L {
        L { k: v.into() }
    }

    #[test]
    fn series_scrape_sorted_and_stop_at_the_cap() {
        let s: Series<L, Counter> = Series::new(Counter::default, 3);
        for v in ["c", "a", "b", "d"] {
            s.with(&l(v), |c| {
                c.inc();
            });
        }
        // "d" came when the family was full; existing series still count.
        assert!(!s.with(&l("d"), |_| {}));
        assert!(s.with(&l("a"), |c| {
            c.inc();
        }));
        assert_eq!(s.len(), 3);
        let mut r = Registry::default();
        r.register("x", "X", s);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).expect("encode");
        assert_eq!(
            text,
            "# HELP x_total X.\n# TYPE x_total counter\n\
             x_total{k=\"a\"} 2\nx_total{k=\"b\"} 1\nx_total{k=\"c\"} 1\n"
        );
    }

    #[test]
    fn an_empty_series_still_has_its_metadata() {
        let s: Series<L, Counter> = Series::new(Counter::default, 3);
        let mut r = Registry::default();
        r.register("x", "X", s);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        assert_eq!(text, "# HELP x X.\n# TYPE x counter\n# EOF\n");
    }
}
