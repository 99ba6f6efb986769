//! Settings for every service: defaults, then an optional TOML file (`SPRAYER_CONFIG` or
//! `--config`), then `SPRAYER_<SECTION>_<KEY>` environment variables
//! (`SPRAYER_MONGODB_URL`, `SPRAYER_AMQP_PREFETCH`, ...). Every problem is reported at once.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

pub use crate::listen::TlsSettings;
use crate::model::Channel;

/// Everything a Sprayer process can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// RabbitMQ.
    pub amqp: AmqpSettings,
    /// Redis.
    pub redis: RedisSettings,
    /// MongoDB.
    pub mongodb: MongoSettings,
    /// The REST API.
    pub accepter: AccepterSettings,
    /// The channel dispatchers.
    pub dispatcher: DispatcherSettings,
    /// The outbound webhook (`http`) channel.
    pub webhook: WebhookSettings,
    /// Push providers (APNs, FCM, web push) reached over HTTP.
    pub push: PushSettings,
    /// SMPP sessions of the `sms` channel.
    pub sms: SmsSettings,
    /// The status feeder.
    pub feeder: FeederSettings,
    /// The WebSocket deliverer and its tokens.
    pub deliverer: DelivererSettings,
    /// The administration API.
    pub admin: AdminSettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
}

/// RabbitMQ connection and topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// The broker URL, or the URLs of a cluster's nodes separated by commas: each connection
    /// goes to the first that answers, and after it is lost to the next one in turn.
    pub url: String,
    /// Put before every exchange and queue name, so that several installations (or tests)
    /// share one broker without sharing queues.
    pub prefix: String,
    /// Unacknowledged jobs a consumer holds at once.
    pub prefetch: u16,
    /// The delay of each retry tier; a delivery is tried at most `retry_tiers.len() + 1` times.
    #[serde(deserialize_with = "duration_list")]
    pub retry_tiers: Vec<Duration>,
    /// `classic` for one broker, `quorum` for a cluster.
    pub queue_type: QueueType,
    /// Queues unused for this long are deleted by the broker (for throw-away installations).
    #[serde(with = "humantime_serde")]
    pub queue_expires: Option<Duration>,
    /// A PEM file of certificate authorities trusted, besides the system's, for `amqps://`
    /// brokers (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate (with its chain) for `amqps://` brokers that ask for one
    /// (mutual TLS, RabbitMQ's `ssl_options.verify = verify_peer`); with `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// The PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<std::path::PathBuf>,
}

/// The kind of queue to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Classic durable queues: one broker.
    Classic,
    /// Quorum queues: replicated over a RabbitMQ cluster.
    Quorum,
}

