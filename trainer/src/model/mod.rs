//! A MobileLLM-Pro-style decoder: RMSNorm pre-norm, RoPE, grouped-query attention with interleaved
//! local (sliding-window) and global layers, SwiGLU feed-forward, no biases, tied embeddings.
//!
//! The forward pass is split at the final hidden state ([`Model::hidden`] then [`Model::logits`]) so
//! the simulator can take per-document gradients of the output layer in closed form, and every
//! entry point works on a plain (non-autodiff) model from [`burn::module::Module::valid`] for teachers
//! and evaluation.

pub mod input;
pub mod mask;
pub mod rope;

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ModelConfig;
use crate::downstream::quant;
use crate::kernels::{self, KeyStarts, Positions};
use crate::model::mask::AttentionMasks;
use crate::model::rope::Rope;

/// Tokens per block of logits when losses are computed without autodiff.
const EVAL_LOGIT_ROWS: usize = 512;

/// Standard deviation of the normal initialisation of every weight (GPT-2 / Llama practice).
const INIT_STD: f64 = 0.02;

/// A bias-free linear map `x · W`.
#[derive(Module, Debug)]
pub struct Projection {
    /// `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// Inputs rounded to int8 per token first ([`ModelConfig::int8_activations`]).
    int8_input: bool,
}

impl Projection {
    fn new(d_in: usize, d_out: usize, c: &ModelConfig, device: &Device) -> Self {
        let weight = Initializer::Normal {
            mean: 0.0,
            std: INIT_STD,
        }
        .init([d_in, d_out], device);
        Self {
            weight,
            int8_input: c.int8_activations,
        }
    }

    /// # Shapes
    /// `x`: `[batch, seq, d_in]` → `[batch, seq, d_out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d_in] = x.dims();
        let w = self.weight.val();
        let d_out = w.dims()[1];
        let x = x.reshape([b * t, d_in]);
        let x = if self.int8_input {
            quant::fake_quantize_tokens(x)
        } else {
            x
        };
        kernels::matmul(x, w).reshape([b, t, d_out])
    }
}

/// Grouped-query self-attention with rotary positions.
#[derive(Module, Debug)]
pub struct Attention {
    wq: Projection,
    wk: Projection,
    wv: Projection,
    wo: Projection,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(c: &ModelConfig, device: &Device) -> Self {
        let hd = c.head_dim();
        Self {
            wq: Projection::new(c.d_model, c.n_heads * hd, c, device),
            wk: Projection::new(c.d_model, c.n_kv_heads * hd, c, device),
            wv: Projection::new(c.d_model, c.n_kv_heads * hd, c, device),
            wo: Projection::new(c.n_heads * hd, c.d_model, c, device),
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
        }
    }

    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`, `positions`: `[batch, seq]`, `keys`: `batch · seq` starts
    /// - output: `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        positions: &Positions,
        keys: &KeyStarts,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, kv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        // Heads stay in the projections' `[batch, seq, heads, dim]` layout: no transposes.
        let q = self.wq.forward(x.clone()).reshape([b, t, h, hd]);
        let k = self.wk.forward(x.clone()).reshape([b, t, kv, hd]);
        let v = self.wv.forward(x).reshape([b, t, kv, hd]);
        let q = rope.apply(q, positions);
        let k = rope.apply(k, positions);
        let out = kernels::attention(q, k, v, keys);
        self.wo.forward(out.reshape([b, t, h * hd]))
    }
}

/// SwiGLU feed-forward: `w2(silu(w1 x) ⊙ w3 x)`.
#[derive(Module, Debug)]
pub struct FeedForward {
    w1: Projection,
    w3: Projection,
    w2: Projection,
}

