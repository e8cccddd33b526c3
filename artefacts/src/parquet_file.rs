//! Versioned single-batch Parquet files: the shared writer and reader of the Parquet artefacts.
//!
//! The format name and version are stored in the Arrow schema's metadata (`mixlab.format`,
//! `mixlab.format_version`), which Parquet keeps with the file. A file without them predates
//! versioning and is read as version 1.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Float64Type, Schema, SchemaRef, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::atomic::write_atomic_with;
use crate::error::{Error, Result};
use crate::split::Split;

const FORMAT_KEY: &str = "mixlab.format";
const VERSION_KEY: &str = "mixlab.format_version";

/// Which artefact a file is, and the version this build writes and reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// File name used in messages (`metrics.parquet`).
    pub name: &'static str,
    /// The version written and accepted.
    pub version: u32,
    /// How to regenerate a file of another version.
    pub hint: &'static str,
}

impl Format {
    /// `schema` with this format's name and version in its metadata.
    pub fn tag(&self, schema: Schema) -> SchemaRef {
        let metadata = HashMap::from([
            (FORMAT_KEY.to_owned(), self.name.to_owned()),
            (VERSION_KEY.to_owned(), self.version.to_string()),
        ]);
        Arc::new(schema.with_metadata(metadata))
    }

    /// Writes one batch atomically.
    pub fn write(&self, path: &Path, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<()> {
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| self.error(path, e))?;
        write_atomic_with(path, |file| {
            let mut writer =
                ArrowWriter::try_new(file, schema, None).map_err(std::io::Error::other)?;
            writer.write(&batch).map_err(std::io::Error::other)?;
            writer.close().map_err(std::io::Error::other)?;
            Ok(())
        })?;
        Ok(())
    }

    /// Reads all batches, refusing another format version.
    pub fn read(&self, path: &Path) -> Result<Vec<RecordBatch>> {
        self.open(path)?
            .build()
            .map_err(|e| self.error(path, e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.error(path, e))
    }

    /// Checks from the footer alone that `path` is this format (name and version) and has every
    /// column of `expected` with its type, for readers other than [`Format::read`] (the reports'
    /// polars scans).
    pub fn check(&self, path: &Path, expected: &Schema) -> Result<()> {
        let builder = self.open(path)?;
        let found = builder.schema();
        if let Some(name) = found.metadata().get(FORMAT_KEY)
            && name != self.name
        {
            return Err(self.error(path, format!("the file is a {name}")));
        }
        for field in expected.fields() {
            match found.field_with_name(field.name()) {
                Ok(f) if f.data_type() == field.data_type() => {}
                Ok(f) => {
                    let what = format!(
                        "column {} is {}, expected {}",
                        field.name(),
                        f.data_type(),
                        field.data_type()
                    );
                    return Err(self.error(path, what));
                }
                Err(_) => return Err(self.error(path, format!("no column {}", field.name()))),
            }
        }
        Ok(())
    }

    /// The file's reader, after its version is checked.
    fn open(&self, path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
        let file = fs_err::File::open(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
            .map_err(|e| self.error(path, e))?;
        let found = builder.schema().metadata().get(VERSION_KEY).cloned();
        if let Some(found) = found
            && found != self.version.to_string()
        {
            return Err(Error::Version {
                path: path.to_owned(),
                artefact: self.name,
                found,
                expected: self.version,
                hint: self.hint,
            });
        }
        Ok(builder)
    }

    /// A Parquet error naming the file.
    pub fn error(&self, path: &Path, e: impl std::fmt::Display) -> Error {
        Error::Parquet {
            path: path.to_owned(),
            message: format!("{}: {e}", self.name),
        }
    }
}

/// Typed access to a batch's columns by name, with errors naming file and column.
pub(crate) struct Columns<'a> {
    pub batch: &'a RecordBatch,
    pub path: &'a Path,
    pub format: Format,
}

impl Columns<'_> {
    fn missing(&self, name: &str, expected: &str) -> Error {
        self.format.error(
            self.path,
            format!("column {name:?} missing or not {expected}"),
        )
    }

    pub fn u64s(&self, name: &str) -> Result<UInt64Array> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>().cloned())
            .ok_or_else(|| self.missing(name, "UInt64"))
    }

    pub fn f64s(&self, name: &str) -> Result<Float64Array> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
            .ok_or_else(|| self.missing(name, "Float64"))
    }

    /// A column of split names, each parsed (`None` where null).
    pub fn splits(&self, name: &str) -> Result<Vec<Option<Split>>> {
        let names = self.strs(name)?;
        let parse = |text: &str| {
            (text.parse::<Split>())
                .map_err(|e| self.format.error(self.path, format!("{name}: {e}")))
        };
        (0..names.len())
            .map(|i| {
                (!names.is_null(i))
                    .then(|| parse(names.value(i)))
                    .transpose()
            })
            .collect()
    }

    pub fn strs(&self, name: &str) -> Result<StringArray> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>().cloned())
            .ok_or_else(|| self.missing(name, "Utf8"))
    }
}

/// The value at `i`, or `None` when null.
pub(crate) fn optional<A: Array, T>(
    array: &A,
    i: usize,
    value: impl Fn(&A, usize) -> T,
) -> Option<T> {
    (!array.is_null(i)).then(|| value(array, i))
}
