//! `mixlab-mixer`: the mathematics of data mixtures, with no I/O.
//!
//! - [`runs::RunTable`]: validated mixture weights and losses of many small runs.
//! - [`regress`]: models of loss as a function of the mixture (linear, log-linear, Data Mixing Law,
//!   gradient-boosted trees), fitted with `ndarray` and `argmin`, and cross-validated.
//! - [`search`]: RegMix's search: Dirichlet samples around the token prior, projected onto
//!   [`bounds::Bounds`], scored by a fitted model; the best `top_k` are averaged.
//! - [`baselines`]: uniform, natural and UniMax mixtures, and per-domain epoch caps.
//! - [`config::MixConfig`]: the `[mix]` section (bounds, epoch cap, search settings);
//!   [`bounds::Bounds::from_config`] turns it into the constraints every method applies.
//! - [`dirichlet`]: the one Dirichlet sampler (search, and RegMix's proxy-run mixtures).
//! - [`schedule::MixtureSchedule`]: the `mixture.toml` contract read by the trainer (the file itself
//!   belongs to `mixlab-artefacts`).
//! - [`regmix::recommend`]: fit, cross-validate and search in one call.
//! - [`metrics`]: Spearman ρ, Pearson r, MSE.
//! - [`simplex`]: gradient-free minimisation of a costly function of simplex weights (the merger's
//!   weight search).
//! - [`utility`]: the Scalable Data Mixer's optimizer: domain utilities → weights (`proportional`,
//!   entropy-regularized `utilimax` within bounds and epoch caps).
//! - [`staged`]: the Scalable Data Mixer's multi-stage schedules: each stage optimized on the
//!   utilities of the simulation checkpoints in its part of the run.
//!
//! Design decisions: plain vectors and `ndarray` in and out (no file formats, no tensors) so the crate
//! builds in seconds and its doc examples run on literal numbers; every random step takes a seed and
//! splits work into fixed, separately seeded chunks, so results do not depend on the thread count.
//!
//! # Example
//! ```
//! use mixlab_mixer::bounds::Bounds;
//! use mixlab_mixer::regress::{fit, ModelKind};
//! use mixlab_mixer::runs::RunTable;
//! use mixlab_mixer::search::{search, SearchParams};
//!
//! // Three domains; loss falls as domain "c" grows.
//! let rows = vec![vec![0.2, 0.3, 0.5], vec![0.6, 0.3, 0.1], vec![0.1, 0.1, 0.8], vec![0.4, 0.4, 0.2]];
//! let losses: Vec<f64> = rows.iter().map(|r| 4.0 - 2.0 * r[2]).collect();
//! let ids = (0..rows.len()).map(|i| i.to_string()).collect();
//! let table = RunTable::new(vec!["a".into(), "b".into(), "c".into()], ids, rows, losses, "loss")?;
//! let model = fit(ModelKind::Linear, &table)?;
//! let params = SearchParams { samples: 10_000, top_k: 8, ..SearchParams::default() };
//! let best = search(&[0.4, 0.3, 0.3], &Bounds::unbounded(3), &params, |w| model.predict_rows(w))?;
//! assert!(best.weights[2] > 0.9);
//! # Ok::<(), mixlab_mixer::Error>(())
//! ```
#![deny(missing_docs)]

pub mod baselines;
pub mod bounds;
pub mod config;
pub mod dirichlet;
pub mod error;
pub mod metrics;
pub mod names;
pub mod regmix;
pub mod regress;
pub mod runs;
pub mod schedule;
pub mod search;
pub mod simplex;
pub mod staged;
pub mod utility;

pub use error::{Error, Result};
