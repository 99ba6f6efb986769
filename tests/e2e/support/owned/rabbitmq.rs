//! A RabbitMQ node of the test's own, plain or TLS only, and a cluster of such nodes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{as_root, signal, wait_port};
use crate::support::local::free_port;
use crate::support::stack::unique;
use crate::support::wait::wait_until;

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
