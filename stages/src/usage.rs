//! The marker of usage and configuration errors.

use std::fmt;

/// Marks an error as a usage or configuration error (the binary exits 2). Attach it as context
/// (`result.context(Usage(..))`) so the underlying cause stays in the chain, or raise it alone.
///
/// # Example
/// ```
/// use anyhow::Context;
/// use mixlab_stages::Usage;
///
/// let parsed: anyhow::Result<u64> = "x".parse::<u64>().context(Usage("--steps x".into()));
/// let err = parsed.unwrap_err();
/// assert!(err.downcast_ref::<Usage>().is_some());
/// assert_eq!(format!("{err:#}"), "--steps x: invalid digit found in string");
/// ```
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}
