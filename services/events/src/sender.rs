//! The senders: each enabled event endpoint is served by one task on one events-service replica
//! (a lease in Redis), which reads the app's feed after the endpoint's cursor, POSTs up to
//! `events.batch_max` matching events as one signed batch, and moves the cursor only when the
//! receiver took it, so one batch is in flight per endpoint and order holds.
//!
//! A batch that fails is tried again after the waits of `events.retry_tiers` (or the
//! receiver's `Retry-After`); an endpoint failing for `events.disable_after` is disabled, and an
//! `endpoint.disabled` event goes to the app's feed (and so to its other endpoints). Re-enabled,
//! it resumes from its cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::doc;
use serde_json::json;
use sha2::{Digest, Sha256};
use sprayer_shared::Settings;
use sprayer_shared::amqp::Publisher;
use sprayer_shared::feed::{EndpointDoc, EventDoc, Feed, rfc3339};
use sprayer_shared::model::{
    AppEvent, AppId, EndpointDisabledData, EventType, TypeFilter, event_id, now_ms,
};
use sprayer_shared::mongo::date;
use sprayer_shared::netguard::AddressGuard;
use sprayer_shared::redis::RedisConnection;
use sprayer_shared::signing::signed_headers;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a lease on an endpoint lasts unless renewed.
const LEASE: Duration = Duration::from_secs(15);
/// How often the list of enabled endpoints is read.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for new events before the feed's head is read again (the local writer's head
/// wakes the sender sooner).
const IDLE_POLL: Duration = Duration::from_millis(200);

/// What the senders work with.
pub struct Senders {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The feed.
    pub feed: Feed,
    /// Leases.
    pub redis: RedisConnection,
    /// For `endpoint.disabled` events.
    pub publisher: Arc<Publisher>,
    /// The HTTP client (the webhook address guard resolves its names).
    pub client: reqwest::Client,
    /// This replica's name in leases.
    pub node: String,
    /// The local writer's head.
    pub head: watch::Receiver<i64>,
}

