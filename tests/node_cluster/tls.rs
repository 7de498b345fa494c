//! The node's security on real processes: a 3-node mutual-TLS cluster serves HTTPS put/get
//! and fails over when its leader is killed; peers without a valid certificate, with another
//! cluster's or another CA's certificate, or with a certificate of another node id are refused
//! at the handshake; clients are authorized by role (certificate or bearer token); AddLearner
//! cannot rewrite a voter's address; a tokens file readable by others stops start-up.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ringraft_net::message::{self as wire, PeerRole};
use ringraft_net::tls::certgen::CertAuthority;
use ringraft_net::tls::{Role, TlsConfig};
use ringraft_net::NetError;

use crate::client_support::http::{eventually, http, put_body};
use crate::client_support::tls::{frame_connect, https, Pki, CLUSTER, WRITE_TOKEN};
use crate::client_support::{Settings, TestCluster};
use crate::serial;

/// Longest wait for a (new) leader.
const LEADER_WAIT: Duration = Duration::from_secs(15);

/// One HTTPS request to node `id`, which must answer: (status, body).
fn ask(
    c: &TestCluster,
    id: u16,
    tls_cfg: &TlsConfig,
    method: &str,
    target: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    https(c.client_addr(id), tls_cfg, method, target, body, token)
        .unwrap_or_else(|| panic!("node {id} did not answer {method} {target}"))
}

/// Three TLS nodes with quick elections and a short lease, configured (none started), and
/// the CA that issued their certificates (under the cluster's directory).
fn tls_cluster(name: &str) -> (TestCluster, Pki) {
    let mut c = TestCluster::configure(name, 3, &Settings::default());
    let pki = Pki::new(&c.dir.join("pki"), 3);
    c.reconfigure(&Settings {
        election_timeout_ms: (400, 800),
        heartbeat_interval_ms: 50,
        tick_interval_ms: Some(10),
        lease_duration_ms: Some(200),
        request_timeout_ms: 5_000,
        security: Some(pki.security.clone()),
        ..Settings::default()
    });
    (c, pki)
}

