//! Attention masks: causal, sliding-window and document-causal, built once per batch.
//!
//! Every mask here lets query `q` see one contiguous range of keys ending at `q` itself: from the
//! start of its document (with document masking, else the sequence start), and for local layers
//! no further back than `window − 1` tokens. So a mask is stored as the first visible key per
//! token ([`KeyStarts`]), which the fused attention kernel reads directly.

use crate::kernels::KeyStarts;

/// The masks one forward pass needs: one for global layers, one for local (sliding-window) layers.
#[derive(Debug, Clone)]
pub struct AttentionMasks {
    /// Global layers: first visible key per token, `[batch, seq]`.
    pub global: KeyStarts,
    /// Local layers: first visible key per token, `[batch, seq]`.
    pub local: KeyStarts,
}

impl AttentionMasks {
    /// Builds both masks. `segments` (`[batch * seq]`, document index per token; documents are
    /// contiguous) restricts attention to the same document when given.
    pub fn new(batch: usize, seq: usize, window: usize, segments: Option<&[u32]>) -> Self {
        Self {
            global: KeyStarts::new(key_starts(batch, seq, usize::MAX, segments)),
            local: KeyStarts::new(key_starts(batch, seq, window, segments)),
        }
    }
}

/// Row-major `[batch, seq]` first visible keys.
fn key_starts(batch: usize, seq: usize, window: usize, segments: Option<&[u32]>) -> Vec<u32> {
    let mut out = Vec::with_capacity(batch * seq);
    for b in 0..batch {
        let mut doc_start = 0;
        for q in 0..seq {
            if let Some(s) = segments
                && q > 0
                && s[b * seq + q] != s[b * seq + q - 1]
            {
                doc_start = q;
            }
            let window_start = q.saturating_sub(window.saturating_sub(1));
            out.push(doc_start.max(window_start) as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_documents_restrict_the_causal_range() {
        let _rng = crate::test_rng::lock();
        // Two sequences of 5 tokens; the first holds documents [0, 0, 1, 1, 1]; window 2.
        let segments = [0, 0, 1, 1, 1, 7, 7, 7, 7, 7];
        assert_eq!(
            key_starts(2, 5, 2, Some(&segments)),
            [0, 0, 2, 2, 3, 0, 0, 1, 2, 3]
        );
        assert_eq!(
            key_starts(2, 5, usize::MAX, Some(&segments)),
            [0, 0, 2, 2, 2, 0, 0, 0, 0, 0]
        );
        assert_eq!(key_starts(1, 4, usize::MAX, None), [0, 0, 0, 0]);
        assert_eq!(key_starts(1, 4, 1, None), [0, 1, 2, 3]);
    }
}
