//! Properties of the decoder: masking, sliding windows, grouped-query attention, the fused kernels'
//! gradients, parameter counts and checkpoint round trips.

use burn::module::{Module, Param};
use burn::nn::{RmsNorm, RmsNormConfig};
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};
use mixlab_trainer::config::{ModelConfig, Preset};
use mixlab_trainer::data::sampler::Batch;
use mixlab_trainer::inference::Inference;
use mixlab_trainer::kernels;
use mixlab_trainer::model::Model;
use mixlab_trainer::model::input::to_model_input;
use mixlab_trainer::model::mask::AttentionMasks;

mod common;
use common::{flat, max_diff};

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
        int8_activations: false,
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
        doc_ids: vec![0; t],
        domains: vec![0],
        sources: Vec::new(),
    }
}

fn logits(model: &Model, cfg: &ModelConfig, tokens: &[u32]) -> Vec<f32> {
    let (input, _) = to_model_input(&batch(tokens), cfg, false, &Device::flex());
    model.forward(&input).into_data().try_to_vec().unwrap()
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

#[test]
fn with_document_masking_an_earlier_document_never_changes_a_later_one() {
    let cfg = config(2, 4, 2, 16, None);
    let device = Device::flex();
    device.seed(6);
    let model = Model::new(&cfg, &device);
    // Two packed documents of 5 and 7 tokens; positions restart at the second.
    let packed = |first: u32| Batch {
        segments: [vec![0; 5], vec![1; 7]].concat(),
        positions: (0..5).chain(0..7).collect(),
        ..batch(&[first, 3, 9, 27, 1, 8, 6, 4, 2, 7, 5, 11])
    };
    let run = |first: u32, document_mask: bool| -> Vec<f32> {
        let (input, _) = to_model_input(&packed(first), &cfg, document_mask, &device);
        model.forward(&input).into_data().try_to_vec().unwrap()
    };
    let second = 5 * cfg.vocab_size..;
    let masked = max_diff(
        &run(10, true)[second.clone()],
        &run(20, true)[second.clone()],
    );
    let unmasked = max_diff(&run(10, false)[second.clone()], &run(20, false)[second]);
    assert!(masked < 1e-6, "the second document moved by {masked}");
    assert!(
        unmasked > 1e-4,
        "without the document mask the change must reach it ({unmasked})"
    );
}

#[test]
fn losses_without_autodiff_match_the_training_path() {
    // 600 tokens: evaluation computes logits in blocks of 512 rows, training all at once.
    let cfg = config(2, 4, 2, 8, None);
    let device = Device::flex().autodiff();
    device.seed(7);
    let model = Model::new(&cfg, &device);
    let (b, t) = (10, 60);
    let tokens: Vec<u32> = (0..b * t).map(|i| (i * 13 % 50) as u32).collect();
    let batch = Batch {
        batch_size: b,
        seq_len: t,
        inputs: tokens.clone(),
        targets: tokens.iter().map(|x| (x + 1) % 50).collect(),
        positions: (0..b * t).map(|i| (i % t) as u32).collect(),
        segments: vec![0; b * t],
        doc_ids: vec![0; b * t],
        domains: vec![0; b],
        sources: Vec::new(),
    };
    let losses = |model: &Model, device: &Device| -> Vec<f32> {
        let (input, targets) = to_model_input(&batch, &cfg, false, device);
        flat(model.token_losses(&input, targets))
    };
    let training = losses(&model, &device);
    let evaluation = losses(&model.valid(), &Device::flex());
    assert_eq!(training.len(), b * t);
    assert!(
        max_diff(&training, &evaluation) < 1e-5,
        "max difference {}",
        max_diff(&training, &evaluation)
    );
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

fn normal(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn gqa_with_as_many_kv_heads_as_heads_is_plain_multi_head_attention() {
    let device = Device::flex();
    device.seed(3);
    let (t, heads, hd) = (6, 4, 8);
    let (q, k, v) = (
        normal([1, t, heads, hd], &device),
        normal([1, t, heads, hd], &device),
        normal([1, t, heads, hd], &device),
    );
    let masks = AttentionMasks::new(1, t, usize::MAX, None);
    let ours = flat(kernels::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        &masks.global,
    ));
    let expected = reference_attention(
        &flat(q.clone()),
        &flat(k.clone()),
        &flat(v.clone()),
        t,
        heads,
        hd,
    );
    assert!(
        max_diff(&ours, &expected) < 1e-5,
        "max difference {}",
        max_diff(&ours, &expected)
    );

    // Two key/value heads shared by pairs of query heads = four heads with each pair's keys repeated.
    let (k2, v2) = (k.narrow(2, 0, 2), v.narrow(2, 0, 2));
    let repeat = |x: Tensor<4>| {
        x.unsqueeze_dim::<5>(3)
            .expand([1, t, 2, 2, hd])
            .reshape([1, t, heads, hd])
    };
    let grouped = flat(kernels::attention(
        q.clone(),
        k2.clone(),
        v2.clone(),
        &masks.global,
    ));
    let repeated = flat(kernels::attention(q, repeat(k2), repeat(v2), &masks.global));
    assert!(max_diff(&grouped, &repeated) < 1e-6);
}

/// burn's composed attention (the autodiff fallback) with the same key ranges, `[b, t, h, hd]` in
/// and out, key/value heads repeated per group.
fn composed_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, starts: &[u32]) -> Tensor<4> {
    let [b, t, h, hd] = q.dims();
    let kv = k.dims()[2];
    let repeat = |x: Tensor<4>| {
        x.swap_dims(1, 2)
            .unsqueeze_dim::<5>(2)
            .expand([b, kv, h / kv, t, hd])
            .reshape([b, h, t, hd])
    };
    let blocked: Vec<bool> = (0..b * t * t)
        .map(|i| {
            let (row, key) = (i / t, i % t);
            key > row % t || key < starts[row] as usize
        })
        .collect();
    let mask = Tensor::<4, Bool>::from_data(TensorData::new(blocked, [b, 1, t, t]), &q.device())
        .expand([b, h, t, t]);
    burn::tensor::module::attention(
        q.swap_dims(1, 2),
        repeat(k),
        repeat(v),
        Some(mask),
        None,
        Default::default(),
    )
    .swap_dims(1, 2)
}

#[test]
fn fused_kernels_have_the_gradients_of_burns_composed_operations() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let (b, t, heads, kv, hd) = (2, 70, 4, 2, 8);
    let segments: Vec<u32> = (0..b * t).map(|i| u32::from(i % t >= 30)).collect();
    let masks = AttentionMasks::new(b, t, 20, Some(&segments));
    let weights = normal([b, t, heads, hd], &Device::flex());
    let leaf = |shape| normal(shape, &device).require_grad();
    let (q, k, v) = (
        leaf([b, t, heads, hd]),
        leaf([b, t, kv, hd]),
        leaf([b, t, kv, hd]),
    );
    let grads_of = |out: Tensor<4>| {
        let grads = (out * weights.clone()).sum().backward();
        [&q, &k, &v].map(|x| flat(x.grad(&grads).unwrap()))
    };
    let fused = grads_of(kernels::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        &masks.local,
    ));
    let composed = grads_of(composed_attention(
        q.clone(),
        k.clone(),
        v.clone(),
        masks.local.as_slice(),
    ));
    for (name, (a, c)) in ["q", "k", "v"].iter().zip(fused.iter().zip(&composed)) {
        assert!(
            max_diff(a, c) < 1e-4,
            "d{name}: max difference {}",
            max_diff(a, c)
        );
        assert!(c.iter().any(|x| x.abs() > 1e-3), "d{name} must not vanish");
    }

    let (tokens, vocab) = (37, 29);
    let logits = Tensor::<2>::random([tokens, vocab], Distribution::Normal(0.0, 3.0), &device)
        .require_grad();
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..tokens as i64)
                .map(|i| i * 7 % vocab as i64)
                .collect::<Vec<_>>(),
            [tokens],
        ),
        &device,
    );
    let token_weights = Tensor::<1>::random([tokens], Distribution::Default, &Device::flex());
    let fused_losses = kernels::cross_entropy(logits.clone(), targets.clone());
    let composed_losses = log_softmax(logits.clone(), 1)
        .gather(1, targets.reshape([tokens, 1]))
        .reshape([tokens])
        .neg();
    assert!(max_diff(&flat(fused_losses.clone()), &flat(composed_losses.clone())) < 1e-5);
    let grad = |losses: Tensor<1>| {
        flat(
            logits
                .grad(&(losses * token_weights.clone()).sum().backward())
                .unwrap(),
        )
    };
    let (a, c) = (grad(fused_losses), grad(composed_losses));
    assert!(
        max_diff(&a, &c) < 1e-5,
        "dlogits: max difference {}",
        max_diff(&a, &c)
    );

    // RMSNorm (input and gamma) and the SwiGLU gate.
    let norm = RmsNormConfig::new(hd).init(&device);
    let norm = RmsNorm {
        gamma: Param::from_tensor(Tensor::random(
            [hd],
            Distribution::Normal(1.0, 0.3),
            &device,
        )),
        ..norm
    };
    let x = leaf([b, t, heads, hd]);
    let grads_of = |out: Tensor<4>| {
        let grads = (out * weights.clone()).sum().backward();
        [
            flat(x.grad(&grads).unwrap()),
            flat(norm.gamma.val().grad(&grads).unwrap()),
        ]
    };
    let (fused, composed) = (
        grads_of(kernels::rms_norm(x.clone(), &norm)),
        grads_of(norm.forward(x.clone())),
    );
    for (name, (a, c)) in ["x", "gamma"].iter().zip(fused.iter().zip(&composed)) {
        assert!(
            max_diff(a, c) < 1e-3,
            "rms norm d{name}: max difference {}",
            max_diff(a, c)
        );
    }
    let (a, g) = (leaf([b, t, heads, hd]), leaf([b, t, heads, hd]));
    let grads_of = |out: Tensor<4>| {
        let grads = (out * weights.clone()).sum().backward();
        [flat(a.grad(&grads).unwrap()), flat(g.grad(&grads).unwrap())]
    };
    let fused = grads_of(kernels::swiglu(a.clone(), g.clone()));
    let composed = grads_of(silu(a.clone()) * g.clone());
    for (name, (x, y)) in ["a", "b"].iter().zip(fused.iter().zip(&composed)) {
        assert!(
            max_diff(x, y) < 1e-4,
            "swiglu d{name}: max difference {}",
            max_diff(x, y)
        );
    }
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
    let loaded =
        mixlab_trainer::engine::checkpoint::load_model(Model::new(&cfg, &device), &path).unwrap();
    assert_eq!(before, logits(&loaded, &cfg, &tokens));
}

#[test]
fn batched_activations_of_padded_sequences_match_one_sequence_at_a_time() {
    let cfg = config(2, 4, 2, 4, Some(vec![1]));
    let device = Device::flex();
    device.seed(5);
    let inference = Inference::of_trained(&Model::new(&cfg, &device), &cfg);
    let (long, short): (Vec<u32>, Vec<u32>) =
        ((0..20).map(|i| i * 7 % 50).collect(), vec![3, 9, 27, 31, 8]);
    let batched = inference.sequences_hidden_and_logits(&[&short, &long]);
    for ((hidden, logits), tokens) in batched.into_iter().zip([&short, &long]) {
        let (h, l) = inference.sequence_hidden_and_logits(tokens);
        assert_eq!(hidden.dims(), [tokens.len(), cfg.d_model]);
        assert!(max_diff(&flat(hidden), &flat(h)) < 1e-5);
        assert!(max_diff(&flat(logits), &flat(l)) < 1e-5);
    }
}
