//! Core messages to wire frames. Mappings: a core `AppendResponse { index, reject }` travels
//! as `AppendEntriesResponse` with `match_index = index` (on a reject: the rejected
//! `prev_index`, as the core defines it) and `conflict = reject`'s hint. A core
//! `InstallSnapshot` travels as one or more `InstallSnapshot` chunks of at most the given
//! bytes, whose bytes together are `membership_len u32 | membership | state-machine snapshot`
//! (put back together by [`super::SnapshotAssembly`]). A vote sent for a leadership transfer
//! carries RequestVote's `transfer` flag. Heartbeats travel merged, per destination
//! ([`super::heartbeats_to_wire`]). Owned by the node.

use ringraft_net::message as wire;

use crate::raft::{Entry, EntryKind, GroupId, Message, MessageBody, Snapshot};

fn entry_to_wire(e: &Entry) -> wire::Entry {
    wire::Entry {
        term: e.term,
        index: e.index,
        kind: match e.kind {
            EntryKind::Normal => wire::EntryKind::Normal,
            EntryKind::Noop => wire::EntryKind::Noop,
            EntryKind::Config => wire::EntryKind::ConfigChange,
        },
        payload: e.data.to_vec(),
    }
}

/// Encodes a snapshot's wire bytes (membership then state-machine data).
pub(crate) fn snapshot_wire_bytes(s: &Snapshot) -> Vec<u8> {
    let m = s.meta.membership.encode();
    let mut out = Vec::with_capacity(4 + m.len() + s.data.len());
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&s.data);
    out
}

/// Converts one core message of `group` to wire frames (heartbeats are handled separately, see
/// [`heartbeats_to_wire`]). `chunk_bytes` bounds snapshot chunks.
pub(crate) fn message_to_wire(
    group: GroupId,
    m: &Message,
    chunk_bytes: usize,
) -> Vec<wire::Message> {
    let (from, term) = (m.from, m.term);
    match &m.body {
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => vec![wire::AppendEntries {
            group,
            term,
            leader: from,
            prev_index: *prev_index,
            prev_term: *prev_term,
            commit: *commit,
            entries: entries.iter().map(entry_to_wire).collect(),
        }
        .into()],
        MessageBody::AppendResponse { index, reject } => vec![wire::AppendEntriesResponse {
            group,
            term,
            from,
            success: reject.is_none(),
            match_index: *index,
            conflict: reject.map(|h| wire::ConflictHint {
                conflict_index: h.index,
                conflict_term: h.term,
            }),
        }
        .into()],
        MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        } => vec![wire::RequestVote {
            group,
            term,
            candidate: from,
            last_log_index: *last_index,
            last_log_term: *last_term,
            transfer: *transfer,
        }
        .into()],
        MessageBody::VoteResponse { reject } => vec![wire::RequestVoteResponse {
            group,
            term,
            from,
            granted: !reject,
        }
        .into()],
        MessageBody::PreVote {
            last_index,
            last_term,
        } => vec![wire::PreVote {
            group,
            term,
            candidate: from,
            last_log_index: *last_index,
            last_log_term: *last_term,
        }
        .into()],
        MessageBody::PreVoteResponse { reject } => vec![wire::PreVoteResponse {
            group,
            term,
            from,
            granted: !reject,
        }
        .into()],
        MessageBody::TimeoutNow => vec![wire::TimeoutNow {
            group,
            term,
            leader: from,
        }
        .into()],
        MessageBody::InstallSnapshot { snapshot } => {
            let bytes = snapshot_wire_bytes(snapshot);
            let chunk = chunk_bytes.max(1);
            let n = bytes.len().div_ceil(chunk).max(1);
            (0..n)
                .map(|i| {
                    let lo = i * chunk;
                    let hi = (lo + chunk).min(bytes.len());
                    wire::InstallSnapshot {
                        group,
                        term,
                        leader: from,
                        last_included_index: snapshot.meta.index,
                        last_included_term: snapshot.meta.term,
                        offset: lo as u64,
                        data: bytes[lo..hi].to_vec(),
                        done: i + 1 == n,
                    }
                    .into()
                })
                .collect()
        }
        // Merged separately; a stray one is sent as its own merged frame by the caller.
        MessageBody::Heartbeat { .. } | MessageBody::HeartbeatResponse { .. } => Vec::new(),
    }
}
