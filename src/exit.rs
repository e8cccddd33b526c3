//! Exit codes: 0 success; 1 a stage failed on its inputs or at run time; 2 usage or configuration
//! error, found before any work started.

use std::fmt;

/// Marks an error as a usage or configuration error (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The process exit code for an error.
pub fn code_for(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|cause| {
        cause.is::<UsageError>()
            || matches!(
                cause.downcast_ref::<mixlab_ingest::Error>(),
                Some(mixlab_ingest::Error::Config(_))
            )
    });
    if usage { 2 } else { 1 }
}
