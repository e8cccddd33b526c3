//! The error type of `mixlab-mixer`.

/// Errors from validating run tables, fitting models and searching the simplex.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A run table is malformed: the row (run id) and column say where, the message what was expected.
    #[error("row {row}, column {column:?}: {message}")]
    Table {
        /// The run id (index column value) or 1-based row number.
        row: String,
        /// The column involved.
        column: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// An argument is out of range (empty table, k larger than the sample count, infeasible bounds).
    #[error("{0}")]
    Invalid(String),
    /// A numerical fit failed (singular system, optimizer error).
    #[error("fit failed: {0}")]
    Fit(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
