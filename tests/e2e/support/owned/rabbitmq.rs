//! A RabbitMQ node of the test's own, plain or TLS only, and a cluster of such nodes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::Semaphore;

use super::erlang::{Vm, bindable, epmd_names, reserve_port};
use super::{as_root, port_open, signal, wait_port};
use crate::support::stack::unique;
use crate::support::wait::wait_until;

/// How many test-owned RabbitMQ nodes may boot at once in this test process: half the cores,
/// one or two. A boot costs about 3 s of CPU. Measured on 2 cores beside two busy loops: seven
/// nodes launched together (two three-node clusters and a fault test's) took 18-23 s each to
/// open their port, and a restart among them 13.9 s, against 3.5-7 s alone; one at a time, each
/// served AMQP 6-8.5 s after its launch. A slot is held from the launch until the node serves
/// (and while a cluster node restarts its app to join), never while a test runs against it, so
/// [`BOOT_WITHIN`] is a bound on one boot, however many nodes the suite starts at once.
static BOOT_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    Semaphore::new((cores / 2).clamp(1, 2))
});

/// The longest a node may take from its launch to serving AMQP, its boot slot held.
const BOOT_WITHIN: Duration = Duration::from_secs(90);

/// Seconds, for the phase logs.
fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// A RabbitMQ node of the test's own (Debian's `rabbitmq-server`, run as the rabbitmq user the
/// package made), with its data in a temporary folder, so that it can be stopped and started
/// again with its queues. Each run keeps the node name, the ports and the data folder; a run
/// starts only when the one before is wholly gone (see [`OwnedRabbit::stop`]), and at most
/// [`BOOT_SLOTS`] nodes boot at once. Each stop and start logs the seconds of its phases.
pub struct OwnedRabbit {
    /// The AMQP port (AMQPS when the node was started with TLS).
    pub port: u16,
    dist_port: u16,
    node: String,
    data: PathBuf,
    tls: bool,
    /// The AMQP and distribution ports, kept the node's while it is stopped: see
    /// [`reserve_port`].
    _reservations: [tokio::net::TcpSocket; 2],
    /// The `rabbitmq-server` launcher of the current run (`su` and the scripts above the VM):
    /// it ends when the VM ends.
    launcher: Mutex<Option<std::process::Child>>,
    /// The VM of the current run, once it has written its pid file.
    vm: Mutex<Option<Vm>>,
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
        let (amqp_reservation, port) = reserve_port();
        let (dist_reservation, dist_port) = reserve_port();
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
            dist_port,
            node: format!("{}@localhost", unique(prefix)),
            data,
            tls: certificates.is_some(),
            _reservations: [amqp_reservation, dist_reservation],
            launcher: Mutex::new(None),
            vm: Mutex::new(None),
        };
        rabbit.up().await;
        rabbit
    }

    /// The broker URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node on its data (again) and returns once it serves: a real AMQP handshake
    /// (over TLS, `rabbitmqctl await_startup` once its port listens). It first waits until the
    /// run before is wholly gone, then for a boot slot ([`BOOT_SLOTS`]); fails at once, with
    /// the node's error, when the boot fails.
    pub async fn up(&self) {
        let asked = Instant::now();
        let released = self.wait_released(asked, "before its start").await;
        let _slot = BOOT_SLOTS
            .acquire()
            .await
            .expect("the boot slots are never closed");
        let slotted = asked.elapsed();
        let launched = Instant::now();
        self.launch();
        let (vm_after, serving_after) = self.wait_serving(launched).await;
        eprintln!(
            "owned rabbitmq {}: up {} after asked (previous run gone after {}, a boot slot after {}, VM running {} and serving AMQP {} after its launch)",
            self.node,
            seconds(asked.elapsed()),
            seconds(released),
            seconds(slotted),
            seconds(vm_after),
            seconds(serving_after),
        );
    }

    /// Launches `rabbitmq-server` as the rabbitmq user, on the node's name, ports and data;
    /// what it prints goes on at the end of `out.log`.
    fn launch(&self) {
        let data = self.data.display().to_string();
        // The pid file of the run before, if it was left, must not pass for this run's.
        let _ = as_root("rm").arg("-f").arg(self.data.join("pid")).status();
        // A TLS node's listener is in its config file; a plain one's in the environment.
        let listener = if self.tls {
            vec![format!("RABBITMQ_CONFIG_FILE={data}/rabbitmq.conf")]
        } else {
            vec![
                "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1".to_owned(),
                format!("RABBITMQ_NODE_PORT={}", self.port),
            ]
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("out.log"))
            .expect("out.log opens");
        let launcher = as_root("env")
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
            .arg("rabbitmq-server")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("out.log"))
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server starts");
        *self.launcher.lock().expect("lock") = Some(launcher);
        *self.vm.lock().expect("lock") = None;
    }

    /// Waits, within [`BOOT_WITHIN`] of `launched`, until the VM has written its pid file and
    /// the node serves; returns both times. Fails with the node's error when its launcher ends.
    async fn wait_serving(&self, launched: Instant) -> (Duration, Duration) {
        // When the VM wrote its pid file, after `launched`.
        let vm_after = Mutex::new(None);
        let outcome = wait_until(BOOT_WITHIN, || async {
            if let Some(status) = self.launcher_ended() {
                return Some(Err(format!("rabbitmq-server ended ({status})")));
            }
            let mut started = *vm_after.lock().expect("lock");
            if started.is_none()
                && let Some(vm) = Vm::of_pid_file(&self.data.join("pid"))
            {
                *self.vm.lock().expect("lock") = Some(vm);
                started = Some(launched.elapsed());
                *vm_after.lock().expect("lock") = started;
            }
            (started.is_some() && self.serves().await).then_some(Ok(()))
        })
        .await;
        let vm_after = vm_after.into_inner().expect("lock");
        match outcome {
            Some(Ok(())) => {}
            Some(Err(ended)) => panic!(
                "rabbitmq {} did not boot: {ended} {} after its launch:\n{}",
                self.node,
                seconds(launched.elapsed()),
                self.boot_errors()
            ),
            None => panic!(
                "rabbitmq {} on port {} did not serve within {BOOT_WITHIN:?} of its launch (its VM {}):\n{}",
                self.node,
                self.port,
                match vm_after {
                    Some(after) => format!("started {} after it", seconds(after)),
                    None => "never wrote its pid file".to_owned(),
                },
                self.boot_errors()
            ),
        }
        if self.tls {
            // A TLS listener asks for a client certificate: the node says when its boot is done.
            self.ctl(&["await_startup", "--timeout", "90"]).await;
        }
        (vm_after.unwrap_or_default(), launched.elapsed())
    }

    /// Whether the node serves: an AMQP handshake within 5 s; over TLS, its port listens.
    async fn serves(&self) -> bool {
        if self.tls {
            return port_open(self.port).await;
        }
        let url = self.url();
        let handshake = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
        match tokio::time::timeout(Duration::from_secs(5), handshake).await {
            Ok(Ok(connection)) => {
                let _ = connection.close(200, "ready".into()).await;
                true
            }
            _ => false,
        }
    }

    /// The exit status of the current run's launcher, once it has ended.
    fn launcher_ended(&self) -> Option<std::process::ExitStatus> {
        let mut launcher = self.launcher.lock().expect("lock");
        launcher.as_mut()?.try_wait().ok().flatten()
    }

    /// The error lines of `out.log` (a failed boot says `BOOT FAILED` and why), else its end.
    fn boot_errors(&self) -> String {
        let log = std::fs::read_to_string(self.data.join("out.log")).unwrap_or_default();
        let errors: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("ERROR") || line.contains("reason:"))
            .take(10)
            .collect();
        if errors.is_empty() {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        } else {
            errors.join("\n")
        }
    }

    /// Stops the node as `systemctl stop` does (SIGTERM to its VM) and returns once it is wholly
    /// gone: its AMQP port closed, its VM exited (SIGKILL after 60 s, said so), its name out of
    /// epmd, its ports free to bind. The port closes and the pid file goes within 0.4 s of the
    /// signal, but the VM lives on, registered and holding its distribution port (1.1-1.3 s
    /// here, alone or in a crowd): a start in that time fails its distribution check
    /// (`dist_port_already_used`), never opens its port, and deletes the pid file of the VM
    /// still running.
    pub async fn stop(&self) {
        let began = Instant::now();
        let vm = self.current_vm();
        if let Some(vm) = vm {
            signal(vm.pid, "TERM");
        }
        wait_port(self.port, false, Duration::from_secs(60), "rabbitmq").await;
        let closed = began.elapsed();
        let exited = wait_until(Duration::from_secs(60), || async {
            (!vm.is_some_and(Vm::alive)).then(|| began.elapsed())
        })
        .await;
        let exited = match exited {
            Some(exited) => seconds(exited),
            None => {
                // Only a VM that runs outlasts the wait.
                if let Some(vm) = vm {
                    signal(vm.pid, "KILL");
                }
                "60 s and still running: killed".to_owned()
            }
        };
        let released = self.wait_released(began, "after its stop").await;
        eprintln!(
            "owned rabbitmq {}: stopped, wholly gone {} after SIGTERM (AMQP port closed after {}, VM exited after {exited})",
            self.node,
            seconds(released),
            seconds(closed),
        );
    }

    /// The VM of the current run: the one seen at its start, else the pid file's.
    fn current_vm(&self) -> Option<Vm> {
        let vm = *self.vm.lock().expect("lock");
        vm.or_else(|| Vm::of_pid_file(&self.data.join("pid")))
    }

    /// Waits until nothing is left of the node's last run: its VM and launcher ended, its name
    /// out of epmd, its AMQP and distribution ports free to bind (the node's own check binds
    /// the distribution port on every address); returns when that was, after `since`. Fails
    /// within 60 s naming what is still held.
    async fn wait_released(&self, since: Instant, when: &str) -> Duration {
        let name = self.node.split('@').next().unwrap_or_default();
        // What was still held at the last look.
        let held = Mutex::new(Vec::new());
        let released = wait_until(Duration::from_secs(60), || async {
            let mut holding = Vec::new();
            if let Some(vm) = self.current_vm().filter(|vm| vm.alive()) {
                holding.push(format!("its VM {}", vm.pid));
            }
            let launched = self.launcher.lock().expect("lock").is_some();
            if launched && self.launcher_ended().is_none() {
                holding.push("its rabbitmq-server launcher".to_owned());
            }
            match epmd_names().await {
                Some(names) if names.iter().any(|registered| registered == name) => {
                    holding.push("its name in epmd".to_owned());
                }
                Some(_) => {}
                None => holding.push("epmd, which did not answer".to_owned()),
            }
            if !bindable(("127.0.0.1", self.port)) {
                holding.push(format!("its AMQP port {}", self.port));
            }
            if !bindable(("0.0.0.0", self.dist_port)) {
                holding.push(format!("its distribution port {}", self.dist_port));
            }
            let released = holding.is_empty().then(|| since.elapsed());
            *held.lock().expect("lock") = holding;
            released
        })
        .await;
        released.unwrap_or_else(|| {
            panic!(
                "rabbitmq {} {when}: still held after 60 s: {}",
                self.node,
                held.lock().expect("lock").join(", ")
            )
        })
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
}

impl Drop for OwnedRabbit {
    fn drop(&mut self) {
        let vm = self.vm.get_mut().ok().and_then(|vm| *vm);
        let vm = vm.or_else(|| Vm::of_pid_file(&self.data.join("pid")));
        if let Some(vm) = vm.filter(|vm| vm.alive()) {
            let _ = as_root("kill")
                .args(["-KILL", &vm.pid.to_string()])
                .status();
        }
        // The launcher ends with the VM: reap it (it is not waited for past 10 s).
        if let Ok(Some(mut launcher)) = self.launcher.get_mut().map(Option::take) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(launcher.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
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
            // Its app starts again to join: a boot, in a boot slot.
            let _slot = BOOT_SLOTS
                .acquire()
                .await
                .expect("the boot slots are never closed");
            let joining = Instant::now();
            node.ctl(&["stop_app"]).await;
            node.ctl(&["join_cluster", &first]).await;
            node.ctl(&["start_app"]).await;
            node.wait_serving(joining).await;
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
