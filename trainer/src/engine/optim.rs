//! The optimizer: AdamW with decay on matrices only, and clipping by the global gradient norm.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::config::TrainConfig;
use crate::model::Model;

/// Builds AdamW with decay on matrices only: norms and embeddings are in a no-decay group.
pub fn optimizer(train: &TrainConfig) -> ModuleOptimizer {
    let adamw = |weight_decay: f64| {
        AdamWConfig::new()
            .with_beta_1(train.beta1)
            .with_beta_2(train.beta2)
            .with_epsilon(train.eps)
            .with_weight_decay(weight_decay as f32)
    };
    adamw(train.weight_decay).init().with_group(
        ParamGroup::from_any_predicates(vec!["norm", "embedding"]),
        adamw(0.0).build(),
        None,
    )
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (burn's own clipping is per
/// tensor, which changes the update direction).
pub(crate) fn clip_global_norm(
    model: &Model,
    mut grads: GradientsParams,
    max_norm: f32,
) -> GradientsParams {
    // Sums stay on the device; one read of the total per step instead of one per parameter.
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let squares = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(total) => total + squares,
                    None => squares,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut norm = SquaredNorm {
        grads: &grads,
        total: None,
    };
    model.visit(&mut norm);
    let total = norm.total.map_or(0.0, |t| t.into_scalar::<f32>().sqrt());
    if total > max_norm {
        model.visit(&mut Scale {
            grads: &mut grads,
            factor: max_norm / (total + 1e-6),
        });
    }
    grads
}
