//! Pipelines on a Redis Cluster. The redis crate sends a pipeline to one node and refuses one
//! whose commands name keys of several hash slots ("Received crossed slots in pipeline"). The
//! pipelines here read or write many users at once (endpoints, inboxes, `conn:` entries) and
//! group shards that carry no hash tag, so they are split: the commands of each slot go
//! together, in their order, as one pipeline, the parts run at once (their requests share one
//! multiplexed connection per node), and the replies come back in the order of the commands.
//! A pipeline of one slot goes as it is. Commands of different slots were never atomic
//! together (a pipeline is not a transaction), so nothing is lost by the split; each command
//! itself must keep to one slot, as every command Sprayer pipelines does.

use std::collections::HashMap;

use futures::StreamExt;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};

/// Parts of one split pipeline in flight at once.
const PARTS_IN_FLIGHT: usize = 64;

/// Commands that name no key (a keyless command goes with the next command that names one, so
/// that a `SCRIPT LOAD` reaches the node of the `EVALSHA` after it).
const KEYLESS: [&[u8]; 8] = [
    b"SCRIPT", b"PING", b"ECHO", b"TIME", b"INFO", b"CLUSTER", b"CLIENT", b"CONFIG",
];

/// The key a command is routed by: its first argument, or for scripts the first of `KEYS`;
/// `None` for commands without keys.
fn routing_key(command: &Cmd) -> Option<&[u8]> {
    let mut args = command.args_iter().map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()??;
    if KEYLESS
        .iter()
        .any(|keyless| name.eq_ignore_ascii_case(keyless))
    {
        return None;
    }
    let script = [
        &b"EVAL"[..],
        b"EVALSHA",
        b"EVAL_RO",
        b"EVALSHA_RO",
        b"FCALL",
        b"FCALL_RO",
    ];
    if script.iter().any(|known| name.eq_ignore_ascii_case(known)) {
        let _body_or_sha = args.next()?;
        let count: usize = std::str::from_utf8(args.next()??).ok()?.parse().ok()?;
        return if count == 0 { None } else { args.next()? };
    }
    args.next()?
}

/// The commands of `pipeline` by slot, each part in command order, parts in the order their
/// first command comes; keyless commands join the part of the next command with a key (or the
/// last part when none follows).
pub(super) fn parts(pipeline: &Pipeline) -> Vec<Vec<usize>> {
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut by_slot: HashMap<Slot, usize> = HashMap::new();
    let mut keyless = Vec::new();
    for (index, command) in pipeline.cmd_iter().enumerate() {
        let Some(key) = routing_key(command) else {
            keyless.push(index);
            continue;
        };
        let part = *by_slot.entry(Slot::for_key(key)).or_insert_with(|| {
            parts.push(Vec::new());
            parts.len() - 1
        });
        parts[part].append(&mut keyless);
        parts[part].push(index);
    }
    if !keyless.is_empty() {
        match parts.last_mut() {
            Some(last) => last.append(&mut keyless),
            None => parts.push(keyless),
        }
    }
    parts
}

/// Runs a (non-transaction) pipeline on a cluster, one part per slot; every reply, in order.
pub(super) async fn query_by_slot(
    connection: ClusterConnection,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    let parts = parts(pipeline);
    if parts.len() <= 1 {
        let mut connection = connection;
        return connection
            .req_packed_commands(pipeline, 0, pipeline.len())
            .await;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut replies: Vec<Option<Value>> = vec![None; commands.len()];
    let mut answers = futures::stream::iter(parts.into_iter().map(|indices| {
        let mut part = Pipeline::with_capacity(indices.len());
        for &index in &indices {
            part.add_command(commands[index].clone());
        }
        let mut connection = connection.clone();
        async move {
            let values = connection.req_packed_commands(&part, 0, part.len()).await?;
            RedisResult::Ok((indices, values))
        }
    }))
    .buffer_unordered(PARTS_IN_FLIGHT);
    while let Some(answer) = answers.next().await {
        let (indices, values) = answer?;
        for (index, value) in indices.into_iter().zip(values) {
            replies[index] = Some(value);
        }
    }
    replies
        .into_iter()
        .map(|reply| {
            reply.ok_or_else(|| {
                RedisError::from((ErrorKind::Client, "a cluster pipeline reply is missing"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_is_split_by_slot_and_keeps_the_order_within_each_part() {
        let mut pipeline = redis::pipe();
        pipeline
            .hgetall("ep:{a:u1}:http")
            .hgetall("ep:{a:u2}:http")
            .sadd("ugrp:{a:u1}", "g")
            .cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 1")
            .cmd("EVALSHA")
            .arg("sha")
            .arg(2)
            .arg("inbox:{a:u2}")
            .arg("inbox:{a:u2}:m")
            .cmd("EVALSHA")
            .arg("sha")
            .arg(0)
            .publish("node:n1", "x");
        let parts = parts(&pipeline);
        // u1's two keys share a slot; u2's endpoint and inbox too, with the SCRIPT LOAD that
        // precedes its EVALSHA; a script without keys is keyless and joins the next part.
        assert_eq!(parts[0], vec![0, 2]);
        assert_eq!(parts[1], vec![1, 3, 4]);
        assert_eq!(parts[2..].concat(), vec![5, 6]);
        let all: usize = parts.iter().map(Vec::len).sum();
        assert_eq!(all, pipeline.len());
    }

    #[test]
    fn keys_of_one_user_share_a_slot_and_untagged_shards_do_not() {
        assert_eq!(
            Slot::for_key("ep:{a:u1}:http"),
            Slot::for_key("inbox:{a:u1}:acked")
        );
        let shards: std::collections::HashSet<Slot> = (0..64)
            .map(|shard| Slot::for_key(format!("grp:a:g:http:{shard}")))
            .collect();
        assert!(shards.len() > 32, "shards spread over slots");
    }

    #[test]
    fn a_pipeline_of_keyless_commands_is_one_part() {
        let mut pipeline = redis::pipe();
        pipeline.cmd("PING").cmd("PING");
        assert_eq!(parts(&pipeline), vec![vec![0, 1]]);
        assert!(parts(&redis::pipe()).is_empty());
    }
}
