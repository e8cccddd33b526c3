//! Text generation from a trained model: greedy or nucleus (top-p) sampling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::inference::Inference;

/// How to pick each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus mass: sample among the most likely tokens whose probabilities sum to this.
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: u64,
}

/// Continues `prompt` until `eos` or `max_new_tokens`; returns only the new tokens.
///
/// Each step re-runs the model without autodiff on the last `max_seq_len` tokens: simple, and fast
/// enough for the short generations used to inspect small models.
pub fn generate(inference: &Inference, prompt: &[u32], sampling: &Sampling, eos: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
    let mut context: Vec<u32> = if prompt.is_empty() {
        vec![eos]
    } else {
        prompt.to_vec()
    };
    let max_seq_len = inference.config().max_seq_len;
    let mut out = Vec::new();
    for _ in 0..sampling.max_new_tokens {
        let window = &context[context.len().saturating_sub(max_seq_len)..];
        let t = window.len();
        let logits = inference.sequence_logits(window).narrow(0, t - 1, 1);
        let logits: Vec<f32> = logits.into_data().try_to_vec().expect("logits are f32");
        let next = pick(&logits, sampling, &mut rng);
        if next == eos {
            break;
        }
        out.push(next);
        context.push(next);
    }
    out
}

fn pick(logits: &[f32], sampling: &Sampling, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, (f64::from(l - max) / sampling.temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut mass = 0.0;
    let cut = probs.iter().position(|p| {
        mass += p.1;
        mass >= sampling.top_p
    });
    probs.truncate(cut.map_or(probs.len(), |c| c + 1));
    let kept: f64 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.random::<f64>() * kept;
    for (i, p) in &probs {
        u -= p;
        if u <= 0.0 {
            return *i as u32;
        }
    }
    probs.last().map_or_else(argmax, |p| p.0 as u32)
}
