//! Numeric tables from CSV or Parquet files, columns matched by name and rows by an index column
//! (the run tables of `regress`, `mix` and `sweep`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::exit::UsageError;

/// A table of numbers with named columns and a row id per row.
#[derive(Debug, Clone)]
pub struct NumericTable {
    /// The file it came from (for messages).
    pub path: String,
    /// Row ids: the index column's values, or 1-based row numbers without one.
    pub ids: Vec<String>,
    /// Column names except the index.
    pub columns: Vec<String>,
    /// Values per column, row-aligned with `ids`; NaN where a cell is empty.
    pub values: Vec<Vec<f64>>,
}

impl NumericTable {
    /// Reads `.parquet` with the Parquet reader and anything else as CSV with a header.
    pub fn read(path: &Path, index: &str) -> anyhow::Result<Self> {
        let batches = if path.extension().is_some_and(|e| e == "parquet") {
            let file = fs_err::File::open(path)?;
            ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
                .and_then(|b| b.build())
                .with_context(|| format!("{}: not a readable Parquet file", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: reading Parquet", path.display()))?
        } else {
            read_csv(path)?
        };
        let schema = batches.first().map(RecordBatch::schema);
        let Some(schema) = schema else {
            bail!(UsageError(format!(
                "{}: the table is empty",
                path.display()
            )))
        };
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let has_index = names.iter().any(|n| n == index);
        let mut table = NumericTable {
            path: path.display().to_string(),
            ids: Vec::new(),
            columns: names.iter().filter(|n| *n != index).cloned().collect(),
            values: vec![Vec::new(); names.len() - usize::from(has_index)],
        };
        for batch in &batches {
            if has_index {
                let col = arrow::compute::cast(
                    batch.column_by_name(index).expect("index present"),
                    &DataType::Utf8,
                )?;
                let col = col.as_string::<i32>();
                table
                    .ids
                    .extend((0..col.len()).map(|i| col.value(i).to_owned()));
            } else {
                let start = table.ids.len();
                table
                    .ids
                    .extend((start..start + batch.num_rows()).map(|i| (i + 1).to_string()));
            }
            for (slot, name) in table.columns.iter().enumerate() {
                let column = batch.column_by_name(name).expect("column from the schema");
                let numbers = arrow::compute::cast(column, &DataType::Float64).map_err(|_| {
                    UsageError(format!(
                        "{}: column {name:?} is {}, expected numbers",
                        path.display(),
                        column.data_type()
                    ))
                })?;
                let numbers = numbers.as_primitive::<Float64Type>();
                table.values[slot].extend((0..numbers.len()).map(|i| {
                    if numbers.is_null(i) {
                        f64::NAN
                    } else {
                        numbers.value(i)
                    }
                }));
            }
        }
        Ok(table)
    }

    /// The values of a column.
    pub fn column(&self, name: &str) -> anyhow::Result<&[f64]> {
        let at = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            UsageError(format!(
                "{}: no column {name:?}; columns: {}",
                self.path,
                self.columns.join(", ")
            ))
        })?;
        Ok(&self.values[at])
    }

    /// Rows of `self` re-ordered to follow `ids`.
    pub fn align_to(&self, ids: &[String]) -> anyhow::Result<Vec<usize>> {
        let position: HashMap<&str, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        ids.iter()
            .map(|id| {
                position.get(id.as_str()).copied().ok_or_else(|| {
                    UsageError(format!(
                        "{}: no row with index {id:?} (present in the runs table)",
                        self.path
                    ))
                    .into()
                })
            })
            .collect()
    }
}

fn read_csv(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file =
        fs_err::File::open(path).map_err(|e| UsageError(format!("cannot read the table: {e}")))?;
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::BufReader::new(file), Some(1000))
        .with_context(|| format!("{}: not a CSV file with a header", path.display()))?;
    let file = fs_err::File::open(path)?;
    let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
        .with_header(true)
        .build(std::io::BufReader::new(file))
        .with_context(|| format!("{}: reading CSV", path.display()))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: reading CSV", path.display()))
}
