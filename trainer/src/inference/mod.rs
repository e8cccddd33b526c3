//! The one forward path without autodiff: evaluation, generation and (next) teachers' logits.
//!
//! An [`Inference`] holds a plain model (never an autodiff one, so no graph is recorded and memory
//! stays flat) and turns sampler batches into per-token losses or logits.

pub mod eval;
pub mod generate;
pub mod influence;
pub mod passkey;

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::config::ModelConfig;
use crate::data::sampler::Batch;
use crate::engine::checkpoint::load_model;
use crate::error::Result;
use crate::model::Model;
use crate::model::input::to_model_input;

/// A model ready for forward passes without autodiff.
#[derive(Debug, Clone)]
pub struct Inference {
    model: Model,
    config: ModelConfig,
    device: Device,
}

impl Inference {
    /// Wraps a model being trained: its weights on the plain device (`model.valid()`).
    pub fn of_trained(model: &Model, config: &ModelConfig) -> Self {
        Self {
            model: model.valid(),
            config: config.clone(),
            device: Device::flex(),
        }
    }

    /// Loads a checkpoint's weights into a model of `config` on the plain device.
    ///
    /// # Errors
    /// [`crate::error::Error::DamagedCheckpoint`] when the file is missing or does not fit the shape.
    pub fn load(config: &ModelConfig, weights: &Path) -> Result<Self> {
        let device = Device::flex();
        let model = load_model(Model::new(config, &device), weights)?;
        Ok(Self {
            model,
            config: config.clone(),
            device,
        })
    }

