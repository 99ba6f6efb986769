//! `sprayer run --only <roles>` processes with a test's settings, whose output the test reads
//! and which it can kill.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use sprayer_shared::Settings;
use sprayer_shared::config::QueueType;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::local::root;

/// A `sprayer run --only <roles>` process with a test's settings, killed on drop.
pub struct SprayerProcess {
    child: Child,
    /// Everything it printed, stdout and stderr.
    pub output: Arc<Mutex<String>>,
    /// The API's base URL, when it runs the accepter.
    pub api: Option<String>,
    /// The admin API's base URL, when it runs the accepter with an admin token.
    pub admin: Option<String>,
    /// The deliverer's base URL (`ws://127.0.0.1:port`), when it runs the deliverer.
    pub ws: Option<String>,
}

impl SprayerProcess {
    /// Starts the roles and waits until the process has started them; logs at `warn`.
    pub async fn start(settings: &Settings, roles: &str) -> SprayerProcess {
        Self::start_with_logs(settings, roles, "warn").await
    }

    /// Starts the roles with the log filter `filter` and keeps what the process prints.
    pub async fn start_with_logs(settings: &Settings, roles: &str, filter: &str) -> SprayerProcess {
        let binary = root().join("target/debug/sprayer");
        assert!(
            binary.exists(),
            "{} is missing: run `make test` (it builds it first)",
            binary.display()
        );
        let millis = |tiers: &[Duration]| -> Vec<String> {
            tiers
                .iter()
                .map(|tier| format!("{}ms", tier.as_millis()))
                .collect()
        };
        let tiers = millis(&settings.amqp.retry_tiers);
        let networks: Vec<String> = settings
            .webhook
            .allow_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        let channels: Vec<&str> = settings
            .accepter
            .channels
            .iter()
            .map(|channel| channel.as_str())
            .collect();
        let mut command = Command::new(binary);
        command
            .args(["run", "--only", roles])
            .env_remove("SPRAYER_CONFIG")
            .env("SPRAYER_AMQP_URL", &settings.amqp.url)
            .env("SPRAYER_AMQP_PREFIX", &settings.amqp.prefix)
            .env("SPRAYER_AMQP_QUEUE_EXPIRES", "10m")
            .env(
                "SPRAYER_AMQP_QUEUE_TYPE",
                match settings.amqp.queue_type {
                    QueueType::Classic => "classic",
                    QueueType::Quorum => "quorum",
                },
            )
            .env("SPRAYER_AMQP_PREFETCH", settings.amqp.prefetch.to_string())
            .env(
                "SPRAYER_AMQP_RETRY_TIERS",
                serde_json::json!(tiers).to_string(),
            )
            .env("SPRAYER_REDIS_URL", &settings.redis.url)
            .env("SPRAYER_REDIS_CLUSTER", settings.redis.cluster.to_string())
            .env("SPRAYER_MONGODB_URL", &settings.mongodb.url)
            .env("SPRAYER_MONGODB_DATABASE", &settings.mongodb.database)
            .env(
                "SPRAYER_ACCEPTER_CHANNELS",
                serde_json::json!(channels).to_string(),
            )
            .env(
                "SPRAYER_WEBHOOK_ALLOW_NETWORKS",
                serde_json::json!(networks).to_string(),
            )
            .env("SPRAYER_DISPATCHER_OPS_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_FEEDER_OPS_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_EVENTS_OPS_LISTEN", "127.0.0.1:0")
            .env(
                "SPRAYER_EVENTS_RETRY_TIERS",
                serde_json::json!(millis(&settings.events.retry_tiers)).to_string(),
            )
            .env(
                "SPRAYER_DELIVERER_CONN_TTL",
                format!("{}ms", settings.deliverer.conn_ttl.as_millis()),
            )
            .env(
                "SPRAYER_DELIVERER_SWEEP_INTERVAL",
                format!("{}ms", settings.deliverer.sweep_interval.as_millis()),
            )
            .env(
                "SPRAYER_DELIVERER_PRESENCE_DEBOUNCE",
                format!("{}ms", settings.deliverer.presence_debounce.as_millis()),
            )
            .env("SPRAYER_DELIVERER_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_ACCEPTER_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_ACCEPTER_RATE_PER_SECOND", "0")
            .env("SPRAYER_ADMIN_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_TELEMETRY_FILTER", filter)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(secret) = &settings.deliverer.token_secret {
            command.env("SPRAYER_DELIVERER_TOKEN_SECRET", secret.expose_secret());
        }
        if let Some(token) = &settings.admin.token {
            command.env("SPRAYER_ADMIN_TOKEN", token.expose_secret());
        }
        let mut child = command.spawn().expect("the sprayer binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let kept = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut output = kept.lock().expect("lock");
                output.push_str(&line);
                output.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut admin, mut ws) = (None, None, None);
        let started = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                output.lock().expect("lock").push_str(&format!("{line}\n"));
                if let Some(rest) = line.strip_prefix("Sprayer API on ") {
                    api = rest.split_whitespace().next().map(str::to_owned);
                }
                if let Some(rest) = line.strip_prefix("Admin API on ") {
                    admin = Some(rest.trim().to_owned());
                }
                if let Some(rest) = line.strip_prefix("WebSocket deliverer on ") {
                    ws = rest.split("/v1/ws").next().map(str::to_owned);
                }
                if line.starts_with("Sprayer running") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            started.ok(),
            Some(true),
            "sprayer run --only {roles} started"
        );
        // Read stdout to the end so that the process never blocks on it.
        let kept = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        SprayerProcess {
            child,
            output,
            api,
            admin,
            ws,
        }
    }

    /// Kills the process with SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
