//! Fused CPU kernels with hand-written backward passes, plugged into burn as a backend extension.
//!
//! burn composes attention, cross-entropy, normalisation and gating from elementary differentiable
//! operations; on the CPU that builds `[batch, heads, seq, seq]` and `[tokens, vocab]`
//! intermediates many times over and spent much of a training step in scalar `exp` (the model ran
//! at 0.48× PyTorch eager before these kernels, about 1.0–1.1× with them: `bench/RESULTS.md`). The
//! operations here do the same arithmetic in one pass each way: [`attention`] (grouped-query, any
//! per-query key range: causal, sliding window, document-causal), [`cross_entropy`] (per-token
//! loss from logits), [`rms_norm`], [`swiglu`] and [`rope`]; [`matmul`] runs the model's matrix
//! products on kernels chosen per CPU (see [`MatmulIsa`]). Each has a test against burn's
//! composed version, gradients included. All run on the flex backend with or without autodiff;
//! without it (evaluation, teachers, generation) only the forward kernels run.

mod attention;
mod autodiff;
mod buffer;
mod cross_entropy;
mod matmul;
mod norm;
mod rope;
mod swiglu;
mod vecmath;

use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::RmsNorm;
use burn::tensor::{DType, Int, Shape, Tensor, TensorData};

use attention::Dims as AttentionDims;
pub use matmul::{MATMUL_ISA_VAR, MatmulIsa, MatmulIsaError};
use matmul::{Threads, View};
pub use rope::RopeTables;

/// The first key each query may attend to, per token of a `[batch, seq]` batch; the last is the
/// query itself. Built by [`crate::model::mask::AttentionMasks`].
#[derive(Debug, Clone)]
pub struct KeyStarts {
    starts: Arc<[u32]>,
}

impl KeyStarts {
    /// Wraps per-token key starts (row-major `[batch, seq]`).
    pub fn new(starts: Vec<u32>) -> Self {
        Self {
            starts: starts.into(),
        }
    }

    /// The starts, row-major `[batch, seq]`.
    pub fn as_slice(&self) -> &[u32] {
        &self.starts
    }
}

/// Token positions of a `[batch, seq]` batch (running positions restart per document with
/// document masking), row-major.
#[derive(Debug, Clone)]
pub struct Positions {
    positions: Arc<[u32]>,
}

impl Positions {
    /// Wraps per-token positions (row-major `[batch, seq]`).
    pub fn new(positions: Vec<u32>) -> Self {
        Self {
            positions: positions.into(),
        }
    }

    /// The positions, row-major `[batch, seq]`.
    pub fn as_slice(&self) -> &[u32] {
        &self.positions
    }
}

/// The fused operations as a burn backend extension: implemented for flex, and for autodiff over
/// flex with hand-written backward passes.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// Attention of `[batch, seq, heads, dim]` queries over `[batch, seq, kv_heads, dim]` keys and
    /// values; output like the queries.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        starts: KeyStarts,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `−log softmax(logits)[target]` per row of `[tokens, vocab]` logits.
    fn fused_cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self>;

    /// RMSNorm over the last dimension, scaled by `gamma`.
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// `silu(a) ⊙ b`.
    fn fused_swiglu(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Rotary embeddings of `[batch, seq, heads, dim]` at per-token positions.
    fn fused_rope(
        x: FloatTensor<Self>,
        positions: Positions,
        tables: RopeTables,
    ) -> FloatTensor<Self>;

    /// The product of `[m, k]` and `[k, n]` matrices (either may be a transposed view).
    fn fused_matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl FusedOps for Flex {
    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        starts: KeyStarts,
        scale: f32,
    ) -> FlexTensor {
        let shape = q.layout().shape().clone();
        let dims = attention_dims(&q, &k);
        let (q, k, v) = (f32_contiguous(q), f32_contiguous(k), f32_contiguous(v));
        let out = attention::forward(
            dims,
            slice(&q),
            slice(&k),
            slice(&v),
            starts.as_slice(),
            scale,
            false,
        )
        .out;
        from_vec(out, shape)
    }

    fn fused_cross_entropy(logits: FlexTensor, targets: FlexTensor) -> FlexTensor {
        let (rows, vocab) = matrix_dims(&logits);
        let targets = indices(&targets);
        let logits = f32_contiguous(logits);
        let (losses, _) = cross_entropy::forward(slice(&logits), vocab, &targets);
        from_vec(losses, Shape::new([rows]))
    }

    fn fused_rms_norm(x: FlexTensor, gamma: FlexTensor, eps: f32) -> FlexTensor {
        let shape = x.layout().shape().clone();
        let (x, gamma) = (f32_contiguous(x), f32_contiguous(gamma));
        from_vec(norm::forward(slice(&x), slice(&gamma), eps).0, shape)
    }

    fn fused_swiglu(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        same_shape(&a, &b); // panics unless the operands have one shape
        // No backward pass: the gate is written over `b` (in place when it is not shared).
        let (a, mut b) = (f32_contiguous(a), f32_contiguous(b));
        swiglu::forward_in_place(slice(&a), values_mut(&mut b));
        b
    }

    fn fused_rope(x: FlexTensor, positions: Positions, tables: RopeTables) -> FlexTensor {
        let mut x = f32_contiguous(x);
        rope::rotate(values_mut(&mut x), positions.as_slice(), &tables, false);
        x
    }

    fn fused_matmul(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        let (lhs, rhs) = (MatrixOperand::new(lhs), MatrixOperand::new(rhs));
        lhs.times(&rhs)
    }
}

