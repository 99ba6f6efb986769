//! `sprayer-events`: keeps each app's event feed and pushes it to the app's event endpoints.

use anyhow::Context;
use clap::Parser;
use sprayer_events::Events;
use sprayer_shared::Settings;

/// mimalloc: the hot paths allocate per event, and it spends less CPU on that than the system
/// allocator (see bench/results/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps each app's event feed and pushes it to the app's event endpoints.
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
    sprayer_shared::telemetry::init("events", &settings.telemetry);
    let shutdown = sprayer_shared::shutdown::on_signal();
    let events = Events::build(settings)
        .await
        .context("starting the events service")?;
    events
        .run_until_stopped(shutdown)
        .await
        .context("running the events service")
}
