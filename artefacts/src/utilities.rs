//! The Scalable Data Mixer's utility estimates: `utilities.parquet` (per domain and target:
//! `domain, target, checkpoint_step, utility, stderr, n_samples`) and the per-document estimates
//! behind them, `document_utilities.parquet` (`domain, doc_id, source, tokens, target,
//! checkpoint_step, utility`), so a user can see which documents of a domain help or hurt.
//!
//! Sign convention: a positive utility means training on the data lowers the target's loss. A
//! `checkpoint_step` of null marks the estimate over all checkpoints (weighted by step); the target
//! [`JOINT_TARGET`] is the weighted sum over targets.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use mixlab_mixer::staged::JointUtilities;

use crate::error::Result;
use crate::parquet_file::{Columns, Format, optional};

/// The format version of `utilities.parquet` and `document_utilities.parquet`.
pub const UTILITIES_VERSION: u32 = 1;

/// The target name of the weighted sum over all targets.
pub const JOINT_TARGET: &str = "joint";

const DOMAINS: Format = Format {
    name: "utilities.parquet",
    version: UTILITIES_VERSION,
    hint: "re-run `mixlab simulate`",
};

const DOCUMENTS: Format = Format {
    name: "document_utilities.parquet",
    version: UTILITIES_VERSION,
    hint: "re-run `mixlab simulate`",
};

/// A domain's utility for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainUtility {
    /// Domain name.
    pub domain: String,
    /// Target name, or [`JOINT_TARGET`].
    pub target: String,
    /// The checkpoint the estimate is from; `None` over all checkpoints.
    pub checkpoint_step: Option<u64>,
    /// Token-weighted mean utility of the domain's sampled documents.
    pub utility: f64,
    /// Bootstrap standard error of `utility`.
    pub stderr: f64,
    /// Documents sampled.
    pub n_samples: u64,
}

/// One sampled document's utility for one target at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentUtility {
    /// Domain name.
    pub domain: String,
    /// The document's id in the shards.
    pub doc_id: u64,
    /// The document's source label.
    pub source: String,
    /// Tokens of the document that were scored.
    pub tokens: u64,
    /// Target name.
    pub target: String,
    /// The checkpoint.
    pub checkpoint_step: u64,
    /// Utility (positive: helps lower the target's loss).
    pub utility: f64,
}

/// The estimate over all checkpoints of `domain`'s utility for `target` among `rows`, if any.
///
/// # Example
/// ```
/// use mixlab_artefacts::utilities::{overall, DomainUtility, JOINT_TARGET};
/// let row = |step| DomainUtility {
///     domain: "code".into(), target: JOINT_TARGET.into(), checkpoint_step: step,
///     utility: if step.is_some() { 1.0 } else { 2.0 }, stderr: 0.0, n_samples: 8,
/// };
/// let rows = [row(Some(100)), row(None)];
/// assert_eq!(overall(&rows, "code", JOINT_TARGET).map(|u| u.utility), Some(2.0));
/// assert!(overall(&rows, "math", JOINT_TARGET).is_none());
/// ```
pub fn overall<'a>(
    rows: &'a [DomainUtility],
    domain: &str,
    target: &str,
) -> Option<&'a DomainUtility> {
    rows.iter()
        .find(|u| u.domain == domain && u.target == target && u.checkpoint_step.is_none())
}

