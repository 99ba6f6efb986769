//! `GET /admin/v1/stats`: traffic and feedback per app over a recent window, in time buckets,
//! with the queue depths of the last RabbitMQ poll. What the operator console draws.
//!
//! Accepted messages are counted by their record's `created` time (`messages`), deliveries by
//! the time of their current status (`updated` in `deliveries`), one aggregation each, grouped by
//! app and bucket on the server.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};
use sprayer_shared::model::now_ms;
use utoipa::{IntoParams, ToSchema};

use crate::extract::QueryParams;
use crate::problem::{ApiError, Problem};
use crate::queues::QueueDepth;
use crate::state::{Admin, AppState};

/// How far back the stats reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum Window {
    /// The last 15 minutes, in 1-minute buckets.
    #[serde(rename = "15m")]
    Minutes15,
    /// The last hour, in 1-minute buckets.
    #[default]
    #[serde(rename = "1h")]
    Hour1,
    /// The last 6 hours, in 5-minute buckets.
    #[serde(rename = "6h")]
    Hours6,
    /// The last 24 hours, in 15-minute buckets.
    #[serde(rename = "24h")]
    Hours24,
}

impl Window {
    /// The window's name as in the query.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minutes15 => "15m",
            Window::Hour1 => "1h",
            Window::Hours6 => "6h",
            Window::Hours24 => "24h",
        }
    }

    /// The length of the window and of its buckets.
    fn spans(self) -> (Duration, Duration) {
        let minutes = |count: u64| Duration::from_secs(60 * count);
        match self {
            Window::Minutes15 => (minutes(15), minutes(1)),
            Window::Hour1 => (minutes(60), minutes(1)),
            Window::Hours6 => (minutes(360), minutes(5)),
            Window::Hours24 => (minutes(1440), minutes(15)),
        }
    }
}

/// The stats query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How far back: `15m`, `1h` (default), `6h` or `24h`.
    #[param(inline)]
    pub window: Option<Window>,
}

/// Traffic and feedback over a window, and the queues now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    /// The window: `15m`, `1h`, `6h` or `24h`.
    pub window: String,
    /// The length of one bucket, in seconds.
    pub bucket_seconds: u64,
    /// The start of the first bucket (RFC 3339); buckets follow each other without gaps.
    pub start: String,
    /// How many buckets every series has, oldest first; the last one is still filling.
    pub buckets: usize,
    /// Apps with messages accepted or feedback recorded in the window, the busiest first.
    pub apps: Vec<AppStats>,
    /// When RabbitMQ last answered the queue poll (RFC 3339); absent before its first answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queues_polled_at: Option<String>,
    /// Every queue of the served channels and of the status path, by role name (without the
    /// installation's prefix), as last polled: per channel its jobs, retry tiers (shortest
    /// first) and dead letters, then `status` and `status.dead`.
    pub queues: Vec<QueueView>,
    /// The dead-letter queues (`jobs.<channel>.dead`, `status.dead`), as last polled.
    pub dead_letters: Vec<QueueView>,
    /// Every app's event endpoints with their state, the ones in trouble first.
    pub event_endpoints: Vec<EventEndpointState>,
    /// The scheduler's timers.
    pub timers: TimerStats,
}

/// The scheduler's timers: scheduled sends, step deadlines, steps about to start.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimerStats {
    /// Timers not yet fired (claimed ones among them).
    pub pending: u64,
    /// Timers due over a second ago and not claimed: firing is behind, or no scheduler runs.
    pub overdue: u64,
}

/// Counts the timers of every shard in one round trip.
async fn timer_stats(state: &AppState) -> Result<TimerStats, ApiError> {
    let keys = sprayer_shared::schedule::Keys::new(&state.settings.amqp.prefix);
    let late = sprayer_shared::model::now_ms() - 1_000;
    let mut pipe = redis::pipe();
    for shard in 0..sprayer_shared::schedule::SHARDS {
        pipe.zcard(keys.timers(shard));
        pipe.zcount(keys.timers(shard), "-inf", late);
    }
    let mut redis = state.redis.clone();
    let counts: Vec<u64> = pipe
        .query_async(&mut redis)
        .await
        .map_err(|error| ApiError::unavailable("redis", &error))?;
    Ok(TimerStats {
        pending: counts.iter().step_by(2).sum(),
        overdue: counts.iter().skip(1).step_by(2).sum(),
    })
}

/// One event endpoint as the console shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventEndpointState {
    /// The app id.
    pub app: String,
    /// The endpoint id.
    pub id: String,
    /// Where batches go.
    pub url: String,
    /// Whether batches are sent.
    pub enabled: bool,
    /// The app's events after its cursor (counted up to 1,000).
    pub lag: u64,
    /// Since when batches have been failing (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When a batch was last taken (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Why Sprayer disabled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// One app's traffic and feedback, per bucket.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppStats {
    /// The app id.
    pub id: String,
    /// The app's name (its id when the app is gone).
    pub name: String,
    /// Messages accepted in each bucket.
    pub accepted: Vec<u64>,
    /// Deliveries whose current status was reached in each bucket, per status.
    pub deliveries: BTreeMap<String, Vec<u64>>,
}

