//! Properties of the decoder: masking, sliding windows, grouped-query attention, parameter counts
//! and checkpoint round trips.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mixlab_trainer::config::{ModelConfig, Preset};
use mixlab_trainer::input::to_model_input;
use mixlab_trainer::model::Model;
use mixlab_trainer::sampler::Batch;

fn config(
    layers: usize,
    heads: usize,
    kv: usize,
    window: usize,
    global: Option<Vec<usize>>,
) -> ModelConfig {
    ModelConfig {
        vocab_size: 50,
        d_model: 32,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv,
        ffn_hidden: 48,
        window,
        global_every: 4,
        global_layers: global,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        max_seq_len: 64,
    }
}

/// A one-sequence batch of the given tokens.
fn batch(tokens: &[u32]) -> Batch {
    let t = tokens.len();
    Batch {
        batch_size: 1,
        seq_len: t,
        inputs: tokens.to_vec(),
        targets: tokens.to_vec(),
        positions: (0..t as u32).collect(),
        segments: vec![0; t],
        domains: vec![0],
    }
}

fn logits(model: &Model, cfg: &ModelConfig, tokens: &[u32]) -> Vec<f32> {
    let (input, _) = to_model_input(&batch(tokens), cfg, false, &Device::flex());
    model.forward(&input).into_data().try_to_vec().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_future_token_never_changes_an_earlier_logit() {
    let cfg = config(3, 4, 2, 4, None);
    let device = Device::flex();
    device.seed(1);
    let model = Model::new(&cfg, &device);
    let a: Vec<u32> = (0..12).map(|i| (i * 7 % 50) as u32).collect();
    let mut b = a.clone();
    b[8] = 49;
    let (la, lb) = (logits(&model, &cfg, &a), logits(&model, &cfg, &b));
    let v = cfg.vocab_size;
    let before = max_diff(&la[..8 * v], &lb[..8 * v]);
    let after = max_diff(&la[8 * v..], &lb[8 * v..]);
    assert!(
        before < 1e-6,
        "positions before the change moved by {before}"
    );
    assert!(after > 1e-4, "the changed position must matter ({after})");
}

#[test]
fn a_token_outside_the_window_never_changes_a_local_layer() {
    // One local layer (no global layers) with window 3: query q sees keys q-2..=q.
    let cfg = config(1, 4, 4, 3, Some(vec![]));
    let device = Device::flex();
    device.seed(2);
    let model = Model::new(&cfg, &device);
    let a: Vec<u32> = (0..10).map(|i| (i * 3 % 50) as u32).collect();
    let mut b = a.clone();
    b[2] = 41;
    let (la, lb) = (logits(&model, &cfg, &a), logits(&model, &cfg, &b));
    let v = cfg.vocab_size;
    let row = |l: &[f32], q: usize| l[q * v..(q + 1) * v].to_vec();
    for q in 2..5 {
        assert!(
            max_diff(&row(&la, q), &row(&lb, q)) > 1e-5,
            "position {q} is inside the window"
        );
    }
    for q in 5..10 {
        assert!(
            max_diff(&row(&la, q), &row(&lb, q)) < 1e-6,
            "position {q} is outside the window"
        );
    }
    // The same change does reach far positions through a global layer.
    let global = config(1, 4, 4, 3, Some(vec![0]));
    device.seed(2);
    let model = Model::new(&global, &device);
    let (ga, gb) = (logits(&model, &global, &a), logits(&model, &global, &b));
    assert!(max_diff(&row(&ga, 9), &row(&gb, 9)) > 1e-5);
}

/// Plain multi-head attention over `[t, heads·hd]` projections, head by head, on the CPU.
fn reference_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    heads: usize,
    hd: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; t * heads * hd];
    for h in 0..heads {
        for i in 0..t {
            let scores: Vec<f32> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|d| q[i * heads * hd + h * hd + d] * k[j * heads * hd + h * hd + d])
                        .sum::<f32>()
                        / (hd as f32).sqrt()
                })
                .collect();
            let max = scores.iter().copied().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f32 = exp.iter().sum();
            for (j, e) in exp.iter().enumerate() {
                for d in 0..hd {
                    out[i * heads * hd + h * hd + d] += e / total * v[j * heads * hd + h * hd + d];
                }
            }
        }
    }
    out
}

#[test]
fn gqa_with_as_many_kv_heads_as_heads_is_plain_multi_head_attention() {
    let device = Device::flex();
    device.seed(3);
    let (t, heads, hd) = (6, 4, 8);
    let q = Tensor::<4>::random(
        [1, heads, t, hd],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let k = Tensor::<4>::random(
        [1, heads, t, hd],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let v = Tensor::<4>::random(
        [1, heads, t, hd],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let masks = mixlab_trainer::mask::AttentionMasks::new(1, t, usize::MAX, None, &device);
    let ours = burn::tensor::module::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        Some(masks.global.expand([1, heads, t, t])),
        None,
        Default::default(),
    );
    let flat = |x: Tensor<4>| -> Vec<f32> {
        x.swap_dims(1, 2)
            .reshape([t * heads * hd])
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let expected = reference_attention(&flat(q), &flat(k), &flat(v), t, heads, hd);
    let got = flat(ours);
    assert!(
        max_diff(&got, &expected) < 1e-5,
        "max difference {}",
        max_diff(&got, &expected)
    );
}

#[test]
fn parameter_counts_match_the_formula_and_mobilellm_pro() {
    let device = Device::flex();
    for cfg in [config(2, 4, 2, 8, None), Preset::Tiny.config(1024)] {
        assert_eq!(
            Model::new(&cfg, &device).num_params(),
            cfg.parameter_count()
        );
    }
    assert_eq!(
        Preset::MobilellmPro.config(202_048).parameter_count(),
        1_084_453_120
    );
}

#[test]
fn save_and_load_give_identical_logits() {
    let cfg = config(2, 4, 2, 8, None);
    let device = Device::flex();
    device.seed(5);
    let model = Model::new(&cfg, &device);
    let tokens: Vec<u32> = (0..9).map(|i| (i * 5 % 50) as u32).collect();
    let before = logits(&model, &cfg, &tokens);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.bpk");
    model.save_file(&path).unwrap();
    device.seed(99);
    let loaded = mixlab_trainer::checkpoint::load_model(Model::new(&cfg, &device), &path).unwrap();
    assert_eq!(before, logits(&loaded, &cfg, &tokens));
}