impl AmqpSettings {
    /// What is wrong with `url`: no broker, or an address that is not an AMQP URL (named by
    /// its place in the list, never shown: it may hold a password).
    fn url_problems(&self) -> Vec<String> {
        let urls = crate::amqp::broker_urls(&self.url);
        if urls.is_empty() {
            return vec!["amqp.url must name at least one amqp:// or amqps:// URL".to_owned()];
        }
        let tls_files = [&self.ca_file, &self.cert_file, &self.key_file];
        if tls_files.iter().any(|file| file.is_some())
            && !urls.iter().any(|url| url.starts_with("amqps://"))
        {
            return vec![
                "amqp.ca_file, amqp.cert_file and amqp.key_file are for amqps:// (TLS) brokers, and amqp.url names none".to_owned(),
            ];
        }
        if let Err(error) = crate::amqp::tls_config(self) {
            return vec![error.to_string()];
        }
        let many = urls.len() > 1;
        urls.iter()
            .enumerate()
            .filter(|(_, url)| url.parse::<lapin::uri::AMQPUri>().is_err())
            .map(|(index, _)| {
                if many {
                    format!(
                        "amqp.url: address {} of {} is not an amqp:// or amqps:// URL",
                        index + 1,
                        urls.len()
                    )
                } else {
                    "amqp.url must be an amqp:// or amqps:// URL".to_owned()
                }
            })
            .collect()
    }
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: String::new(),
            prefetch: 32,
            retry_tiers: [1, 10, 60, 600].map(Duration::from_secs).to_vec(),
            queue_type: QueueType::Classic,
            queue_expires: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Redis connection and key layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// The server URL; with `cluster`, the URLs of some or all of the cluster's nodes (seeds)
    /// separated by commas: the first that answers gives the cluster's layout.
    pub url: String,
    /// `true` for a Redis Cluster: commands go to the node of their hash slot, pipelines are
    /// split by slot, and pub/sub listens on one seed node at a time.
    pub cluster: bool,
    /// Shards per group and channel; must not change while groups exist.
    pub group_shards: u16,
    /// A PEM file of the certificate authorities that signed the servers' certificates, for
    /// `rediss://` URLs: trusted instead of the system's (a private CA, as managed Redis with
    /// in-transit encryption often has). Without it, `rediss://` checks against the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate (with its chain) for `rediss://` servers that ask for one
    /// (mutual TLS, `tls-auth-clients yes`); with `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// The PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            group_shards: 64,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl RedisSettings {
    /// What is wrong with `url`: for one server, a URL that is not Redis's or a list of
    /// several; for a cluster, no seed, or a seed that is not a `redis://` or `rediss://` URL,
    /// names a database other than 0 or other credentials than the first (named by its place
    /// in the list, never shown: it may hold a password).
    fn url_problems(&self) -> Vec<String> {
        let tls_files = [&self.ca_file, &self.cert_file, &self.key_file];
        if tls_files.iter().any(|file| file.is_some())
            && !crate::redis::server_urls(self)
                .iter()
                .any(|url| url.starts_with("rediss://"))
        {
            return vec![
                "redis.ca_file, redis.cert_file and redis.key_file are for rediss:// (TLS) servers, and redis.url names none".to_owned(),
            ];
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return vec!["redis.cert_file and redis.key_file go together".to_owned()];
        }
        if !self.cluster {
            // A comma may stand in a password: only a second URL makes a list.
            let listed = self
                .url
                .split(',')
                .filter(|url| url.trim().starts_with("redis"));
            if listed.count() > 1 {
                return vec![
                    "redis.url lists several servers: set redis.cluster = true for a Redis Cluster, or name one server".to_owned(),
                ];
            }
            if !self.url.starts_with("redis") {
                return vec!["redis.url must be a redis:// or rediss:// URL".to_owned()];
            }
            return Vec::new();
        }
        let urls = crate::redis::server_urls(self);
        if urls.is_empty() {
            return vec![
                "redis.url must name at least one redis:// or rediss:// URL of the cluster"
                    .to_owned(),
            ];
        }
        let place = |index: usize| format!("redis.url: address {} of {}", index + 1, urls.len());
        let mut problems = Vec::new();
        let mut credentials = None;
        for (index, text) in urls.iter().enumerate() {
            let parsed = url::Url::parse(text).ok().filter(|parsed| {
                matches!(parsed.scheme(), "redis" | "rediss") && parsed.host_str().is_some()
            });
            let Some(parsed) = parsed else {
                problems.push(format!(
                    "{} is not a redis:// or rediss:// URL with a host",
                    place(index)
                ));
                continue;
            };
            if !matches!(parsed.path(), "" | "/" | "/0") {
                problems.push(format!(
                    "{} names a database: a Redis Cluster has database 0 only",
                    place(index)
                ));
            }
            let these = (
                parsed.username().to_owned(),
                parsed.password().map(str::to_owned),
            );
            match &credentials {
                None => credentials = Some(these),
                Some(first) if *first != these => problems.push(format!(
                    "{} has other credentials than the first: every node of a cluster takes the same",
                    place(index)
                )),
                Some(_) => {}
            }
        }
        problems
    }
}

