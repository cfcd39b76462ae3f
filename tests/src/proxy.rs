//! A TCP proxy between a worker and the broker, to break the network under it.
//!
//! The worker connects to [`Proxy::amqp_url`] instead of the broker; the proxy forwards
//! every byte both ways until the test breaks the link:
//! - [`Proxy::cut`] resets (RST) every connection open now; new ones are accepted and
//!   forwarded as before, so the worker can reconnect at once;
//! - [`Proxy::blackhole`] keeps every connection open but silently drops every byte both
//!   ways, as a network partition does: neither side hears from the other, not even a
//!   close. Connections accepted meanwhile are held open and never forwarded. Only
//!   heartbeats can tell the two ends that the link is dead;
//! - [`Proxy::restore`] ends the blackhole: new connections are forwarded again. A
//!   connection that lived through the blackhole lost bytes, so its AMQP stream cannot be
//!   resumed: it is reset, like a connection whose peer gave up during the partition.
//!
//! [`Proxy::stats`] says what the proxy saw, e.g. whether each side closed its end of a
//! blackholed connection (its heartbeat noticed the dead link).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Vhost;

/// The size of one read from either side.
const BUFFER_BYTES: usize = 16 * 1024;

/// Whether bytes get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every byte is forwarded.
    Forward,
    /// Every byte is dropped.
    Blackhole,
}

/// What the test asked for, watched by every connection.
#[derive(Debug, Clone, Copy)]
struct Control {
    mode: Mode,
    /// How many times [`Proxy::cut`] was called: a connection that saw another value
    /// when it opened is reset.
    cuts: u64,
    /// How many blackholes [`Proxy::restore`] ended: likewise.
    restores: u64,
}

/// What the proxy saw so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted from clients (the worker).
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Blackholed connections whose client (the worker) closed its end: it noticed the
    /// dead link by itself.
    pub client_closed_in_blackhole: u64,
    /// Blackholed connections whose upstream (the broker) closed its end.
    pub upstream_closed_in_blackhole: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    client_closed_in_blackhole: AtomicU64,
    upstream_closed_in_blackhole: AtomicU64,
}

/// A running proxy on `127.0.0.1:<some port>`. Stops (and resets every connection) when
/// dropped.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    accept_task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    ///
    /// # Panics
    /// When it cannot listen.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the proxy cannot listen on 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (control, _) = watch::channel(Control {
            mode: Mode::Forward,
            cuts: 0,
            restores: 0,
        });
        let counters = Arc::new(Counters::default());
        let accept_task = tokio::spawn(accept_loop(
            listener,
            upstream,
            control.clone(),
            Arc::clone(&counters),
        ));
        Proxy {
            address,
            control,
            counters,
            accept_task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.address
    }

    /// The URL of `vhost` through this proxy: `amqp://guest:guest@127.0.0.1:<port>/<vhost>`.
    pub fn amqp_url(&self, vhost: &Vhost) -> String {
        let (_, encoded_vhost) = vhost
            .amqp_url()
            .rsplit_once('/')
            .expect("a vhost URL ends with /<vhost>");
        format!(
            "amqp://guest:guest@127.0.0.1:{}/{encoded_vhost}",
            self.address.port()
        )
    }

    /// Resets every connection open now. New connections are still accepted.
    pub fn cut(&self) {
        self.control.send_modify(|control| control.cuts += 1);
    }

    /// Drops every byte both ways from now on, and holds new connections open without
    /// forwarding them.
    pub fn blackhole(&self) {
        self.control
            .send_modify(|control| control.mode = Mode::Blackhole);
    }

    /// Ends a blackhole: connections that lived through it are reset, new ones are
    /// forwarded. Does nothing when there is no blackhole.
    pub fn restore(&self) {
        self.control.send_if_modified(|control| {
            if control.mode == Mode::Blackhole {
                control.mode = Mode::Forward;
                control.restores += 1;
                true
            } else {
                false
            }
        });
    }

    /// What the proxy saw so far.
    pub fn stats(&self) -> ProxyStats {
        let counters = &self.counters;
        ProxyStats {
            accepted: counters.accepted.load(Ordering::SeqCst),
            open: counters.open.load(Ordering::SeqCst),
            client_closed_in_blackhole: counters.client_closed_in_blackhole.load(Ordering::SeqCst),
            upstream_closed_in_blackhole: counters
                .upstream_closed_in_blackhole
                .load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        // Every connection task sees the control channel close and resets its connection.
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(error) => {
                // E.g. too many open files: the client sees a refused or reset connect.
                eprintln!("[proxy] cannot accept a connection: {error}");
                continue;
            }
        };
        counters.accepted.fetch_add(1, Ordering::SeqCst);
        let control = control.subscribe();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            counters.open.fetch_add(1, Ordering::SeqCst);
            serve(client, upstream, control, &counters).await;
            counters.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// How one direction of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The side it reads from closed (or failed).
    PeerClosed,
    /// The test cut the connection, restored a blackhole it lived through, or dropped
    /// the proxy.
    Reset,
}

/// Whether a connection that opened under `initial` must be reset now.
fn must_reset(current: &Control, initial: &Control) -> bool {
    current.cuts != initial.cuts || current.restores != initial.restores
}

