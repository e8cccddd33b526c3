//! One writer per output directory: an advisory lock on `<dir>/.<stage>.lock`.
//!
//! Two mixlab processes writing the same shard directory or run directory would interleave their
//! artefacts, so every writing stage holds the lock of its directory while it runs. The lock is the
//! operating system's file lock (`flock` on Linux, through `std::fs::File::try_lock`), so it is
//! released when the holder exits for any reason, SIGKILL included: a lock left by a dead process
//! is simply taken over, never a stale lock the user must delete by hand. The file's text names the
//! holder (pid, start time, command line) so that the refused process can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// An error taking a directory lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "{dir}: another mixlab {stage} is writing here ({holder}); wait for it to finish, or stop it"
    )]
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The stage that locks it (`ingest`, `run`, `sweep`, `simulate`).
        stage: String,
        /// Who holds it, as the holder wrote it (pid, start time, command).
        holder: String,
    },
    /// The lock file could not be created, read or written.
    #[error(transparent)]
    File(#[from] io::Error),
}

/// A held directory lock, released on drop (or when the process exits).
///
/// # Example
/// ```
/// use mixlab_artefacts::lock::{DirLock, LockError};
/// let dir = tempfile::tempdir()?;
/// let lock = DirLock::acquire(dir.path(), "run")?;
/// let second = DirLock::acquire(dir.path(), "run").unwrap_err();
/// assert!(matches!(&second, LockError::Held { holder, .. } if holder.contains(&std::process::id().to_string())));
/// drop(lock);
/// assert!(DirLock::acquire(dir.path(), "run").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DirLock {
    file: File,
    taken_over: Option<String>,
}

impl DirLock {
    /// Locks `dir` (created if missing) for `stage`, or fails at once if a live process holds it.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder, or an I/O error naming the lock file.
    pub fn acquire(dir: &Path, stage: &str) -> Result<Self, LockError> {
        fs_err::create_dir_all(dir)?;
        let path = dir.join(format!(".{stage}.lock"));
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(named)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = await_holder(&mut file).map_err(named)?;
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    stage: stage.to_owned(),
                    holder: if holder.is_empty() {
                        "a process that is just starting".to_owned()
                    } else {
                        holder
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(named(e).into()),
        }
        let previous = read_holder(&mut file).map_err(named)?;
        write_holder(&mut file).map_err(named)?;
        Ok(Self {
            file,
            taken_over: (!previous.is_empty()).then_some(previous),
        })
    }

    /// The holder a killed process left in the lock file, if the lock was taken over from one.
    pub fn taken_over(&self) -> Option<&str> {
        self.taken_over.as_deref()
    }
}

impl Drop for DirLock {
    /// Empties the holder text (a clean release) before the lock goes with the file handle.
    fn drop(&mut self) {
        // Failing to clear the text only makes the next holder report a take-over.
        let _ = self.file.set_len(0);
    }
}

/// The holder text in the lock file, trimmed (empty after a clean release).
/// The holder's text of a lock held by another process. A holder writes it right after taking
/// the lock, so an empty file means it is just starting: wait up to half a second for the text
/// (a refusal that names the pid is what a batch scheduler's log needs).
fn await_holder(file: &mut File) -> io::Result<String> {
    for _ in 0..50 {
        let holder = read_holder(file)?;
        if !holder.is_empty() {
            return Ok(holder);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    read_holder(file)
}

fn read_holder(file: &mut File) -> io::Result<String> {
    let mut text = String::new();
    file.rewind()?;
    file.read_to_string(&mut text)?;
    Ok(text.trim().to_owned())
}

/// Replaces the lock file's text with this process's pid, start time and command line.
fn write_holder(file: &mut File) -> io::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    let started = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
    let text = format!(
        "pid {}, started {started}, `{}`\n",
        std::process::id(),
        command.join(" ")
    );
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        // A killed holder leaves its text but no lock (the OS released it with the process).
        std::fs::write(
            dir.path().join(".ingest.lock"),
            "pid 4242, started 2026-01-01 00:00:00 UTC, `mixlab ingest`\n",
        )
        .unwrap();
        let lock = DirLock::acquire(dir.path(), "ingest").unwrap();
        assert_eq!(
            lock.taken_over(),
            Some("pid 4242, started 2026-01-01 00:00:00 UTC, `mixlab ingest`")
        );
        let text = std::fs::read_to_string(dir.path().join(".ingest.lock")).unwrap();
        assert!(
            text.starts_with(&format!("pid {},", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn a_holder_that_is_just_starting_is_named_once_it_has_written_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".run.lock");
        // Another holder: locked, its text written a moment later (as between `try_lock` and
        // `write_holder` of a process starting up).
        let holder = File::create(&path).unwrap();
        holder.try_lock().unwrap();
        let writer = std::thread::spawn({
            let path = path.clone();
            move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::fs::write(&path, "pid 99, started now, `mixlab train`\n").unwrap();
            }
        });
        let err = DirLock::acquire(dir.path(), "run").unwrap_err().to_string();
        writer.join().unwrap();
        assert!(
            err.contains("(pid 99, started now, `mixlab train`)"),
            "{err}"
        );
        drop(holder);
    }

    #[test]
    fn a_clean_release_is_not_reported_as_a_take_over() {
        let dir = tempfile::tempdir().unwrap();
        drop(DirLock::acquire(dir.path(), "run").unwrap());
        assert_eq!(
            DirLock::acquire(dir.path(), "run").unwrap().taken_over(),
            None
        );
    }

    #[test]
    fn the_refusal_names_directory_stage_and_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DirLock::acquire(dir.path(), "sweep").unwrap();
        let message = DirLock::acquire(dir.path(), "sweep")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("another mixlab sweep is writing here (pid "),
            "{message}"
        );
        // Different stages in one directory do not exclude each other.
        assert!(DirLock::acquire(dir.path(), "run").is_ok());
    }
}
