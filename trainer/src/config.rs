//! `[model]` and `[train]`: the model shape (with named presets) and the training hyperparameters.

use serde::{Deserialize, Serialize};

use crate::data::sampler::DEFAULT_READ_AHEAD;
use crate::error::{Error, Result};

/// The shape of a MobileLLM-Pro-style decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size (taken from the shards' tokenizer when training).
    pub vocab_size: usize,
    /// Hidden size.
    pub d_model: usize,
    /// Decoder layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention); must divide `n_heads`.
    pub n_kv_heads: usize,
    /// Inner size of the SwiGLU feed-forward.
    pub ffn_hidden: usize,
    /// Sliding-window size of local-attention layers, in tokens (MobileLLM-Pro: 512).
    pub window: usize,
    /// About one global layer per this many layers; the first and last layers are always global and
    /// the rest are spread evenly (MobileLLM-Pro: 30 layers → 8 global, i.e. every 4).
    pub global_every: usize,
    /// Explicit global layer indices, overriding `global_every`.
    #[serde(default)]
    pub global_layers: Option<Vec<usize>>,
    /// RoPE base θ. Default 10,000 for small models; MobileLLM-Pro uses 500,000.
    pub rope_theta: f64,
    /// RMSNorm ε.
    pub norm_eps: f64,
    /// Longest sequence the RoPE tables cover.
    pub max_seq_len: usize,
    /// Whether every projection sees its input rounded to int8 with one scale per token (dynamic
    /// activation quantization, the inputs an int8 × int4 kernel would multiply), gradients passed
    /// straight through. The output head's input (the final norm's output) stays full precision.
    /// Set by `mixlab quantize --int8-activations`; absent from the TOML when off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub int8_activations: bool,
}

/// Named model sizes (`tiny`, `small`, `base`, `mobilellm_pro`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// About 1M parameters at vocabulary 1,024: for tests.
    Tiny,
    /// About 10M parameters at vocabulary 8,192: the default proxy model.
    Small,
    /// About 40M parameters at vocabulary 8,192.
    Base,
    /// The 1.08B MobileLLM-Pro shape (vocabulary 202,048): expressible, not meant to train here.
    #[serde(alias = "mobilellm-pro")]
    MobilellmPro,
}

impl Preset {
    /// The preset's name as the command line spells it (`tiny`, ..., `mobilellm-pro`).
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::config::Preset;
    /// assert_eq!(Preset::MobilellmPro.name(), "mobilellm-pro");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Base => "base",
            Preset::MobilellmPro => "mobilellm-pro",
        }
    }

    /// The preset's shape for a vocabulary size.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::config::Preset;
    /// let cfg = Preset::MobilellmPro.config(202_048);
    /// assert_eq!(cfg.n_layers, 30);
    /// assert_eq!(cfg.global_layer_flags().iter().filter(|g| **g).count(), 8);
    /// ```
    pub fn config(self, vocab_size: usize) -> ModelConfig {
        let (d_model, n_layers, n_heads, n_kv_heads, ffn_hidden, window, theta, max_seq_len) =
            match self {
                Preset::Tiny => (128, 4, 4, 2, 384, 64, 10_000.0, 1024),
                Preset::Small => (256, 8, 8, 2, 1024, 128, 10_000.0, 2048),
                Preset::Base => (512, 12, 8, 2, 1536, 256, 10_000.0, 2048),
                Preset::MobilellmPro => (1280, 30, 20, 4, 6144, 512, 500_000.0, 8192),
            };
        ModelConfig {
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_hidden,
            window,
            global_every: 4,
            global_layers: None,
            rope_theta: theta,
            norm_eps: 1e-5,
            max_seq_len,
            int8_activations: false,
        }
    }
}

