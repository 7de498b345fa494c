//! The node's security on real processes: a 3-node mutual-TLS cluster serves HTTPS put/get
//! and fails over when its leader is killed; peers without a valid certificate, with another
//! cluster's or another CA's certificate, or with a certificate of another node id are refused
//! at the handshake; clients are authorized by role (certificate or bearer token); AddLearner
//! cannot rewrite a voter's address; a tokens file readable by others stops start-up.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ringraft_net::blocking_client::BlockingClient;
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

/// An HTTPS request: method, target, body and bearer token.
struct Req<'a> {
    method: &'a str,
    target: &'a str,
    body: String,
    token: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn get(target: &'a str) -> Req<'a> {
        Req {
            method: "GET",
            target,
            body: String::new(),
            token: None,
        }
    }

    fn post(target: &'a str, body: &str) -> Req<'a> {
        Req {
            method: "POST",
            target,
            body: body.to_string(),
            token: None,
        }
    }

    /// The same request with `Authorization: Bearer <token>`.
    fn token(self, token: &'a str) -> Req<'a> {
        Req {
            token: Some(token),
            ..self
        }
    }
}

/// Sends `req` to node `id` over a TLS connection configured by `tls_cfg`; node `id` must
/// answer: (status, body).
fn ask(c: &TestCluster, id: u16, tls_cfg: &TlsConfig, req: Req) -> (u16, String) {
    let Req {
        method,
        target,
        body,
        token,
    } = req;
    https(c.client_addr(id), tls_cfg, method, target, &body, token)
        .unwrap_or_else(|| panic!("node {id} did not answer {method} {target}"))
}

/// A frame-protocol connection to node `id` as client `client_id`, over TLS `tls_cfg`.
fn client_frames(c: &TestCluster, id: u16, tls_cfg: TlsConfig, client_id: u64) -> BlockingClient {
    let role = PeerRole::Client { client_id };
    frame_connect(c.client_addr(id), tls_cfg, role).unwrap()
}

/// Asserts that an answer has status `want`; its body.
fn answered(want: u16, (status, body): (u16, String)) -> String {
    assert_eq!(status, want, "{body}");
    body
}

/// Puts `key` = `value` through node `id`, retrying (bounded) until it is accepted.
fn put_accepted(
    c: &TestCluster,
    id: u16,
    tls_cfg: &TlsConfig,
    key: &str,
    value: &str,
) -> Option<(u16, String)> {
    eventually(Duration::from_secs(10), || {
        let body = put_body(key, value);
        https(c.client_addr(id), tls_cfg, "POST", "/put", &body, None).filter(|(s, _)| *s == 200)
    })
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
    put_accepted(&c, leader, &writer, "k1", "v1").expect("put over TLS");
    let b = answered(200, ask(&c, leader, &reader, Req::get("/get?key=k1")));
    assert!(b.contains("\"v1\""), "{b}");

    // Sessions are per client: the same (client_id, seq) from another client is a new write,
    // not a replay of the first one's.
    let session_put =
        |v: &str| format!(r#"{{"key": "s", "value": "{v}", "client_id": 5, "seq": 1}}"#);
    answered(
        200,
        ask(&c, leader, &writer, Req::post("/put", &session_put("a"))),
    );
    answered(
        200,
        ask(
            &c,
            leader,
            &anonymous,
            Req::post("/put", &session_put("b")).token(WRITE_TOKEN),
        ),
    );
    let b = answered(200, ask(&c, leader, &reader, Req::get("/get?key=s")));
    assert!(
        b.contains("\"b\""),
        "another client's session was replayed: {b}"
    );

    // A write sent to a follower is forwarded to the leader over TLS, for the same client.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    answered(
        200,
        ask(
            &c,
            follower,
            &writer,
            Req::post("/put", &put_body("f", "1")),
        ),
    );
    answered(
        403,
        ask(
            &c,
            follower,
            &reader,
            Req::post("/put", &put_body("f", "2")),
        ),
    );

    // Roles: a reader cannot write, a writer cannot promote; a write token can write but not
    // promote; no credentials at all is 401.
    answered(
        403,
        ask(&c, leader, &reader, Req::post("/put", &put_body("k", "x"))),
    );
    let promote = r#"{"node_id": 3}"#;
    answered(
        403,
        ask(&c, leader, &writer, Req::post("/promote", promote)),
    );
    answered(
        200,
        ask(
            &c,
            leader,
            &anonymous,
            Req::post("/put", &put_body("k2", "v2")).token(WRITE_TOKEN),
        ),
    );
    answered(
        403,
        ask(
            &c,
            leader,
            &anonymous,
            Req::post("/promote", promote).token(WRITE_TOKEN),
        ),
    );
    answered(
        401,
        ask(&c, leader, &anonymous, Req::post("/promote", promote)),
    );
    answered(
        401,
        ask(
            &c,
            leader,
            &anonymous,
            Req::post("/promote", promote).token("nope-nope-nope-nope"),
        ),
    );

    // A watch is a read: without credentials it is refused (401) before any stream starts;
    // a reader passes the role check and gets the watch's own answer (here: no such shard),
    // and over frames a reader's watch opens with its first batch.
    answered(401, ask(&c, leader, &anonymous, Req::get("/watch?prefix=")));
    answered(400, ask(&c, leader, &reader, Req::get("/watch?shard=999")));
    let mut r = client_frames(&c, leader, reader.clone(), 11);
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
    let mut w = client_frames(&c, leader, writer, 9);
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
    let mut a = client_frames(&c, leader, admin.clone(), 10);
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
    let b = answered(200, ask(&c, leader, &admin, Req::get("/status")));
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
    put_accepted(&c, new_leader, &admin, "k3", "v3").expect("put after failover");
    let b = answered(200, ask(&c, new_leader, &admin, Req::get("/get?key=k1")));
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
