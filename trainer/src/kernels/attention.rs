//! Fused grouped-query attention over per-query key ranges: forward and backward on the CPU.
//!
//! Query `t` attends to keys `start[t] ..= t`, one contiguous range: that covers causal, sliding
//! window and document-causal masks (packed documents are contiguous). Work is split into one task
//! per (sequence, key/value head); a task walks the query heads that share its key/value head and
//! the queries in blocks of [`ROW_BLOCK`] rows, multiplying only the band of keys the block can
//! see. Score tiles stay in cache, no `[batch, heads, seq, seq]` tensor is built and key/value heads
//! are never copied per query head. The forward pass can keep the probability tiles of that band
//! for the backward pass; when they would not fit a budget (long sequences), the backward pass
//! recomputes them from the saved log-normalisers instead, as FlashAttention does.
//!
//! Layouts are those of the projections, so no transposes are needed around the kernel:
//! queries and outputs `[batch, seq, heads, dim]`, keys and values `[batch, seq, kv_heads, dim]`,
//! log-normalisers `[batch, heads, seq]`.

use rayon::prelude::*;

use super::matmul::{View, gemm};
use super::vecmath;

/// Query rows per score tile.
const ROW_BLOCK: usize = 64;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Size of one head.
    pub head_dim: usize,
}

impl Dims {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn q_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    fn kv_len(&self) -> usize {
        self.batch * self.seq * self.kv_heads * self.head_dim
    }

    /// Panics unless the slices have the lengths these sizes need and every key range is valid.
    fn check(&self, q: &[f32], k: &[f32], v: &[f32], starts: &[u32]) {
        assert!(
            self.kv_heads > 0 && self.heads.is_multiple_of(self.kv_heads),
            "attention: {} query heads are not a multiple of {} key/value heads",
            self.heads,
            self.kv_heads
        );
        assert_eq!(q.len(), self.q_len(), "attention: query size");
        assert_eq!(k.len(), self.kv_len(), "attention: key size");
        assert_eq!(v.len(), self.kv_len(), "attention: value size");
        assert_eq!(
            starts.len(),
            self.batch * self.seq,
            "attention: key starts size"
        );
        for (i, &s) in starts.iter().enumerate() {
            assert!(
                (s as usize) <= i % self.seq,
                "attention: query {} of sequence {} starts at key {s}, after itself",
                i % self.seq,
                i / self.seq
            );
        }
    }
}

/// Where one (sequence, key/value head) task reads its operands.
struct Task<'a> {
    dims: Dims,
    b: usize,
    g: usize,
    starts: &'a [u32],
}

impl<'a> Task<'a> {
    /// Task `index` of `batch · kv_heads`: sequence `index / kv_heads`, key/value head
    /// `index % kv_heads`.
    fn new(dims: Dims, index: usize, starts: &'a [u32]) -> Self {
        Task {
            dims,
            b: index / dims.kv_heads,
            g: index % dims.kv_heads,
            starts,
        }
    }

    /// Rows `r0..r1` of query head `h` (or of any `[batch, seq, heads, dim]` tensor).
    fn q_rows(&self, h: usize, r0: usize, r1: usize) -> View {
        let Dims {
            seq,
            heads,
            head_dim,
            ..
        } = self.dims;
        View::rows(
            ((self.b * seq + r0) * heads + h) * head_dim,
            r1 - r0,
            head_dim,
            heads * head_dim,
        )
    }

    /// Keys (or values) `k0..k1` of this task's key/value head.
    fn kv_rows(&self, k0: usize, k1: usize) -> View {
        let Dims {
            seq,
            kv_heads,
            head_dim,
            ..
        } = self.dims;
        View::rows(
            ((self.b * seq + k0) * kv_heads + self.g) * head_dim,
            k1 - k0,
            head_dim,
            kv_heads * head_dim,
        )
    }

    /// First key any query in `r0..r1` may see.
    fn band_start(&self, r0: usize, r1: usize) -> usize {
        let base = self.b * self.dims.seq;
        self.starts[base + r0..base + r1]
            .iter()
            .min()
            .map_or(r0, |&s| s as usize)
    }