/// Fused grouped-query attention (queries and keys already rotated).
///
/// # Shapes
/// - `q`: `[batch, seq, heads, dim]`; `k`, `v`: `[batch, seq, kv_heads, dim]`, `heads` a multiple
///   of `kv_heads` (query head `h` uses key/value head `h / (heads / kv_heads)`)
/// - `starts`: `batch · seq` key starts, each at most its query's position
/// - output: `[batch, seq, heads, dim]`; scores are scaled by `1 / √dim`
///
/// # Panics
/// When the shapes disagree or a key range starts after its query.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::kernels::{KeyStarts, attention};
/// let device = Device::flex();
/// // One sequence of two tokens, one head of size 1; values 10 and 20.
/// let q = Tensor::<4>::from_floats([[[[1.0]], [[1.0]]]], &device);
/// let k = Tensor::<4>::from_floats([[[[0.0]], [[0.0]]]], &device);
/// let v = Tensor::<4>::from_floats([[[[10.0]], [[20.0]]]], &device);
/// let starts = KeyStarts::new(vec![0, 0]);
/// let out: Vec<f32> = attention(q, k, v, &starts).into_data().try_to_vec().unwrap();
/// // Token 0 sees only itself; token 1 weighs both keys equally (equal scores).
/// assert_eq!(out[0], 10.0);
/// assert!((out[1] - 15.0).abs() < 1e-5);
/// ```
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, starts: &KeyStarts) -> Tensor<4> {
    let scale = 1.0 / (q.dims()[3] as f32).sqrt();
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        starts.clone(),
        scale,
    ))
}

/// Per-token cross-entropy `−log softmax(logits)[target]`.
///
/// # Shapes
/// `logits`: `[tokens, vocab]`, `targets`: `[tokens]` → `[tokens]`.
///
/// # Panics
/// When a target is outside the vocabulary.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Int, Tensor};
/// use mixlab_trainer::kernels::cross_entropy;
/// let device = Device::flex();
/// let logits = Tensor::<2>::from_floats([[0.0, 0.0], [5.0, 5.0]], &device);
/// let targets = Tensor::<1, Int>::from_ints([1, 0], &device);
/// let losses: Vec<f32> = cross_entropy(logits, targets).into_data().try_to_vec().unwrap();
/// // Two equally likely tokens: every loss is ln 2.
/// assert!(losses.iter().all(|l| (l - std::f32::consts::LN_2).abs() < 1e-6));
/// ```
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
    ))
}