/// MongoDB connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoSettings {
    /// The server URL.
    pub url: String,
    /// The database holding apps, messages and deliveries.
    pub database: String,
    /// How long delivery and message records are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for MongoSettings {
    fn default() -> Self {
        Self {
            url: "mongodb://127.0.0.1:27017".into(),
            database: "sprayer".into(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccepterSettings {
    /// Where the API listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// TLS for the API (plain HTTP without it).
    pub tls: Option<TlsSettings>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: usize,
    /// TTL of a message that gives none.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Longest TTL accepted.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// The channels served by a running dispatcher; others are refused at the API.
    pub channels: Vec<Channel>,
    /// How long a verified app key is trusted before it is looked up again.
    #[serde(with = "humantime_serde")]
    pub key_cache_ttl: Duration,
    /// How long an `Idempotency-Key` is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// API requests per second one app may make, over every accepter (0: no limit); above it
    /// the API answers 429 with `Retry-After`.
    pub rate_per_second: u32,
    /// Requests an app may make at once above its rate before it is held to it.
    pub rate_burst: u32,
    /// Most members in one group.
    pub max_group_members: u64,
    /// Limits of particular apps, by app id, in place of the ones above.
    pub app_limits: std::collections::BTreeMap<String, AppLimits>,
}

/// One app's own limits; what is left out is the installation's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppLimits {
    /// API requests per second (0: no limit).
    pub rate_per_second: Option<u32>,
    /// Requests at once above the rate.
    pub rate_burst: Option<u32>,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: Option<usize>,
    /// Most members in one group.
    pub max_group_members: Option<u64>,
}

/// The limits that hold for one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// API requests per second (0: no limit).
    pub rate_per_second: u32,
    /// Requests at once above the rate.
    pub rate_burst: u32,
    /// Most users in one `{"users": [...]}` target.
    pub max_users: usize,
    /// Most members in one group.
    pub max_group_members: u64,
}

impl AccepterSettings {
    /// The limits of `app`: its own where it has them, else the installation's.
    pub fn limits(&self, app: &str) -> Limits {
        let own = self.app_limits.get(app);
        Limits {
            rate_per_second: own
                .and_then(|limits| limits.rate_per_second)
                .unwrap_or(self.rate_per_second),
            rate_burst: own
                .and_then(|limits| limits.rate_burst)
                .unwrap_or(self.rate_burst),
            max_users: own
                .and_then(|limits| limits.max_users)
                .unwrap_or(self.max_users),
            max_group_members: own
                .and_then(|limits| limits.max_group_members)
                .unwrap_or(self.max_group_members),
        }
    }
}

impl Default for AccepterSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            max_body_bytes: 256 * 1024,
            max_users: 10_000,
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(28 * 24 * 3600),
            channels: vec![Channel::Http],
            key_cache_ttl: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            rate_per_second: 1_000,
            rate_burst: 2_000,
            max_group_members: 1_000_000,
            app_limits: std::collections::BTreeMap::new(),
        }
    }
}

/// The channel dispatchers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// Sends in flight at once across all jobs of one dispatcher process.
    pub concurrency: usize,
    /// Groups and lists up to this many users are expanded inline; larger ones are split into
    /// jobs shared by every replica.
    pub inline_threshold: usize,
    /// Users looked up per pipelined Redis round trip.
    pub lookup_batch: usize,
    /// Most delivery events in one status message.
    pub status_batch: usize,
    /// Sends in flight at once for one app, so that one app's burst cannot starve another's.
    pub app_concurrency: usize,
    /// Sends per second for one app toward the provider (0: no limit), so that the app's
    /// provider account is not throttled.
    pub app_rate_per_second: u32,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9101))),
            ops_tls: None,
            concurrency: 512,
            inline_threshold: 1_000,
            lookup_batch: 500,
            status_batch: 1_000,
            app_concurrency: 256,
            app_rate_per_second: 0,
        }
    }
}

/// The outbound webhook channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Time allowed for one request, from connect to the last byte of the answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Time allowed to connect.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Requests in flight at once to one host.
    pub per_host_concurrency: usize,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
    /// Networks webhooks may reach although they are loopback, private, link-local or otherwise
    /// not public (CIDR, e.g. `["10.20.0.0/16"]`); every such address is refused otherwise.
    pub allow_networks: Vec<ipnet::IpNet>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            per_host_concurrency: 64,
            pool_idle_per_host: 64,
            allow_networks: Vec::new(),
        }
    }
}

