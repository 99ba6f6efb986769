//! Removes events older than `events.retention`, oldest first, and records the highest number
//! removed in the head, so that a cursor from before it is refused as expired rather than
//! silently skipping what it missed.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::doc;
use sprayer_shared::feed::Feed;
use sprayer_shared::model::now_ms;
use sprayer_shared::mongo::date;
use tokio_util::sync::CancellationToken;

/// How often old events are looked for.
const EVERY: Duration = Duration::from_secs(60);

/// Trims until `shutdown`.
pub async fn run(feed: Feed, retention: Duration, shutdown: CancellationToken) {
    while sprayer_shared::shutdown::sleep_or_cancel(EVERY, &shutdown).await {
        if let Err(error) = trim(&feed, retention).await {
            tracing::warn!(%error, "cannot remove old events");
        }
    }
}

/// Removes the events older than `retention`; returns how many.
pub async fn trim(feed: &Feed, retention: Duration) -> mongodb::error::Result<u64> {
    let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    // The newest event to remove: every event numbered up to it goes (numbers follow time
    // closely enough; an event numbered lower but newer goes a little early, never late).
    let newest_old = feed
        .events
        .find(doc! { "at": { "$lt": date(cutoff) } })
        .sort(doc! { "seq": -1 })
        .limit(1)
        .await?
        .try_next()
        .await?;
    let Some(newest_old) = newest_old else {
        return Ok(0);
    };
    // Trimmed first: a reader between the two steps is told its cursor expired rather than
    // reading past a hole.
    feed.set_trimmed(newest_old.seq).await?;
    let removed = feed
        .events
        .delete_many(doc! { "seq": { "$lte": newest_old.seq } })
        .await?
        .deleted_count;
    metrics::counter!("sprayer_events_removed_total").increment(removed);
    Ok(removed)
}
