//! The stored form of a value: its version and its bytes in one shared allocation.
//!
//! A [`Stored`] is an `Arc<[u8]>` whose first [`VERSION_BYTES`] bytes are the version
//! (little-endian) and the rest the value. One allocation per stored value (a separate value
//! buffer behind a shared header would be two, with a pointer chase between them and an
//! allocator header each); cloning shares it (a frozen snapshot and the live store hold the
//! same bytes until one of them writes).
//!
//! Invariants: the buffer is never shorter than [`VERSION_BYTES`] (every constructor writes
//! the version); its bytes change only through [`Stored::overwrite`], and only while nothing
//! else holds them (the reference count is one). Owned by [`super::store`].

use std::sync::Arc;

use super::store::Versioned;

/// Bytes of the version at the front of a stored value.
const VERSION_BYTES: usize = 8;

/// A value and its version in one shared allocation (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Stored(Arc<[u8]>);

impl Stored {
    /// `value` at `version`, in a fresh allocation of exactly its size plus the version.
    pub fn new(value: &[u8], version: u64) -> Stored {
        let len = VERSION_BYTES.saturating_add(value.len());
        // One allocation of the exact length (the iterator's length is known up front).
        let mut bytes: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
        if let Some(buf) = Arc::get_mut(&mut bytes) {
            write(buf, value, version);
        }
        Stored(bytes)
    }

    /// The value's bytes.
    #[inline]
    pub fn value(&self) -> &[u8] {
        self.0.get(VERSION_BYTES..).unwrap_or(&[])
    }

    /// The log index of the write that set it.
    #[inline]
    pub fn version(&self) -> u64 {
        let mut v = [0u8; VERSION_BYTES];
        if let Some(b) = self.0.get(..VERSION_BYTES) {
            v.copy_from_slice(b);
        }
        u64::from_le_bytes(v)
    }

    /// Writes `value` at `version` over these bytes in place when nothing else holds them and
    /// the value has the same length as the stored one; otherwise leaves them and returns
    /// false (the caller stores a [`Stored::new`]).
    #[inline]
    pub fn overwrite(&mut self, value: &[u8], version: u64) -> bool {
        match Arc::get_mut(&mut self.0) {
            Some(buf) if buf.len() == VERSION_BYTES.saturating_add(value.len()) => {
                write(buf, value, version);
                true
            }
            _ => false,
        }
    }

    /// An owned copy, as a read answers it.
    pub fn to_versioned(&self) -> Versioned {
        Versioned {
            value: self.value().to_vec(),
            version: self.version(),
        }
    }

    /// Where the bytes live (tests: telling an in-place write from a new allocation).
    #[cfg(test)]
    pub fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
}

/// Fills a buffer of `VERSION_BYTES + value.len()` bytes.
#[inline]
fn write(buf: &mut [u8], value: &[u8], version: u64) {
    let (head, rest) = buf.split_at_mut(VERSION_BYTES.min(buf.len()));
    head.copy_from_slice(&version.to_le_bytes()[..head.len()]);
    if let Some(dst) = rest.get_mut(..value.len()) {
        dst.copy_from_slice(value);
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("version", &self.version())
            .field("value_len", &self.value().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_and_version_round_trip_and_overwrite_only_unshared_same_length() {
        for len in [0usize, 1, 7, 8, 9, 256, 1000] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let s = Stored::new(&v, u64::MAX - len as u64);
            assert_eq!(s.value(), &v[..]);
            assert_eq!(s.version(), u64::MAX - len as u64);
        }
        let mut s = Stored::new(b"abc", 1);
        let at = s.as_ptr();
        assert!(s.overwrite(b"xyz", 2));
        assert_eq!((s.value(), s.version(), s.as_ptr()), (&b"xyz"[..], 2, at));
        assert!(
            !s.overwrite(b"toolong", 3),
            "a longer value needs its own buffer"
        );
        assert!(!s.overwrite(b"", 3), "so does a shorter one");
        let held = s.clone();
        assert!(!s.overwrite(b"new", 4), "shared bytes are never written");
        assert_eq!((held.value(), held.version()), (&b"xyz"[..], 2));
        assert_eq!(s.to_versioned().value, b"xyz");
    }
}
