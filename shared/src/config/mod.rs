//! Settings for every service: defaults, then an optional TOML file (`SPRAYER_CONFIG` or
//! `--config`), then `SPRAYER_<SECTION>_<KEY>` environment variables
//! (`SPRAYER_MONGODB_URL`, `SPRAYER_AMQP_PREFETCH`, ...). Every problem is reported at once.
//!
//! One module per section of the settings file ([`amqp`], [`redis`], [`mongo`], [`accepter`],
//! [`dispatcher`], [`webhook`], [`push`], [`sms`], [`feeder`], [`events`], [`scheduler`], [`deliverer`], [`admin`],
//! [`telemetry`]); [`tls`] holds the TLS file names several sections share. This module depends
//! on nothing else in the crate but [`crate::model`]: checking a setting never reads a file or
//! opens a connection (files are loaded by [`crate::tls`] when a service starts).

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub mod accepter;
pub mod admin;
pub mod amqp;
pub mod deliverer;
pub mod dispatcher;
pub mod events;
pub mod feeder;
pub mod mongo;
pub mod push;
pub mod redis;
pub mod scheduler;
pub mod sms;
pub mod telemetry;
pub mod tls;
pub mod webhook;

pub use accepter::{AccepterSettings, AppLimits, Limits};
pub use admin::AdminSettings;
pub use amqp::{AmqpSettings, QueueType};
pub use deliverer::DelivererSettings;
pub use dispatcher::DispatcherSettings;
pub use events::EventsSettings;
pub use feeder::FeederSettings;
pub use mongo::MongoSettings;
pub use push::PushSettings;
pub use redis::RedisSettings;
pub use scheduler::SchedulerSettings;
pub use sms::SmsSettings;
pub use telemetry::TelemetrySettings;
pub use tls::{TlsFiles, TlsSettings};
pub use webhook::WebhookSettings;

use crate::model::Channel;

/// Everything a Sprayer process can be told.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
    /// The events service: event feeds and event endpoints.
    pub events: EventsSettings,
    /// The scheduler: scheduled sends and escalation steps.
    pub scheduler: SchedulerSettings,
    /// The WebSocket deliverer and its tokens.
    pub deliverer: DelivererSettings,
    /// The administration API.
    pub admin: AdminSettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
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

/// A list of human durations (`["1s", "10s", "10m"]`), for `#[serde(with = "duration_list")]`.
pub(crate) mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Reads the list.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let items: Vec<humantime_serde::Serde<Duration>> = Deserialize::deserialize(deserializer)?;
        Ok(items
            .into_iter()
            .map(humantime_serde::Serde::into_inner)
            .collect())
    }

    /// Writes the list as it is read.
    pub fn serialize<S: Serializer>(
        durations: &[Duration],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let items: Vec<humantime_serde::Serde<Duration>> = durations
            .iter()
            .copied()
            .map(humantime_serde::Serde::from)
            .collect();
        items.serialize(serializer)
    }
}

/// Writes a secret as `"<redacted>"` when settings are shown, never its value.
pub(crate) fn redacted<S: serde::Serializer>(
    secret: &Option<secrecy::SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str("<redacted>"),
        None => serializer.serialize_none(),
    }
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
        check(
            self.feeder.writes_in_flight > 0,
            "feeder.writes_in_flight must be at least 1",
        );
        check(
            (1..=1_000).contains(&self.events.batch_max),
            "events.batch_max must be 1 to 1000",
        );
        check(
            self.events.write_batch > 0,
            "events.write_batch must be at least 1",
        );
        check(
            self.events.prefetch > 0,
            "events.prefetch must be at least 1",
        );
        check(
            !self.events.retry_tiers.is_empty(),
            "events.retry_tiers must hold at least one wait",
        );
        check(
            self.events.retention >= Duration::from_secs(3600),
            "events.retention must be at least 1h",
        );
        check(
            self.scheduler.claim_batch > 0 && self.scheduler.batch_users > 0,
            "scheduler.claim_batch and scheduler.batch_users must be at least 1",
        );
        check(
            self.scheduler.prefetch > 0,
            "scheduler.prefetch must be at least 1",
        );
        check(
            self.scheduler.claim_lease >= Duration::from_secs(5),
            "scheduler.claim_lease must be at least 5s",
        );
        check(
            (1..=16).contains(&self.accepter.max_steps),
            "accepter.max_steps must be 1 to 16",
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
mod reference;
#[cfg(test)]
mod tests;