    /// Copies this task's rows (`[seq, width]`: its query heads, or its key/value head) into its
    /// columns of a `[batch, seq, row]` tensor, where they start at `g · width`.
    fn scatter_rows(&self, dst: &mut [f32], part: &[f32]) {
        let seq = self.dims.seq;
        let (width, row) = (part.len() / seq, dst.len() / (self.dims.batch * seq));
        for (t, values) in part.chunks_exact(width).enumerate() {
            let at = (self.b * seq + t) * row + self.g * width;
            dst[at..at + width].copy_from_slice(values);
        }
    }

    /// Floats in the probability tiles of all of this task's query heads.
    fn tile_floats(&self) -> usize {
        let per_head: usize = blocks(self.dims.seq)
            .map(|(r0, r1)| (r1 - r0) * (r1 - self.band_start(r0, r1)))
            .sum();
        per_head * self.dims.group()
    }

    /// The visible keys of query `t` as a range inside a tile row starting at key `k0`.
    fn visible(&self, t: usize, k0: usize) -> (usize, usize) {
        (
            self.starts[self.b * self.dims.seq + t] as usize - k0,
            t + 1 - k0,
        )
    }

    /// Scores `q · kᵀ` of rows `r0..r1` of head `h` against keys `k0..r1` into `tile`.
    fn scores(
        &self,
        q: &[f32],
        k: &[f32],
        h: usize,
        (r0, r1, k0): (usize, usize, usize),
        tile: &mut [f32],
    ) {
        let width = r1 - k0;
        gemm(
            tile,
            View::rows(0, r1 - r0, width, width),
            q,
            self.q_rows(h, r0, r1),
            k,
            self.kv_rows(k0, r1).t(),
            1.0,
            false,
        );
    }
}

/// Row blocks `(r0, r1)` of a sequence.
fn blocks(seq: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..seq)
        .step_by(ROW_BLOCK)
        .map(move |r0| (r0, (r0 + ROW_BLOCK).min(seq)))
}

/// Output and log-normalisers of the forward pass, and the probability tiles when kept.
#[derive(Debug)]
pub struct Forward {
    /// `[batch, seq, heads, dim]`.
    pub out: Vec<f32>,
    /// `[batch, heads, seq]`: `log Σ exp(scale · q·k)` over each query's visible keys.
    pub lse: Vec<f32>,
    /// Per (sequence, key/value head) task, its probability tiles in the order the backward pass
    /// visits them; `None` when not kept (the backward pass then recomputes them).
    pub probabilities: Option<Vec<Vec<f32>>>,
}

/// Floats [`forward`] keeps when asked to keep the probabilities: the tiles of the visible band.
pub fn probability_floats(dims: Dims, starts: &[u32]) -> usize {
    (0..dims.batch * dims.kv_heads)
        .map(|index| Task::new(dims, index, starts).tile_floats())
        .sum()
}

