//! fp32 matrix-product throughput on the shapes that dominate a training step, for
//! `bench/matmul.sh`: the trainer's product (`kernels::matmul`, on the kernels `MatmulIsa::current`
//! picks; `MIXLAB_MATMUL_ISA` forces one) and burn-flex's own product (`gemm` crate) side by side.
//!
//! Prints one JSON object per shape and kernel: `{"kernel", "m", "k", "n", "gflops", "seconds"}`.
//! Threads follow `RAYON_NUM_THREADS`.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use mixlab_trainer::allocator;
use mixlab_trainer::kernels::{self, MatmulIsa};

/// `(m, k, n)`: the square reference, attention/FFN inputs, the tied output layer, the FFN output.
const SHAPES: [(usize, usize, usize); 4] = [
    (2048, 2048, 2048),
    (4096, 256, 768),
    (4096, 256, 8192),
    (4096, 768, 256),
];

/// Products timed per shape after one warm-up product; at least this many seconds of work.
const MIN_SECONDS: f64 = 2.0;

/// Seconds per product, timed until [`MIN_SECONDS`] have passed.
fn seconds_per_product(product: impl Fn() -> f32) -> (f64, f32) {
    let mut checksum = product();
    let started = Instant::now();
    let mut reps = 0u32;
    while reps < 3 || started.elapsed().as_secs_f64() < MIN_SECONDS {
        checksum += product();
        reps += 1;
    }
    (started.elapsed().as_secs_f64() / f64::from(reps), checksum)
}

fn main() {
    // The allocator settings of the `mixlab` binary, so products are timed as training runs them.
    allocator::tune();
    let device = Device::flex();
    let ours = format!("mixlab-{}", MatmulIsa::current());
    for (m, k, n) in SHAPES {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        // One element read back: the product is computed eagerly, and reading all of it would
        // time a copy of the output too.
        let first = |c: Tensor<2>| c.narrow(0, 0, 1).narrow(1, 0, 1).into_scalar::<f32>();
        let kernels: [(&str, &dyn Fn() -> f32); 2] = [
            (&ours, &|| first(kernels::matmul(a.clone(), b.clone()))),
            ("burn-flex", &|| first(a.clone().matmul(b.clone()))),
        ];
        for (kernel, product) in kernels {
            let (seconds, checksum) = seconds_per_product(product);
            let gflops = 2.0 * (m * k * n) as f64 / seconds / 1e9;
            let line = serde_json::json!({
                "kernel": kernel, "m": m, "k": k, "n": n,
                "gflops": gflops, "seconds": seconds, "checksum": checksum,
            });
            println!("{line}");
        }
    }
}
