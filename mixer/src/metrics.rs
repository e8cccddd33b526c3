//! Goodness of fit: Spearman ρ, Pearson r and mean squared error.

/// Pearson correlation of two equally long slices; 0 when either is constant.
///
/// # Example
/// ```
/// let r = mixlab_mixer::metrics::pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]);
/// assert!(r > 0.99);
/// ```
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// Ranks starting at 1, ties sharing their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| out[i] = rank);
        start = end;
    }
    out
}

/// Spearman rank correlation (Pearson on average ranks).
///
/// # Example
/// ```
/// use mixlab_mixer::metrics::spearman;
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 1000.0]), 1.0);
/// assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
/// ```
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Mean squared error.
pub fn mse(predicted: &[f64], actual: &[f64]) -> f64 {
    let n = predicted.len().min(actual.len());
    if n == 0 {
        return 0.0;
    }
    predicted
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).powi(2))
        .sum::<f64>()
        / n as f64
}

/// Spearman ρ, Pearson r and MSE of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitMetrics {
    /// Spearman rank correlation, in [-1, 1].
    pub spearman: f64,
    /// Pearson correlation, in [-1, 1].
    pub pearson: f64,
    /// Mean squared error.
    pub mse: f64,
}

impl FitMetrics {
    /// Metrics of `predicted` against `actual`.
    pub fn of(predicted: &[f64], actual: &[f64]) -> Self {
        Self {
            spearman: spearman(predicted, actual),
            pearson: pearson(predicted, actual),
            mse: mse(predicted, actual),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_get_average_ranks() {
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn spearman_matches_slow_oracle_on_distinct_values() {
        // Oracle: 1 - 6 Σ d² / (n (n² - 1)) holds without ties.
        let a = [0.3, 1.7, -2.0, 4.1, 0.9, 2.2, -0.5];
        let b = [1.0, 0.2, -1.0, 3.0, 0.8, 5.0, 0.1];
        let (ra, rb) = (ranks(&a), ranks(&b));
        let n = a.len() as f64;
        let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
        let oracle = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
        assert!((spearman(&a, &b) - oracle).abs() < 1e-12);
    }
}
