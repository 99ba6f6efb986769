//! The brokers of `amqp.url`, tried in turn, and their TLS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

use super::AmqpError;
use crate::config::AmqpSettings;
use crate::tls::TlsMaterial;

/// `host:port` of a broker URL, for logs: never the credentials.
pub fn broker_address(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let default_port = if parsed.scheme() == "amqps" {
                5671
            } else {
                5672
            };
            format!(
                "{}:{}",
                parsed.host_str().unwrap_or("?"),
                parsed.port().unwrap_or(default_port)
            )
        }
        Err(_) => "?".to_owned(),
    }
}

/// The brokers of `amqp.url`, connected to in turn: the first that answers is used, and after
/// its connection is lost the next attempt starts with the one after it, so a node that went
/// away is passed over at once and a node that comes back is not needed. With one URL this is
/// plain reconnecting to it.
#[derive(Debug)]
pub struct Brokers {
    urls: Vec<String>,
    next: AtomicUsize,
    tls: OwnedTLSConfig,
}

impl Clone for Brokers {
    /// The same brokers and TLS material, starting again from the first broker.
    fn clone(&self) -> Brokers {
        Brokers {
            urls: self.urls.clone(),
            next: AtomicUsize::new(0),
            tls: self.tls.clone(),
        }
    }
}

impl Brokers {
    /// The brokers of an `amqp.url` value (see [`AmqpSettings::broker_urls`]), with the system's CAs only
    /// and no client certificate for `amqps://`.
    pub fn new(list: &str) -> Brokers {
        let settings = AmqpSettings {
            url: list.to_owned(),
            ..AmqpSettings::default()
        };
        Brokers {
            urls: settings
                .broker_urls()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            next: AtomicUsize::new(0),
            tls: OwnedTLSConfig::default(),
        }
    }

    /// The brokers of `settings`, with its TLS files read and checked: the CAs of
    /// `amqp.ca_file` trusted besides the system's, and the client certificate of
    /// `amqp.cert_file` with `amqp.key_file` shown to brokers that ask for one.
    pub fn for_settings(settings: &AmqpSettings) -> Result<Brokers, AmqpError> {
        Ok(Brokers {
            tls: tls_config(settings)?,
            ..Brokers::new(&settings.url)
        })
    }

    /// How many brokers there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether the list named no broker (a configuration that does not validate).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Connects to the first broker that answers, starting after the one connected to last;
    /// gives each `timeout`. Fails with the last broker's error when none answers.
    pub async fn connect(&self, timeout: Duration) -> Result<Connection, AmqpError> {
        let start = self.next.load(Ordering::Relaxed);
        let mut failure = AmqpError::Unavailable("amqp.url names no broker".to_owned());
        for offset in 0..self.urls.len() {
            let index = (start + offset) % self.urls.len();
            let url = &self.urls[index];
            match connect_one(url, &self.tls, timeout).await {
                Ok(connection) => {
                    self.next
                        .store((index + 1) % self.urls.len(), Ordering::Relaxed);
                    if self.urls.len() > 1 {
                        tracing::info!(broker = %broker_address(url), "connected to rabbitmq");
                    }
                    return Ok(connection);
                }
                Err(error) => {
                    if self.urls.len() > 1 {
                        tracing::warn!(broker = %broker_address(url), %error, "rabbitmq node unreachable; trying the next");
                    }
                    failure = error;
                }
            }
        }
        Err(failure)
    }
}

/// Opens a connection to `url` (one URL or a comma-separated list, tried in order), giving
/// each broker `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> Result<Connection, AmqpError> {
    Brokers::new(url).connect(timeout).await
}

/// The largest AMQP frame asked of the broker when the URL does not name one (`?frame_max=`).
///
/// The client keeps 32 frames of buffer each way per connection, zeroed when the connection
/// opens: at RabbitMQ's own 128 KiB that is 8 MiB resident per connection, the largest single
/// block in a deliverer's heap, and a connection reopened after a broker hiccup held both sets
/// until the allocator gave the old one back. At 32 KiB it is 2 MiB. Larger messages (a big job
/// batch, a fan-out's status batch) go as several frames of one message, at 8 bytes each.
pub const DEFAULT_FRAME_MAX: u32 = 32 * 1024;

