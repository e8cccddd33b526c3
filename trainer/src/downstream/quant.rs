//! 4-bit weight quantization: symmetric int4 in groups with one f16 scale each, the rule of GGUF's
//! `Q4_0` blocks (at group size 32 the two are the same numbers), and its post-training
//! application to a model ([`fake_quantize`]: every weight matrix and the embedding rounded to
//! int4 and back; norms stay in full precision).
//!
//! Groups run along each output's input features (a row of the `[out, in]` matrix GGUF and PyTorch
//! store), so a group's scale adapts to one output unit. Within a group of values `x`: `m` is the
//! value of largest magnitude (with its sign), the scale `d = m / −8` rounded to f16, and each value
//! becomes `q = clamp(⌊x/d + 8.5⌋, 0, 15) − 8 ∈ [−8, 7]`, read back as `q·d` (ggml's
//! `quantize_row_q4_0_ref`). The extreme value maps to exactly −8, so no range is wasted on it.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use half::f16;
use serde::{Deserialize, Serialize};

use std::path::Path;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::engine::checkpoint::{load_model, save_weights};
use crate::engine::objective::{MicroBatch, Objective};
use crate::error::{Error, Result};
use crate::export::gguf::{self, Metadata, Precision};
use crate::export::named::Scope;
use crate::model::Model;

/// How weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantConfig {
    /// Weights per scale (32: GGUF's `Q4_0` block).
    pub group_size: usize,
}

impl Default for QuantConfig {
    fn default() -> Self {
        Self { group_size: 32 }
    }
}

impl QuantConfig {
    /// Checks that the group size divides the input features of every weight matrix of `shape`:
    /// the embedding rows, q/k/v and w1/w3 (`d_model`), wo (heads × head size) and w2 (ffn).
    ///
    /// # Errors
    /// [`Error::Config`] naming the group size and the dimension it does not divide.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::config::Preset;
    /// use mixlab_trainer::downstream::quant::QuantConfig;
    /// let tiny = Preset::Tiny.config(64); // d_model 128, ffn 384
    /// assert!(QuantConfig { group_size: 32 }.validate(&tiny).is_ok());
    /// assert!(QuantConfig { group_size: 256 }.validate(&tiny).is_err());
    /// ```
    pub fn validate(&self, shape: &ModelConfig) -> Result<()> {
        let input_features = [
            shape.d_model,
            shape.n_heads * shape.head_dim(),
            shape.ffn_hidden,
        ];
        let group = self.group_size;
        if group == 0 || !group.is_multiple_of(2) {
            return Err(Error::Config(format!(
                "quantization group size {group}: expected a positive even number (two int4 values a byte)"
            )));
        }
        if let Some(d) = input_features.iter().find(|&&d| !d.is_multiple_of(group)) {
            return Err(Error::Config(format!(
                "quantization group size {group} does not divide the model's dimension {d}"
            )));
        }
        Ok(())
    }
}

/// One group quantized: its f16 scale and values in `−8..=7`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantGroup {
    /// `d`: a value reads back as `q·d`.
    pub scale: f16,
    /// `q` of each value.
    pub values: Vec<i8>,
}

/// Quantizes one group by the `Q4_0` rule.
///
/// # Example
/// ```
/// use mixlab_trainer::downstream::quant::{dequantize_group, quantize_group};
/// let group = quantize_group(&[-1.0, 0.5, 0.25, 0.0]);
/// // The largest magnitude (−1) maps to −8, so the scale is 1/8.
/// assert_eq!(group.values, [-8, 4, 2, 0]);
/// assert_eq!(dequantize_group(&group), [-1.0, 0.5, 0.25, 0.0]);
/// ```
pub fn quantize_group(values: &[f32]) -> QuantGroup {
    let extreme = values
        .iter()
        .copied()
        .fold(0.0f32, |m, x| if x.abs() > m.abs() { x } else { m });
    let scale = f16::from_f32(extreme / -8.0);
    let d = scale.to_f32();
    let inverse = if d == 0.0 { 0.0 } else { 1.0 / d };
    let values = values
        .iter()
        .map(|&x| ((x * inverse + 8.5).floor().clamp(0.0, 15.0) as i8) - 8)
        .collect();
    QuantGroup { scale, values }
}

