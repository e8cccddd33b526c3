//! Matrix products on strided views of slices, with the kernel's instruction set chosen at run time.
//!
//! Every product of the trainer goes through [`product`]: the model's linear layers and tied
//! output layer (through [`super::matmul`], forward and backward) and the fused attention kernel's
//! per-head blocks (one head of `[batch, seq, heads, dim]`, a band of keys, multiplied in place
//! without copying them out). Each view is checked against its slice before the one `unsafe` call.
//!
//! On x86-64 the kernels are `private-gemm-x86` (faer's generated AVX2 and AVX-512 assembly,
//! faer 0.24's own matrix-product path), which takes the instruction set as an argument: the
//! trainer picks AVX-512 where the CPU reports `avx512f`, AVX2 where it reports `avx2` and `fma`,
//! and [`MATMUL_ISA_VAR`] can force a lower one. Elsewhere, as the `portable` choice, and for
//! products with a transposed left operand (the weight gradients, where faer's kernels are slow),
//! the `gemm` crate (the one burn-flex uses, with its own run-time choice of AVX2 or AVX-512) runs
//! them. Compared on the shapes of a training step
//! (bench/RESULTS.md, issue 13): burn-flex → `gemm` 0.71–0.90× PyTorch's GFLOP/s on AVX2, faer's
//! kernels 0.81–1.6×; a system BLAS was not an option (`.ci/run` would have to install and link
//! one, and OpenBLAS's threads fight rayon's).

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces the instruction set of the matrix products:
/// `auto` (the default: the best this CPU reports), `avx512`, `avx2` or `portable`.
pub const MATMUL_ISA_VAR: &str = "MIXLAB_MATMUL_ISA";

/// Products with fewer multiply-adds than this run on one thread (threads cost more than they
/// save below it; faer's threshold).
const PARALLEL_MIN_FLOPS: usize = 4096 * 4;

/// The kernels a matrix product runs on.
///
/// # Example
/// ```
/// use mixlab_trainer::kernels::MatmulIsa;
/// let isa = MatmulIsa::detected();
/// assert!(isa.is_supported());
/// assert_eq!("avx2".parse::<MatmulIsa>().map(|i| i.to_string()), Ok("avx2".to_string()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulIsa {
    /// faer's AVX-512 kernels (x86-64 with `avx512f`).
    Avx512,
    /// faer's AVX2 + FMA kernels (x86-64 with `avx2` and `fma`).
    Avx2,
    /// The `gemm` crate's kernels, on any CPU.
    Portable,
}

impl MatmulIsa {
    /// Every choice, best first.
    pub const ALL: [MatmulIsa; 3] = [MatmulIsa::Avx512, MatmulIsa::Avx2, MatmulIsa::Portable];

    /// The best instruction set this CPU reports.
    pub fn detected() -> MatmulIsa {
        Self::ALL
            .into_iter()
            .find(|isa| isa.is_supported())
            .unwrap_or(MatmulIsa::Portable)
    }

    /// Whether this CPU can run the kernels.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            MatmulIsa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            MatmulIsa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            MatmulIsa::Avx512 | MatmulIsa::Avx2 => false,
            MatmulIsa::Portable => true,
        }
    }

    /// The choice [`MATMUL_ISA_VAR`] asks for (`None` for unset or `auto`), checked against this
    /// CPU. The binary calls it at start-up so that a bad value is a usage error.
    ///
    /// # Errors
    /// A value that is not a choice, or one this CPU cannot run.
    pub fn from_env() -> Result<Option<MatmulIsa>, MatmulIsaError> {
        let Ok(value) = std::env::var(MATMUL_ISA_VAR) else {
            return Ok(None);
        };
        if value.is_empty() || value == "auto" {
            return Ok(None);
        }
        let isa: MatmulIsa = value.parse()?;
        if !isa.is_supported() {
            return Err(MatmulIsaError::Unsupported(isa));
        }
        Ok(Some(isa))
    }

    /// The instruction set the trainer's products use in this process: [`MATMUL_ISA_VAR`]'s
    /// choice when it is valid, else [`MatmulIsa::detected`]. Read once.
    pub fn current() -> MatmulIsa {
        static CURRENT: OnceLock<MatmulIsa> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            MatmulIsa::from_env()
                .ok()
                .flatten()
                .unwrap_or_else(MatmulIsa::detected)
        })
    }
}

impl fmt::Display for MatmulIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatmulIsa::Avx512 => "avx512",
            MatmulIsa::Avx2 => "avx2",
            MatmulIsa::Portable => "portable",
        })
    }
}

impl std::str::FromStr for MatmulIsa {
    type Err = MatmulIsaError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|isa| isa.to_string() == s)
            .ok_or_else(|| MatmulIsaError::Unknown(s.to_string()))
    }
}

