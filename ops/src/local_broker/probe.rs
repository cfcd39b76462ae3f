//! Looking without touching: whether a URL is the built-in one, whether anything
//! answers at an address, which port is free, whether a process lives.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::time::Duration;

use lapin::uri::AMQPUri;

/// The broker URL every warren binary uses unless told otherwise (`amqp.url` in
/// `config/default.toml`): the `guest` user of a node on 127.0.0.1:5672, which a fresh
/// node lets in from this machine.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Ports are chosen at random from here up to the start of the kernel's ephemeral range,
/// so no outgoing connection can take one as its local port while a node is down.
const LOWEST_PORT: u16 = 10_000;

/// Whether `url` means the same as [`DEFAULT_AMQP_URL`] (same scheme, user, password,
/// host, port, vhost and options), however it is spelt: `amqp://guest:guest@127.0.0.1`
/// is the default, `amqp://guest:guest@localhost:5672/%2f` is not (another host name).
pub fn is_default_url(url: &str) -> bool {
    let Ok(default) = DEFAULT_AMQP_URL.parse::<AMQPUri>() else {
        return false;
    };
    url.parse::<AMQPUri>().is_ok_and(|given| given == default)
}

/// The host and port `url` connects to.
///
/// # Errors
/// The parser's message when `url` is not an AMQP URL.
pub fn broker_address(url: &str) -> Result<(String, u16), String> {
    let uri: AMQPUri = url.parse()?;
    Ok((uri.authority.host, uri.authority.port))
}

/// Whether a TCP connection to `host:port` opens within `timeout`; the error says why
/// not (refused, timed out, unknown host).
///
/// # Errors
/// Why no connection opened.
pub async fn tcp_answers(host: &str, port: u16, timeout: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(_elapsed) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
    }
}

/// The start of the kernel's ephemeral port range (where outgoing connections get their
/// local ports).
fn ephemeral_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A TCP port on 127.0.0.1 that nothing listens on now and that is not in `taken`:
/// chosen at random below the ephemeral range, checked by binding it and letting go;
/// the kernel's choice when there is no room below that range.
///
/// # Errors
/// When not even the kernel finds a port.
pub fn free_port(taken: &[u16]) -> std::io::Result<u16> {
    let highest = ephemeral_port_start().saturating_sub(1);
    if highest > LOWEST_PORT {
        let span = u128::from(highest - LOWEST_PORT) + 1;
        for _ in 0..200 {
            let offset = uuid::Uuid::new_v4().as_u128() % span;
            let Ok(offset) = u16::try_from(offset) else {
                continue;
            };
            let port = LOWEST_PORT + offset;
            if !taken.contains(&port)
                && TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
            {
                return Ok(port);
            }
        }
    }
    for _ in 0..200 {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("every port offered was taken"))
}

/// The pid in a RabbitMQ pid file, once it is written.
pub(crate) fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {
            // `/proc/<pid>/stat` is `pid (comm) state …`; a zombie has exited.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Whether process `pid` is alive and is the VM of node `node_name`: its environment
/// names the node (`RABBITMQ_NODENAME`). A pid file can outlive its node (a crash, a
/// reboot) and its number be reused by anything; this is what keeps a stop from killing
/// that. `false` when the environment cannot be read.
pub(crate) fn is_node_process(pid: i32, node_name: &str) -> bool {
    if !process_alive(pid) {
        return false;
    }
    let Ok(environment) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("RABBITMQ_NODENAME={node_name}");
    environment
        .split(|byte| *byte == 0)
        .any(|variable| variable == wanted.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_recognised_however_it_is_spelt() {
        assert!(is_default_url(DEFAULT_AMQP_URL));
        assert!(is_default_url("amqp://guest:guest@127.0.0.1:5672/%2f"));
        assert!(is_default_url("amqp://guest:guest@127.0.0.1"));
        for other in [
            "amqp://guest:guest@localhost:5672/%2f",
            "amqp://guest:guest@127.0.0.1:5673/%2f",
            "amqp://admin:guest@127.0.0.1:5672/%2f",
            "amqp://guest:guest@127.0.0.1:5672/other",
            "amqps://guest:guest@127.0.0.1:5672/%2f",
            "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=5",
            "not a url",
        ] {
            assert!(!is_default_url(other), "{other}");
        }
    }

    #[test]
    fn the_address_of_a_url() {
        assert_eq!(
            broker_address("amqp://u:p@rabbit.example:5673/x"),
            Ok(("rabbit.example".to_owned(), 5673))
        );
        assert_eq!(
            broker_address("amqps://u:p@rabbit.example/x"),
            Ok(("rabbit.example".to_owned(), 5671))
        );
        assert!(broker_address("http://nope").is_err());
    }

    #[test]
    fn free_ports_are_free_and_distinct() {
        let first = free_port(&[]).expect("a port");
        let second = free_port(&[first]).expect("another port");
        assert_ne!(first, second);
        TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, first)).expect("still free");
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_does_not_answer_and_a_listener_does() {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let open_port = listener.local_addr().expect("address").port();
        tcp_answers("127.0.0.1", open_port, Duration::from_secs(5))
            .await
            .expect("a listener answers");
        drop(listener);
        assert!(
            tcp_answers("127.0.0.1", open_port, Duration::from_secs(5))
                .await
                .is_err()
        );
    }

    #[test]
    fn this_process_is_alive_and_not_a_rabbitmq_node() {
        let own = i32::try_from(std::process::id()).expect("pid fits");
        assert!(process_alive(own));
        assert!(!process_alive(i32::MAX - 1));
        assert!(!is_node_process(own, "warren-test@localhost"));
    }
}
