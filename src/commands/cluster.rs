//! `mixlab cluster scheduler|executor`: Apache DataFusion Ballista's scheduler and executor, run by
//! the mixlab binary so that client, scheduler and executors are always the same version.
//!
//! Both roles use mixlab's codecs ([`mixlab_ingest::cluster::codec`]), so plans with mixlab's line
//! scans and `mixlab_judge` UDF can be planned and run.
//!
//! Ballista's endpoints have no authentication: both roles bind 127.0.0.1 unless an address is
//! given, and say so loudly when it is not a loopback address.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use mixlab_ingest::cluster::allowed::AllowedDirs;
use mixlab_ingest::cluster::client::wait_for_port;
use mixlab_ingest::cluster::codec::{LogicalCodec, PhysicalCodec};
use mixlab_ingest::cluster::guard::CheckedEngine;

use crate::cli::{ClusterCommand, ExecutorArgs, GlobalArgs, SchedulerArgs};

/// Runs one role until it is stopped (SIGINT or SIGTERM).
pub fn run(_global: &GlobalArgs, command: &ClusterCommand) -> anyhow::Result<()> {
    // A client that hangs up on a result stream must not end the executor (or scheduler).
    mixlab_stages::signals::ignore_sigpipe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Ballista's own binaries use deep stacks for deep plans.
        .thread_stack_size(32 * 1024 * 1024)
        .build()
        .context("starting the async runtime")?;
    match command {
        ClusterCommand::Scheduler(args) => runtime.block_on(scheduler(args)),
        ClusterCommand::Executor(args) => runtime.block_on(executor(args)),
    }
}

async fn scheduler(args: &SchedulerArgs) -> anyhow::Result<()> {
    warn_if_exposed(args.bind, "scheduler");
    let config = SchedulerConfig {
        bind_host: args.bind.ip().to_string(),
        bind_port: args.bind.port(),
        external_host: args.bind.ip().to_string(),
        executor_timeout_seconds: args.executor_timeout,
        expire_dead_executor_interval_seconds: (args.executor_timeout / 5).max(1),
        no_executors_grace_period_seconds: args.executor_timeout,
        min_ready_executors: args.min_executors,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("setting up the scheduler's state")?;
    tracing::info!(address = %args.bind, "scheduler listening (readiness: GET /readyz)");
    start_server(cluster, args.bind, Arc::new(config))
        .await
        .with_context(|| format!("scheduler on {}", args.bind))
}

async fn executor(args: &ExecutorArgs) -> anyhow::Result<()> {
    warn_if_exposed(args.bind, "executor");
    let (scheduler_host, scheduler_port) = split_address(&args.scheduler)?;
    // Ballista 55.0.0's own retry loop never times out (it measures `Instant::now().elapsed()`),
    // so the executor waits here and then gives Ballista one attempt.
    let timeout = Duration::from_secs(args.connect_timeout.into());
    wait_for_port(&args.scheduler, timeout)?;
    fs_err::create_dir_all(&args.work_dir)?;
    let allowed = if args.allow_dirs.is_empty() {
        vec![std::env::current_dir().context("the current directory")?]
    } else {
        args.allow_dirs.clone()
    };
    let allowed = AllowedDirs::new(&allowed).context("--allow-dir")?;
    let config = ExecutorProcessConfig {
        bind_host: args.bind.ip().to_string(),
        external_host: Some(args.bind.ip().to_string()),
        port: args.bind.port(),
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 0,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::within(allowed.clone()))),
        // Without Ballista's client pool for shuffle reads (private to its crate): mixlab's jobs
        // read sources, not other executors' shuffle output, in all but whole-source queries.
        override_execution_engine: Some(Arc::new(CheckedEngine::new(allowed))),
        vcores: args.vcores,
        work_dir: Some(args.work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: args.heartbeat,
        ..Default::default()
    };
    tracing::info!(scheduler = %args.scheduler, flight = %args.bind, "executor starting");
    start_executor_process(Arc::new(config))
        .await
        .with_context(|| format!("executor of the scheduler at {}", args.scheduler))
}

/// `HOST:PORT` as its two parts.
fn split_address(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("--scheduler {address:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--scheduler {address:?}: {port:?} is not a port number"))?;
    Ok((host.to_owned(), port))
}

fn warn_if_exposed(bind: SocketAddr, role: &str) {
    if !bind.ip().is_loopback() {
        tracing::warn!(
            "the {role} listens on {bind}: Ballista has no authentication, so anyone who can reach this port can run plans on the cluster"
        );
    }
}
