//! The HTTP surface of real `ringraft server` processes: the seed's curl commands against every
//! node of a three-node cluster on loopback, and the framing rules (431, 400 on ambiguous
//! lengths, 413 before the body, 100-continue, pipelining, percent-decoding) over real sockets,
//! where a refusal must arrive as an answer, not as a reset.
//!
//! The cluster is the shared harness's (`client_support`): its own free ports and temporary
//! directory, every wait bounded, its processes killed by PID (also on panic, through `Drop`).

mod client_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use client_support::{Settings, TestCluster};
use ringraft::node::http::{parse_response, ParsedResponse};

/// Longest time any single wait in these tests may take.
const WAIT_LIMIT: Duration = Duration::from_secs(15);
/// Largest answer body these tests read.
const MAX_ANSWER: usize = 1 << 20;

/// Node addresses by the `usize` ids these tests count with.
trait Addrs {
    fn client(&self, id: usize) -> SocketAddr;
    fn metrics(&self, id: usize) -> SocketAddr;
}

impl Addrs for TestCluster {
    fn client(&self, id: usize) -> SocketAddr {
        self.client_addr(id as u16)
    }

    fn metrics(&self, id: usize) -> SocketAddr {
        self.metrics_addr(id as u16)
    }
}

/// A cluster of `n` nodes with a fast tick (the harness's other defaults).
fn start(name: &str, n: u16) -> TestCluster {
    TestCluster::start_with(
        name,
        n,
        &Settings {
            tick_interval_ms: Some(10),
            ..Settings::default()
        },
    )
}

/// Waits until some node reports itself leader of shard 0 and every node has heard of it.
fn wait_leader(c: &TestCluster) -> usize {
    let t0 = Instant::now();
    while t0.elapsed() < WAIT_LIMIT {
        let mut leader = None;
        let mut known = 0;
        for id in 1..=c.children.len() {
            if let Some(a) = exchange(c.metrics(id), &request("GET", "/status", "")) {
                let v: serde_json::Value = match serde_json::from_slice(&a.body) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if v["shards"][0]["role"] == "Leader" {
                    leader = Some(id);
                }
                if v["shards"][0]["leader_id"].as_u64().unwrap_or(0) != 0 {
                    known += 1;
                }
            }
        }
        if let (Some(l), true) = (leader, known == c.children.len()) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no leader known to every node within {WAIT_LIMIT:?}");
}

/// The bytes curl 7/8 sends for `curl [-X METHOD] URL [-H 'Content-Type: …'] [-d BODY]`.
fn request(method: &str, target: &str, body: &str) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
    );
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    Some(s)
}

/// Reads one whole answer (framed by Content-Length) from `s`, consuming it from `pending`.
fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> Option<ParsedResponse> {
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(p) = parse_response(pending, MAX_ANSWER).ok()? {
            let used = answer_len(pending)?;
            pending.drain(..used);
            return Some(p);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Length of the complete answer at the start of `buf`.
fn answer_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?.to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))?
        .trim()
        .parse()
        .ok()?;
    Some(end + len)
}

/// One request on a fresh connection, one answer.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Option<ParsedResponse> {
    let mut s = connect(addr)?;
    s.write_all(raw).ok()?;
    read_answer(&mut s, &mut Vec::new())
}

fn json(a: &ParsedResponse) -> serde_json::Value {
    serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&a.body)))
}