    /// Loads the weights of a GGUF file written by [`crate::export::gguf::write`] (int4 or full
    /// precision).
    ///
    /// # Errors
    /// [`crate::error::Error::Checkpoint`] naming the file when it is damaged or of another shape.
    pub fn load_gguf(config: &ModelConfig, path: &Path) -> Result<Self> {
        let device = Device::flex();
        let model = crate::export::gguf::read(config, path, &device)?;
        Ok(Self {
            model,
            config: config.clone(),
            device,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Cross-entropy of every target token of `batch`, row-major `[batch · seq]`.
    ///
    /// # Example
    /// ```
    /// use burn::tensor::Device;
    /// use mixlab_trainer::config::Preset;
    /// use mixlab_trainer::inference::Inference;
    /// use mixlab_trainer::model::Model;
    /// use mixlab_trainer::data::store::DomainDocs;
    /// use mixlab_trainer::data::sampler::MixtureSampler;
    /// let config = Preset::Tiny.config(32);
    /// let model = Model::new(&config, &Device::flex());
    /// let inference = Inference::of_trained(&model, &config);
    /// let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3]])];
    /// let batch = MixtureSampler::new(docs, vec![1.0], 6, 0, 0, false)?.next_batch(2)?;
    /// let losses = inference.token_losses(&batch, false);
    /// assert_eq!(losses.len(), 12);
    /// // An untrained model is close to uniform over the 32 tokens.
    /// assert!(losses.iter().all(|l| (l - 32f32.ln()).abs() < 1.0));
    /// # Ok::<(), mixlab_trainer::error::Error>(())
    /// ```
    pub fn token_losses(&self, batch: &Batch, document_mask: bool) -> Vec<f32> {
        let (input, targets) = to_model_input(batch, &self.config, document_mask, &self.device);
        self.model
            .token_losses(&input, targets)
            .into_data()
            .try_to_vec()
            .expect("token losses are f32")
    }

    /// Logits of every position of `batch` as training packs it (its positions and, with
    /// `document_mask`, document-causal masks): a teacher's view of a student's micro-batch.
    ///
    /// # Shapes
    /// Output `[batch · seq, vocab_size]`.
    ///
    /// # Example
    /// ```
    /// use burn::tensor::Device;
    /// use mixlab_trainer::config::Preset;
    /// use mixlab_trainer::inference::Inference;
    /// use mixlab_trainer::model::Model;
    /// use mixlab_trainer::data::store::DomainDocs;
    /// use mixlab_trainer::data::sampler::MixtureSampler;
    /// let config = Preset::Tiny.config(32);
    /// let teacher = Inference::of_trained(&Model::new(&config, &Device::flex()), &config);
    /// let docs = vec![DomainDocs::from_tokens("a", vec![vec![1, 2, 3]])];
    /// let batch = MixtureSampler::new(docs, vec![1.0], 6, 0, 0, false)?.next_batch(2)?;
    /// assert_eq!(teacher.batch_logits(&batch, false).dims(), [12, 32]);
    /// # Ok::<(), mixlab_trainer::error::Error>(())
    /// ```
    pub fn batch_logits(&self, batch: &Batch, document_mask: bool) -> Tensor<2> {
        let (input, _) = to_model_input(batch, &self.config, document_mask, &self.device);
        self.model.forward(&input)
    }

    /// Logits of every position of a single sequence of token ids (positions 0.., causal with the
    /// model's local windows).
    ///
    /// # Shapes
    /// Output `[tokens.len(), vocab_size]`.
    pub fn sequence_logits(&self, tokens: &[u32]) -> Tensor<2> {
        self.sequence_hidden_and_logits(tokens).1
    }

    /// The loss (nats) of predicting each next token of one sequence from positions 0..: entry
    /// `i` is `-log p(tokens[i + 1] | tokens[..=i])`; empty for fewer than two tokens.
    ///
    /// # Example
    /// ```
    /// use burn::tensor::Device;
    /// use mixlab_trainer::config::Preset;
    /// use mixlab_trainer::inference::Inference;
    /// use mixlab_trainer::model::Model;
    /// let shape = Preset::Tiny.config(64);
    /// let inference = Inference::of_trained(&Model::new(&shape, &Device::flex()), &shape);
    /// let losses = inference.next_token_losses(&[1, 2, 3, 4]);
    /// // An untrained model is close to uniform over 64 tokens: ln 64 ≈ 4.16 nats.
    /// assert_eq!(losses.len(), 3);
    /// assert!(losses.iter().all(|l| (l - 64f32.ln()).abs() < 1.0));
    /// ```
    pub fn next_token_losses(&self, tokens: &[u32]) -> Vec<f32> {
        let n = tokens.len().saturating_sub(1);
        if n == 0 {
            return Vec::new();
        }
        let batch = Batch {
            batch_size: 1,
            seq_len: n,
            inputs: tokens[..n].to_vec(),
            targets: tokens[1..].to_vec(),
            positions: (0..n as u32).collect(),
            segments: vec![0; n],
            doc_ids: vec![0; n],
            domains: vec![0],
            sources: Vec::new(),
        };
        self.token_losses(&batch, false)
    }

    /// Final hidden states (after the last norm) and logits of every position of one sequence:
    /// what per-document output-layer gradients are formed from.
    ///
    /// # Shapes
    /// `([tokens.len(), d_model], [tokens.len(), vocab_size])`.
    pub fn sequence_hidden_and_logits(&self, tokens: &[u32]) -> (Tensor<2>, Tensor<2>) {
        self.sequences_hidden_and_logits(&[tokens])
            .pop()
            .expect("one sequence in, one out")
    }

    /// [`Inference::sequence_hidden_and_logits`] of several sequences in one batched forward pass
    /// (shorter ones padded at the end, which causal attention never lets earlier positions see).
    ///
    /// # Shapes
    /// Per sequence `([len, d_model], [len, vocab_size])`, in input order.
    pub fn sequences_hidden_and_logits(&self, sequences: &[&[u32]]) -> Vec<(Tensor<2>, Tensor<2>)> {
        let (rows, seq_len) = (
            sequences.len(),
            sequences.iter().map(|s| s.len()).max().unwrap_or(0),
        );
        if rows == 0 || seq_len == 0 {
            return Vec::new();
        }
        let mut inputs = vec![0u32; rows * seq_len];
        for (row, tokens) in inputs.chunks_mut(seq_len).zip(sequences) {
            row[..tokens.len()].copy_from_slice(tokens);
        }
        // Its targets are never read (no loss is computed).
        let batch = Batch {
            batch_size: rows,
            seq_len,
            targets: inputs.clone(),
            inputs,
            positions: (0..rows).flat_map(|_| 0..seq_len as u32).collect(),
            segments: vec![0; rows * seq_len],
            doc_ids: vec![0; rows * seq_len],
            domains: vec![0; rows],
            sources: Vec::new(),
        };
        let (input, _) = to_model_input(&batch, &self.config, false, &self.device);
        let hidden = self.model.hidden(&input);
        let d = hidden.dims()[2];
        let logits = self.model.logits(hidden.clone());
        let hidden = hidden.reshape([rows * seq_len, d]);
        sequences
            .iter()
            .enumerate()
            .map(|(i, tokens)| {
                let rows = i * seq_len..i * seq_len + tokens.len();
                (
                    hidden.clone().slice(rows.clone()),
                    logits.clone().slice(rows),
                )
            })
            .collect()
    }
}
