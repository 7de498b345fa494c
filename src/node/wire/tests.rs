//! Tests of the translation: core messages through a real send queue and decoder and back,
//! snapshot reassembly against hostile chunks, and heartbeat round resolution.

use std::sync::Arc;

use ringraft_net::message::MessageRef;
use ringraft_net::{Decoder, DecoderConfig, SendQueueConfig};

use super::snapshot_reassembly::{
    AssemblyBudget, SnapshotChunkError, MAX_SNAPSHOT_ASSEMBLIES, MAX_SNAPSHOT_ASSEMBLY_BYTES,
};
use super::*;
use ringraft_net::message as wire;
use ringraft_net::{NetError, SendQueue};

/// Queues any owned wire message on `q` as a request or as the response to `request_id`.
fn push_message(
    q: &mut SendQueue,
    request_id: u64,
    response: bool,
    m: &wire::Message,
) -> Result<usize, NetError> {
    q.push_message(frame_flags(response), request_id, m)
}
use crate::raft::{
    Entry, EntryKind, Membership, Message, MessageBody, RejectHint, Snapshot, SnapshotMeta,
};

/// Sends `m` through a real send queue and decoder and hands the validated view to `f`.
fn round_trip(m: &wire::Message, request_id: u64, f: impl FnOnce(MessageRef<'_>)) {
    let mut q = SendQueue::new(SendQueueConfig::default());
    push_message(&mut q, request_id, false, m).unwrap();
    let batch = q.take_batch().unwrap();
    let mut d = Decoder::new(DecoderConfig::default());
    assert_eq!(d.push(batch.as_slice()), batch.len());
    let frame = d.next_frame().unwrap().unwrap();
    assert_eq!(frame.header.request_id, request_id);
    f(frame.message);
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

fn through_wire(group: u64, m: &Message) -> Vec<Inbound> {
    let mut out = Vec::new();
    for w in message_to_wire(group, m, 1 << 20) {
        round_trip(&w, 0, |r| {
            out.extend(inbound_from_wire(m.to, m.from, &r, 0).unwrap())
        });
    }
    out
}

#[test]
fn raft_messages_survive_the_wire() {
    let entries = vec![
        Entry {
            index: 5,
            term: 2,
            kind: EntryKind::Normal,
            data: Arc::from(&b"cmd"[..]),
        },
        Entry {
            index: 6,
            term: 2,
            kind: EntryKind::Config,
            data: Arc::from(&b"cfg"[..]),
        },
    ];
    let cases = vec![
        MessageBody::Append {
            prev_index: 4,
            prev_term: 1,
            entries,
            commit: 3,
        },
        MessageBody::AppendResponse {
            index: 6,
            reject: None,
        },
        MessageBody::AppendResponse {
            index: 9,
            reject: Some(RejectHint { index: 4, term: 1 }),
        },
        MessageBody::Vote {
            last_index: 3,
            last_term: 2,
            transfer: false,
        },
        MessageBody::Vote {
            last_index: 3,
            last_term: 2,
            transfer: true,
        },
        MessageBody::VoteResponse { reject: true },
        MessageBody::PreVote {
            last_index: 3,
            last_term: 2,
        },
        MessageBody::PreVoteResponse { reject: false },
        MessageBody::TimeoutNow,
    ];
    for body in cases {
        let m = msg(1, 2, 7, body);
        assert_eq!(through_wire(9, &m), vec![Inbound::Raft(9, m.clone())]);
    }
}

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        kind: EntryKind::Normal,
        data: Arc::from(data),
    }
}

fn append(to: u64, prev_index: u64, commit: u64, entries: Vec<Entry>) -> Message {
    msg(
        1,
        to,
        7,
        MessageBody::Append {
            prev_index,
            prev_term: 6,
            entries,
            commit,
        },
    )
}

/// Decodes frames queued by `send_encoded`-style byte copies as follower `to` would.
fn decode_frames(bytes: &[u8], me: u64) -> Vec<Inbound> {
    let mut d = Decoder::new(DecoderConfig::default());
    assert_eq!(d.push(bytes), bytes.len());
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        assert_eq!(f.header.request_id, 0);
        assert!(!f.header.is_response());
        out.extend(inbound_from_wire(me, 1, &f.message, 0).unwrap());
    }
    out
}