/// A bad [`MATMUL_ISA_VAR`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatmulIsaError {
    /// Not one of the choices.
    #[error("{MATMUL_ISA_VAR}={0:?} is not a choice: expected auto, avx512, avx2 or portable")]
    Unknown(String),
    /// A choice this CPU cannot run.
    #[error("{MATMUL_ISA_VAR}={0} is not supported by this CPU (it supports up to {best})", best = MatmulIsa::detected())]
    Unsupported(MatmulIsa),
}

/// A strided matrix inside a slice: element `(i, j)` is at `offset + i·row_stride + j·col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows.
    pub row_stride: usize,
    /// Distance between columns.
    pub col_stride: usize,
}

impl View {
    /// A row-major block: `rows × cols` starting at `offset`, rows `row_stride` apart.
    pub fn rows(offset: usize, rows: usize, cols: usize, row_stride: usize) -> View {
        View {
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same elements seen as the transposed matrix.
    pub fn t(self) -> View {
        View {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Panics unless every element lies inside a slice of length `len`.
    fn check(&self, len: usize, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last =
            self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
        assert!(
            last < len,
            "{what} view {self:?} reaches past {len} elements"
        );
    }
}

/// `dst ← (dst if accumulate, else 0) + scale · lhs · rhs` on [`MatmulIsa::current`]'s kernels,
/// on one thread (for products inside parallel loops).
///
/// # Panics
/// When the shapes disagree or a view reaches outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    dst: &mut [f32],
    d: View,
    lhs: &[f32],
    l: View,
    rhs: &[f32],
    r: View,
    scale: f32,
    accumulate: bool,
) {
    let isa = MatmulIsa::current();
    product(
        isa,
        Threads::One,
        (dst, d),
        (lhs, l),
        (rhs, r),
        scale,
        accumulate,
    );
}

/// Whether a left operand is a transposed view. The weight gradients `xᵀ · ∂y` (deep and narrow:
/// 256×4096×256 in `small`) ran at 84 GFLOP/s on faer's AVX2 kernels against 155 on the `gemm`
/// crate's, and copying the operand row-major first did not close the gap (training 0.9× the all-
/// `gemm` speed); products with a row-major left operand ran at 1.0–1.9× the `gemm` crate's.
fn is_column_major(l: View) -> bool {
    l.row_stride == 1 && l.col_stride > 1 && l.rows > 1
}

/// How many threads a product may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only.
    One,
    /// Rayon's pool, when the product is large enough to gain from it.
    Pool,
}

/// `dst ← (dst if accumulate, else 0) + scale · lhs · rhs` on the kernels of `isa`; products whose
/// left operand is column-major run on the `gemm` crate's kernels whatever `isa` says (see
/// [`is_column_major`]).
///
/// # Panics
/// When the shapes disagree, a view reaches outside its slice, or `isa` is not supported by this
/// CPU.
pub fn product(
    isa: MatmulIsa,
    threads: Threads,
    (dst, d): (&mut [f32], View),
    (lhs, l): (&[f32], View),
    (rhs, r): (&[f32], View),
    scale: f32,
    accumulate: bool,
) {
    assert!(
        d.rows == l.rows && d.cols == r.cols && l.cols == r.rows,
        "matrix product shapes {}×{} · {}×{} → {}×{}",
        l.rows,
        l.cols,
        r.rows,
        r.cols,
        d.rows,
        d.cols
    );
    assert!(
        isa.is_supported(),
        "{isa} kernels are not supported by this CPU"
    );
    d.check(dst.len(), "destination");
    l.check(lhs.len(), "left operand");
    r.check(rhs.len(), "right operand");
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        if !accumulate {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[d.offset + i * d.row_stride + j * d.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the three views were checked against their slices above, `dst` is borrowed mutably
    // and so does not alias `lhs` or `rhs`, and `isa` is supported (checked above).
    #[allow(unsafe_code)]
    unsafe {
        dispatch(
            isa,
            threads,
            dst.as_mut_ptr().add(d.offset),
            d,
            (lhs.as_ptr().add(l.offset), l),
            (rhs.as_ptr().add(r.offset), r),
            scale,
            accumulate,
        );
    }
}

/// `lhs · rhs` into a new row-major buffer, which is never zeroed first: the kernels write every
/// element (a zeroed buffer cost 5–10% of a product of the model's shapes, its memset plus the
/// page faults).
///
/// # Panics
/// As [`product`].
pub fn new_product(
    isa: MatmulIsa,
    threads: Threads,
    (lhs, l): (&[f32], View),
    (rhs, r): (&[f32], View),
) -> Vec<f32> {
    let (m, n) = (l.rows, r.cols);
    if m == 0 || n == 0 || l.cols == 0 || r.rows != l.cols {
        let mut out = vec![0.0; m * n];
        product(
            isa,
            threads,
            (&mut out, View::rows(0, m, n, n)),
            (lhs, l),
            (rhs, r),
            1.0,
            false,
        );
        return out;
    }
    assert!(
        isa.is_supported(),
        "{isa} kernels are not supported by this CPU"
    );
    l.check(lhs.len(), "left operand");
    r.check(rhs.len(), "right operand");
    let mut out = super::buffer::with_capacity(m * n);
    // SAFETY: the operand views were checked against their slices and the destination is the
    // buffer's own `m × n` capacity, row-major; with `accumulate` false the kernels only write it,
    // every element of it, so after the call all `m · n` values are initialised.
    #[allow(unsafe_code)]
    unsafe {
        dispatch(
            isa,
            threads,
            out.as_mut_ptr(),
            View::rows(0, m, n, n),
            (lhs.as_ptr().add(l.offset), l),
            (rhs.as_ptr().add(r.offset), r),
            1.0,
            false,
        );
        out.set_len(m * n);
    }
    out
}

/// Runs one product on the kernels of `isa` (the `gemm` crate's for a column-major left operand).
///
/// # Safety
/// Each pointer must be valid for every element its view reaches (reads for `lhs` and `rhs`,
/// writes, and reads when accumulating, for `dst`), `dst` must not overlap the operands, the
/// views' shapes must agree with a non-zero inner dimension, and `isa` must be supported.
#[allow(unsafe_code, clippy::too_many_arguments)]
unsafe fn dispatch(
    isa: MatmulIsa,
    threads: Threads,
    dst: *mut f32,
    d: View,
    (lhs, l): (*const f32, View),
    (rhs, r): (*const f32, View),
    scale: f32,
    accumulate: bool,
) {
    let isa = if is_column_major(l) {
        MatmulIsa::Portable
    } else {
        isa
    };
    let flops = d.rows.saturating_mul(d.cols).saturating_mul(l.cols);
    let threads = match threads {
        Threads::Pool if flops >= PARALLEL_MIN_FLOPS => rayon::current_num_threads(),
        _ => 1,
    };
    // SAFETY: as the caller promised.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            MatmulIsa::Avx512 | MatmulIsa::Avx2 => {
                use private_gemm_x86 as pg;
                let instr = if isa == MatmulIsa::Avx512 {
                    pg::InstrSet::Avx512
                } else {
                    pg::InstrSet::Avx256
                };
                pg::gemm(
                    pg::DType::F32,
                    pg::IType::U64,
                    instr,
                    d.rows,
                    d.cols,
                    l.cols,
                    dst.cast(),
                    d.row_stride as isize,
                    d.col_stride as isize,
                    std::ptr::null(),
                    std::ptr::null(),
                    pg::DstKind::Full,
                    if accumulate {
                        pg::Accum::Add
                    } else {
                        pg::Accum::Replace
                    },
                    lhs.cast(),
                    l.row_stride as isize,
                    l.col_stride as isize,
                    false,
                    std::ptr::null(),
                    0,
                    rhs.cast(),
                    r.row_stride as isize,
                    r.col_stride as isize,
                    false,
                    (&raw const scale).cast(),
                    threads,
                );
            }
            _ => gemm::gemm(
                d.rows,
                d.cols,
                l.cols,
                dst,
                d.col_stride as isize,
                d.row_stride as isize,
                accumulate,
                lhs,
                l.col_stride as isize,
                l.row_stride as isize,
                rhs,
                r.col_stride as isize,
                r.row_stride as isize,
                1.0,
                scale,
                false,
                false,
                false,
                if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported() -> Vec<MatmulIsa> {
        MatmulIsa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// Deterministic values in about [-2, 2].
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 4001) as f32 / 1000.0
                    - 2.0
            })
            .collect()
    }

    #[test]
    fn strided_products_match_a_naive_product_on_every_kernel() {
        let _rng = crate::test_rng::lock();
        // lhs: rows 1..3 of a 4×5 matrix, columns 0..3; rhs: the transpose of a 2×3 block.
        let a: Vec<f32> = (0..20).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..12).map(|v| (v as f32).sin()).collect();
        let l = View::rows(5, 2, 3, 5);
        let r = View::rows(2, 2, 3, 4).t();
        for isa in supported() {
            let mut dst = vec![1.0f32; 4];
            let d = View::rows(0, 2, 2, 2);
            product(
                isa,
                Threads::One,
                (&mut dst, d),
                (&a, l),
                (&b, r),
                2.0,
                true,
            );
            for i in 0..2 {
                for j in 0..2 {
                    let s: f32 = (0..3).map(|k| a[5 + i * 5 + k] * b[2 + j * 4 + k]).sum();
                    let got = dst[i * 2 + j];
                    assert!(
                        (got - (1.0 + 2.0 * s)).abs() < 1e-5,
                        "{isa}: {got} at ({i}, {j})"
                    );
                }
            }
        }
    }

