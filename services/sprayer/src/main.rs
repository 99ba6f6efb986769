//! `sprayer`: run every service in one process (`sprayer run`), or administer apps
//! (`sprayer admin ...`, straight against MongoDB).

use anyhow::Context;
use clap::{Parser, Subcommand};
use sprayer::Sprayer;
use sprayer_shared::Settings;

/// mimalloc: the hot paths allocate per request and per delivery, and it spends less CPU on
/// that than the system allocator (see bench/results/HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sprayer, the multichannel push platform.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// A TOML settings file (else SPRAYER_CONFIG, else defaults and SPRAYER_* variables).
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the accepter, a dispatcher per served channel, the WebSocket deliverer (when ws is
    /// served), the feeder and the events service in this process.
    Run {
        /// Run only these services (comma-separated), e.g. `--only deliverer` for one more
        /// deliverer node.
        #[arg(long, value_delimiter = ',', value_enum)]
        only: Vec<sprayer::Role>,
    },
    /// Manage apps (tenants) and their keys.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Create an app; prints its id and key (the key is shown only this once).
    CreateApp {
        /// A name for people.
        #[arg(long)]
        name: String,
    },
    /// List apps and their key ids.
    ListApps,
    /// Add a second key to an app, to rotate without downtime.
    AddKey {
        /// The app id.
        #[arg(long)]
        app: String,
    },
    /// Set an app's provider settings for a channel from a JSON file (`-` for standard input).
    SetProvider {
        /// The app id.
        #[arg(long)]
        app: String,
        /// email, apns, fcm or webpush.
        #[arg(long)]
        channel: sprayer_shared::model::Channel,
        /// The JSON settings (see docs/src/channels/overview.md), or `-`.
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Show an app's provider settings, secrets hidden.
    ShowProviders {
        /// The app id.
        #[arg(long)]
        app: String,
    },
    /// Revoke one of an app's keys (not its last).
    RevokeKey {
        /// The app id.
        #[arg(long)]
        app: String,
        /// The key id (the 16 hex digits after `spr_`).
        #[arg(long)]
        key_id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load_or_exit(args.config.as_deref());
    match args.command {
        Command::Run { only } => run(settings, only).await,
        Command::Admin(command) => admin(settings, command).await,
    }
}

async fn run(settings: Settings, only: Vec<sprayer::Role>) -> anyhow::Result<()> {
    sprayer_shared::telemetry::init("sprayer", &settings.telemetry);
    let shutdown = sprayer_shared::shutdown::on_signal();
    let roles = if only.is_empty() {
        sprayer::Role::ALL.to_vec()
    } else {
        only
    };
    let sprayer = Sprayer::build_roles(settings, &roles)
        .await
        .context("starting sprayer")?;
    tracing::info!(?roles, "sprayer running");
    if let Some(url) = sprayer.url() {
        println!("Sprayer API on {url} (OpenAPI at {url}/openapi.json)");
        println!("Create an app: cargo run --release -p sprayer -- admin create-app --name my-app");
    }
    if let Some(url) = sprayer.admin_url() {
        println!("Admin API on {url}");
    }
    if let Some(url) = sprayer.ws_url() {
        let page = url.replacen("ws", "http", 1);
        println!("WebSocket deliverer on {url}/v1/ws (demo page at {page}/demo)");
    }
    println!("Sprayer running: {roles:?}");
    sprayer
        .run_until_stopped(shutdown)
        .await
        .context("sprayer stopped")?;
    Ok(())
}

async fn admin(settings: Settings, command: Admin) -> anyhow::Result<()> {
    let apps = sprayer_accepter::startup::apps(&settings)
        .await
        .context("connecting to MongoDB")?;
    let output = match command {
        Admin::CreateApp { name } => {
            let (app, key) = apps.create(&name).await?;
            serde_json::json!({ "id": app.id, "name": app.name, "key": key })
        }
        Admin::ListApps => {
            let list: Vec<_> = apps
                .list()
                .await?
                .into_iter()
                .map(|app| {
                    let key_ids: Vec<_> = app.keys.into_iter().map(|key| key.id).collect();
                    serde_json::json!({ "id": app.id, "name": app.name, "key_ids": key_ids })
                })
                .collect();
            serde_json::json!(list)
        }
        Admin::AddKey { app } => {
            let key = apps.add_key(&app).await?;
            serde_json::json!({ "app": app, "key_id": key.stored.id, "key": key.key })
        }
        Admin::SetProvider { app, channel, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let raw: serde_json::Value =
                serde_json::from_str(&text).context("the settings are not JSON")?;
            let settings = sprayer_shared::model::Providers::parse(channel, &raw)
                .map_err(|error| anyhow::anyhow!("{channel} settings: {error}"))?;
            apps.set_provider(&app, channel, settings).await?;
            apps.providers(&app).await?
        }
        Admin::ShowProviders { app } => apps.providers(&app).await?,
        Admin::RevokeKey { app, key_id } => {
            apps.revoke_key(&app, &key_id).await?;
            serde_json::json!({ "app": app, "revoked": key_id })
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
