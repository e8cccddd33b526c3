//! The training loop with a custom objective and hooks: what it calls, when, and what it leaves on
//! disk.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard};

use burn::tensor::Tensor;
use mixlab_artefacts::eval::DomainLoss;
use mixlab_artefacts::metrics::read_metrics;
use mixlab_mixer::schedule::MixtureSchedule;
use mixlab_trainer::config::{KeepCheckpoints, Preset, TrainConfig};
use mixlab_trainer::data::Corpus;
use mixlab_trainer::data::store::DomainDocs;
use mixlab_trainer::engine::checkpoint::complete_steps;
use mixlab_trainer::engine::hooks::{
    Activations, DueCheckpoint, Hook, HookError, SavedCheckpoint, StepReport,
};
use mixlab_trainer::engine::objective::{CrossEntropy, MicroBatch, Objective};
use mixlab_trainer::engine::schedule::StagePlan;
use mixlab_trainer::engine::{RunPaths, RunSpec, train};
use mixlab_trainer::model::Model;

/// burn's seeded generator is process-wide: runs in concurrent tests would draw from each other's
/// stream, so the tests that train take this lock.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn corpus() -> Corpus {
    let domain = |name: &str, base: u32| {
        let docs = (0..12u32)
            .map(|i| (0..20).map(|j| base + (i * 7 + j) % 24).collect())
            .collect();
        DomainDocs::from_tokens(name, docs)
    };
    let valid = |name: &str, base: u32| {
        DomainDocs::from_tokens(name, vec![(0..30).map(|j| base + j % 24).collect()])
    };
    Corpus {
        domains: vec!["a".into(), "b".into()],
        train: vec![domain("a", 1).into(), domain("b", 30).into()],
        valid: vec![valid("a", 1).into(), valid("b", 30).into()],
        probe: vec![
            DomainDocs::from_tokens("a", vec![]).into(),
            DomainDocs::from_tokens("b", vec![]).into(),
        ],
        eos: 0,
        vocab_size: 64,
    }
}

fn train_config(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        seq_len: 16,
        grad_accum: 2,
        warmup_steps: 2,
        eval_every: 2,
        checkpoint_every: 3,
        keep_checkpoints: KeepCheckpoints::All,
        ..TrainConfig::default()
    }
}

fn spec<'a>(corpus: &'a Corpus, dir: &std::path::Path, steps: u64) -> RunSpec<'a> {
    let train = train_config(steps);
    let mixture = MixtureSchedule::uniform(&["a", "b"]);
    RunSpec {
        model: Preset::Tiny.config(corpus.vocab_size),
        plan: StagePlan::new(&mixture, &corpus.domains, &train).unwrap(),
        train,
        corpus,
        paths: RunPaths {
            checkpoints: dir.join("checkpoints"),
            metrics: dir.join("metrics.parquet"),
            eval: dir.join("eval.parquet"),
        },
        run_hash: "test".into(),
        init: None,
    }
}

/// Cross-entropy that counts its calls.
#[derive(Default)]
struct Counted {
    calls: Cell<usize>,
}

impl Objective for Counted {
    fn loss(&self, model: &Model, micro: MicroBatch<'_>) -> Tensor<1> {
        self.calls.set(self.calls.get() + 1);
        CrossEntropy.loss(model, micro)
    }
}

/// Records every event as a line; checks that a due checkpoint is not on disk yet in `checkpoints`.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    checkpoints: std::path::PathBuf,
}

impl Hook for Recorder {
    fn started(&mut self, start: u64, total: u64) {
        self.events.push(format!("start {start}/{total}"));
    }
    fn after_step(&mut self, r: &StepReport) -> Result<(), HookError> {
        assert!(r.loss.is_finite() && r.seconds > 0.0);
        self.events.push(format!("step {}", r.step));
        Ok(())
    }
    fn after_eval(&mut self, step: u64, losses: &[DomainLoss]) -> Result<(), HookError> {
        assert_eq!(losses.len(), 2);
        self.events.push(format!("eval {step}"));
        Ok(())
    }
    fn before_checkpoint(&mut self, c: &DueCheckpoint<'_>) -> Result<(), HookError> {
        assert!(!complete_steps(&self.checkpoints).contains(&c.step));
        self.events.push(format!("due {}", c.step));
        Ok(())
    }
    fn after_checkpoint(&mut self, c: &SavedCheckpoint<'_>) -> Result<(), HookError> {
        assert!(c.files.state.exists() && c.files.model.exists());
        self.events.push(format!("checkpoint {}", c.step));
        Ok(())
    }
}

