//! What ingest prints: where the shards are, then counts per domain and per filter rule.

use std::path::Path;

use mixlab_ingest::filter::REASONS;
use mixlab_ingest::manifest::Manifest;
use mixlab_ingest::pipeline::IngestOutcome;

use crate::table::{Table, thousands};

/// Prints whether the shards in `shards_dir` were written or up to date, and their summary.
pub fn ingested(shards_dir: &Path, outcome: &IngestOutcome) {
    match outcome {
        IngestOutcome::UpToDate(_) => println!(
            "{}: up to date (inputs and configuration unchanged); nothing to do",
            shards_dir.display()
        ),
        IngestOutcome::Written(_) => println!("wrote {}", shards_dir.display()),
    }
    print!("{}", summary(outcome.manifest()));
}

/// The per-domain summary: counts in and out, then what each filter rule dropped.
fn summary(manifest: &Manifest) -> String {
    let mut t = Table::new(&[
        "domain",
        "read",
        "skipped",
        "filtered",
        "exact dup",
        "near dup",
        "documents",
        "tokens",
        "shards",
    ]);
    for d in &manifest.domains {
        let s = &d.stats;
        t.row(vec![
            d.name.clone(),
            thousands(s.records_read),
            thousands(s.skipped_records),
            thousands(s.filtered_total()),
            format!(
                "{} ({})",
                thousands(s.exact_duplicates),
                percent(s.exact_duplicates, s.records_read)
            ),
            format!(
                "{} ({})",
                thousands(s.near_duplicates),
                percent(s.near_duplicates, s.records_read)
            ),
            thousands(s.documents),
            thousands(s.tokens),
            d.files.len().to_string(),
        ]);
    }
    let mut out = t.render();
    let used: Vec<&str> = REASONS
        .iter()
        .copied()
        .filter(|r| {
            manifest
                .domains
                .iter()
                .any(|d| d.stats.filtered.contains_key(*r))
        })
        .collect();
    if !used.is_empty() {
        let mut header = vec!["filtered by rule"];
        header.extend(&used);
        let mut rules = Table::new(&header);
        for d in &manifest.domains {
            let mut row = vec![d.name.clone()];
            row.extend(
                used.iter()
                    .map(|r| thousands(d.stats.filtered.get(*r).copied().unwrap_or(0))),
            );
            rules.row(row);
        }
        out.push('\n');
        out.push_str(&rules.render());
    }
    out
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}
