//! Servers and Sprayer processes that a fault test owns: a RabbitMQ node or a cluster of them,
//! a Redis server or a Redis Cluster, and a MongoDB-compatible server on ports of their own (so
//! that stopping them leaves the shared ones alone), and `sprayer run --only ...` processes that
//! can be killed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use sprayer_shared::Settings;
use sprayer_shared::config::QueueType;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::helpers::{unique, wait_until};
use crate::support::peers::{free_port, root, tempdir::TempDir};

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

/// A RabbitMQ node of the test's own (Debian's `rabbitmq-server`, run as the rabbitmq user the
/// package made), with its data in a temporary folder, so that it can be stopped and started
/// again with its queues.
pub struct OwnedRabbit {
    /// The AMQP port (AMQPS when the node was started with TLS).
    pub port: u16,
    dist_port: u16,
    node: String,
    data: PathBuf,
    tls: bool,
}

impl OwnedRabbit {
    /// Starts a fresh node.
    pub async fn start() -> OwnedRabbit {
        Self::start_named("sprayer-fault-").await
    }

    /// Starts a fresh node that speaks only AMQP over TLS, with `server.pem`, `server.key` and
    /// `ca.pem` of `certificates`, and asks clients for a certificate of that CA (mutual TLS:
    /// `verify_peer`, `fail_if_no_peer_cert`).
    pub async fn start_tls(certificates: &Path) -> OwnedRabbit {
        Self::start_with("sprayer-tls-", Some(certificates)).await
    }

    /// Starts a fresh node named `<prefix><random>@localhost`.
    async fn start_named(prefix: &str) -> OwnedRabbit {
        Self::start_with(prefix, None).await
    }

    /// Starts a fresh node, over TLS only when `certificates` is given.
    async fn start_with(prefix: &str, certificates: Option<&Path>) -> OwnedRabbit {
        let data = std::env::temp_dir().join(unique("sprayer-rabbit-"));
        for folder in ["mnesia", "log"] {
            std::fs::create_dir_all(data.join(folder)).expect("data folder");
        }
        std::fs::write(data.join("enabled_plugins"), "[].\n").expect("plugins file");
        let port = free_port();
        if let Some(certificates) = certificates {
            let tls = data.join("tls");
            std::fs::create_dir_all(&tls).expect("tls folder");
            for name in ["server.pem", "server.key", "ca.pem"] {
                std::fs::copy(certificates.join(name), tls.join(name)).expect("certificate copy");
            }
            let tls = tls.display();
            std::fs::write(
                data.join("rabbitmq.conf"),
                format!(
                    "listeners.tcp = none\n\
                     listeners.ssl.default = 127.0.0.1:{port}\n\
                     ssl_options.cacertfile = {tls}/ca.pem\n\
                     ssl_options.certfile = {tls}/server.pem\n\
                     ssl_options.keyfile = {tls}/server.key\n\
                     ssl_options.verify = verify_peer\n\
                     ssl_options.fail_if_no_peer_cert = true\n"
                ),
            )
            .expect("config file");
        }
        let status = as_root("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&data)
            .status()
            .expect("chown runs");
        assert!(
            status.success(),
            "the data folder goes to the rabbitmq user"
        );
        let rabbit = OwnedRabbit {
            port,
            dist_port: free_port(),
            node: format!("{}@localhost", unique(prefix)),
            data,
            tls: certificates.is_some(),
        };
        rabbit.up().await;
        rabbit
    }

    /// The broker URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node on its data (again).
    pub async fn up(&self) {
        let data = self.data.display().to_string();
        // A TLS node's listener is in its config file; a plain one's in the environment.
        let listener = if self.tls {
            vec![format!("RABBITMQ_CONFIG_FILE={data}/rabbitmq.conf")]
        } else {
            vec![
                "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1".to_owned(),
                format!("RABBITMQ_NODE_PORT={}", self.port),
            ]
        };
        let status = as_root("env")
            .arg(format!("RABBITMQ_NODENAME={}", self.node))
            .args(listener)
            .arg(format!("RABBITMQ_DIST_PORT={}", self.dist_port))
            .arg("ERL_EPMD_ADDRESS=127.0.0.1")
            .arg(format!("RABBITMQ_MNESIA_BASE={data}/mnesia"))
            .arg(format!("RABBITMQ_LOG_BASE={data}/log"))
            .arg(format!(
                "RABBITMQ_ENABLED_PLUGINS_FILE={data}/enabled_plugins"
            ))
            .arg(format!("RABBITMQ_PID_FILE={data}/pid"))
            .args(["bash", "-c", r#"nohup rabbitmq-server >"$0" 2>&1 &"#])
            .arg(format!("{data}/out.log"))
            .status()
            .expect("rabbitmq-server starts");
        assert!(status.success(), "rabbitmq-server starts");
        wait_port(self.port, true, Duration::from_secs(90), "rabbitmq").await;
    }

    /// Stops the node (SIGTERM, as `systemctl stop` does) and waits until its port is closed.
    pub async fn stop(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "TERM");
        }
        wait_port(self.port, false, Duration::from_secs(60), "rabbitmq").await;
        // The node's VM goes on for a moment after the port closes.
        let pid_file = self.data.join("pid");
        wait_until(Duration::from_secs(30), || async {
            (!pid_file.exists()).then_some(())
        })
        .await;
    }

    /// The node's name, `<name>@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `rabbitmqctl -n <node> <args>` as root (Debian's wrapper runs it as the rabbitmq
    /// user, with that user's Erlang cookie: the one every owned node has); returns what it
    /// printed. Fails the test if it fails or takes over two minutes.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut command = Command::from(as_root("rabbitmqctl"));
        command
            .args(["-n", &self.node])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} on {} hangs", self.node))
            .expect("rabbitmqctl runs");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on {}: {}{}",
            self.node,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for OwnedRabbit {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = as_root("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let _ = as_root("rm").arg("-rf").arg(&self.data).status();
    }
}

/// A RabbitMQ cluster of the test's own: fresh nodes on loopback, each with its own node name,
/// AMQP and distribution ports and data folder, sharing the rabbitmq user's Erlang cookie, the
/// others joined to the first. Dropping it kills every node and deletes their data.
pub struct OwnedRabbitCluster {
    /// The nodes; the others joined `nodes[0]`.
    pub nodes: Vec<OwnedRabbit>,
}

impl OwnedRabbitCluster {
    /// Starts `size` nodes and joins them into one cluster.
    pub async fn start(size: usize) -> OwnedRabbitCluster {
        let nodes = futures::future::join_all(
            (0..size).map(|_| OwnedRabbit::start_named("sprayer-cluster-")),
        )
        .await;
        let cluster = OwnedRabbitCluster { nodes };
        let first = cluster.nodes[0].node().to_owned();
        for node in &cluster.nodes[1..] {
            node.ctl(&["stop_app"]).await;
            node.ctl(&["join_cluster", &first]).await;
            node.ctl(&["start_app"]).await;
            wait_port(node.port, true, Duration::from_secs(90), "rabbitmq").await;
        }
        let running = cluster.running_nodes(0).await;
        assert_eq!(
            running.len(),
            size,
            "every node runs in the cluster: {running:?}"
        );
        cluster
    }

