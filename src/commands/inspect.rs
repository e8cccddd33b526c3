//! `mixlab inspect`: verify a shard directory, print its manifest and its token cache's state.

use anyhow::Context;
use mixlab_artefacts::split::Split;
use mixlab_ingest::manifest::ShardSet;
use mixlab_ingest::verified::Verification;
use mixlab_stages::corpus::rebuild_cache;
use mixlab_trainer::data::cache::{CacheState, TokenCache};

use crate::cli::{GlobalArgs, InspectArgs};
use crate::table::{Table, thousands};

/// Verifies the shards against their manifest and prints domains, splits, provenance and the
/// token cache's state (rebuilding the cache first with `--rebuild-cache`).
pub fn run(global: &GlobalArgs, args: &InspectArgs) -> anyhow::Result<()> {
    let dir = args
        .shards
        .clone()
        .unwrap_or_else(|| global.out_root().join("shards"));
    let set = ShardSet::open(&dir, Verification::Full)
        .with_context(|| format!("inspecting {}", dir.display()))?;
    if args.rebuild_cache {
        rebuild_cache(&set, global.quiet)?;
    }
    let m = set.manifest();
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!(
        "shards:     {} (verified: every checksum matches)",
        dir.display()
    );
    println!(
        "tokenizer:  {} (sha256 {}, vocabulary {}, eos id {})",
        m.tokenizer.origin, m.tokenizer.sha256, m.tokenizer.vocab_size, m.tokenizer.eos_id
    );
    println!("config:     sha256 {}", m.config_hash);
    println!("inputs:     sha256 {}", m.inputs_hash);
    println!();
    let mut t = Table::new(&["domain", "split", "documents", "tokens", "files"]);
    for d in &m.domains {
        for split in Split::ALL {
            let c = d.splits.get(&split).copied().unwrap_or_default();
            t.row(vec![
                d.name.clone(),
                split.as_str().into(),
                thousands(c.documents),
                thousands(c.tokens),
                d.files.len().to_string(),
            ]);
        }
    }
    let total_docs: u64 = m.domains.iter().map(|d| d.stats.documents).sum();
    let total_tokens: u64 = m.domains.iter().map(|d| d.stats.tokens).sum();
    t.row(vec![
        "total".into(),
        "all".into(),
        thousands(total_docs),
        thousands(total_tokens),
        m.domains
            .iter()
            .map(|d| d.files.len())
            .sum::<usize>()
            .to_string(),
    ]);
    print!("{}", t.render());
    println!("{}", cache_line(&set)?);
    Ok(())
}

/// One line on the token cache: where it is and whether training can stream from it.
fn cache_line(set: &ShardSet) -> anyhow::Result<String> {
    let dir = TokenCache::dir_of(set);
    let dir = dir.display();
    Ok(match TokenCache::state(set)? {
        CacheState::Ready(cache) => format!(
            "cache:      {dir} (ready: {} bytes; training streams from it)",
            thousands(cache.bytes())
        ),
        CacheState::Missing => {
            format!("cache:      {dir} (missing: the first stage that trains builds it)")
        }
        CacheState::Stale => format!(
            "cache:      {dir} (stale: built for other shards; the first stage that trains rebuilds it)"
        ),
        CacheState::Damaged(e) => format!("cache:      damaged: {e}"),
    })
}