impl ModelConfig {
    /// Head size `d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Whether each layer is global (`true`) or sliding-window local.
    pub fn global_layer_flags(&self) -> Vec<bool> {
        let n = self.n_layers;
        let mut flags = vec![false; n];
        if let Some(explicit) = &self.global_layers {
            explicit
                .iter()
                .filter(|&&i| i < n)
                .for_each(|&i| flags[i] = true);
            return flags;
        }
        let count = n.div_ceil(self.global_every.max(1)).max(n.min(2));
        if count == 1 {
            flags[0] = true;
            return flags;
        }
        for j in 0..count {
            // Evenly spaced from the first to the last layer, rounded to the nearest index.
            let at = (j * (n - 1) * 2 + (count - 1)) / (2 * (count - 1));
            flags[at] = true;
        }
        flags
    }

    /// Parameter count from the shapes (tied embeddings, no biases).
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::config::Preset;
    /// assert_eq!(Preset::MobilellmPro.config(202_048).parameter_count(), 1_084_453_120);
    /// ```
    pub fn parameter_count(&self) -> usize {
        let (d, hd) = (self.d_model, self.head_dim());
        let attention = d * self.n_heads * hd * 2 + d * self.n_kv_heads * hd * 2;
        let ffn = 3 * d * self.ffn_hidden;
        let norms = 2 * d;
        self.vocab_size * d + self.n_layers * (attention + ffn + norms) + d
    }

    /// Checks that the shapes fit together.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.vocab_size == 0 || self.d_model == 0 || self.n_layers == 0 || self.n_heads == 0 {
            return bad("model: vocab_size, d_model, n_layers and n_heads must be positive".into());
        }
        if !self.d_model.is_multiple_of(self.n_heads) || !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "model: d_model = {} must be a multiple of n_heads = {} with an even head size",
                self.d_model, self.n_heads
            ));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "model: n_kv_heads = {} must divide n_heads = {}",
                self.n_kv_heads, self.n_heads
            ));
        }
        if self.window == 0 || self.global_every == 0 {
            return bad("model: window and global_every must be at least 1".into());
        }
        Ok(())
    }
}

/// `[model]` in `datasets.toml`: a preset plus optional overrides of single fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Preset. Default: `small`.
    pub preset: Option<Preset>,
    /// Override of [`ModelConfig::d_model`].
    pub d_model: Option<usize>,
    /// Override of [`ModelConfig::n_layers`].
    pub n_layers: Option<usize>,
    /// Override of [`ModelConfig::n_heads`].
    pub n_heads: Option<usize>,
    /// Override of [`ModelConfig::n_kv_heads`].
    pub n_kv_heads: Option<usize>,
    /// Override of [`ModelConfig::ffn_hidden`].
    pub ffn_hidden: Option<usize>,
    /// Override of [`ModelConfig::window`].
    pub window: Option<usize>,
    /// Override of [`ModelConfig::global_every`].
    pub global_every: Option<usize>,
    /// Override of [`ModelConfig::global_layers`].
    pub global_layers: Option<Vec<usize>>,
    /// Override of [`ModelConfig::rope_theta`].
    pub rope_theta: Option<f64>,
}

impl ModelSection {
    /// The resolved model shape; `preset` (e.g. from `--preset`) wins over the section's own.
    ///
    /// # Errors
    /// [`Error::Config`] for inconsistent shapes.
    pub fn resolve(
        &self,
        preset: Option<Preset>,
        vocab_size: usize,
        seq_len: usize,
    ) -> Result<ModelConfig> {
        let preset = preset.or(self.preset).unwrap_or(Preset::Small);
        let mut c = preset.config(vocab_size);
        c.d_model = self.d_model.unwrap_or(c.d_model);
        c.n_layers = self.n_layers.unwrap_or(c.n_layers);
        c.n_heads = self.n_heads.unwrap_or(c.n_heads);
        c.n_kv_heads = self.n_kv_heads.unwrap_or(c.n_kv_heads);
        c.ffn_hidden = self.ffn_hidden.unwrap_or(c.ffn_hidden);
        c.window = self.window.unwrap_or(c.window);
        c.global_every = self.global_every.unwrap_or(c.global_every);
        c.global_layers = self.global_layers.clone().or(c.global_layers);
        c.rope_theta = self.rope_theta.unwrap_or(c.rope_theta);
        c.max_seq_len = c.max_seq_len.max(seq_len);
        c.validate()?;
        Ok(c)
    }
}

