//! Bounds-checked small matrix products on strided views of slices, for the fused kernels.
//!
//! The kernels multiply sub-blocks of row-major tensors (one head of `[batch, seq, heads, dim]`,
//! a band of keys) without copying them out; `gemm` (the crate burn-flex uses) takes raw pointers
//! and strides, so this module checks every view against its slice before the one `unsafe` call.

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

/// `dst ← (dst if accumulate, else 0) + scale · lhs · rhs`.
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
    assert!(
        d.rows == l.rows && d.cols == r.cols && l.cols == r.rows,
        "gemm shapes {}×{} · {}×{} → {}×{}",
        l.rows,
        l.cols,
        r.rows,
        r.cols,
        d.rows,
        d.cols
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
    // and so does not alias `lhs` or `rhs`, and `gemm` reads and writes only inside the views.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr().add(d.offset),
            d.col_stride as isize,
            d.row_stride as isize,
            accumulate,
            lhs.as_ptr().add(l.offset),
            l.col_stride as isize,
            l.row_stride as isize,
            rhs.as_ptr().add(r.offset),
            r.col_stride as isize,
            r.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_a_naive_product() {
        // lhs: rows 1..3 of a 4×5 matrix, columns 0..3; rhs: the transpose of a 2×3 block.
        let a: Vec<f32> = (0..20).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..12).map(|v| (v as f32).sin()).collect();
        let l = View::rows(5, 2, 3, 5);
        let r = View::rows(2, 2, 3, 4).t();
        let mut dst = vec![1.0f32; 4];
        gemm(&mut dst, View::rows(0, 2, 2, 2), &a, l, &b, r, 2.0, true);
        for i in 0..2 {
            for j in 0..2 {
                let s: f32 = (0..3).map(|k| a[5 + i * 5 + k] * b[2 + j * 4 + k]).sum();
                assert!((dst[i * 2 + j] - (1.0 + 2.0 * s)).abs() < 1e-5);
            }
        }
    }

    #[test]
    #[should_panic(expected = "reaches past")]
    fn out_of_bounds_views_are_refused() {
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