/// The joint utilities among `rows` (target [`JOINT_TARGET`]): over all checkpoints, in the rows'
/// domain order, and per checkpoint (NaN where a domain lacks a checkpoint's row).
///
/// # Example
/// ```
/// use mixlab_artefacts::utilities::{joint_utilities, DomainUtility, JOINT_TARGET};
/// let row = |domain: &str, step, utility| DomainUtility {
///     domain: domain.into(), target: JOINT_TARGET.into(), checkpoint_step: step,
///     utility, stderr: 0.0, n_samples: 8,
/// };
/// let rows = [row("code", Some(100), 1.0), row("code", None, 2.0), row("prose", None, 3.0)];
/// let joint = joint_utilities(&rows);
/// assert_eq!((joint.domains.len(), joint.overall[1], joint.steps[0]), (2, 3.0, 100));
/// assert!(joint.by_step[0][1].is_nan() && !joint.has_every_checkpoint());
/// ```
pub fn joint_utilities(rows: &[DomainUtility]) -> JointUtilities {
    let joint = rows.iter().filter(|u| u.target == JOINT_TARGET);
    let (domains, overall): (Vec<String>, Vec<f64>) = joint
        .clone()
        .filter(|u| u.checkpoint_step.is_none())
        .map(|u| (u.domain.clone(), u.utility))
        .unzip();
    let mut steps: Vec<u64> = joint.clone().filter_map(|u| u.checkpoint_step).collect();
    steps.sort_unstable();
    steps.dedup();
    let by_step = steps
        .iter()
        .map(|&step| {
            let at = |d: &String| {
                joint
                    .clone()
                    .find(|u| &u.domain == d && u.checkpoint_step == Some(step))
                    .map_or(f64::NAN, |u| u.utility)
            };
            domains.iter().map(at).collect()
        })
        .collect();
    JointUtilities {
        domains,
        overall,
        steps,
        by_step,
    }
}

/// The Arrow schema of `utilities.parquet`.
pub fn utilities_schema() -> SchemaRef {
    DOMAINS.tag(Schema::new(vec![
        Field::new("domain", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("checkpoint_step", DataType::UInt64, true),
        Field::new("utility", DataType::Float64, false),
        Field::new("stderr", DataType::Float64, false),
        Field::new("n_samples", DataType::UInt64, false),
    ]))
}

/// The Arrow schema of `document_utilities.parquet`.
pub fn document_utilities_schema() -> SchemaRef {
    DOCUMENTS.tag(Schema::new(vec![
        Field::new("domain", DataType::Utf8, false),
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("tokens", DataType::UInt64, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("checkpoint_step", DataType::UInt64, false),
        Field::new("utility", DataType::Float64, false),
    ]))
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

/// Writes `utilities.parquet` atomically.
///
/// # Errors
/// An I/O or Parquet error naming the file.
pub fn write_utilities(path: &Path, rows: &[DomainUtility]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.domain.as_str())),
        strings(rows.iter().map(|r| r.target.as_str())),
        Arc::new(UInt64Array::from_iter(
            rows.iter().map(|r| r.checkpoint_step),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.utility),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.stderr),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.n_samples),
        )),
    ];
    DOMAINS.write(path, utilities_schema(), columns)
}

/// Checks that `path` is a `utilities.parquet` of this version with every column of
/// [`utilities_schema`], reading only its footer (for readers such as the reports' polars scans).
///
/// # Errors
/// As [`read_utilities`].
pub fn check_utilities(path: &Path) -> Result<()> {
    DOMAINS.check(path, &utilities_schema())
}

/// Reads `utilities.parquet`.
///
/// # Errors
/// [`crate::Error::Version`] for another format version; [`crate::Error::Parquet`] for an unreadable
/// file or missing columns.
///
/// # Example
/// ```
/// use mixlab_artefacts::utilities::{read_utilities, write_utilities, DomainUtility};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("utilities.parquet");
/// let row = DomainUtility {
///     domain: "code".into(), target: "humaneval".into(), checkpoint_step: None,
///     utility: 0.8, stderr: 0.1, n_samples: 64,
/// };
/// write_utilities(&path, &[row.clone()])?;
/// assert_eq!(read_utilities(&path)?, [row]);
/// # Ok::<(), mixlab_artefacts::Error>(())
/// ```
pub fn read_utilities(path: &Path) -> Result<Vec<DomainUtility>> {
    let mut out = Vec::new();
    for batch in DOMAINS.read(path)? {
        let c = Columns {
            batch: &batch,
            path,
            format: DOMAINS,
        };
        let (domain, target, step) = (
            c.strs("domain")?,
            c.strs("target")?,
            c.u64s("checkpoint_step")?,
        );
        let (utility, stderr, n) = (c.f64s("utility")?, c.f64s("stderr")?, c.u64s("n_samples")?);
        for i in 0..batch.num_rows() {
            out.push(DomainUtility {
                domain: domain.value(i).to_owned(),
                target: target.value(i).to_owned(),
                checkpoint_step: optional(&step, i, UInt64Array::value),
                utility: utility.value(i),
                stderr: stderr.value(i),
                n_samples: n.value(i),
            });
        }
    }
    Ok(out)
}

