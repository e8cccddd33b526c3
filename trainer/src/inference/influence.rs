//! What an influence estimate needs from a checkpoint: the gradient of a batch's mean token loss
//! with respect to every parameter, flattened, and the per-coordinate scaling AdamW applies to it
//! (`1/(√v̂ + ε)` from the checkpoint's optimizer state), in the same order.
//!
//! A step of the proxy on data `x` moves the weights by about `−η·P·g_x` (P the preconditioner);
//! to first order that changes a target's loss by `−η·(P·g_x)·g_target`. [`Checkpoint::gradient`]
//! and [`Checkpoint::preconditioner`] give both factors.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{ModelConfig, TrainConfig};
use crate::data::sampler::Batch;
use crate::engine::checkpoint::{CheckpointFiles, load_model};
use crate::error::{Error, Result};
use crate::inference::Inference;
use crate::model::Model;
use crate::model::input::to_model_input;

/// A checkpoint's model on an autodiff device, for gradients of its parameters.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::inference::influence::Checkpoint;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::data::store::DomainDocs;
/// use mixlab_trainer::data::sampler::MixtureSampler;
/// let config = Preset::Tiny.config(40);
/// let checkpoint = Checkpoint::of(Model::new(&config, &Device::flex().autodiff()), &config);
/// let docs = DomainDocs::from_tokens("a", vec![(1..30).collect()]);
/// let batch = MixtureSampler::new(vec![docs], vec![1.0], 8, 39, 0, false)?.next_batch(2)?;
/// let g = checkpoint.gradient(&batch, false);
/// assert_eq!(g.len(), checkpoint.parameter_count());
/// assert!(g.iter().any(|&x| x != 0.0));
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
#[derive(Debug)]
pub struct Checkpoint {
    model: Model,
    config: ModelConfig,
    device: Device,
}

impl Checkpoint {
    /// Loads the weights of `files` into a model of `config`.
    ///
    /// # Errors
    /// [`Error::DamagedCheckpoint`] when the weights are missing or of another shape.
    pub fn load(config: &ModelConfig, files: &CheckpointFiles) -> Result<Self> {
        let device = Device::flex().autodiff();
        let model = load_model(Model::new(config, &device), &files.model)?;
        Ok(Self::of(model, config))
    }

