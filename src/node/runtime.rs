//! The thread-per-core runtime: one glommio `LocalExecutor` per configured core, the mapping of
//! keys to shards and shards to cores, the message mesh between cores, and termination signals.
//!
//! Rules it enforces: a shard lives on exactly one core (`shard % cores`); cores share nothing
//! mutable and talk only through [`Mesh`] (bounded flume channels, one inbox per core, so a full
//! inbox is backpressure, never growth); only the main thread handles SIGTERM/SIGINT (they are
//! blocked in every thread before any executor starts, and a dedicated thread `sigwait`s them),
//! so no signal handler ever runs inside an executor.
//!
//! Placement is configurable: `Unbound` (default; right for the 2-core development machine where
//! three nodes share two CPUs) or `Pinned` (executor i on CPU `first_cpu + i`, for a dedicated
//! server), and so is spinning before parking (0 by default).
//!
//! Cross-core routing choice: a client connection lands on whichever core the kernel's
//! SO_REUSEPORT hash picks, so a request for a shard owned by another core is *forwarded* over
//! the mesh and answered on the original connection (a redirect would need the client to know
//! core-level ports; the shard-to-core hash is also public, see [`core_of_shard`], so a smart
//! client can connect per core in the future). Measured by `make bench-node` on the 2-core
//! development VM (no spinning, three nodes sharing the CPUs): a forwarded request costs ~57 µs
//! more at the median than one served by the accepting core (the cost of waking a parked
//! executor twice); `spin_before_park_us` trades CPU for most of that on a dedicated server.
//! Owned by the node.

use std::time::Duration;

use crate::node::config::{Placement, RuntimeConfig};

/// Messages an inbox holds before senders get backpressure.
pub(crate) const CORE_INBOX_CAPACITY: usize = 4_096;
/// Termination events the main thread's channel holds.
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 64;

/// The shard that owns `key`: FNV-1a (64-bit) of the key's [`hash_tag`] modulo the shard
/// count. Stable across versions and machines: clients and every node compute the same
/// mapping.
pub fn shard_of_key(key: &[u8], shards: usize) -> usize {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    for b in hash_tag(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    (h % shards.max(1) as u64) as usize
}

/// The bytes of `key` that pick its shard (Redis-cluster hash tags): when the key holds a `{`
/// followed later by a `}` with at least one byte between them, only those bytes (the first
/// such `{…}`); otherwise the whole key. Keys with the same tag share a shard, so a
/// transaction or a lease can span them: `{user42}:name` and `{user42}:mail`.
pub(crate) fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|b| *b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The core that runs `shard`.
pub(crate) fn core_of_shard(shard: usize, cores: usize) -> usize {
    shard % cores.max(1)
}

/// The shards core `core` runs, in order.
pub(crate) fn shards_of_core(core: usize, cores: usize, shards: usize) -> Vec<usize> {
    (0..shards)
        .filter(|s| core_of_shard(*s, cores) == core)
        .collect()
}

/// Bounded inboxes of every core; cloneable, `Send`, shared by all cores.
#[derive(Debug)]
pub(crate) struct Mesh<M> {
    senders: Vec<flume::Sender<M>>,
}

impl<M> Clone for Mesh<M> {
    fn clone(&self) -> Self {
        Self {
            senders: self.senders.clone(),
        }
    }
}

/// A core's inbox is full (backpressure) or its core stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeshError {
    /// The inbox holds [`CORE_INBOX_CAPACITY`] messages.
    Full,
    /// The core has stopped.
    Stopped,
    /// No such core.
    NoSuchCore,
}

impl<M> Mesh<M> {
    /// A mesh of `cores` inboxes of `capacity` messages; returns it and the receivers by core.
    pub(crate) fn new(cores: usize, capacity: usize) -> (Mesh<M>, Vec<flume::Receiver<M>>) {
        let (senders, receivers) = (0..cores).map(|_| flume::bounded(capacity)).unzip();
        (Mesh { senders }, receivers)
    }

    /// Number of cores.
    pub(crate) fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Delivers `msg` to `core` without waiting; a full inbox is an error the caller turns into
    /// Busy for its client.
    pub(crate) fn try_send(&self, core: usize, msg: M) -> Result<(), MeshError> {
        let s = self.senders.get(core).ok_or(MeshError::NoSuchCore)?;
        s.try_send(msg).map_err(|e| match e {
            flume::TrySendError::Full(_) => MeshError::Full,
            flume::TrySendError::Disconnected(_) => MeshError::Stopped,
        })
    }
}

/// Why the main thread woke up.
#[derive(Debug)]
pub(crate) enum Event {
    /// SIGTERM or SIGINT arrived (the signal number).
    Signal(i32),
    /// A core's executor returned (`Err` carries why).
    CoreExited {
        /// Which core.
        core: usize,
        /// Its result.
        result: Result<(), String>,
    },
}