/// The values a group reads back as.
pub fn dequantize_group(group: &QuantGroup) -> Vec<f32> {
    let d = group.scale.to_f32();
    group.values.iter().map(|&q| f32::from(q) * d).collect()
}

/// Rounds every group of `group_size` consecutive values of `values` to int4 and back.
///
/// # Example
/// ```
/// use mixlab_trainer::downstream::quant::fake_quantize_rows;
/// let rounded = fake_quantize_rows(&[0.9, -0.1, 0.3, 0.0, 8.0, 1.0, -3.0, 2.5], 4);
/// // Each group of four has its own scale: the first 0.9/8, the second 8/8.
/// assert_eq!(rounded[4..], [8.0, 1.0, -3.0, 2.0]); // 2.5 lies halfway: ggml rounds it to 2
/// assert!((rounded[2] - 0.3375).abs() < 1e-3);
/// ```
///
/// # Panics
/// When `group_size` does not divide `values.len()` ([`QuantConfig::validate`] checks models).
pub fn fake_quantize_rows(values: &[f32], group_size: usize) -> Vec<f32> {
    assert_eq!(values.len() % group_size, 0, "groups must tile the rows");
    values
        .chunks(group_size)
        .flat_map(|g| dequantize_group(&quantize_group(g)))
        .collect()
}

/// Largest magnitude of an int8 activation: symmetric, so −128 is never used.
const INT8_MAX: f32 = 127.0;

/// Dynamic per-token int8 activation quantization: each row of `x` (one token's features) rounded
/// to the nearest multiple of its own scale `max|row| / 127` and read back, so at most 255 levels
/// per token. Gradients pass straight through to `x` (the straight-through estimator), so a model
/// trains against the rounding it will see.
///
/// # Example
/// ```
/// use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::downstream::quant::fake_quantize_tokens;
/// let x = Tensor::<2>::from_floats([[-254.0, 3.0, 100.4], [1.0, 0.5, 0.001]], &Device::flex());
/// let rounded: Vec<f32> = fake_quantize_tokens(x).into_data().try_to_vec().unwrap();
/// // Row 1: scale 254/127 = 2, so 3 → 4 and 100.4 → 100. Row 2: scale 1/127, so 0.001 → 0.
/// assert_eq!(rounded[..3], [-254.0, 4.0, 100.0]);
/// assert_eq!(rounded[5], 0.0);
/// ```
pub fn fake_quantize_tokens(x: Tensor<2>) -> Tensor<2> {
    let plain = x.clone().detach();
    let scale = plain.clone().abs().max_dim(1).clamp_min(f32::MIN_POSITIVE) / INT8_MAX;
    let rounded = (plain / scale.clone()).round() * scale;
    with_identity_gradient(x, rounded)
}

/// `rounded` in the forward pass, the identity to `x` in the backward pass (Bengio et al. 2013's
/// straight-through estimator); `rounded` must carry no autodiff history.
fn with_identity_gradient<const D: usize>(x: Tensor<D>, rounded: Tensor<D>) -> Tensor<D> {
    x.clone() + (rounded - x.detach())
}

/// `model` with every weight matrix and the embedding rounded to int4 and back (post-training
/// quantization, round to nearest); norms untouched.
///
/// Projections (`[in, out]` here) are grouped along `in`, the embedding (`[vocab, d_model]`) along
/// `d_model`: in both cases along one output's input features.
///
/// # Errors
/// [`Error::Config`] when the group size does not divide a dimension.
pub fn fake_quantize(model: Model, shape: &ModelConfig, config: QuantConfig) -> Result<Model> {
    config.validate(shape)?;
    Ok(Module::map(model, &mut Int4Mapper::new(config, false)))
}

