//! Logit distillation: the [`Distillation`] objective, a student trained towards a teacher's
//! next-token distributions.
//!
//! `loss = α·τ²·KL(p_teacher^τ ‖ p_student^τ) + (1 − α)·CE(student, targets)`, averaged over the
//! micro-batch's tokens, with `p^τ = softmax(logits / τ)` (Hinton et al. 2015; the τ² keeps the
//! soft term's gradients on the scale of the hard term's). The teacher is an [`Inference`] (no
//! autodiff: no graph is recorded for it) scoring the very packed batch the student sees, with the
//! same positions and masks. Packed batches hold no padding, so every position counts.

use burn::tensor::Tensor;
use burn::tensor::activation::{log_softmax, softmax};
use serde::{Deserialize, Serialize};

use crate::engine::objective::{MicroBatch, Objective};
use crate::error::{Error, Result};
use crate::inference::Inference;
use crate::kernels;
use crate::model::Model;

/// The distillation settings that change the result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillSettings {
    /// Weight α of the KL term (1: teacher only, 0: plain cross-entropy).
    pub alpha: f64,
    /// Softmax temperature τ of both distributions in the KL term.
    pub temperature: f64,
}

impl Default for DistillSettings {
    fn default() -> Self {
        Self {
            alpha: 0.5,
            temperature: 2.0,
        }
    }
}

impl DistillSettings {
    /// Checks `alpha ∈ [0, 1]` and a finite `temperature > 0`.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::downstream::distill::DistillSettings;
    /// assert!(DistillSettings::default().validate().is_ok());
    /// assert!(DistillSettings { alpha: 1.5, temperature: 2.0 }.validate().is_err());
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting and the accepted range.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::Config(format!(
                "distillation alpha = {}: expected a number from 0 to 1",
                self.alpha
            )));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Config(format!(
                "distillation temperature = {}: expected a positive number",
                self.temperature
            )));
        }
        Ok(())
    }
}

/// The distillation objective: KL to a teacher's softened distribution plus cross-entropy.
///
/// # Example
/// ```
/// use burn::tensor::Device;
/// use mixlab_trainer::config::Preset;
/// use mixlab_trainer::downstream::distill::{DistillSettings, Distillation};
/// use mixlab_trainer::inference::Inference;
/// use mixlab_trainer::model::input::to_model_input;
/// use mixlab_trainer::model::Model;
/// use mixlab_trainer::engine::objective::{MicroBatch, Objective};
/// use mixlab_trainer::data::store::DomainDocs;
/// use mixlab_trainer::data::sampler::MixtureSampler;
/// let config = Preset::Tiny.config(32);
/// let device = Device::flex().autodiff();
/// let student = Model::new(&config, &device);
/// // A student distilled from itself pays nothing for the KL term.
/// let teacher = Inference::of_trained(&student, &config);
/// let settings = DistillSettings { alpha: 1.0, temperature: 2.0 };
/// let objective = Distillation::new(teacher, settings, false)?;
/// let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3]])];
/// let batch = MixtureSampler::new(docs, vec![1.0], 6, 0, 0, false)?.next_batch(2)?;
/// let (input, targets) = to_model_input(&batch, &config, false, &device);
/// let loss = objective.loss(&student, MicroBatch { batch: &batch, input, targets });
/// assert!(loss.into_scalar::<f32>().abs() < 1e-5);
/// # Ok::<(), mixlab_trainer::error::Error>(())
/// ```
#[derive(Debug)]
pub struct Distillation {
    teacher: Inference,
    settings: DistillSettings,
    document_mask: bool,
}

impl Distillation {
    /// Distils from `teacher`; `document_mask` as in the run's `[train]` (the teacher sees the
    /// batches the way the student does).
    ///
    /// # Errors
    /// [`Error::Config`] for settings out of range.
    pub fn new(teacher: Inference, settings: DistillSettings, document_mask: bool) -> Result<Self> {
        settings.validate()?;
        Ok(Self {
            teacher,
            settings,
            document_mask,
        })
    }
}

