//! `mixlab-simulator`: the Scalable Data Mixer's simulation side. One proxy training run (the
//! trainer's loop, run by the binary) leaves K checkpoints; at each, training data of every domain
//! is scored by its influence on each target's loss: packed sequences of each domain through every
//! parameter ([`domain`], the default), or, through the output layer only, the documents of the
//! run's own batches just before the checkpoint ([`capture`]) or documents sampled once and
//! re-scored at every checkpoint ([`estimate`]).
//!
//! - [`config`]: the `[simulate]` section.
//! - [`domain`]: per-domain gradients of every parameter, preconditioned as AdamW moves them
//!   (the default estimator).
//! - [`estimate`]: document sampling and one checkpoint's utilities.
//! - [`projection`]: per-document output-layer gradients from activations, randomly projected.
//! - [`capture`]: those gradients taken from the simulation run's own training batches.
//! - [`datainf`]: DataInf's inverse-Hessian approximation and the utility `(H⁻¹v)·g`.
//! - [`aggregate`]: checkpoint weights, token-weighted domain means, bootstrap errors.
//! - [`doremi`]: the DoReMi baseline's excess-loss objective and domain weights.
//! - [`loo`]: leave-one-out utilities (one proxy run without each domain), the ground truth.
//! - [`score`]: resumable scoring of a run's checkpoints (or, in the run, of its captured
//!   documents) and the per-domain summary written to
//!   `utilities.parquet` (format owned by `mixlab_artefacts::utilities`).
//!
//! # Example
//! ```
//! use mixlab_simulator::aggregate::checkpoint_weights;
//! // Ten evenly spaced checkpoints: the last counts ten times the first.
//! let alpha = checkpoint_weights(&(1..=10).map(|k| k * 30).collect::<Vec<_>>());
//! assert!((alpha[9] / alpha[0] - 10.0).abs() < 1e-12);
//! ```
#![deny(missing_docs)]

pub mod aggregate;
pub mod capture;
pub mod config;
pub mod datainf;
pub mod domain;
pub mod doremi;
mod error;
pub mod estimate;
pub mod loo;
pub mod projection;
pub mod score;

pub use error::{Error, Result};