/// Quantization-aware training: the wrapped objective (typically [`Distillation`] from the
/// full-precision model, i.e. self-distillation) computed on the int4-rounded model, with gradients
/// passed straight through the rounding to the full-precision weights that the optimizer updates
/// (Bengio et al. 2013's straight-through estimator). The trained weights stay full precision;
/// round them once more ([`quantize_checkpoint`]) for the int4 model.
///
/// [`Distillation`]: crate::downstream::distill::Distillation
#[derive(Debug)]
pub struct QuantAware<O> {
    inner: O,
    config: QuantConfig,
}

impl<O: Objective> QuantAware<O> {
    /// `inner` on models rounded with `config` (check it with [`QuantConfig::validate`]).
    pub fn new(inner: O, config: QuantConfig) -> Self {
        Self { inner, config }
    }
}

impl<O: Objective> Objective for QuantAware<O> {
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1> {
        let rounded = Module::map(model.clone(), &mut Int4Mapper::new(self.config, true));
        self.inner.loss(&rounded, micro)
    }
}

/// Rounds the model weights in `from` (a checkpoint's `step-N.bpk` of `shape`) to int4 and back
/// and writes them to `to` in the same layout (atomically: a temporary file renamed); with
/// `gguf`, also packs them as int4 GGUF there with its metadata ([`crate::export::gguf::write`]
/// at [`Precision::Q4_0`], group size 32 only) and returns its size in bytes.
///
/// # Errors
/// [`Error::DamagedCheckpoint`] for unreadable weights, [`Error::Config`] for a group size that
/// does not divide the model, [`Error::Checkpoint`] when `to` cannot be written.
pub fn quantize_checkpoint(
    shape: &ModelConfig,
    from: &Path,
    config: QuantConfig,
    to: &Path,
    gguf: Option<(&Path, &Metadata)>,
) -> Result<Option<u64>> {
    let model = load_model(Model::new(shape, &Device::flex()), from)?;
    let packed = match gguf {
        Some((path, metadata)) if config.group_size == gguf::BLOCK => {
            Some(gguf::write(&model, shape, Precision::Q4_0, metadata, path)?)
        }
        _ => None,
    };
    save_weights(fake_quantize(model, shape, config)?, to)?;
    Ok(packed)
}

/// Rounds every 2-D float parameter; tracks the module path to tell projections from the embedding.
struct Int4Mapper {
    group_size: usize,
    /// Keep the gradient path to the full-precision weights (straight-through estimator).
    straight_through: bool,
    scope: Scope,
}

impl Int4Mapper {
    fn new(config: QuantConfig, straight_through: bool) -> Self {
        Self {
            group_size: config.group_size,
            straight_through,
            scope: Scope::default(),
        }
    }
}

impl ModuleMapper for Int4Mapper {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.scope.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D != 2 {
            return param;
        }
        let projection = self.scope.in_projection();
        let (group, straight_through) = (self.group_size, self.straight_through);
        param.map(|tensor| {
            let rounded = rounded_copy(&tensor, projection, group);
            if straight_through {
                with_identity_gradient(tensor, rounded)
            } else {
                rounded
            }
        })
    }
}

/// The int4-rounded values of a 2-D `tensor`, as a constant (no autodiff history).
fn rounded_copy<const D: usize>(tensor: &Tensor<D>, projection: bool, group: usize) -> Tensor<D> {
    let device = tensor.device();
    let [rows, cols] = [tensor.dims()[0], tensor.dims()[D - 1]];
    let plain: Tensor<2> = tensor.clone().detach().reshape([rows, cols]);
    // Groups along the input features: the rows of the transposed projection.
    let oriented = if projection { plain.transpose() } else { plain };
    let values: Vec<f32> = oriented.into_data().try_to_vec().expect("float weights");
    let rounded = fake_quantize_rows(&values, group);
    let shape = if projection {
        [cols, rows]
    } else {
        [rows, cols]
    };
    let out = Tensor::<2>::from_data(TensorData::new(rounded, shape), &device);
    let out = if projection { out.transpose() } else { out };
    out.reshape(param_dims::<D>(rows, cols))
}