impl Objective for Distillation {
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1> {
        let DistillSettings { alpha, temperature } = self.settings;
        let logits = model.forward(&micro.input);
        let device = logits.device();
        let teacher = self.teacher.batch_logits(micro.batch, self.document_mask);
        // The teacher's probabilities enter the student's graph as a constant.
        let teacher = softmax(teacher / temperature, 1).into_data();
        let teacher = Tensor::<2>::from_data(teacher, &device);
        let kl = kl_divergence(teacher, logits.clone() / temperature);
        let ce = kernels::cross_entropy(logits, micro.targets).mean();
        kl * (alpha * temperature * temperature) + ce * (1.0 - alpha)
    }
}

/// Mean over rows of `KL(p ‖ softmax(student_logits))`, with `p` the teacher's probabilities.
///
/// # Shapes
/// `p`, `student_logits`: `[tokens, vocab]` → `[1]`.
fn kl_divergence(p: Tensor<2>, student_logits: Tensor<2>) -> Tensor<1> {
    let log_q = log_softmax(student_logits, 1);
    // p·ln p is 0 where p is 0 (the clamp only keeps ln finite there).
    let log_p = p.clone().clamp_min(f32::MIN_POSITIVE).log();
    (p * (log_p - log_q)).sum_dim(1).mean()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::config::Preset;
    use crate::data::sampler::{Batch, MixtureSampler};
    use crate::data::store::DomainDocs;
    use crate::engine::objective::CrossEntropy;
    use crate::model::input::to_model_input;

    fn batch() -> Batch {
        let docs = vec![DomainDocs::from_tokens(
            "a",
            vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8], vec![9, 10, 11, 12]],
        )];
        MixtureSampler::new(docs, vec![1.0], 8, 0, 3, false)
            .unwrap()
            .next_batch(2)
            .unwrap()
    }

    fn loss(objective: &dyn Objective, model: &Model, batch: &Batch) -> f32 {
        let config = Preset::Tiny.config(32);
        let device = Device::flex().autodiff();
        let (input, targets) = to_model_input(batch, &config, false, &device);
        let micro = MicroBatch {
            batch,
            input,
            targets,
        };
        objective.loss(model, micro).into_scalar::<f32>()
    }

    #[test]
    fn the_loss_is_the_weighted_sum_of_the_kl_computed_by_hand_and_cross_entropy() {
        let _rng = crate::test_rng::lock();
        let config = Preset::Tiny.config(32);
        let device = Device::flex().autodiff();
        let (student, teacher) = (Model::new(&config, &device), Model::new(&config, &device));
        let teacher = Inference::of_trained(&teacher, &config);
        let batch = batch();
        let tau = 2.0;
        // The KL by hand, row by row, from both models' logits.
        let t_logits = teacher
            .batch_logits(&batch, false)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let s_logits = Inference::of_trained(&student, &config)
            .batch_logits(&batch, false)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let soft = |row: &[f32]| {
            let z: Vec<f64> = row.iter().map(|&x| f64::from(x) / tau).collect();
            let max = z.iter().copied().fold(f64::MIN, f64::max);
            let sum: f64 = z.iter().map(|x| (x - max).exp()).sum();
            z.iter().map(|x| (x - max).exp() / sum).collect::<Vec<_>>()
        };
        let rows: Vec<f64> = t_logits
            .chunks(32)
            .zip(s_logits.chunks(32))
            .map(|(t, s)| {
                let (p, q) = (soft(t), soft(s));
                p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum()
            })
            .collect();
        let kl = rows.iter().sum::<f64>() / rows.len() as f64;
        assert!(kl > 1e-4, "two initializations should disagree: {kl}");
        let ce = f64::from(loss(&CrossEntropy, &student, &batch));
        for alpha in [0.0, 0.3, 1.0] {
            let settings = DistillSettings {
                alpha,
                temperature: tau,
            };
            let objective = Distillation::new(teacher.clone(), settings, false).unwrap();
            let expected = alpha * tau * tau * kl + (1.0 - alpha) * ce;
            let got = f64::from(loss(&objective, &student, &batch));
            assert!(
                (got - expected).abs() < 1e-4 * expected.max(1.0),
                "α {alpha}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let _rng = crate::test_rng::lock();
        for (alpha, temperature) in [
            (1.5, 2.0),
            (-0.1, 2.0),
            (f64::NAN, 2.0),
            (0.5, 0.0),
            (0.5, f64::INFINITY),
        ] {
            let err = DistillSettings { alpha, temperature }
                .validate()
                .unwrap_err();
            assert!(err.to_string().contains("distillation"), "{err}");
        }
        assert!(DistillSettings::default().validate().is_ok());
    }
}
