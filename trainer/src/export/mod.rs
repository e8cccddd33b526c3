//! Models for runtimes outside mixlab: [`gguf`] (llama.cpp's format: F32, F16 or int4 as Q4_0,
//! with the tokenizer) and [`hf`] (Hugging Face safetensors and config), both over [`named`]
//! parameters in PyTorch's layout and with the run's [`provenance`].

pub mod gguf;
pub mod hf;
pub mod named;
pub mod provenance;

use std::path::Path;

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::engine::checkpoint::load_model;
use crate::error::Result;
use crate::model::Model;

/// The model of `shape` in a checkpoint's `step-N.bpk`, to export.
///
/// # Errors
/// [`crate::error::Error::DamagedCheckpoint`] for unreadable weights or another shape.
pub fn checkpoint_model(shape: &ModelConfig, weights: &Path) -> Result<Model> {
    load_model(Model::new(shape, &Device::flex()), weights)
}