#[test]
fn tls_cluster_authenticates_peers_and_clients_serves_and_fails_over() {
    let _serial = serial();
    let (mut c, pki) = tls_cluster("tls");
    c.start_all();
    let (leader, _) = c.wait_status_leader(LEADER_WAIT).expect("a leader");
    let admin = pki.user("ops", Role::Admin);
    let writer = pki.user("app", Role::Write);
    let reader = pki.user("viewer", Role::Read);
    let anonymous = pki.client(CLUSTER, None, None);

    // Writes and reads over HTTPS with a client certificate, through any node.
    let (s, b) = eventually(Duration::from_secs(10), || {
        https(
            c.client_addr(leader),
            &writer,
            "POST",
            "/put",
            &put_body("k1", "v1"),
            None,
        )
        .filter(|(s, _)| *s == 200)
    })
    .expect("put over TLS");
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(&c, leader, &reader, "GET", "/get?key=k1", "", None);
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"v1\""), "{b}");

    // Sessions are per client: the same (client_id, seq) from another client is a new write,
    // not a replay of the first one's.
    let session_put =
        |v: &str| format!(r#"{{"key": "s", "value": "{v}", "client_id": 5, "seq": 1}}"#);
    let (s, b) = ask(&c, leader, &writer, "POST", "/put", &session_put("a"), None);
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(
        &c,
        leader,
        &anonymous,
        "POST",
        "/put",
        &session_put("b"),
        Some(WRITE_TOKEN),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(&c, leader, &reader, "GET", "/get?key=s", "", None);
    assert_eq!(s, 200, "{b}");
    assert!(
        b.contains("\"b\""),
        "another client's session was replayed: {b}"
    );

    // A write sent to a follower is forwarded to the leader over TLS, for the same client.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (s, b) = ask(
        &c,
        follower,
        &writer,
        "POST",
        "/put",
        &put_body("f", "1"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(
        &c,
        follower,
        &reader,
        "POST",
        "/put",
        &put_body("f", "2"),
        None,
    );
    assert_eq!(s, 403, "{b}");

    // Roles: a reader cannot write, a writer cannot promote; a write token can write but not
    // promote; no credentials at all is 401.
    let (s, b) = ask(
        &c,
        leader,
        &reader,
        "POST",
        "/put",
        &put_body("k", "x"),
        None,
    );
    assert_eq!(s, 403, "{b}");
    let promote = r#"{"node_id": 3}"#;
    let (s, b) = ask(&c, leader, &writer, "POST", "/promote", promote, None);
    assert_eq!(s, 403, "{b}");
    let (s, b) = ask(
        &c,
        leader,
        &anonymous,
        "POST",
        "/put",
        &put_body("k2", "v2"),
        Some(WRITE_TOKEN),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(
        &c,
        leader,
        &anonymous,
        "POST",
        "/promote",
        promote,
        Some(WRITE_TOKEN),
    );
    assert_eq!(s, 403, "{b}");
    let (s, b) = ask(&c, leader, &anonymous, "POST", "/promote", promote, None);
    assert_eq!(s, 401, "{b}");
    let (s, b) = ask(
        &c,
        leader,
        &anonymous,
        "POST",
        "/promote",
        promote,
        Some("nope-nope-nope-nope"),
    );
    assert_eq!(s, 401, "{b}");

    // A watch is a read: without credentials it is refused (401) before any stream starts;
    // a reader passes the role check and gets the watch's own answer (here: no such shard),
    // and over frames a reader's watch opens with its first batch.
    let (s, b) = ask(&c, leader, &anonymous, "GET", "/watch?prefix=", "", None);
    assert_eq!(s, 401, "{b}");
    let (s, b) = ask(&c, leader, &reader, "GET", "/watch?shard=999", "", None);
    assert_eq!(s, 400, "{b}");
    let mut r = frame_connect(
        c.client_addr(leader),
        reader.clone(),
        PeerRole::Client { client_id: 11 },
    )
    .unwrap();
    let got = r
        .call(&wire::ClientRequest {
            shard: 0,
            command: wire::ClientCommand::Single(wire::ClientOp::Watch {
                filter: wire::WatchFilter::Prefix(Vec::new()),
                from: 0,
            }),
        })
        .unwrap();
    assert!(
        matches!(
            &got,
            wire::Message::ClientResponse(wire::ClientResponse {
                outcome: wire::ClientOutcome::Watch(wire::WatchReply::Events { .. }),
                ..
            })
        ),
        "{got:?}"
    );
    drop(r);

    // Frames: a write client cannot remove a voter; an admin client can ask, but AddLearner
    // for an existing voter at another address is refused and the voter keeps its address.
    let voter = (1..=3).find(|i| *i != leader).unwrap();
    let voter_id = u64::from(voter);
    let mut w = frame_connect(
        c.client_addr(leader),
        writer,
        PeerRole::Client { client_id: 9 },
    )
    .unwrap();
    let got = w.call(&wire::AdminRequest::Remove {
        group: 0,
        node_id: voter_id,
    });
    assert!(
        matches!(
            &got,
            Err(NetError::Refused {
                code: wire::ErrorCode::Forbidden,
                ..
            })
        ),
        "{got:?}"
    );
    let mut a = frame_connect(
        c.client_addr(leader),
        admin.clone(),
        PeerRole::Client { client_id: 10 },
    )
    .unwrap();
    let got = a
        .call(&wire::AdminRequest::AddLearner {
            group: 0,
            node_id: voter_id,
            address: "127.0.0.1:1".into(),
        })
        .unwrap();
    match got {
        wire::Message::AdminResponse(wire::AdminResponse::Failed(
            wire::ClientError::InvalidRequest(m),
        )) => assert!(m.contains("already a member"), "{m}"),
        other => panic!("AddLearner for a voter at another address: {other:?}"),
    }
    let (s, b) = ask(&c, leader, &admin, "GET", "/status", "", None);
    assert_eq!(s, 200, "{b}");
    assert!(b.contains(&c.client_addr(voter).to_string()), "{b}");

    // Peers: claiming a node id needs that node's certificate of this cluster and CA.
    let claim = PeerRole::Node { node_id: voter_id };
    let wrong_node = pki.node(CLUSTER, leader.into(), None);
    let no_cert = frame_connect(c.client_addr(leader), anonymous.clone(), claim);
    assert!(
        no_cert.is_err(),
        "a peer without a certificate was accepted"
    );
    let other_node = frame_connect(c.client_addr(leader), wrong_node, claim);
    assert!(
        other_node.is_err(),
        "a peer with another node's certificate was accepted"
    );
    let other_cluster = pki.node(7, voter_id, None);
    assert!(
        frame_connect(c.client_addr(leader), other_cluster, claim).is_err(),
        "a peer with another cluster's certificate was accepted"
    );
    let rogue = CertAuthority::generate("rogue", 2).unwrap();
    let rogue_cert = pki.node(CLUSTER, voter_id, Some(&rogue));
    assert!(
        frame_connect(c.client_addr(leader), rogue_cert, claim).is_err(),
        "a peer with a certificate of another CA was accepted"
    );

    // Refusals are counted.
    let (_, m) = http(c.metrics_addr(leader), "GET", "/metrics", "").unwrap();
    let count = |kind: &str| -> u64 {
        let needle = format!("kind=\"{kind}\"}} ");
        m.lines()
            .find(|l| l.starts_with("ringraft_errors_total") && l.contains(&needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("unauthenticated") >= 2, "{m}");
    assert!(count("forbidden") >= 3, "{m}");

    // Failover: kill the leader; the others elect a new one over TLS and keep the data.
    c.kill_node(leader);
    let (new_leader, _) = c.wait_status_leader(LEADER_WAIT).expect("a new leader");
    assert_ne!(new_leader, leader);
    let (s, b) = eventually(Duration::from_secs(10), || {
        https(
            c.client_addr(new_leader),
            &admin,
            "POST",
            "/put",
            &put_body("k3", "v3"),
            None,
        )
        .filter(|(s, _)| *s == 200)
    })
    .expect("put after failover");
    assert_eq!(s, 200, "{b}");
    let (s, b) = ask(&c, new_leader, &admin, "GET", "/get?key=k1", "", None);
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"v1\""), "{b}");
}

#[test]
fn a_tokens_file_readable_by_others_stops_start_up() {
    let (mut c, pki) = tls_cluster("tls-tokens");
    let tokens = &pki.security.tokens_file;
    std::fs::set_permissions(tokens, std::fs::Permissions::from_mode(0o640)).unwrap();
    let run = c.start_node_env(1, &[]);
    let status = c
        .wait_exit(1, Duration::from_secs(10))
        .expect("a node with a group-readable tokens file kept running");
    let err = c.stderr(1, run);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("tokens_file") && err.contains("0640") && err.contains("chmod 600"),
        "{err}"
    );
}
