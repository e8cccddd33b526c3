//! Durable atomic writes: the one way mixlab writes a file that another stage or a resumed run reads.
//!
//! The content goes to a temporary file in the target's directory (so the rename cannot cross file
//! systems), is flushed to disk (`fsync`), renamed over the target (`tempfile`'s `persist`), and the
//! directory is flushed so the rename itself survives a power cut. A reader sees the old file or the
//! new one, never half of one. Temporary files are named `.<name>.<random>.tmp`, so a killed writer
//! leaves only dot-files that no reader opens.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably, creating the parent directory.
///
/// # Errors
/// An I/O error whose message names the path.
///
/// # Example
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("done");
/// mixlab_artefacts::atomic::write_atomic(&path, b"abc\n")?;
/// assert_eq!(std::fs::read(&path)?, b"abc\n");
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1); // no temporary file left
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], with the content written by `write` (a Parquet writer, a serializer).
///
/// If `write` fails, the temporary file is removed and the target is untouched.
///
/// # Errors
/// The error of `write`, or of the flush and rename, with the path named in the message.
pub fn write_atomic_with<T>(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<T>,
) -> io::Result<T> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs_err::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(naming(dir))?;
    let value = write(tmp.as_file_mut()).map_err(naming(path))?;
    tmp.as_file().sync_all().map_err(naming(path))?;
    tmp.persist(path).map_err(|e| naming(path)(e.error))?;
    sync_dir(dir)?;
    Ok(value)
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(naming(dir))
}

/// Adds the path to an I/O error's message, keeping its kind.
fn naming(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.parquet");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err::<(), _>(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("metrics.parquet: disk full"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["metrics.parquet"]);
    }

    #[test]
    fn creates_the_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/done");
        write_atomic(&path, b"x").unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"x");
    }
}
