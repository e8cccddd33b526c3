//! Command-line interface: one subcommand per stage.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mixlab_ingest::verified::Verification;
use mixlab_stages::arms::SdmObjective;
use mixlab_stages::merge::{DEFAULT_SEARCH_ITERS, MergeWeights};
use mixlab_stages::mix::SdmSettings;
use mixlab_stages::plan::StageKind;
use mixlab_stages::quantize::QAT_DISTILLATION;
use mixlab_stages::simulate::SimulateMethod;
use mixlab_stages::train::TrainSpec;
use mixlab_stages::workspace::{ShardsDir, Workspace};
use mixlab_trainer::downstream::distill::DistillSettings;

/// mixlab: data pipeline and data-mixture optimization for language-model pre-training.
///
/// Stages read and write artefacts under --out (default out/): shards/, runs/<name>/, mixture.toml.
/// Every stage can be re-run: finished work is detected and skipped.
///
/// Exit codes: 0 success; 1 a stage failed on its inputs or at run time (bad data, manifest mismatch,
/// NaN loss); 2 usage or configuration error (unknown key, invalid value), found before work starts.
///
/// Environment: MIXLAB_MATMUL_ISA=auto|avx512|avx2|portable picks the matrix-product kernels
/// (default auto: AVX-512 where the CPU has it, else AVX2); RAYON_NUM_THREADS sets the threads.
#[derive(Debug, Parser)]
#[command(name = "mixlab", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Root directory of all artefacts [default: out/; for demo-data: data/demo].
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print only warnings and errors; no progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log format on stderr; `json` gives one JSON object per line for batch jobs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Hash every shard against the manifest before using it. Without it, shards unchanged since
    /// their last full check (the manifest, sizes and modification times recorded in
    /// shards/verified.json) are used without reading them again.
    #[arg(long, global = true)]
    pub verify: bool,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl GlobalArgs {
    /// The artefact root (`--out`, default `out`).
    pub fn out_root(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("out"))
    }

    /// How shards are checked on open (`--verify`: every checksum).
    pub fn verification(&self) -> Verification {
        if self.verify {
            Verification::Full
        } else {
            Verification::Recorded
        }
    }

    /// `<out>/shards`, verified as `--verify` says when opened.
    pub fn shards(&self) -> ShardsDir {
        self.workspace().shards()
    }

    /// Where the stages read and write, as the global flags say.
    pub fn workspace(&self) -> Workspace {
        Workspace {
            out: self.out_root(),
            verification: self.verification(),
            quiet: self.quiet,
        }
    }
}

