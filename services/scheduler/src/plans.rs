//! Plans read from Redis, kept in memory: a plan never changes once accepted, and a message
//! without one never gets one (the accepter stores a plan before it publishes anything of the
//! message), so both answers can be kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sprayer_shared::model::{MessageId, Plan};
use sprayer_shared::redis::RedisConnection;
use sprayer_shared::schedule::Keys;

/// Most answers kept; the cache starts over when full.
const CAPACITY: usize = 100_000;

/// The plans of messages, and which messages have none.
#[derive(Default)]
pub struct Plans {
    known: Mutex<HashMap<MessageId, Option<Arc<Plan>>>>,
}

impl Plans {
    /// The plans of `messages` (`None` for a message without one), read from Redis in one
    /// round trip for those not known yet.
    pub async fn get(
        &self,
        redis: &mut RedisConnection,
        keys: &Keys,
        messages: &[MessageId],
    ) -> redis::RedisResult<HashMap<MessageId, Option<Arc<Plan>>>> {
        let mut found = HashMap::with_capacity(messages.len());
        let mut missing = Vec::new();
        {
            let known = self
                .known
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            for message in messages {
                match known.get(message) {
                    Some(plan) => {
                        found.insert(message.clone(), plan.clone());
                    }
                    None if !missing.contains(message) => missing.push(message.clone()),
                    None => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let mut pipe = redis::pipe();
        for message in &missing {
            pipe.get(keys.message(message).plan);
        }
        let plans: Vec<Option<String>> = pipe.query_async(redis).await?;
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if known.len() + missing.len() > CAPACITY {
            known.clear();
        }
        for (message, json) in missing.into_iter().zip(plans) {
            let plan = json
                .and_then(|json| serde_json::from_str::<Plan>(&json).ok())
                .map(Arc::new);
            known.insert(message.clone(), plan.clone());
            found.insert(message, plan);
        }
        Ok(found)
    }

    /// Forgets what is known of `message` (a plan that expired, for one).
    pub fn forget(&self, message: &MessageId) {
        self.known
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(message);
    }
}
