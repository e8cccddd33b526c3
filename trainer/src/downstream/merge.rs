//! Merging models of one shape by a weighted average of every parameter (a "model soup"; the
//! report merges specialists annealed from one checkpoint this way).

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::engine::checkpoint::load_model;
use crate::error::{Error, Result};
use crate::export::named::{Exported, model_from, parameters};
use crate::model::Model;

/// `Σᵢ wᵢ θᵢ` parameter by parameter, with the weights scaled to sum to 1.
///
/// # Errors
/// [`Error::Config`] for no model, a weight count other than the model count, a negative or
/// non-finite weight, or weights summing to 0.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::downstream::merge::average;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::export::named::parameters;
/// let shape = Preset::Tiny.config(16);
/// let device = Device::flex();
/// let (a, b) = (Model::new(&shape, &device), Model::new(&shape, &device));
/// // All the weight on one model gives that model back.
/// let merged = average(&[a.clone(), b], &[2.0, 0.0], &shape, &device)?;
/// assert_eq!(parameters(&merged), parameters(&a));
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
pub fn average(
    models: &[Model],
    weights: &[f64],
    shape: &ModelConfig,
    device: &Device,
) -> Result<Model> {
    let scaled = normalized(weights, models.len())?;
    let mut sum: BTreeMap<String, Exported> = BTreeMap::new();
    for (model, &w) in models.iter().zip(&scaled) {
        for (name, p) in parameters(model) {
            let entry = sum.entry(name).or_insert_with(|| Exported {
                dims: p.dims.clone(),
                values: vec![0.0; p.values.len()],
            });
            for (s, v) in entry.values.iter_mut().zip(&p.values) {
                *s += (w * f64::from(*v)) as f32;
            }
        }
    }
    model_from(shape, device, sum).map_err(|missing| {
        Error::Config(format!(
            "the models differ in shape from {shape:?}: {}",
            missing.join(", ")
        ))
    })
}

/// Models of one shape loaded from checkpoints, to be merged with one set of weights or several.
#[derive(Debug)]
pub struct Ingredients {
    models: Vec<Model>,
    shape: ModelConfig,
    device: Device,
}

impl Ingredients {
    /// Loads the weights files (`step-N.bpk` layout) of models of `shape`.
    ///
    /// # Errors
    /// [`Error::DamagedCheckpoint`] for a file that does not load into `shape`.
    pub fn load(shape: &ModelConfig, paths: &[PathBuf]) -> Result<Self> {
        let device = Device::flex();
        let models = paths
            .iter()
            .map(|p| load_model(Model::new(shape, &device), p))
            .collect::<Result<_>>()?;
        Ok(Self {
            models,
            shape: shape.clone(),
            device,
        })
    }

    /// How many models there are.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Their [`average`] with `weights`.
    ///
    /// # Errors
    /// As [`average`].
    pub fn merged(&self, weights: &[f64]) -> Result<Model> {
        average(&self.models, weights, &self.shape, &self.device)
    }
}

/// `weights` scaled to sum to 1, checked against `count` models.
fn normalized(weights: &[f64], count: usize) -> Result<Vec<f64>> {
    if count == 0 || weights.len() != count {
        return Err(Error::Config(format!(
            "{} merge weights for {count} models: expected one weight per model",
            weights.len()
        )));
    }
    if let Some(bad) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(Error::Config(format!(
            "merge weight {bad}: expected a finite number ≥ 0"
        )));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(Error::Config("merge weights sum to 0".into()));
    }
    Ok(weights.iter().map(|w| w / total).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn every_parameter_is_the_weighted_mean() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(12);
        let device = Device::flex();
        device.seed(1);
        let models: Vec<Model> = (0..3).map(|_| Model::new(&shape, &device)).collect();
        let merged = average(&models, &[1.0, 2.0, 1.0], &shape, &device).unwrap();
        let each: Vec<_> = models.iter().map(parameters).collect();
        for (i, (name, p)) in parameters(&merged).into_iter().enumerate() {
            assert_eq!(name, each[0][i].0);
            for (j, value) in p.values.iter().enumerate() {
                let expected = 0.25 * each[0][i].1.values[j]
                    + 0.5 * each[1][i].1.values[j]
                    + 0.25 * each[2][i].1.values[j];
                assert!((value - expected).abs() < 1e-6, "{name}[{j}]");
            }
        }
    }

    #[test]
    fn bad_weights_are_refused() {
        let _rng = crate::test_rng::lock();
        let shape = Preset::Tiny.config(12);
        let device = Device::flex();
        let models = vec![Model::new(&shape, &device), Model::new(&shape, &device)];
        for weights in [
            vec![1.0],
            vec![1.0, -1.0],
            vec![0.0, 0.0],
            vec![f64::NAN, 1.0],
        ] {
            let err = average(&models, &weights, &shape, &device).unwrap_err();
            assert!(err.is_config(), "{err}");
        }
    }
}