impl Senders {
    /// The HTTP client event batches go out on.
    pub fn client(settings: &Settings) -> reqwest::Result<reqwest::Client> {
        let guard = AddressGuard::new(&settings.webhook.allow_networks);
        reqwest::Client::builder()
            .dns_resolver(guard.resolver())
            .connect_timeout(settings.webhook.connect_timeout)
            .timeout(settings.webhook.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Sprayer/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    fn lease_key(&self, endpoint: &str) -> String {
        format!("{}evlease:{endpoint}", self.settings.amqp.prefix)
    }

    /// Takes or renews the lease on `endpoint`; returns whether this replica holds it.
    async fn hold(&self, endpoint: &str) -> bool {
        let script = redis::Script::new(
            r"local owner = redis.call('GET', KEYS[1])
              if owner == false then
                redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1
              elseif owner == ARGV[1] then
                redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1
              end
              return 0",
        );
        let mut redis = self.redis.clone();
        let held: redis::RedisResult<i64> = script
            .key(self.lease_key(endpoint))
            .arg(&self.node)
            .arg(LEASE.as_millis() as u64)
            .invoke_async(&mut redis)
            .await;
        matches!(held, Ok(1))
    }

    async fn release(&self, endpoint: &str) {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
              return 0",
        );
        let mut redis = self.redis.clone();
        let _: redis::RedisResult<i64> = script
            .key(self.lease_key(endpoint))
            .arg(&self.node)
            .invoke_async(&mut redis)
            .await;
    }
}

/// Serves every enabled endpoint this replica can lease until `shutdown`.
pub async fn run(senders: Arc<Senders>, shutdown: CancellationToken) {
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        running.retain(|_, task| !task.is_finished());
        match enabled_endpoints(&senders.feed).await {
            Ok(ids) => {
                for id in ids {
                    if running.contains_key(&id) || !senders.hold(&id).await {
                        continue;
                    }
                    let task = tokio::spawn(serve(senders.clone(), id.clone(), shutdown.clone()));
                    running.insert(id, task);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list event endpoints"),
        }
        metrics::gauge!("sprayer_event_endpoints_served").set(running.len() as f64);
        if !sprayer_shared::shutdown::sleep_or_cancel(SCAN_EVERY, &shutdown).await {
            break;
        }
    }
    for (_, task) in running {
        let _ = task.await;
    }
}

async fn enabled_endpoints(feed: &Feed) -> mongodb::error::Result<Vec<String>> {
    feed.endpoints
        .clone_with_type::<mongodb::bson::Document>()
        .find(doc! { "enabled": true })
        .projection(doc! { "_id": 1 })
        .await?
        .try_filter_map(
            |endpoint| async move { Ok(endpoint.get_str("_id").ok().map(str::to_owned)) },
        )
        .try_collect()
        .await
}

/// Why a batch was not taken.
struct Refused {
    error: String,
    retry_after: Option<Duration>,
}

/// Serves one endpoint while it is enabled and the lease holds.
async fn serve(senders: Arc<Senders>, id: String, shutdown: CancellationToken) {
    let mut head_changes = senders.head.clone();
    let mut failures: usize = 0;
    while !shutdown.is_cancelled() && senders.hold(&id).await {
        let endpoint = match senders.feed.endpoints.find_one(doc! { "_id": &id }).await {
            Ok(Some(endpoint)) if endpoint.enabled => endpoint,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, endpoint = %id, "cannot read an event endpoint");
                if !sprayer_shared::shutdown::sleep_or_cancel(IDLE_POLL, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        match step(&senders, &endpoint).await {
            Ok(Step::Sent) => failures = 0,
            Ok(Step::Idle) => {
                let _ = tokio::time::timeout(IDLE_POLL, head_changes.changed()).await;
            }
            Err(refused) => {
                failures += 1;
                if fail(&senders, &endpoint, &refused).await {
                    break;
                }
                let tiers = &senders.settings.events.retry_tiers;
                let tier = tiers[(failures - 1).min(tiers.len() - 1)];
                let wait = refused
                    .retry_after
                    .unwrap_or(tier)
                    .min(senders.settings.events.disable_after);
                if !sprayer_shared::shutdown::sleep_or_cancel(wait, &shutdown).await {
                    break;
                }
            }
        }
    }
    senders.release(&id).await;
}

enum Step {
    /// A batch was taken.
    Sent,
    /// Nothing new to send.
    Idle,
}

/// Sends the next batch of `endpoint`, if there is one.
async fn step(senders: &Senders, endpoint: &EndpointDoc) -> Result<Step, Refused> {
    let store = |error: mongodb::error::Error| Refused {
        error: format!("reading the feed: {error}"),
        retry_after: None,
    };
    let head = senders.feed.head().await.map_err(store)?;
    if endpoint.cursor >= head.seq {
        return Ok(Step::Idle);
    }
    let mut after = endpoint.cursor;
    if after < head.trimmed {
        tracing::warn!(endpoint = %endpoint.id, "events after the endpoint's cursor were removed by retention; resuming at the oldest kept");
        metrics::counter!("sprayer_event_endpoint_expired_total").increment(1);
        after = head.trimmed;
    }
    let types = TypeFilter::parse(&endpoint.events).unwrap_or_else(|_| {
        TypeFilter::parse::<&str>(&[]).unwrap_or_else(|_| unreachable!("empty is everything"))
    });
    let limit = senders.settings.events.batch_max;
    let page = senders
        .feed
        .read(
            &endpoint.app,
            after,
            head.seq,
            limit,
            &types,
            endpoint.channels.as_deref(),
        )
        .await
        .map_err(store)?;
    let events = page.events;
    let moved_to = page.through;
    if !events.is_empty() {
        post(senders, endpoint, &events).await?;
        metrics::counter!("sprayer_events_sent_total").increment(events.len() as u64);
    }
    let update = doc! { "$set": {
        "cursor": moved_to,
        "last_success": date(now_ms()),
        "failing_since": null,
        "last_error": null,
    }};
    let moved = senders
        .feed
        .endpoints
        .update_one(
            doc! { "_id": &endpoint.id, "cursor": endpoint.cursor },
            update,
        )
        .await;
    if let Err(error) = moved {
        // The batch went out; it goes out again (same webhook-id) once the cursor can move.
        tracing::warn!(%error, endpoint = %endpoint.id, "cannot move an event endpoint's cursor");
    }
    // Caught up with the head: wait for more; else go on at once.
    Ok(if moved_to >= head.seq {
        Step::Idle
    } else {
        Step::Sent
    })
}

/// The id of a batch: the same events to the same endpoint make the same id.
fn batch_id(endpoint: &str, events: &[EventDoc]) -> String {
    let mut hash = Sha256::new();
    hash.update(endpoint.as_bytes());
    for event in events {
        hash.update(event.seq.to_be_bytes());
    }
    format!("evb_{}", hex::encode(&hash.finalize()[..12]))
}

async fn post(
    senders: &Senders,
    endpoint: &EndpointDoc,
    events: &[EventDoc],
) -> Result<(), Refused> {
    let body = json!({
        "type": "events",
        "timestamp": rfc3339(date(now_ms())),
        "data": {
            "endpoint_id": endpoint.id,
            "events": events.iter().map(EventDoc::to_json).collect::<Vec<_>>(),
        },
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let keys = endpoint.signing_keys(now_ms());
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let id = batch_id(&endpoint.id, events);
    let Some(headers) = signed_headers(&id, now_ms() / 1000, &body, &key_refs) else {
        return Err(Refused {
            error: "the endpoint's secret cannot sign".into(),
            retry_after: None,
        });
    };
    let sent = senders
        .client
        .post(&endpoint.url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            metrics::counter!("sprayer_event_batches_total", "result" => "taken").increment(1);
            Ok(())
        }
        Ok(response) => {
            metrics::counter!("sprayer_event_batches_total", "result" => "refused").increment(1);
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Err(Refused {
                error: format!("receiver answered {}", response.status().as_u16()),
                retry_after,
            })
        }
        Err(error) => {
            metrics::counter!("sprayer_event_batches_total", "result" => "error").increment(1);
            let error = match sprayer_shared::netguard::refused_by_guard(&error) {
                Some(refused) => refused.to_string(),
                None if error.is_timeout() => "the receiver did not answer in time".to_owned(),
                None if error.is_connect() => "cannot connect to the receiver".to_owned(),
                None => format!("sending failed: {error}"),
            };
            Err(Refused {
                error,
                retry_after: None,
            })
        }
    }
}

/// Records a failed batch; disables the endpoint once it has failed for
/// `events.disable_after`. Returns whether it was disabled.
async fn fail(senders: &Senders, endpoint: &EndpointDoc, refused: &Refused) -> bool {
    let now = now_ms();
    let since = endpoint
        .failing_since
        .map_or(now, |since| since.timestamp_millis());
    let disable_after =
        i64::try_from(senders.settings.events.disable_after.as_millis()).unwrap_or(i64::MAX);
    let disable = now - since >= disable_after;
    let mut set = doc! {
        "failing_since": date(since),
        "last_error": &refused.error,
    };
    if disable {
        set.insert("enabled", false);
        set.insert(
            "disabled_reason",
            format!("failing since {}: {}", rfc3339(date(since)), refused.error),
        );
    }
    let updated = senders
        .feed
        .endpoints
        .update_one(doc! { "_id": &endpoint.id }, doc! { "$set": set })
        .await;
    if let Err(error) = updated {
        tracing::warn!(%error, endpoint = %endpoint.id, "cannot record an event endpoint's failure");
    }
    tracing::info!(endpoint = %endpoint.id, error = %refused.error, disable, "event batch refused");
    if disable {
        metrics::counter!("sprayer_event_endpoints_disabled_total").increment(1);
        let Ok(app) = AppId::parse(&endpoint.app) else {
            return true;
        };
        let event = AppEvent {
            app,
            kind: EventType::EndpointDisabled,
            id: event_id(&["endpoint.disabled", &endpoint.id, &since.to_string()]),
            at: now,
            data: serde_json::to_value(EndpointDisabledData {
                endpoint_id: endpoint.id.clone(),
                url: endpoint.url.clone(),
                failing_since: rfc3339(date(since)),
                last_error: refused.error.clone(),
            })
            .unwrap_or_default(),
        };
        if let Err(error) = senders.publisher.publish_app_events(vec![event]).await {
            tracing::warn!(%error, endpoint = %endpoint.id, "cannot publish endpoint.disabled");
        }
    }
    disable
}