/// RMSNorm over the last dimension: `x / √(mean(x²) + eps) ⊙ gamma`, the parameters of `norm`.
///
/// # Shapes
/// `x`: `[..., d]` → `[..., d]`.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Tensor};
/// use burn::nn::RmsNormConfig;
/// use mixlab_trainer::kernels::rms_norm;
/// let device = Device::flex();
/// let norm = RmsNormConfig::new(2).with_epsilon(1e-9).init(&device);
/// let y: Vec<f32> = rms_norm(Tensor::<2>::from_floats([[3.0, 4.0]], &device), &norm)
///     .into_data()
///     .try_to_vec()
///     .unwrap();
/// // √(mean(9, 16)) = √12.5
/// assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-5);
/// ```
pub fn rms_norm<const D: usize>(x: Tensor<D>, norm: &RmsNorm) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.epsilon as f32,
    ))
}

/// The SwiGLU gate `silu(a) ⊙ b` of two tensors of the same shape.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::kernels::swiglu;
/// let device = Device::flex();
/// let a = Tensor::<1>::from_floats([0.0, 2.0], &device);
/// let b = Tensor::<1>::from_floats([5.0, 3.0], &device);
/// let out: Vec<f32> = swiglu(a, b).into_data().try_to_vec().unwrap();
/// assert_eq!(out[0], 0.0); // silu(0) = 0
/// assert!((out[1] - 3.0 * 2.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-5);
/// ```
pub fn swiglu<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// Rotary position embeddings, `rotate_half` convention.
///
/// # Shapes
/// `x`: `[batch, seq, heads, head_dim]` with `batch · seq` positions → like `x`.
///
/// # Panics
/// When a position is beyond the tables.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::kernels::{Positions, RopeTables, rope};
/// let device = Device::flex();
/// // One pair rotated by a quarter turn at position 1.
/// let tables = RopeTables { half: 1, cos: vec![1.0, 0.0].into(), sin: vec![0.0, 1.0].into() };
/// let x = Tensor::<4>::from_floats([[[[1.0, 0.0]], [[1.0, 0.0]]]], &device);
/// let positions = Positions::new(vec![0, 1]);
/// let y: Vec<f32> = rope(x, &positions, &tables).into_data().try_to_vec().unwrap();
/// assert_eq!(y, [1.0, 0.0, 0.0, 1.0]);
/// ```
pub fn rope(x: Tensor<4>, positions: &Positions, tables: &RopeTables) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rope(
        x.into_dispatch(),
        positions.clone(),
        tables.clone(),
    ))
}

/// Replaces a row of scores by its softmax, with the vectorised `exp` of the loss kernels (AVX2 +
/// FMA when the CPU has them): for code outside the model that turns logits into probabilities,
/// such as per-document gradients.
///
/// # Example
/// ```
/// use mixlab_trainer::kernels::softmax_in_place;
/// let mut row = [1.0f32, 1.0, 1.0 + 2f32.ln()];
/// softmax_in_place(&mut row);
/// assert!((row[2] - 0.5).abs() < 1e-6 && (row[0] - 0.25).abs() < 1e-6);
/// ```
pub fn softmax_in_place(row: &mut [f32]) {
    vecmath::softmax(row, 1.0);
}

/// The product of two matrices, `[m, k] · [k, n] → [m, n]`, on the kernels [`MatmulIsa::current`]
/// picks for this CPU, with hand-written backward passes (`∂lhs = ∂out · rhsᵀ`,
/// `∂rhs = lhsᵀ · ∂out`). Transposed views (the tied output layer's `embeddingᵀ`) are multiplied
/// in place, without a copy.
///
/// # Panics
/// When the inner dimensions differ.
///
/// # Example
/// ```
/// # use burn::tensor::{Device, Tensor};
/// use mixlab_trainer::kernels::matmul;
/// let device = Device::flex();
/// let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
/// let b = Tensor::<2>::from_floats([[1.0, 0.0], [1.0, 1.0]], &device);
/// let c: Vec<f32> = matmul(a, b.transpose()).into_data().try_to_vec().unwrap();
/// assert_eq!(c, [1.0, 3.0, 3.0, 7.0]);
/// ```
pub fn matmul(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_matmul(
        lhs.into_dispatch(),
        rhs.into_dispatch(),
    ))
}

/// A 2-D f32 tensor and the strided view of its storage that it is (copied only when a stride
/// is negative).
#[derive(Debug, Clone)]
struct MatrixOperand {
    tensor: FlexTensor,
    view: View,
}

