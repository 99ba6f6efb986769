//! `sprayer-bench`: runs the benchmark scenarios against the real servers (started by
//! `make bench` with the README's own stack script), prints one table and writes the same
//! figures to `bench/results/latest.json` (a run of some scenarios only, to
//! `bench/results/partial-<scenarios>.json`, leaving the full run's figures alone). Every load is
//! bounded in count and time and aims at loopback only.
//!
//! - [`platform`] starts Sprayer's processes (release build) in a fresh namespace;
//! - [`sockets`]: 15,000 WebSockets on one deliverer process and one message to a group of all
//!   of them (RSS per socket, p50/p99 from POST to receipt), and the same broadcast through a
//!   minimal socket.io 4 server with its Redis adapter, measured by the same client harness.

mod accept;
mod arrivals;
mod cpu;
mod efficiency;
mod events;
mod fanout;
mod feedback;
mod latency;
mod orchestration;
mod peers;
mod personal;
mod platform;
mod report;
mod sink;
mod soak;
mod sockets;

use clap::Parser;

/// The scenarios, in the order they run.
const SCENARIOS: [&str; 11] = [
    "accept",
    "fanout",
    "personal",
    "feedback",
    "events",
    "timers",
    "escalation",
    "efficiency",
    "latency",
    "sockets",
    "peer",
];

/// The benchmark scenarios.
#[derive(Parser)]
struct Args {
    /// Scenarios to run (default: all); `soak` runs only when named (`make soak`), alone.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS.iter().chain(&["soak"])))]
    scenarios: Vec<String>,
    /// Minutes of traffic in the soak.
    #[arg(long, default_value_t = 30)]
    soak_minutes: u64,
    /// Messages per second in the soak (about half of what two shared cores take).
    #[arg(long, default_value_t = 200)]
    soak_rate: u32,
    /// Group members in the fan-out scenario.
    #[arg(long, default_value_t = 100_000)]
    fanout_users: usize,
    /// Status events in the feedback scenario.
    #[arg(long, default_value_t = 100_000)]
    feedback_events: usize,
    /// Messages scheduled for the same second in the timers scenario.
    #[arg(long, default_value_t = 100_000)]
    timers: usize,
    /// Group members in the escalation scenario (half of them ack).
    #[arg(long, default_value_t = 10_000)]
    escalation_members: usize,
    /// Sockets in the socket scenarios.
    #[arg(long, default_value_t = 15_000)]
    sockets: usize,
    /// Client processes the sockets are spread over (the open-file cap is per process).
    #[arg(long, default_value_t = 3)]
    client_processes: usize,
    /// Where the JSON goes (default: `bench/results/latest.json` for a run of every scenario,
    /// `bench/results/partial-<scenarios>.json` for some).
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

impl Args {
    /// Whether `name` runs.
    fn wanted(&self, name: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == name)
    }

    /// Where the figures go.
    fn output(&self) -> std::path::PathBuf {
        if let Some(output) = &self.output {
            return output.clone();
        }
        let ran: Vec<&str> = SCENARIOS
            .into_iter()
            .filter(|name| self.wanted(name))
            .collect();
        if ran.len() == SCENARIOS.len() {
            "bench/results/latest.json".into()
        } else {
            format!("bench/results/partial-{}.json", ran.join("-")).into()
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.scenarios.iter().any(|name| name == "soak") {
        anyhow::ensure!(args.scenarios.len() == 1, "the soak runs alone");
        let result = soak::run(args.soak_minutes, args.soak_rate).await?;
        let date =
            &humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10];
        let path = args
            .output
            .clone()
            .unwrap_or_else(|| format!("bench/results/soak-{date}.json").into());
        std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
        std::fs::write(&path, serde_json::to_string_pretty(&result)?)?;
        println!("{}", serde_json::to_string_pretty(&result)?);
        println!("\nwritten to {}", path.display());
        anyhow::ensure!(
            result["passed"] == true,
            "the soak failed: see {}",
            path.display()
        );
        return Ok(());
    }
    let wanted = |name: &str| args.wanted(name);
    let mut report = report::Report::new();
    if wanted("accept") {
        report.add("accept", accept::run().await?);
    }
    if wanted("fanout") {
        settle().await;
        report.add("fanout", fanout::run(args.fanout_users).await?);
    }
    if wanted("personal") {
        settle().await;
        report.add("personal", personal::run(args.fanout_users).await?);
    }
    if wanted("feedback") {
        settle().await;
        report.add("feedback", feedback::run(args.feedback_events).await?);
    }
    if wanted("events") {
        settle().await;
        report.add(
            "events",
            events::run(args.feedback_events, args.fanout_users).await?,
        );
    }
    if wanted("timers") {
        settle().await;
        report.add("timers", orchestration::timers(args.timers).await?);
    }
    if wanted("escalation") {
        settle().await;
        report.add(
            "escalation",
            orchestration::escalation(args.escalation_members, args.client_processes).await?,
        );
    }
    if wanted("efficiency") {
        settle().await;
        report.add("efficiency", efficiency::run().await?);
    }
    if wanted("latency") {
        settle().await;
        report.add("latency", latency::run().await?);
    }
    if wanted("sockets") {
        settle().await;
        let figures = sockets::sprayer(args.sockets, args.client_processes).await?;
        report.add("sockets", figures);
    }
    if wanted("peer") {
        settle().await;
        let figures = sockets::socketio(args.sockets, args.client_processes).await?;
        report.add("peer", figures);
    }
    report.print();
    report.write(&args.output())?;
    Ok(())
}

/// Waits (at most 30 s) until the machine is mostly idle: a scenario's servers go on with its
/// trailing work (the feeder's backlog, MongoDB removing what the last scenario wrote) after it
/// ends, and the next scenario should not measure that.
pub async fn settle() {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        let Some(before) = cpu_times() else { return };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(after) = cpu_times() else { return };
        let total = after.0.saturating_sub(before.0).max(1);
        let idle = after.1.saturating_sub(before.1);
        if idle * 100 / total >= 85 {
            return;
        }
    }
    eprintln!("bench: the machine is still busy after 30 s; going on");
}

/// Total and idle jiffies of all CPUs, from `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
    Some((fields.iter().sum(), idle))
}
