//! The per-app throttle toward a provider: a concurrency limit and a pace (sends per second), so
//! one app's burst neither starves the others nor gets its provider account throttled. Its
//! numbers come from the `dispatcher` settings (`app_concurrency`, `app_rate_per_second`); not
//! to be confused with `sprayer_shared::config::AppLimits`, an app's own limits on API requests
//! and target sizes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sprayer_shared::model::AppId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// One app's sends in flight and the earliest start of its next send.
struct AppTurns {
    permits: Arc<Semaphore>,
    next_slot: Mutex<Instant>,
}

/// The throttles of every app seen by this dispatcher.
pub struct AppThrottle {
    concurrency: usize,
    interval: Option<Duration>,
    apps: Mutex<HashMap<AppId, Arc<AppTurns>>>,
}

impl AppThrottle {
    /// `concurrency` sends in flight per app, at most `rate_per_second` started per second
    /// (0: no pace).
    pub fn new(concurrency: usize, rate_per_second: u32) -> AppThrottle {
        AppThrottle {
            concurrency: concurrency.max(1),
            interval: (rate_per_second > 0).then(|| Duration::from_secs(1) / rate_per_second),
            apps: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `app`'s turn; the send may go while the permit is held.
    pub async fn acquire(&self, app: &AppId) -> Option<OwnedSemaphorePermit> {
        let turns = {
            let mut apps = self
                .apps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            apps.entry(app.clone())
                .or_insert_with(|| {
                    Arc::new(AppTurns {
                        permits: Arc::new(Semaphore::new(self.concurrency)),
                        next_slot: Mutex::new(Instant::now()),
                    })
                })
                .clone()
        };
        let permit = turns.permits.clone().acquire_owned().await.ok()?;
        if let Some(interval) = self.interval {
            let slot = {
                let mut next = turns
                    .next_slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let slot = (*next).max(Instant::now());
                *next = slot + interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
        Some(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pace_spreads_sends_over_time() {
        let throttle = AppThrottle::new(100, 10);
        let app = AppId::parse("a").expect("valid");
        let started = Instant::now();
        for _ in 0..21 {
            let _permit = throttle.acquire(&app).await.expect("permit");
        }
        // 21 sends at 10 per second: the last starts 2 s after the first.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let other = AppId::parse("b").expect("valid");
        let before = Instant::now();
        let _permit = throttle.acquire(&other).await.expect("permit");
        assert_eq!(
            before.elapsed(),
            Duration::ZERO,
            "another app has its own pace"
        );
    }
}
