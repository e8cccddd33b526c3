//! Gradient-boosted regression trees, grown leaf-wise like LightGBM.
//!
//! Written by hand: of the pure-Rust boosting crates, `perpetual` needs a nightly compiler, `gbdt`
//! is f32-only and unmaintained, and `forust-ml`'s defaults and data layout target classification;
//! LightGBM bindings need cmake and libclang. RegMix tables are tiny (hundreds of rows, tens of
//! columns), so exact splits over presorted columns are both simple and fast.
//!
//! Defaults mirror RegMix's LightGBM settings (1000 trees, learning rate 0.01, 31 leaves, at least 20
//! rows per leaf, no L2). Boosting can start from the mean, as LightGBM does, or from a linear fit,
//! so trees only model what the linear trend misses.

use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::linear::Affine;
use crate::error::Result;

/// Where boosting starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GbmInit {
    /// The mean target (LightGBM's `boost_from_average`).
    Mean,
    /// A least-squares linear fit of the target.
    Linear,
}

/// Hyperparameters of [`Gbm::fit`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GbmParams {
    /// Number of trees. Default: 1000 (RegMix).
    pub n_trees: usize,
    /// Shrinkage per tree. Default: 0.01 (RegMix).
    pub learning_rate: f64,
    /// Maximum leaves per tree. Default: 31 (LightGBM).
    pub num_leaves: usize,
    /// Minimum rows per leaf. Default: 20 (LightGBM `min_data_in_leaf`).
    pub min_leaf: usize,
    /// L2 penalty on leaf values. Default: 0.
    pub l2: f64,
    /// Starting prediction. Default: mean.
    pub init: GbmInit,
}

impl Default for GbmParams {
    fn default() -> Self {
        Self {
            n_trees: 1000,
            learning_rate: 0.01,
            num_leaves: 31,
            min_leaf: 20,
            l2: 0.0,
            init: GbmInit::Mean,
        }
    }
}

/// A node of a flattened tree. A leaf points to itself on both sides with an infinite threshold,
/// so every row takes exactly `depth` steps: no data-dependent loop exit, which lets batch
/// prediction advance several rows in lockstep (the search scores a million mixtures this way).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    value: f64,
}

impl Node {
    fn leaf(index: usize, value: f64) -> Self {
        Self {
            feature: 0,
            threshold: f64::INFINITY,
            left: index as u32,
            right: index as u32,
            value,
        }
    }
}

/// One tree: its nodes (root first) and the length of its longest root-to-leaf path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tree {
    depth: u32,
    nodes: Vec<Node>,
}

/// Rows advanced together through a tree by [`Gbm::predict_rows`].
const LOCKSTEP: usize = 8;

/// A fitted boosted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbm {
    base: Affine,
    trees: Vec<Tree>,
}

/// A leaf awaiting a split: its node index, its rows and its best split, if any.
struct OpenLeaf {
    node: usize,
    rows: Vec<u32>,
    best: Option<Split>,
}

#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    threshold: f64,
}

impl Gbm {
    /// Fits the ensemble on rows of `x` and targets `y`.
    ///
    /// # Errors
    /// [`crate::Error::Fit`] if the linear start cannot be fitted.
    pub fn fit(x: ArrayView2<f64>, y: ArrayView1<f64>, params: &GbmParams) -> Result<Gbm> {
        let (n, d) = x.dim();
        let columns: Vec<Vec<f64>> = (0..d).map(|f| x.column(f).to_vec()).collect();
        let order: Vec<Vec<u32>> = columns
            .iter()
            .map(|col| {
                let mut idx: Vec<u32> = (0..n as u32).collect();
                idx.sort_by(|&a, &b| col[a as usize].total_cmp(&col[b as usize]).then(a.cmp(&b)));
                idx
            })
            .collect();
        let base = match params.init {
            GbmInit::Mean => Affine {
                intercept: y.sum() / n as f64,
                coefficients: vec![0.0; d],
            },
            GbmInit::Linear => Affine::fit(x, y)?,
        };
        let mut pred: Vec<f64> = x
            .rows()
            .into_iter()
            .map(|r| base.predict(r.as_slice().unwrap_or(&r.to_vec())))
            .collect();
        let mut trees = Vec::with_capacity(params.n_trees);
        let mut in_node = vec![false; n];
        for _ in 0..params.n_trees {
            let grad: Vec<f64> = pred.iter().zip(y.iter()).map(|(p, t)| p - t).collect();
            let tree = grow_tree(&columns, &order, &grad, params, &mut in_node);
            for (i, p) in pred.iter_mut().enumerate() {
                *p += tree.eval(|f| columns[f][i]);
            }
            trees.push(tree);
        }
        Ok(Gbm { base, trees })
    }

