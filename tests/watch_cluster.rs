//! Watches against a real 3-node cluster on loopback: a prefix watch over every shard survives
//! SIGKILL of the node serving it (the shard leader) and resumes on another node from its
//! last revision, delivering every acknowledged write exactly once, in log order per shard;
//! a watcher that does not read is cancelled "too slow" with its resume revision, and resumes.

mod client_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringraft::client::watch::{Start, Watch, WatchFilter, WatchedEvent};
use ringraft::client::{Client, Error};
use ringraft_net::blocking_client::{BlockingClient, ClientConfig as NetConfig};
use ringraft_net::message::{
    ClientCommand, ClientOp, ClientOutcome, ClientRequest, LocalIdentity, Message, PeerRole,
    WatchCancel, WatchReply,
};

use client_support::TestCluster;

const WRITES: usize = 60;

#[derive(Default)]
struct Seen {
    events: Vec<WatchedEvent>,
    covered: BTreeMap<u32, u64>,
    nodes: Vec<String>,
    reconnects: u64,
}

#[test]
fn prefix_watch_resumes_after_leader_kill_exactly_once() {
    let mut c = TestCluster::start_sharded("watch", 3, 2);
    let leader = c.wait_for_leader() as u16;
    let leader_addr = c.address(leader);

    // The watch starts on the leader of shard 0.
    let mut wcfg = c.client_config();
    wcfg.request_timeout_ms = 3_000;
    let watch = Watch::new(wcfg, WatchFilter::Prefix(b"w/".to_vec()), Start::Now)
        .unwrap()
        .start_on(&leader_addr);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut watch = watch;
            while !stop.load(Ordering::Relaxed) {
                let items = watch.poll();
                let mut s = seen.lock().unwrap();
                for it in items {
                    match it {
                        Ok(e) => s.events.push(e),
                        Err(e) => panic!("watch error: {e}"),
                    }
                }
                s.covered = watch.covered();
                if let Some(n) = watch.node() {
                    if s.nodes.last().map(String::as_str) != Some(n) {
                        s.nodes.push(n.to_string());
                    }
                }
                s.reconnects = watch.reconnects();
            }
        })
    };
    // Registered on both shards before the first write.
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen
        .lock()
        .unwrap()
        .covered
        .values()
        .filter(|&&r| r > 0)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the watch never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen.lock().unwrap().nodes.first(), Some(&leader_addr));

    let mut client = Client::connect(c.client_config()).unwrap();
    let mut acked: BTreeMap<(u32, u64), (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut unknown: BTreeSet<(Vec<u8>, Vec<u8>)> = BTreeSet::new();
    for i in 0..WRITES {
        if i == WRITES / 2 {
            c.kill_node(leader);
        }
        let (k, v) = (format!("w/{i:03}"), format!("v{i}"));
        // A key outside the prefix between every two: never an event of this watch.
        let _ = client.put(format!("x/{i}"), "ignored");
        match client.put(&k, &v) {
            Ok(rev) => {
                let shard = client.topology().shard_of(k.as_bytes());
                acked.insert((shard, rev), (k.into_bytes(), v.into_bytes()));
            }
            Err(e) if e.maybe_applied() => {
                unknown.insert((k.into_bytes(), v.into_bytes()));
            }
            Err(e) => panic!("put {k}: {e}"),
        }
    }
    assert!(acked.len() >= WRITES / 2, "most writes are acknowledged");
    let mut want: BTreeMap<u32, u64> = BTreeMap::new();
    for &(s, r) in acked.keys() {
        let m = want.entry(s).or_default();
        *m = (*m).max(r);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = seen.lock().unwrap();
        if want
            .iter()
            .all(|(sh, r)| s.covered.get(sh).is_some_and(|c| c >= r))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never caught up: covered {:?}, want {want:?}",
            s.covered
        );
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let s = seen.lock().unwrap();
    assert!(s.reconnects >= 1, "the watch resubscribed after the kill");
    assert!(
        s.nodes.iter().skip(1).all(|n| n != &leader_addr),
        "resumed on another node: {:?}",
        s.nodes
    );
    // Exactly once, in log order, per shard.
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    let mut got: BTreeMap<(u32, u64), (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for e in &s.events {
        let prev = last.insert(e.shard, e.event.revision).unwrap_or(0);
        assert!(
            e.event.revision > prev,
            "shard {}: revision {} after {prev} (duplicate or out of order)",
            e.shard,
            e.event.revision
        );
        assert!(e.event.key.starts_with(b"w/"), "filtered by prefix");
        got.insert(
            (e.shard, e.event.revision),
            (e.event.key.clone(), e.event.value.clone()),
        );
    }
    for (at, kv) in &acked {
        assert_eq!(
            got.get(at),
            Some(kv),
            "acknowledged write at {at:?} missing"
        );
    }
    for (at, kv) in &got {
        assert!(
            acked.get(at) == Some(kv) || unknown.contains(kv),
            "event at {at:?} was never written"
        );
    }
    drop(s);

    // The same watch as an async stream: a put made before it, watched from its revision
    // (its version), arrives through it.
    let mut client = Client::new(c.client_config()).unwrap();
    let version = client.put(b"w/stream", b"async").unwrap();
    let mut stream = Watch::new(
        c.client_config(),
        WatchFilter::Key(b"w/stream".to_vec()),
        Start::Revision(version),
    )
    .unwrap()
    .into_stream();
    let got = futures_lite::future::block_on(futures_lite::future::or(
        async { Some(futures_lite::StreamExt::next(&mut stream).await) },
        async {
            // Bounded: the test fails instead of hanging.
            async_io_timeout(Duration::from_secs(10)).await;
            None
        },
    ));
    match got {
        Some(Some(Ok(e))) => assert_eq!(
            (e.event.key.as_slice(), e.event.value.as_slice()),
            (&b"w/stream"[..], &b"async"[..])
        ),
        other => panic!("the stream gave {other:?}"),
    }
    let _ = Error::Config(String::new());
}

#[test]
fn a_watcher_that_does_not_read_is_cancelled_too_slow_and_resumes() {
    let c = TestCluster::start("watchslow", 3);
    c.wait_for_leader();
    let mut client = Client::connect(c.client_config()).unwrap();
    let node = c.endpoints()[0].parse().unwrap();
    let mut net = NetConfig::new(LocalIdentity {
        cluster_id: client.config().cluster_id,
        role: PeerRole::Client { client_id: 77 },
    });
    net.response_timeout_ms = 5_000;
    let mut raw = BlockingClient::connect(node, net).unwrap();
    let watch = |from| ClientRequest {
        shard: 0,
        command: ClientCommand::Single(ClientOp::Watch {
            filter: WatchFilter::Prefix(b"big/".to_vec()),
            from,
        }),
    };
    let id = raw.send(&watch(0)).unwrap();
    raw.flush().unwrap();
    let reply = |m: Message| match m {
        Message::ClientResponse(r) => match r.outcome {
            ClientOutcome::Watch(w) => w,
            o => panic!("{o:?}"),
        },
        m => panic!("{m:?}"),
    };
    let first = reply(raw.wait_for(id).unwrap().message);
    let WatchReply::Events { through: start, .. } = first else {
        panic!("{first:?}")
    };
    // Far more than the watcher's queue (4 MiB) plus the connection's and the socket's
    // buffers, while the watcher reads nothing.
    let value = vec![b'x'; 256 << 10];
    let mut revs = Vec::new();
    for i in 0..100 {
        revs.push(client.put(format!("big/{i}"), &value).unwrap());
    }
    // Now read: contiguous events, then the cancel with its reason and resume revision.
    let mut through = start;
    let mut n = 0;
    let reason = loop {
        match reply(raw.wait_for(id).unwrap().message) {
            WatchReply::Events { events, through: t } => {
                for e in &events {
                    assert!(e.revision > through && e.revision <= t);
                }
                n += events.len();
                through = t;
            }
            WatchReply::Cancelled(c) => break c,
        }
        assert!(
            through < *revs.last().unwrap(),
            "every write was delivered to a watcher that read nothing: never cancelled"
        );
    };
    let WatchCancel::TooSlow(m) = &reason else {
        panic!("{reason:?}")
    };
    assert!(
        m.contains(&format!("resume from revision {}", through + 1)),
        "{m}"
    );
    assert!(n < revs.len(), "cancelled before it was sent everything");
    // Resuming from through + 1 gets exactly the rest, or, when the history moved past it
    // meanwhile, "compacted" with the oldest revision held, from which the rest follows.
    let mut from = through + 1;
    let mut rest = Vec::new();
    let mut id = raw.send(&watch(from)).unwrap();
    raw.flush().unwrap();
    while rest.last() != revs.last() {
        match reply(raw.wait_for(id).unwrap().message) {
            WatchReply::Events { events, .. } => {
                rest.extend(events.into_iter().map(|e| e.revision))
            }
            WatchReply::Cancelled(WatchCancel::Compacted { oldest }) if rest.is_empty() => {
                assert!(oldest > from, "{oldest} <= {from}");
                from = oldest;
                id = raw.send(&watch(from)).unwrap();
                raw.flush().unwrap();
            }
            WatchReply::Cancelled(c) => panic!("{c}"),
        }
    }
    let expect: Vec<u64> = revs.iter().copied().filter(|&r| r >= from).collect();
    assert_eq!(rest, expect);
    assert_eq!(
        revs.iter().filter(|&&r| r <= through).count(),
        n,
        "what was sent before the cancel is exactly the writes through its revision"
    );

    // Over HTTP: a dropped revision is refused 410 with the oldest one held; a revision
    // still held streams its event as a JSON line.
    let http = |target: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(c.endpoints()[0].as_str()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\"revision\"")
            && !String::from_utf8_lossy(&got).contains("oldest")
        {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let gone = http("/watch?prefix=big/&from=1");
    assert!(gone.starts_with("HTTP/1.1 410"), "{gone}");
    assert!(gone.contains("compacted, the oldest revision is"), "{gone}");
    let last = *revs.last().unwrap();
    let live = http(&format!("/watch?prefix=big/99&from={last}"));
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(live.contains(&format!("\"revision\":{last}")), "{live}");
}

/// A future that completes after `d` (a thread sleeps and wakes it).
async fn async_io_timeout(d: Duration) {
    let (tx, rx) = flume::bounded::<()>(1);
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    let _ = rx.recv_async().await;
}
