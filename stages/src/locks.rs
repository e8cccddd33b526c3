//! The directory locks the writing stages hold (`mixlab_artefacts::lock`), with a warning when a
//! lock is taken over from a killed process.

use std::path::Path;

use mixlab_artefacts::lock::DirLock;

/// Locks `dir` for `stage` for as long as the returned guard lives.
///
/// # Errors
/// Another live mixlab process writing `dir` (its pid, start time and command named), or the lock
/// file cannot be written.
pub fn lock_dir(dir: &Path, stage: &str) -> anyhow::Result<DirLock> {
    let lock = DirLock::acquire(dir, stage)?;
    if let Some(holder) = lock.taken_over() {
        tracing::warn!(
            "{}: taking over from a mixlab {stage} that stopped without finishing ({holder})",
            dir.display()
        );
    }
    Ok(lock)
}
