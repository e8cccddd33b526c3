//! The model's matrix product (`kernels::matmul`, on the kernels chosen for this CPU; see
//! `MatmulIsa`) against an f64 reference and against burn's own product, gradients included, on
//! shapes that exercise edge tiles, the multi-threaded path and transposed operands.

use burn::tensor::{Device, Distribution, Tensor};
use mixlab_trainer::kernels::{self, MatmulIsa};

mod common;
use common::{flat, max_diff};

fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = f64::from(a[i * k + p]);
            for j in 0..n {
                c[i * n + j] += x * f64::from(b[p * n + j]);
            }
        }
    }
    c
}

#[test]
fn matmul_matches_an_f64_reference_on_this_cpus_kernel() {
    let device = Device::flex();
    device.seed(7);
    println!("matrix products on {}", MatmulIsa::current());
    // 208³ is above the threading threshold; the transposed rhs is read in place.
    for (m, k, n) in [(1, 7, 3), (67, 129, 45), (33, 256, 17), (208, 208, 208)] {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let bt = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device);
        let b_host = flat(bt.clone().transpose());
        let expected = reference(&flat(a.clone()), &b_host, m, k, n);
        let c = flat(kernels::matmul(a, bt.transpose()));
        let max_diff = c
            .iter()
            .zip(&expected)
            .map(|(x, y)| (f64::from(*x) - y).abs())
            .fold(0.0, f64::max);
        // fp32 accumulation of k products of unit normals: error grows like sqrt(k)·eps·|c|.
        let tolerance = 1e-5 * (k as f64).sqrt() * 10.0;
        assert!(
            max_diff < tolerance,
            "{m}×{k}×{n}: {max_diff} ≥ {tolerance}"
        );
    }
}

#[test]
fn matmul_has_the_gradients_of_burns_product() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let (m, k, n) = (45, 70, 33);
    let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let bt = Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let weights = Tensor::<2>::random([m, n], Distribution::Normal(0.0, 1.0), &Device::flex());
    let grads_of = |out: Tensor<2>| {
        let grads = (out * weights.clone()).sum().backward();
        [
            flat(a.grad(&grads).unwrap()),
            flat(bt.grad(&grads).unwrap()),
        ]
    };
    let ours = grads_of(kernels::matmul(a.clone(), bt.clone().transpose()));
    let burns = grads_of(a.clone().matmul(bt.clone().transpose()));
    for (name, (x, y)) in ["lhs", "rhs"].iter().zip(ours.iter().zip(&burns)) {
        assert!(
            max_diff(x, y) < 1e-4,
            "d{name}: max difference {}",
            max_diff(x, y)
        );
        assert!(y.iter().any(|v| v.abs() > 1e-2), "d{name} must not vanish");
    }
}
