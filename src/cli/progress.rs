//! indicatif progress bars on stderr, shown only when stderr is a terminal.

use coffer::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bar {
    /// A bar that draws only when stderr is a terminal and output is not quiet or JSON.
    /// Warnings are always printed.
    pub fn new(quiet: bool, json: bool) -> Self {
        Bar {
            bar: Mutex::new(None),
            visible: std::io::stderr().is_terminal() && !quiet && !json,
        }
    }
}

impl Bar {
    fn begin(&self, phase: &str, total: Option<u64>, items: bool) {
        if !self.visible {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = match (total.is_some(), items) {
            (true, false) => "{msg:10} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            (false, false) => "{msg:10} [{elapsed_precise}] {spinner} {bytes} {bytes_per_sec}",
            (true, true) => "{msg:10} [{elapsed_precise}] {wide_bar} {pos}/{len} eta {eta}",
            (false, true) => "{msg:10} [{elapsed_precise}] {spinner} {pos}",
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        *self.bar.lock().expect("bar lock") = Some(bar);
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, total: Option<u64>) {
        self.begin(phase, total, false)
    }
    fn start_items(&self, phase: &str, total: Option<u64>) {
        self.begin(phase, total, true)
    }
    fn advance(&self, bytes: u64) {
        if let Some(b) = self.bar.lock().expect("bar lock").as_ref() {
            b.inc(bytes);
        }
    }
    fn warn(&self, message: &str) {
        let guard = self.bar.lock().expect("bar lock");
        match guard.as_ref() {
            Some(b) => b.suspend(|| super::term::warn(message)),
            None => super::term::warn(message),
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("bar lock").take() {
            b.finish_and_clear();
        }
    }
}
