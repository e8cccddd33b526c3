//! Progress bars on stderr (hidden with `--quiet` or when stderr is not a terminal).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use mixlab_ingest::manifest::DomainStats;
use mixlab_ingest::pipeline::Progress;

/// One bar per domain, over the bytes of its source files.
#[derive(Debug)]
pub struct IngestBars {
    quiet: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl IngestBars {
    /// Bars, or none with `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: Mutex::new(None),
        }
    }
}

/// A byte-counting bar with throughput, or a hidden one.
pub fn bytes_bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
    )
    .expect("static template")
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(prefix.to_owned())
}

impl Progress for IngestBars {
    fn domain_started(&self, domain: &str, input_bytes: u64) {
        if let Ok(mut current) = self.current.lock() {
            *current = Some(bytes_bar(input_bytes, domain, self.quiet));
        }
    }

    fn domain_advanced(&self, _domain: &str, input_bytes_done: u64, documents: u64) {
        if let Ok(current) = self.current.lock()
            && let Some(bar) = current.as_ref()
        {
            bar.set_position(input_bytes_done);
            bar.set_message(format!("{documents} records"));
        }
    }

    fn domain_finished(&self, domain: &str, stats: &DomainStats) {
        if let Ok(mut current) = self.current.lock()
            && let Some(bar) = current.take()
        {
            bar.finish_and_clear();
        }
        tracing::info!(
            domain,
            documents = stats.documents,
            tokens = stats.tokens,
            "domain done"
        );
    }

    fn message(&self, message: &str) {
        tracing::info!("{message}");
    }
}