/// `[train]`: optimisation, batching, evaluation and checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps. Default: 300.
    pub steps: u64,
    /// Sequences per micro-batch. Default: 16.
    pub batch_size: usize,
    /// Tokens per sequence. Default: 256.
    pub seq_len: usize,
    /// Micro-batches per optimizer step. Default: 1.
    pub grad_accum: usize,
    /// Peak learning rate. Default: 3e-3 (small models tolerate high rates; MobileLLM-Pro used 4e-3 at 1B with a long warmup).
    pub lr: f64,
    /// Final learning rate as a fraction of the peak (cosine floor). Default: 0.1.
    pub min_lr_ratio: f64,
    /// Linear warmup steps. Default: 30.
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay on matrices (not norms or embeddings). Default: 0.1.
    pub weight_decay: f64,
    /// AdamW β1. Default: 0.9.
    pub beta1: f32,
    /// AdamW β2. Default: 0.95 (the usual LLM setting).
    pub beta2: f32,
    /// AdamW ε. Default: 1e-8.
    pub eps: f32,
    /// Global gradient-norm clip. Default: 1.0.
    pub grad_clip: f32,
    /// Restrict attention to the current document and restart positions at each document.
    /// Default: false (plain causal packing).
    pub document_mask: bool,
    /// Evaluate every this many steps (and at the end). Default: 100.
    pub eval_every: u64,
    /// Sequences per domain and split used for evaluation. Default: 8.
    pub eval_sequences: usize,
    /// Save a checkpoint every this many steps (and at the end). Default: 100.
    pub checkpoint_every: u64,
    /// Checkpoints kept on disk: the newest N, or `"all"` (the SDM simulation run computes
    /// influence at every one). Default: 2.
    pub keep_checkpoints: KeepCheckpoints,
    /// Seed of initialisation and data order. Default: 0.
    pub seed: u64,
    /// Tokens read from the token cache at a time per domain: the training data held in memory is
    /// at most the number of domains times this, whatever the corpus size. Changes speed only,
    /// never the tokens drawn. Default: 65,536.
    pub read_ahead_tokens: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 16,
            seq_len: 256,
            grad_accum: 1,
            lr: 3e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 30,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            grad_clip: 1.0,
            document_mask: false,
            eval_every: 100,
            eval_sequences: 8,
            checkpoint_every: 100,
            keep_checkpoints: KeepCheckpoints::Newest(2),
            seed: 0,
            read_ahead_tokens: DEFAULT_READ_AHEAD,
        }
    }
}

/// The `[train]` settings that decide what a run computes: all of them but how often it
/// evaluates and saves, how many checkpoints it keeps and how much it reads at a time, which a
/// run may change and continue.
/// Run hashes and `mixlab run`'s stage keys hash this, never [`TrainConfig`] as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResultSettings {
    /// Optimizer steps.
    pub steps: u64,
    /// Seed of initialisation and data order.
    pub seed: u64,
    /// Everything else that changes the result.
    #[serde(flatten)]
    pub recipe: Recipe,
}

/// How a run trains, apart from its length and seed: what a simulation's proxy run takes from
/// `[train]` (its steps and seed come from `[simulate]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recipe {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// AdamW ε.
    pub eps: f32,
    /// Global gradient-norm clip.
    pub grad_clip: f32,
    /// Attention within documents only.
    pub document_mask: bool,
    /// Sequences per domain and split in evaluation.
    pub eval_sequences: usize,
}

/// The longest sequence a run may use.
pub const MAX_SEQ_LEN: usize = 1 << 16;

