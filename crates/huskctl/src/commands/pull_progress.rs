//! How a pull's progress is shown: one indicatif bar per layer on a terminal, one line per
//! finished layer otherwise, or nothing with `-q`.

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal as _;

use husk_api::v1::pull_event::Event;
use husk_api::v1::{LayerPhase, LayerProgress, PullEvent, PullResolved};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{emit, human_size};

/// Bar layout: short digest, phase, bar, bytes.
const BAR_TEMPLATE: &str =
    "{prefix:.bold}  {msg:<11} [{bar:30.cyan/blue}] {bytes:>10} / {total_bytes:<10}";

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

fn is_final(phase: i32) -> bool {
    matches!(
        LayerPhase::try_from(phase),
        Ok(LayerPhase::Done | LayerPhase::Exists)
    )
}

/// The progress display of one pull.
pub enum PullView {
    Bars(Bars),
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
            PullView::Bars(Bars::new())
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

    /// Leaves finished bars on screen, or removes unfinished ones after an error.
    pub fn end(&mut self, ok: bool) {
        if let PullView::Bars(b) = self {
            // huskd may drop progress events under load: a successful pull finishes every bar.
            for bar in b.bars.values().filter(|bar| !bar.is_finished()) {
                if ok {
                    bar.set_position(bar.length().unwrap_or(0));
                    bar.finish_with_message("done");
                } else {
                    bar.abandon();
                }
            }
        }
    }
}

/// One bar per layer in a `MultiProgress`, in manifest order.
pub struct Bars {
    multi: MultiProgress,
    style: ProgressStyle,
    bars: HashMap<String, ProgressBar>,
}

impl Bars {
    fn new() -> Self {
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            style,
            bars: HashMap::new(),
        }
    }

    /// The layer's bar, created (already showing the layer's state) on first sight.
    fn bar(&mut self, layer: &LayerProgress) -> &ProgressBar {
        self.bars.entry(layer.digest.clone()).or_insert_with(|| {
            let bar = ProgressBar::new(layer.total_bytes).with_style(self.style.clone());
            bar.set_prefix(short_digest(&layer.digest).to_string());
            bar.set_message(phase_text(layer.phase));
            self.multi.add(bar)
        })
    }

    fn resolved(&mut self, resolved: &PullResolved) {
        for layer in &resolved.layers {
            self.layer(layer);
        }
    }

    fn layer(&mut self, layer: &LayerProgress) {
        let bar = self.bar(layer);
        if bar.is_finished() {
            return;
        }
        if layer.total_bytes > 0 {
            bar.set_length(layer.total_bytes);
        }
        bar.set_position(layer.done_bytes);
        let text = phase_text(layer.phase);
        if is_final(layer.phase) {
            bar.set_position(
                bar.length()
                    .unwrap_or(layer.done_bytes)
                    .max(layer.done_bytes),
            );
            bar.finish_with_message(text);
        } else {
            bar.set_message(text);
        }
    }
}

/// Plain lines for logs and pipes: the resolved manifest, then each layer once it is in place.
#[derive(Default)]
pub struct Lines {
    printed: HashSet<String>,
}

impl Lines {
    fn resolved(&mut self, resolved: &PullResolved) -> std::io::Result<()> {
        let n = resolved.layers.len();
        let s = if n == 1 { "" } else { "s" };
        emit(&format!(
            "Resolved {} ({n} layer{s})\n",
            resolved.manifest_digest
        ))?;
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
}