/// The stages.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline as one restartable batch job: ingest, simulate, mix, train, and the
    /// distill, merge and quantize stages [run] configures, for every [[ablation]] arm.
    ///
    /// Each stage runs as the subcommand it prints, keyed by a hash of its arguments, the
    /// configuration it reads and the stages before it (records in <out>/pipeline/stages/).
    /// A rerun skips the stages that finished with the same key and says so; changing one
    /// section reruns the stages that read it and everything after them, nothing before. A
    /// killed job resumes: a training stage from its last checkpoint. SIGINT or SIGTERM stop
    /// training after writing a checkpoint (exit code 130 or 143). A second `mixlab run` on
    /// the same --out is refused while one runs.
    Run(RunArgs),
    /// Write the ablation report: Markdown, self-contained HTML and SVG figures.
    ///
    /// Compares arms (each with its seeds): final validation and probe losses with the seed
    /// range, the winner per target and whether its margin exceeds the seed spread, mixtures,
    /// domain utilities, loss curves, and each arm's distill/merge/quantize stages. Reads the
    /// plan `mixlab run` writes (<out>/pipeline/plan.json), or run directories (one arm each).
    /// Writes <out>/reports/<NAME>/{report.md, report.html, *.svg}; --format json prints the
    /// tables instead.
    Report(ReportArgs),
    /// Turn the configured sources into token shards under <out>/shards.
    ///
    /// Reads every [[domain.source]] through DataFusion (with its optional SQL), cleans, filters,
    /// removes exact and near duplicates across domains, tokenizes and writes Parquet shards and a
    /// manifest. Prints a per-domain summary. A second run with unchanged inputs does nothing.
    ///
    /// With --engine ballista the reading, SQL, filters, hashes and tokenization run on an Apache
    /// DataFusion Ballista cluster (`mixlab cluster scheduler` and `mixlab cluster executor`), one
    /// job per source file; dedup and shard writing stay here, so the shards are the same as with
    /// the local engine. Executors must see this machine's paths (sources and <out>) on a shared
    /// file system.
    Ingest(IngestArgs),
    /// Print the manifest of a shard directory and the state of its token cache.
    ///
    /// Verifies every shard's checksum, then prints domains, splits, documents, tokens and the
    /// tokenizer, and whether the token cache that training streams from (<shards>/cache, built by
    /// the first stage that trains) is ready, missing, stale (built for other shards) or damaged.
    Inspect(InspectArgs),
    /// Write the embedded synthetic demo corpus (arithmetic, code, prose, noise, duplicated).
    DemoData(DemoArgs),
    /// Train a model on <out>/shards with a mixture schedule (uniform without --mixture).
    ///
    /// The run lives in <out>/<RUN>: config.toml (resolved), metrics.parquet, checkpoints/,
    /// eval.parquet and a `done` marker. A killed run resumes from its last checkpoint; a finished
    /// run with the same inputs does nothing.
    Train(TrainArgs),
    /// Train a student towards a finished teacher run's next-token distributions.
    ///
    /// The loss is alpha·τ²·KL(teacher ‖ student) at temperature τ plus (1 − alpha)·cross-entropy,
    /// on the same batches, mixture and schedule as `train`. The teacher (any finished run on the
    /// same tokenizer, typically a larger preset trained longer) runs without autodiff at its newest
    /// checkpoint. The student is a run directory like any other; its config.toml names the teacher.
    Distill(DistillArgs),
    /// Round a finished run's weights to 4 bits and evaluate them as a new run.
    ///
    /// Every weight matrix and the embedding become symmetric int4 with one f16 scale per group of
    /// input features (GGUF's Q4_0 rule at --group-size 32); norms stay in full precision. The
    /// result is a run directory (default <RUN>-int4) whose checkpoint 0 holds the rounded weights,
    /// so `eval` and `generate` read it like any run; its config.toml names the source run. At
    /// group size 32 the weights are also packed as GGUF Q4_0 blocks in model-q4_0.gguf (4.5 bits
    /// a weight; `eval --gguf` runs from it). With --qat-steps, quantization-aware training with
    /// self-distillation comes first.
    Quantize(QuantizeArgs),
    /// Anneal specialists from one run and merge them into one model by averaging their weights.
    ///
    /// Each [[specialist]] of the --specialists file trains from the newest checkpoint of --base on
    /// its own (domain-skewed) mixture for `steps`, its learning rate decaying from `lr` to 0, in
    /// <BASE>-<name>. The merged model is the weighted average of every parameter of the
    /// specialists: equal weights, the given ones, or (--weights search) the weights on the
    /// simplex that minimise the mean validation loss over the domains (Nelder-Mead). It is
    /// evaluated as a run of zero steps in --run (default <BASE>-merged) whose config.toml names
    /// the specialists and weights; a table compares it with each specialist on every domain.
    Merge(MergeArgs),
    /// Per-domain validation loss and perplexity of a run's newest checkpoint.
    Eval(EvalArgs),
    /// Write a run's newest checkpoint for llama.cpp (GGUF) or Hugging Face transformers.
    ///
    /// --format hf writes a directory with model.safetensors (LlamaForCausalLM tensor names,
    /// weights [out, in], f32), config.json (the shape; output layer tied to the embedding) and
    /// the shards' tokenizer.json. --format gguf writes model-<PRECISION>.gguf, llama.cpp's llama
    /// architecture with the tokenizer (byte-level BPE as llama.cpp's gpt2) and q/k in its rotary
    /// layout. Local attention windows have no Llama equivalent: both record them as mixlab keys,
    /// and both runtimes attend globally (identical within the window). Both record the run's
    /// provenance (run hash, mixture and tokenizer SHA-256, step).
    Export(ExportArgs),
    /// Per-token losses of texts, each scored alone from position 0: one JSON line per text with
    /// its token ids and the loss (nats) of predicting each next token.
    ///
    /// For comparing mixlab's model with another runtime's (llama.cpp on an exported GGUF,
    /// transformers on an exported directory) on identical token sequences.
    Score(ScoreArgs),
    /// Continue a prompt with a run's model, to see what it learned.
    Generate(GenerateArgs),
    /// Passkey retrieval, the long-context test: training documents, and a run's accuracy.
    ///
    /// A task hides a random five-digit key in filler sentences and asks for it at the end.
    /// `make` writes tasks as JSONL documents for a [[domain.source]]; `eval` builds prompts that
    /// fill a context with filler, the key at several depths, and counts the prompts whose key the
    /// model's greedy predictions spell.
    #[command(subcommand)]
    Passkey(PasskeyCommand),
    /// Run a role of an Apache DataFusion Ballista cluster: the scheduler, or an executor.
    ///
    /// The same binary serves as client, scheduler and executor, so their versions cannot drift.
    /// Ballista's endpoints have no authentication: both roles listen on 127.0.0.1 unless --bind
    /// names another address. A role runs until SIGINT or SIGTERM.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Fit loss = f(mixture) on a table of runs; print cross-validated Spearman ρ, Pearson r, MSE.
    Regress(RegressArgs),
    /// Write a mixture.toml: RegMix search over a fitted regression model, or a baseline.
    Mix(MixArgs),
    /// Train many small proxy runs on sampled mixtures and write the run table regress/mix read.
    Sweep(SweepArgs),
    /// The Scalable Data Mixer's simulation: one proxy run, then each domain's utility per target.
    ///
    /// Trains the [simulate] proxy on a uniform mixture in <out>/simulate/proxy/<hash> (one per
    /// configuration) with K evenly spaced checkpoints; at each, scores training documents by their
    /// influence on each target's loss (DataInf on projected output-layer gradients): by default
    /// the documents of the proxy's own batches in the capture_steps steps before the checkpoint,
    /// their gradients taken from its forward passes as it trains (gradients = "training"), or
    /// docs_per_domain sampled documents re-scored at every checkpoint (gradients = "sample").
    /// Writes <out>/simulate/utilities.parquet (per domain and target, with bootstrap errors) and
    /// document_utilities.parquet, and prints domain × target utilities (positive: helps). A killed
    /// run resumes: the proxy from its last checkpoint, with the scores of every checkpoint
    /// written before it.
    /// --method loo trains the proxy once more without each domain instead (the ground truth);
    /// --method doremi trains a DoReMi proxy against the uniform one (the baseline's weights).
    Simulate(SimulateArgs),
}

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline configuration.
    #[arg(long, short, default_value = "datasets.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Rerun this stage and every stage after it, even when up to date.
    #[arg(long, value_enum, value_name = "STAGE")]
    pub from: Option<StageKind>,
    /// Rerun every stage from scratch (its runs are removed first).
    #[arg(long, conflicts_with = "from")]
    pub force: bool,
}