    /// Wraps a model already on an autodiff device (its weights are shared, not copied).
    pub fn of(model: Model, config: &ModelConfig) -> Self {
        let device = model
            .devices()
            .into_iter()
            .next()
            .unwrap_or_else(|| Device::flex().autodiff());
        Self {
            model,
            config: config.clone(),
            device,
        }
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Mean token loss of `batch` through the no-autodiff path (to check predicted changes).
    pub fn loss(&self, batch: &Batch, document_mask: bool) -> f64 {
        let losses =
            Inference::of_trained(&self.model, &self.config).token_losses(batch, document_mask);
        losses.iter().map(|&l| f64::from(l)).sum::<f64>() / losses.len().max(1) as f64
    }

    /// The gradient of `batch`'s mean token loss with respect to every parameter, flattened in
    /// the model's parameter order ([`Checkpoint::parameter_count`] numbers).
    pub fn gradient(&self, batch: &Batch, document_mask: bool) -> Vec<f32> {
        let (input, targets) = to_model_input(batch, &self.config, document_mask, &self.device);
        let loss = self.model.token_losses(&input, targets).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let mut flat = Flatten {
            grads: &grads,
            out: Vec::with_capacity(self.parameter_count()),
        };
        self.model.visit(&mut flat);
        flat.out
    }

    /// Parameters in the model (the length of every flattened vector).
    pub fn parameter_count(&self) -> usize {
        self.model.num_params()
    }

    /// AdamW's per-coordinate scale `1/(√v̂ + ε)` from the optimizer state in `optimizer` (saved
    /// with these weights by [`crate::engine::checkpoint::save`]), flattened like [`Checkpoint::gradient`];
    /// `v̂ = v/(1 − β₂ᵗ)` with the state's own step count t.
    ///
    /// # Errors
    /// [`Error::DamagedCheckpoint`] when the file cannot be read or lacks a parameter's second
    /// moment.
    pub fn preconditioner(&self, optimizer: &Path, train: &TrainConfig) -> Result<Vec<f32>> {
        let moments = SecondMoments::read(optimizer)?;
        let mut visit = Precondition {
            moments: &moments,
            beta2: train.beta2,
            eps: train.eps,
            out: Vec::with_capacity(self.parameter_count()),
            missing: None,
        };
        self.model.visit(&mut visit);
        match visit.missing {
            Some(id) => Err(Error::DamagedCheckpoint {
                path: optimizer.to_owned(),
                message: format!("no AdamW second moment for parameter {id}"),
            }),
            None => Ok(visit.out),
        }
    }

    /// The model moved by `−step·direction` (a flattened vector as [`Checkpoint::gradient`]'s):
    /// the update a first-order prediction is checked against.
    ///
    /// # Panics
    /// When `direction` has another length than [`Checkpoint::parameter_count`].
    pub fn moved(&self, direction: &[f32], step: f32) -> Checkpoint {
        assert_eq!(
            direction.len(),
            self.parameter_count(),
            "one number per parameter"
        );
        let mut mover = Move {
            direction,
            offset: 0,
            step,
        };
        let model = self.model.clone().map(&mut mover);
        Checkpoint::of(model, &self.config)
    }
}

/// Each parameter's AdamW second moment and step count, by parameter id.
struct SecondMoments {
    moments: HashMap<u64, Vec<f32>>,
    steps: HashMap<u64, i32>,
}

impl SecondMoments {
    /// Reads the burnpack optimizer record written by burn's `ModuleOptimizer::save`: tensors
    /// named `"{param_id}.….moment_2"` and scalars `"{param_id}.….time"`.
    fn read(path: &Path) -> Result<Self> {
        let damaged = |message: String| Error::DamagedCheckpoint {
            path: path.to_owned(),
            message,
        };
        let reader = burn_pack::Reader::from_file(path).map_err(|e| damaged(e.to_string()))?;
        let id_of = |name: &str| name.split('.').next().and_then(|id| id.parse::<u64>().ok());
        let steps = reader
            .scalars()
            .iter()
            .filter(|(name, _)| name.ends_with(".time"))
            .filter_map(|(name, value)| Some((id_of(name)?, i32::try_from(*value).ok()?)))
            .collect();
        let mut moments = HashMap::new();
        for tensor in reader.into_tensors().map_err(|e| damaged(e.to_string()))? {
            let (name, dtype, _, param_id, bytes) =
                tensor.into_parts().map_err(|e| damaged(e.to_string()))?;
            let Some(id) = param_id.filter(|_| name.ends_with(".moment_2")) else {
                continue;
            };
            if dtype != burn_pack::DType::F32 {
                return Err(damaged(format!("{name}: expected f32, found {dtype:?}")));
            }
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            moments.insert(id, values);
        }
        Ok(Self { moments, steps })
    }
}

/// Collects gradients in visit order (zeros for a parameter without one).
struct Flatten<'a> {
    grads: &'a GradientsParams,
    out: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match self.grads.get::<D>(param.id) {
            Some(g) => self.out.extend(g.into_data().iter::<f32>()),
            None => self.out.extend(std::iter::repeat_n(
                0.0,
                param.val().dims().iter().product(),
            )),
        }
    }
}

/// `1/(√v̂ + ε)` per coordinate, in visit order.
struct Precondition<'a> {
    moments: &'a SecondMoments,
    beta2: f32,
    eps: f32,
    out: Vec<f32>,
    missing: Option<u64>,
}

impl ModuleVisitor for Precondition<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id = param.id.val();
        let n: usize = param.val().dims().iter().product();
        match self.moments.moments.get(&id).filter(|v| v.len() == n) {
            Some(v) => {
                let t = self.moments.steps.get(&id).copied().unwrap_or(1).max(1);
                let correction = 1.0 - self.beta2.powi(t);
                self.out.extend(
                    v.iter()
                        .map(|&v| 1.0 / ((v / correction).sqrt() + self.eps)),
                );
            }
            None => {
                self.missing.get_or_insert(id);
                self.out.extend(std::iter::repeat_n(0.0, n));
            }
        }
    }
}

/// Moves each parameter by `−step·direction` (its slice of the flattened vector).
struct Move<'a> {
    direction: &'a [f32],
    offset: usize,
    step: f32,
}

