//! CPU time of processes, from `/proc/<pid>/stat` (user + system, every thread): Sprayer's
//! own and the servers of the local stack.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The processes whose CPU a run counts, by the name they are reported under.
pub struct Watched {
    processes: Vec<(&'static str, Vec<u32>)>,
    ticks_per_second: f64,
}

/// CPU seconds per process name at one moment.
#[derive(Clone)]
pub struct Sample {
    at: Instant,
    seconds: BTreeMap<&'static str, f64>,
}

/// CPU used between two samples, per name and in all.
pub struct Used {
    /// CPU seconds per name.
    pub seconds: BTreeMap<&'static str, f64>,
    /// How long the window was.
    pub wall: Duration,
}

/// User + system clock ticks of `pid` and all its threads.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The processes whose command name is `comm`, and whose command line holds `marker` when
/// one is given.
fn by_name(comm: &str, marker: Option<&str>) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == comm)
        })
        .filter(|pid| {
            marker.is_none_or(|marker| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|line| String::from_utf8_lossy(&line).contains(marker))
            })
        })
        .collect()
}

/// The pid written in the stack's `file` (under `.stack/`), when that process runs.
fn stack_pid(file: &str) -> Option<u32> {
    let pid = std::fs::read_to_string(format!(".stack/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    ticks(pid).map(|_| pid)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

impl Watched {
    /// Sprayer's processes (`sprayer` by pid) and the local stack's servers: RabbitMQ (its
    /// Erlang VM), Redis and the MongoDB-compatible server.
    pub fn new(sprayer: &[u32]) -> anyhow::Result<Watched> {
        let rabbitmq = {
            let stack = by_name("beam.smp", Some(".stack/rabbitmq"));
            if stack.is_empty() {
                by_name("beam.smp", Some("rabbit"))
            } else {
                stack
            }
        };
        let redis =
            stack_pid("redis.pid").map_or_else(|| by_name("redis-server", None), |p| vec![p]);
        let mongodb =
            stack_pid("mongo.pid").map_or_else(|| by_name("secantusd-rs", None), |pid| vec![pid]);
        for (name, pids) in [
            ("rabbitmq", &rabbitmq),
            ("redis", &redis),
            ("mongodb", &mongodb),
        ] {
            anyhow::ensure!(
                !pids.is_empty(),
                "cannot find the {name} process to measure"
            );
        }
        Ok(Watched {
            processes: vec![
                ("sprayer", sprayer.to_vec()),
                ("rabbitmq", rabbitmq),
                ("redis", redis),
                ("mongodb", mongodb),
            ],
            ticks_per_second: clock_ticks(),
        })
    }

    /// The CPU seconds each has used so far.
    pub fn sample(&self) -> Sample {
        let seconds = self
            .processes
            .iter()
            .map(|(name, pids)| {
                let ticks: u64 = pids.iter().filter_map(|pid| ticks(*pid)).sum();
                (*name, ticks as f64 / self.ticks_per_second)
            })
            .collect();
        Sample {
            at: Instant::now(),
            seconds,
        }
    }
}

impl Sample {
    /// What was used from `self` to `later`.
    pub fn until(&self, later: &Sample) -> Used {
        Used {
            seconds: later
                .seconds
                .iter()
                .map(|(name, after)| (*name, after - self.seconds.get(name).unwrap_or(after)))
                .collect(),
            wall: later.at.duration_since(self.at),
        }
    }
}

impl Used {
    /// Per name, the lowest of `windows` (of equal length): a process's idle pace, without a
    /// window that caught trailing work.
    pub fn quietest(windows: &[Used]) -> Option<Used> {
        let first = windows.first()?;
        let seconds = first
            .seconds
            .keys()
            .map(|name| {
                let lowest = windows
                    .iter()
                    .filter_map(|window| window.seconds.get(name))
                    .copied()
                    .fold(f64::INFINITY, f64::min);
                (*name, lowest)
            })
            .collect();
        Some(Used {
            seconds,
            wall: first.wall,
        })
    }

    /// The CPU of `self` less what `idle` used at the same pace for as long: what the work
    /// itself cost (the servers' timers and heartbeats run either way).
    pub fn above(&self, idle: &Used) -> Used {
        let scale = self.wall.as_secs_f64() / idle.wall.as_secs_f64().max(1e-9);
        Used {
            seconds: self
                .seconds
                .iter()
                .map(|(name, used)| {
                    let baseline = idle.seconds.get(name).unwrap_or(&0.0) * scale;
                    (*name, (used - baseline).max(0.0))
                })
                .collect(),
            wall: self.wall,
        }
    }

    /// Microseconds of CPU per unit of work, per name and `total`.
    pub fn per_unit(&self, units: u64) -> BTreeMap<&'static str, f64> {
        let units = units.max(1) as f64;
        let mut per: BTreeMap<&'static str, f64> = self
            .seconds
            .iter()
            .map(|(name, seconds)| (*name, seconds * 1e6 / units))
            .collect();
        per.insert("total", self.seconds.values().sum::<f64>() * 1e6 / units);
        per
    }
}
