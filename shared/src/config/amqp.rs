//! `[amqp]`: the RabbitMQ connection and topology.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TlsFiles;

/// RabbitMQ connection and topology.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(with = "super::duration_list")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Classic durable queues: one broker.
    Classic,
    /// Quorum queues: replicated over a RabbitMQ cluster.
    Quorum,
}

impl AmqpSettings {
    /// The broker URLs of `url`: one URL, or several separated by commas (a comma inside a
    /// password is written `%2C`), blanks around each ignored.
    pub fn broker_urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect()
    }

    /// The TLS files toward `amqps://` brokers.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles::client(
            "amqp",
            self.ca_file.as_deref(),
            self.cert_file.as_deref(),
            self.key_file.as_deref(),
        )
    }

    /// What is wrong with `url`: no broker, or an address that is not an AMQP URL (named by
    /// its place in the list, never shown: it may hold a password).
    pub(super) fn url_problems(&self) -> Vec<String> {
        let urls = self.broker_urls();
        if urls.is_empty() {
            return vec!["amqp.url must name at least one amqp:// or amqps:// URL".to_owned()];
        }
        let tls = self.tls_files();
        if tls.any() && !urls.iter().any(|url| url.starts_with("amqps://")) {
            return vec![
                "amqp.ca_file, amqp.cert_file and amqp.key_file are for amqps:// (TLS) brokers, and amqp.url names none".to_owned(),
            ];
        }
        let problems = tls.problems();
        if !problems.is_empty() {
            return problems;
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