#[test]
fn appends_are_encoded_once_per_round_and_arrive_unchanged() {
    let shared = vec![entry(5, 7, b"put a"), entry(6, 7, &[9u8; 300])];
    // The same append for followers 2 and 3 (the log's entries, shared), a different one for
    // 4 (another commit), one with a copy of the entries (equal bytes), one whose entry at the
    // same position holds other bytes, and one of another group.
    let to2 = append(2, 4, 3, shared.clone());
    let to3 = append(3, 4, 3, shared.clone());
    let to4 = append(4, 4, 4, shared.clone());
    let copied = append(
        5,
        4,
        3,
        vec![entry(5, 7, b"put a"), entry(6, 7, &[9u8; 300])],
    );
    let other_bytes = append(
        6,
        4,
        3,
        vec![entry(5, 7, b"put b"), entry(6, 7, &[9u8; 300])],
    );
    let msgs = [
        (9, &to2),
        (9, &to3),
        (9, &to4),
        (9, &copied),
        (9, &other_bytes),
        (8, &to2),
    ];
    let timeout_now = msg(1, 2, 7, MessageBody::TimeoutNow);
    let big = append(2, 10, 3, vec![entry(11, 7, &[1u8; 4096])]);
    let mut frames = AppendFrames::default();
    let mut round = frames.round();
    let mut sent = Vec::new();
    for (g, m) in msgs {
        let f = round.frame(g, m, 1 << 20).unwrap().unwrap();
        sent.push(f.to_vec());
    }
    // Encoded: to2 (reused for to3 and the copy), to4, other_bytes, group 8's.
    assert_eq!(round.encoded_frames(), 4);
    assert_eq!(sent[0], sent[1]);
    assert_eq!(sent[0], sent[3]);
    assert_ne!(sent[0], sent[2]);
    assert_ne!(sent[0], sent[4]);
    assert_ne!(sent[0], sent[5]);
    // Each follower reads exactly its own message, as the owned encoding would carry it.
    for ((g, m), bytes) in msgs.iter().zip(&sent) {
        let expect = Message {
            to: m.to,
            ..(*m).clone()
        };
        assert_eq!(decode_frames(bytes, m.to), vec![Inbound::Raft(*g, expect)]);
        assert_eq!(through_wire(*g, m), decode_frames(bytes, m.to));
    }
    // Not an append: left to the general path.
    assert!(round.frame(9, &timeout_now, 1 << 20).is_none());
    // Over the frame bound: a typed error, nothing kept for reuse.
    assert!(matches!(
        round.frame(9, &big, 1024),
        Some(Err(NetError::Encode(_)))
    ));
    assert_eq!(round.encoded_frames(), 4);
    drop(round);
    // A new round starts empty.
    let mut round = frames.round();
    round.frame(9, &to2, 1 << 20).unwrap().unwrap();
    assert_eq!(round.encoded_frames(), 1);
}

#[test]
fn snapshots_are_chunked_and_reassembled() {
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: 40,
            term: 3,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Arc::from(vec![7u8; 1000]),
    };
    let m = msg(1, 2, 5, MessageBody::InstallSnapshot { snapshot: snap });
    let frames = message_to_wire(3, &m, 300);
    assert_eq!(frames.len(), 4);
    let mut asm = SnapshotAssembly::default();
    let mut done = None;
    for w in frames {
        let mut inbound = Vec::new();
        round_trip(&w, 0, |r| inbound = inbound_from_wire(2, 1, &r, 0).unwrap());
        for inb in inbound {
            if let Inbound::SnapshotChunk {
                group,
                from,
                term,
                index,
                index_term,
                offset,
                data,
                done: d,
            } = inb
            {
                if let Some(msg) = asm
                    .add(
                        2,
                        group,
                        from,
                        term,
                        index,
                        index_term,
                        offset,
                        &data,
                        d,
                        1 << 20,
                    )
                    .unwrap()
                {
                    done = Some(msg);
                }
            }
        }
    }
    assert_eq!(done, Some(m));
    // A chunk that does not continue a transfer is refused.
    assert!(asm
        .add(2, 3, 1, 5, 40, 3, 300, b"x", true, 1 << 20)
        .is_err());
}

