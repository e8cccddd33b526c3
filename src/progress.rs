//! Progress bars on stderr (hidden with `--quiet` or when stderr is not a terminal).

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use mixlab_ingest::manifest::DomainStats;
use mixlab_ingest::pipeline::Progress;

/// One bar per domain, over the bytes of its source files; on a Ballista cluster, one more over
/// the jobs that write shards on the executors.
#[derive(Debug)]
pub struct IngestBars {
    quiet: bool,
    current: Mutex<Option<ProgressBar>>,
    writes: Mutex<Option<ProgressBar>>,
}

impl IngestBars {
    /// Bars, or none with `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            current: Mutex::new(None),
            writes: Mutex::new(None),
        }
    }
}

/// A byte-counting bar with throughput, or a hidden one.
pub fn bytes_bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let template = "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}";
    styled_bar(len, prefix, template, quiet)
}

/// A bar counting jobs, or a hidden one.
fn jobs_bar(len: u64, prefix: &str, quiet: bool) -> ProgressBar {
    styled_bar(
        len,
        prefix,
        "{prefix:>12} [{bar:30}] {pos}/{len} jobs ({eta})",
        quiet,
    )
}

/// A bar of `len` steps drawn with `template`, or a hidden one with `quiet`.
fn styled_bar(len: u64, prefix: &str, template: &'static str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
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

    fn shards_written(&self, done: usize, jobs: usize) {
        let Ok(mut writes) = self.writes.lock() else {
            return;
        };
        let bar = writes.get_or_insert_with(|| jobs_bar(jobs as u64, "writing", self.quiet));
        bar.set_position(done as u64);
        if done >= jobs {
            bar.finish_and_clear();
        }
    }

    fn message(&self, message: &str) {
        tracing::info!("{message}");
    }
}
