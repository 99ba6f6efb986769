//! Sprayer's own processes for a benchmark: the API, dispatchers and feeder in one process and
//! one deliverer node in another (so that its memory is measured alone), from the release build,
//! in a fresh namespace (queue prefix, database, app) on the local stack.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// RabbitMQ of the local stack.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Redis of the local stack.
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// MongoDB of the local stack.
pub const MONGODB_URL: &str = "mongodb://127.0.0.1:27017";

/// The running platform.
pub struct Platform {
    /// `http://127.0.0.1:port` of the API.
    pub api: String,
    /// `ws://127.0.0.1:port` of the deliverer.
    pub ws: String,
    /// The app key.
    pub key: String,
    /// A client with a large pool.
    pub http: reqwest::Client,
    /// The namespace: queue prefix (with a dot after it) and database suffix.
    pub namespace: String,
    processes: Vec<Child>,
    api_pid: u32,
    deliverer_pid: u32,
    app: String,
    /// `http://127.0.0.1:port` of the admin API.
    admin_api: String,
    /// The admin token.
    admin: String,
    /// The namespace's database.
    pub database: String,
}

/// `POST {url}` of `body` (JSON text) as the app with `key`: resolves to whether it was
/// accepted (202).
pub fn accepted(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
) -> impl Future<Output = bool> + Send + use<> {
    let request = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned());
    async move { matches!(request.send().await, Ok(response) if response.status().as_u16() == 202) }
}

/// The release binary next to this one.
pub fn binary(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("binary folder")?.join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: run `make bench`",
        path.display()
    );
    Ok(path)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// The number a line of `/proc/<pid>/status` starting with `field` begins with (0 when the
/// process is gone).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|number| number.parse().ok())
        })
        .unwrap_or(0)
}