impl burn::module::ModuleMapper for Move<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.val().dims();
        let n: usize = dims.iter().product();
        let slice = &self.direction[self.offset..self.offset + n];
        self.offset += n;
        param.map(|tensor| {
            let data = TensorData::new(slice.to_vec(), dims);
            let delta = Tensor::<D>::from_data(data, &tensor.device());
            tensor.sub(delta.mul_scalar(self.step))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::data::sampler::MixtureSampler;
    use crate::data::store::DomainDocs;
    use crate::engine::optim::optimizer;

    fn batch(seed: u64, offset: u32) -> Batch {
        let docs: Vec<Vec<u32>> = (0..8)
            .map(|d| (0..30).map(|t| 1 + (t * 7 + d * 3 + offset) % 38).collect())
            .collect();
        MixtureSampler::new(
            vec![DomainDocs::from_tokens("a", docs)],
            vec![1.0],
            16,
            39,
            seed,
            false,
        )
        .unwrap()
        .next_batch(4)
        .unwrap()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    /// A small step along the preconditioned gradient of one batch changes another batch's loss as
    /// the first-order prediction `−η·(P·g_x)·g_target` says: same sign, within 10 %. The change is
    /// measured as a central difference (half the loss change from a step back to a step forward),
    /// which cancels the second-order term of the curvature at the random initialisation.
    #[test]
    fn a_preconditioned_step_changes_the_target_loss_as_predicted() {
        let _rng = crate::test_rng::lock();
        let config = Preset::Tiny.config(40);
        let device = Device::flex().autodiff();
        device.seed(3);
        let train = TrainConfig::default();
        let dir = tempfile::tempdir().unwrap();
        let files = CheckpointFiles::at(dir.path(), 1);
        // One real AdamW step, so the optimizer state has second moments to read back.
        let model = Model::new(&config, &device);
        let mut optim = optimizer(&train);
        let warm = Checkpoint::of(model.clone(), &config);
        let (input, targets) = to_model_input(&batch(0, 0), &config, false, &device);
        let loss = warm.model().token_losses(&input, targets).mean();
        let grads = GradientsParams::from_grads(loss.backward(), warm.model());
        let model = optim.step(1e-3, model, grads);
        model.clone().save_file(&files.model).unwrap();
        optim.save(&files.optimizer).unwrap();

        let checkpoint = Checkpoint::load(&config, &files).unwrap();
        let p = checkpoint.preconditioner(&files.optimizer, &train).unwrap();
        assert_eq!(p.len(), checkpoint.parameter_count());
        assert!(p.iter().all(|&x| x.is_finite() && x > 0.0));
        let (train_batch, target) = (batch(1, 0), batch(2, 5));
        let g = checkpoint.gradient(&train_batch, false);
        let g_target = checkpoint.gradient(&target, false);
        let direction: Vec<f32> = g.iter().zip(&p).map(|(g, p)| g * p).collect();
        // A step small enough to be first order (AdamW's scale is large where v̂ is small, so
        // even small steps move some weights far): a predicted change of 2e-4 nats, which f32
        // losses (about 1e-6 apart near 4) still resolve to half a per cent.
        let slope = dot(&direction, &g_target);
        let eta = (2e-4 / slope.abs()) as f32;
        let predicted = -f64::from(eta) * slope;
        let realized = (checkpoint.moved(&direction, eta).loss(&target, false)
            - checkpoint.moved(&direction, -eta).loss(&target, false))
            / 2.0;
        assert!(
            predicted.abs() > 1e-6 && (realized / predicted - 1.0).abs() < 0.1,
            "predicted {predicted:e}, realized {realized:e}"
        );
    }

    #[test]
    fn a_record_without_a_parameter_is_a_damaged_checkpoint() {
        let _rng = crate::test_rng::lock();
        let config = Preset::Tiny.config(40);
        let dir = tempfile::tempdir().unwrap();
        let files = CheckpointFiles::at(dir.path(), 0);
        let model = Model::new(&config, &Device::flex().autodiff());
        model.clone().save_file(&files.model).unwrap();
        // A fresh optimizer has no state for any parameter.
        optimizer(&TrainConfig::default())
            .save(&files.optimizer)
            .unwrap();
        let checkpoint = Checkpoint::load(&config, &files).unwrap();
        let err = checkpoint
            .preconditioner(&files.optimizer, &TrainConfig::default())
            .unwrap_err();
        assert!(err.to_string().contains("second moment"), "{err}");
    }
}