/// One queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// The queue's role name: `jobs.http`, `jobs.http.retry.10s`, `jobs.http.dead`, `status`...
    pub queue: String,
    /// Messages waiting.
    pub messages: u64,
    /// Consumers attached.
    pub consumers: u64,
}

/// Traffic and feedback per app over a recent window, and the queue depths.
#[utoipa::path(
    get, path = "/admin/v1/stats", tag = "admin",
    params(StatsQuery),
    responses(
        (status = 200, body = StatsView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown window or parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_token" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    _admin: Admin,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<StatsView>, ApiError> {
    let window = query.window.unwrap_or_default();
    let (length, bucket) = window.spans();
    let timeline = Timeline::ending_now(length, bucket);
    let accepted = count_per_bucket(&state, &timeline, Counted::Accepted).await?;
    let delivered = count_per_bucket(&state, &timeline, Counted::Deliveries).await?;
    let names: HashMap<String, String> = state
        .apps
        .list()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .into_iter()
        .map(|app| (app.id, app.name))
        .collect();

    let mut apps: BTreeMap<String, AppStats> = BTreeMap::new();
    let buckets = timeline.buckets;
    for row in accepted {
        app_entry(&mut apps, &names, buckets, row.app).accepted[row.bucket] += row.count;
    }
    for row in delivered {
        let series = app_entry(&mut apps, &names, buckets, row.app)
            .deliveries
            .entry(row.status)
            .or_insert_with(|| vec![0; timeline.buckets]);
        series[row.bucket] += row.count;
    }
    let mut apps: Vec<AppStats> = apps.into_values().collect();
    let activity = |app: &AppStats| {
        app.accepted.iter().sum::<u64>() + app.deliveries.values().flatten().sum::<u64>()
    };
    apps.sort_by(|a, b| activity(b).cmp(&activity(a)).then_with(|| a.id.cmp(&b.id)));

    let event_endpoints = event_endpoints(&state).await?;
    let timers = timer_stats(&state).await?;
    let polled = state.queues.snapshot();
    let view = |(queue, depth): &(String, QueueDepth)| QueueView {
        queue: queue.clone(),
        messages: u64::from(depth.messages),
        consumers: u64::from(depth.consumers),
    };
    Ok(Json(StatsView {
        window: window.as_str().to_owned(),
        bucket_seconds: bucket.as_secs(),
        start: rfc3339(timeline.start_ms),
        buckets: timeline.buckets,
        apps,
        queues_polled_at: polled.polled_at.map(rfc3339),
        queues: polled.queues.iter().map(view).collect(),
        dead_letters: polled
            .queues
            .iter()
            .filter(|(queue, _)| queue.ends_with(".dead"))
            .map(view)
            .collect(),
        event_endpoints,
        timers,
    }))
}

/// Every event endpoint: disabled ones first, then failing ones, then by lag.
async fn event_endpoints(state: &AppState) -> Result<Vec<EventEndpointState>, ApiError> {
    use futures::TryStreamExt;
    let feed = sprayer_shared::feed::Feed::new(&state.mongo);
    let stored: Vec<sprayer_shared::feed::EndpointDoc> = feed
        .endpoints
        .find(mongodb::bson::doc! {})
        .limit(500)
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?
        .try_collect()
        .await
        .map_err(|error| ApiError::unavailable("mongodb", &error))?;
    let mut endpoints = Vec::with_capacity(stored.len());
    for endpoint in stored {
        let lag = crate::routes::events::lag(&feed, &endpoint).await;
        let time = |at: Option<mongodb::bson::DateTime>| at.map(sprayer_shared::feed::rfc3339);
        endpoints.push(EventEndpointState {
            lag,
            failing_since: time(endpoint.failing_since),
            last_success: time(endpoint.last_success),
            app: endpoint.app,
            id: endpoint.id,
            url: endpoint.url,
            enabled: endpoint.enabled,
            last_error: endpoint.last_error,
            disabled_reason: endpoint.disabled_reason,
        });
    }
    endpoints.sort_by_key(|endpoint| {
        (
            endpoint.enabled,
            endpoint.failing_since.is_none(),
            std::cmp::Reverse(endpoint.lag),
        )
    });
    Ok(endpoints)
}

/// The app's stats, made empty on first use.
fn app_entry<'a>(
    apps: &'a mut BTreeMap<String, AppStats>,
    names: &HashMap<String, String>,
    buckets: usize,
    id: String,
) -> &'a mut AppStats {
    apps.entry(id.clone()).or_insert_with(|| AppStats {
        name: names.get(&id).cloned().unwrap_or_else(|| id.clone()),
        id,
        accepted: vec![0; buckets],
        deliveries: BTreeMap::new(),
    })
}

/// Buckets aligned on multiples of their length since the epoch, the last one holding now.
struct Timeline {
    start_ms: i64,
    bucket_ms: i64,
    buckets: usize,
}