/// A valid snapshot body (membership prefix + state) of `state` bytes.
fn snapshot_bytes(state: usize) -> Vec<u8> {
    let m = Membership::with_voters([1, 2, 3]).encode();
    let mut b = (m.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&m);
    b.extend(std::iter::repeat_n(5u8, state));
    b
}

#[test]
fn hostile_snapshot_chunks_are_refused_with_typed_errors_and_bounded_memory() {
    use SnapshotChunkError as E;
    let budget = Arc::new(AssemblyBudget::new(1_000));
    let mut asm = SnapshotAssembly::with_budget(budget.clone());
    let add = |asm: &mut SnapshotAssembly, g: u64, from: u64, off: u64, data: &[u8], done| {
        asm.add(2, g, from, 5, 40, 3, off, data, done, 600)
    };
    // Offset + length past u64: refused before anything is touched.
    assert_eq!(
        add(&mut asm, 1, 1, u64::MAX - 1, b"abcd", false),
        Err(E::Overflow {
            offset: u64::MAX - 1,
            len: 4
        })
    );
    // A chunk with no start.
    assert_eq!(
        add(&mut asm, 1, 1, 10, b"x", false),
        Err(E::NoStart { offset: 10 })
    );
    // A gap drops the transfer and its bytes.
    add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
    assert!(budget.used() >= 10);
    assert!(matches!(
        add(&mut asm, 1, 1, 20, b"x", false),
        Err(E::Discontinuous {
            expected_offset: 10,
            ..
        })
    ));
    assert_eq!((asm.transfers(), budget.used()), (0, 0));
    // Another index in the middle of a transfer drops it too.
    add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
    assert!(matches!(
        asm.add(2, 1, 1, 5, 41, 3, 10, b"x", false, 600),
        Err(E::Discontinuous {
            expected_index: 40,
            ..
        })
    ));
    assert_eq!(budget.used(), 0);
    // Another leader cannot continue (or cancel) a shard's transfer.
    add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
    assert_eq!(
        add(&mut asm, 1, 9, 10, b"x", false),
        Err(E::OtherLeader {
            from: 9,
            current: 1
        })
    );
    assert_eq!(asm.transfers(), 1);
    // Larger than the largest snapshot accepted (600 here): dropped, bytes released.
    add(&mut asm, 1, 1, 10, &[0; 400], false).unwrap();
    assert_eq!(
        add(&mut asm, 1, 1, 410, &[0; 400], false),
        Err(E::TooLarge {
            bytes: 810,
            max: 600
        })
    );
    assert_eq!((asm.transfers(), budget.used()), (0, 0));
    // One transfer per shard: a new start replaces the old one, whose bytes are released.
    add(&mut asm, 1, 1, 0, &[0; 300], false).unwrap();
    add(&mut asm, 1, 3, 0, &[0; 300], false).unwrap();
    assert_eq!(asm.transfers(), 1);
    assert!(budget.used() <= 600, "{}", budget.used());
    // The node's budget (1000) bounds all transfers together.
    add(&mut asm, 2, 1, 0, &[0; 500], false).unwrap();
    assert!(matches!(
        add(&mut asm, 4, 1, 0, &[0; 300], false),
        Err(E::NodeBudget { .. })
    ));
    assert!(budget.used() <= 1_000);
    // A peer sharing the budget (another core) is bounded by the same bytes.
    let mut other = SnapshotAssembly::with_budget(budget.clone());
    assert!(matches!(
        other.add(2, 7, 1, 5, 40, 3, 0, &[0; 300], false, 600),
        Err(E::NodeBudget { .. })
    ));
    // Finishing a transfer releases its bytes; the refused one can start now.
    let body = snapshot_bytes(100);
    let done = add(&mut asm, 1, 3, 0, &body, true).unwrap();
    assert!(matches!(
        done,
        Some(Message {
            body: MessageBody::InstallSnapshot { .. },
            ..
        })
    ));
    drop(asm);
    assert_eq!(budget.used(), 0, "dropping an assembly releases its bytes");
    // A hostile membership length never panics or over-reads.
    let mut asm = SnapshotAssembly::with_budget(budget.clone());
    let mut bad = u32::MAX.to_le_bytes().to_vec();
    bad.extend_from_slice(b"short");
    assert!(matches!(
        asm.add(2, 1, 1, 5, 40, 3, 0, &bad, true, 600),
        Err(E::Malformed(_))
    ));
    assert!(matches!(
        asm.add(2, 1, 1, 5, 40, 3, 0, b"ab", true, 600),
        Err(E::Malformed(_))
    ));
    // At most MAX_SNAPSHOT_ASSEMBLIES transfers per core.
    for g in 0..MAX_SNAPSHOT_ASSEMBLIES as u64 {
        asm.add(2, g, 1, 5, 40, 3, 0, b"x", false, 600).unwrap();
    }
    assert_eq!(
        asm.add(2, 1_000, 1, 5, 40, 3, 0, b"x", false, 600),
        Err(E::TooManyTransfers)
    );
    drop(asm);
    assert_eq!(budget.used(), 0);
}