/// `report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories to compare, relative to --out (each one arm of one seed).
    #[arg(value_name = "RUN", conflicts_with = "plan")]
    pub runs: Vec<PathBuf>,
    /// The plan of a `mixlab run` (<out>/pipeline/plan.json): its arms, seeds and stages. Repeat it
    /// to pool jobs that ran the same arms at other seeds (e.g. one job per seed, each with its own
    /// proxy seed): arms of the same name are merged, and paired by seed.
    #[arg(long, value_name = "FILE")]
    pub plan: Vec<PathBuf>,
    /// The report's name: it is written to <out>/reports/<NAME>.
    #[arg(long, default_value = "report")]
    pub name: String,
    /// `files`: write report.md, report.html and the figures; `json`: print the tables.
    #[arg(long, value_enum, default_value_t = ReportFormat::Files)]
    pub format: ReportFormat,
}

/// What `report` produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// report.md, report.html and SVG figures under <out>/reports/<NAME>.
    Files,
    /// The tables and verdicts as JSON on stdout.
    Json,
}

/// `train` arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The pipeline configuration ([model] and [train] sections).
    #[arg(long, short, default_value = "datasets.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// A mixture schedule (mixture.toml); default: uniform over the shards' domains.
    #[arg(long, value_name = "FILE")]
    pub mixture: Option<PathBuf>,
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// Model preset, overriding [model].preset.
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Optimizer steps, overriding [train].steps; 0 saves the initialised model.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of initialisation and data order, overriding [train].seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start from the newest checkpoint of this finished run (relative to --out) instead of a
    /// random initialisation: continued training, e.g. a context extension at a longer
    /// [train].seq_len with a larger [model].rope_theta. The parameter shapes of [model] must be
    /// the run's; the attention pattern and RoPE base may change.
    #[arg(long, value_name = "DIR")]
    pub init_from: Option<PathBuf>,
}

