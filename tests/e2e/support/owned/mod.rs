//! Servers and Sprayer processes that a fault test owns, on ports of their own, so that
//! stopping them leaves the shared ones alone:
//!
//! - [`rabbitmq`]: a RabbitMQ node (plain or TLS only) or a cluster of them; [`erlang`]: what
//!   a stopped node may leave behind (its VM, its epmd name, its ports), waited out before a
//!   restart.
//! - [`redis`]: a Redis server (plain, TLS or mutual TLS) or a Redis Cluster.
//! - [`mongo`]: a MongoDB-compatible server that can be killed or frozen.
//! - [`process`]: `sprayer run --only ...` processes that can be killed.

use std::time::Duration;

use crate::support::wait::wait_until;

pub mod erlang;
pub mod mongo;
pub mod process;
pub mod rabbitmq;
pub mod redis;

/// Whether something accepts connections on the loopback `port`.
pub async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

async fn wait_port(port: u16, open: bool, within: Duration, what: &str) {
    let reached = wait_until(within, || async {
        (port_open(port).await == open).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "{what} on port {port} did not {} within {within:?}",
        if open { "open" } else { "close" }
    );
}

/// Runs a command as root: directly when the tests run as root, else with `sudo -n`.
fn as_root(program: &str) -> std::process::Command {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0"));
    if root {
        std::process::Command::new(program)
    } else {
        let mut command = std::process::Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

fn signal(pid: u32, name: &str) {
    let status = as_root("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}
