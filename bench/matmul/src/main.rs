//! fp32 matrix-product throughput of the trainer's backend (burn-flex, which calls `gemm` with its
//! run-time kernel choice) on the shapes that dominate a training step, for `bench/matmul.sh`.
//!
//! Prints one JSON object per shape: `{"m", "k", "n", "gflops", "seconds"}`. Threads follow
//! `RAYON_NUM_THREADS`.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};

/// `(m, k, n)`: the square reference, attention/FFN inputs, the tied output layer, the FFN output.
const SHAPES: [(usize, usize, usize); 4] = [
    (2048, 2048, 2048),
    (4096, 256, 768),
    (4096, 256, 8192),
    (4096, 768, 256),
];

/// Products timed per shape after one warm-up product; at least this many seconds of work.
const MIN_SECONDS: f64 = 2.0;

fn main() {
    let device = Device::flex();
    for (m, k, n) in SHAPES {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device);
        let product = || {
            let c = a.clone().matmul(b.clone());
            // One element read back: the product is computed eagerly, and reading all of it
            // would time a copy of the output too.
            c.narrow(0, 0, 1).narrow(1, 0, 1).into_scalar::<f32>()
        };
        let mut checksum = product();
        let started = Instant::now();
        let mut reps = 0u32;
        while reps < 3 || started.elapsed().as_secs_f64() < MIN_SECONDS {
            checksum += product();
            reps += 1;
        }
        let seconds = started.elapsed().as_secs_f64() / f64::from(reps);
        let gflops = 2.0 * (m * k * n) as f64 / seconds / 1e9;
        let line = serde_json::json!({
            "m": m, "k": k, "n": n, "gflops": gflops, "seconds": seconds, "checksum": checksum,
        });
        println!("{line}");
    }
}
