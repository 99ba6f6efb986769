//! What a stopped RabbitMQ node may leave behind, looked at directly: its Erlang VM (by pid and
//! start time), its name in epmd, its ports; and the ports a node keeps for its whole life.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Erlang VM of one run of a node: its pid (from the node's pid file) and its start time,
/// so that a pid the kernel has given to another process since is never taken for it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Vm {
    pub(super) pid: u32,
    started: u64,
}

impl Vm {
    /// The VM whose pid `pid_file` holds, if that process runs.
    pub(super) fn of_pid_file(pid_file: &Path) -> Option<Vm> {
        let pid = std::fs::read_to_string(pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let (_, started) = process_state(pid)?;
        Some(Vm { pid, started })
    }

    /// Whether the VM still runs (a zombie does not: it holds no socket and no epmd entry).
    pub(super) fn alive(self) -> bool {
        process_state(self.pid)
            .is_some_and(|(state, started)| state != 'Z' && started == self.started)
    }
}

/// A process's state letter and start time (clock ticks after boot), from `/proc/<pid>/stat`.
pub(super) fn process_state(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields are counted from its
    // closing parenthesis (the state is the 3rd field of the line, the start time the 22nd).
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let started = fields.nth(18)?.parse().ok()?;
    Some((state, started))
}

/// The node names registered in the local epmd, or `None` when it does not answer within 5 s.
/// No epmd running means no name registered.
pub(super) async fn epmd_names() -> Option<Vec<String>> {
    let asked = async {
        let mut epmd = match tokio::net::TcpStream::connect(("127.0.0.1", 4369)).await {
            Ok(epmd) => epmd,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        // NAMES_REQ: a two-byte length, then `n`. The answer: epmd's port (four bytes), then a
        // line `name <name> at port <port>` per node, until epmd closes the connection.
        epmd.write_all(&[0, 1, b'n']).await?;
        let mut answer = Vec::new();
        epmd.read_to_end(&mut answer).await?;
        Ok(String::from_utf8_lossy(answer.get(4..).unwrap_or_default())
            .lines()
            .filter_map(|line| {
                let name = line.strip_prefix("name ")?.split(" at port ").next()?;
                Some(name.to_owned())
            })
            .collect())
    };
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .ok()?
        .ok()
}

/// Whether a listener could bind `address` now (with `SO_REUSEADDR`, as the node's own
/// listeners and its distribution-port check do, so that connections in `TIME_WAIT` do not
/// count).
pub(super) fn bindable(address: (&str, u16)) -> bool {
    std::net::TcpListener::bind(address).is_ok()
}

/// A loopback port of a node's own for the node's whole life, and the socket that holds it: bound
/// with `SO_REUSEADDR`, never listening. The node's listeners (which set `SO_REUSEADDR` too) bind
/// the port beside it, and clients are refused while the node is down; but no `bind` to port 0
/// in any process is given the port, so that while the node is stopped another server of the
/// suite cannot take it and fail the node's start (a taken distribution port is a
/// `dist_port_already_used` boot failure, the AMQP port never opening).
pub(super) fn reserve_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let port = socket.local_addr().expect("address").port();
    (socket, port)
}