    /// The `amqp.url` of the cluster: every node's URL, comma-separated, the first node first.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(OwnedRabbit::url).collect();
        urls.join(",")
    }

    /// The nodes running in the cluster, as `nodes[asked]` sees it.
    pub async fn running_nodes(&self, asked: usize) -> Vec<String> {
        let status = self.nodes[asked]
            .ctl(&["cluster_status", "--formatter", "json"])
            .await;
        let status: serde_json::Value = serde_json::from_str(&status).expect("cluster status JSON");
        status["running_nodes"]
            .as_array()
            .expect("running nodes")
            .iter()
            .filter_map(|node| node.as_str().map(str::to_owned))
            .collect()
    }
}

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
        let child = command
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
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
        let child = command
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
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

/// The MongoDB-compatible server of the test's own, on its own storage folder.
pub struct OwnedMongo {
    /// Its port.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl OwnedMongo {
    /// Starts a fresh server.
    pub async fn start() -> OwnedMongo {
        let mut mongo = OwnedMongo {
            port: free_port(),
            dir: TempDir::new("sprayer-mongo"),
            child: None,
        };
        mongo.up().await;
        mongo
    }

    /// The server URL.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its storage (again): the Rust server `make test` built, else the
    /// Python one it fell back to.
    pub async fn up(&mut self) {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let rust = [home.join(".cargo/bin/secantusd-rs")]
            .into_iter()
            .chain(std::env::var_os("PATH").into_iter().flat_map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("secantusd-rs"))
                    .collect::<Vec<_>>()
            }))
            .find(|candidate| candidate.exists());
        let mut command = match rust {
            Some(binary) => Command::new(binary),
            None => {
                let stack = std::env::var_os("SPRAYER_STACK_DIR")
                    .map_or_else(|| root().join(".stack"), PathBuf::from);
                let mut command = Command::new(stack.join("venv/bin/python"));
                command.args(["-m", "secantus"]);
                command
            }
        };
        let child = command
            .args(["--port", &self.port.to_string(), "--storage-path"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the MongoDB-compatible server starts");
        self.child = Some(child);
        wait_port(self.port, true, Duration::from_secs(60), "mongodb").await;
    }

    /// Kills the server with SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        wait_port(self.port, false, Duration::from_secs(20), "mongodb").await;
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("the server runs");
        signal(pid, if frozen { "STOP" } else { "CONT" });
    }
}

