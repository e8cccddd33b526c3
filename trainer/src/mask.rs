//! Attention masks: causal, sliding-window and document-causal, built once per batch.
//!
//! A mask entry is `true` where attention is *blocked* (burn's convention). Query `q` may attend to
//! key `k` when `k ≤ q`, and, for local layers, `q − k < window`, and, with document masking, when
//! both tokens belong to the same packed document.

use burn::tensor::{Bool, Device, Tensor, TensorData};

/// The masks one forward pass needs: one for global layers, one for local (sliding-window) layers.
#[derive(Debug, Clone)]
pub struct AttentionMasks {
    /// `[batch, 1, seq, seq]`, blocked = `true`.
    pub global: Tensor<4, Bool>,
    /// `[batch, 1, seq, seq]`, blocked = `true`.
    pub local: Tensor<4, Bool>,
}

impl AttentionMasks {
    /// Builds both masks. `segments` (`[batch * seq]`, document index per token) restricts attention
    /// to the same document when given.
    pub fn new(
        batch: usize,
        seq: usize,
        window: usize,
        segments: Option<&[u32]>,
        device: &Device,
    ) -> Self {
        let global = blocked(batch, seq, usize::MAX, segments);
        let local = blocked(batch, seq, window, segments);
        let shape = [batch, 1, seq, seq];
        Self {
            global: Tensor::from_data(TensorData::new(global, shape), device),
            local: Tensor::from_data(TensorData::new(local, shape), device),
        }
    }
}

/// Row-major `[batch, seq, seq]` blocked flags.
fn blocked(batch: usize, seq: usize, window: usize, segments: Option<&[u32]>) -> Vec<bool> {
    let mut out = vec![true; batch * seq * seq];
    for b in 0..batch {
        for q in 0..seq {
            let row = &mut out[(b * seq + q) * seq..(b * seq + q + 1) * seq];
            let first = q.saturating_sub(window.saturating_sub(1));
            for (k, cell) in row.iter_mut().enumerate().take(q + 1).skip(first) {
                let same_doc = segments.is_none_or(|s| s[b * seq + k] == s[b * seq + q]);
                *cell = !same_doc;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_documents_restrict_the_causal_mask() {
        // One sequence of 5 tokens: documents [0, 0, 1, 1, 1]; window 2.
        let segments = [0, 0, 1, 1, 1];
        let m = blocked(1, 5, 2, Some(&segments));
        let allowed = |q: usize, k: usize| !m[q * 5 + k];
        assert!(allowed(1, 0) && allowed(1, 1) && !allowed(1, 2));
        assert!(!allowed(2, 1), "another document");
        assert!(allowed(4, 3) && !allowed(4, 2), "outside the window");
        let g = blocked(1, 5, usize::MAX, None);
        assert!((0..5).all(|q| (0..5).all(|k| g[q * 5 + k] == (k > q))));
    }
}