    /// Predicted target for one row.
    pub fn predict(&self, x: &[f64]) -> f64 {
        // Summed in the same order as `predict_rows`, so both give identical bits.
        self.trees
            .iter()
            .fold(self.base.predict(x), |sum, t| sum + t.eval(|f| x[f]))
    }

    /// Predicted targets for every row of `x`, tree by tree with [`LOCKSTEP`] rows in flight, so a
    /// tree stays in L1 cache and independent rows overlap their dependent loads.
    pub fn predict_rows(&self, x: ArrayView2<f64>) -> Vec<f64> {
        let rows: Vec<Vec<f64>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
        let mut out: Vec<f64> = rows.iter().map(|r| self.base.predict(r)).collect();
        for tree in &self.trees {
            for (block, sums) in rows.chunks(LOCKSTEP).zip(out.chunks_mut(LOCKSTEP)) {
                let mut at = [0usize; LOCKSTEP];
                for _ in 0..tree.depth {
                    for (i, row) in block.iter().enumerate() {
                        let node = &tree.nodes[at[i]];
                        let go_left = row[node.feature as usize] <= node.threshold;
                        at[i] = if go_left { node.left } else { node.right } as usize;
                    }
                }
                for (sum, i) in sums.iter_mut().zip(at) {
                    *sum += tree.nodes[i].value;
                }
            }
        }
        out
    }
}

impl Tree {
    fn eval(&self, feature: impl Fn(usize) -> f64) -> f64 {
        let mut i = 0;
        for _ in 0..self.depth {
            let node = &self.nodes[i];
            let go_left = feature(node.feature as usize) <= node.threshold;
            i = if go_left { node.left } else { node.right } as usize;
        }
        self.nodes[i].value
    }
}

fn grow_tree(
    columns: &[Vec<f64>],
    order: &[Vec<u32>],
    grad: &[f64],
    params: &GbmParams,
    in_node: &mut [bool],
) -> Tree {
    let leaf_value = |rows: &[u32]| {
        let g: f64 = rows.iter().map(|&i| grad[i as usize]).sum();
        -params.learning_rate * g / (rows.len() as f64 + params.l2)
    };
    let all: Vec<u32> = (0..grad.len() as u32).collect();
    let mut nodes = vec![Node::leaf(0, leaf_value(&all))];
    let mut node_depth = vec![0u32];
    let best = best_split(columns, order, grad, &all, params, in_node);
    let mut open = vec![OpenLeaf {
        node: 0,
        rows: all,
        best,
    }];
    let mut n_leaves = 1;
    while n_leaves < params.num_leaves {
        // Largest gain first; ties go to the earliest node so trees are reproducible.
        let Some(pick) = open
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.best.map(|b| (i, b.gain, l.node)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(i, _, _)| i)
        else {
            break;
        };
        let leaf = open.swap_remove(pick);
        let split = leaf.best.expect("picked leaves have a split");
        let (left_rows, right_rows): (Vec<u32>, Vec<u32>) = leaf
            .rows
            .iter()
            .partition(|&&i| columns[split.feature][i as usize] <= split.threshold);
        let (l, r) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::leaf(l, leaf_value(&left_rows)));
        nodes.push(Node::leaf(r, leaf_value(&right_rows)));
        let child_depth = node_depth[leaf.node] + 1;
        node_depth.extend([child_depth, child_depth]);
        nodes[leaf.node] = Node {
            feature: split.feature as u32,
            threshold: split.threshold,
            left: l as u32,
            right: r as u32,
            value: 0.0,
        };
        for (node, rows) in [(l, left_rows), (r, right_rows)] {
            let best = best_split(columns, order, grad, &rows, params, in_node);
            open.push(OpenLeaf { node, rows, best });
        }
        n_leaves += 1;
    }
    Tree {
        depth: node_depth.iter().copied().max().unwrap_or(0),
        nodes,
    }
}