/// Writes `document_utilities.parquet` (or one checkpoint's part of it) atomically.
///
/// # Errors
/// An I/O or Parquet error naming the file.
pub fn write_document_utilities(path: &Path, rows: &[DocumentUtility]) -> Result<()> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.domain.as_str())),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.doc_id))),
        strings(rows.iter().map(|r| r.source.as_str())),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.tokens))),
        strings(rows.iter().map(|r| r.target.as_str())),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.checkpoint_step),
        )),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.utility),
        )),
    ];
    DOCUMENTS.write(path, document_utilities_schema(), columns)
}

/// Reads `document_utilities.parquet`.
///
/// # Errors
/// As [`read_utilities`].
///
/// # Example
/// ```
/// use mixlab_artefacts::utilities::{read_document_utilities, write_document_utilities, DocumentUtility};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("document_utilities.parquet");
/// let row = DocumentUtility {
///     domain: "code".into(), doc_id: 7, source: "a.jsonl".into(), tokens: 90,
///     target: "humaneval".into(), checkpoint_step: 100, utility: -0.2,
/// };
/// write_document_utilities(&path, &[row.clone()])?;
/// assert_eq!(read_document_utilities(&path)?, [row]);
/// # Ok::<(), mixlab_artefacts::Error>(())
/// ```
pub fn read_document_utilities(path: &Path) -> Result<Vec<DocumentUtility>> {
    let mut out = Vec::new();
    for batch in DOCUMENTS.read(path)? {
        let c = Columns {
            batch: &batch,
            path,
            format: DOCUMENTS,
        };
        let (domain, doc_id, source, tokens) = (
            c.strs("domain")?,
            c.u64s("doc_id")?,
            c.strs("source")?,
            c.u64s("tokens")?,
        );
        let (target, step, utility) = (
            c.strs("target")?,
            c.u64s("checkpoint_step")?,
            c.f64s("utility")?,
        );
        for i in 0..batch.num_rows() {
            out.push(DocumentUtility {
                domain: domain.value(i).to_owned(),
                doc_id: doc_id.value(i),
                source: source.value(i).to_owned(),
                tokens: tokens.value(i),
                target: target.value(i).to_owned(),
                checkpoint_step: step.value(i),
                utility: utility.value(i),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_steps_round_trip_and_other_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("utilities.parquet");
        let rows = vec![
            DomainUtility {
                domain: "noise".into(),
                target: JOINT_TARGET.into(),
                checkpoint_step: None,
                utility: -1.5,
                stderr: 0.25,
                n_samples: 32,
            },
            DomainUtility {
                domain: "code".into(),
                target: "humaneval".into(),
                checkpoint_step: Some(300),
                utility: 2.0,
                stderr: 0.5,
                n_samples: 32,
            },
        ];
        write_utilities(&path, &rows).unwrap();
        assert_eq!(read_utilities(&path).unwrap(), rows);
        let other = Format {
            version: UTILITIES_VERSION + 1,
            ..DOMAINS
        };
        let schema = other.tag(utilities_schema().as_ref().clone());
        let columns = (0..6)
            .map(|i| arrow::array::new_empty_array(schema.field(i).data_type()))
            .collect();
        other.write(&path, schema, columns).unwrap();
        let err = read_utilities(&path).unwrap_err().to_string();
        assert!(
            err.contains("utilities.parquet") && err.contains("mixlab simulate"),
            "{err}"
        );
    }
}
