//! `mixture.toml` (DESIGN.md, "Mixture schedule"): the file behind [`MixtureSchedule`].
//!
//! The schedule's types and validation belong to `mixlab-mixer`; this module owns the file: a
//! top-level `format_version` (absent in files written before versioning: read as 1), then the
//! `[[stage]]` tables and `[provenance]`.

use std::path::Path;

use mixlab_mixer::schedule::{MixtureSchedule, Provenance, Stage};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// The format version of `mixture.toml` this build writes and reads.
pub const MIXTURE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixtureFile {
    #[serde(default = "legacy_version")]
    format_version: u32,
    stage: Vec<Stage>,
    provenance: Provenance,
}

fn legacy_version() -> u32 {
    1
}

/// Reads a `mixture.toml`. Weights are checked against the shards' domains later, when a run
/// resolves the schedule ([`MixtureSchedule::validate`]).
///
/// # Errors
/// [`Error::Toml`] naming line and key for malformed files or unknown keys, or saying that the
/// file has no stage; [`Error::Version`] for
/// another format version; an I/O error naming the path.
///
/// # Example
/// ```
/// use mixlab_artefacts::mixture::{read_mixture, write_mixture};
/// use mixlab_mixer::schedule::MixtureSchedule;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("mixture.toml");
/// let schedule = MixtureSchedule::uniform(&["code", "prose"]);
/// write_mixture(&path, &schedule)?;
/// assert!(std::fs::read_to_string(&path)?.starts_with("format_version = 1\n"));
/// assert_eq!(read_mixture(&path)?, schedule);
/// # Ok::<(), mixlab_artefacts::Error>(())
/// ```
pub fn read_mixture(path: &Path) -> Result<MixtureSchedule> {
    let text = fs_err::read_to_string(path)?;
    let toml_error = |e: toml::de::Error| Error::Toml {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    };
    let table: toml::Table = toml::from_str(&text).map_err(toml_error)?;
    if let Some(found) = table.get("format_version")
        && found.as_integer() != Some(i64::from(MIXTURE_VERSION))
    {
        return Err(Error::Version {
            path: path.to_owned(),
            artefact: "mixture.toml",
            found: found.to_string(),
            expected: MIXTURE_VERSION,
            hint: "write it again with `mixlab mix`",
        });
    }
    let file: MixtureFile = toml::from_str(&text).map_err(toml_error)?;
    if file.stage.is_empty() {
        return Err(Error::Toml {
            path: path.to_owned(),
            message: "no stage: expected at least one [[stage]] table with its weights".to_owned(),
        });
    }
    Ok(MixtureSchedule {
        stage: file.stage,
        provenance: file.provenance,
    })
}

/// Writes a `mixture.toml` atomically, with the current format version.
///
/// # Errors
/// An I/O error naming the path.
pub fn write_mixture(path: &Path, schedule: &MixtureSchedule) -> Result<()> {
    let file = MixtureFile {
        format_version: MIXTURE_VERSION,
        stage: schedule.stage.clone(),
        provenance: schedule.provenance.clone(),
    };
    let text = toml::to_string_pretty(&file).map_err(|e| Error::Toml {
        path: path.to_owned(),
        message: format!("cannot serialize the schedule: {e}"),
    })?;
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixture.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn files_without_a_version_are_read_as_version_1() {
        let (_dir, path) = write(
            "[[stage]]\nname = \"main\"\nweights = { a = 1.0 }\n[provenance]\nmethod = \"uniform\"\n",
        );
        let s = read_mixture(&path).unwrap();
        assert_eq!(s.stage[0].weights["a"], 1.0);
    }

    #[test]
    fn another_version_is_refused_naming_both() {
        let (_dir, path) = write(
            "format_version = 2\n[[stage]]\nname = \"main\"\nweights = { a = 1.0 }\n[provenance]\nmethod = \"x\"\n",
        );
        let err = read_mixture(&path).unwrap_err().to_string();
        assert!(
            err.contains("format version 2") && err.contains("reads version 1"),
            "{err}"
        );
    }

    #[test]
    fn a_schedule_without_stages_is_refused() {
        let (_dir, path) = write("stage = []\n[provenance]\nmethod = \"uniform\"\n");
        let err = read_mixture(&path).unwrap_err();
        assert!(err.is_user_input());
        let message = err.to_string();
        assert!(
            message.contains("mixture.toml") && message.contains("at least one [[stage]]"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let (_dir, path) = write("[[stage]]\nname = \"main\"\nweight = { a = 1.0 }\n");
        let err = read_mixture(&path).unwrap_err();
        assert!(err.is_user_input());
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
