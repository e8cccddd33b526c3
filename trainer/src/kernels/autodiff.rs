//! The fused operations under autodiff: forward on flex, the hand-written backward passes of
//! [`super::attention`], [`super::cross_entropy`], [`super::norm`], [`super::swiglu`] and
//! [`super::rope`] registered as graph steps. Backward passes overwrite buffers they own (saved
//! inputs, incoming gradients) in place; a buffer still shared elsewhere is copied first.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Flex};
use burn::tensor::Shape;

use super::attention::{self, Saved};
use super::{
    AttentionDims, FusedOps, KeyStarts, MatrixOperand, Positions, RopeTables, attention_dims,
    cross_entropy, f32_contiguous, from_vec, indices, matrix_dims, norm, rope, same_shape, slice,
    swiglu, values_mut,
};

/// What the attention backward pass needs: the operands, the output and its log-normalisers.
#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    out: FlexTensor,
    lse: Arc<Vec<f32>>,
    probabilities: Option<Arc<Vec<Vec<f32>>>>,
    starts: KeyStarts,
    dims: AttentionDims,
    scale: f32,
}

/// Most floats one attention call keeps as probability tiles for its backward pass (64 MB);
/// larger calls (long sequences) recompute them instead.
const KEPT_PROBABILITIES_BUDGET: usize = 16 << 20;

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<AttentionState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = f32_contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let saved = Saved {
            q: slice(&s.q),
            k: slice(&s.k),
            v: slice(&s.v),
            starts: s.starts.as_slice(),
            out: slice(&s.out),
            lse: &s.lse,
            probabilities: s.probabilities.as_deref().map(Vec::as_slice),
        };
        let g = attention::backward(s.dims, saved, slice(&d_out), s.scale);
        let AttentionDims {
            batch,
            seq,
            heads,
            kv_heads,
            head_dim,
        } = s.dims;
        let [q_node, k_node, v_node] = ops.parents;
        for (node, values, heads) in [
            (q_node, g.q, heads),
            (k_node, g.k, kv_heads),
            (v_node, g.v, kv_heads),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(
                    node.id,
                    from_vec(values, Shape::new([batch, seq, heads, head_dim])),
                );
            }
        }
    }
}

/// What the cross-entropy backward pass needs: the probabilities (turned into the gradient in
/// place) and the targets.
#[derive(Debug, Clone)]
struct CrossEntropyState {
    probabilities: FlexTensor,
    targets: Arc<Vec<usize>>,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = CrossEntropyState;

    fn backward(self, ops: Ops<CrossEntropyState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = f32_contiguous(grads.consume::<Flex>(&ops.node));
        let [Some(node)] = ops.parents else {
            return;
        };
        let CrossEntropyState {
            mut probabilities,
            targets,
        } = ops.state;
        let (_, vocab) = matrix_dims(&probabilities);
        let values = values_mut(&mut probabilities);
        cross_entropy::backward_in_place(values, vocab, &targets, slice(&grad));
        grads.register::<Flex>(node.id, probabilities);
    }
}

/// What the RMSNorm backward pass needs.
#[derive(Debug, Clone)]
struct RmsNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    rstd: Arc<Vec<f32>>,
}

#[derive(Debug)]
struct RmsNormBackward;

impl Backward<Flex, 2> for RmsNormBackward {
    type State = RmsNormState;

    fn backward(self, ops: Ops<RmsNormState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut d = f32_contiguous(grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d_gamma =
            norm::backward_in_place(slice(&s.x), slice(&s.gamma), &s.rstd, values_mut(&mut d));
        let [x_node, gamma_node] = ops.parents;
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, from_vec(d_gamma, s.gamma.layout().shape().clone()));
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, d);
        }
    }
}

/// What the SwiGLU backward pass needs: its inputs, overwritten by their gradients.
#[derive(Debug, Clone)]
struct SwigluState {
    a: FlexTensor,
    b: FlexTensor,
}

#[derive(Debug)]
struct SwigluBackward;

impl Backward<Flex, 2> for SwigluBackward {
    type State = SwigluState;

