//! Run tables: numbers per run with named columns, from CSV or Parquet, rows matched by an index
//! column (RegMix's published tables, and `runs.csv` / `losses.csv` written by `mixlab sweep`).
//!
//! These files are often made by other tools, so they carry no format version: the contract is the
//! header (an index column plus one numeric column per domain or loss).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, Float64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use mixlab_mixer::runs::RunTable;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Tolerance on row sums when rows are rescaled (`normalize`): rounded tables such as RegMix's.
pub const NORMALIZE_TOLERANCE: f64 = 0.01;

/// Which columns of which files make a [`RunTable`].
#[derive(Debug, Clone, Copy)]
pub struct RunTableFiles<'a> {
    /// Mixture weights per run: an index column plus one column per domain.
    pub runs: &'a Path,
    /// Losses per run, with the same index column.
    pub losses: &'a Path,
    /// The index column joining the two.
    pub index: &'a str,
    /// The loss column to model.
    pub target: &'a str,
    /// Rescale rows summing to 1 ± [`NORMALIZE_TOLERANCE`] to exactly 1.
    pub normalize: bool,
}

impl RunTableFiles<'_> {
    /// Joins the two tables on the index column into a validated run table.
    ///
    /// # Errors
    /// [`Error::Table`] for unusable files, a missing target column or a run without a loss row;
    /// [`Error::Runs`] naming the row and column of an invalid weight or loss.
    ///
    /// # Example
    /// ```
    /// use mixlab_artefacts::run_table::RunTableFiles;
    /// let dir = tempfile::tempdir()?;
    /// let (runs, losses) = (dir.path().join("runs.csv"), dir.path().join("losses.csv"));
    /// std::fs::write(&runs, "index,a,b\n1,0.25,0.75\n2,0.5,0.5\n")?;
    /// std::fs::write(&losses, "index,loss\n2,3.5\n1,3.0\n")?;
    /// let files = RunTableFiles { runs: &runs, losses: &losses, index: "index", target: "loss", normalize: false };
    /// let table = files.load()?;
    /// assert_eq!(table.losses.to_vec(), [3.0, 3.5]); // aligned to the runs' order
    /// std::fs::write(&runs, "index,a,b\n1,0.25,0.25\n2,0.5,0.5\n")?;
    /// assert!(files.load().unwrap_err().to_string().contains("row 1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load(&self) -> Result<RunTable> {
        let runs = NumericTable::read(self.runs, self.index)?;
        let losses = NumericTable::read(self.losses, self.index)?;
        let loss_column = losses.column(self.target, self.losses)?;
        let rows = losses.align_to(&runs.ids, self.losses)?;
        let weights: Vec<Vec<f64>> = (0..runs.ids.len())
            .map(|r| runs.values.iter().map(|col| col[r]).collect())
            .collect();
        let losses: Vec<f64> = rows.iter().map(|&r| loss_column[r]).collect();
        let (domains, ids) = (runs.columns, runs.ids);
        let table = if self.normalize {
            RunTable::new_normalized(
                domains,
                ids,
                weights,
                losses,
                self.target,
                NORMALIZE_TOLERANCE,
            )
        } else {
            RunTable::new(domains, ids, weights, losses, self.target)
        };
        table.map_err(|source| Error::Runs {
            files: format!("{} + {}", self.runs.display(), self.losses.display()),
            source,
        })
    }
}

/// A table of numbers with named columns and a row id per row.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericTable {
    /// Name of the index column.
    pub index: String,
    /// Row ids: the index column's values, or 1-based row numbers without one.
    pub ids: Vec<String>,
    /// Column names except the index.
    pub columns: Vec<String>,
    /// Values per column, row-aligned with `ids`; NaN where a cell is empty.
    pub values: Vec<Vec<f64>>,
}

