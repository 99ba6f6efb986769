//! `sprayer-accepter`: the REST API alone.

use anyhow::Context;
use clap::Parser;
use sprayer_accepter::Accepter;
use sprayer_shared::Settings;

/// mimalloc: the hot paths allocate per request and per delivery, and it spends less CPU on
/// that than the system allocator (see bench/results/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sprayer's REST API.
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
    sprayer_shared::telemetry::init("accepter", &settings.telemetry);
    let shutdown = sprayer_shared::shutdown::on_signal();
    let accepter = Accepter::build(settings)
        .await
        .context("starting the accepter")?;
    accepter
        .run_until_stopped(shutdown)
        .await
        .context("serving the API")
}