/// Push providers reached over HTTP: APNs, FCM and web push services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Time allowed for one request to a provider.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A PEM file of certificate authorities trusted beside the public ones (a provider gateway
    /// with a private CA, or the test peers).
    pub extra_ca_file: Option<std::path::PathBuf>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            extra_ca_file: None,
        }
    }
}

/// SMPP sessions of the `sms` channel: one long-lived transceiver bind per app account.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// `submit_sm` PDUs outstanding at once on one bind.
    pub window: usize,
    /// Time allowed for a `submit_sm_resp`.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Interval of `enquire_link` on an idle bind.
    #[serde(with = "humantime_serde")]
    pub enquire_link: Duration,
    /// How long a send waits for the bind to come (back) up before it is retried later.
    #[serde(with = "humantime_serde")]
    pub bind_wait: Duration,
    /// How long the SMSC message ids are kept to match delivery receipts.
    #[serde(with = "humantime_serde")]
    pub receipt_ttl: Duration,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            window: 10,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            bind_wait: Duration::from_secs(10),
            receipt_ttl: Duration::from_secs(72 * 3600),
        }
    }
}

/// The status feeder.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeederSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` listen (the accepter serves them for all in
    /// `sprayer run`, which ignores this).
    pub ops_listen: Option<SocketAddr>,
    /// TLS for the ops endpoints (plain HTTP without it).
    pub ops_tls: Option<TlsSettings>,
    /// Most delivery events in one bulk write.
    pub batch_size: usize,
    /// Longest wait for a batch to fill before it is written.
    #[serde(with = "humantime_serde")]
    pub batch_wait: Duration,
    /// Status messages held unacknowledged at once.
    pub prefetch: u16,
}

impl Default for FeederSettings {
    fn default() -> Self {
        Self {
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9102))),
            ops_tls: None,
            batch_size: 2_000,
            batch_wait: Duration::from_millis(50),
            prefetch: 64,
        }
    }
}

/// The WebSocket deliverer: its listener, the tokens browsers connect with, the inboxes and the
/// sockets' limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelivererSettings {
    /// Where `/v1/ws`, the demo page, `/healthz`, `/readyz` and `/metrics` listen.
    pub listen: SocketAddr,
    /// TLS for the deliverer's listener (`wss://`; plain `ws://` without it).
    pub tls: Option<TlsSettings>,
    /// This node's id in `conn:` and `node:`; a random one per start when left out. Give each
    /// node its own.
    pub node_id: Option<String>,
    /// The secret WebSocket tokens are signed with (32 bytes or more), shared by the accepter
    /// that mints them and every deliverer; required when `ws` is served.
    pub token_secret: Option<SecretString>,
    /// How long a minted token can be used to connect, unless the request asks for less.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// The deliverer's public base URL (`wss://push.example.com`), returned with minted tokens.
    pub public_url: Option<String>,
    /// Most messages kept in one user's inbox; the oldest are dropped (reported `failed`).
    pub inbox_max: usize,
    /// How often a socket is pinged.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A socket opened without a token must send its `auth` frame within this time.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Messages waiting to be written to one socket; a socket whose buffer fills is closed as a
    /// slow consumer (its messages stay in the inbox).
    pub send_buffer: usize,
    /// Longest time one write to a socket may take before it is closed as a slow consumer.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Largest frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Each socket's read buffer, in bytes (grows for larger frames).
    pub read_buffer_bytes: usize,
    /// How long a node's entry in `conn:` lives without being refreshed: after a crash, its
    /// users are not woken on it for longer than this.
    #[serde(with = "humantime_serde")]
    pub conn_ttl: Duration,
    /// How often expired inbox messages are looked for.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Messages read from an inbox per round trip when a socket catches up.
    pub read_batch: usize,
}

impl Default for DelivererSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            tls: None,
            node_id: None,
            token_secret: None,
            token_ttl: Duration::from_secs(600),
            public_url: None,
            inbox_max: 10_000,
            heartbeat: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            send_buffer: 256,
            write_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            read_buffer_bytes: 1024,
            conn_ttl: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(1),
            read_batch: 200,
        }
    }
}

