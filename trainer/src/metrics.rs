//! `metrics.parquet` and `eval.parquet` of a run directory (DESIGN.md, "Run directory").
//!
//! `metrics.parquet` has one row per logged training step (`loss` set, `domain` null) and one per
//! evaluated domain and split (`eval_loss` set). The `split` column (`valid` or `probe`) is an
//! addition to the DESIGN.md schema: probe and validation losses of a domain must be told apart.
//! Files are rewritten whole under a temporary name and renamed, at every checkpoint.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::eval::DomainLoss;

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
    pub split: Option<String>,
    /// Domain (evaluation rows).
    pub domain: Option<String>,
    /// Evaluation loss (evaluation rows).
    pub eval_loss: Option<f64>,
}

fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
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
/// [`Error::Metrics`] or an I/O error naming the file.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.step))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.tokens))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.lr))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.loss))),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.split.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.domain.as_deref()),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.eval_loss))),
    ];
    write_batch(path, metrics_schema(), columns)
}

/// Reads `metrics.parquet` back (to continue it after a resume).
///
/// # Errors
/// [`Error::Metrics`] when the file is unreadable or has another schema.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let mut rows = Vec::new();
    for batch in read_batches(path)? {
        let wrong = || Error::Metrics {
            path: path.to_owned(),
            message: "unexpected columns".into(),
        };
        let u64s = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>().cloned())
                .ok_or_else(wrong)
        };
        let f64s = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
                .ok_or_else(wrong)
        };
        let strs = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(wrong)
        };
        let (step, tokens, lr, loss) = (u64s("step")?, u64s("tokens")?, f64s("lr")?, f64s("loss")?);
        let (split, domain, eval_loss) = (strs("split")?, strs("domain")?, f64s("eval_loss")?);
        for i in 0..batch.num_rows() {
            let opt_f = |a: &Float64Array| (!a.is_null(i)).then(|| a.value(i));
            let opt_s = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_owned());
            rows.push(MetricRow {
                step: step.value(i),
                tokens: tokens.value(i),
                lr: lr.value(i),
                loss: opt_f(&loss),
                split: opt_s(&split),
                domain: opt_s(&domain),
                eval_loss: opt_f(&eval_loss),
            });
        }
    }
    Ok(rows)
}

/// Writes `eval.parquet`: `step, domain, split, loss, perplexity, tokens`.
///
/// # Errors
/// [`Error::Metrics`] or an I/O error naming the file.
pub fn write_eval(path: &Path, step: u64, losses: &[DomainLoss]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("step", DataType::UInt64, false),
        Field::new("domain", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("perplexity", DataType::Float64, false),
        Field::new("tokens", DataType::UInt64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(losses.iter().map(|_| step))),
        Arc::new(StringArray::from_iter_values(
            losses.iter().map(|l| l.domain.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            losses.iter().map(|l| l.split.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            losses.iter().map(|l| l.loss),
        )),
        Arc::new(Float64Array::from_iter_values(
            losses.iter().map(DomainLoss::perplexity),
        )),
        Arc::new(UInt64Array::from_iter_values(
            losses.iter().map(|l| l.tokens),
        )),
    ];
    write_batch(path, schema, columns)
}

/// Reads `eval.parquet` back.
///
/// # Errors
/// [`Error::Metrics`] when the file is unreadable or has another schema.
pub fn read_eval(path: &Path) -> Result<Vec<DomainLoss>> {
    let mut out = Vec::new();
    for batch in read_batches(path)? {
        let wrong = || Error::Metrics {
            path: path.to_owned(),
            message: "unexpected columns".into(),
        };
        let strs = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(wrong)
        };
        let (domain, split) = (strs("domain")?, strs("split")?);
        let loss = batch
            .column_by_name("loss")
            .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
            .ok_or_else(wrong)?;
        let tokens = batch
            .column_by_name("tokens")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>().cloned())
            .ok_or_else(wrong)?;
        for i in 0..batch.num_rows() {
            out.push(DomainLoss {
                domain: domain.value(i).to_owned(),
                split: split.value(i).to_owned(),
                loss: loss.value(i),
                tokens: tokens.value(i),
            });
        }
    }
    Ok(out)
}

fn write_batch(path: &Path, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Metrics {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| err(&e))?;
    let tmp = path.with_extension("parquet.tmp");
    let file = fs_err::File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| err(&e))?;
    writer.write(&batch).map_err(|e| err(&e))?;
    writer.close().map_err(|e| err(&e))?;
    fs_err::rename(&tmp, path)?;
    Ok(())
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let err = |e: &dyn std::fmt::Display| Error::Metrics {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = fs_err::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
        .map_err(|e| err(&e))?
        .build()
        .map_err(|e| err(&e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_round_trip() {
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
                split: Some("valid".into()),
                domain: Some("code".into()),
                eval_loss: Some(4.25),
            },
        ];
        write_metrics(&path, &rows).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), rows);
    }
}