/// The most tokens in one micro-batch (`batch_size × seq_len`), far above what fits a CPU's memory
/// for the smallest model; larger batches accumulate micro-batches (`grad_accum`).
pub const MAX_MICRO_BATCH_TOKENS: usize = 1 << 24;

impl TrainConfig {
    /// The settings that change what the run computes.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::config::TrainConfig;
    ///
    /// let a = TrainConfig::default();
    /// let b = TrainConfig { eval_every: 7, ..a.clone() };
    /// assert_eq!(a.result_settings(), b.result_settings());
    /// let c = TrainConfig { lr: 1e-3, ..a.clone() };
    /// assert_ne!(a.result_settings(), c.result_settings());
    /// ```
    pub fn result_settings(&self) -> ResultSettings {
        // No `..`: a new field fails to compile here until it is sorted into result or bookkeeping.
        let TrainConfig {
            steps,
            batch_size,
            seq_len,
            grad_accum,
            lr,
            min_lr_ratio,
            warmup_steps,
            weight_decay,
            beta1,
            beta2,
            eps,
            grad_clip,
            document_mask,
            eval_every: _,
            eval_sequences,
            checkpoint_every: _,
            keep_checkpoints: _,
            seed,
            read_ahead_tokens: _,
        } = *self;
        let recipe = Recipe {
            batch_size,
            seq_len,
            grad_accum,
            lr,
            min_lr_ratio,
            warmup_steps,
            weight_decay,
            beta1,
            beta2,
            eps,
            grad_clip,
            document_mask,
            eval_sequences,
        };
        ResultSettings {
            steps,
            seed,
            recipe,
        }
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.seq_len < 2 || self.grad_accum == 0 {
            return Err(Error::Config(
                "train: batch_size, grad_accum ≥ 1 and seq_len ≥ 2 required".into(),
            ));
        }
        self.validate_sizes()?;
        if !(self.lr > 0.0 && self.lr.is_finite() && (0.0..=1.0).contains(&self.min_lr_ratio)) {
            return Err(Error::Config(format!(
                "train: lr = {} must be positive, min_lr_ratio in [0, 1]",
                self.lr
            )));
        }
        self.validate_optimizer()?;
        if self.eval_every == 0
            || self.checkpoint_every == 0
            || self.read_ahead_tokens == 0
            || self.keep_checkpoints == KeepCheckpoints::Newest(0)
        {
            return Err(Error::Config(
                "train: eval_every, checkpoint_every, read_ahead_tokens, keep_checkpoints must be ≥ 1 (or keep_checkpoints = \"all\")".into(),
            ));
        }
        Ok(())
    }

    /// Sizes the trainer can allocate, and products that fit in 64 bits.
    fn validate_sizes(&self) -> Result<()> {
        if self.seq_len > MAX_SEQ_LEN {
            return Err(Error::Config(format!(
                "train: seq_len = {} is more than {MAX_SEQ_LEN} (attention memory grows with its square)",
                self.seq_len
            )));
        }
        let micro_batch = self.batch_size.saturating_mul(self.seq_len);
        if micro_batch > MAX_MICRO_BATCH_TOKENS {
            return Err(Error::Config(format!(
                "train: batch_size × seq_len = {} × {} is more than {MAX_MICRO_BATCH_TOKENS} tokens a micro-batch; use grad_accum for larger batches",
                self.batch_size, self.seq_len
            )));
        }
        let total = (micro_batch as u64)
            .checked_mul(self.grad_accum as u64)
            .and_then(|per_step| per_step.checked_mul(self.steps));
        if total.is_none() {
            return Err(Error::Config(format!(
                "train: steps × batch_size × seq_len × grad_accum = {} × {} × {} × {} training tokens does not fit in 64 bits",
                self.steps, self.batch_size, self.seq_len, self.grad_accum
            )));
        }
        Ok(())
    }