/// The administration API (`/admin/v1/...`), served by the accepter on a listener of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token of the admin API; without it the admin API is off.
    pub token: Option<SecretString>,
    /// Where the admin API listens: loopback unless `public` says otherwise.
    pub listen: SocketAddr,
    /// Allows `listen` to be an address other than loopback.
    pub public: bool,
    /// TLS for the admin API (plain HTTP without it).
    pub tls: Option<TlsSettings>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            token: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            public: false,
            tls: None,
        }
    }
}

/// Logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// One JSON object per line instead of text.
    pub json: bool,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            json: false,
            filter: "info".into(),
        }
    }
}

/// Extracts the settings; when some values do not parse, tries each key alone so that every
/// bad key is reported, not only the first.
fn extract_every_problem(figment: &Figment) -> Result<Settings, ConfigError> {
    let first = match figment.extract::<Settings>() {
        Ok(settings) => return Ok(settings),
        Err(error) => error,
    };
    let mut problems = Vec::new();
    if let Ok(figment::value::Value::Dict(_, sections)) = figment.find_value("") {
        for (section, value) in sections {
            let figment::value::Value::Dict(_, keys) = value else {
                problems.push(format!("{section} is not a section of the settings"));
                continue;
            };
            for (key, value) in keys {
                let alone = Figment::from(figment::providers::Serialized::default(
                    &format!("{section}.{key}"),
                    value,
                ));
                if let Err(error) = alone.extract::<Settings>() {
                    problems.extend(
                        error
                            .into_iter()
                            .map(|error| format!("{section}.{key}: {error}")),
                    );
                }
            }
        }
    }
    if problems.is_empty() {
        problems.extend(first.into_iter().map(|error| error.to_string()));
    }
    Err(ConfigError { problems })
}

/// Reads a list of human durations (`["1s", "10s", "10m"]`).
fn duration_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Duration>, D::Error> {
    let items: Vec<humantime_serde::Serde<Duration>> = Deserialize::deserialize(deserializer)?;
    Ok(items
        .into_iter()
        .map(humantime_serde::Serde::into_inner)
        .collect())
}

