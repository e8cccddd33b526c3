//! `mixlab-trainer`: a MobileLLM-Pro-style decoder in burn, a deterministic mixture sampler and a
//! resumable training loop.
//!
//! - [`config`]: model shapes (presets `tiny`, `small`, `base`, and the 1.08B MobileLLM-Pro shape) and
//!   training hyperparameters.
//! - [`model`]: the decoder (RMSNorm, RoPE at per-token positions, grouped-query attention with
//!   local/global layers, SwiGLU, tied embeddings); [`mask`] and [`rope`] its pieces; [`kernels`] its
//!   fused attention and cross-entropy with hand-written backward passes and its matrix products on
//!   kernels chosen per CPU; [`allocator`] the allocator settings tensor workloads want.
//! - [`sampler`]: packs documents of weighted domains into sequences, exactly resumable; [`data`]
//!   loads every domain's documents (with `doc_id` and source) from verified shards.
//! - [`train`]: the one loop skeleton (resume, steps, accumulation, clipping, evaluation,
//!   checkpoints, metrics), given an [`objective::Objective`] (what a step minimises) and
//!   [`hooks::Hook`]s (code run after a step, an evaluation, a checkpoint); [`optim`] its AdamW and
//!   global-norm clipping.
//! - [`inference`]: the one forward path without autodiff, used by [`eval`], [`generate`] and
//!   teachers.
//! - [`distill`], [`quant`], [`merge`]: the stages after pre-training: a distillation objective,
//!   int4 rounding and quantization-aware training, and the parameter average of specialists.
//! - [`checkpoint`]: checkpoints and their versioned state file (`metrics.parquet` and `eval.parquet`
//!   belong to `mixlab-artefacts`); the binary chooses the paths.
//!
//! Design decisions: the device is the `flex` CPU backend, chosen at run time (burn 0.22); training
//! runs on `Device::flex().autodiff()`, evaluation and generation on `model.valid()` so no autograd
//! graph is built; the trainer reads shards only through `mixlab-ingest`'s format layer, so DataFusion
//! is not part of its build.
//!
//! # Example
//! ```
//! use burn::tensor::Device;
//! use mixlab_trainer::config::Preset;
//! use mixlab_trainer::input::to_model_input;
//! use mixlab_trainer::model::Model;
//! use mixlab_trainer::sampler::{DomainDocs, MixtureSampler};
//!
//! let config = Preset::Tiny.config(64);
//! let device = Device::flex();
//! let model = Model::new(&config, &device);
//! let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3, 4, 5]])];
//! let mut sampler = MixtureSampler::new(docs, vec![1.0], 8, 0, 0, false)?;
//! let (input, targets) = to_model_input(&sampler.next_batch(2), &config, false, &device);
//! let losses = model.token_losses(&input, targets);
//! assert_eq!(losses.dims(), [16]);
//! # Ok::<(), mixlab_trainer::error::Error>(())
//! ```
#![deny(missing_docs)]

pub mod allocator;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod hooks;
pub mod inference;
pub mod influence;
pub mod input;
pub mod kernels;
pub mod mask;
pub mod merge;
pub mod model;
pub mod named;
pub mod objective;
pub mod optim;
pub mod passkey;
pub mod quant;
pub mod rope;
pub mod sampler;
pub mod schedule;
mod session;
pub mod train;
