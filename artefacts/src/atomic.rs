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
    let mut file = AtomicFile::create(path)?;
    let value = write(file.as_file_mut()).map_err(naming(path))?;
    file.commit()?;
    Ok(value)
}

/// A file written over time (batch by batch, across awaits) that appears at its path only when
/// [`AtomicFile::commit`] is called, as [`write_atomic`] writes it; dropped uncommitted, it is
/// removed and the path is untouched.
///
/// # Example
/// ```
/// use std::io::Write;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("candidates.parquet");
/// let mut file = mixlab_artefacts::atomic::AtomicFile::create(&path)?;
/// file.as_file_mut().write_all(b"first batch, ")?;
/// assert!(!path.exists());
/// file.as_file_mut().write_all(b"second batch")?;
/// file.commit()?;
/// assert_eq!(std::fs::read(&path)?, b"first batch, second batch");
/// drop(mixlab_artefacts::atomic::AtomicFile::create(&path)?); // abandoned: nothing changes
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: std::path::PathBuf,
}

impl AtomicFile {
    /// Starts the file that will replace `path`, creating its directory.
    ///
    /// # Errors
    /// An I/O error naming the directory.
    pub fn create(path: &Path) -> io::Result<Self> {
        let dir = parent_dir(path);
        fs_err::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(naming(dir))?;
        Ok(Self {
            tmp,
            path: path.to_owned(),
        })
    }

    /// The temporary file, to write to.
    pub fn as_file_mut(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Flushes the content to disk and moves it to its path.
    ///
    /// # Errors
    /// An I/O error naming the path.
    pub fn commit(self) -> io::Result<()> {
        let path = self.path;
        self.tmp.as_file().sync_all().map_err(naming(&path))?;
        self.tmp
            .persist(&path)
            .map_err(|e| naming(&path)(e.error))?;
        sync_dir(parent_dir(&path))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// The directory a file lies in (`.` for a bare name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Removes the temporary files a killed [`write_atomic`] left in `dir` (not recursive); returns
/// their paths. Call it only while holding the directory's [`crate::lock::DirLock`], so that no
/// live writer's temporary file is taken.
///
/// # Errors
/// An I/O error naming the directory or file; a missing directory has no orphans.
///
/// # Example
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join(".metrics.parquet.x1Yz.tmp"), b"half")?;
/// std::fs::write(dir.path().join("metrics.parquet"), b"whole")?;
/// let removed = mixlab_artefacts::atomic::remove_orphans(dir.path())?;
/// assert_eq!(removed, [dir.path().join(".metrics.parquet.x1Yz.tmp")]);
/// assert!(dir.path().join("metrics.parquet").exists());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn remove_orphans(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") && path.is_file() {
            fs_err::remove_file(&path)?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Moves the complete directory `staging` to `target`, replacing an earlier `target` so that a
/// reader opening `target` finds the old or the new directory, never none; the old one is removed.
///
/// On Linux the two directories are swapped in one `renameat2(RENAME_EXCHANGE)`, so a crash at
/// any point leaves a complete `target` (and, at worst, the old set under the `staging` name).
/// Where the file system cannot exchange, `target` is moved aside first, which leaves a moment
/// without it.
///
/// # Errors
/// An I/O error naming the directory.
///
/// # Example
/// ```
/// let dir = tempfile::tempdir()?;
/// let (staging, target) = (dir.path().join("shards.partial"), dir.path().join("shards"));
/// std::fs::create_dir(&target)?;
/// std::fs::write(target.join("manifest.json"), "old")?;
/// std::fs::create_dir(&staging)?;
/// std::fs::write(staging.join("manifest.json"), "new")?;
/// mixlab_artefacts::atomic::replace_dir(&staging, &target)?;
/// assert_eq!(std::fs::read_to_string(target.join("manifest.json"))?, "new");
/// assert!(!staging.exists());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn replace_dir(staging: &Path, target: &Path) -> io::Result<()> {
    let parent = parent_dir(target);
    if target.exists() {
        exchange(staging, target)?;
        sync_dir(parent)?;
        fs_err::remove_dir_all(staging)?;
    } else {
        fs_err::rename(staging, target)?;
    }
    sync_dir(parent)
}

/// Swaps two directories atomically.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(()),
        // The file system cannot exchange (EINVAL) or the kernel predates renameat2 (ENOSYS).
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            exchange_by_renames(a, b)
        }
        Err(e) => Err(naming(b)(e.into())),
    }
}

/// Swaps two directories atomically.
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    exchange_by_renames(a, b)
}

/// Swaps two directories with three renames (not atomic: `b` is briefly absent).
fn exchange_by_renames(a: &Path, b: &Path) -> io::Result<()> {
    let mut aside = b.as_os_str().to_owned();
    aside.push(".old");
    let aside = std::path::PathBuf::from(aside);
    if aside.exists() {
        fs_err::remove_dir_all(&aside)?;
    }
    fs_err::rename(b, &aside)?;
    fs_err::rename(a, b)?;
    fs_err::rename(&aside, a)
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
///
/// # Errors
/// An I/O error naming the directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
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

    #[test]
    fn a_reader_always_finds_a_complete_directory_while_it_is_replaced() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let (staging, target) = (dir.path().join("shards.partial"), dir.path().join("shards"));
        let publish = |version: usize| {
            std::fs::create_dir(&staging).unwrap();
            std::fs::write(staging.join("manifest.json"), version.to_string()).unwrap();
            replace_dir(&staging, &target).unwrap();
        };
        publish(0);
        let done = AtomicBool::new(false);
        let misses = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut misses = 0;
                while !done.load(Ordering::Relaxed) {
                    misses += usize::from(std::fs::read(target.join("manifest.json")).is_err());
                }
                misses
            });
            for version in 1..=300 {
                publish(version);
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap()
        });
        assert_eq!(misses, 0, "a reader found no shard set {misses} times");
        assert_eq!(
            std::fs::read_to_string(target.join("manifest.json")).unwrap(),
            "300"
        );
        assert!(!staging.exists());
    }
}