impl TrainArgs {
    /// The training run these arguments describe.
    pub fn spec(&self) -> TrainSpec {
        TrainSpec {
            config: self.config.clone(),
            mixture: self.mixture.clone(),
            run: self.run.clone(),
            preset: self.preset.map(|p| p.preset()),
            steps: self.steps,
            seed: self.seed,
            init_from: self.init_from.clone(),
        }
    }
}

/// `distill` arguments: those of `train`, plus the teacher and the loss's settings.
#[derive(Debug, Args)]
pub struct DistillArgs {
    /// The teacher: a finished run directory, relative to --out.
    #[arg(long, value_name = "DIR")]
    pub teacher: PathBuf,
    /// Weight of the KL term (1: teacher only; 0: plain cross-entropy).
    #[arg(long, default_value_t = DistillSettings::default().alpha)]
    pub alpha: f64,
    /// Softmax temperature of teacher and student in the KL term.
    #[arg(long, default_value_t = DistillSettings::default().temperature)]
    pub temperature: f64,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// `quantize` arguments.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The run to quantize: a finished run directory, relative to --out.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The quantized run's directory, relative to --out [default: <RUN>-int4].
    #[arg(long, value_name = "DIR")]
    pub out_run: Option<PathBuf>,
    /// Weights per f16 scale, along each output's input features (32: GGUF's Q4_0 block).
    #[arg(long, default_value_t = 32)]
    pub group_size: usize,
    /// Quantization-aware training steps before rounding (0: post-training rounding only). The
    /// full-precision weights train on the rounded model's loss (straight-through gradients),
    /// distilled from the source run itself, in <RUN>-qat; the result is rounded into
    /// <RUN>-qat-int4 (or --out-run).
    #[arg(long, default_value_t = 0)]
    pub qat_steps: u64,
    /// Learning rate of quantization-aware training [default: a tenth of the run's [train].lr].
    #[arg(long)]
    pub qat_lr: Option<f64>,
    /// Weight of the KL to the full-precision model in quantization-aware training (the rest:
    /// cross-entropy on the data).
    #[arg(long, default_value_t = QAT_DISTILLATION.alpha)]
    pub alpha: f64,
    /// Softmax temperature of that KL.
    #[arg(long, default_value_t = QAT_DISTILLATION.temperature)]
    pub temperature: f64,
    /// Also round every projection's input to int8, one scale per token (dynamic activation
    /// quantization: W4A8), in quantization-aware training and in the quantized run, whose model
    /// keeps doing so in eval and generate. Default run names then end in -w4a8 (and -qat-a8).
    #[arg(long)]
    pub int8_activations: bool,
}