/// `url` parsed, with [`DEFAULT_FRAME_MAX`] unless it names its own `frame_max`.
fn with_frame_max(url: &str) -> Result<lapin::uri::AMQPUri, AmqpError> {
    let mut uri: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|error: String| AmqpError::Unavailable(format!("amqp.url: {error}")))?;
    uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
    Ok(uri)
}

async fn connect_one(
    url: &str,
    tls: &OwnedTLSConfig,
    timeout: Duration,
) -> Result<Connection, AmqpError> {
    let runtime = lapin::runtime::default_runtime()?;
    let uri = with_frame_max(url)?;
    match tokio::time::timeout(
        timeout,
        Connection::connect_uri_with_config(
            uri,
            ConnectionProperties::default(),
            tls.clone(),
            runtime,
        ),
    )
    .await
    {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(AmqpError::Timeout("connecting")),
    }
}

/// The TLS configuration of `settings` for `amqps://` brokers, each file read and parsed (see
/// [`TlsMaterial::load`]): the CAs trusted besides the system's, the client certificate shown
/// to brokers that ask for one.
pub fn tls_config(settings: &AmqpSettings) -> Result<OwnedTLSConfig, AmqpError> {
    let material = TlsMaterial::load(&settings.tls_files())?;
    // Checked to be PEM certificates, so text.
    let cert_chain = material
        .ca_pem
        .map(|pem| String::from_utf8_lossy(&pem).into_owned());
    let identity = material.identity.map(|identity| OwnedIdentity::PKCS8 {
        pem: identity.cert_pem,
        key: identity.key_pem,
    });
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn frames_are_kept_small_unless_the_url_asks_otherwise() {
        let uri = with_frame_max("amqp://u:p@rabbit:5672/%2f").expect("a valid URL");
        assert_eq!(uri.query.frame_max, Some(DEFAULT_FRAME_MAX));
        let uri = with_frame_max("amqp://u:p@rabbit:5672/%2f?frame_max=131072").expect("valid");
        assert_eq!(uri.query.frame_max, Some(131_072));
        assert!(with_frame_max("http://rabbit/").is_err());
    }

    #[test]
    fn a_list_of_brokers_is_split_and_logged_without_credentials() {
        let list = " amqp://u:secret@rabbit-0:5672/%2f,,amqps://u:secret@rabbit-1/%2f ";
        assert_eq!(
            AmqpSettings {
                url: list.to_owned(),
                ..AmqpSettings::default()
            }
            .broker_urls(),
            [
                "amqp://u:secret@rabbit-0:5672/%2f",
                "amqps://u:secret@rabbit-1/%2f"
            ]
        );
        assert_eq!(Brokers::new(list).len(), 2);
        assert_eq!(Brokers::new("amqp://127.0.0.1/%2f").len(), 1);
        let shown: Vec<String> = AmqpSettings {
            url: list.to_owned(),
            ..AmqpSettings::default()
        }
        .broker_urls()
        .into_iter()
        .map(broker_address)
        .collect();
        assert_eq!(shown, ["rabbit-0:5672", "rabbit-1:5671"]);
    }

    #[tokio::test]
    async fn connecting_tries_every_broker_and_reports_the_last_failure() {
        // Nothing listens on port 1 of loopback: both are refused at once.
        let brokers = Brokers::new("amqp://127.0.0.1:1/%2f,amqp://127.0.0.1:1/%2f");
        let error = brokers
            .connect(Duration::from_secs(2))
            .await
            .expect_err("no broker answers");
        assert!(matches!(error, AmqpError::Broker(_)), "{error}");
        let none = Brokers::new(",");
        assert!(none.is_empty());
        assert!(matches!(
            none.connect(Duration::from_secs(1)).await,
            Err(AmqpError::Unavailable(_))
        ));
    }
}