/// `softmax(scale · q kᵀ over visible keys) · v` for every query; with `keep_probabilities`, also
/// the probability tiles, which spares the backward pass one product and one `exp` per score.
///
/// # Panics
/// When slice lengths disagree with `dims` or a key range starts after its query.
pub fn forward(
    dims: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    starts: &[u32],
    scale: f32,
    keep_probabilities: bool,
) -> Forward {
    dims.check(q, k, v, starts);
    let Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim,
    } = dims;
    let group = dims.group();
    let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..batch * kv_heads)
        .into_par_iter()
        .map(|task| {
            let task = Task::new(dims, task, starts);
            // Output rows of this task's query heads, `[seq, group, dim]`, and their normalisers.
            let mut out = vec![0.0f32; seq * group * head_dim];
            let mut lse = vec![0.0f32; group * seq];
            let mut tile = vec![0.0f32; ROW_BLOCK * seq];
            let mut kept = Vec::with_capacity(if keep_probabilities {
                task.tile_floats()
            } else {
                0
            });
            for r in 0..group {
                let h = task.g * group + r;
                for (r0, r1) in blocks(seq) {
                    let k0 = task.band_start(r0, r1);
                    let width = r1 - k0;
                    task.scores(q, k, h, (r0, r1, k0), &mut tile);
                    for t in r0..r1 {
                        let row = &mut tile[(t - r0) * width..(t - r0 + 1) * width];
                        let (lo, hi) = task.visible(t, k0);
                        row[..lo].fill(0.0);
                        row[hi..].fill(0.0);
                        lse[r * seq + t] = vecmath::softmax(&mut row[lo..hi], scale);
                    }
                    if keep_probabilities {
                        kept.extend_from_slice(&tile[..(r1 - r0) * width]);
                    }
                    gemm(
                        &mut out,
                        View::rows(
                            (r0 * group + r) * head_dim,
                            r1 - r0,
                            head_dim,
                            group * head_dim,
                        ),
                        &tile,
                        View::rows(0, r1 - r0, width, width),
                        v,
                        task.kv_rows(k0, r1),
                        1.0,
                        false,
                    );
                }
            }
            (out, lse, kept)
        })
        .collect();

    let mut out = vec![0.0f32; dims.q_len()];
    let mut lse = vec![0.0f32; batch * heads * seq];
    for (index, (part_out, part_lse, _)) in parts.iter().enumerate() {
        let task = Task::new(dims, index, starts);
        task.scatter_rows(&mut out, part_out);
        let at = (task.b * heads + task.g * group) * seq;
        lse[at..at + group * seq].copy_from_slice(part_lse);
    }
    let probabilities = keep_probabilities.then(|| parts.into_iter().map(|p| p.2).collect());
    Forward {
        out,
        lse,
        probabilities,
    }
}

/// Gradients of the forward pass's inputs.
#[derive(Debug)]
pub struct Grads {
    /// `[batch, seq, heads, dim]`.
    pub q: Vec<f32>,
    /// `[batch, seq, kv_heads, dim]`.
    pub k: Vec<f32>,
    /// `[batch, seq, kv_heads, dim]`.
    pub v: Vec<f32>,
}

/// Inputs of [`backward`]: the forward operands, its results and the output gradient.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// Queries, `[batch, seq, heads, dim]`.
    pub q: &'a [f32],
    /// Keys, `[batch, seq, kv_heads, dim]`.
    pub k: &'a [f32],
    /// Values, `[batch, seq, kv_heads, dim]`.
    pub v: &'a [f32],
    /// First visible key per query, `[batch, seq]`.
    pub starts: &'a [u32],
    /// Forward output, `[batch, seq, heads, dim]`.
    pub out: &'a [f32],
    /// Forward log-normalisers, `[batch, heads, seq]`.
    pub lse: &'a [f32],
    /// The forward pass's probability tiles, when it kept them.
    pub probabilities: Option<&'a [Vec<f32>]>,
}

