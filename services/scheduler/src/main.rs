//! `sprayer-scheduler`: runs scheduled sends and escalation steps.

use anyhow::Context;
use clap::Parser;
use sprayer_scheduler::Scheduler;
use sprayer_shared::Settings;

/// mimalloc, as in every other service (see bench/results/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs scheduled sends and escalation steps.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A TOML settings file (else SPRAYER_CONFIG, else defaults and SPRAYER_* variables).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load_or_exit(args.config.as_deref());
    sprayer_shared::telemetry::init("scheduler", &settings.telemetry);
    let shutdown = sprayer_shared::shutdown::on_signal();
    let scheduler = Scheduler::build(settings)
        .await
        .context("starting the scheduler")?;
    scheduler
        .run_until_stopped(shutdown)
        .await
        .context("running the scheduler")
}
