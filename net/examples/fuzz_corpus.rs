//! Writes a seed corpus of valid frames for the decoder fuzz target (net/fuzz):
//! `cargo run -p ringraft-net --example fuzz_corpus -- net/fuzz/corpus/decoder`.
//! Each file is `[chunk byte] + frames`, matching the fuzz target's input format.

use std::error::Error;

use ringraft_net::message::*;
use ringraft_net::send_queue::{SendQueue, SendQueueConfig};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: fuzz_corpus DIR")?;
    std::fs::create_dir_all(&dir)?;
    let entry = |i: u64| Entry {
        term: 2,
        index: i,
        kind: EntryKind::Normal,
        payload: vec![i as u8; 24],
    };
    let msgs: Vec<Message> = vec![
        LocalIdentity {
            cluster_id: 1,
            role: PeerRole::Node { node_id: 2 },
        }
        .handshake()
        .into(),
        HandshakeAck {
            protocol_version: 1,
            cluster_id: 1,
            node_id: 3,
        }
        .into(),
        ErrorFrame {
            code: ErrorCode::WrongCluster,
            message: "no".into(),
        }
        .into(),
        Ping {
            nonce: 7,
            data: b"ping".to_vec(),
        }
        .into(),
        AppendEntries {
            group: 1,
            term: 2,
            leader: 1,
            prev_index: 4,
            prev_term: 1,
            commit: 3,
            entries: (5..8).map(entry).collect(),
        }
        .into(),
        AppendEntriesResponse {
            group: 1,
            term: 2,
            from: 2,
            success: false,
            match_index: 0,
            conflict: Some(ConflictHint {
                conflict_index: 3,
                conflict_term: 1,
            }),
        }
        .into(),
        Heartbeat {
            from: 1,
            groups: vec![GroupHeartbeat {
                group: 1,
                term: 2,
                commit: 3,
            }],
        }
        .into(),
        InstallSnapshot {
            group: 1,
            term: 2,
            leader: 1,
            last_included_index: 9,
            last_included_term: 2,
            offset: 0,
            data: vec![1; 40],
            done: true,
        }
        .into(),
        ClientRequest {
            shard: 0,
            command: ClientCommand::Batch(vec![
                ClientOp::Put {
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                    session: Some(Session {
                        client_id: 1,
                        sequence: 2,
                    }),
                },
                ClientOp::Scan {
                    range: ScanRange::Prefix(b"k".to_vec()),
                    limit: 10,
                    consistency: Consistency::Lease,
                },
            ]),
        }
        .into(),
        ClientResponse {
            outcome: ClientOutcome::Single(OpOutcome::Err(ClientError::NotLeader {
                leader: Some(LeaderHint {
                    node_id: 2,
                    address: "127.0.0.1:1".into(),
                }),
            })),
            eventual: None,
        }
        .into(),
        AdminRequest::TransferLeadership { group: 1, to: 2 }.into(),
    ];
    let mut all = vec![16u8];
    for (i, m) in msgs.iter().enumerate() {
        let mut q = SendQueue::new(SendQueueConfig::default());
        push(&mut q, i as u64 + 1, m)?;
        let Some(batch) = q.take_batch() else {
            continue;
        };
        let mut file = vec![(i * 37 % 256) as u8];
        file.extend_from_slice(batch.as_slice());
        all.extend_from_slice(batch.as_slice());
        std::fs::write(format!("{dir}/seed-{i:02}-{:?}", m.kind()), file)?;
    }
    std::fs::write(format!("{dir}/seed-stream"), all)?;
    println!("wrote {} seeds to {dir}", msgs.len() + 1);
    Ok(())
}

fn push(q: &mut SendQueue, id: u64, m: &Message) -> Result<usize, ringraft_net::NetError> {
    match m {
        Message::Handshake(x) => q.push_request(id, x),
        Message::HandshakeAck(x) => q.push_response(id, x),
        Message::Error(x) => q.push_error(id, x),
        Message::Ping(x) => q.push_request(id, x),
        Message::AppendEntries(x) => q.push_request(id, x),
        Message::AppendEntriesResponse(x) => q.push_response(id, x),
        Message::Heartbeat(x) => q.push_request(id, x),
        Message::InstallSnapshot(x) => q.push_request(id, x),
        Message::ClientRequest(x) => q.push_request(id, x),
        Message::ClientResponse(x) => q.push_response(id, x),
        Message::AdminRequest(x) => q.push_request(id, x),
        other => Err(ringraft_net::NetError::Protocol(format!(
            "no seed for {:?}",
            other.kind()
        ))),
    }
}
