//! Scenarios 4 and 5: many WebSockets on one server process, then one message to all of them.
//! The same client harness (`ws-clients`, several processes) measures Sprayer's deliverer and a
//! minimal socket.io 4 server with its Redis adapter (`bench/socketio/server.js`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::platform::{Platform, binary, rss_kib, start_until};
use crate::report::percentiles;

/// How long clients may take to open and to receive.
const CLIENT_TIMEOUT_S: u64 = 180;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// With `BENCH_PROFILE_PAUSE=<seconds>`, waits that long before the broadcast, so that a
/// profiler can be attached to the server (`perf record -g -p <pid>`).
async fn pause_for_profiler(scenario: &str, pid: u32) {
    if let Some(seconds) = std::env::var("BENCH_PROFILE_PAUSE")
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
    {
        eprintln!("{scenario}: broadcasting in {seconds}s; server pid {pid}");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}

/// CPU time (user + system, ms) of every process on the machine, by command name.
fn cpu_by_process() -> std::collections::HashMap<String, u64> {
    let mut totals = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return totals;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields
                .get(12)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        *totals.entry(name).or_insert(0) += ticks * 10;
    }
    totals
}

/// With `BENCH_CPU=1`, prints the CPU each kind of process used between `before` and now.
fn print_cpu(scenario: &str, before: &std::collections::HashMap<String, u64>) {
    if std::env::var("BENCH_CPU").is_err() {
        return;
    }
    let after = cpu_by_process();
    let mut used: Vec<(String, u64)> = after
        .into_iter()
        .map(|(name, ms)| {
            let earlier = before.get(&name).copied().unwrap_or(0);
            (name, ms.saturating_sub(earlier))
        })
        .filter(|(_, ms)| *ms > 0)
        .collect();
    used.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    eprintln!("{scenario}: CPU ms during the broadcast: {used:?}");
}

pub struct Clients {
    processes: Vec<(Child, Lines<BufReader<ChildStdout>>)>,
}