/// `[rows, cols]` as the `D`-dimensional shape of a 2-D parameter.
fn param_dims<const D: usize>(rows: usize, cols: usize) -> [usize; D] {
    let mut dims = [1; D];
    dims[0] = rows;
    dims[D - 1] = cols;
    dims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_to_their_own_int8_grid_with_straight_through_gradients() {
        let _rng = crate::test_rng::lock();
        let device = Device::flex().autodiff();
        let values: Vec<f32> = (0..2 * 64)
            .map(|i| ((i * 29 % 97) as f32 - 48.0) * if i < 64 { 0.01 } else { 3.0 })
            .collect();
        let x = Tensor::<2>::from_data(TensorData::new(values.clone(), [2, 64]), &device)
            .require_grad();
        let rounded = fake_quantize_tokens(x.clone());
        let out: Vec<f32> = rounded.clone().into_data().try_to_vec().unwrap();
        for (row, (x, y)) in values.chunks(64).zip(out.chunks(64)).enumerate() {
            let step = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / INT8_MAX;
            for (a, b) in x.iter().zip(y) {
                assert!((a - b).abs() <= step * 0.5 + 1e-6, "row {row}: {a} → {b}");
                let level = b / step;
                assert!((level - level.round()).abs() < 1e-3 && level.abs() <= INT8_MAX);
            }
        }
        // d(Σ w·rounded)/dx = w: the rounding is invisible to the gradient.
        let weights = Tensor::<2>::from_data(TensorData::new(values, [2, 64]), &device);
        let grads = (rounded * weights.clone()).sum().backward();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let expected: Vec<f32> = weights.into_data().try_to_vec().unwrap();
        assert_eq!(grad, expected);
    }

    #[test]
    fn groups_follow_ggml_q4_0_reference_rounding() {
        let _rng = crate::test_rng::lock();
        // Largest magnitude positive: d = 2/−8 = −0.25, so 2.0 ↦ −8 and −2.0 would exceed 7.
        let group = quantize_group(&[2.0, -2.0, 0.3, -0.3, 0.125, 0.0]);
        assert_eq!(group.scale.to_f32(), -0.25);
        // x/d + 8.5 floored: 2 → 0.5 → 0 → −8; −2 → 16.5 → 15 (clamped) → 7; 0.3 → 7.3 → 7 → −1;
        // −0.3 → 9.7 → 9 → 1; 0.125 → 8 → 8 → 0; 0 → 8.5 → 8 → 0.
        assert_eq!(group.values, [-8, 7, -1, 1, 0, 0]);
        assert_eq!(quantize_group(&[0.0; 4]).values, [0, 0, 0, 0]);
    }

    #[test]
    fn rounding_error_is_at_most_half_a_step_except_at_the_clamped_end() {
        let _rng = crate::test_rng::lock();
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) / 17.0)
            .collect();
        let back = fake_quantize_rows(&values, 32);
        for (g, (x, y)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
            let d = quantize_group(x).scale.to_f32().abs();
            for (a, b) in x.iter().zip(y) {
                // A value of the extreme's magnitude and opposite sign is clamped to 7 (one step,
                // plus the f16 rounding of the scale).
                assert!((a - b).abs() <= d * 1.01, "group {g}: {a} → {b} (step {d})");
            }
            let within_half = x.iter().zip(y).filter(|(a, b)| (*a - *b).abs() <= d * 0.51);
            assert!(within_half.count() >= 31, "group {g}");
        }
        // Idempotent: quantized values are exactly representable.
        assert_eq!(fake_quantize_rows(&back, 32), back);
    }

    /// Every float parameter of `model`: dotted path → (shape, values).
    fn parameters(model: &Model) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
        #[derive(Default)]
        struct Collect {
            path: Vec<String>,
            found: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>,
        }
        impl burn::module::ModuleVisitor for Collect {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_owned());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let tensor = param.val();
                let values = tensor.to_data().try_to_vec().unwrap();
                self.found
                    .insert(self.path.join("."), (tensor.dims().to_vec(), values));
            }
        }
        let mut collect = Collect::default();
        model.visit(&mut collect);
        collect.found
    }

    #[test]
    fn a_model_is_rounded_along_input_features_and_its_norms_kept() {
        let _rng = crate::test_rng::lock();
        use crate::config::Preset;
        let shape = Preset::Tiny.config(64);
        let model = Model::new(&shape, &burn::tensor::Device::flex());
        let before = parameters(&model);
        let after = parameters(&fake_quantize(model, &shape, QuantConfig::default()).unwrap());
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        let mut rounded = 0;
        for (path, (dims, values)) in &after {
            let original = &before[path].1;
            if dims.len() == 1 {
                assert_eq!(values, original, "{path}: a norm changed");
                continue;
            }
            rounded += 1;
            let (rows, cols) = (dims[0], dims[1]);
            // One output's input features: a column of a projection ([in, out]), a row of the
            // embedding ([vocab, d_model]).
            let line = |i: usize, v: &[f32]| -> Vec<f32> {
                if path.contains("embedding") {
                    v[i * cols..(i + 1) * cols].to_vec()
                } else {
                    (0..rows).map(|r| v[r * cols + i]).collect()
                }
            };
            let lines = if path.contains("embedding") {
                rows
            } else {
                cols
            };
            for i in 0..lines {
                let expected = fake_quantize_rows(&line(i, original), 32);
                assert_eq!(line(i, values), expected, "{path}, output {i}");
            }
        }
        assert_eq!(
            rounded,
            1 + 7 * shape.n_layers,
            "embedding and seven projections a layer"
        );
    }

    #[test]
    fn quant_aware_training_sees_the_rounded_model_and_updates_every_weight() {
        let _rng = crate::test_rng::lock();
        use crate::config::Preset;
        use crate::data::sampler::MixtureSampler;
        use crate::data::store::DomainDocs;
        use crate::engine::objective::CrossEntropy;
        use crate::model::input::to_model_input;
        use burn::optim::GradientsParams;

        let shape = Preset::Tiny.config(64);
        let device = Device::flex().autodiff();
        let model = Model::new(&shape, &device);
        let docs = vec![DomainDocs::from_tokens("a", vec![(1..40).collect()])];
        let batch = MixtureSampler::new(docs, vec![1.0], 16, 0, 0, false)
            .unwrap()
            .next_batch(2)
            .unwrap();
        let loss = |objective: &dyn Objective, model: &Model| {
            let (input, targets) = to_model_input(&batch, &shape, false, &device);
            objective.loss(
                model,
                MicroBatch {
                    batch: &batch,
                    input,
                    targets,
                },
            )
        };
        let qat = QuantAware::new(CrossEntropy, QuantConfig::default());
        let rounded = fake_quantize(model.clone(), &shape, QuantConfig::default()).unwrap();
        let (seen, expected) = (loss(&qat, &model), loss(&CrossEntropy, &rounded));
        let (seen_value, expected_value) = (
            seen.clone().into_scalar::<f32>(),
            expected.into_scalar::<f32>(),
        );
        assert!(
            (seen_value - expected_value).abs() < 1e-5,
            "{seen_value} vs {expected_value}"
        );
        // Every parameter, the rounded matrices included, gets a gradient through the rounding.
        let grads = GradientsParams::from_grads(seen.backward(), &model);
        assert_eq!(grads.len(), parameters(&model).len());
    }

    #[test]
    fn group_sizes_that_do_not_tile_the_model_are_refused() {
        let _rng = crate::test_rng::lock();
        let shape = crate::config::Preset::Tiny.config(64);
        let err = QuantConfig { group_size: 48 }
            .validate(&shape)
            .unwrap_err()
            .to_string();
        let expected = format!("48 does not divide the model's dimension {}", shape.d_model);
        assert!(err.contains(&expected), "{err}");
        assert!(QuantConfig { group_size: 3 }.validate(&shape).is_err());
        assert!(QuantConfig::default().validate(&shape).is_ok());
    }
}
