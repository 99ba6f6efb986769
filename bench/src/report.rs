//! The results: one table on stdout, the same figures as JSON.

use serde_json::{Map, Value, json};

/// Figures by scenario.
pub struct Report {
    scenarios: Map<String, Value>,
}

/// p50, p99 and max of `values` (sorted here).
pub fn percentiles(values: &mut [f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let at = |fraction: f64| {
        let index = ((values.len() as f64 * fraction).ceil() as usize).saturating_sub(1);
        values[index.min(values.len() - 1)]
    };
    (at(0.50), at(0.99), values[values.len() - 1])
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_default();
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({"cpus": cpus, "cpu": model, "memory_gib": memory_kib / 1024 / 1024})
}

impl Report {
    /// An empty report.
    pub fn new() -> Report {
        Report {
            scenarios: Map::new(),
        }
    }

    /// Adds a scenario's figures (a flat JSON object).
    pub fn add(&mut self, scenario: &str, figures: Value) {
        self.scenarios.insert(scenario.to_owned(), figures);
    }

    /// Prints one line per figure.
    pub fn print(&self) {
        println!("\n{:<10} {:<34} {:>14}", "scenario", "figure", "value");
        println!("{}", "-".repeat(60));
        for (scenario, figures) in &self.scenarios {
            for (name, value) in figures.as_object().into_iter().flatten() {
                let shown = match value {
                    Value::Number(number) => number.as_f64().map_or_else(
                        || number.to_string(),
                        |value| {
                            if value.abs() < 10.0 {
                                format!("{value:.2}")
                            } else {
                                format!("{value:.1}")
                            }
                        },
                    ),
                    other => other.to_string(),
                };
                println!("{scenario:<10} {name:<34} {shown:>14}");
            }
        }
    }

    /// Writes the JSON, with the machine it ran on.
    pub fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let document = json!({"unix_time": at, "machine": machine(), "scenarios": self.scenarios});
        std::fs::write(path, serde_json::to_string_pretty(&document)?)?;
        println!("\nwritten to {}", path.display());
        Ok(())
    }
}
