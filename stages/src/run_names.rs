//! The names of the runs a stage writes beside the run it reads (`runs/a` → `runs/a-int4`), so
//! that a plan knows every run directory before any stage runs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mixlab_artefacts::specialists::read_specialists;

use crate::Usage;
use crate::run_dir::suffixed;

/// The run directories `mixlab quantize --run <run> --qat-steps <qat_steps>` writes, relative to
/// `--out`: the quantization-aware training run (with steps), then the int4 run (last).
///
/// # Example
/// ```
/// use std::path::{Path, PathBuf};
/// use mixlab_stages::run_names::quantize_runs;
///
/// let run = Path::new("runs/a");
/// assert_eq!(quantize_runs(run, 0, false), [PathBuf::from("runs/a-int4")]);
/// assert_eq!(quantize_runs(run, 10, true), [PathBuf::from("runs/a-qat-a8"), PathBuf::from("runs/a-qat-w4a8")]);
/// ```
pub fn quantize_runs(run: &Path, qat_steps: u64, int8_activations: bool) -> Vec<PathBuf> {
    let [latent, quantized] = quantize_run_names(run, qat_steps, int8_activations);
    if qat_steps > 0 {
        vec![latent, quantized]
    } else {
        vec![quantized]
    }
}

/// The default names of the quantization-aware training run and the quantized run: `-qat` and
/// `-qat-int4` (or `-int4` without training) for int4 weights, `-qat-a8` and `-qat-w4a8` (`-w4a8`)
/// with int8 activations too.
pub fn quantize_run_names(run: &Path, qat_steps: u64, int8_activations: bool) -> [PathBuf; 2] {
    let (latent, rounded) = if int8_activations {
        ("-qat-a8", "w4a8")
    } else {
        ("-qat", "int4")
    };
    let quantized = if qat_steps > 0 {
        format!("-qat-{rounded}")
    } else {
        format!("-{rounded}")
    };
    [suffixed(run, latent), suffixed(run, &quantized)]
}

/// The run directories `mixlab merge --base <base> --specialists <file>` writes, relative to
/// `--out`: each specialist's, then the merged run's (at its default name, last).
///
/// # Errors
/// An unreadable or invalid specialists file.
pub fn merge_runs(base: &Path, specialists: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let spec = read_specialists(specialists)
        .context(Usage(format!("--specialists {}", specialists.display())))?;
    let mut runs: Vec<PathBuf> = spec
        .specialist
        .iter()
        .map(|s| suffixed(base, &format!("-{}", s.name)))
        .collect();
    runs.push(suffixed(base, "-merged"));
    Ok(runs)
}