#[test]
fn the_loop_calls_the_objective_per_micro_batch_and_hooks_in_order() {
    let _serial = serial();
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let objective = Counted::default();
    let mut recorder = Recorder {
        checkpoints: dir.path().join("checkpoints"),
        ..Recorder::default()
    };
    let outcome = train(
        &spec(&corpus, dir.path(), 4),
        &objective,
        &mut [&mut recorder],
    )
    .unwrap();
    assert_eq!(objective.calls.get(), 4 * 2, "4 steps × 2 micro-batches");
    assert_eq!(
        recorder.events,
        [
            "start 0/4",
            "step 1",
            "step 2",
            "eval 2",
            "step 3",
            "due 3",
            "checkpoint 3",
            "step 4",
            "eval 4",
            "due 4",
            "checkpoint 4"
        ]
    );
    assert_eq!(outcome.steps, 4);
    assert_eq!(
        complete_steps(&dir.path().join("checkpoints")),
        [3, 4],
        "all kept"
    );
    let metrics = read_metrics(&dir.path().join("metrics.parquet")).unwrap();
    assert_eq!(metrics.iter().filter(|r| r.loss.is_some()).count(), 4);
    assert_eq!(
        metrics.iter().filter(|r| r.eval_loss.is_some()).count(),
        2 * 2
    );
}

/// Reads the activations of even steps: (step, hidden shape) per micro-batch.
#[derive(Default)]
struct Activated {
    seen: Vec<(u64, [usize; 3])>,
}

impl Hook for Activated {
    fn wants_activations(&self, step: u64) -> bool {
        step.is_multiple_of(2)
    }
    fn activations(&mut self, a: Activations<'_>) -> Result<(), HookError> {
        assert_eq!(a.batch.batch_size, 2);
        self.seen.push((a.step, a.hidden.dims()));
        Ok(())
    }
}

#[test]
fn hooks_get_the_activations_of_the_steps_they_ask_for_without_changing_training() {
    let _serial = serial();
    let corpus = corpus();
    let losses = |hooks: &mut [&mut dyn Hook]| {
        let dir = tempfile::tempdir().unwrap();
        train(&spec(&corpus, dir.path(), 4), &CrossEntropy, hooks).unwrap();
        let metrics = read_metrics(&dir.path().join("metrics.parquet")).unwrap();
        metrics.iter().filter_map(|r| r.loss).collect::<Vec<_>>()
    };
    let mut activated = Activated::default();
    let with_hook = losses(&mut [&mut activated]);
    let d = Preset::Tiny.config(corpus.vocab_size).d_model;
    assert_eq!(
        activated.seen,
        [
            (2, [2, 16, d]),
            (2, [2, 16, d]),
            (4, [2, 16, d]),
            (4, [2, 16, d])
        ],
        "2 micro-batches of steps 2 and 4"
    );
    assert_eq!(with_hook, losses(&mut []));
    // An objective that forms no hidden states cannot serve such a hook: the run says so.
    let dir = tempfile::tempdir().unwrap();
    let err = train(
        &spec(&corpus, dir.path(), 4),
        &Counted::default(),
        &mut [&mut Activated::default()],
    )
    .unwrap_err();
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("does not hand them")),
        "{err}"
    );
}

/// Fails after the given step, like a process killed there.
struct CrashAfter(u64);

impl Hook for CrashAfter {
    fn after_step(&mut self, r: &StepReport) -> Result<(), HookError> {
        if r.step == self.0 {
            return Err("simulated crash".into());
        }
        Ok(())
    }
}