/// Gradients of `forward` with respect to queries, keys and values, given `d_out`.
///
/// # Panics
/// When slice lengths disagree with `dims`.
pub fn backward(dims: Dims, saved: Saved<'_>, d_out: &[f32], scale: f32) -> Grads {
    let Saved {
        q,
        k,
        v,
        starts,
        out,
        lse,
        probabilities,
    } = saved;
    dims.check(q, k, v, starts);
    assert_eq!(out.len(), dims.q_len(), "attention backward: output size");
    assert_eq!(
        d_out.len(),
        dims.q_len(),
        "attention backward: output gradient size"
    );
    let Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim,
    } = dims;
    let group = dims.group();
    let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..batch * kv_heads)
        .into_par_iter()
        .map(|task_index| {
            let task = Task::new(dims, task_index, starts);
            let mut dq = vec![0.0f32; seq * group * head_dim];
            let mut dk = vec![0.0f32; seq * head_dim];
            let mut dv = vec![0.0f32; seq * head_dim];
            let kept = probabilities.map(|tiles| tiles[task_index].as_slice());
            let mut recomputed = if kept.is_some() {
                Vec::new()
            } else {
                vec![0.0f32; ROW_BLOCK * seq]
            };
            let mut ds = vec![0.0f32; ROW_BLOCK * seq];
            let mut kept_offset = 0;
            for r in 0..group {
                let h = task.g * group + r;
                for (r0, r1) in blocks(seq) {
                    let k0 = task.band_start(r0, r1);
                    let width = r1 - k0;
                    let tile = View::rows(0, r1 - r0, width, width);
                    let p: &[f32] = match kept {
                        Some(tiles) => {
                            kept_offset += (r1 - r0) * width;
                            &tiles[kept_offset - (r1 - r0) * width..kept_offset]
                        }
                        None => {
                            task.scores(q, k, h, (r0, r1, k0), &mut recomputed);
                            for t in r0..r1 {
                                let row = &mut recomputed[(t - r0) * width..(t - r0 + 1) * width];
                                let (lo, hi) = task.visible(t, k0);
                                row[..lo].fill(0.0);
                                row[hi..].fill(0.0);
                                let lse = lse[(task.b * heads + h) * seq + t];
                                vecmath::exp_affine(&mut row[lo..hi], scale, lse);
                            }
                            &recomputed
                        }
                    };
                    // dP = dO · vᵀ
                    gemm(
                        &mut ds,
                        tile,
                        d_out,
                        task.q_rows(h, r0, r1),
                        v,
                        task.kv_rows(k0, r1).t(),
                        1.0,
                        false,
                    );
                    for t in r0..r1 {
                        let at = (t - r0) * width;
                        let (lo, hi) = task.visible(t, k0);
                        let ds_row = &mut ds[at..at + width];
                        ds_row[..lo].fill(0.0);
                        ds_row[hi..].fill(0.0);
                        let o = ((task.b * seq + t) * heads + h) * head_dim;
                        let centre = vecmath::dot(&out[o..o + head_dim], &d_out[o..o + head_dim]);
                        let p_row = &p[at + lo..at + hi];
                        vecmath::softmax_backward(p_row, &mut ds_row[lo..hi], centre);
                    }
                    let band = View::rows(k0 * head_dim, width, head_dim, head_dim);
                    // dV += Pᵀ · dO ; dQ = scale · dS · k ; dK += scale · dSᵀ · q
                    gemm(
                        &mut dv,
                        band,
                        p,
                        tile.t(),
                        d_out,
                        task.q_rows(h, r0, r1),
                        1.0,
                        true,
                    );
                    gemm(
                        &mut dq,
                        View::rows(
                            (r0 * group + r) * head_dim,
                            r1 - r0,
                            head_dim,
                            group * head_dim,
                        ),
                        &ds,
                        tile,
                        k,
                        task.kv_rows(k0, r1),
                        scale,
                        false,
                    );
                    gemm(
                        &mut dk,
                        band,
                        &ds,
                        tile.t(),
                        q,
                        task.q_rows(h, r0, r1),
                        scale,
                        true,
                    );
                }
            }
            (dq, dk, dv)
        })
        .collect();

    let mut grads = Grads {
        q: vec![0.0f32; dims.q_len()],
        k: vec![0.0f32; dims.kv_len()],
        v: vec![0.0f32; dims.kv_len()],
    };
    for (index, (dq, dk, dv)) in parts.iter().enumerate() {
        let task = Task::new(dims, index, starts);
        task.scatter_rows(&mut grads.q, dq);
        task.scatter_rows(&mut grads.k, dk);
        task.scatter_rows(&mut grads.v, dv);
    }
    grads
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward attention in f64 for comparison, with the same layouts.
    fn reference(
        dims: Dims,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        starts: &[u32],
        scale: f64,
    ) -> Vec<f64> {
        let Dims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim: d,
        } = dims;
        let mut out = vec![0.0; q.len()];
        for b in 0..batch {
            for h in 0..heads {
                let g = h / (heads / kv_heads);
                for t in 0..seq {
                    let qi = ((b * seq + t) * heads + h) * d;
                    let keys = starts[b * seq + t] as usize..=t;
                    let s: Vec<f64> = keys
                        .clone()
                        .map(|j| {
                            let ki = ((b * seq + j) * kv_heads + g) * d;
                            (0..d)
                                .map(|x| q[qi + x] as f64 * k[ki + x] as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let m = s.iter().copied().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    for (j, sj) in keys.zip(&s) {
                        let vi = ((b * seq + j) * kv_heads + g) * d;
                        for x in 0..d {
                            out[qi + x] += (sj - m).exp() / z * v[vi + x] as f64;
                        }
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.618 + seed as f32 * 1.7).sin() * 1.3)
            .collect()
    }

    /// Two sequences of 150 tokens (three row blocks), window 40, documents restarting at 70 in
    /// the second sequence.
    fn case() -> (Dims, Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
        let dims = Dims {
            batch: 2,
            seq: 150,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
        };
        let mut starts = Vec::new();
        for b in 0..2 {
            for t in 0..150u32 {
                let doc_start = if b == 1 && t >= 70 { 70 } else { 0 };
                starts.push(doc_start.max(t.saturating_sub(39)));
            }
        }
        (
            dims,
            values(dims.q_len(), 1),
            values(dims.kv_len(), 2),
            values(dims.kv_len(), 3),
            starts,
        )
    }

    #[test]
    fn forward_matches_reference_attention() {
        let _rng = crate::test_rng::lock();
        let (dims, q, k, v, starts) = case();
        let fwd = forward(dims, &q, &k, &v, &starts, 0.35, false);
        let expected = reference(dims, &q, &k, &v, &starts, 0.35);
        let worst = fwd
            .out
            .iter()
            .zip(&expected)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "max difference {worst}");
    }

    #[test]
    fn backward_matches_finite_differences() {
        let _rng = crate::test_rng::lock();
        let (dims, q, k, v, starts) = case();
        let scale = 0.35;
        // Loss = Σ w ⊙ out with fixed weights w, so d_out = w.
        let w = values(dims.q_len(), 4);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            reference(dims, q, k, v, &starts, scale as f64)
                .iter()
                .zip(&w)
                .map(|(o, w)| o * *w as f64)
                .sum()
        };
        let fwd = forward(dims, &q, &k, &v, &starts, scale, false);
        let saved = Saved {
            q: &q,
            k: &k,
            v: &v,
            starts: &starts,
            out: &fwd.out,
            lse: &fwd.lse,
            probabilities: None,
        };
        let grads = backward(dims, saved, &w, scale);

        // Keeping the probability tiles gives the same gradients without recomputing them.
        let kept = forward(dims, &q, &k, &v, &starts, scale, true);
        let tiles = kept.probabilities.as_deref().expect("kept");
        let floats: usize = tiles.iter().map(Vec::len).sum();
        assert_eq!(floats, probability_floats(dims, &starts));
        assert_eq!(kept.out, fwd.out);
        let from_kept = backward(
            dims,
            Saved {
                probabilities: Some(tiles),
                ..saved
            },
            &w,
            scale,
        );
        for (a, b) in [
            (&grads.q, &from_kept.q),
            (&grads.k, &from_kept.k),
            (&grads.v, &from_kept.v),
        ] {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-5,
                "kept and recomputed probabilities differ by {worst}"
            );
        }
        let eps = 1e-2f32;
        for (which, index) in [
            (0, 5),
            (0, 2_000),
            (0, 9_000),
            (1, 3),
            (1, 2_500),
            (2, 7),
            (2, 4_100),
        ] {
            let (mut qp, mut kp, mut vp) = (q.clone(), k.clone(), v.clone());
            let (mut qm, mut km, mut vm) = (q.clone(), k.clone(), v.clone());
            let (plus, minus, analytic) = match which {
                0 => (&mut qp, &mut qm, grads.q[index]),
                1 => (&mut kp, &mut km, grads.k[index]),
                _ => (&mut vp, &mut vm, grads.v[index]),
            };
            plus[index] += eps;
            minus[index] -= eps;
            let numeric = (loss(&qp, &kp, &vp) - loss(&qm, &km, &vm)) / (2.0 * eps as f64);
            assert!(
                (numeric - analytic as f64).abs() < 2e-3 * (1.0 + numeric.abs()),
                "input {which} index {index}: numeric {numeric} vs analytic {analytic}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "after itself")]
    fn a_key_range_after_its_query_is_refused() {
        let _rng = crate::test_rng::lock();
        let (dims, q, k, v, mut starts) = case();
        starts[3] = 4;
        forward(dims, &q, &k, &v, &starts, 1.0, false);
    }
}
