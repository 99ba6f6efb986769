//! `sprayer-dispatcher --channel http`: one channel's dispatcher.

use anyhow::Context;
use clap::Parser;
use sprayer_dispatcher::Dispatcher;
use sprayer_shared::Settings;
use sprayer_shared::model::Channel;

/// mimalloc: the hot paths allocate per request and per delivery, and it spends less CPU on
/// that than the system allocator (see bench/results/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sends one channel's jobs.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The channel to serve.
    #[arg(long)]
    channel: Channel,
    /// A TOML settings file (else SPRAYER_CONFIG, else defaults and SPRAYER_* variables).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load_or_exit(args.config.as_deref());
    sprayer_shared::telemetry::init("dispatcher", &settings.telemetry);
    let shutdown = sprayer_shared::shutdown::on_signal();
    let dispatcher = Dispatcher::build(settings, args.channel)
        .await
        .context("starting the dispatcher")?;
    dispatcher
        .run_until_stopped(shutdown)
        .await
        .context("running the dispatcher")
}
