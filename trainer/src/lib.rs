//! `mixlab-trainer`: a MobileLLM-Pro-style decoder in burn, a deterministic mixture sampler and a
//! resumable training loop.
//!
//! | folder | holds |
//! |---|---|
//! | [`model`] | the decoder (RMSNorm, RoPE at per-token positions, grouped-query attention with local/global layers, SwiGLU, tied embeddings); [`model::mask`], [`model::rope`] its pieces; [`model::input`] batches → tensors |
//! | [`kernels`] | fused attention, norms, SwiGLU and cross-entropy with hand-written backward passes; matrix products on kernels chosen per CPU |
//! | [`engine`] | the one training loop (resume, steps, accumulation, clipping, evaluation, checkpoints, metrics), given an [`engine::objective::Objective`] and [`engine::hooks::Hook`]s; its AdamW ([`engine::optim`]), schedules ([`engine::schedule`]) and checkpoints ([`engine::checkpoint`]) |
//! | [`data`] | every domain's documents (with `doc_id` and source) from verified shards; [`data::sampler`] packs weighted domains into sequences, exactly resumable |
//! | [`inference`] | the one forward path without autodiff, used by [`inference::eval`], [`inference::generate`], teachers, [`inference::influence`] (per-parameter gradients for the SDM) and [`inference::passkey`] |
//! | [`downstream`] | distillation, int4 quantization with QAT, merging of specialists |
//! | [`export`] | GGUF and Hugging Face files |
//! | [`config`], [`error`], [`allocator`] | model shapes and training hyperparameters; errors; allocator settings for tensor workloads |
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
//! use mixlab_trainer::model::input::to_model_input;
//! use mixlab_trainer::model::Model;
//! use mixlab_trainer::data::store::DomainDocs;
//! use mixlab_trainer::data::sampler::MixtureSampler;
//!
//! let config = Preset::Tiny.config(64);
//! let device = Device::flex();
//! let model = Model::new(&config, &device);
//! let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3, 4, 5]])];
//! let mut sampler = MixtureSampler::new(docs, vec![1.0], 8, 0, 0, false)?;
//! let (input, targets) = to_model_input(&sampler.next_batch(2)?, &config, false, &device);
//! let losses = model.token_losses(&input, targets);
//! assert_eq!(losses.dims(), [16]);
//! # Ok::<(), mixlab_trainer::error::Error>(())
//! ```
#![deny(missing_docs)]

pub mod allocator;
pub mod config;
pub mod data;
pub mod downstream;
pub mod engine;
pub mod error;
pub mod export;
pub mod inference;
pub mod kernels;
pub mod model;
#[cfg(test)]
mod test_rng;
