//! The byte level of the command codec: the bounds-checked little-endian [`Reader`] every
//! codec of the store shares (commands, sessions, leases, results, snapshots), the [`Sink`]s
//! a command is encoded into (a growing vector, or a fixed-length buffer filled front to
//! back), and the transaction's compares and ops in the command format of the parent module.
//!
//! Invariants: a read past the end is a typed [`CodecError`], never a panic; counts are checked
//! against their limits and the bytes left before anything is allocated for them; a [`Fill`]
//! never writes past its buffer (it remembers the overflow instead).

use super::*;

/// Appends a count bounded by the transaction limits (far below `u32::MAX`).
pub(super) fn put_count(out: &mut impl Sink, n: usize) {
    out.put(&(n as u32).to_le_bytes());
}

pub(super) fn encode_ops(out: &mut impl Sink, ops: &[TxnOp]) {
    put_count(out, ops.len());
    for op in ops {
        match op {
            TxnOp::Put { key, value } => {
                out.byte(1);
                put_slice(out, key);
                put_slice(out, value);
            }
            TxnOp::Delete { key } => {
                out.byte(2);
                put_slice(out, key);
            }
            TxnOp::Get { key } => {
                out.byte(3);
                put_slice(out, key);
            }
        }
    }
}

pub(super) fn encode_txn(out: &mut impl Sink, t: &Txn) {
    put_count(out, t.compares.len());
    for c in &t.compares {
        put_slice(out, &c.key);
        match &c.check {
            TxnCheck::Value(None) => out.byte(1),
            TxnCheck::Value(Some(v)) => {
                out.byte(2);
                put_slice(out, v);
            }
            TxnCheck::Version(v) => {
                out.byte(3);
                out.put(&v.to_le_bytes());
            }
            TxnCheck::Exists(e) => {
                out.byte(4);
                out.byte(u8::from(*e));
            }
        }
    }
    encode_ops(out, &t.success);
    encode_ops(out, &t.failure);
}

/// A count of at most `max` items of at least `min_bytes` each, checked against the bytes
/// left before anything is allocated.
pub(super) fn read_count(
    r: &mut Reader<'_>,
    max: usize,
    min_bytes: usize,
) -> Result<usize, CodecError> {
    let n = r.u32()? as usize;
    if n > max || n.saturating_mul(min_bytes) > r.left() {
        return Err(CodecError(format!(
            "transaction count {n}: at most {max}, and it must fit the bytes left"
        )));
    }
    Ok(n)
}

pub(super) fn decode_ops(r: &mut Reader<'_>) -> Result<Vec<TxnOp>, CodecError> {
    let n = read_count(r, MAX_TXN_OPS, 5)?;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(match r.u8()? {
            1 => TxnOp::Put {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
            },
            2 => TxnOp::Delete {
                key: r.bytes()?.to_vec(),
            },
            3 => TxnOp::Get {
                key: r.bytes()?.to_vec(),
            },
            k => return Err(CodecError(format!("unknown transaction op kind {k}"))),
        });
    }
    Ok(ops)
}

pub(super) fn decode_txn(r: &mut Reader<'_>) -> Result<Txn, CodecError> {
    let n = read_count(r, MAX_TXN_COMPARES, 5)?;
    let mut compares = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.bytes()?.to_vec();
        let check = match r.u8()? {
            1 => TxnCheck::Value(None),
            2 => TxnCheck::Value(Some(r.bytes()?.to_vec())),
            3 => TxnCheck::Version(r.u64()?),
            4 => TxnCheck::Exists(r.bool()?),
            k => return Err(CodecError(format!("unknown compare kind {k}"))),
        };
        compares.push(TxnCompare { key, check });
    }
    Ok(Txn {
        compares,
        success: decode_ops(r)?,
        failure: decode_ops(r)?,
    })
}

/// Appends `b` with its u32 length. Lengths are bounded by the key and value ceilings (far
/// below `u32::MAX`).
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_slice(out, b);
}

/// [`put_bytes`] into any [`Sink`].
pub(super) fn put_slice(out: &mut impl Sink, b: &[u8]) {
    out.put(&(b.len() as u32).to_le_bytes());
    out.put(b);
}

/// Where a command's encoding goes: a growable vector, or a shared buffer of exactly its
/// length ([`Fill`]).
pub(super) trait Sink {
    fn put(&mut self, b: &[u8]);
    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
}

/// Writes a fixed-length, not yet initialized buffer front to back; a write past its end is
/// dropped and remembered (`overflow`), so `[0, pos)` is always exactly what was written.
pub(super) struct Fill<'a> {
    pub(super) buf: &'a mut [MaybeUninit<u8>],
    pub(super) pos: usize,
    pub(super) overflow: bool,
}

impl Sink for Fill<'_> {
    fn put(&mut self, b: &[u8]) {
        let dst = self
            .pos
            .checked_add(b.len())
            .and_then(|end| self.buf.get_mut(self.pos..end));
        match dst {
            Some(dst) => {
                dst.write_copy_of_slice(b);
                self.pos += b.len();
            }
            None => self.overflow = true,
        }
    }
}

/// A bounds-checked little-endian reader.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                CodecError(format!(
                    "truncated: wanted {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(CodecError(format!("bad boolean byte {b}"))),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// Bytes not yet read.
    pub(crate) fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A count that announces `n` items of at least `min_item_bytes` each: refused when the
    /// rest of the buffer cannot hold them (so a hostile count never drives an allocation).
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let n = self.u64()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(CodecError(format!(
                "count {n} at offset {} does not fit the {left} bytes left",
                self.pos
            )));
        }
        Ok(n as usize)
    }

    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.pos != self.buf.len() {
            return Err(CodecError(format!(
                "{} trailing bytes after offset {}",
                self.buf.len() - self.pos,
                self.pos
            )));
        }
        Ok(())
    }
}
