//! `mixlab-simulator`: the Scalable Data Mixer's single simulation run (planned; see
//! `../shared/DESIGN.md`, "SDM simulation run").
//!
//! It will train one proxy model on a uniform mixture with `mixlab-trainer`, take K evenly spaced
//! checkpoints, and estimate each domain's utility from first-order influence of sampled training
//! documents on the probe sets (DataInf approximation on the embedding and final layers). The
//! trainer already provides what it needs: the shard reader and sampler, `Model::hidden` and
//! `Model::logits` for per-document output-layer gradients, and forward passes without autodiff.
#![deny(missing_docs)]