#[test]
fn a_failing_hook_stops_the_run_and_a_rerun_resumes_to_the_same_metrics() {
    let _serial = serial();
    let corpus = corpus();
    let (straight, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    train(&spec(&corpus, straight.path(), 6), &CrossEntropy, &mut []).unwrap();
    let err = train(
        &spec(&corpus, crashed.path(), 6),
        &CrossEntropy,
        &mut [&mut CrashAfter(5)],
    )
    .unwrap_err();
    assert!(
        matches!(err, mixlab_trainer::error::Error::Hook(_)),
        "{err}"
    );
    let mut recorder = Recorder {
        checkpoints: crashed.path().join("checkpoints"),
        ..Recorder::default()
    };
    let resumed = train(
        &spec(&corpus, crashed.path(), 6),
        &CrossEntropy,
        &mut [&mut recorder],
    )
    .unwrap();
    assert_eq!(
        (resumed.resumed_from, recorder.events[0].as_str()),
        (3, "start 3/6")
    );
    let metrics = |d: &tempfile::TempDir| read_metrics(&d.path().join("metrics.parquet")).unwrap();
    assert_eq!(metrics(&crashed), metrics(&straight));
}

/// Asks to stop from step `from` on; refuses to stop at the steps in `busy`.
struct StopFrom {
    from: u64,
    busy: Vec<u64>,
    step: u64,
}

impl Hook for StopFrom {
    fn after_step(&mut self, r: &StepReport) -> Result<(), HookError> {
        self.step = r.step;
        Ok(())
    }
    fn stop_requested(&self) -> bool {
        self.step >= self.from
    }
    fn can_stop_at(&self, step: u64) -> bool {
        !self.busy.contains(&step)
    }
}

#[test]
fn a_requested_stop_waits_for_hooks_checkpoints_and_resumes_to_the_same_run() {
    let _serial = serial();
    let corpus = corpus();
    let (straight, stopped) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = train(&spec(&corpus, straight.path(), 7), &CrossEntropy, &mut []).unwrap();
    let mut stop = StopFrom {
        from: 4,
        busy: vec![4],
        step: 0,
    };
    let err = train(
        &spec(&corpus, stopped.path(), 7),
        &CrossEntropy,
        &mut [&mut stop],
    )
    .unwrap_err();
    assert!(
        matches!(err, mixlab_trainer::error::Error::Interrupted { step: 5 }),
        "{err}"
    );
    let checkpoints = stopped.path().join("checkpoints");
    assert_eq!(complete_steps(&checkpoints), [3, 5]);
    let resumed = train(&spec(&corpus, stopped.path(), 7), &CrossEntropy, &mut []).unwrap();
    assert_eq!(resumed.resumed_from, 5);
    // Step 5 was off the schedule (every 3): gone once step 6 was written.
    assert_eq!(complete_steps(&checkpoints), [3, 6, 7]);
    let metrics = |d: &tempfile::TempDir| read_metrics(&d.path().join("metrics.parquet")).unwrap();
    assert_eq!(metrics(&stopped), metrics(&straight));
    assert_eq!(resumed.final_eval, first.final_eval);
}

#[test]
fn a_fresh_run_starts_from_init_weights_and_a_resumed_run_ignores_them() {
    let _serial = serial();
    let corpus = corpus();
    let (source, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let trained = train(&spec(&corpus, source.path(), 6), &CrossEntropy, &mut []).unwrap();
    // Zero steps from the source's final weights: the same model, so the same evaluation.
    let init = source.path().join("checkpoints/step-6.bpk");
    let mut from_init = spec(&corpus, copy.path(), 0);
    from_init.init = Some(init.clone());
    let copied = train(&from_init, &CrossEntropy, &mut []).unwrap();
    assert_eq!(copied.final_eval, trained.final_eval);
    assert_eq!(complete_steps(&copy.path().join("checkpoints")), [0]);
    // Without init, zero steps evaluate a random initialisation instead.
    let fresh = tempfile::tempdir().unwrap();
    let random = train(&spec(&corpus, fresh.path(), 0), &CrossEntropy, &mut []).unwrap();
    assert_ne!(random.final_eval, trained.final_eval);
    // A run that resumes from its own checkpoint does not reload the init weights.
    let mut resumed = from_init.clone();
    resumed.init = Some(copy.path().join("missing.bpk"));
    assert_eq!(
        train(&resumed, &CrossEntropy, &mut []).unwrap().final_eval,
        copied.final_eval
    );
}
