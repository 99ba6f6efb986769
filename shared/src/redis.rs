//! Redis: the connection and the key layout (see the README's "Redis keys").
//!
//! A user's keys share the hash tag `{app:user}`, so a Redis Cluster keeps them in one slot.

use redis::aio::ConnectionManager;

use crate::model::{AppId, Channel, GroupId, UserId};

/// A multiplexed, self-reconnecting connection; clone it freely.
pub type RedisConnection = ConnectionManager;

/// Opens a connection manager to `url`.
pub async fn connect(url: &str) -> redis::RedisResult<RedisConnection> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    ConnectionManager::new_with_config(client, config).await
}

/// `ep:{app:user}:<channel>`: HASH of device id → address JSON.
pub fn endpoints_key(app: &AppId, user: &UserId, channel: Channel) -> String {
    format!("ep:{{{app}:{user}}}:{channel}")
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