impl Clients {
    /// Starts `processes` client processes sharing `count` sockets; returns once all are open.
    /// With `ack`, each socket acks the message it receives.
    pub async fn open(
        protocol: &str,
        url: &str,
        tokens: Option<&[String]>,
        count: usize,
        processes: usize,
        ack: bool,
    ) -> anyhow::Result<(Clients, usize)> {
        let dir = std::env::temp_dir().join(format!("sprayer-bench-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let per_process = count.div_ceil(processes.max(1));
        let mut started = Vec::new();
        for index in 0..processes.max(1) {
            let first = index * per_process;
            let share = per_process.min(count.saturating_sub(first));
            if share == 0 {
                break;
            }
            let mut command = Command::new(binary("ws-clients")?);
            command
                .args(["--protocol", protocol, "--url", url])
                .args(["--count", &share.to_string()])
                .args(["--timeout", &CLIENT_TIMEOUT_S.to_string()]);
            if ack {
                command.arg("--ack");
            }
            if let Some(tokens) = tokens {
                let file = dir.join(format!("tokens-{index}"));
                std::fs::write(&file, tokens[first..first + share].join("\n"))?;
                command.arg("--tokens").arg(file);
            }
            let mut child = command
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting ws-clients")?;
            let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
            started.push((child, lines));
        }
        let mut open = 0;
        for (_, lines) in &mut started {
            let ready = next_with(lines, "READY ").await?;
            open += ready.trim().parse::<usize>().unwrap_or(0);
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok((Clients { processes: started }, open))
    }

    /// The receipt times of every client process.
    pub async fn results(mut self) -> anyhow::Result<Vec<u64>> {
        let mut all = Vec::new();
        for (_, lines) in &mut self.processes {
            let result: Value = serde_json::from_str(&next_with(lines, "RESULT ").await?)?;
            all.extend(
                result["at_us"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_u64),
            );
        }
        for (child, _) in &mut self.processes {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        Ok(all)
    }
}

async fn next_with(
    lines: &mut Lines<BufReader<ChildStdout>>,
    prefix: &str,
) -> anyhow::Result<String> {
    let within = Duration::from_secs(CLIENT_TIMEOUT_S + 30);
    tokio::time::timeout(within, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix(prefix) {
                return Some(rest.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .with_context(|| format!("a client process never printed {prefix:?}"))
}

fn figures(open: usize, rss_before: u64, rss_after: u64, sent_at: u64, received: &[u64]) -> Value {
    let mut latencies: Vec<f64> = received
        .iter()
        .map(|at| at.saturating_sub(sent_at) as f64 / 1000.0)
        .collect();
    let (p50, p99, max) = percentiles(&mut latencies);
    let first = latencies.first().copied().unwrap_or(f64::NAN);
    let per_socket = rss_after.saturating_sub(rss_before) as f64 / open.max(1) as f64;
    json!({
        "sockets_open": open,
        "received": received.len(),
        "rss_per_socket_kib": per_socket,
        "rss_mib": rss_after as f64 / 1024.0,
        "first_ms": first,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    })
}

/// Sprayer: `sockets` users with an inbox in one group, a socket each on one deliverer, one
/// message to the group.
pub async fn sprayer(sockets: usize, processes: usize) -> anyhow::Result<Value> {
    let platform = Platform::start().await?;
    let setup = Instant::now();
    let tokens = platform.ws_users(sockets, "everyone").await?;
    eprintln!("sockets: {sockets} users ready in {:.1?}", setup.elapsed());
    let pid = platform.deliverer_pid();
    let rss_before = rss_kib(pid);
    let (clients, open) = Clients::open(
        "sprayer",
        &platform.ws,
        Some(&tokens),
        sockets,
        processes,
        false,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    eprintln!(
        "sockets: {open} open, deliverer RSS {} MiB",
        rss_after / 1024
    );
    pause_for_profiler("sockets", pid).await;
    let cpu_before = cpu_by_process();
    let sent_at = now_us();
    platform
        .send(&json!({
            "to": {"group": "everyone"}, "channels": ["ws"],
            "content": {"title": "bench", "body": "one message to every socket"},
        }))
        .await?;
    let received = clients.results().await?;
    print_cpu("sockets", &cpu_before);
    platform.stop().await;
    Ok(figures(open, rss_before, rss_after, sent_at, &received))
}

/// socket.io 4 with its Redis adapter: the same sockets and broadcast.
pub async fn socketio(sockets: usize, processes: usize) -> anyhow::Result<Value> {
    let server = std::path::Path::new("bench/socketio/server.js");
    anyhow::ensure!(
        std::path::Path::new("bench/socketio/node_modules/socket.io").exists(),
        "bench/socketio/node_modules is missing: run `make bench` (it runs npm ci there)"
    );
    let mut command = Command::new("node");
    command.arg(server).arg("redis://127.0.0.1:6379");
    let (mut node, printed) = start_until(command, &["LISTENING "]).await?;
    let pid = node.id().context("node pid")?;
    let base = format!("127.0.0.1:{}", printed[0].trim());
    let rss_before = rss_kib(pid);
    let (clients, open) = Clients::open(
        "socketio",
        &format!("ws://{base}"),
        None,
        sockets,
        processes,
        false,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    eprintln!("peer: {open} open, socket.io RSS {} MiB", rss_after / 1024);
    pause_for_profiler("peer", pid).await;
    let cpu_before = cpu_by_process();
    let sent_at = now_us();
    reqwest::Client::new()
        .post(format!("http://{base}/broadcast"))
        .send()
        .await?
        .error_for_status()?;
    let received = clients.results().await?;
    print_cpu("peer", &cpu_before);
    let _ = node.start_kill();
    let _ = node.wait().await;
    Ok(figures(open, rss_before, rss_after, sent_at, &received))
}
