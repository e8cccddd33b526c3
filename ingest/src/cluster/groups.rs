//! Dedup as distributed queries over what the stage jobs wrote ([`super::stage`]): on Ballista,
//! each is one job whose group-bys and joins run on the executors, shuffled by key.
//!
//! - Exact: candidates grouped by hash; every record of a group of two or more but its first (the
//!   smallest ordinal: ingest order, so the first domain in configuration order wins) comes back
//!   with that first record.
//! - Near: the band keys of the records that are not exact duplicates grouped by key; the records
//!   in a bucket of two or more come back with their signatures.
//!
//! Only these return to the client, which replays the MinHash index over the colliding records in
//! order ([`crate::dedup::resolve`]): the same result as inserting every record, since a record
//! that shares no bucket can neither be a near duplicate nor make one.

use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{UInt32Type, UInt64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;

use super::stage::{bands_schema, candidates_schema};
use crate::dedup::{Groups, Ordinal};
use crate::source::parquet_table;

/// The table of every part's candidates, as the queries name it.
const CANDIDATES: &str = "mixlab_candidates";
/// The table of every part's band keys.
const BANDS: &str = "mixlab_bands";

/// Each exact duplicate (ord) with the first record of its hash.
const EXACT_SQL: &str = "\
SELECT c.ord, f.first FROM mixlab_candidates c \
JOIN (SELECT hash_hi, hash_lo, min(ord) AS first FROM mixlab_candidates \
      WHERE hash_hi IS NOT NULL GROUP BY hash_hi, hash_lo HAVING count(*) > 1) f \
  ON c.hash_hi = f.hash_hi AND c.hash_lo = f.hash_lo \
WHERE c.ord <> f.first";

/// The records that are not exact duplicates and share a band key, with their signatures.
fn near_sql() -> String {
    format!(
        "WITH losers AS ({EXACT_SQL}), \
         reps AS (SELECT b.key, b.ord FROM mixlab_bands b LEFT ANTI JOIN losers l ON b.ord = l.ord), \
         hit AS (SELECT DISTINCT r.ord FROM reps r \
                 JOIN (SELECT key FROM reps GROUP BY key HAVING count(*) > 1) k ON r.key = k.key) \
         SELECT c.ord, c.signature FROM mixlab_candidates c JOIN hit h ON c.ord = h.ord"
    )
}

/// The staged files of every part: candidates, and band keys with near dedup on.
#[derive(Debug, Clone, Default)]
pub struct StagedFiles {
    /// Each part's candidates file.
    pub candidates: Vec<PathBuf>,
    /// Each part's bands file (empty with near dedup off).
    pub bands: Vec<PathBuf>,
}

/// Registers the staged files as the tables the queries read, in `ctx`.
///
/// # Errors
/// DataFusion's, for files that cannot be listed.
pub async fn register(ctx: &SessionContext, files: &StagedFiles) -> Result<()> {
    let candidates = parquet_table(ctx, &files.candidates, Some(candidates_schema())).await?;
    ctx.register_table(CANDIDATES, candidates)?;
    if !files.bands.is_empty() {
        let bands = parquet_table(ctx, &files.bands, Some(bands_schema())).await?;
        ctx.register_table(BANDS, bands)?;
    }
    Ok(())
}

/// Runs the exact query (when `exact`) and the near one (when `near`) over the tables
/// [`register`] made.
///
/// # Errors
/// DataFusion's (on Ballista, a failed job's).
pub async fn find_groups(ctx: &SessionContext, exact: bool, near: bool) -> Result<Groups> {
    let mut groups = Groups::default();
    if exact {
        for batch in ctx.sql(EXACT_SQL).await?.collect().await? {
            let [ord, first] = u64_columns(&batch, ["ord", "first"])?;
            groups.exact.extend(ord.into_iter().zip(first));
        }
    }
    if near {
        for batch in ctx.sql(&near_sql()).await?.collect().await? {
            let [ord] = u64_columns(&batch, ["ord"])?;
            let signatures = batch
                .column_by_name("signature")
                .and_then(|c| c.as_list_opt::<i32>())
                .ok_or_else(|| shape("signature"))?;
            for (i, ord) in ord.into_iter().enumerate() {
                let signature = signatures.value(i);
                let values = signature
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| shape("signature"))?;
                groups.colliding.push((ord, values.values().to_vec()));
            }
        }
    }
    Ok(groups)
}

/// The named `u64` columns of `batch`, as values.
fn u64_columns<const N: usize>(batch: &RecordBatch, names: [&str; N]) -> Result<[Vec<Ordinal>; N]> {
    let columns = names
        .iter()
        .map(|name| {
            let array = batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .filter(|a| a.null_count() == 0)
                .ok_or_else(|| shape(name))?;
            Ok(array.values().to_vec())
        })
        .collect::<Result<Vec<_>>>()?;
    columns.try_into().map_err(|_| shape("every"))
}

