//! A Redis server of the test's own (plain, TLS only or mutual TLS) and a Redis Cluster of
//! such servers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{signal, wait_port};
use crate::support::local::{TempDir, free_port};
use crate::support::wait::wait_until;

/// A Redis server of the test's own, with an append-only file so that a restart keeps its data.
pub struct OwnedRedis {
    /// Its port.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// With TLS only: the folder of `server.pem`, `server.key` and `ca.pem`.
    tls: Option<PathBuf>,
    /// Over TLS, whether clients must show a certificate of the CA.
    mutual: bool,
}

impl OwnedRedis {
    /// Starts a fresh server.
    pub async fn start() -> OwnedRedis {
        Self::start_with(None, false).await
    }

    /// Starts a fresh server that speaks TLS only, with the certificate and key in
    /// `certificates` (`server.pem`, `server.key`; clients are not asked for certificates).
    pub async fn start_tls(certificates: &Path) -> OwnedRedis {
        Self::start_with(Some(certificates.to_owned()), false).await
    }

    /// As [`OwnedRedis::start_tls`], and clients must show a certificate signed by `ca.pem`
    /// (`--tls-auth-clients yes`).
    pub async fn start_mutual_tls(certificates: &Path) -> OwnedRedis {
        Self::start_with(Some(certificates.to_owned()), true).await
    }

    async fn start_with(tls: Option<PathBuf>, mutual: bool) -> OwnedRedis {
        let mut redis = OwnedRedis {
            port: free_port(),
            dir: TempDir::new("sprayer-redis"),
            child: None,
            tls,
            mutual,
        };
        redis.up().await;
        redis
    }

    /// The server URL (`rediss://localhost:<port>` over TLS: the certificate names localhost).
    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("rediss://localhost:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the server on its data (again).
    pub async fn up(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            Some(certificates) => serve_tls_only(&mut command, certificates, &port, self.mutual),
            None => {
                command.args(["--bind", "127.0.0.1", "--port", &port]);
            }
        }
        let child = spawn_durable(&mut command, self.dir.path());
        self.child = Some(child);
        wait_port(self.port, true, Duration::from_secs(20), "redis").await;
    }

    /// Stops the server as an operator would (SIGTERM: it writes its data and exits).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
        wait_port(self.port, false, Duration::from_secs(20), "redis").await;
    }
}

/// `redis-server` arguments: TLS only on loopback `port` (no plain port), with `server.pem`,
/// `server.key` and `ca.pem` of `certificates`; clients must show a certificate of that CA
/// when `ask_clients`.
fn serve_tls_only(command: &mut Command, certificates: &Path, port: &str, ask_clients: bool) {
    command
        .args(["--bind", "127.0.0.1", "--port", "0", "--tls-port", port])
        .args(["--tls-auth-clients", if ask_clients { "yes" } else { "no" }])
        .arg("--tls-cert-file")
        .arg(certificates.join("server.pem"))
        .arg("--tls-key-file")
        .arg(certificates.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(certificates.join("ca.pem"));
}

/// One node of an [`OwnedRedisCluster`]: a `redis-server` in cluster mode on loopback, with its
/// data (append-only file) and cluster state (`nodes.conf`) in a folder of its own, so that it
/// comes back after a stop on the same port with its slots and keys.
pub struct OwnedClusterNode {
    /// Its client port.
    pub port: u16,
    bus_port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// With TLS only (clients and cluster bus): the folder of `server.pem`, `server.key` and
    /// `ca.pem`.
    tls: Option<PathBuf>,
}

impl OwnedClusterNode {
    /// The node's URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the node on its folder (again).
    pub async fn up(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            Some(certificates) => {
                serve_tls_only(&mut command, certificates, &port, false);
                command.args(["--tls-cluster", "yes"]);
            }
            None => {
                command.args(["--bind", "127.0.0.1", "--port", &port]);
            }
        }
        command
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"]);
        let child = spawn_durable(&mut command, self.dir.path());
        self.child = Some(child);
        wait_port(
            self.port,
            true,
            Duration::from_secs(20),
            "redis cluster node",
        )
        .await;
    }

    /// Stops the node as an operator would (SIGTERM: it writes its data and exits).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
        wait_port(
            self.port,
            false,
            Duration::from_secs(20),
            "redis cluster node",
        )
        .await;
    }

    /// Runs one command on this node alone (a plain connection, within 5 s).
    pub async fn command<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Option<T> {
        let asked = async {
            let client = match &self.tls {
                Some(certificates) => redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(std::fs::read(certificates.join("ca.pem"))?),
                    },
                )?,
                None => redis::Client::open(self.url())?,
            };
            let mut connection = client.get_multiplexed_async_connection().await?;
            command.query_async::<T>(&mut connection).await
        };
        tokio::time::timeout(Duration::from_secs(5), asked)
            .await
            .ok()?
            .ok()
    }

    /// Whether the node sees the whole cluster healthy: state ok, every slot served.
    pub async fn healthy(&self) -> bool {
        self.command::<String>(&redis::cmd("CLUSTER").arg("INFO").to_owned())
            .await
            .is_some_and(|info| {
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            })
    }
}

