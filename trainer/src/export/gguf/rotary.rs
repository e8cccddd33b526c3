//! q and k rows between mixlab's rotary layout and llama.cpp's.
//!
//! mixlab rotates Hugging Face style (`rotate_half`): within a head of `d` dimensions, dimension
//! `j` pairs with `j + d/2`. llama.cpp's Llama graph rotates adjacent pairs (`2j`, `2j + 1`), at the
//! same angle `p · θ^(-2j/d)`. Its converter (`LlamaModel.permute` in `convert_hf_to_gguf`) moves
//! the output rows of q and k so the same pairs become adjacent:
//!
//! `llama.cpp row h·d + 2j + s = Hugging Face row h·d + s·d/2 + j` (head `h`, `j < d/2`, `s ∈ {0,1}`).
//!
//! Since q and k move alike, attention scores are unchanged. Whole rows move, so the
//! permutation commutes with row-wise quantization (`Q4_0` blocks lie within a row).

/// The Hugging Face row that lands on `row` of llama.cpp's layout, for heads of `head_dim`.
fn hugging_face_row(row: usize, head_dim: usize) -> usize {
    let (head, within) = (row / head_dim, row % head_dim);
    let (j, s) = (within / 2, within % 2);
    head * head_dim + s * (head_dim / 2) + j
}

/// `matrix` (row-major, `row_len` values a row, heads of `head_dim` rows each) in llama.cpp's
/// rotary layout.
///
/// # Example
/// ```
/// use mixlab_trainer::export::gguf::rotary::to_llama_cpp;
/// // One head of 4 rows of one value: Hugging Face pairs rows (0, 2) and (1, 3).
/// assert_eq!(to_llama_cpp(&[0.0, 1.0, 2.0, 3.0], 1, 4), [0.0, 2.0, 1.0, 3.0]);
/// ```
pub fn to_llama_cpp(matrix: &[f32], row_len: usize, head_dim: usize) -> Vec<f32> {
    let rows = matrix.len() / row_len;
    (0..rows)
        .flat_map(|row| {
            let from = hugging_face_row(row, head_dim) * row_len;
            matrix[from..from + row_len].iter().copied()
        })
        .collect()
}

/// The inverse of [`to_llama_cpp`]: llama.cpp's rows back in mixlab's layout.
pub fn from_llama_cpp(matrix: &[f32], row_len: usize, head_dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; matrix.len()];
    for (row, values) in matrix.chunks(row_len).enumerate() {
        let to = hugging_face_row(row, head_dim) * row_len;
        out[to..to + row_len].copy_from_slice(values);
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::*;
    use crate::kernels::Positions;
    use crate::model::rope::Rope;

    #[test]
    fn rows_move_as_llama_cpp_documents_and_back() {
        let rows = |n: usize| (0..n).map(|r| r as f32).collect::<Vec<_>>();
        // The converter's worked examples: head_dim 8, and two heads of 4.
        let eight = to_llama_cpp(&rows(8), 1, 8);
        assert_eq!(eight, [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
        let two_heads = to_llama_cpp(&rows(8), 1, 4);
        assert_eq!(two_heads, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        // Rows of three values move whole; applied and undone it is the identity.
        let matrix: Vec<f32> = (0..4 * 16 * 3).map(|v| v as f32).collect();
        let moved = to_llama_cpp(&matrix, 3, 16);
        assert_ne!(moved, matrix);
        assert_eq!(moved[3..6], matrix[8 * 3..8 * 3 + 3]);
        assert_eq!(from_llama_cpp(&moved, 3, 16), matrix);
    }

    /// llama.cpp's `rope_norm`: adjacent pairs `(2j, 2j+1)` at angle `p · θ^(-2j/d)`.
    fn rope_adjacent_pairs(x: &[f32], position: usize, theta: f64) -> Vec<f32> {
        let d = x.len();
        let mut out = x.to_vec();
        for j in 0..d / 2 {
            let angle = position as f64 * theta.powf(-2.0 * j as f64 / d as f64);
            let (cos, sin) = (angle.cos() as f32, angle.sin() as f32);
            out[2 * j] = x[2 * j] * cos - x[2 * j + 1] * sin;
            out[2 * j + 1] = x[2 * j] * sin + x[2 * j + 1] * cos;
        }
        out
    }

    #[test]
    fn mixlab_rotary_then_moving_rows_is_llama_cpp_rotary_of_the_moved_rows() {
        let _rng = crate::test_rng::lock();
        let (head_dim, heads, theta) = (16, 2, 10_000.0);
        let x: Vec<f32> = (0..heads * head_dim)
            .map(|v| ((v * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let rope = Rope::new(head_dim, 64, theta);
        for position in [0u32, 1, 9, 63] {
            let input = TensorData::new(x.clone(), [1, 1, heads, head_dim]);
            let rotated = rope.apply(
                Tensor::<4>::from_data(input, &Device::flex()),
                &Positions::new(vec![position]),
            );
            let rotated: Vec<f32> = rotated.into_data().try_to_vec().unwrap();
            let moved = to_llama_cpp(&x, 1, head_dim);
            let theirs: Vec<f32> = moved
                .chunks(head_dim)
                .flat_map(|head| rope_adjacent_pairs(head, position as usize, theta))
                .collect();
            let ours = to_llama_cpp(&rotated, 1, head_dim);
            for (a, b) in ours.iter().zip(&theirs) {
                assert!((a - b).abs() < 1e-5, "position {position}: {a} vs {b}");
            }
        }
    }
}