    fn backward(self, ops: Ops<SwigluState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = f32_contiguous(grads.consume::<Flex>(&ops.node));
        let SwigluState { mut a, mut b } = ops.state;
        swiglu::backward_in_place(values_mut(&mut a), values_mut(&mut b), slice(&grad));
        let [a_node, b_node] = ops.parents;
        for (node, grad) in [(a_node, a), (b_node, b)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// What the rotary-embedding backward pass needs: the positions and tables (the rotation is
/// linear, so not its input).
#[derive(Debug, Clone)]
struct RopeState {
    positions: Positions,
    tables: RopeTables,
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    type State = RopeState;

    fn backward(self, ops: Ops<RopeState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut grad = f32_contiguous(grads.consume::<Flex>(&ops.node));
        let [Some(node)] = ops.parents else {
            return;
        };
        let s = ops.state;
        rope::rotate(
            values_mut(&mut grad),
            s.positions.as_slice(),
            &s.tables,
            true,
        );
        grads.register::<Flex>(node.id, grad);
    }
}

/// What the matrix-product backward pass needs: both operands (views, not copies).
#[derive(Debug, Clone)]
struct MatmulState {
    lhs: MatrixOperand,
    rhs: MatrixOperand,
}

#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    type State = MatmulState;

    fn backward(self, ops: Ops<MatmulState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = MatrixOperand::new(grads.consume::<Flex>(&ops.node));
        let MatmulState { lhs, rhs } = ops.state;
        let [lhs_node, rhs_node] = ops.parents;
        if let Some(node) = lhs_node {
            grads.register::<Flex>(node.id, d_out.times(&rhs.t()));
        }
        if let Some(node) = rhs_node {
            grads.register::<Flex>(node.id, lhs.t().times(&d_out));
        }
    }
}

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        starts: KeyStarts,
        scale: f32,
    ) -> FloatTensor<Self> {
        let dims = attention_dims(q.primitive(), k.primitive());
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        let (q, k, v) = (f32_contiguous(q), f32_contiguous(k), f32_contiguous(v));
        let shape = Shape::new([dims.batch, dims.seq, dims.heads, dims.head_dim]);
        let forward = |keep| {
            let (qs, ks, vs) = (slice(&q), slice(&k), slice(&v));
            attention::forward(dims, qs, ks, vs, starts.as_slice(), scale, keep)
        };
        match AttentionBackward
            .prepare::<C>([q_node, k_node, v_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let keep = attention::probability_floats(dims, starts.as_slice())
                    <= KEPT_PROBABILITIES_BUDGET;
                let fwd = forward(keep);
                let out = from_vec(fwd.out, shape);
                let state = AttentionState {
                    q,
                    k,
                    v,
                    out: out.clone(),
                    lse: Arc::new(fwd.lse),
                    probabilities: fwd.probabilities.map(Arc::new),
                    starts,
                    dims,
                    scale,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(from_vec(forward(false).out, shape)),
        }
    }

    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let (rows, vocab) = matrix_dims(logits.primitive());
        let targets = indices(&targets);
        let (logits, node) = logits.into_parts();
        let mut logits = f32_contiguous(logits);
        match CrossEntropyBackward
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The logits become the probabilities the backward pass needs (in place when this
                // is their only reference), so each logit is exponentiated once.
                let losses =
                    cross_entropy::forward_in_place(values_mut(&mut logits), vocab, &targets);
                let state = CrossEntropyState {
                    probabilities: logits,
                    targets: Arc::new(targets),
                };
                prep.finish(state, from_vec(losses, Shape::new([rows])))
            }
            OpsKind::UnTracked(prep) => {
                let (losses, _) = cross_entropy::forward(slice(&logits), vocab, &targets);
                prep.finish(from_vec(losses, Shape::new([rows])))
            }
        }
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let shape = x.primitive().layout().shape().clone();
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (x, gamma) = (f32_contiguous(x), f32_contiguous(gamma));
        let (y, rstd) = norm::forward(slice(&x), slice(&gamma), eps);
        let y = from_vec(y, shape);
        match RmsNormBackward
            .prepare::<C>([x_node, gamma_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let rstd = Arc::new(rstd);
                prep.finish(RmsNormState { x, gamma, rstd }, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_swiglu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = same_shape(a.primitive(), b.primitive());
        let (a, a_node) = a.into_parts();
        let (b, b_node) = b.into_parts();
        let (a, b) = (f32_contiguous(a), f32_contiguous(b));
        let out = from_vec(swiglu::forward(slice(&a), slice(&b)), shape);
        match SwigluBackward
            .prepare::<C>([a_node, b_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(SwigluState { a, b }, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_rope(
        x: FloatTensor<Self>,
        positions: Positions,
        tables: RopeTables,
    ) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let mut out = f32_contiguous(x);
        rope::rotate(values_mut(&mut out), positions.as_slice(), &tables, false);
        match RopeBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(RopeState { positions, tables }, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let (lhs, lhs_node) = lhs.into_parts();
        let (rhs, rhs_node) = rhs.into_parts();
        let (lhs, rhs) = (MatrixOperand::new(lhs), MatrixOperand::new(rhs));
        let out = lhs.times(&rhs);
        match MatmulBackward
            .prepare::<C>([lhs_node, rhs_node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(MatmulState { lhs, rhs }, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}