/// A Redis Cluster of the test's own: `size` masters without replicas (Debian's
/// `redis-server`), each on free loopback ports (client and cluster bus) with its own folder,
/// made one cluster by `redis-cli --cluster create`. Dropping it kills every node and deletes
/// their data.
pub struct OwnedRedisCluster {
    /// The nodes, each serving about a third of the slots.
    pub nodes: Vec<OwnedClusterNode>,
}

impl OwnedRedisCluster {
    /// Starts `size` nodes, makes them one cluster and waits until every node sees it healthy.
    pub async fn start(size: usize) -> OwnedRedisCluster {
        Self::start_with(size, None).await
    }

    /// As [`OwnedRedisCluster::start`], every node speaking TLS only (to clients and on the
    /// cluster bus) with the certificate and key in `certificates`.
    pub async fn start_tls(size: usize, certificates: &Path) -> OwnedRedisCluster {
        Self::start_with(size, Some(certificates.to_owned())).await
    }

    async fn start_with(size: usize, tls: Option<PathBuf>) -> OwnedRedisCluster {
        let mut nodes = Vec::with_capacity(size);
        for _ in 0..size {
            let mut node = OwnedClusterNode {
                port: free_port(),
                bus_port: free_port(),
                dir: TempDir::new("sprayer-redis-cluster"),
                child: None,
                tls: tls.clone(),
            };
            node.up().await;
            nodes.push(node);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let mut cli = Command::new("redis-cli");
        if let Some(certificates) = &tls {
            cli.arg("--tls")
                .arg("--cacert")
                .arg(certificates.join("ca.pem"));
        }
        let created = tokio::time::timeout(
            Duration::from_secs(60),
            cli.args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("redis-cli --cluster create ends within 60 s")
        .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = OwnedRedisCluster { nodes };
        let healthy = cluster.wait_healthy(Duration::from_secs(60)).await;
        assert!(healthy.is_some(), "the cluster is healthy within 60 s");
        cluster
    }

    /// `redis.url` for the cluster: every node's URL, comma-separated.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(OwnedClusterNode::url).collect();
        urls.join(",")
    }

    /// Waits until every node sees the cluster healthy; how long that took, or `None`.
    pub async fn wait_healthy(&self, within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        wait_until(within, || async {
            for node in &self.nodes {
                if !node.healthy().await {
                    return None;
                }
            }
            Some(started.elapsed())
        })
        .await
    }

    /// Keys held by each node.
    pub async fn keys_per_node(&self) -> Vec<u64> {
        let mut counts = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            counts.push(
                node.command::<u64>(&redis::cmd("DBSIZE"))
                    .await
                    .unwrap_or(0),
            );
        }
        counts
    }
}

/// Starts `command` (a `redis-server` with its address set) writing every change to its
/// append-only file in `dir` before answering, so that a kill loses nothing it acknowledged.
fn spawn_durable(command: &mut Command, dir: &Path) -> Child {
    command
        .args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts")
}