/// A `sprayer run --only <roles>` process with a test's settings, killed on drop.
pub struct SprayerProcess {
    child: Child,
    /// Everything it printed, stdout and stderr.
    pub output: Arc<Mutex<String>>,
    /// The API's base URL, when it runs the accepter.
    pub api: Option<String>,
    /// The admin API's base URL, when it runs the accepter with an admin token.
    pub admin: Option<String>,
}

impl SprayerProcess {
    /// Starts the roles and waits until the process has started them; logs at `warn`.
    pub async fn start(settings: &Settings, roles: &str) -> SprayerProcess {
        Self::start_with_logs(settings, roles, "warn").await
    }

    /// Starts the roles with the log filter `filter` and keeps what the process prints.
    pub async fn start_with_logs(settings: &Settings, roles: &str, filter: &str) -> SprayerProcess {
        let binary = root().join("target/debug/sprayer");
        assert!(
            binary.exists(),
            "{} is missing: run `make test` (it builds it first)",
            binary.display()
        );
        let tiers: Vec<String> = settings
            .amqp
            .retry_tiers
            .iter()
            .map(|tier| format!("{}ms", tier.as_millis()))
            .collect();
        let networks: Vec<String> = settings
            .webhook
            .allow_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        let channels: Vec<&str> = settings
            .accepter
            .channels
            .iter()
            .map(|channel| channel.as_str())
            .collect();
        let mut command = Command::new(binary);
        command
            .args(["run", "--only", roles])
            .env_remove("SPRAYER_CONFIG")
            .env("SPRAYER_AMQP_URL", &settings.amqp.url)
            .env("SPRAYER_AMQP_PREFIX", &settings.amqp.prefix)
            .env("SPRAYER_AMQP_QUEUE_EXPIRES", "10m")
            .env(
                "SPRAYER_AMQP_QUEUE_TYPE",
                match settings.amqp.queue_type {
                    QueueType::Classic => "classic",
                    QueueType::Quorum => "quorum",
                },
            )
            .env("SPRAYER_AMQP_PREFETCH", settings.amqp.prefetch.to_string())
            .env(
                "SPRAYER_AMQP_RETRY_TIERS",
                serde_json::json!(tiers).to_string(),
            )
            .env("SPRAYER_REDIS_URL", &settings.redis.url)
            .env("SPRAYER_REDIS_CLUSTER", settings.redis.cluster.to_string())
            .env("SPRAYER_MONGODB_URL", &settings.mongodb.url)
            .env("SPRAYER_MONGODB_DATABASE", &settings.mongodb.database)
            .env(
                "SPRAYER_ACCEPTER_CHANNELS",
                serde_json::json!(channels).to_string(),
            )
            .env(
                "SPRAYER_WEBHOOK_ALLOW_NETWORKS",
                serde_json::json!(networks).to_string(),
            )
            .env("SPRAYER_DISPATCHER_OPS_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_FEEDER_OPS_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_DELIVERER_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_ACCEPTER_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_ACCEPTER_RATE_PER_SECOND", "0")
            .env("SPRAYER_ADMIN_LISTEN", "127.0.0.1:0")
            .env("SPRAYER_TELEMETRY_FILTER", filter)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(secret) = &settings.deliverer.token_secret {
            command.env("SPRAYER_DELIVERER_TOKEN_SECRET", secret.expose_secret());
        }
        if let Some(token) = &settings.admin.token {
            command.env("SPRAYER_ADMIN_TOKEN", token.expose_secret());
        }
        let mut child = command.spawn().expect("the sprayer binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let kept = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut output = kept.lock().expect("lock");
                output.push_str(&line);
                output.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut admin) = (None, None);
        let started = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                output.lock().expect("lock").push_str(&format!("{line}\n"));
                if let Some(rest) = line.strip_prefix("Sprayer API on ") {
                    api = rest.split_whitespace().next().map(str::to_owned);
                }
                if let Some(rest) = line.strip_prefix("Admin API on ") {
                    admin = Some(rest.trim().to_owned());
                }
                if line.starts_with("Sprayer running") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            started.ok(),
            Some(true),
            "sprayer run --only {roles} started"
        );
        // Read stdout to the end so that the process never blocks on it.
        let kept = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().expect("lock").push_str(&format!("{line}\n"));
            }
        });
        SprayerProcess {
            child,
            output,
            api,
            admin,
        }
    }

    /// Kills the process with SIGKILL.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