/// The settings could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl Settings {
    /// Loads defaults, then `file` (or `SPRAYER_CONFIG`) if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        let from_env = std::env::var_os("SPRAYER_CONFIG").map(std::path::PathBuf::from);
        if let Some(path) = file.map(Path::to_path_buf).or(from_env) {
            if !path.exists() {
                return Err(ConfigError {
                    problems: vec![format!("config file {} does not exist", path.display())],
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("SPRAYER_")
                .filter(|key| !key.as_str().eq_ignore_ascii_case("config"))
                .map(|key| key.as_str().replacen('_', ".", 1).into()),
        );
        let settings = extract_every_problem(&figment)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads the settings, or prints every problem and exits with status 2.
    pub fn load_or_exit(file: Option<&Path>) -> Settings {
        Settings::load(file).unwrap_or_else(|error| {
            eprintln!("{error}");
            std::process::exit(2)
        })
    }

    /// Checks the values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.amqp.url_problems();
        problems.extend(self.redis.url_problems());
        let mut check = |ok: bool, problem: &str| {
            if !ok {
                problems.push(problem.to_owned());
            }
        };
        check(self.amqp.prefetch > 0, "amqp.prefetch must be at least 1");
        check(
            self.amqp
                .retry_tiers
                .iter()
                .all(|tier| tier.as_millis() > 0),
            "amqp.retry_tiers must all be longer than zero",
        );
        check(
            self.redis.group_shards > 0,
            "redis.group_shards must be at least 1",
        );
        check(
            self.mongodb.url.starts_with("mongodb"),
            "mongodb.url must be a mongodb:// URL",
        );
        check(
            !self.mongodb.database.is_empty(),
            "mongodb.database must not be empty",
        );
        check(
            self.accepter.max_body_bytes >= 1024,
            "accepter.max_body_bytes must be at least 1024",
        );
        check(
            self.accepter.max_users > 0,
            "accepter.max_users must be at least 1",
        );
        check(
            !self.accepter.channels.is_empty(),
            "accepter.channels must name at least one channel",
        );
        check(
            self.accepter.default_ttl <= self.accepter.max_ttl,
            "accepter.default_ttl must not exceed accepter.max_ttl",
        );
        check(
            self.admin.public || self.admin.listen.ip().is_loopback(),
            "admin.listen is not a loopback address: set admin.public = true to serve the admin API there",
        );
        check(
            self.accepter.rate_per_second == 0 || self.accepter.rate_burst > 0,
            "accepter.rate_burst must be at least 1 when accepter.rate_per_second is set",
        );
        check(
            self.dispatcher.concurrency > 0,
            "dispatcher.concurrency must be at least 1",
        );
        check(
            self.dispatcher.lookup_batch > 0,
            "dispatcher.lookup_batch must be at least 1",
        );
        check(
            self.dispatcher.status_batch > 0,
            "dispatcher.status_batch must be at least 1",
        );
        check(
            self.dispatcher.app_concurrency > 0,
            "dispatcher.app_concurrency must be at least 1",
        );
        check(
            self.webhook.per_host_concurrency > 0,
            "webhook.per_host_concurrency must be at least 1",
        );
        check(
            self.feeder.batch_size > 0,
            "feeder.batch_size must be at least 1",
        );
        check(
            self.feeder.prefetch > 0,
            "feeder.prefetch must be at least 1",
        );
        if self.accepter.channels.contains(&Channel::Ws) {
            use secrecy::ExposeSecret;
            check(
                self.deliverer
                    .token_secret
                    .as_ref()
                    .is_some_and(|secret| secret.expose_secret().len() >= 32),
                "deliverer.token_secret must be set (32 characters or more) when ws is served",
            );
        }
        check(
            self.deliverer.inbox_max > 0,
            "deliverer.inbox_max must be at least 1",
        );
        check(
            self.deliverer.send_buffer > 0,
            "deliverer.send_buffer must be at least 1",
        );
        check(
            self.deliverer.read_batch > 0,
            "deliverer.read_batch must be at least 1",
        );
        check(
            self.deliverer.heartbeat < self.deliverer.idle_timeout,
            "deliverer.heartbeat must be shorter than deliverer.idle_timeout",
        );
        check(
            self.deliverer.conn_ttl >= Duration::from_secs(1),
            "deliverer.conn_ttl must be at least 1s",
        );
        check(
            self.deliverer
                .node_id
                .as_deref()
                .is_none_or(|id| crate::model::NodeId::parse(id).is_ok()),
            "deliverer.node_id may hold only letters, digits and . _ - @ + = (at most 128)",
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Settings::default().validate().is_ok());
    }

    #[test]
    fn every_unreadable_key_is_reported_at_once() {
        let figment = Figment::new().merge(Toml::string(
            "[amqp]\nprefetch = \"many\"\nprefix = \"p.\"\n[redis]\ngroup_shards = -1\n[nonsense]\nx = 1\n",
        ));
        let error = extract_every_problem(&figment).expect_err("three problems");
        assert_eq!(error.problems.len(), 3, "{error}");
        assert!(error.problems[0].starts_with("amqp.prefetch"), "{error}");
    }

    #[test]
    fn amqp_url_takes_a_comma_separated_list_of_brokers() {
        let mut settings = Settings::default();
        settings.amqp.url =
            "amqp://u:p@rabbit-0:5672/%2f, amqp://u:p@rabbit-1:5672/%2f,amqps://u:p@rabbit-2/%2f"
                .into();
        assert!(settings.validate().is_ok());
        settings.amqp.url = "amqp://u:secret@rabbit-0:5672/%2f,http://rabbit-1,".into();
        let error = settings.validate().expect_err("a bad address");
        assert_eq!(
            error.problems,
            ["amqp.url: address 2 of 2 is not an amqp:// or amqps:// URL"]
        );
        assert!(!error.to_string().contains("secret"), "{error}");
        settings.amqp.url = " , ".into();
        let error = settings.validate().expect_err("no broker");
        assert!(error.problems[0].contains("at least one"), "{error}");
    }

    #[test]
    fn redis_url_lists_seed_nodes_of_a_cluster_only_in_cluster_mode() {
        let mut settings = Settings::default();
        settings.redis.url = "redis://a:6379,redis://b:6379".into();
        let error = settings.validate().expect_err("a list for one server");
        assert_eq!(
            error.problems,
            [
                "redis.url lists several servers: set redis.cluster = true for a Redis Cluster, or name one server"
            ]
        );
        settings.redis.cluster = true;
        assert!(settings.validate().is_ok());
        settings.redis.url = " redis://:secret@a:7000, redis://:secret@b:7001 ,".into();
        assert!(settings.validate().is_ok());
        settings.redis.url =
            "redis://:secret@a:7000,http://b,redis://:other@c:7002,redis://:secret@d/3".into();
        let error = settings.validate().expect_err("bad seeds");
        assert_eq!(
            error.problems,
            [
                "redis.url: address 2 of 4 is not a redis:// or rediss:// URL with a host",
                "redis.url: address 3 of 4 has other credentials than the first: every node of a cluster takes the same",
                "redis.url: address 4 of 4 names a database: a Redis Cluster has database 0 only",
            ]
        );
        assert!(!error.to_string().contains("secret"), "{error}");
        settings.redis.url = " , ".into();
        let error = settings.validate().expect_err("no seed");
        assert!(error.problems[0].contains("at least one"), "{error}");
        // One server: as before, a password may hold a comma.
        settings.redis.cluster = false;
        settings.redis.url = "redis://:pa,ss@a:6379".into();
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn amqp_tls_files_go_with_an_amqps_url_and_must_be_usable() {
        let mut settings = Settings::default();
        settings.amqp.ca_file = Some("/nonexistent/rabbit-ca.pem".into());
        let problems = |settings: &Settings| settings.validate().expect_err("refused").problems;
        assert_eq!(
            problems(&settings),
            [
                "amqp.ca_file, amqp.cert_file and amqp.key_file are for amqps:// (TLS) brokers, and amqp.url names none"
            ]
        );
        settings.amqp.url = "amqp://a:5672/%2f,amqps://b:5671/%2f".into();
        let unreadable = problems(&settings);
        assert!(
            unreadable[0].starts_with("cannot read amqp.ca_file /nonexistent/rabbit-ca.pem: "),
            "{unreadable:?}"
        );
        let not_pem = std::env::temp_dir().join(format!("sprayer-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not a certificate").expect("write");
        settings.amqp.ca_file = Some(not_pem.clone());
        assert_eq!(
            problems(&settings),
            [format!(
                "amqp.ca_file {} holds no PEM certificate, or one that does not parse",
                not_pem.display()
            )]
        );
        settings.amqp.ca_file = None;
        settings.amqp.cert_file = Some(not_pem.clone());
        assert_eq!(
            problems(&settings),
            ["amqp.cert_file and amqp.key_file go together"]
        );
        std::fs::remove_file(&not_pem).ok();
        settings.amqp.cert_file = None;
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn a_redis_ca_file_goes_with_a_tls_url() {
        let mut settings = Settings::default();
        settings.redis.ca_file = Some("/etc/sprayer/redis-ca.pem".into());
        let error = settings.validate().expect_err("a CA for a plain URL");
        assert_eq!(
            error.problems,
            [
                "redis.ca_file, redis.cert_file and redis.key_file are for rediss:// (TLS) servers, and redis.url names none"
            ]
        );
        settings.redis.url = "rediss://:secret@redis.internal:6380".into();
        assert!(settings.validate().is_ok());
        settings.redis.key_file = Some("/etc/sprayer/redis-client.key".into());
        assert_eq!(
            settings.validate().expect_err("a key alone").problems,
            ["redis.cert_file and redis.key_file go together"]
        );
        settings.redis.cert_file = Some("/etc/sprayer/redis-client.pem".into());
        assert!(settings.validate().is_ok());
        settings.redis.cluster = true;
        settings.redis.url = "rediss://a:7000,rediss://b:7000".into();
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut settings = Settings::default();
        settings.amqp.prefetch = 0;
        settings.redis.group_shards = 0;
        settings.feeder.batch_size = 0;
        let error = settings.validate().expect_err("three problems");
        assert_eq!(error.problems.len(), 3, "{error}");
    }
}