/// The split of `rows` with the largest reduction of squared error, if any leaves both sides with
/// at least `min_leaf` rows.
fn best_split(
    columns: &[Vec<f64>],
    order: &[Vec<u32>],
    grad: &[f64],
    rows: &[u32],
    params: &GbmParams,
    in_node: &mut [bool],
) -> Option<Split> {
    let n = rows.len();
    if n < 2 * params.min_leaf {
        return None;
    }
    rows.iter().for_each(|&i| in_node[i as usize] = true);
    let total: f64 = rows.iter().map(|&i| grad[i as usize]).sum();
    let parent = total * total / (n as f64 + params.l2);
    let mut best: Option<Split> = None;
    for (f, col) in columns.iter().enumerate() {
        let (mut n_left, mut g_left, mut prev) = (0usize, 0.0f64, f64::NAN);
        for &i in order[f].iter().filter(|&&i| in_node[i as usize]) {
            let v = col[i as usize];
            if n_left >= params.min_leaf && n - n_left >= params.min_leaf && v > prev {
                let g_right = total - g_left;
                let gain = g_left * g_left / (n_left as f64 + params.l2)
                    + g_right * g_right / ((n - n_left) as f64 + params.l2)
                    - parent;
                if gain > 1e-15 && best.is_none_or(|b| gain > b.gain) {
                    best = Some(Split {
                        gain,
                        feature: f,
                        threshold: 0.5 * (prev + v),
                    });
                }
            }
            n_left += 1;
            g_left += grad[i as usize];
            prev = v;
        }
    }
    rows.iter().for_each(|&i| in_node[i as usize] = false);
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    #[test]
    fn fits_a_step_function_that_a_line_cannot() {
        let x = Array2::from_shape_fn((200, 2), |(i, j)| {
            if j == 0 {
                i as f64 / 200.0
            } else {
                ((i * 7) % 13) as f64
            }
        });
        let y = Array1::from_shape_fn(200, |i| if i < 100 { 1.0 } else { 3.0 });
        let params = GbmParams {
            n_trees: 200,
            learning_rate: 0.1,
            ..GbmParams::default()
        };
        let model = Gbm::fit(x.view(), y.view(), &params).unwrap();
        for (row, want) in x.rows().into_iter().zip(&y) {
            assert!((model.predict(row.as_slice().unwrap()) - want).abs() < 0.01);
        }
    }

    #[test]
    fn leaves_respect_min_rows() {
        let x = Array2::from_shape_fn((50, 1), |(i, _)| i as f64);
        let y = Array1::from_shape_fn(50, |i| i as f64);
        let params = GbmParams {
            n_trees: 1,
            learning_rate: 1.0,
            min_leaf: 20,
            ..GbmParams::default()
        };
        let model = Gbm::fit(x.view(), y.view(), &params).unwrap();
        // 50 rows with at least 20 per leaf allow exactly one split.
        assert_eq!(model.trees[0].nodes.len(), 3);
        assert_eq!(model.trees[0].depth, 1);
    }

    #[test]
    fn batch_prediction_matches_row_by_row() {
        let x = Array2::from_shape_fn((300, 3), |(i, j)| ((i * 31 + j * 17) % 97) as f64 / 97.0);
        let y = Array1::from_shape_fn(300, |i| (x[[i, 0]] * 3.0).sin() + x[[i, 1]] * x[[i, 2]]);
        let model = Gbm::fit(
            x.view(),
            y.view(),
            &GbmParams {
                n_trees: 50,
                ..GbmParams::default()
            },
        )
        .unwrap();
        let batch = model.predict_rows(x.view());
        for (row, b) in x.rows().into_iter().zip(batch) {
            assert_eq!(model.predict(row.as_slice().unwrap()), b);
        }
    }
}