/// Serves one client connection until it ends.
async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
    counters: &Counters,
) {
    let initial = *control.borrow_and_update();
    let _ = client.set_nodelay(true);
    let mut upstream_stream = if initial.mode == Mode::Blackhole {
        // Held open, never forwarded: the client's handshake goes nowhere.
        None
    } else {
        match TcpStream::connect(upstream).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Some(stream)
            }
            Err(error) => {
                eprintln!("[proxy] cannot connect to {upstream}: {error}");
                reset(&client);
                return;
            }
        }
    };

    let reset_all = {
        let (client_read, client_write) = client.split();
        match upstream_stream.as_mut() {
            None => {
                let mut control = control.clone();
                pump(client_read, None, &mut control, &initial).await == End::Reset
            }
            Some(upstream_stream) => {
                let (upstream_read, upstream_write) = upstream_stream.split();
                let mut to_upstream_control = control.clone();
                let mut to_client_control = control.clone();
                let to_upstream = pump(
                    client_read,
                    Some(upstream_write),
                    &mut to_upstream_control,
                    &initial,
                );
                let to_client = pump(
                    upstream_read,
                    Some(client_write),
                    &mut to_client_control,
                    &initial,
                );
                tokio::pin!(to_upstream, to_client);
                let mut client_closed = false;
                let mut upstream_closed = false;
                loop {
                    let (end, client_side) = tokio::select! {
                        end = &mut to_upstream, if !client_closed => (end, true),
                        end = &mut to_client, if !upstream_closed => (end, false),
                    };
                    if end == End::Reset {
                        break true;
                    }
                    if client_side {
                        client_closed = true;
                    } else {
                        upstream_closed = true;
                    }
                    if control.borrow_and_update().mode == Mode::Forward {
                        // An ordinary close: pass it on by closing the other side too.
                        break false;
                    }
                    // In a blackhole the other side hears nothing of this close: it
                    // stays open until it gives up by itself or the test resets it.
                    let counter = if client_side {
                        &counters.client_closed_in_blackhole
                    } else {
                        &counters.upstream_closed_in_blackhole
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    if client_closed && upstream_closed {
                        break false;
                    }
                }
            }
        }
    };
    if reset_all {
        reset(&client);
        if let Some(upstream_stream) = &upstream_stream {
            reset(upstream_stream);
        }
    }
    // Dropping the streams closes them: with RST after `reset`, with FIN otherwise.
}

/// Makes the coming close of `stream` a reset (RST) rather than an orderly FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Copies bytes from `from` to `to` (or drops them, in a blackhole or when there is no
/// `to`) until `from` closes or the connection must be reset.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: Option<WriteHalf<'_>>,
    control: &mut watch::Receiver<Control>,
    initial: &Control,
) -> End {
    let mut buffer = vec![0_u8; BUFFER_BYTES];
    loop {
        let read = tokio::select! {
            changed = control.changed() => {
                if changed.is_err() || must_reset(&control.borrow_and_update(), initial) {
                    return End::Reset;
                }
                continue;
            }
            read = from.read(&mut buffer) => read,
        };
        let length = match read {
            Ok(0) | Err(_) => return End::PeerClosed,
            Ok(length) => length,
        };
        let current = *control.borrow();
        if must_reset(&current, initial) {
            return End::Reset;
        }
        let Some(to) = to.as_mut().filter(|_| current.mode == Mode::Forward) else {
            continue;
        };
        // Write in pieces, so that a cut or a blackhole also reaches a blocked write.
        let mut written = 0;
        while written < length {
            tokio::select! {
                changed = control.changed() => {
                    let current = *control.borrow_and_update();
                    if changed.is_err() || must_reset(&current, initial) {
                        return End::Reset;
                    }
                    if current.mode == Mode::Blackhole {
                        break;
                    }
                }
                result = to.write(&buffer[written..length]) => match result {
                    Ok(0) | Err(_) => return End::PeerClosed,
                    Ok(count) => written += count,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const DEADLINE: Duration = Duration::from_secs(5);

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        address
    }

    async fn round_trip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.expect("write");
        let mut answer = vec![0; text.len()];
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut answer))
            .await
            .expect("an answer in time")
            .expect("read");
        answer
    }

    /// Whether the peer closed or reset `stream` (as opposed to it staying silent).
    async fn closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
        let mut byte = [0_u8; 1];
        matches!(
            tokio::time::timeout(timeout, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn forwards_cuts_blackholes_and_restores() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut first, b"hello").await, b"hello");

        proxy.cut();
        assert!(closed_within(&mut first, DEADLINE).await, "a cut closes it");
        let mut second = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert_eq!(round_trip(&mut second, b"again").await, b"again");

        proxy.blackhole();
        second.write_all(b"lost").await.expect("write");
        let mut byte = [0_u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte))
                .await
                .is_err(),
            "nothing comes back through a blackhole"
        );
        let mut held = TcpStream::connect(proxy.addr())
            .await
            .expect("connect in a blackhole");
        held.write_all(b"nobody hears this").await.expect("write");
        assert!(
            !closed_within(&mut held, Duration::from_millis(300)).await,
            "a new connection is held open"
        );

        proxy.restore();
        assert!(
            closed_within(&mut second, DEADLINE).await,
            "reset at restore"
        );
        assert!(closed_within(&mut held, DEADLINE).await, "reset at restore");
        let mut third = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert_eq!(round_trip(&mut third, b"back").await, b"back");
        let stats = proxy.stats();
        assert_eq!(stats.accepted, 4, "{stats:?}");
    }

    #[tokio::test]
    async fn a_close_in_a_blackhole_does_not_reach_the_other_side() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut client, b"hi").await, b"hi");
        proxy.blackhole();
        drop(client);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while proxy.stats().client_closed_in_blackhole == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                proxy.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(proxy.stats().open, 1, "the upstream side stays open");
        proxy.restore();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while proxy.stats().open != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                proxy.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