impl NumericTable {
    /// Reads `.parquet` with the Parquet reader and anything else as CSV with a header.
    ///
    /// # Errors
    /// [`Error::Table`] for an empty table, a column that is not numbers or an index value on two
    /// rows; an I/O or Parquet error naming the file.
    pub fn read(path: &Path, index: &str) -> Result<Self> {
        let batches = if path.extension().is_some_and(|e| e == "parquet") {
            read_parquet(path)?
        } else {
            read_csv(path)?
        };
        let Some(schema) = batches.first().map(RecordBatch::schema) else {
            return Err(table_error(path, "the table is empty"));
        };
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let has_index = names.iter().any(|n| n == index);
        let mut table = NumericTable {
            index: index.to_owned(),
            ids: Vec::new(),
            columns: names.iter().filter(|n| *n != index).cloned().collect(),
            values: vec![Vec::new(); names.len() - usize::from(has_index)],
        };
        for batch in &batches {
            table.push_ids(batch, has_index, path)?;
            for (slot, name) in table.columns.iter().enumerate() {
                let numbers = numeric_column(batch, name, path)?;
                table.values[slot].extend(numbers);
            }
        }
        table.check_unique_ids(path)?;
        Ok(table)
    }

    /// Refuses an index value on two rows (one would silently win when the tables are joined).
    fn check_unique_ids(&self, path: &Path) -> Result<()> {
        let mut first_row: HashMap<&str, usize> = HashMap::with_capacity(self.ids.len());
        for (row, id) in self.ids.iter().enumerate() {
            if let Some(earlier) = first_row.insert(id, row) {
                return Err(table_error(
                    path,
                    format!(
                        "index {:?} = {id:?} on data rows {} and {}; each run needs one row",
                        self.index,
                        earlier + 1,
                        row + 1
                    ),
                ));
            }
        }
        Ok(())
    }

    fn push_ids(&mut self, batch: &RecordBatch, has_index: bool, path: &Path) -> Result<()> {
        if !has_index {
            let start = self.ids.len();
            self.ids
                .extend((start..start + batch.num_rows()).map(|i| (i + 1).to_string()));
            return Ok(());
        }
        let column = batch
            .column_by_name(&self.index)
            .ok_or_else(|| table_error(path, format!("no index column {:?}", self.index)))?;
        let text = arrow::compute::cast(column, &DataType::Utf8)
            .map_err(|e| table_error(path, format!("index column {:?}: {e}", self.index)))?;
        let text = text.as_string::<i32>();
        self.ids
            .extend((0..text.len()).map(|i| text.value(i).to_owned()));
        Ok(())
    }

    /// The values of a column.
    ///
    /// # Errors
    /// [`Error::Table`] listing the columns when there is no such column.
    pub fn column(&self, name: &str, path: &Path) -> Result<&[f64]> {
        let at = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            table_error(
                path,
                format!("no column {name:?}; columns: {}", self.columns.join(", ")),
            )
        })?;
        Ok(&self.values[at])
    }

    /// For each id of `ids`, the row of `self` holding it.
    ///
    /// # Errors
    /// [`Error::Table`] naming the first id `self` lacks.
    pub fn align_to(&self, ids: &[String], path: &Path) -> Result<Vec<usize>> {
        let position: HashMap<&str, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        ids.iter()
            .map(|id| {
                position.get(id.as_str()).copied().ok_or_else(|| {
                    table_error(
                        path,
                        format!("no row with index {id:?} (present in the runs table)"),
                    )
                })
            })
            .collect()
    }

    /// Writes the table as CSV (index column first, values with 6 decimals) atomically.
    ///
    /// # Errors
    /// An I/O error naming the file.
    ///
    /// # Example
    /// ```
    /// use mixlab_artefacts::run_table::NumericTable;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("runs.csv");
    /// let table = NumericTable {
    ///     index: "index".into(),
    ///     ids: vec!["0".into(), "1".into()],
    ///     columns: vec!["code".into(), "prose".into()],
    ///     values: vec![vec![0.25, 1.0], vec![0.75, 0.0]],
    /// };
    /// table.write_csv(&path)?;
    /// assert_eq!(std::fs::read_to_string(&path)?, "index,code,prose\n0,0.250000,0.750000\n1,1.000000,0.000000\n");
    /// assert_eq!(NumericTable::read(&path, "index")?.values, table.values);
    /// # Ok::<(), mixlab_artefacts::Error>(())
    /// ```
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut text = format!("{},{}\n", self.index, self.columns.join(","));
        for (row, id) in self.ids.iter().enumerate() {
            let cells: Vec<String> = self
                .values
                .iter()
                .map(|c| format!("{:.6}", c[row]))
                .collect();
            let _ = writeln!(text, "{id},{}", cells.join(","));
        }
        write_atomic(path, text.as_bytes())?;
        Ok(())
    }
}