/// `merge` arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The run the specialists start from: a finished run directory, relative to --out.
    #[arg(long, value_name = "DIR")]
    pub base: PathBuf,
    /// The specialists: a TOML file with `steps`, optional `lr` and [[specialist]] tables, each
    /// with a `name` and either `weights = { domain = w, ... }` (unlisted domains get none) or
    /// `mixture = "file.toml"` (a mixture file of one stage), relative to the file.
    #[arg(long, value_name = "FILE")]
    pub specialists: PathBuf,
    /// How the specialists are weighted: `uniform`, `search`, or one weight per specialist in
    /// file order (`0.5,0.3,0.2`; scaled to sum to 1).
    #[arg(long, default_value = "uniform")]
    pub weights: MergeWeights,
    /// Nelder-Mead iterations of --weights search (each one or two evaluations of a merged model).
    #[arg(long, default_value_t = DEFAULT_SEARCH_ITERS)]
    pub search_iters: u64,
    /// The merged run's directory, relative to --out [default: <BASE>-merged].
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
}

/// Model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// About 1M parameters: tests and proxy runs.
    Tiny,
    /// About 10M parameters.
    Small,
    /// About 40M parameters.
    Base,
    /// The 1.08B MobileLLM-Pro shape (not meant to train on a CPU).
    MobilellmPro,
}

impl PresetArg {
    /// The trainer's preset.
    pub fn preset(self) -> mixlab_trainer::config::Preset {
        use mixlab_trainer::config::Preset;
        match self {
            PresetArg::Tiny => Preset::Tiny,
            PresetArg::Small => Preset::Small,
            PresetArg::Base => Preset::Base,
            PresetArg::MobilellmPro => Preset::MobilellmPro,
        }
    }
}

/// `eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// Print `{"domains": {name: {"loss": x, "ppl": y}}, "mean_loss": z, "probe": {...},
    /// "texts": {...}}` instead of a table (`mean_loss` over the validation splits).
    #[arg(long)]
    pub json: bool,
    /// Also evaluate a JSONL file (optionally .gz) of `text` fields, tokenized with the shards'
    /// tokenizer, e.g. humaneval=../shared/corpora/probes/humaneval.jsonl.gz (repeatable).
    #[arg(long, value_name = "NAME=FILE", value_parser = named_path)]
    pub texts: Vec<(String, PathBuf)>,
    /// Evaluate the run's packed int4 file (model-q4_0.gguf, written by `quantize`) instead of
    /// its newest checkpoint.
    #[arg(long)]
    pub gguf: bool,
    /// Tokens per evaluation sequence [default: the run's [train].seq_len]; e.g. a
    /// context-extended model at its original context.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(2..))]
    pub seq_len: Option<u32>,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// The runtime to export for.
    #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
    pub format: ExportFormat,
    /// GGUF's weight precision (norms stay f32); q4_0 rounds to int4 without quantization-aware
    /// training (`mixlab quantize` writes model-q4_0.gguf after it).
    #[arg(long, value_enum, default_value_t = GgufPrecision::F16)]
    pub precision: GgufPrecision,
    /// Output directory [default: <RUN>/hf or <RUN>/gguf].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Hugging Face transformers: safetensors, config.json, tokenizer.json.
    Hf,
    /// llama.cpp: one GGUF file with the tokenizer.
    Gguf,
}

/// `export --precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GgufPrecision {
    /// 32-bit floats.
    F32,
    /// Half floats.
    F16,
    /// int4 blocks of 32 with an f16 scale.
    #[value(name = "q4_0")]
    Q4_0,
}

/// `score` arguments.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// JSONL file (optionally .gz) of `text` fields, tokenized with the shards' tokenizer.
    #[arg(long, value_name = "FILE")]
    pub texts: PathBuf,
    /// Tokens scored per text, from its start, at most the model's context (`max_seq_len`)
    /// [default: the model's attention window, where every runtime attends alike].
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u32).range(2..))]
    pub max_tokens: Option<u32>,
    /// Score a GGUF file's weights instead of the newest checkpoint: the run's model-q4_0.gguf,
    /// or the FILE given.
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub gguf: Option<Option<PathBuf>>,
}

/// `NAME=FILE` with a non-empty name.
fn named_path(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=FILE, got {arg:?}")),
    }
}

