//! How a pull's progress is shown: on a terminal, one line per layer that indicatif redraws in
//! place (phase, bar, bytes, speed, time left); otherwise one plain line per layer once it is in
//! place; nothing with `-q`. Also the summary a pull ends with.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use husk_api::v1::pull_event::Event;
use husk_api::v1::{LayerPhase, LayerProgress, PullEvent, PullResolved};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{emit, human_size};

/// A layer waiting for its turn (download slot, or unpack after the layers below it).
const WAITING_TEMPLATE: &str = "{prefix:.bold}  {msg:<11} {decimal_total_bytes:>10}";
/// A layer downloading: bar, bytes so far, speed and time left.
const DOWNLOAD_TEMPLATE: &str = "{prefix:.bold}  {msg:<11} [{wide_bar:.cyan/blue}] \
     {decimal_bytes:>9} / {decimal_total_bytes:<9} {decimal_bytes_per_sec:>11}  ETA {eta:>3}";
/// A layer being unpacked: a spinner and the time it has taken so far.
const EXTRACT_TEMPLATE: &str =
    "{prefix:.bold}  {msg:<11} {decimal_total_bytes:>10}  {spinner:.cyan} {elapsed}";
/// A layer in place.
const FINAL_TEMPLATE: &str = "{prefix:.bold}  {msg:<11} {decimal_total_bytes:>10}";

/// A layer's phase as shown to the user.
pub fn phase_text(phase: i32) -> &'static str {
    match LayerPhase::try_from(phase) {
        Ok(LayerPhase::Waiting) => "waiting",
        Ok(LayerPhase::Downloading) => "downloading",
        Ok(LayerPhase::Downloaded) => "downloaded",
        Ok(LayerPhase::Extracting) => "extracting",
        Ok(LayerPhase::Done) => "done",
        Ok(LayerPhase::Exists) => "exists",
        Err(_) => "unknown",
    }
}

/// `sha256:0123456789abcdef…` → `0123456789ab`.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// The progress display of one pull.
pub enum PullView {
    Bars(Box<Bars>),
    Lines(Lines),
    Quiet,
}

impl PullView {
    /// Bars on a terminal, lines when `no_progress` or stdout is not a terminal, nothing if `quiet`.
    pub fn new(no_progress: bool, quiet: bool) -> Self {
        if quiet {
            PullView::Quiet
        } else if no_progress || !std::io::stdout().is_terminal() {
            PullView::Lines(Lines::default())
        } else {
            PullView::Bars(Box::new(Bars::new(ProgressDrawTarget::stdout())))
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &PullEvent) -> std::io::Result<()> {
        match (self, &event.event) {
            (PullView::Bars(b), Some(Event::Resolved(r))) => b.resolved(r),
            (PullView::Bars(b), Some(Event::Layer(l))) => b.layer(l),
            (PullView::Lines(l), Some(Event::Resolved(r))) => return l.resolved(r),
            (PullView::Lines(l), Some(Event::Layer(p))) => return l.layer(p),
            _ => {}
        }
        Ok(())
    }

    /// Ends the display: after a success every layer shows as in place (huskd may drop
    /// progress events under load); after a failure the layers keep their last state. Either
    /// way the terminal is left on a fresh line for what follows.
    pub fn end(&mut self, ok: bool) {
        if let PullView::Bars(b) = self {
            b.end(ok);
        }
    }
}

/// One line per layer in a `MultiProgress`, in manifest order.
pub struct Bars {
    multi: MultiProgress,
    styles: Styles,
    bars: HashMap<String, Layer>,
}

struct Styles {
    waiting: ProgressStyle,
    download: ProgressStyle,
    extract: ProgressStyle,
    done: ProgressStyle,
}

impl Styles {
    fn new() -> Self {
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        Styles {
            waiting: style(WAITING_TEMPLATE),
            download: style(DOWNLOAD_TEMPLATE).progress_chars("=> "),
            extract: style(EXTRACT_TEMPLATE),
            done: style(FINAL_TEMPLATE),
        }
    }
}

/// A layer's line and the phase it shows.
struct Layer {
    bar: ProgressBar,
    phase: Option<LayerPhase>,
}

impl Bars {
    fn new(target: ProgressDrawTarget) -> Self {
        Self {
            multi: MultiProgress::with_draw_target(target),
            styles: Styles::new(),
            bars: HashMap::new(),
        }
    }

    fn resolved(&mut self, resolved: &PullResolved) {
        for layer in &resolved.layers {
            self.layer(layer);
        }
    }