/// Blocks SIGTERM and SIGINT in the calling thread; threads spawned afterwards inherit the mask.
/// Call before spawning any executor.
pub(crate) fn block_termination_signals() -> std::io::Result<()> {
    let set = termination_sigset()?;
    // SAFETY: `set` is a fully initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

fn termination_sigset() -> std::io::Result<libc::sigset_t> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given; sigaddset only reads/writes that set.
    // Both return -1 only for an invalid signal number, which SIGTERM/SIGINT are not.
    unsafe {
        if libc::sigemptyset(set.as_mut_ptr()) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGINT) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set.assume_init())
    }
}

/// Starts a thread that waits for SIGTERM/SIGINT (blocked beforehand with
/// [`block_termination_signals`]) and reports each as [`Event::Signal`].
pub(crate) fn spawn_signal_waiter(events: flume::Sender<Event>) -> std::io::Result<()> {
    let set = termination_sigset()?;
    std::thread::Builder::new()
        .name("ringraft-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and outlives the call; `sig` is a valid out-pointer.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                continue;
            }
            if events.send(Event::Signal(sig)).is_err() {
                return;
            }
        })?;
    Ok(())
}

/// Starts core `core`'s executor thread running `body`; when `body` returns, its result is
/// reported on `events` as [`Event::CoreExited`].
pub(crate) fn spawn_core<G, F>(
    core: usize,
    rt: &RuntimeConfig,
    events: flume::Sender<Event>,
    body: G,
) -> Result<glommio::ExecutorJoinHandle<()>, String>
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = Result<(), String>> + 'static,
{
    let placement = match rt.placement {
        Placement::Unbound => glommio::Placement::Unbound,
        Placement::Pinned => glommio::Placement::Fixed(rt.first_cpu + core),
    };
    let mut builder = glommio::LocalExecutorBuilder::new(placement)
        .name(&format!("ringraft-core-{core}"))
        .io_memory(rt.io_memory_bytes);
    if rt.spin_before_park_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(rt.spin_before_park_us));
    }
    builder
        .spawn(move || async move {
            let result = body().await;
            let _ = events.send(Event::CoreExited { core, result });
        })
        .map_err(|e| format!("cannot start the executor of core {core}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_mapping_is_stable_and_spread() {
        // Fixed values: the mapping is part of the protocol between clients and nodes.
        assert_eq!(
            shard_of_key(b"", 8),
            (0xcbf2_9ce4_8422_2325u64 % 8) as usize
        );
        assert_eq!(shard_of_key(b"a", 1), 0);
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            counts[shard_of_key(format!("key-{i}").as_bytes(), 4)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        assert_eq!(shards_of_core(1, 2, 5), vec![1, 3]);
        // Hash tags: only the first non-empty {…} counts.
        assert_eq!(hash_tag(b"{user42}:name"), b"user42");
        assert_eq!(hash_tag(b"a{b}c{d}"), b"b");
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"no{tag"), b"no{tag");
        assert_eq!(shard_of_key(b"{t}one", 7), shard_of_key(b"t", 7));
        assert_eq!(shard_of_key(b"x{t}two", 7), shard_of_key(b"t", 7));
        assert_eq!(core_of_shard(4, 2), 0);
    }

    #[test]
    fn mesh_is_bounded() {
        let (mesh, rx) = Mesh::<u32>::new(2, 2);
        mesh.try_send(1, 1).unwrap();
        mesh.try_send(1, 2).unwrap();
        assert_eq!(mesh.try_send(1, 3), Err(MeshError::Full));
        assert_eq!(mesh.try_send(5, 3), Err(MeshError::NoSuchCore));
        assert_eq!(rx[1].try_recv().unwrap(), 1);
        drop(rx);
        assert_eq!(mesh.try_send(0, 3), Err(MeshError::Stopped));
    }

    #[test]
    fn cores_exchange_messages_and_report_exit() {
        let (mesh, mut rx) = Mesh::<u64>::new(2, 16);
        let (ev_tx, ev_rx) = flume::bounded(8);
        let rt = RuntimeConfig::default();
        let rx1 = rx.pop().unwrap();
        let rx0 = rx.pop().unwrap();
        let m0 = mesh.clone();
        let h0 = spawn_core(0, &rt, ev_tx.clone(), move || async move {
            m0.try_send(1, 41).map_err(|e| format!("{e:?}"))?;
            let back = rx0.recv_async().await.map_err(|e| e.to_string())?;
            if back == 42 {
                Ok(())
            } else {
                Err(format!("got {back}"))
            }
        })
        .unwrap();
        let m1 = mesh.clone();
        let h1 = spawn_core(1, &rt, ev_tx, move || async move {
            let v = rx1.recv_async().await.map_err(|e| e.to_string())?;
            m1.try_send(0, v + 1).map_err(|e| format!("{e:?}"))
        })
        .unwrap();
        h0.join().unwrap();
        h1.join().unwrap();
        let mut exited: Vec<(usize, Result<(), String>)> = ev_rx
            .drain()
            .map(|e| match e {
                Event::CoreExited { core, result } => (core, result),
                Event::Signal(s) => panic!("signal {s}"),
            })
            .collect();
        exited.sort_by_key(|e| e.0);
        assert_eq!(exited, vec![(0, Ok(())), (1, Ok(()))]);
    }
}