/// Runs curl (when installed) and returns its stdout.
fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The seed's commands, against every node: a put through a follower reaches the leader, the
/// reads answer with the value, `/promote`, `/status` and the metrics port answer as before.
fn seed_commands(c: &TestCluster, n: usize) {
    for id in 1..=n {
        let key = format!("test-key-{id}");
        let a = exchange(
            c.client(id),
            &request(
                "POST",
                "/put",
                &format!(r#"{{"key": "{key}", "value": "test-value"}}"#),
            ),
        )
        .unwrap();
        assert_eq!(a.status, 200, "put via node {id}: {:?}", json(&a));
        assert_eq!(json(&a)["ok"], true);
        assert!(json(&a)["version"].as_u64().is_some());
        for target in [
            format!("/get?key={key}"),
            format!("/get?key={key}&consistency=linearizable"),
        ] {
            let a = exchange(c.client(id), &request("GET", &target, "")).unwrap();
            assert_eq!(a.status, 200, "{target} via node {id}");
            let v = json(&a);
            assert_eq!(
                (v["key"].as_str(), v["value"].as_str()),
                (Some(key.as_str()), Some("test-value"))
            );
        }
        // Node 9 is not a learner: refused before proposal, wherever it is asked.
        let a = exchange(
            c.client(id),
            &request("POST", "/promote", r#"{"node_id": 9}"#),
        )
        .unwrap();
        assert_eq!(a.status, 400, "promote via node {id}: {:?}", json(&a));
        assert_eq!(json(&a)["shards"][0]["applied"], false);
        let a = exchange(c.client(id), &request("GET", "/status", "")).unwrap();
        assert_eq!(
            (a.status, json(&a)["node_id"].as_u64()),
            (200, Some(id as u64))
        );
        let a = exchange(c.metrics(id), &request("GET", "/metrics", "")).unwrap();
        assert_eq!(a.status, 200);
        assert!(String::from_utf8_lossy(&a.body).contains("ringraft_"));
    }
    // The same with curl itself, where it is installed.
    if curl(&["--version"]).is_none() {
        eprintln!("curl not installed: the raw-socket requests above stand in for it");
        return;
    }
    let base = |id: usize| format!("http://127.0.0.1:{}", c.ports[id - 1].0);
    let curl_put = |id: usize, body: &str| {
        let url = format!("{}/put", base(id));
        curl(&[
            "-X",
            "POST",
            &url,
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
    };
    for id in 1..=n {
        let out = curl_put(id, r#"{"key": "test-key", "value": "test-value"}"#).unwrap();
        assert!(
            out.starts_with(r#"{"ok":true,"version":"#),
            "curl put via {id}: {out}"
        );
        let out = curl(&[&format!("{}/get?key=test-key", base(id))]).unwrap();
        assert!(
            out.contains(r#""value":"test-value""#),
            "curl get via {id}: {out}"
        );
        // A body over 1 KiB: curl 7 asks Expect: 100-continue.
        let big = format!(r#"{{"key": "big", "value": "{}"}}"#, "v".repeat(4000));
        let out = curl_put(id, &big).unwrap();
        assert!(
            out.starts_with(r#"{"ok":true"#),
            "curl big put via {id}: {out}"
        );
    }
}

/// The framing rules over a real socket of node `id`.
fn framing(c: &TestCluster, id: usize) {
    let addr = c.client(id);
    // 431: a head over 8 KiB is answered, not reset, while the client is still sending.
    let mut s = connect(addr).unwrap();
    let mut raw = b"GET /get?key=a HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..1000 {
        raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(40)).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let _ = s.write_all(&raw);
    let a = read_answer(&mut s, &mut Vec::new()).expect("an answer, not a reset");
    assert_eq!(a.status, 431);

    // Ambiguous lengths: 400, and nothing after them is taken as a request.
    for head in [
        "POST /put HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        "POST /put HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "POST /put HTTP/1.1\r\nContent-Length: 2x\r\n\r\n{}",
    ] {
        let mut s = connect(addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\n\r\n").unwrap();
        let mut pending = Vec::new();
        let a = read_answer(&mut s, &mut pending).unwrap();
        assert_eq!(a.status, 400, "{head:?}");
        assert!(
            read_answer(&mut s, &mut pending).is_none(),
            "answered a request after {head:?}"
        );
    }

    // 413 before the body: with Expect: 100-continue, the refusal comes instead of 100.
    let mut s = connect(addr).unwrap();
    s.write_all(b"POST /put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let a = read_answer(&mut s, &mut Vec::new()).unwrap();
    assert_eq!(a.status, 413);

    // 413 while the client is still sending its body: the refused body is read and discarded
    // (up to 4 MiB), so a client that sends it in full is not reset and reads the answer.
    let mut s = connect(addr).unwrap();
    let body_len = 3 << 20;
    let mut raw =
        format!("POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    raw.resize(raw.len() + body_len, b'x');
    for piece in raw.chunks(64 << 10) {
        s.write_all(piece)
            .expect("the refused body is drained, not reset");
        std::thread::sleep(Duration::from_micros(200));
    }
    let a = read_answer(&mut s, &mut Vec::new()).expect("an answer, not a reset");
    assert_eq!(a.status, 413);

    // 100-continue: the interim answer, then the body, then the real answer.
    let body = format!(r#"{{"key": "cont", "value": "{}"}}"#, "c".repeat(2000));
    let mut s = connect(addr).unwrap();
    s.write_all(
        format!(
            "POST /put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let want = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want);
    s.write_all(body.as_bytes()).unwrap();
    let a = read_answer(&mut s, &mut Vec::new()).unwrap();
    assert_eq!(a.status, 200, "{:?}", json(&a));

    // Pipelining: three requests in one write; the second body looks like a request line.
    let decoy = "GET /status HTTP/1.1\r\n\r\n";
    let value = decoy.replace('\r', "\\r").replace('\n', "\\n");
    let mut raw = request("POST", "/put", r#"{"key": "pipe", "value": "one"}"#);
    raw.extend(request(
        "POST",
        "/put",
        &format!(r#"{{"key": "pipe", "value": "{value}"}}"#),
    ));
    raw.extend(request("GET", "/get?key=pipe", ""));
    let mut s = connect(addr).unwrap();
    s.write_all(&raw).unwrap();
    let mut pending = Vec::new();
    let answers: Vec<ParsedResponse> = (0..3)
        .map(|_| read_answer(&mut s, &mut pending).unwrap())
        .collect();
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200]
    );
    assert_eq!(json(&answers[2])["value"], decoy);
    assert!(pending.is_empty());

    // Percent-decoding: a key with a space, a slash, '&', '=' and a non-ASCII letter.
    let a = exchange(
        addr,
        &request("POST", "/put", r#"{"key": "a b/ü&=+", "value": "odd"}"#),
    )
    .unwrap();
    assert_eq!(a.status, 200);
    let a = exchange(
        addr,
        &request(
            "GET",
            "/get?key=a+b%2F%C3%BC%26%3D%2B&consistency=linearizable",
            "",
        ),
    )
    .unwrap();
    assert_eq!((a.status, json(&a)["value"].as_str()), (200, Some("odd")));
}

#[test]
fn seed_commands_and_framing_over_real_sockets() {
    let c = start("http-api", 3);
    let leader = wait_leader(&c);
    seed_commands(&c, 3);
    // Framing on the leader and on a follower (which forwards the writes).
    framing(&c, leader);
    framing(&c, if leader == 1 { 2 } else { 1 });
}

/// A counter of the node's Prometheus text on its metrics port.
fn metric(c: &TestCluster, id: usize, name: &str) -> u64 {
    let a = exchange(c.metrics(id), &request("GET", "/metrics", "")).unwrap();
    let text = String::from_utf8_lossy(&a.body).into_owned();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Writes through a follower travel on its existing peer link: they are applied on the leader,
/// and the leader accepts no connection for them. When the leader stops after a forward was
/// handed to the link and then dies, the follower answers 504 "outcome unknown", never 503.
#[test]
fn forwards_use_the_peer_link_and_a_broken_one_answers_outcome_unknown() {
    let mut c = start("http-forward", 3);
    let leader = wait_leader(&c);
    let follower = if leader == 1 { 2 } else { 1 };
    let put = |id: usize, key: &str, value: &str| {
        exchange(
            c.client(id),
            &request(
                "POST",
                "/put",
                &format!(r#"{{"key": "{key}", "value": "{value}"}}"#),
            ),
        )
    };
    // A first forward, so that every peer link is up before counting.
    let a = put(follower, "fwd-warm", "x").unwrap();
    assert_eq!(a.status, 200, "{:?}", json(&a));
    let accepted = "ringraft_net_connections_accepted";
    let before = metric(&c, leader, accepted);
    const N: usize = 20;
    for i in 0..N {
        let a = put(follower, &format!("fwd-{i}"), &format!("v{i}")).unwrap();
        assert_eq!(a.status, 200, "forwarded put {i}: {:?}", json(&a));
        assert!(json(&a)["version"].as_u64().is_some());
    }
    let after = metric(&c, leader, accepted);
    assert_eq!(
        after,
        before,
        "{N} forwarded writes made the leader accept {} connections",
        after - before
    );
    for i in 0..N {
        let a = exchange(
            c.client(leader),
            &request(
                "GET",
                &format!("/get?key=fwd-{i}&consistency=linearizable"),
                "",
            ),
        )
        .unwrap();
        assert_eq!(
            (a.status, json(&a)["value"].as_str()),
            (200, Some(format!("v{i}").as_str())),
            "fwd-{i} on the leader"
        );
    }

    // Stop the leader, hand a write to the follower, then kill the leader once the forward is
    // on the link: the follower cannot know whether the leader applied it.
    c.signal(leader as u16, libc::SIGSTOP);
    let addr = c.client(follower);
    let pending = std::thread::spawn(move || {
        exchange(
            addr,
            &request("POST", "/put", r#"{"key": "fwd-lost", "value": "?"}"#),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    c.signal(leader as u16, libc::SIGKILL);
    assert!(c.wait_exit(leader as u16, WAIT_LIMIT).is_some());
    let a = pending.join().unwrap().expect("an answer");
    let body = json(&a);
    assert_eq!(a.status, 504, "{body:?}");
    assert_eq!(body["outcome"], "unknown", "{body:?}");
    assert!(body.get("applied").is_none(), "{body:?}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("unknown"),
        "{body:?}"
    );
}