/// `generate` arguments.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// Text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus (top-p) mass when sampling.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Ballista's scheduler: plans jobs and hands their tasks to executors (gRPC, /healthz and
    /// /readyz on one port).
    Scheduler(SchedulerArgs),
    /// A Ballista executor: runs the tasks its scheduler hands it.
    Executor(ExecutorArgs),
}

/// `cluster scheduler` arguments.
#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "ADDR")]
    pub bind: std::net::SocketAddr,
    /// Seconds without a heartbeat after which an executor counts as lost (its tasks run again).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub executor_timeout: u64,
    /// Executors that must be registered before /readyz answers 200.
    #[arg(long, default_value_t = 1)]
    pub min_executors: usize,
}

/// `cluster executor` arguments.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler's HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler: String,
    /// Address of this executor's Arrow Flight endpoint (task results and shuffle data).
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub bind: std::net::SocketAddr,
    /// Port of this executor's gRPC endpoint (the scheduler pushes tasks there), on --bind's host.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Directory for shuffle files.
    #[arg(long, default_value = "ballista-work", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    pub vcores: usize,
    /// Seconds between heartbeats to the scheduler (keep well under its --executor-timeout).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat: u64,
    /// A directory this executor may read sources from and write to (repeatable): a plan naming
    /// a source, tokenizer or output outside every --allow-dir is refused [default: the current
    /// directory].
    #[arg(long = "allow-dir", value_name = "DIR")]
    pub allow_dirs: Vec<PathBuf>,
    /// Seconds to keep trying to reach the scheduler at start.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout: u16,
}

/// `passkey` subcommands.
#[derive(Debug, Subcommand)]
pub enum PasskeyCommand {
    /// Write passkey tasks, answer included, as JSON lines of `{"text": ...}` (gzip for .gz).
    Make(PasskeyMakeArgs),
    /// Retrieval accuracy and the answer's loss of a run's newest checkpoint, per depth of the key.
    Eval(PasskeyEvalArgs),
}

/// `passkey make` arguments.
#[derive(Debug, Args)]
pub struct PasskeyMakeArgs {
    /// The file to write (JSONL; gzip-compressed when it ends in .gz).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Tasks to write.
    #[arg(long, default_value_t = 1000)]
    pub docs: usize,
    /// Fewest filler sentences per task (about 6 tokens each).
    #[arg(long, default_value_t = 2)]
    pub min_filler: usize,
    /// Most filler sentences per task.
    #[arg(long, default_value_t = 8)]
    pub max_filler: usize,
    /// Seed of keys, filler and depths.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `passkey eval` arguments.
#[derive(Debug, Args)]
pub struct PasskeyEvalArgs {
    /// Run directory, relative to --out.
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    pub run: PathBuf,
    /// Tokens per prompt, filled with filler [default: the run's [train].seq_len].
    #[arg(long, value_name = "TOKENS")]
    pub context: Option<usize>,
    /// Depths of the key: 0 right after the instruction, 1 right before the question.
    #[arg(long, value_delimiter = ',', default_value = "0,0.25,0.5,0.75,1")]
    pub depths: Vec<f64>,
    /// Prompts per depth.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Seed of the prompts (the same seed gives every run the same prompts).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print `{"context": n, "accuracy": x, "depths": [{"depth", "trials", "retrieved"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// The run table: mixtures and losses joined on an index column.
#[derive(Debug, Args)]
pub struct RunTableArgs {
    /// Mixture weights per run (CSV or Parquet): an index column plus one column per domain.
    #[arg(long, value_name = "FILE")]
    pub runs: PathBuf,
    /// Losses per run (CSV or Parquet), with the same index column.
    #[arg(long, value_name = "FILE")]
    pub losses: PathBuf,
    /// The loss column to model, e.g. metric/the_pile_pile_cc_val_loss.
    #[arg(long)]
    pub target: String,
    /// Name of the index column joining the two tables.
    #[arg(long, default_value = "index")]
    pub index: String,
    /// Rescale rows summing to 1 ± 0.01 to sum to exactly 1 (for rounded tables such as RegMix's
    /// published runs); without it a row must sum to 1 ± 0.001.
    #[arg(long)]
    pub normalize: bool,
}

impl RunTableArgs {
    /// The files and columns of a run table (these arguments' index, target and normalization; the
    /// paths may be the test tables).
    pub fn files<'a>(
        &'a self,
        runs: &'a std::path::Path,
        losses: &'a std::path::Path,
    ) -> mixlab_artefacts::run_table::RunTableFiles<'a> {
        mixlab_artefacts::run_table::RunTableFiles {
            runs,
            losses,
            index: &self.index,
            target: &self.target,
            normalize: self.normalize,
        }
    }
}

