//! Progress of long client work (an upload, a bulk upsert, an export) on stderr: a bar with
//! rows or bytes (indicatif) when stderr is a terminal, plain lines otherwise — one per step
//! the caller marks with [`Progress::line`], so logs of scripts stay short and readable.
//! stdout is never written: it carries the answers.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Rows,
    Bytes,
}

pub struct Progress {
    label: &'static str,
    unit: Unit,
    /// `None` when stderr is not a terminal.
    bar: Option<ProgressBar>,
    done: u64,
}

impl Progress {
    /// Progress of `label` in `unit`s, out of `total` when it is known.
    pub fn new(label: &'static str, unit: Unit, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => {
                    ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                }
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let amount = match (unit, total.is_some()) {
                (Unit::Bytes, true) => {
                    "{binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec})"
                }
                (Unit::Bytes, false) => "{binary_bytes} ({binary_bytes_per_sec})",
                (Unit::Rows, true) => "{human_pos}/{human_len} rows ({per_sec})",
                (Unit::Rows, false) => "{human_pos} rows ({per_sec})",
            };
            let template = if total.is_some() {
                format!("{{prefix}} [{{bar:30}}] {amount} {{msg}}")
            } else {
                format!("{{prefix}} {{spinner}} {amount} {{msg}}")
            };
            // The templates above are fixed and valid; a failure would only lose the style.
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(label);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            label,
            unit,
            bar,
            done: 0,
        }
    }

    /// `n` more rows or bytes done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// A note beside the bar (the terminal), or a line with the amount done so far.
    pub fn line(&self, note: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(note.to_owned()),
            None => eprintln!("{}: {} {} {note}", self.label, self.done, self.unit_name()),
        }
    }

    /// Clears the bar; the caller prints the outcome.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn unit_name(&self) -> &'static str {
        match self.unit {
            Unit::Rows => "rows",
            Unit::Bytes => "bytes",
        }
    }
}
