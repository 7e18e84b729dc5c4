//! The two exposition formats `/metrics` serves and the choice between them from a scraper's
//! `Accept` header, as client_golang's `promhttp` makes it: OpenMetrics 1.0.0 to a scraper that
//! asks for it (Prometheus does by default), the Prometheus text format 0.0.4 to everyone else
//! (curl, older agents, anything sending `*/*` or no `Accept` at all).
//!
//! Both carry the same samples under the same names; they differ in metadata: OpenMetrics names
//! a counter's family without its `_total` (`# TYPE husk_grpc_requests counter`, samples
//! `husk_grpc_requests_total`), adds `# UNIT` lines and ends with `# EOF`.

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

/// The content type of OpenMetrics 1.0.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Format {
    /// The `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }

    /// The format to answer a request with this `Accept` header in: the acceptable media range
    /// with the highest `q` that names one of the formats (the first one listed among equals);
    /// text 0.0.4 when none does.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or("").split(',') {
            let Some((format, q)) = media_range(range) else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }
}

/// One media range of an `Accept` header: the format it selects and its quality.
fn media_range(range: &str) -> Option<(Format, f32)> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?.to_ascii_lowercase();
    let mut version = None;
    let mut q = 1.0;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "version" => version = Some(v.to_string()),
            "q" => q = v.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?,
            _ => {}
        }
    }
    let format = match media.as_str() {
        // 0.0.1 is what Prometheus 2 asks for after 1.0.0: the same samples for our families.
        "application/openmetrics-text" => match version.as_deref() {
            None | Some("1.0.0") | Some("0.0.1") => Format::OpenMetrics,
            Some(_) => return None,
        },
        // Prometheus 3 also offers text 1.0.0 (UTF-8 names): our names are all legacy ones, so
        // the 0.0.4 text is valid for it.
        "text/plain" => match version.as_deref() {
            None | Some("0.0.4") | Some("1.0.0") => Format::Text,
            Some(_) => return None,
        },
        "*/*" | "text/*" => Format::Text,
        "application/*" => Format::OpenMetrics,
        _ => return None,
    };
    Some((format, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapers_get_what_they_ask_for() {
        use Format::*;
        // Prometheus 2.x and 3.x defaults.
        let p2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                  version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let p3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,\
                  application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;\
                  escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(p2)), OpenMetrics);
        assert_eq!(Format::negotiate(Some(p3)), OpenMetrics);
        // Prometheus configured with scrape_protocols: [PrometheusText0.0.4].
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Text
        );
        // curl, reqwest, no header, nonsense.
        assert_eq!(Format::negotiate(Some("*/*")), Text);
        assert_eq!(Format::negotiate(None), Text);
        assert_eq!(Format::negotiate(Some("")), Text);
        assert_eq!(Format::negotiate(Some("application/json")), Text);
        // Quality decides; among equals the first listed wins; q=0 refuses.
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;q=0.9, application/openmetrics-text; q=1.0"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text")),
            Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, */*")),
            Text
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; Version=\"1.0.0\"")),
            OpenMetrics
        );
        // A version we do not speak is not acceptable.
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Text
        );
        assert_eq!(Format::negotiate(Some("application/*")), OpenMetrics);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