/// The thread ids of the process's AMQP connections (the client runs one `lapin-io-loop`
/// thread per connection): a changed id is a connection opened again.
pub fn amqp_io_threads(pid: u32) -> Vec<u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim() == "lapin-io-loop")
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Starts `command` and returns it with the rest of the first stdout line that starts with
/// each of `prefixes`, once every one was printed.
pub async fn start_until(
    mut command: Command,
    prefixes: &[&str],
) -> anyhow::Result<(Child, Vec<String>)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting a process")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            for (prefix, slot) in prefixes.iter().zip(found.iter_mut()) {
                if let Some(rest) = line.strip_prefix(prefix) {
                    slot.get_or_insert_with(|| rest.to_owned());
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
    })
    .await;
    let found = found
        .into_iter()
        .zip(prefixes)
        .map(|(rest, prefix)| rest.with_context(|| format!("the process never printed {prefix:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The process's logs (warnings and up, or what RUST_LOG asks for) go to stderr.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    Ok((child, found))
}

fn sprayer(roles: &str, namespace: &str, admin: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(binary("sprayer")?);
    command
        .args(["run", "--only", roles])
        .env_remove("SPRAYER_CONFIG")
        .env("SPRAYER_AMQP_PREFIX", format!("{namespace}."))
        .env("SPRAYER_AMQP_QUEUE_EXPIRES", "10m")
        .env("SPRAYER_MONGODB_DATABASE", format!("sprayer_{namespace}"))
        .env("SPRAYER_ACCEPTER_CHANNELS", r#"["http","ws"]"#)
        .env("SPRAYER_ACCEPTER_LISTEN", "127.0.0.1:0")
        .env("SPRAYER_DELIVERER_LISTEN", "127.0.0.1:0")
        .env(
            "SPRAYER_DELIVERER_TOKEN_SECRET",
            format!("{namespace}-token-secret-0123456789abcdef"),
        )
        .env("SPRAYER_DELIVERER_TOKEN_TTL", "1h")
        .env("SPRAYER_ADMIN_TOKEN", admin)
        .env("SPRAYER_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SPRAYER_ACCEPTER_RATE_PER_SECOND", "0")
        // The benchmark's webhook sink runs on loopback, which webhooks may reach only when
        // allowed.
        .env("SPRAYER_WEBHOOK_ALLOW_NETWORKS", r#"["127.0.0.0/8"]"#)
        .env("SPRAYER_TELEMETRY_FILTER", "warn");
    Ok(command)
}

impl Platform {
    /// Starts the processes and creates an app.
    pub async fn start() -> anyhow::Result<Platform> {
        Self::start_with(&[]).await
    }

    /// Starts the processes with `settings` (`SPRAYER_*` variables) beside the benchmarks'
    /// own, and creates an app.
    pub async fn start_with(settings: &[(&str, &str)]) -> anyhow::Result<Platform> {
        let roles = std::env::var("BENCH_API_ROLES")
            .unwrap_or_else(|_| "accepter,dispatchers,feeder".into());
        Self::start_roles(&roles, settings).await
    }

    /// Starts the API process with `roles` (the accepter among them) and a deliverer, with
    /// `settings` beside the benchmarks' own, and creates an app.
    pub async fn start_roles(roles: &str, settings: &[(&str, &str)]) -> anyhow::Result<Platform> {
        let namespace = format!("bench{:08x}", rand::random::<u32>());
        let admin = format!("{namespace}-admin");
        let mut api = sprayer(roles, &namespace, &admin)?;
        let mut deliverer = sprayer("deliverer", &namespace, &admin)?;
        for (name, value) in settings {
            api.env(name, value);
            deliverer.env(name, value);
        }
        let (api_process, printed) =
            start_until(api, &["Sprayer API on ", "Admin API on "]).await?;
        let api = printed[0]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let admin_api = printed[1].trim().to_owned();
        let (deliverer, printed) = start_until(deliverer, &["WebSocket deliverer on "]).await?;
        let ws = printed[0]
            .split("/v1/ws")
            .next()
            .unwrap_or_default()
            .to_owned();
        let deliverer_pid = deliverer.id().context("deliverer pid")?;
        let api_pid = api_process.id().context("API pid")?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let created: serde_json::Value = http
            .post(format!("{admin_api}/admin/v1/apps"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": "bench"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = created["key"].as_str().context("app key")?.to_owned();
        let app = created["id"].as_str().context("app id")?.to_owned();
        Ok(Platform {
            api,
            ws,
            key,
            http,
            processes: vec![api_process, deliverer],
            api_pid,
            deliverer_pid,
            namespace: namespace.clone(),
            app,
            admin_api,
            admin,
            database: format!("sprayer_{namespace}"),
        })
    }

    /// Sets the app's provider settings of `channel` (`PUT /admin/v1/apps/{app}/providers/..`).
    pub async fn set_provider(
        &self,
        channel: &str,
        settings: &serde_json::Value,
    ) -> anyhow::Result<()> {
        self.http
            .put(format!(
                "{}/admin/v1/apps/{}/providers/{channel}",
                self.admin_api, self.app
            ))
            .bearer_auth(&self.admin)
            .json(settings)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("setting the {channel} provider"))?;
        Ok(())
    }

    /// The sum of a metric's series on the deliverer's `/metrics`.
    pub async fn deliverer_metric(&self, name: &str) -> f64 {
        let url = format!("{}/metrics", self.ws.replacen("ws://", "http://", 1));
        self.metric_at(&url, name).await
    }

    /// The sum of a metric's series on the API process's `/metrics` (the API, dispatchers and
    /// feeder).
    pub async fn api_metric(&self, name: &str) -> f64 {
        self.metric_at(&format!("{}/metrics", self.api), name).await
    }

    /// The sum of a metric's series in both processes.
    pub async fn metric(&self, name: &str) -> f64 {
        self.api_metric(name).await + self.deliverer_metric(name).await
    }

    async fn metric_at(&self, url: &str, name: &str) -> f64 {
        let Ok(response) = self.http.get(url).send().await else {
            return 0.0;
        };
        response
            .text()
            .await
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The app's id.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The deliverer's process id.
    pub fn deliverer_pid(&self) -> u32 {
        self.deliverer_pid
    }

    /// The process id of the API, dispatchers and feeder.
    pub fn api_pid(&self) -> u32 {
        self.api_pid
    }

    /// Puts `users` in `group`, 1,000 a request, four requests at a time.
    pub async fn add_members(&self, group: &str, users: &[String]) -> anyhow::Result<()> {
        self.post_in_batches(&format!("/v1/groups/{group}/members"), "users", users)
            .await
    }

    /// Registers `endpoints` (each `{"user", "channel", "device", "address"}`) with
    /// `POST /v1/endpoints`, 1,000 a request, four requests at a time.
    pub async fn register_endpoints(&self, endpoints: &[serde_json::Value]) -> anyhow::Result<()> {
        self.post_in_batches("/v1/endpoints", "endpoints", endpoints)
            .await
    }

    /// POSTs `items` to `path` as `{field: [..1,000]}`, four requests at a time.
    async fn post_in_batches<T: serde::Serialize + Sync>(
        &self,
        path: &str,
        field: &str,
        items: &[T],
    ) -> anyhow::Result<()> {
        futures::stream::iter(items.chunks(1000))
            .map(|batch| async move {
                self.http
                    .post(format!("{}{path}", self.api))
                    .bearer_auth(&self.key)
                    .json(&serde_json::json!({ field: batch }))
                    .send()
                    .await?
                    .error_for_status()?;
                anyhow::Ok(())
            })
            .buffer_unordered(4)
            .try_collect::<()>()
            .await
    }

    /// Puts users `u0..` in `group`, then mints a token for each (opening their inboxes);
    /// returns the tokens.
    pub async fn ws_users(&self, users: usize, group: &str) -> anyhow::Result<Vec<String>> {
        let names: Vec<String> = (0..users).map(|n| format!("u{n}")).collect();
        self.add_members(group, &names).await?;
        let results = futures::stream::iter(&names)
            .map(|user| self.ws_token(user))
            .buffered(64)
            .collect::<Vec<_>>()
            .await;
        results.into_iter().collect()
    }

    /// A WebSocket token for `user` (which opens the user's inbox).
    pub async fn ws_token(&self, user: &str) -> anyhow::Result<String> {
        let token: serde_json::Value = self
            .http
            .post(format!("{}/v1/users/{user}/ws-token", self.api))
            .bearer_auth(&self.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(token["token"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the feeder has written at least `events` delivery events more than
    /// `before` (its `sprayer_feeder_events_total`) and then nothing more for a second, at most
    /// `longest`; returns whether it did.
    pub async fn feedback_settled(&self, before: f64, events: u64, longest: Duration) -> bool {
        let started = std::time::Instant::now();
        let mut last = (before, std::time::Instant::now());
        while started.elapsed() < longest {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.api_metric("sprayer_feeder_events_total").await;
            if now != last.0 {
                last = (now, std::time::Instant::now());
            } else if now >= before + events as f64 && last.1.elapsed() >= Duration::from_secs(1) {
                return true;
            }
        }
        false
    }

    /// Sends `body` as the app; returns the message id.
    pub async fn send(&self, body: &serde_json::Value) -> anyhow::Result<String> {
        let answer: serde_json::Value = self
            .http
            .post(format!("{}/v1/messages", self.api))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Stops every process and removes what the run left in Redis and MongoDB, so that runs
    /// do not slow each other down (queues expire on their own).
    pub async fn stop(mut self) {
        for process in &mut self.processes {
            let _ = process.start_kill();
            let _ = process.wait().await;
        }
        if let Err(error) = self.clean().await {
            eprintln!("cleaning up after the run: {error}");
        }
    }

    /// Bytes Redis spends on `keys` (`MEMORY USAGE`, 0 for a key that does not exist).
    pub async fn redis_bytes(&self, keys: &[String]) -> anyhow::Result<u64> {
        let client = redis::Client::open(REDIS_URL)?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let mut total = 0;
        for key in keys {
            let used: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut redis)
                .await?;
            total += used.unwrap_or(0);
        }
        Ok(total)
    }

    async fn clean(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(REDIS_URL)?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        for pattern in [
            format!("*{{{}:*", self.app),
            format!("*:{}:*", self.app),
            format!("{}.*", self.namespace),
        ] {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(5_000)
                    .query_async(&mut redis)
                    .await?;
                if !keys.is_empty() {
                    redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<()>(&mut redis)
                        .await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        let mongo = mongodb::Client::with_uri_str(MONGODB_URL).await?;
        mongo.database(&self.database).drop().await?;
        Ok(())
    }
}
