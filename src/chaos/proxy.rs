//! The fault proxy: one TCP forwarder per directed peer link (node i dialing node j), so the
//! suite can cut links without root, namespaces or iptables. Each node's config names, for
//! every other node j, the proxy address of the link i→j instead of j's real address; clients
//! still dial the nodes' real addresses, so a node cut from its peers stays reachable by
//! clients (the "isolated leader" case).
//!
//! A cut link behaves like a silent network: the proxy stops reading and writing on its open
//! connections (the sender's socket buffer fills, its requests go unanswered) and new
//! connections are accepted but get no traffic. When the link heals, the connections frozen
//! during the cut are closed (as TCP connections that timed out during a partition would be),
//! and new connections flow again. A connection of link i→j carries both directions of that
//! TCP stream, so cutting one directed link silences whatever node i sends over the
//! connections it dialed, and the answers on them.
//!
//! Invariants: every thread the proxy starts polls the stop flag at least every
//! [`POLL`] and exits once [`Proxy`] is dropped; at most [`MAX_CONNECTIONS_PER_LINK`]
//! connections per link are open (more are closed at once). Owned by the fault suite.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often blocked threads look at the link's state and the stop flag.
pub const POLL: Duration = Duration::from_millis(10);
/// Connect timeout from the proxy to the real node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Open connections per link at most (a node keeps one outgoing connection per peer; redials
/// after failures come and go).
pub const MAX_CONNECTIONS_PER_LINK: usize = 64;
/// Copy buffer per direction of a connection.
const COPY_BUFFER_BYTES: usize = 64 << 10;

/// One directed link's shared state.
#[derive(Debug)]
pub struct Link {
    /// Dialing node (index).
    pub from: usize,
    /// Dialed node (index).
    pub to: usize,
    /// Where the dialing node connects.
    pub listen: SocketAddr,
    /// The dialed node's real address.
    pub target: SocketAddr,
    cut: AtomicBool,
    open: AtomicUsize,
}

impl Link {
    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// All links between `n` nodes, with their forwarding threads.
#[derive(Debug)]
pub struct Proxy {
    links: Vec<Arc<Link>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a forwarder for every ordered pair of distinct nodes; `targets[j]` is node j's
    /// real address. Listens on ephemeral loopback ports.
    pub fn start(targets: &[SocketAddr]) -> std::io::Result<Proxy> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        let mut threads = Vec::new();
        for (from, _) in targets.iter().enumerate() {
            for (to, target) in targets.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0")?;
                listener.set_nonblocking(true)?;
                let link = Arc::new(Link {
                    from,
                    to,
                    listen: listener.local_addr()?,
                    target: *target,
                    cut: AtomicBool::new(false),
                    open: AtomicUsize::new(0),
                });
                let (l, s) = (link.clone(), stop.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("proxy-{}-{}", from + 1, to + 1))
                        .spawn(move || accept_loop(listener, l, s))?,
                );
                links.push(link);
            }
        }
        Ok(Proxy {
            links,
            stop,
            threads,
        })
    }

    /// The address node `from` dials to reach node `to`.
    pub fn address(&self, from: usize, to: usize) -> Option<SocketAddr> {
        self.link(from, to).map(|l| l.listen)
    }

    fn link(&self, from: usize, to: usize) -> Option<&Arc<Link>> {
        self.links.iter().find(|l| l.from == from && l.to == to)
    }

    /// Cuts (or heals) the directed link `from`→`to`.
    pub fn set_cut(&self, from: usize, to: usize, cut: bool) {
        if let Some(l) = self.link(from, to) {
            l.cut.store(cut, Ordering::SeqCst);
        }
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn cut_between(&self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.set_cut(x, y, true);
                self.set_cut(y, x, true);
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for l in &self.links {
            l.cut.store(false, Ordering::SeqCst);
        }
    }

    /// The links cut now, as "n1->n2" names.
    pub fn cut_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|l| l.is_cut())
            .map(|l| format!("n{}->n{}", l.from + 1, l.to + 1))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, link: Arc<Link>, stop: Arc<AtomicBool>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        conns.retain(|h| !h.is_finished());
        match listener.accept() {
            Ok((sock, _)) => {
                if link.open.load(Ordering::SeqCst) >= MAX_CONNECTIONS_PER_LINK {
                    drop(sock);
                    continue;
                }
                link.open.fetch_add(1, Ordering::SeqCst);
                let (l, s) = (link.clone(), stop.clone());
                match std::thread::Builder::new()
                    .name(format!("proxy-conn-{}-{}", link.from + 1, link.to + 1))
                    .spawn(move || {
                        serve(sock, &l, &s);
                        l.open.fetch_sub(1, Ordering::SeqCst);
                    }) {
                    Ok(h) => conns.push(h),
                    Err(_) => {
                        link.open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Forwards one accepted connection until either side closes, the link heals after a cut
/// (frozen connections are closed), or the proxy stops.
fn serve(client: TcpStream, link: &Link, stop: &AtomicBool) {
    // A connection made while the link is cut gets no traffic; it is closed at the heal.
    let mut frozen = false;
    while link.is_cut() {
        frozen = true;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(POLL);
    }
    if frozen {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&link.target, CONNECT_TIMEOUT) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    std::thread::scope(|s| {
        s.spawn(|| copy(&client, &upstream, link, stop));
        copy(&u2, &c2, link, stop);
    });
}

/// Copies `from` → `to` until EOF, an error, a heal after a cut, or stop; then shuts both
/// sockets down so the other direction ends too.
fn copy(from: &TcpStream, to: &TcpStream, link: &Link, stop: &AtomicBool) {
    let mut buf = vec![0u8; COPY_BUFFER_BYTES];
    let _ = from.set_read_timeout(Some(POLL));
    let mut frozen = false;
    let mut reader = from;
    let mut writer = to;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if link.is_cut() {
            frozen = true;
            std::thread::sleep(POLL);
            continue;
        }
        if frozen {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Cut while this read waited: the bytes are lost, as in a partition.
                if link.is_cut() {
                    frozen = true;
                    continue;
                }
                if writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b) {
                        if n == 0 || s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Whether "ping" comes back within `wait`.
    fn round_trip_within(s: &mut TcpStream, wait: Duration) -> bool {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 4];
        s.write_all(b"ping").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"ping"
    }

    fn round_trip(s: &mut TcpStream) -> bool {
        round_trip_within(s, Duration::from_secs(5))
    }

    #[test]
    fn a_cut_link_is_silent_and_heals() {
        let (a, b) = (echo_server(), echo_server());
        let p = Proxy::start(&[a, b]).unwrap();
        let mut s = TcpStream::connect(p.address(0, 1).unwrap()).unwrap();
        assert!(round_trip(&mut s));
        p.set_cut(0, 1, true);
        assert_eq!(p.cut_links(), vec!["n1->n2".to_string()]);
        assert!(
            !round_trip_within(&mut s, Duration::from_millis(300)),
            "a cut link must not deliver"
        );
        // The other direction is a different link and still works.
        let mut r = TcpStream::connect(p.address(1, 0).unwrap()).unwrap();
        assert!(round_trip(&mut r));
        p.heal_all();
        // The frozen connection is closed; a new one works.
        std::thread::sleep(POLL * 5);
        let mut s2 = TcpStream::connect(p.address(0, 1).unwrap()).unwrap();
        assert!(round_trip(&mut s2));
    }
}