fn table_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Table {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn numeric_column(batch: &RecordBatch, name: &str, path: &Path) -> Result<Vec<f64>> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| table_error(path, format!("column {name:?} missing in a later batch")))?;
    // Not the safe cast: it would turn text such as "x" into nulls, i.e. silently into NaN.
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let numbers =
        arrow::compute::cast_with_options(column, &DataType::Float64, &strict).map_err(|e| {
            table_error(
                path,
                format!(
                    "column {name:?} is {}, expected numbers ({e})",
                    column.data_type()
                ),
            )
        })?;
    let numbers = numbers.as_primitive::<Float64Type>();
    Ok((0..numbers.len())
        .map(|i| {
            if numbers.is_null(i) {
                f64::NAN
            } else {
                numbers.value(i)
            }
        })
        .collect())
}

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = fs_err::File::open(path)?;
    let parquet_error = |e: &dyn std::fmt::Display| Error::Parquet {
        path: path.to_owned(),
        message: format!("not a readable Parquet table: {e}"),
    };
    ParquetRecordBatchReaderBuilder::try_new(file.into_parts().0)
        .and_then(|b| b.build())
        .map_err(|e| parquet_error(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| parquet_error(&e))
}

fn read_csv(path: &Path) -> Result<Vec<RecordBatch>> {
    let csv_error =
        |e: &dyn std::fmt::Display| table_error(path, format!("not a CSV file with a header: {e}"));
    let file = fs_err::File::open(path)?;
    let (schema, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(std::io::BufReader::new(file), Some(1000))
        .map_err(|e| csv_error(&e))?;
    let file = fs_err::File::open(path)?;
    arrow::csv::ReaderBuilder::new(Arc::new(schema))
        .with_header(true)
        .build(std::io::BufReader::new(file))
        .map_err(|e| csv_error(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| csv_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_by_index_and_missing_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs.csv");
        std::fs::write(&runs, "index,a,b\n7,0.5,0.5\n3,1.0,0.0\n").unwrap();
        let losses = dir.path().join("losses.csv");
        std::fs::write(&losses, "index,loss\n3,2.0\n7,\n").unwrap();
        let r = NumericTable::read(&runs, "index").unwrap();
        let l = NumericTable::read(&losses, "index").unwrap();
        assert_eq!(l.align_to(&r.ids, &losses).unwrap(), [1, 0]);
        assert!(l.column("loss", &losses).unwrap()[1].is_nan());
        let err = l.column("nope", &losses).unwrap_err().to_string();
        assert!(err.contains("no column \"nope\"; columns: loss"), "{err}");
    }

    #[test]
    fn text_columns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "index,a\n1,x\n").unwrap();
        let err = NumericTable::read(&path, "index").unwrap_err().to_string();
        assert!(
            err.contains("column \"a\" is Utf8, expected numbers"),
            "{err}"
        );
    }

    #[test]
    fn a_duplicated_index_names_both_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        std::fs::write(&path, "index,a\n1,0.5\n2,0.5\n1,0.7\n").unwrap();
        let err = NumericTable::read(&path, "index").unwrap_err().to_string();
        assert!(
            err.contains("runs.csv: index \"index\" = \"1\" on data rows 1 and 3"),
            "{err}"
        );
    }
}