/// Regression model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// Least squares on the weights.
    Linear,
    /// Least squares on log loss (loss = k·exp(t·r)).
    Loglinear,
    /// Data Mixing Law loss = c + k·exp(t·r), L-BFGS on a Huber loss.
    MixingLaw,
    /// Gradient-boosted trees with RegMix's LightGBM settings.
    Gbm,
    /// Gradient-boosted trees started from a linear fit.
    GbmLinear,
}

impl ModelArg {
    /// The mixer's model kind.
    pub fn kind(self) -> mixlab_mixer::regress::ModelKind {
        use mixlab_mixer::regress::ModelKind;
        match self {
            ModelArg::Linear => ModelKind::Linear,
            ModelArg::Loglinear => ModelKind::Loglinear,
            ModelArg::MixingLaw => ModelKind::MixingLaw,
            ModelArg::Gbm => ModelKind::Gbm,
            ModelArg::GbmLinear => ModelKind::GbmLinear,
        }
    }
}

/// `regress` arguments.
#[derive(Debug, Args)]
pub struct RegressArgs {
    #[command(flatten)]
    pub table: RunTableArgs,
    /// Models to fit (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "gbm")]
    pub model: Vec<ModelArg>,
    /// Held-out mixtures to report test metrics on.
    #[arg(long, value_name = "FILE", requires = "test_losses")]
    pub test_runs: Option<PathBuf>,
    /// Losses of the held-out mixtures.
    #[arg(long, value_name = "FILE", requires = "test_runs")]
    pub test_losses: Option<PathBuf>,
    /// Seed of the cross-validation split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Mixing methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MixMethod {
    /// Fit a regression model on a run table, search the simplex, average the top-k (RegMix).
    Regmix,
    /// Equal weights over the shards' domains.
    Uniform,
    /// Weights proportional to the shards' training tokens.
    Natural,
    /// UniMax: the [train] token budget spread evenly, no domain repeated more than [mix].max_epochs
    /// times (needs --config).
    Unimax,
    /// The Scalable Data Mixer: the joint utilities of `mixlab simulate` through --objective.
    Sdm,
    /// DoReMi's averaged domain weights from `mixlab simulate --method doremi` (--doremi).
    Doremi,
    /// The own-domain control: utility 1 for each [[simulate.target]]'s own domain (its `domain`,
    /// else its `probe`), times the target's weight, 0 elsewhere, through --objective (needs
    /// --config).
    Own,
}

/// `simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The pipeline configuration ([simulate], [model], [train]).
    #[arg(long, short, default_value = "datasets.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// How utilities are estimated.
    #[arg(long, value_enum, default_value_t = SimulateMethod::Influence)]
    pub method: SimulateMethod,
}

/// Centres of the RegMix search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriorArg {
    /// The mean mixture of the run table.
    Runs,
    /// The shards' training-token shares (needs shards under --out).
    Tokens,
    /// Equal weights.
    Uniform,
}