impl Timeline {
    fn ending_now(length: Duration, bucket: Duration) -> Timeline {
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(60_000).max(1);
        let buckets = usize::try_from(length.as_millis() / bucket.as_millis().max(1))
            .unwrap_or(1)
            .max(1);
        let now = now_ms();
        let last = now - now.rem_euclid(bucket_ms);
        Timeline {
            start_ms: last - bucket_ms * (buckets as i64 - 1),
            bucket_ms,
            buckets,
        }
    }

    /// The index of the bucket starting at `bucket_start_ms`, if it is in the window.
    fn index(&self, bucket_start_ms: i64) -> Option<usize> {
        let offset = bucket_start_ms - self.start_ms;
        if offset < 0 {
            return None;
        }
        usize::try_from(offset / self.bucket_ms)
            .ok()
            .filter(|index| *index < self.buckets)
    }
}

#[derive(Clone, Copy)]
enum Counted {
    /// `messages` by `created`.
    Accepted,
    /// `deliveries` by `updated` and status.
    Deliveries,
}

/// One group of the aggregation: an app's count in one bucket (of one status).
struct Row {
    app: String,
    status: String,
    bucket: usize,
    count: u64,
}

/// How long an aggregation may run before the answer is 503.
const QUERY_TIME: Duration = Duration::from_secs(10);

async fn count_per_bucket(
    state: &AppState,
    timeline: &Timeline,
    counted: Counted,
) -> Result<Vec<Row>, ApiError> {
    let (time, group) = match counted {
        Counted::Accepted => ("created", doc! { "app": "$app" }),
        Counted::Deliveries => ("updated", doc! { "app": "$app", "status": "$status" }),
    };
    let mut group = group;
    let at = doc! { "$toLong": format!("${time}") };
    group.insert(
        "bucket",
        doc! { "$subtract": [at.clone(), { "$mod": [at, timeline.bucket_ms] }] },
    );
    let pipeline = vec![
        doc! { "$match": { time: { "$gte": sprayer_shared::mongo::date(timeline.start_ms) } } },
        doc! { "$group": { "_id": group, "count": { "$sum": 1 } } },
    ];
    let unavailable = |error: mongodb::error::Error| ApiError::unavailable("mongodb", &error);
    let groups: Vec<Document> = match counted {
        Counted::Accepted => {
            state
                .mongo
                .messages
                .aggregate(pipeline)
                .max_time(QUERY_TIME)
                .await
        }
        Counted::Deliveries => {
            state
                .mongo
                .deliveries
                .aggregate(pipeline)
                .max_time(QUERY_TIME)
                .await
        }
    }
    .map_err(unavailable)?
    .try_collect()
    .await
    .map_err(unavailable)?;
    Ok(groups
        .iter()
        .filter_map(|group| {
            let key = group.get_document("_id").ok()?;
            Some(Row {
                app: key.get_str("app").ok()?.to_owned(),
                status: key.get_str("status").unwrap_or_default().to_owned(),
                bucket: timeline.index(integer(key.get("bucket")?)?)?,
                count: u64::try_from(integer(group.get("count")?)?).ok()?,
            })
        })
        .collect())
}

/// A BSON number as an integer (servers answer sums and differences as int32, int64 or double).
fn integer(value: &Bson) -> Option<i64> {
    match value {
        Bson::Int32(value) => Some(i64::from(*value)),
        Bson::Int64(value) => Some(*value),
        Bson::Double(value) if value.is_finite() => Some(*value as i64),
        _ => None,
    }
}

fn rfc3339(ms: i64) -> String {
    sprayer_shared::mongo::date(ms)
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_window_and_end_with_now() {
        let timeline = Timeline::ending_now(Duration::from_secs(3600), Duration::from_secs(60));
        assert_eq!(timeline.buckets, 60);
        assert_eq!(timeline.start_ms % 60_000, 0);
        let now = now_ms();
        assert_eq!(timeline.index(now - now % 60_000), Some(59));
        assert_eq!(timeline.index(timeline.start_ms), Some(0));
        assert_eq!(timeline.index(timeline.start_ms - 60_000), None);
        assert_eq!(timeline.index(now + 120_000), None);
    }

    #[test]
    fn windows_read_as_in_the_query() {
        for window in [
            Window::Minutes15,
            Window::Hour1,
            Window::Hours6,
            Window::Hours24,
        ] {
            let read: Window =
                serde_json::from_value(serde_json::json!(window.as_str())).expect("a window");
            assert_eq!(read, window);
            let (length, bucket) = window.spans();
            assert!(length.as_secs() / bucket.as_secs() <= 96);
        }
    }

    #[test]
    fn the_admin_document_names_the_windows_and_the_answers() {
        let document = crate::routes::admin_document();
        let operation = &document["paths"]["/admin/v1/stats"]["get"];
        for status in ["200", "401", "422", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{status}: {operation}"
            );
        }
        let window = &operation["parameters"][0];
        assert_eq!(window["name"], "window");
        assert_eq!(
            window["schema"]["enum"],
            serde_json::json!(["15m", "1h", "6h", "24h"])
        );
        assert!(document["components"]["schemas"]["StatsView"].is_object());
    }
}
