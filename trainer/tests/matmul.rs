//! The backend's matrix products (burn-flex → `gemm`, whose kernel is chosen at run time: AVX-512
//! where the CPU reports `avx512f`, AVX2 + FMA otherwise) against an f64 reference, on shapes that
//! exercise edge tiles and the multi-threaded path. On an AVX-512 machine this covers the AVX-512
//! kernels; elsewhere the AVX2 ones.

use burn::tensor::{Device, Distribution, Tensor};

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

#[cfg(target_arch = "x86_64")]
fn cpu_isa() -> &'static str {
    if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "avx2+fma"
    } else {
        "scalar"
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_isa() -> &'static str {
    "not x86-64"
}

#[test]
fn matmul_matches_an_f64_reference_on_this_cpus_kernel() {
    let device = Device::flex();
    // Odd sizes hit partial register tiles; 208³ is above burn-flex's threading threshold (192³).
    for (m, k, n) in [(1, 7, 3), (67, 129, 45), (33, 256, 17), (208, 208, 208)] {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        let a_host: Vec<f32> = a.clone().into_data().try_to_vec().unwrap();
        let b_host: Vec<f32> = b.clone().into_data().try_to_vec().unwrap();
        let c: Vec<f32> = a.matmul(b).into_data().try_to_vec().unwrap();
        let expected = reference(&a_host, &b_host, m, k, n);
        let max_diff = c
            .iter()
            .zip(&expected)
            .map(|(x, y)| (f64::from(*x) - y).abs())
            .fold(0.0, f64::max);
        // fp32 accumulation of k products of unit normals: error grows like sqrt(k)·eps·|c|.
        let tolerance = 1e-5 * (k as f64).sqrt() * 10.0;
        println!("{m}×{k}×{n} on {}: max |diff| {max_diff:.2e}", cpu_isa());
        assert!(
            max_diff < tolerance,
            "{m}×{k}×{n}: {max_diff} ≥ {tolerance}"
        );
    }
}