/// `mix` arguments.
#[derive(Debug, Args)]
pub struct MixArgs {
    /// The method.
    #[arg(long, value_enum, default_value_t = MixMethod::Regmix)]
    pub method: MixMethod,
    /// Mixture weights per run (CSV or Parquet), for --method regmix.
    #[arg(long, value_name = "FILE", requires_all = ["losses", "target"])]
    pub runs: Option<PathBuf>,
    /// Losses per run (CSV or Parquet), with the same index column.
    #[arg(long, value_name = "FILE", requires = "runs")]
    pub losses: Option<PathBuf>,
    /// The loss column to model, e.g. metric/the_pile_pile_cc_val_loss.
    #[arg(long, requires = "runs")]
    pub target: Option<String>,
    /// Name of the index column joining the two tables.
    #[arg(long, default_value = "index")]
    pub index: String,
    /// Rescale rows summing to 1 ± 0.01 to sum to exactly 1 (rounded tables); without it a row must
    /// sum to 1 ± 0.001.
    #[arg(long)]
    pub normalize: bool,
    /// Regression model for --method regmix.
    #[arg(long, value_enum, default_value_t = ModelArg::Gbm)]
    pub model: ModelArg,
    /// Centre of the Dirichlet samples.
    #[arg(long, value_enum, default_value_t = PriorArg::Runs, conflicts_with = "prior_file")]
    pub prior: PriorArg,
    /// Centre of the Dirichlet samples from a CSV file with columns domain,weight (instead of
    /// --prior).
    #[arg(long, value_name = "FILE")]
    pub prior_file: Option<PathBuf>,
    /// Samples searched [default: [mix].samples or 1,000,000].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Best samples averaged [default: [mix].top_k or 128].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the search [default: [mix].seed or 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Configuration whose [mix] bounds and epoch caps apply (the caps need the shards under --out
    /// and the [train] token budget).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Utilities for --method sdm [default: <out>/simulate/utilities.parquet].
    #[arg(long, value_name = "FILE")]
    pub utilities: Option<PathBuf>,
    /// DoReMi's weights for --method doremi [default: <out>/simulate/doremi.toml].
    #[arg(long, value_name = "FILE")]
    pub doremi: Option<PathBuf>,
    /// How --method sdm turns utilities into weights.
    #[arg(long, value_enum, default_value_t = SdmObjective::Utilimax)]
    pub objective: SdmObjective,
    /// Entropy weight of --objective utilimax (utilities are scaled to a largest magnitude of 1;
    /// near 0 puts all weight on the best domains, large values tend to uniform).
    #[arg(long, default_value_t = SdmSettings::DEFAULT_TEMPERATURE)]
    pub temperature: f64,
    /// Share every domain keeps under --objective proportional.
    #[arg(long, default_value_t = SdmSettings::DEFAULT_FLOOR)]
    pub floor: f64,
    /// Output file [default: <out>/mixture.toml].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `sweep` arguments.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Number of proxy runs.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// The pipeline configuration.
    #[arg(long, short, default_value = "datasets.toml", value_name = "FILE")]
    pub config: PathBuf,
    /// Model preset of the proxy runs.
    #[arg(long, value_enum, default_value_t = PresetArg::Tiny)]
    pub preset: PresetArg,
    /// Steps per proxy run [default: [train].steps].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Seed of the sampled mixtures.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `--config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The pipeline configuration.
    #[arg(long, short, default_value = "datasets.toml", value_name = "FILE")]
    pub config: PathBuf,
}

/// `ingest` arguments.
#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where the per-record work runs [default: [ingest] engine, else local].
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
    /// The Ballista scheduler's HOST:PORT [default: [ingest] scheduler, else 127.0.0.1:50050].
    #[arg(long, value_name = "HOST:PORT")]
    pub scheduler: Option<String>,
    /// Ballista jobs running at once (stage and write jobs, one per source file each), and the dedup queries' partitions [default: [ingest] cluster_jobs, else 8].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
}

/// `--engine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// In this process, on every core.
    Local,
    /// On the Ballista cluster at --scheduler.
    Ballista,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A shard directory (the one holding manifest.json) [default: <out>/shards].
    pub shards: Option<PathBuf>,
    /// Print the manifest as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Build the token cache again from the shards (after it was reported damaged).
    #[arg(long)]
    pub rebuild_cache: bool,
}

/// `demo-data` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the generator; the same seed gives the same bytes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