impl MatrixOperand {
    fn new(tensor: FlexTensor) -> Self {
        let view_of = |t: &FlexTensor| {
            let layout = t.layout();
            let (rows, cols, row_stride, col_stride) = layout.as_2d_strides()?;
            Some(View {
                offset: layout.start_offset(),
                rows,
                cols,
                row_stride: usize::try_from(row_stride).ok()?,
                col_stride: usize::try_from(col_stride).ok()?,
            })
        };
        assert_eq!(
            tensor.dtype(),
            DType::F32,
            "matmul computes in f32, got {:?}",
            tensor.dtype()
        );
        let shape = tensor.layout().shape();
        assert_eq!(
            shape.num_dims(),
            2,
            "matmul: operands must be matrices, got {shape:?}"
        );
        match view_of(&tensor) {
            Some(view) => Self { tensor, view },
            None => Self::new(tensor.to_contiguous()),
        }
    }

    /// The operand seen as its transpose (no copy).
    fn t(&self) -> Self {
        Self {
            tensor: self.tensor.clone(),
            view: self.view.t(),
        }
    }

    /// `self · rhs` into a new contiguous tensor.
    fn times(&self, rhs: &MatrixOperand) -> FlexTensor {
        let (rows, cols) = (self.view.rows, rhs.view.cols);
        assert_eq!(
            self.view.cols, rhs.view.rows,
            "matmul: [{rows}, {}] · [{}, {cols}]: inner dimensions differ",
            self.view.cols, rhs.view.rows
        );
        let out = matmul::new_product(
            MatmulIsa::current(),
            Threads::Pool,
            (self.tensor.storage::<f32>(), self.view),
            (rhs.tensor.storage::<f32>(), rhs.view),
        );
        from_vec(out, Shape::new([rows, cols]))
    }
}

/// The tensor as contiguous f32 storage (copied only when it is a strided view).
fn f32_contiguous(t: FlexTensor) -> FlexTensor {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "fused kernels compute in f32, got {:?}",
        t.dtype()
    );
    if t.is_contiguous() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The contiguous f32 values of a tensor, to overwrite: in place when it holds the only reference
/// to its storage, else on a copy.
fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous tensor");
    &mut t.storage_mut::<f32>()[start..end]
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn from_vec(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn attention_dims(q: &FlexTensor, k: &FlexTensor) -> AttentionDims {
    let (qs, ks) = (q.layout().shape(), k.layout().shape());
    assert!(
        qs.num_dims() == 4
            && ks.num_dims() == 4
            && qs[0] == ks[0]
            && qs[1] == ks[1]
            && qs[3] == ks[3],
        "attention: queries {qs:?} and keys {ks:?} must be [batch, seq, heads, dim] alike"
    );
    AttentionDims {
        batch: qs[0],
        seq: qs[1],
        heads: qs[2],
        kv_heads: ks[2],
        head_dim: qs[3],
    }
}

fn same_shape(a: &FlexTensor, b: &FlexTensor) -> Shape {
    let (sa, sb) = (a.layout().shape(), b.layout().shape());
    assert_eq!(sa, sb, "swiglu: operand shapes differ");
    sa.clone()
}

fn matrix_dims(t: &FlexTensor) -> (usize, usize) {
    let s = t.layout().shape();
    assert_eq!(
        s.num_dims(),
        2,
        "cross-entropy: logits must be [tokens, vocab], got {s:?}"
    );
    (s[0], s[1])
}

/// Integer targets as indices.
fn indices(t: &FlexTensor) -> Vec<usize> {
    let t = if t.is_contiguous() {
        t.clone()
    } else {
        t.to_contiguous()
    };
    let to_index = |v: i64| {
        usize::try_from(v).unwrap_or_else(|_| panic!("cross-entropy: negative target {v}"))
    };
    match t.dtype() {
        DType::I32 => t
            .as_slice::<i32>()
            .expect("contiguous")
            .iter()
            .map(|&v| to_index(v.into()))
            .collect(),
        DType::I64 => t
            .as_slice::<i64>()
            .expect("contiguous")
            .iter()
            .map(|&v| to_index(v))
            .collect(),
        other => panic!("cross-entropy: targets must be i32 or i64, got {other:?}"),
    }
}
