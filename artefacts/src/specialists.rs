//! The specialists file of `mixlab merge` (and `[run.merge]`): how long the specialists anneal
//! and the mixture each one anneals on.
//!
//! ```toml
//! steps = 200
//! lr = 1e-3            # optional: a tenth of the base run's by default
//!
//! [[specialist]]
//! name = "code"
//! weights = { code = 0.7, prose = 0.3 }
//!
//! [[specialist]]
//! name = "prose"
//! mixture = "prose.toml"   # a single-stage mixture.toml, relative to this file
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mixlab_mixer::schedule::{MixtureSchedule, Provenance};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::mixture::read_mixture;

/// A read and checked specialists file.
#[derive(Debug, Clone, PartialEq)]
pub struct Specialists {
    /// The file, for error messages.
    pub path: PathBuf,
    /// Training steps of each specialist.
    pub steps: u64,
    /// Peak learning rate, decaying to 0; `None`: a tenth of the base run's.
    pub lr: Option<f64>,
    /// The specialists, in merge order; names are distinct and usable as run directory names.
    pub specialist: Vec<Specialist>,
}

/// One `[[specialist]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Specialist {
    /// Names its run directory (`<base>-<name>`).
    pub name: String,
    /// What it anneals on.
    pub mixture: SpecialistMixture,
}

/// Where a specialist's mixture comes from: exactly one of `weights` and `mixture`.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecialistMixture {
    /// `weights = { domain = w, ... }`: unlisted domains get none; scaled to sum to 1.
    Weights(BTreeMap<String, f64>),
    /// `mixture = "file.toml"`: a single-stage `mixture.toml`, relative to the specialists file.
    File(PathBuf),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecialistsToml {
    steps: u64,
    lr: Option<f64>,
    specialist: Vec<SpecialistToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecialistToml {
    name: String,
    weights: Option<BTreeMap<String, f64>>,
    mixture: Option<PathBuf>,
}

/// Reads and checks a specialists file.
///
/// # Errors
/// [`Error::Toml`] naming the file and what is wrong: malformed TOML or unknown keys (line and
/// key), `steps = 0`, no specialist, a name that repeats or cannot name a directory, a specialist
/// with both or neither of `weights` and `mixture`; an I/O error naming the file.
///
/// # Example
/// ```
/// use mixlab_artefacts::specialists::{read_specialists, SpecialistMixture};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("specialists.toml");
/// std::fs::write(&path, "steps = 5\n[[specialist]]\nname = \"code\"\nweights = { code = 1.0 }\n")?;
/// let file = read_specialists(&path)?;
/// assert_eq!((file.steps, file.specialist[0].name.as_str()), (5, "code"));
/// assert!(matches!(file.specialist[0].mixture, SpecialistMixture::Weights(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_specialists(path: &Path) -> Result<Specialists> {
    let text = fs_err::read_to_string(path)?;
    let fail = |message: String| Error::Toml {
        path: path.to_owned(),
        message,
    };
    let file: SpecialistsToml =
        toml::from_str(&text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
    if file.steps == 0 {
        return Err(fail("steps = 0: expected at least 1".into()));
    }
    if file.specialist.is_empty() {
        return Err(fail("no [[specialist]]: expected one or more".into()));
    }
    let mut specialist: Vec<Specialist> = Vec::with_capacity(file.specialist.len());
    for (i, s) in file.specialist.into_iter().enumerate() {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if s.name.is_empty() || !s.name.chars().all(plain) {
            return Err(fail(format!(
                "specialist[{i}].name {:?}: expected letters, digits, '-' or '_' (it names a run directory)",
                s.name
            )));
        }
        if specialist.iter().any(|o| o.name == s.name) {
            return Err(fail(format!("specialist[{i}].name {:?} repeats", s.name)));
        }
        let mixture = match (s.weights, s.mixture) {
            (Some(weights), None) => SpecialistMixture::Weights(weights),
            (None, Some(file)) => SpecialistMixture::File(file),
            _ => {
                return Err(fail(format!(
                    "specialist[{i}] ({}): expected exactly one of weights = {{ ... }} and mixture = \"file.toml\"",
                    s.name
                )));
            }
        };
        specialist.push(Specialist {
            name: s.name,
            mixture,
        });
    }
    Ok(Specialists {
        path: path.to_owned(),
        steps: file.steps,
        lr: file.lr,
        specialist,
    })
}

impl Specialists {
    /// The single-stage mixture `specialist` anneals on, over every domain of `domains` (unlisted
    /// ones get none), scaled to sum to 1.
    ///
    /// # Errors
    /// [`Error::Toml`] naming the specialists file (or the mixture file) for an unknown domain
    /// (with the nearest name), a weight that is not a number ≥ 0, weights summing to 0, or a
    /// mixture file that does not have exactly one stage.
    pub fn mixture_of(
        &self,
        specialist: &Specialist,
        domains: &[String],
    ) -> Result<MixtureSchedule> {
        let fail = |message: String| Error::Toml {
            path: self.path.clone(),
            message: format!("specialist {:?}: {message}", specialist.name),
        };
        let given = match &specialist.mixture {
            SpecialistMixture::Weights(weights) => weights.clone(),
            SpecialistMixture::File(file) => {
                self.single_stage(file).map_err(|e| fail(e.to_string()))?
            }
        };
        let known: Vec<&str> = domains.iter().map(String::as_str).collect();
        for (domain, w) in &given {
            mixlab_mixer::names::position(domain, &known, "weights")
                .map_err(|e| fail(e.to_string()))?;
            if !(w.is_finite() && *w >= 0.0) {
                return Err(fail(format!(
                    "weight {w} of {domain:?}: expected a number ≥ 0"
                )));
            }
        }
        let total: f64 = given.values().sum();
        if total <= 0.0 {
            return Err(fail("its weights sum to 0".into()));
        }
        let weights = domains
            .iter()
            .map(|d| (d.clone(), given.get(d).copied().unwrap_or(0.0) / total))
            .collect();
        let provenance = Provenance {
            method: format!("specialist {}", specialist.name),
            ..Provenance::default()
        };
        Ok(MixtureSchedule::single(weights, provenance))
    }

    /// The weights of a single-stage `mixture.toml` named relative to the specialists file.
    fn single_stage(&self, file: &Path) -> Result<BTreeMap<String, f64>> {
        let path = self.path.parent().unwrap_or(Path::new("")).join(file);
        let schedule = read_mixture(&path)?;
        match <[_; 1]>::try_from(schedule.stage) {
            Ok([only]) => Ok(only.weights),
            Err(stages) => Err(Error::Toml {
                path,
                message: format!(
                    "has {} stages, but a specialist trains on one mixture; give it a single-stage file or weights = {{ ... }}",
                    stages.len()
                ),
            }),
        }
    }
}
