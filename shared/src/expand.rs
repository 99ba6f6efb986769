//! Step two of routing: a job's target into recipients (user, device, address), or into
//! smaller jobs when the target is too large to handle in one piece. Redis reads are pipelined.

use std::collections::HashMap;

use crate::model::{DeviceId, GroupId, Job, JobTarget, PendingDelivery, UserId};
use crate::redis::{RedisConnection, endpoints_key, group_channel_key};

/// One device of one user on the job's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
    /// The stored address (channel-specific JSON), or `None` when the endpoint is gone.
    pub address: Option<String>,
    /// Attempts already made.
    pub attempts: u32,
}

/// What a job turns into.
#[derive(Debug)]
pub enum Expansion {
    /// Deliver to these now.
    Recipients(Vec<Recipient>),
    /// Publish these smaller jobs instead (shards of a large group, chunks of a long list).
    Split(Vec<Job>),
}

/// Expands `job` using Redis.
pub async fn expand(
    redis: &mut RedisConnection,
    job: &Job,
    shards: u16,
    inline_threshold: usize,
    lookup_batch: usize,
) -> redis::RedisResult<Expansion> {
    let users = match &job.target {
        JobTarget::User(user) => vec![user.clone()],
        JobTarget::Users(users) if users.len() > inline_threshold => {
            let chunks = users
                .chunks(inline_threshold.max(1))
                .map(|chunk| job.with_target(JobTarget::Users(chunk.to_vec())))
                .collect();
            return Ok(Expansion::Split(chunks));
        }
        JobTarget::Users(users) => users.clone(),
        JobTarget::Group(group) => {
            let sizes = shard_sizes(redis, job, group, shards).await?;
            let total: u64 = sizes.iter().sum();
            if total == 0 {
                return Ok(Expansion::Recipients(Vec::new()));
            }
            let non_empty = (0..shards).filter(|&shard| sizes[usize::from(shard)] > 0);
            if total > inline_threshold as u64 {
                let jobs = non_empty
                    .map(|shard| {
                        job.with_target(JobTarget::GroupShard {
                            group: group.clone(),
                            shard,
                        })
                    })
                    .collect();
                return Ok(Expansion::Split(jobs));
            }
            let mut pipe = redis::pipe();
            for shard in non_empty {
                pipe.smembers(group_channel_key(&job.app, group, job.channel, shard));
            }
            let members: Vec<Vec<String>> = pipe.query_async(redis).await?;
            parse_users(members.into_iter().flatten())
        }
        JobTarget::GroupShard { group, shard } => {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(group_channel_key(&job.app, group, job.channel, *shard))
                .query_async(redis)
                .await?;
            parse_users(members)
        }
        JobTarget::Retry(pending) => {
            return pending_addresses(redis, job, pending, lookup_batch)
                .await
                .map(Expansion::Recipients);
        }
    };
    all_addresses(redis, job, &users, lookup_batch)
        .await
        .map(Expansion::Recipients)
}

fn parse_users(names: impl IntoIterator<Item = String>) -> Vec<UserId> {
    names
        .into_iter()
        .filter_map(|name| UserId::parse(name).ok())
        .collect()
}

async fn shard_sizes(
    redis: &mut RedisConnection,
    job: &Job,
    group: &GroupId,
    shards: u16,
) -> redis::RedisResult<Vec<u64>> {
    let mut pipe = redis::pipe();
    for shard in 0..shards {
        pipe.scard(group_channel_key(&job.app, group, job.channel, shard));
    }
    pipe.query_async(redis).await
}

/// Every device of every user, `batch` users per round trip.
async fn all_addresses(
    redis: &mut RedisConnection,
    job: &Job,
    users: &[UserId],
    batch: usize,
) -> redis::RedisResult<Vec<Recipient>> {
    let mut recipients = Vec::with_capacity(users.len());
    for chunk in users.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for user in chunk {
            pipe.hgetall(endpoints_key(&job.app, user, job.channel));
        }
        let devices: Vec<HashMap<String, String>> = pipe.query_async(redis).await?;
        for (user, devices) in chunk.iter().zip(devices) {
            let mut devices: Vec<(String, String)> = devices.into_iter().collect();
            devices.sort();
            for (device, address) in devices {
                if let Ok(device) = DeviceId::parse(device) {
                    recipients.push(Recipient {
                        user: user.clone(),
                        device,
                        address: Some(address),
                        attempts: 0,
                    });
                }
            }
        }
    }
    Ok(recipients)
}

/// The current address of each delivery being retried.
async fn pending_addresses(
    redis: &mut RedisConnection,
    job: &Job,
    pending: &[PendingDelivery],
    batch: usize,
) -> redis::RedisResult<Vec<Recipient>> {
    let mut recipients = Vec::with_capacity(pending.len());
    for chunk in pending.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for delivery in chunk {
            pipe.hget(
                endpoints_key(&job.app, &delivery.user, job.channel),
                delivery.device.as_str(),
            );
        }
        let addresses: Vec<Option<String>> = pipe.query_async(redis).await?;
        recipients.extend(
            chunk
                .iter()
                .zip(addresses)
                .map(|(delivery, address)| Recipient {
                    user: delivery.user.clone(),
                    device: delivery.device.clone(),
                    address,
                    attempts: delivery.attempts,
                }),
        );
    }
    Ok(recipients)
}

/// The users a job reaches on a channel where a user holds one address for all devices (the
/// `ws` inbox): every user of the target who has an endpoint on the job's channel, each once,
/// in the target's order. A group's per-channel sets already hold only such users, so groups
/// cost one pipelined `SMEMBERS` per shard and no endpoint reads.
pub async fn users_with_endpoint(
    redis: &mut RedisConnection,
    job: &Job,
    shards: u16,
    batch: usize,
) -> redis::RedisResult<Vec<UserId>> {
    let candidates = match &job.target {
        JobTarget::User(user) => vec![user.clone()],
        JobTarget::Users(users) => users.clone(),
        JobTarget::Retry(pending) => pending
            .iter()
            .map(|delivery| delivery.user.clone())
            .collect(),
        JobTarget::Group(group) => {
            let mut pipe = redis::pipe();
            for shard in 0..shards {
                pipe.smembers(group_channel_key(&job.app, group, job.channel, shard));
            }
            let members: Vec<Vec<String>> = pipe.query_async(redis).await?;
            return Ok(parse_users(members.into_iter().flatten()));
        }
        JobTarget::GroupShard { group, shard } => {
            let members: Vec<String> = redis::cmd("SMEMBERS")
                .arg(group_channel_key(&job.app, group, job.channel, *shard))
                .query_async(redis)
                .await?;
            return Ok(parse_users(members));
        }
    };
    let mut seen = std::collections::HashSet::with_capacity(candidates.len());
    let unique: Vec<UserId> = candidates
        .into_iter()
        .filter(|user| seen.insert(user.clone()))
        .collect();
    let mut users = Vec::with_capacity(unique.len());
    for chunk in unique.chunks(batch.max(1)) {
        let mut pipe = redis::pipe();
        for user in chunk {
            pipe.exists(endpoints_key(&job.app, user, job.channel));
        }
        let present: Vec<bool> = pipe.query_async(redis).await?;
        users.extend(
            chunk
                .iter()
                .zip(present)
                .filter(|(_, present)| *present)
                .map(|(user, _)| user.clone()),
        );
    }
    Ok(users)
}
