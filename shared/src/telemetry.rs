//! Logs and metrics: `init` once per process, then `tracing` macros and the `metrics` facade.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetrySettings;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the log subscriber (text or JSON, filtered by `RUST_LOG` or the settings) and the
/// Prometheus recorder. Calling it again is harmless: the first call wins.
pub fn init(service: &'static str, settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if settings.json {
        registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer()).try_init()
    };
    if installed.is_ok() {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
    }
    metrics_handle();
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a host process embedding Sprayer): the
        // handle then renders only what this recorder sees, which is still well-formed.
        let _ = metrics::set_global_recorder(recorder);
        // A histogram keeps every sample until upkeep folds it into the buckets; a scrape of
        // /metrics does, but nothing guarantees one, and without it the process grows with
        // every message (the 30-minute soak found ~1.2 MB a minute at 200 messages/s).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    /// Resident memory of this process, in KiB.
    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Histogram samples recorded with nobody scraping `/metrics` do not pile up: 3,000,000
    /// samples (24 MB kept as they were) in rounds, each after the last was folded in, leave
    /// the process about as large as one round does.
    #[test]
    fn unscraped_histograms_do_not_grow_the_process() {
        let _ = super::metrics_handle();
        let record = || {
            for n in 0..300_000 {
                metrics::histogram!("sprayer_test_upkeep_seconds").record(f64::from(n % 100) / 1e3);
            }
        };
        // One round first, so the allocator holds what a round needs.
        record();
        std::thread::sleep(super::UPKEEP_INTERVAL * 2);
        let before = rss_kib();
        for _ in 0..10 {
            record();
            std::thread::sleep(super::UPKEEP_INTERVAL + std::time::Duration::from_millis(300));
        }
        let grown = rss_kib().saturating_sub(before);
        assert!(
            grown < 8 * 1024,
            "the process grew {grown} KiB over 3,000,000 unscraped samples"
        );
    }
}
