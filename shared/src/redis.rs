//! Redis: the connection and the key layout (see the book's docs/src/internals/redis.md).
//!
//! A user's keys share the hash tag `{app:user}`, so a Redis Cluster keeps them in one slot.
//!
//! [`RedisConnection`] is one server (`redis.cluster = false`, the default) or a Redis Cluster
//! (`redis.cluster = true`, `redis.url` listing seed nodes). Both serve the same code: commands,
//! scripts and pipelines go through [`redis::aio::ConnectionLike`]. On a cluster a pipeline
//! whose commands touch several slots is split by slot and the parts run at once (module
//! `slots`); every script and every multi-key command must stay within one slot, which the key
//! layout allows: a script touches one user's keys, or a single global key.

mod cluster;
mod slots;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{ClientTlsConfig, Cmd, Pipeline, RedisFuture, TlsCertificates, Value};

pub use cluster::ClusterManager;

use crate::config::RedisSettings;
use crate::model::{AppId, Channel, GroupId, UserId};
use crate::tls::{TlsError, TlsMaterial};

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a command may wait for its answer (on a cluster: with its retries and redirects).
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A multiplexed, self-reconnecting connection to one server or to a Redis Cluster; clone it
/// freely.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server: a connection manager, which reconnects by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: routes each command to the node serving its slot, follows redirects
    /// and refreshes the slot map when the cluster changes; replaced when it stops answering.
    Cluster(ClusterManager),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// Whether this is a Redis Cluster, where a script or a multi-key command must keep to
    /// one slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(manager) => Box::pin(async move {
                let outcome = manager.connection().req_packed_command(cmd).await;
                manager.observe(&outcome);
                outcome
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConnection::Cluster(manager) => Box::pin(async move {
                let mut connection = manager.connection();
                // A transaction must keep to one slot as it is; the redis crate says so if not.
                let outcome = if pipeline.is_transaction() || offset != 0 || count != pipeline.len()
                {
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await
                } else {
                    slots::query_by_slot(connection, pipeline).await
                };
                manager.observe(&outcome);
                outcome
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(_) => 0,
        }
    }
}

/// The certificate authorities of `redis.ca_file` and the client certificate of
/// `redis.cert_file` with `redis.key_file`, when any is set, read and checked (see
/// [`TlsMaterial::load`]).
fn tls_certificates(settings: &RedisSettings) -> Result<Option<TlsCertificates>, TlsError> {
    let material = TlsMaterial::load(&settings.tls_files())?;
    if material.is_empty() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls: material.identity.map(|identity| ClientTlsConfig {
            client_cert: identity.cert_pem,
            client_key: identity.key_pem,
        }),
        root_cert: material.ca_pem,
    }))
}

/// A TLS file that cannot be used, as the Redis client's configuration error.
fn tls_error(error: &TlsError) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "redis tls",
        error.to_string(),
    ))
}

/// A client of one server: over TLS for a `rediss://` URL, trusting `redis.ca_file` and showing
/// the client certificate when they are set.
fn client(url: &str, certificates: Option<&TlsCertificates>) -> redis::RedisResult<redis::Client> {
    match certificates {
        Some(certificates) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(url, certificates.clone())
        }
        _ => redis::Client::open(url),
    }
}

/// Connects to the server, or to the cluster through the first seed node that answers.
pub async fn connect(settings: &RedisSettings) -> redis::RedisResult<RedisConnection> {
    let certificates = tls_certificates(settings).map_err(|error| tls_error(&error))?;
    if settings.cluster {
        let mut builder = redis::cluster::ClusterClientBuilder::new(settings.server_urls())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT);
        if let Some(certificates) = certificates {
            builder = builder.certs(certificates);
        }
        return Ok(RedisConnection::Cluster(
            ClusterManager::connect(builder.build()?).await?,
        ));
    }
    let client = client(&settings.url, certificates.as_ref())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    Ok(RedisConnection::Single(
        ConnectionManager::new_with_config(client, config).await?,
    ))
}

/// Plain clients of every server in `redis.url`, for pub/sub: a Redis Cluster passes every
/// `PUBLISH` on to all its nodes, so a subscriber may listen on any one of them.
pub fn pubsub_clients(settings: &RedisSettings) -> redis::RedisResult<Vec<redis::Client>> {
    let certificates = tls_certificates(settings).map_err(|error| tls_error(&error))?;
    settings
        .server_urls()
        .into_iter()
        .map(|url| client(url, certificates.as_ref()))
        .collect()
}

