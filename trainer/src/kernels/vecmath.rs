//! Row-wise softmax arithmetic that the compiler can vectorise, with a runtime switch to AVX2+FMA.
//!
//! Written by hand: the softmax of attention and the 8192-way log-softmax of the loss spent most of
//! their time in glibc's scalar `expf` (10% of a training step), and no maintained crate offers a
//! slice-wide f32 `exp` with runtime CPU dispatch that fits inside these kernels' loops. The
//! polynomial is Cephes' `expf` (relative error below 2e-7 over the clamped range); the loops keep
//! eight independent accumulators so reductions vectorise without reassociation by the compiler.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in few bits and a small remainder (Cody–Waite reduction).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;
const LANES: usize = 8;

/// `exp(x)` for one value, with inputs clamped to [-87, 88] (results stay normal and finite).
#[inline(always)]
fn exp1(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2_E + ROUND_MAGIC) - ROUND_MAGIC;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * (r * r) + r + 1.0;
    let exponent = ((k as i32).wrapping_add(127) as u32) << 23;
    y * f32::from_bits(exponent)
}

/// Defines `$name` calling the `#[inline(always)]` body `$body` compiled twice: for the baseline
/// target and with AVX2+FMA, chosen at run time.
macro_rules! dispatch {
    ($(#[$meta:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the running CPU has the features `wide` is compiled for.
                    #[allow(unsafe_code)]
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.max(*x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, x| m.max(*x));
    acc.iter().fold(tail, |m, x| m.max(*x))
}

#[inline(always)]
fn sum_exp_of(xs: &[f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += exp1(*x - shift);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|x| exp1(x - shift)).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn softmax_in_place(row: &mut [f32], scale: f32) -> f32 {
    let max = max_of(row) * scale;
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
            *x = exp1(*x * scale - max);
            *a += *x;
        }
    }
    let mut sum: f32 = 0.0;
    for x in chunks.into_remainder() {
        *x = exp1(*x * scale - max);
        sum += *x;
    }
    sum += acc.iter().sum::<f32>();
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|x| *x *= inv);
    max + sum.ln()
}

#[inline(always)]
fn exp_affine_in_place(row: &mut [f32], scale: f32, shift: f32) {
    row.iter_mut().for_each(|x| *x = exp1(*x * scale - shift));
}

#[inline(always)]
fn softmax_backward_in_place(p: &[f32], dp: &mut [f32], centre: f32) {
    for (d, p) in dp.iter_mut().zip(p) {
        *d = p * (*d - centre);
    }
}

#[inline(always)]
fn dot_of(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + exp1(-x))
}

#[inline(always)]
fn swiglu_of(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, a), b) in out.iter_mut().zip(a).zip(b) {
        *o = a * sigmoid1(*a) * b;
    }
}

#[inline(always)]
fn swiglu_in_place_of(a: &[f32], b: &mut [f32]) {
    for (b, a) in b.iter_mut().zip(a) {
        *b *= a * sigmoid1(*a);
    }
}

#[inline(always)]
fn swiglu_backward_of(a: &mut [f32], b: &mut [f32], grad: &[f32]) {
    for ((a, b), g) in a.iter_mut().zip(b.iter_mut()).zip(grad) {
        let s = sigmoid1(*a);
        let silu = *a * s;
        let d_silu = s * (1.0 + *a * (1.0 - s));
        (*a, *b) = (g * *b * d_silu, g * silu);
    }
}

#[inline(always)]
fn scale_by_of(x: &[f32], r: f32, gamma: &[f32], out: &mut [f32]) {
    for ((o, x), g) in out.iter_mut().zip(x).zip(gamma) {
        *o = x * r * g;
    }
}

#[inline(always)]
fn rms_norm_backward_row_of(x: &[f32], dy: &mut [f32], gamma: &[f32], r: f32, d_gamma: &mut [f32]) {
    let mut acc = [0.0f32; LANES];
    let (xc, dc, gc) = (
        x.chunks_exact(LANES),
        dy.chunks_exact(LANES),
        gamma.chunks_exact(LANES),
    );
    let mut tail = 0.0f32;
    for ((x, dy), g) in xc
        .remainder()
        .iter()
        .zip(dc.remainder())
        .zip(gc.remainder())
    {
        tail += dy * g * x;
    }
    for ((x, dy), g) in xc.zip(dc).zip(gc) {
        for (((a, x), dy), g) in acc.iter_mut().zip(x).zip(dy).zip(g) {
            *a += dy * g * x;
        }
    }
    // c = mean(dy ⊙ γ ⊙ x̂) · r, with x̂ = r · x.
    let c = (acc.iter().sum::<f32>() + tail) * r * r / x.len() as f32;
    for (((dy, x), g), dg) in dy.iter_mut().zip(x).zip(gamma).zip(d_gamma.iter_mut()) {
        *dg += *dy * x * r;
        *dy = r * (*dy * g - x * c);
    }
}