fn shape(column: &str) -> DataFusionError {
    DataFusionError::Internal(format!(
        "a dedup query's {column:?} column of another shape"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};
    use datafusion::logical_expr::lit;
    use datafusion::prelude::{SessionConfig, ident};

    use super::*;
    use crate::cluster::judge::{JudgeSpec, judge_udf, verdicts};
    use crate::cluster::sink::{SinkTask, insert_rows};
    use crate::cluster::stage::{BandsFile, StageReceipt, StageSpec, ordinal};
    use crate::config::{FilterConfig, MinHashConfig};
    use crate::dedup::{DedupIndex, Duplicate, resolve};
    use crate::filter::QualityFilter;
    use crate::record::{Candidate, Verdict};

    /// A text of 200 words drawn from `seed`, with word `changed` replaced when given.
    fn text(seed: u64, changed: Option<usize>) -> String {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..200)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if Some(i) == changed {
                    "changed".to_owned()
                } else {
                    format!("word{}", state % 5000)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Two parts whose records hold every kind of duplicate, across and within parts.
    fn parts() -> [Vec<Option<String>>; 2] {
        let (a, near_a) = (text(1, None), text(1, Some(40)));
        [
            vec![
                Some(a.clone()),
                Some(near_a.to_uppercase()), // near duplicate of a
                Some(text(2, None)),
                None,
                Some("tiny".into()),
                Some(text(3, None)),
            ],
            vec![
                Some(near_a),                // exact duplicate of a near duplicate: near
                Some(a.replace(' ', "\n ")), // exact duplicate of a kept record
                Some(text(2, Some(100))),    // near duplicate across parts
                Some(text(4, None)),
                Some(text(3, None).to_uppercase()), // exact duplicate across parts
            ],
        ]
    }

    fn spec(exact: bool, minhash: Option<MinHashConfig>) -> JudgeSpec {
        let rules = FilterConfig {
            min_words: 0,
            min_alpha_char_fraction: 0.0,
            min_alpha_word_fraction: 0.0,
            min_stop_words: 0,
            mean_word_length: (0.0, 1e9),
            max_duplicate_line_fraction: 1.0,
            max_top_ngram_fraction: [1.0; 3],
            max_duplicate_ngram_fraction: [1.0; 6],
        };
        JudgeSpec {
            label: "parts.jsonl".into(),
            filter: QualityFilter {
                min_chars: 10,
                max_chars: 1_000_000,
                rules,
            },
            exact,
            minhash,
        }
    }

    /// `mixlab_judge`'s column over `texts`, computed by a query as on an executor.
    fn judged(texts: &[Option<String>], spec: &JudgeSpec) -> ArrayRef {
        let ctx = SessionContext::new();
        let column: ArrayRef = Arc::new(StringArray::from(texts.to_vec()));
        let batch = RecordBatch::try_from_iter([("text", column)]).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let call = judge_udf().call(vec![
            ident("text"),
            lit(serde_json::to_string(spec).unwrap()),
        ]);
        let batches = runtime
            .block_on(async { ctx.read_batch(batch)?.select(vec![call])?.collect().await })
            .unwrap();
        Arc::clone(batches[0].column(0))
    }

    fn stage_spec(dir: &Path, part: usize, bands: Option<usize>) -> StageSpec {
        StageSpec {
            part,
            candidates: dir.join(format!("candidates/part-{part}.parquet")),
            bands: bands.map(|bands| BandsFile {
                path: dir.join(format!("bands/part-{part}.parquet")),
                bands,
            }),
            receipt: dir.join(format!("staged-{part}.json")),
        }
    }

    /// What the local engine's index drops, inserting the parts' records in order.
    fn dropped_in_order(
        columns: &[ArrayRef],
        minhash: Option<&MinHashConfig>,
    ) -> BTreeMap<Ordinal, Duplicate> {
        let mut index = DedupIndex::new(minhash);
        let mut dropped = BTreeMap::new();
        for (part, column) in columns.iter().enumerate() {
            for (row, (_, verdict)) in verdicts(column.as_ref()).unwrap().into_iter().enumerate() {
                let Verdict::Candidate(Candidate {
                    hash, signature, ..
                }) = verdict
                else {
                    continue;
                };
                if let Err(d) = index.insert(hash, signature.as_deref()) {
                    dropped.insert(ordinal(part, row as u64).unwrap(), d);
                }
            }
        }
        dropped
    }

    #[test]
    fn dedup_queries_over_staged_parts_drop_what_the_index_drops_in_order() {
        let minhash = MinHashConfig::default();
        for (exact, near) in [(true, true), (true, false), (false, true)] {
            let dir = tempfile::tempdir().unwrap();
            let spec = spec(exact, near.then(|| minhash.clone()));
            let bands = near.then_some(minhash.bands);
            let (mut files, mut columns) = (StagedFiles::default(), Vec::new());
            for (part, texts) in parts().iter().enumerate() {
                let column = judged(texts, &spec);
                let stage = stage_spec(dir.path(), part, bands);
                let rows = insert_rows(SinkTask::Stage(stage.clone()), Arc::clone(&column), 2);
                assert_eq!(rows.unwrap(), texts.len() as u64);
                files.candidates.push(stage.candidates);
                files.bands.extend(stage.bands.map(|b| b.path));
                columns.push(column);
            }
            let receipt = StageReceipt::read(&dir.path().join("staged-0.json")).unwrap();
            assert_eq!(
                (receipt.records, receipt.nulls, receipt.first_null),
                (6, 1, Some(3))
            );
            assert_eq!((receipt.candidates, receipt.filtered["too_short"]), (4, 1));

            // Several partitions, so the group-bys and joins run as they do spread out.
            let ctx =
                SessionContext::new_with_config(SessionConfig::new().with_target_partitions(3));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let groups = runtime
                .block_on(async {
                    register(&ctx, &files).await?;
                    find_groups(&ctx, exact, near).await
                })
                .unwrap();
            let expected = dropped_in_order(&columns, near.then_some(&minhash));
            assert!(expected.len() >= 2, "{expected:?}");
            assert_eq!(
                resolve(groups, near.then_some(&minhash)),
                expected,
                "exact {exact}, near {near}"
            );
        }
    }
}
