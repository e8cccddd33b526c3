//! Where an exported model comes from, recorded in every format ([`crate::export::gguf`]'s
//! `mixlab.*` keys, [`crate::export::hf`]'s `config.json`).

/// The run, data and step behind exported weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The run's hash: its settings and the shards' identity (`run.toml`).
    pub run_hash: String,
    /// SHA-256 of the run's mixture schedule.
    pub mixture_sha256: String,
    /// SHA-256 of the tokenizer's `tokenizer.json`.
    pub tokenizer_sha256: String,
    /// The training step of the weights.
    pub step: u64,
}

impl Provenance {
    /// `(key, value)` pairs below a format's own prefix, the mixlab version first.
    ///
    /// # Example
    /// ```
    /// use mixlab_trainer::export::provenance::Provenance;
    /// let p = Provenance {
    ///     run_hash: "r".into(),
    ///     mixture_sha256: "m".into(),
    ///     tokenizer_sha256: "t".into(),
    ///     step: 40,
    /// };
    /// let entries = p.entries();
    /// assert_eq!(entries[0].0, "version");
    /// assert!(entries.contains(&("step", "40".to_string())));
    /// ```
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("run_hash", self.run_hash.clone()),
            ("mixture_sha256", self.mixture_sha256.clone()),
            ("tokenizer_sha256", self.tokenizer_sha256.clone()),
            ("step", self.step.to_string()),
        ]
    }
}
