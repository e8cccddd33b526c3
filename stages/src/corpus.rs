//! A stage's training and held-out data: the shards' documents through their token cache, with a
//! progress bar while the cache is built (once per shard set).

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use mixlab_ingest::manifest::ShardSet;
use mixlab_trainer::data::Corpus;
use mixlab_trainer::data::cache::TokenCache;

/// The corpus of a verified shard set, building its token cache first if needed.
///
/// # Errors
/// A damaged cache or shard (naming the file and the fix), or an I/O error.
pub fn open_corpus(shards: &ShardSet, quiet: bool) -> anyhow::Result<Corpus> {
    with_cache_bar(quiet, |progress| Corpus::open(shards, progress))
        .with_context(|| format!("reading the shards in {}", shards.root().display()))
}

/// Builds a shard set's token cache again, whatever state it is in.
///
/// # Errors
/// A damaged shard (naming the file), or an I/O error.
pub fn rebuild_cache(shards: &ShardSet, quiet: bool) -> anyhow::Result<TokenCache> {
    with_cache_bar(quiet, |progress| TokenCache::rebuild(shards, progress))
        .with_context(|| format!("building the token cache of {}", shards.root().display()))
}

/// Runs `work` with a progress callback drawn as a bar, cleared when `work` returns.
fn with_cache_bar<T>(quiet: bool, work: impl FnOnce(&mut dyn FnMut(u64, u64)) -> T) -> T {
    let mut bar = CacheBar::new(quiet);
    let result = work(&mut |done, total| bar.advance(done, total));
    bar.finish();
    result
}

/// A bar of tokens written, shown from the first report on (an existing cache reports nothing).
struct CacheBar {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl CacheBar {
    fn new(quiet: bool) -> Self {
        Self { quiet, bar: None }
    }

    fn advance(&mut self, done: u64, total: u64) {
        let quiet = self.quiet;
        let bar = self.bar.get_or_insert_with(|| {
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(total)
            };
            bar.set_style(
                ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} tokens ({eta})")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("cache");
            bar
        });
        bar.set_position(done);
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