    /// AdamW and clipping settings: finite and in range.
    fn validate_optimizer(&self) -> Result<()> {
        let checks = [
            ("weight_decay", self.weight_decay, self.weight_decay >= 0.0),
            (
                "beta1",
                f64::from(self.beta1),
                (0.0..1.0).contains(&self.beta1),
            ),
            (
                "beta2",
                f64::from(self.beta2),
                (0.0..1.0).contains(&self.beta2),
            ),
            ("eps", f64::from(self.eps), self.eps > 0.0),
            ("grad_clip", f64::from(self.grad_clip), self.grad_clip > 0.0),
        ];
        for (field, value, in_range) in checks {
            if !(value.is_finite() && in_range) {
                return Err(Error::Config(format!(
                    "train: {field} = {value} is out of range (weight_decay ≥ 0, betas in [0, 1), eps and grad_clip > 0)"
                )));
            }
        }
        Ok(())
    }

    /// Tokens consumed per optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        (self.batch_size * self.seq_len * self.grad_accum) as u64
    }
}

/// How many checkpoints a run keeps: `keep_checkpoints = 2` or `keep_checkpoints = "all"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeepSetting", into = "KeepSetting")]
pub enum KeepCheckpoints {
    /// The newest N complete checkpoints.
    Newest(usize),
    /// Every checkpoint.
    All,
}

/// The TOML spelling of [`KeepCheckpoints`]: a count or the word `"all"`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum KeepSetting {
    Count(usize),
    Word(String),
}

impl TryFrom<KeepSetting> for KeepCheckpoints {
    type Error = String;

    fn try_from(setting: KeepSetting) -> std::result::Result<Self, String> {
        match setting {
            KeepSetting::Count(n) => Ok(KeepCheckpoints::Newest(n)),
            KeepSetting::Word(w) if w == "all" => Ok(KeepCheckpoints::All),
            KeepSetting::Word(w) => Err(format!(
                "keep_checkpoints = {w:?}: expected a count or \"all\""
            )),
        }
    }
}

impl From<KeepCheckpoints> for KeepSetting {
    fn from(keep: KeepCheckpoints) -> Self {
        match keep {
            KeepCheckpoints::Newest(n) => KeepSetting::Count(n),
            KeepCheckpoints::All => KeepSetting::Word("all".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_checkpoints_reads_a_count_or_all() {
        let _rng = crate::test_rng::lock();
        let parse = |text: &str| toml::from_str::<TrainConfig>(text).map(|c| c.keep_checkpoints);
        assert_eq!(
            parse("keep_checkpoints = 3").unwrap(),
            KeepCheckpoints::Newest(3)
        );
        assert_eq!(
            parse("keep_checkpoints = \"all\"").unwrap(),
            KeepCheckpoints::All
        );
        assert!(
            parse("keep_checkpoints = \"some\"")
                .unwrap_err()
                .to_string()
                .contains("expected a count or \"all\"")
        );
        let text = toml::to_string(&TrainConfig::default()).unwrap();
        assert!(text.contains("keep_checkpoints = 2"), "{text}");
    }

    #[test]
    fn presets_have_the_advertised_sizes() {
        let _rng = crate::test_rng::lock();
        let tiny = Preset::Tiny.config(1024).parameter_count();
        let small = Preset::Small.config(8192).parameter_count();
        let base = Preset::Base.config(8192).parameter_count();
        assert!((700_000..1_500_000).contains(&tiny), "tiny: {tiny}");
        assert!((8_000_000..12_000_000).contains(&small), "small: {small}");
        assert!((30_000_000..50_000_000).contains(&base), "base: {base}");
    }

    #[test]
    fn global_layers_are_spread_with_first_and_last() {
        let _rng = crate::test_rng::lock();
        let flags = Preset::MobilellmPro.config(10).global_layer_flags();
        let global: Vec<usize> = flags
            .iter()
            .enumerate()
            .filter(|(_, g)| **g)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(global.len(), 8);
        assert_eq!((global[0], global[7]), (0, 29));
        let tiny = Preset::Tiny.config(10).global_layer_flags();
        assert_eq!(tiny, vec![true, false, false, true]);
    }
}
