//! `eval.parquet` of a run directory: the final per-domain losses (`step, domain, split, loss,
//! perplexity, tokens`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::parquet_file::{Columns, Format};
use crate::split::Split;

/// The format version of `eval.parquet` this build writes and reads.
pub const EVAL_VERSION: u32 = 1;

const FORMAT: Format = Format {
    name: "eval.parquet",
    version: EVAL_VERSION,
    hint: "re-evaluate the run with `mixlab eval` or retrain it",
};

/// Mean loss of one domain on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainLoss {
    /// Domain name.
    pub domain: String,
    /// `valid` or `probe`.
    pub split: Split,
    /// Mean token cross-entropy (nats).
    pub loss: f64,
    /// Tokens evaluated.
    pub tokens: u64,
}

impl DomainLoss {
    /// Perplexity `exp(loss)`.
    ///
    /// # Example
    /// ```
    /// use mixlab_artefacts::eval::DomainLoss;
    /// use mixlab_artefacts::split::Split;
    /// let l = DomainLoss { domain: "code".into(), split: Split::Valid, loss: 0.0, tokens: 8 };
    /// assert_eq!(l.perplexity(), 1.0);
    /// ```
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }
}

/// The Arrow schema of `eval.parquet`, with its format version in the metadata.
pub fn eval_schema() -> SchemaRef {
    FORMAT.tag(Schema::new(vec![
        Field::new("step", DataType::UInt64, false),
        Field::new("domain", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("perplexity", DataType::Float64, false),
        Field::new("tokens", DataType::UInt64, false),
    ]))
}

/// Writes `eval.parquet` atomically: the losses of the model at `step`.
///
/// # Errors
/// An I/O or Parquet error naming the file.
pub fn write_eval(path: &Path, step: u64, losses: &[DomainLoss]) -> Result<()> {
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
    FORMAT.write(path, eval_schema(), columns)
}

/// Checks that `path` is an `eval.parquet` of this version with every column of
/// [`eval_schema`], reading only its footer (for readers such as the reports' polars scans).
///
/// # Errors
/// As [`read_eval`].
pub fn check_eval(path: &Path) -> Result<()> {
    FORMAT.check(path, &eval_schema())
}

/// Reads `eval.parquet`.
///
/// # Errors
/// [`crate::Error::Version`] for another format version; [`crate::Error::Parquet`] for an unreadable
/// file or missing columns.
///
/// # Example
/// ```
/// use mixlab_artefacts::eval::{read_eval, write_eval, DomainLoss};
/// use mixlab_artefacts::split::Split;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("eval.parquet");
/// let loss = DomainLoss { domain: "code".into(), split: Split::Valid, loss: 2.5, tokens: 512 };
/// write_eval(&path, 300, &[loss.clone()])?;
/// assert_eq!(read_eval(&path)?, [loss]);
/// # Ok::<(), mixlab_artefacts::Error>(())
/// ```
pub fn read_eval(path: &Path) -> Result<Vec<DomainLoss>> {
    let mut out = Vec::new();
    for batch in FORMAT.read(path)? {
        let c = Columns {
            batch: &batch,
            path,
            format: FORMAT,
        };
        let (domain, split, loss, tokens) = (
            c.strs("domain")?,
            c.splits("split")?,
            c.f64s("loss")?,
            c.u64s("tokens")?,
        );
        for (i, split) in split.into_iter().enumerate() {
            out.push(DomainLoss {
                domain: domain.value(i).to_owned(),
                split: split.ok_or_else(|| FORMAT.error(path, "a null split"))?,
                loss: loss.value(i),
                tokens: tokens.value(i),
            });
        }
    }
    Ok(out)
}
