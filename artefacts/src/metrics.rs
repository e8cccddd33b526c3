//! `metrics.parquet` of a run directory (DESIGN.md, "Run directory").
//!
//! One row per training step (`loss` set, `domain` null) and one per evaluated domain and split
//! (`eval_loss` set). The `split` column (`valid` or `probe`) is an addition to the DESIGN.md schema:
//! probe and validation losses of a domain must be told apart. The trainer rewrites the file whole at
//! every checkpoint.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::parquet_file::{Columns, Format, optional};
use crate::split::Split;

/// The format version of `metrics.parquet` this build writes and reads.
pub const METRICS_VERSION: u32 = 1;

const FORMAT: Format = Format {
    name: "metrics.parquet",
    version: METRICS_VERSION,
    hint: "retrain the run with this mixlab",
};

/// One row of `metrics.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Optimizer step (1-based: the number of steps done).
    pub step: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Training loss (training rows).
    pub loss: Option<f64>,
    /// `valid` or `probe` (evaluation rows).
    pub split: Option<Split>,
    /// Domain (evaluation rows).
    pub domain: Option<String>,
    /// Evaluation loss (evaluation rows).
    pub eval_loss: Option<f64>,
}

/// The Arrow schema of `metrics.parquet`, with its format version in the metadata.
pub fn metrics_schema() -> SchemaRef {
    FORMAT.tag(Schema::new(vec![
        Field::new("step", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("lr", DataType::Float64, false),
        Field::new("loss", DataType::Float64, true),
        Field::new("split", DataType::Utf8, true),
        Field::new("domain", DataType::Utf8, true),
        Field::new("eval_loss", DataType::Float64, true),
    ]))
}

/// Writes `metrics.parquet` atomically.
///
/// # Errors
/// An I/O or Parquet error naming the file.
///
/// # Example
/// ```
/// use mixlab_artefacts::metrics::{read_metrics, write_metrics, MetricRow};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("metrics.parquet");
/// let row = MetricRow { step: 1, tokens: 64, lr: 1e-3, loss: Some(5.5), split: None, domain: None, eval_loss: None };
/// write_metrics(&path, &[row.clone()])?;
/// assert_eq!(read_metrics(&path)?, [row]);
/// # Ok::<(), mixlab_artefacts::Error>(())
/// ```
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.step))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.tokens))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.lr))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.loss))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.split.map(Split::as_str)),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.domain.as_deref()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.eval_loss))),
    ];
    FORMAT.write(path, metrics_schema(), columns)
}

/// Checks that `path` is a `metrics.parquet` of this version with every column of
/// [`metrics_schema`], reading only its footer (for readers such as the reports' polars scans).
///
/// # Errors
/// As [`read_metrics`].
pub fn check_metrics(path: &Path) -> Result<()> {
    FORMAT.check(path, &metrics_schema())
}

/// Reads `metrics.parquet`.
///
/// # Errors
/// [`crate::Error::Version`] for another format version; [`crate::Error::Parquet`] for an unreadable
/// file or missing columns.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let mut rows = Vec::new();
    for batch in FORMAT.read(path)? {
        let c = Columns {
            batch: &batch,
            path,
            format: FORMAT,
        };
        let (step, tokens, lr, loss) = (
            c.u64s("step")?,
            c.u64s("tokens")?,
            c.f64s("lr")?,
            c.f64s("loss")?,
        );
        let (split, domain, eval_loss) =
            (c.splits("split")?, c.strs("domain")?, c.f64s("eval_loss")?);
        for (i, split) in split.into_iter().enumerate() {
            let text = |a: &StringArray, i| a.value(i).to_owned();
            rows.push(MetricRow {
                step: step.value(i),
                tokens: tokens.value(i),
                lr: lr.value(i),
                loss: optional(&loss, i, Float64Array::value),
                split,
                domain: optional(&domain, i, text),
                eval_loss: optional(&eval_loss, i, Float64Array::value),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_nulls_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let rows = vec![
            MetricRow {
                step: 1,
                tokens: 64,
                lr: 1e-3,
                loss: Some(5.5),
                split: None,
                domain: None,
                eval_loss: None,
            },
            MetricRow {
                step: 1,
                tokens: 64,
                lr: 1e-3,
                loss: None,
                split: Some(Split::Valid),
                domain: Some("code".into()),
                eval_loss: Some(4.25),
            },
        ];
        write_metrics(&path, &rows).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), rows);
    }

    #[test]
    fn another_version_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let future = Format {
            version: 9,
            ..FORMAT
        };
        let schema = future.tag(Schema::new(vec![Field::new(
            "step",
            DataType::UInt64,
            false,
        )]));
        let column: ArrayRef = Arc::new(UInt64Array::from(vec![1u64]));
        future.write(&path, schema, vec![column]).unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(
            err.contains("format version 9") && err.contains("reads version 1"),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_other_columns_is_refused_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        let schema = FORMAT.tag(Schema::new(vec![Field::new("step", DataType::Utf8, false)]));
        let column: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        FORMAT.write(&path, schema, vec![column]).unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(
            err.contains("column \"step\" missing or not UInt64"),
            "{err}"
        );
    }
}