dispatch! {
    /// The largest value of a non-empty slice.
    pub fn max(xs: &[f32]) -> f32 = max_of;
}

dispatch! {
    /// `Σ exp(x − shift)` over the slice.
    pub fn sum_exp(xs: &[f32], shift: f32) -> f32 = sum_exp_of;
}

dispatch! {
    /// Replaces `row` by `softmax(scale · row)` and returns its log-normaliser
    /// `log Σ exp(scale · x)`.
    pub fn softmax(row: &mut [f32], scale: f32) -> f32 = softmax_in_place;
}

dispatch! {
    /// `x ← exp(scale · x − shift)`: probabilities again from scores and a saved log-normaliser.
    pub fn exp_affine(row: &mut [f32], scale: f32, shift: f32) = exp_affine_in_place;
}

dispatch! {
    /// `dp ← p ⊙ (dp − centre)`: the softmax backward for one row, `centre = Σ p ⊙ dp`.
    pub fn softmax_backward(p: &[f32], dp: &mut [f32], centre: f32) = softmax_backward_in_place;
}

dispatch! {
    /// `Σ a ⊙ b` over two slices of the same length.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 = dot_of;
}

dispatch! {
    /// `out = silu(a) ⊙ b` with `silu(a) = a · σ(a)`.
    pub fn swiglu(a: &[f32], b: &[f32], out: &mut [f32]) = swiglu_of;
}

dispatch! {
    /// `b ← silu(a) ⊙ b`.
    pub fn swiglu_in_place(a: &[f32], b: &mut [f32]) = swiglu_in_place_of;
}

dispatch! {
    /// The SwiGLU backward pass in place: `a ← grad ⊙ b ⊙ silu′(a)`, `b ← grad ⊙ silu(a)`.
    pub fn swiglu_backward(a: &mut [f32], b: &mut [f32], grad: &[f32]) = swiglu_backward_of;
}

dispatch! {
    /// `out = x · r ⊙ gamma`: one row of RMSNorm given its reciprocal root-mean-square `r`.
    pub fn scale_by(x: &[f32], r: f32, gamma: &[f32], out: &mut [f32]) = scale_by_of;
}

dispatch! {
    /// One row of the RMSNorm backward pass: `dy ← ∂/∂x`, and `d_gamma += dy ⊙ x̂`.
    pub fn rms_norm_backward_row(
        x: &[f32],
        dy: &mut [f32],
        gamma: &[f32],
        r: f32,
        d_gamma: &mut [f32]
    ) = rms_norm_backward_row_of;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let _rng = crate::test_rng::lock();
        let mut worst = 0.0f32;
        for i in -8_600..8_700 {
            let x = i as f32 * 0.01 + 0.003;
            let rel = (exp1(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp1(-1e9) > 0.0 && exp1(1e9).is_finite());
    }

    #[test]
    fn softmax_normalises_and_returns_the_log_normaliser() {
        let _rng = crate::test_rng::lock();
        let mut row: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let scale = 0.5;
        let expected: f32 = row.iter().map(|x| (x * scale).exp()).sum::<f32>().ln();
        let original = row.clone();
        let lse = softmax(&mut row, scale);
        assert!((lse - expected).abs() < 1e-5, "{lse} vs {expected}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let mut again = original.clone();
        exp_affine(&mut again, scale, lse);
        for (a, b) in again.iter().zip(&row) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(
            max(&original),
            original.iter().copied().fold(f32::MIN, f32::max)
        );
        let direct: f32 = original.iter().map(|x| (x - 1.0).exp()).sum();
        assert!((sum_exp(&original, 1.0) - direct).abs() < 1e-4 * direct);
        let d: f32 = original.iter().zip(&row).map(|(a, b)| a * b).sum();
        assert!((dot(&original, &row) - d).abs() < 1e-5);
    }
}