    /// Every kernel this CPU runs (AVX-512 only where it reports `avx512f`) agrees with an f64
    /// reference and with every other kernel, on one thread and on the pool, for left operands
    /// that are row-major or transposed views (those on the `gemm` crate's kernels), right
    /// operands given transposed, and accumulation into a non-zero destination. Odd sizes hit
    /// partial register tiles.
    #[test]
    fn every_kernel_matches_an_f64_reference_and_the_others() {
        let _rng = crate::test_rng::lock();
        let isas = supported();
        println!("kernels on this CPU: {isas:?}");
        let shapes = [
            (1, 7, 3),
            (67, 129, 45),
            (33, 256, 17),
            (130, 200, 97),
            (300, 64, 5),
        ];
        for ((m, k, n), lhs_transposed) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)])
        {
            // The left operand's values, and the view that shows them as the m×k matrix.
            let (a, l) = if lhs_transposed {
                (values(k * m, 1), View::rows(0, k, m, m).t())
            } else {
                (values(m * k, 1), View::rows(0, m, k, k))
            };
            let at =
                |i: usize, p: usize| f64::from(a[l.offset + i * l.row_stride + p * l.col_stride]);
            let bt = values(n * k, 2); // rhs given transposed, as the tied output layer is
            let start = values(m * n, 3);
            let reference: Vec<f64> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    let dot: f64 = (0..k).map(|p| at(i, p) * f64::from(bt[j * k + p])).sum();
                    f64::from(start[ij]) + 0.5 * dot
                })
                .collect();
            let tolerance = 1e-5 * (k as f64).sqrt() * 40.0;
            let mut results = Vec::new();
            for (isa, threads) in isas
                .iter()
                .flat_map(|&i| [(i, Threads::One), (i, Threads::Pool)])
            {
                let mut c = start.clone();
                let r = View::rows(0, n, k, k).t();
                let d = View::rows(0, m, n, n);
                product(isa, threads, (&mut c, d), (&a, l), (&bt, r), 0.5, true);
                let diff = c
                    .iter()
                    .zip(&reference)
                    .map(|(x, y)| (f64::from(*x) - y).abs())
                    .fold(0.0, f64::max);
                assert!(
                    diff < tolerance,
                    "{isa} {threads:?} {m}×{k}×{n} (lhs transposed: {lhs_transposed}): {diff} ≥ {tolerance}"
                );
                results.push((isa, c));
            }
            for (isa, c) in &results[1..] {
                let diff = c
                    .iter()
                    .zip(&results[0].1)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    f64::from(diff) < tolerance,
                    "{isa} vs {}: {diff}",
                    results[0].0
                );
            }
        }
    }

    /// Products into fresh, never-zeroed buffers equal products into zeroed ones, empty inner
    /// dimensions included.
    #[test]
    fn new_products_equal_products_into_zeroed_buffers() {
        let _rng = crate::test_rng::lock();
        for isa in supported() {
            for (m, k, n) in [(70, 33, 9), (4, 0, 3), (0, 5, 2)] {
                let (a, bt) = (values(m * k, 4), values(n * k, 5));
                let (l, r) = (View::rows(0, m, k, k), View::rows(0, n, k, k).t());
                let fresh = new_product(isa, Threads::Pool, (&a, l), (&bt, r));
                let mut zeroed = vec![0.0f32; m * n];
                let d = View::rows(0, m, n, n);
                product(
                    isa,
                    Threads::Pool,
                    (&mut zeroed, d),
                    (&a, l),
                    (&bt, r),
                    1.0,
                    false,
                );
                assert_eq!(fresh, zeroed, "{isa} {m}×{k}×{n}");
            }
        }
    }

    #[test]
    fn choices_parse_and_unknown_ones_are_named() {
        let _rng = crate::test_rng::lock();
        for isa in MatmulIsa::ALL {
            assert_eq!(isa.to_string().parse::<MatmulIsa>(), Ok(isa));
        }
        let err = "avx1024".parse::<MatmulIsa>().unwrap_err().to_string();
        assert!(
            err.contains("\"avx1024\"") && err.contains("avx512, avx2 or portable"),
            "{err}"
        );
        assert!(MatmulIsa::detected().is_supported());
        assert!(MatmulIsa::Portable.is_supported());
    }

    #[test]
    #[should_panic(expected = "reaches past")]
    fn out_of_bounds_views_are_refused() {
        let _rng = crate::test_rng::lock();
        let a = vec![0.0f32; 6];
        let mut dst = vec![0.0f32; 4];
        gemm(
            &mut dst,
            View::rows(0, 2, 2, 2),
            &a,
            View::rows(1, 2, 3, 3),
            &a,
            View::rows(0, 3, 2, 2),
            1.0,
            false,
        );
    }
}