    fn layer(&mut self, progress: &LayerProgress) {
        let multi = &self.multi;
        let layer = self.bars.entry(progress.digest.clone()).or_insert_with(|| {
            // Joined to the display before anything is set: a bar draws on every change,
            // and one not yet in the MultiProgress would draw to stderr on its own line.
            let bar = multi.add(ProgressBar::with_draw_target(
                Some(progress.total_bytes),
                ProgressDrawTarget::hidden(),
            ));
            bar.set_prefix(short_digest(&progress.digest).to_string());
            Layer { bar, phase: None }
        });
        layer.show(progress, &self.styles);
    }

    fn end(&mut self, ok: bool) {
        for layer in self.bars.values() {
            let bar = &layer.bar;
            if bar.is_finished() {
                continue;
            }
            if ok {
                bar.set_style(self.styles.done.clone());
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish_with_message("done");
            } else {
                bar.disable_steady_tick();
                bar.abandon();
            }
        }
        // Finishing draws at once; indicatif pads the last line to the terminal's width, so
        // what is printed next starts on a line of its own.
    }
}

impl Layer {
    /// Updates the line for the layer's new state; a phase change changes its layout.
    fn show(&mut self, p: &LayerProgress, styles: &Styles) {
        let bar = &self.bar;
        if bar.is_finished() {
            return;
        }
        if p.total_bytes > 0 && bar.length() != Some(p.total_bytes) {
            bar.set_length(p.total_bytes);
        }
        let phase = LayerPhase::try_from(p.phase).ok();
        let entering = phase != self.phase;
        self.phase = phase;
        match phase {
            Some(LayerPhase::Downloading) => {
                if entering {
                    bar.set_style(styles.download.clone());
                    bar.set_message("downloading");
                    // Speed and time left count from here, and from the bytes already there
                    // (a resumed download), not from when the layer started waiting.
                    bar.set_position(p.done_bytes);
                    bar.reset_eta();
                } else {
                    bar.set_position(p.done_bytes);
                }
            }
            Some(LayerPhase::Extracting) => {
                if entering {
                    bar.set_style(styles.extract.clone());
                    bar.set_message("extracting");
                    bar.reset_elapsed();
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
            Some(LayerPhase::Done | LayerPhase::Exists) => {
                bar.disable_steady_tick();
                bar.set_style(styles.done.clone());
                bar.set_position(bar.length().unwrap_or(p.done_bytes).max(p.done_bytes));
                bar.finish_with_message(phase_text(p.phase));
            }
            // Waiting, downloaded (for its turn to be unpacked), or a phase this huskctl does
            // not know.
            _ => {
                if entering {
                    bar.set_style(styles.waiting.clone());
                    bar.set_message(phase_text(p.phase));
                }
                bar.set_position(p.done_bytes);
            }
        }
    }
}

/// Plain lines for logs and pipes: each layer once it is in place.
#[derive(Default)]
pub struct Lines {
    printed: std::collections::HashSet<String>,
}

impl Lines {
    fn resolved(&mut self, resolved: &PullResolved) -> std::io::Result<()> {
        resolved.layers.iter().try_for_each(|l| self.layer(l))
    }

    fn layer(&mut self, layer: &LayerProgress) -> std::io::Result<()> {
        match layer_line(layer) {
            Some(line) if self.printed.insert(layer.digest.clone()) => emit(&format!("{line}\n")),
            _ => Ok(()),
        }
    }
}

/// The line printed when a layer is in place; `None` while it is still in flight.
pub fn layer_line(layer: &LayerProgress) -> Option<String> {
    let short = short_digest(&layer.digest);
    match LayerPhase::try_from(layer.phase) {
        Ok(LayerPhase::Done) => Some(format!(
            "{short}: done ({})",
            human_size(layer.total_bytes.max(layer.done_bytes))
        )),
        Ok(LayerPhase::Exists) => Some(format!("{short}: already exists")),
        _ => None,
    }
}

/// What a pull did, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The image as named by the user, normalised when huskd told us how.
    pub name: String,
    /// Layer bytes downloaded; `None` when unknown (CRI `PullImage` reports no progress).
    pub fetched: Option<u64>,
    pub elapsed: Duration,
    /// The name already meant this image before the pull and nothing was downloaded.
    pub up_to_date: bool,
}

/// The line a pull ends with, before the image ID:
/// `Pulled docker.io/library/x:1 (200 MB in 0.7 s, 290 MB/s)`, or Docker's
/// `Image is up to date for …` when nothing was fetched for an image already there.
pub fn summary(o: &Outcome) -> String {
    if o.up_to_date {
        return format!("Image is up to date for {}", o.name);
    }
    let secs = o.elapsed.as_secs_f64();
    let time = seconds(secs);
    match o.fetched {
        Some(0) => format!("Pulled {} (nothing downloaded, {time})", o.name),
        Some(bytes) => {
            let rate = if secs > 0.0 {
                bytes as f64 / secs
            } else {
                bytes as f64
            };
            format!(
                "Pulled {} ({} in {time}, {}/s)",
                o.name,
                spaced_size(bytes),
                spaced_size(rate as u64)
            )
        }
        None => format!("Pulled {} ({time})", o.name),
    }
}

/// `0.7 s`, `12.3 s`, `2 min 5 s`.
fn seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// [`human_size`] with a space before the unit: `200 MB`, `4.5 kB`, `0 B`.
fn spaced_size(bytes: u64) -> String {
    let s = human_size(bytes);
    match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => format!("{} {}", &s[..i], &s[i..]),
        None => s,
    }
}

/// The user's image name in full, as huskd normalised it: the repository of `image_ref`
/// (`docker.io/library/x@sha256:…`) with the tag the user asked for (`latest` when none). A
/// name by digest, or a missing `image_ref`, stays as given.
pub fn pulled_name(asked: &str, image_ref: &str) -> String {
    let Some((repo, _)) = image_ref.split_once('@') else {
        return asked.to_string();
    };
    if asked.contains('@') || repo.is_empty() {
        return asked.to_string();
    }
    let last = asked.rsplit('/').next().unwrap_or(asked);
    let tag = last.split_once(':').map_or("latest", |(_, t)| t);
    format!("{repo}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(phase: LayerPhase, done: u64) -> LayerProgress {
        LayerProgress {
            digest: "sha256:0123456789abcdef0000".into(),
            total_bytes: 4_500_000,
            done_bytes: done,
            phase: phase as i32,
        }
    }

    #[test]
    fn digests_are_shortened() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_digest("abc"), "abc");
    }

    #[test]
    fn phases() {
        assert_eq!(phase_text(LayerPhase::Extracting as i32), "extracting");
        assert_eq!(phase_text(LayerPhase::Exists as i32), "exists");
        assert_eq!(phase_text(42), "unknown");
    }

    #[test]
    fn lines_only_for_finished_layers() {
        assert_eq!(layer_line(&layer(LayerPhase::Downloading, 10)), None);
        assert_eq!(
            layer_line(&layer(LayerPhase::Done, 4_500_000)).as_deref(),
            Some("0123456789ab: done (4.5MB)")
        );
        assert_eq!(
            layer_line(&layer(LayerPhase::Exists, 0)).as_deref(),
            Some("0123456789ab: already exists")
        );
    }

    #[test]
    fn summaries() {
        let o = |fetched, ms, up_to_date| Outcome {
            name: "docker.io/x:1".into(),
            fetched,
            elapsed: Duration::from_millis(ms),
            up_to_date,
        };
        assert_eq!(
            summary(&o(Some(200_000_000), 700, false)),
            "Pulled docker.io/x:1 (200 MB in 0.7 s, 286 MB/s)"
        );
        assert_eq!(
            summary(&o(Some(4_500), 0, false)),
            "Pulled docker.io/x:1 (4.5 kB in 0.0 s, 4.5 kB/s)"
        );
        assert_eq!(
            summary(&o(Some(0), 260, false)),
            "Pulled docker.io/x:1 (nothing downloaded, 0.3 s)"
        );
        assert_eq!(
            summary(&o(None, 1260, false)),
            "Pulled docker.io/x:1 (1.3 s)"
        );
        assert_eq!(
            summary(&o(Some(3_000_000_000), 125_000, false)),
            "Pulled docker.io/x:1 (3 GB in 2 min 5 s, 24 MB/s)"
        );
        assert_eq!(
            summary(&o(Some(0), 100, true)),
            "Image is up to date for docker.io/x:1"
        );
    }

    #[test]
    fn names_are_completed_from_the_digested_reference() {
        let r = "docker.io/library/busybox@sha256:abc";
        assert_eq!(
            pulled_name("busybox", r),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            pulled_name("busybox:1.36", r),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            pulled_name("localhost:5000/a/b:v2", "localhost:5000/a/b@sha256:abc"),
            "localhost:5000/a/b:v2"
        );
        assert_eq!(
            pulled_name("localhost:5000/a/b", "localhost:5000/a/b@sha256:abc"),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(pulled_name("busybox@sha256:abc", r), "busybox@sha256:abc");
        assert_eq!(pulled_name("busybox", ""), "busybox");
    }
}