impl FeedForward {
    fn new(c: &ModelConfig, device: &Device) -> Self {
        Self {
            w1: Projection::new(c.d_model, c.ffn_hidden, c, device),
            w3: Projection::new(c.d_model, c.ffn_hidden, c, device),
            w2: Projection::new(c.ffn_hidden, c.d_model, c, device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.w2.forward(kernels::swiglu(
            self.w1.forward(x.clone()),
            self.w3.forward(x),
        ))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct Block {
    attn_norm: RmsNorm,
    attention: Attention,
    ffn_norm: RmsNorm,
    ffn: FeedForward,
    /// Global layers attend to the whole context; local ones within the sliding window.
    pub global: bool,
}

impl Block {
    fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        positions: &Positions,
        masks: &AttentionMasks,
    ) -> Tensor<3> {
        let keys = if self.global {
            &masks.global
        } else {
            &masks.local
        };
        let x = x.clone()
            + self
                .attention
                .forward(kernels::rms_norm(x, &self.attn_norm), rope, positions, keys);
        x.clone() + self.ffn.forward(kernels::rms_norm(x, &self.ffn_norm))
    }
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Model {
    embedding: Embedding,
    layers: Vec<Block>,
    norm: RmsNorm,
    rope: Rope,
}

/// Token ids, positions and masks of one batch, on the model's device.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// `[batch, seq]`.
    pub tokens: Tensor<2, Int>,
    /// `[batch, seq]`: running positions (restart per document with document masking).
    pub positions: Positions,
    /// Masks for global and local layers.
    pub masks: AttentionMasks,
}

impl Model {
    /// A freshly initialised model (weights N(0, 0.02), norms 1). Seed the device first for
    /// reproducible weights.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let embedding = EmbeddingConfig::new(config.vocab_size, config.d_model)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: INIT_STD,
            })
            .init(device);
        let layers = config
            .global_layer_flags()
            .into_iter()
            .map(|global| Block {
                attn_norm: RmsNormConfig::new(config.d_model)
                    .with_epsilon(config.norm_eps)
                    .init(device),
                attention: Attention::new(config, device),
                ffn_norm: RmsNormConfig::new(config.d_model)
                    .with_epsilon(config.norm_eps)
                    .init(device),
                ffn: FeedForward::new(config, device),
                global,
            })
            .collect();
        Self {
            embedding,
            layers,
            norm: RmsNormConfig::new(config.d_model)
                .with_epsilon(config.norm_eps)
                .init(device),
            rope: Rope::new(config.head_dim(), config.max_seq_len, config.rope_theta),
        }
    }

    /// Final hidden states after the last norm.
    ///
    /// # Shapes
    /// `[batch, seq, d_model]`.
    pub fn hidden(&self, input: &ModelInput) -> Tensor<3> {
        let mut x = self.embedding.forward(input.tokens.clone());
        for layer in &self.layers {
            x = layer.forward(x, &self.rope, &input.positions, &input.masks);
        }
        kernels::rms_norm(x, &self.norm)
    }

    /// Logits through the tied output embedding.
    ///
    /// # Shapes
    /// `hidden`: `[batch, seq, d_model]` → `[batch · seq, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, t, d] = hidden.dims();
        kernels::matmul(
            hidden.reshape([b * t, d]),
            self.embedding.weight.val().transpose(),
        )
    }

    /// [`Model::logits`] outside any autodiff graph, in a tensor of its own: for reading what a
    /// training forward pass predicts (per-document gradients) without adding to its graph or
    /// copying the graph's logits.
    ///
    /// # Shapes
    /// `hidden`: `[rows, d_model]` → `[rows, vocab]`.
    pub fn untracked_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        kernels::matmul(
            hidden.without_autodiff(),
            self.embedding.weight.val().without_autodiff().transpose(),
        )
    }

    /// `logits(hidden(input))`, `[batch · seq, vocab]`.
    pub fn forward(&self, input: &ModelInput) -> Tensor<2> {
        self.logits(self.hidden(input))
    }

    /// Cross-entropy of each token against its target.
    ///
    /// # Shapes
    /// `targets`: `[batch · seq]` → `[batch · seq]`.
    pub fn token_losses(&self, input: &ModelInput, targets: Tensor<1, Int>) -> Tensor<1> {
        let hidden = self.hidden(input);
        if hidden.is_require_grad() {
            return kernels::cross_entropy(self.logits(hidden), targets);
        }
        // Without autodiff the logits are made and consumed a block of tokens at a time: a
        // `[block, vocab]` buffer is reused by the allocator, where a `[tokens, vocab]` one would
        // be mapped and unmapped by the kernel for every batch.
        let [b, t, d] = hidden.dims();
        let (n, hidden) = (b * t, hidden.reshape([b * t, d]));
        let embedding = self.embedding.weight.val().transpose();
        let losses = (0..n)
            .step_by(EVAL_LOGIT_ROWS)
            .map(|r0| {
                let rows = EVAL_LOGIT_ROWS.min(n - r0);
                let logits = kernels::matmul(hidden.clone().narrow(0, r0, rows), embedding.clone());
                kernels::cross_entropy(logits, targets.clone().narrow(0, r0, rows))
            })
            .collect();
        Tensor::cat(losses, 0)
    }
}