/// `ep:{app:user}:<channel>`: HASH of device id → address JSON.
pub fn endpoints_key(app: &AppId, user: &UserId, channel: Channel) -> String {
    format!("ep:{{{app}:{user}}}:{channel}")
}

/// `msisdn:{app}`: HASH of phone number (E.164, with its `+`) → the user who last registered
/// an `sms` endpoint with it, so that a STOP by SMS finds its user. An entry outlives the
/// endpoint it came from: a reader checks the user's `sms` endpoints still hold the number.
pub fn msisdn_owner_key(app: &AppId) -> String {
    format!("msisdn:{{{app}}}")
}

/// `pres:{app:user}`: HASH of the user's presence: per deliverer node its socket count
/// (`n:<node>`) and until when that is known alive (`u:<node>`), `online` and `since`.
pub fn presence_key(app: &AppId, user: &UserId) -> String {
    format!("pres:{{{app}:{user}}}")
}

/// `ugrp:{app:user}`: SET of the user's groups.
pub fn user_groups_key(app: &AppId, user: &UserId) -> String {
    format!("ugrp:{{{app}:{user}}}")
}

/// `grp:<app>:<group>:<channel>:<shard>`: SET of the group's users that have the channel.
pub fn group_channel_key(app: &AppId, group: &GroupId, channel: Channel, shard: u16) -> String {
    format!("grp:{app}:{group}:{channel}:{shard}")
}

/// `gm:<app>:<group>:<shard>`: SET of all the group's users, whatever they registered.
pub fn group_members_key(app: &AppId, group: &GroupId, shard: u16) -> String {
    format!("gm:{app}:{group}:{shard}")
}

/// `gsize:<app>:<group>`: STRING, the group's member count (for `accepter.max_group_members`).
pub fn group_size_key(app: &AppId, group: &GroupId) -> String {
    format!("gsize:{app}:{group}")
}

/// `idem:<app>:<key>`: STRING, the message an idempotency key produced.
pub fn idempotency_key(app: &AppId, key: &str) -> String {
    format!("idem:{app}:{key}")
}

/// The shard of `user` among `shards` (FNV-1a: stable across versions and platforms).
pub fn shard_of(user: &UserId, shards: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.as_str().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    u16::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// Removes one endpoint and, when it was the user's last on the channel, takes the user out of
/// their groups' sets of that channel. Returns whether the endpoint existed.
pub async fn remove_endpoint(
    redis: &mut RedisConnection,
    app: &AppId,
    user: &UserId,
    channel: Channel,
    device: &crate::model::DeviceId,
    shards: u16,
) -> redis::RedisResult<bool> {
    let key = endpoints_key(app, user, channel);
    let (removed, left): (i64, i64) = redis::pipe()
        .hdel(&key, device.as_str())
        .hlen(&key)
        .query_async(redis)
        .await?;
    if left == 0 {
        let groups: Vec<String> = redis::cmd("SMEMBERS")
            .arg(user_groups_key(app, user))
            .query_async(redis)
            .await?;
        let shard = shard_of(user, shards);
        let groups: Vec<GroupId> = groups
            .into_iter()
            .filter_map(|name| GroupId::parse(name).ok())
            .collect();
        if !groups.is_empty() {
            let mut pipe = redis::pipe();
            for group in groups {
                pipe.srem(
                    group_channel_key(app, &group, channel, shard),
                    user.as_str(),
                )
                .ignore();
            }
            pipe.query_async::<()>(redis).await?;
        }
    }
    Ok(removed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_app_and_the_user_hash_tag() {
        let app = AppId::parse("app1").expect("valid");
        let user = UserId::parse("u1").expect("valid");
        assert_eq!(
            endpoints_key(&app, &user, Channel::Http),
            "ep:{app1:u1}:http"
        );
        assert_eq!(user_groups_key(&app, &user), "ugrp:{app1:u1}");
    }

    #[test]
    fn shards_spread_users_and_stay_stable() {
        let mut counts = [0u32; 64];
        for index in 0..6_400 {
            let user = UserId::parse(format!("user{index}")).expect("valid");
            counts[usize::from(shard_of(&user, 64))] += 1;
        }
        assert!(counts.iter().all(|&count| count > 50), "{counts:?}");
        let user = UserId::parse("alice").expect("valid");
        assert_eq!(shard_of(&user, 64), shard_of(&user, 64));
    }
}