#[test]
fn every_core_of_a_node_shares_one_budget() {
    let (a, b) = (SnapshotAssembly::default(), SnapshotAssembly::default());
    assert!(Arc::ptr_eq(&a.budget, &b.budget));
    assert_eq!(a.budget.max, MAX_SNAPSHOT_ASSEMBLY_BYTES);
}

#[test]
fn heartbeat_rounds_resolve_through_request_ids() {
    let mut rounds = HeartbeatRounds::new(1);
    let hbs = [
        crate::raft::multi::GroupHeartbeat {
            group: 1,
            term: 4,
            commit: 10,
            round: 17,
        },
        crate::raft::multi::GroupHeartbeat {
            group: 3,
            term: 4,
            commit: 11,
            round: 5,
        },
    ];
    let (frame, groups) = heartbeats_to_wire(1, &hbs);
    let id = rounds.register(2, groups);
    assert_eq!(id >> 48, 1);
    // The follower feeds the request id to its core as the round ...
    let mut follower_msgs = Vec::new();
    round_trip(&frame.into(), id, |r| {
        follower_msgs = inbound_from_wire(2, 1, &r, id).unwrap();
    });
    assert!(matches!(
        &follower_msgs[0],
        Inbound::Raft(1, Message { body: MessageBody::Heartbeat { commit: 10, round }, .. }) if *round == id
    ));
    // ... whose echo comes back in a response frame with that request id.
    let echoes = [
        crate::raft::multi::GroupHeartbeatResponse {
            group: 1,
            term: 4,
            round: id,
        },
        crate::raft::multi::GroupHeartbeatResponse {
            group: 3,
            term: 4,
            round: id,
        },
    ];
    let frames = heartbeat_responses_to_wire(2, &echoes, |_| 99);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, id);
    round_trip(&frames[0].1.clone().into(), frames[0].0, |r| {
        let acks = inbound_from_wire(1, 2, &r, frames[0].0).unwrap();
        let resolved: Vec<u64> = acks
            .iter()
            .map(|a| match a {
                Inbound::HeartbeatAck {
                    group, from, batch, ..
                } => rounds.resolve(*from, *batch, *group),
                o => panic!("{o:?}"),
            })
            .collect();
        assert_eq!(resolved, vec![17, 5]);
    });
    // Unknown batches resolve to 0 (confirms nothing).
    assert_eq!(rounds.resolve(2, 12345, 1), 0);
    assert_eq!(rounds.resolve(3, id, 1), 0);
}

#[test]
fn spoofed_sender_is_refused() {
    let m = msg(5, 2, 1, MessageBody::TimeoutNow);
    let w = &message_to_wire(1, &m, 1024)[0];
    round_trip(w, 0, |r| {
        assert!(inbound_from_wire(2, 1, &r, 0)
            .unwrap_err()
            .contains("claims"));
    });
}
