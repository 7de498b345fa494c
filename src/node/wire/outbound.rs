//! Core messages to wire frames. Mappings: a core `AppendResponse { index, reject }` travels
//! as `AppendEntriesResponse` with `match_index = index` (on a reject: the rejected
//! `prev_index`, as the core defines it) and `conflict = reject`'s hint. A core
//! `InstallSnapshot` travels as one or more `InstallSnapshot` chunks of at most the given
//! bytes, whose bytes together are `membership_len u32 | membership | state-machine snapshot`
//! (put back together by [`super::SnapshotAssembly`]). A vote sent for a leadership transfer
//! carries RequestVote's `transfer` flag. Heartbeats travel merged, per destination
//! ([`super::heartbeats_to_wire`]).
//!
//! The leader's appends go through [`AppendFrames`] instead: each entry's shared bytes are
//! encoded straight from the log (no owned copy per entry), and an append that goes alike to
//! several followers in one round of sends is encoded once, its frame bytes copied into each
//! link's queue. Owned by the node.

use std::ops::Range;
use std::sync::Arc;

use ringraft_net::message as wire;
use ringraft_net::message::{AppendEntriesRef, EntryRef};
use ringraft_net::send_queue::AlignedVec;
use ringraft_net::NetError;

use crate::raft::{Entry, EntryKind, GroupId, Message, MessageBody, Snapshot};

/// Capacity of the encoding buffer kept between rounds; a round that needed more (many
/// distinct appends, or large entries) gives its buffer up, so a burst does not pin it. Four
/// appends at the Raft core's default message bound.
pub(crate) const APPEND_BUFFER_KEEP_BYTES: usize =
    4 * crate::raft::config::MAX_BYTES_PER_MSG_DEFAULT;

fn entry_kind_to_wire(k: EntryKind) -> wire::EntryKind {
    match k {
        EntryKind::Normal => wire::EntryKind::Normal,
        EntryKind::Noop => wire::EntryKind::Noop,
        EntryKind::Config => wire::EntryKind::ConfigChange,
    }
}

fn entry_ref(e: &Entry) -> EntryRef<'_> {
    EntryRef {
        term: e.term,
        index: e.index,
        kind: entry_kind_to_wire(e.kind),
        payload: &e.data,
    }
}

/// The wire form of an append of `group`, borrowing the entries' bytes; `None` for any other
/// message.
pub(crate) fn append_to_wire(
    group: GroupId,
    m: &Message,
) -> Option<AppendEntriesRef<impl ExactSizeIterator<Item = EntryRef<'_>> + Clone>> {
    match &m.body {
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => Some(AppendEntriesRef {
            group,
            term: m.term,
            leader: m.from,
            prev_index: *prev_index,
            prev_term: *prev_term,
            commit: *commit,
            entries: entries.iter().map(entry_ref),
        }),
        _ => None,
    }
}

/// Whether two appends (of the same group) travel as the same bytes: same sender, term,
/// position, commit and entries (each the same index, term, kind and bytes; entries shared
/// from one log compare by pointer first).
fn same_append(a: &Message, b: &Message) -> bool {
    match (&a.body, &b.body) {
        (
            MessageBody::Append {
                prev_index: pa,
                prev_term: ta,
                entries: ea,
                commit: ca,
            },
            MessageBody::Append {
                prev_index: pb,
                prev_term: tb,
                entries: eb,
                commit: cb,
            },
        ) => {
            a.from == b.from
                && a.term == b.term
                && (pa, ta, ca) == (pb, tb, cb)
                && ea.len() == eb.len()
                && ea.iter().zip(eb).all(|(x, y)| {
                    (x.index, x.term, x.kind) == (y.index, y.term, y.kind)
                        && (Arc::ptr_eq(&x.data, &y.data) || x.data == y.data)
                })
        }
        _ => false,
    }
}

/// The reusable buffer the leader's append frames are encoded into (see [`AppendRound`]).
#[derive(Debug, Default)]
pub(crate) struct AppendFrames {
    buf: AlignedVec<16>,
}

impl AppendFrames {
    /// Starts one round of sends: appends encoded in it stay available to later identical
    /// appends of the same round.
    pub(crate) fn round<'m>(&mut self) -> AppendRound<'_, 'm> {
        self.buf.clear();
        AppendRound {
            buf: &mut self.buf,
            encoded: Vec::new(),
        }
    }
}

/// One round of sends: the frames encoded so far (group, message, bytes in the buffer).
/// Bounded by the messages of the round, which the caller holds.
pub(crate) struct AppendRound<'b, 'm> {
    buf: &'b mut AlignedVec<16>,
    encoded: Vec<(GroupId, &'m Message, Range<usize>)>,
}

impl<'m> AppendRound<'_, 'm> {
    /// The frame (a request, id 0) carrying append `m` of `group`, encoded now unless an
    /// identical one was encoded earlier in this round. `None` when `m` is no append; an
    /// error when it does not fit `max_frame_bytes`.
    pub(crate) fn frame(
        &mut self,
        group: GroupId,
        m: &'m Message,
        max_frame_bytes: usize,
    ) -> Option<Result<&[u8], NetError>> {
        let ae = append_to_wire(group, m)?;
        let found = (self.encoded.iter())
            .find(|(g, e, _)| *g == group && same_append(e, m))
            .map(|(_, _, r)| r.clone());
        let range = match found {
            Some(r) => r,
            None => {
                let start = self.buf.len();
                match ringraft_net::send_queue::encode_frame(self.buf, 0, 0, &ae, max_frame_bytes) {
                    Ok(n) => {
                        self.encoded.push((group, m, start..start + n));
                        start..start + n
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        Some(Ok(&self.buf.as_slice()[range]))
    }

    /// Frames encoded in this round (not counting reuses).
    #[cfg(test)]
    pub(crate) fn encoded_frames(&self) -> usize {
        self.encoded.len()
    }
}

impl Drop for AppendRound<'_, '_> {
    fn drop(&mut self) {
        if self.buf.capacity() > APPEND_BUFFER_KEEP_BYTES {
            *self.buf = AlignedVec::new();
        }
    }
}

fn entry_to_wire(e: &Entry) -> wire::Entry {
    wire::Entry {
        term: e.term,
        index: e.index,
        kind: entry_kind_to_wire(e.kind),
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
