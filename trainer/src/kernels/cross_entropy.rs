//! Per-token cross-entropy straight from logits: forward and backward in one pass over each row.
//!
//! The composed version (log-softmax, gather, negate) makes five passes over the `[tokens, vocab]`
//! logits and keeps a second buffer of that size for the backward pass. Here evaluation reads each
//! row twice (maximum, then `Σ exp`); training turns the logits into probabilities in place (one
//! `exp` per logit in all) and the backward pass turns those into the gradient in place.

use rayon::prelude::*;

use super::vecmath;

/// Rows handed to one rayon task.
const ROWS_PER_TASK: usize = 16;

/// Losses `−log softmax(row)[target]` and the log-normalisers `log Σ exp(row)`, one per row.
///
/// # Panics
/// When `logits` is not `targets.len()` rows of `vocab`, or a target is outside the vocabulary.
pub fn forward(logits: &[f32], vocab: usize, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
    check(logits.len(), vocab, targets);
    let mut losses = vec![0.0f32; targets.len()];
    let mut lse = vec![0.0f32; targets.len()];
    losses
        .par_chunks_mut(ROWS_PER_TASK)
        .zip(lse.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (losses, lse))| {
            for (i, (loss, lse)) in losses.iter_mut().zip(lse).enumerate() {
                let n = chunk * ROWS_PER_TASK + i;
                let row = &logits[n * vocab..(n + 1) * vocab];
                let max = vecmath::max(row);
                *lse = max + vecmath::sum_exp(row, max).ln();
                *loss = *lse - row[targets[n]];
            }
        });
    (losses, lse)
}

/// Like [`forward`], but for training: replaces `logits` by `softmax(row)` in place, ready for
/// [`backward_in_place`], and returns only the losses.
///
/// # Panics
/// When the sizes disagree, as in [`forward`].
pub fn forward_in_place(logits: &mut [f32], vocab: usize, targets: &[usize]) -> Vec<f32> {
    check(logits.len(), vocab, targets);
    let mut losses = vec![0.0f32; targets.len()];
    logits
        .par_chunks_mut(vocab * ROWS_PER_TASK)
        .zip(losses.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(chunk, (rows, losses))| {
            for (i, (row, loss)) in rows.chunks_exact_mut(vocab).zip(losses).enumerate() {
                let target_logit = row[targets[chunk * ROWS_PER_TASK + i]];
                *loss = vecmath::softmax(row, 1.0) - target_logit;
            }
        });
    losses
}

/// Turns the probabilities of [`forward_in_place`] into
/// `∂ Σ grad ⊙ loss / ∂ logits = grad · (softmax(row) − onehot(target))`, in place.
///
/// # Panics
/// When the sizes disagree, as in [`forward`].
pub fn backward_in_place(probabilities: &mut [f32], vocab: usize, targets: &[usize], grad: &[f32]) {
    check(probabilities.len(), vocab, targets);
    assert_eq!(
        grad.len(),
        targets.len(),
        "cross-entropy backward: gradient size"
    );
    probabilities
        .par_chunks_mut(vocab * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(chunk, rows)| {
            for (i, row) in rows.chunks_exact_mut(vocab).enumerate() {
                let n = chunk * ROWS_PER_TASK + i;
                row.iter_mut().for_each(|p| *p *= grad[n]);
                row[targets[n]] -= grad[n];
            }
        });
}

fn check(len: usize, vocab: usize, targets: &[usize]) {
    assert_eq!(
        len,
        targets.len() * vocab,
        "cross-entropy: logits are not {} rows of {vocab}",
        targets.len()
    );
    if let Some((n, t)) = targets.iter().enumerate().find(|(_, t)| **t >= vocab) {
        panic!("cross-entropy: target {t} of token {n} is outside the vocabulary of {vocab}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_and_gradients_match_the_definition() {
        let _rng = crate::test_rng::lock();
        let vocab = 37;
        let targets = [0usize, 36, 5, 5, 17];
        let logits: Vec<f32> = (0..vocab * targets.len())
            .map(|i| (i as f32 * 0.77).cos() * 6.0)
            .collect();
        let (losses, lse) = forward(&logits, vocab, &targets);
        let grad = [1.0f32, 0.5, -2.0, 0.0, 3.0];
        let mut g = logits.clone();
        let training_losses = forward_in_place(&mut g, vocab, &targets);
        backward_in_place(&mut g, vocab, &targets, &grad);
        for (n, &t) in targets.iter().enumerate() {
            let row: Vec<f64> = logits[n * vocab..(n + 1) * vocab]
                .iter()
                .map(|x| *x as f64)
                .collect();
            let z: f64 = row.iter().map(|x| x.exp()).sum();
            assert!((losses[n] as f64 - (z.ln() - row[t])).abs() < 1e-5);
            assert!((training_losses[n] - losses[n]).abs() < 1e-5);
            assert!((lse[n] as f64 - z.ln()).abs() < 1e-5);
            for j in 0..vocab {
                let softmax = row[j].exp() / z;
                let expected = grad[n] as f64 * (softmax - f64::from(u8::from(j == t)));
                assert!(
                    (g[n * vocab + j] as f64 - expected).abs() < 1e-5,
                    "row {n} column {j}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside the vocabulary")]
    fn targets_outside_the_vocabulary_are_refused() {
        let _rng = crate::test_rng::lock();
        forward(&[0.0; 8], 4, &[1, 4]);
    }
}
