//! The stored key of the data map: short keys live inline in the tree's nodes, longer ones
//! behind a shared pointer, and keys compare eight bytes at a time.
//!
//! The map is a B+tree searched by binary search in every node it passes, so one lookup makes
//! a dozen or more key comparisons. Comparing two `Arc<[u8]>` keys costs a pointer chase per
//! comparison (a likely cache miss: the key bytes live in their own allocation) and a call to
//! the C library's `memcmp`. A [`Key`] of at most [`INLINE_KEY_BYTES`] bytes is stored in the
//! node itself, and [`compare`] reads both keys as big-endian `u64` words, which orders exactly
//! like the bytes do (see [`compare`]), without a call.
//!
//! Invariants: a key of at most [`INLINE_KEY_BYTES`] bytes is always inline, a longer one
//! always shared (so equal keys have equal representations); `Ord` for [`Key`] and
//! `Comparable` for [`Probe`] are the lexicographic order of the bytes, the same order as
//! `[u8]`'s (scans, snapshots and every replica's results depend on it). Owned by
//! [`super::store`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};

/// Longest key stored inline: 22 bytes keep a [`Key`] at 24 bytes, the size of the shared form
/// with its tag (an `Arc<[u8]>` is 16 bytes), so inlining costs the tree no space.
pub const INLINE_KEY_BYTES: usize = 22;

/// A stored key (see the module docs). Dereferences to its bytes.
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    Shared(Arc<[u8]>),
}

impl Key {
    /// The key's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(b) => b,
        }
    }
}

impl From<&[u8]> for Key {
    fn from(k: &[u8]) -> Self {
        if k.len() <= INLINE_KEY_BYTES {
            let mut bytes = [0u8; INLINE_KEY_BYTES];
            bytes[..k.len()].copy_from_slice(k);
            // Fits: `k.len() <= INLINE_KEY_BYTES < 256`.
            Key(Repr::Inline {
                len: k.len() as u8,
                bytes,
            })
        } else {
            Key(Repr::Shared(Arc::from(k)))
        }
    }
}

impl Deref for Key {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Lets rare paths look a key up by `&[u8]` (the slice order is the same order).
impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_bytes())
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.as_bytes(), other.as_bytes())
    }
}

/// Key bytes to look up in the map, compared with [`compare`] (a lookup by `&[u8]` would use
/// `[u8]`'s comparison, a `memcmp` call each time).
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a>(pub &'a [u8]);

impl Equivalent<Key> for Probe<'_> {
    #[inline]
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.as_bytes()
    }
}

impl Comparable<Key> for Probe<'_> {
    #[inline]
    fn compare(&self, key: &Key) -> Ordering {
        compare(self.0, key.as_bytes())
    }
}

/// Up to eight bytes of `s` from `at` as a big-endian word, zero-padded past the end.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    match s.get(at..at + 8) {
        Some(w) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            u64::from_be_bytes(b)
        }
        None => {
            let mut v = 0u64;
            let tail = s.get(at..).unwrap_or(&[]);
            for (i, &byte) in tail.iter().enumerate() {
                v |= u64::from(byte) << (56 - 8 * i);
            }
            v
        }
    }
}

/// The lexicographic order of two byte strings, eight bytes at a time.
///
/// Each step compares the next eight bytes of both as big-endian words, zero-padded past the
/// end. Words that differ order the strings: at the first differing byte position either both
/// bytes are real (the bytes decide), or one string has ended there and the other holds a
/// non-zero byte (so the ended string is a prefix of the other and smaller, as its zero pad
/// is). Equal words with one string ended mean the shorter is a prefix of the longer (the
/// longer's bytes past the shorter's end were zero, like the pad): the lengths decide.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    let mut at = 0;
    loop {
        let (x, y) = (word(a, at), word(b, at));
        if x != y {
            return x.cmp(&y);
        }
        at += 8;
        if at >= a.len() || at >= b.len() {
            return a.len().cmp(&b.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two keys sharing a prefix (of any length, so words straddle it), each continued by a
    /// short tail over a small alphabet with zeros: equal keys, one a prefix of the other,
    /// zero bytes next to the pad and lengths around the word and inline boundaries are all
    /// likely.
    fn pair() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        let tail =
            || proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..10);
        (
            proptest::collection::vec(any::<u8>(), 0..30),
            tail(),
            tail(),
        )
            .prop_map(|(p, x, y)| {
                let (mut a, mut b) = (p.clone(), p);
                a.extend(x);
                b.extend(y);
                (a, b)
            })
    }

    proptest! {
        #[test]
        fn key_order_is_the_byte_order((a, b) in pair()) {
            prop_assert_eq!(compare(&a, &b), a.cmp(&b));
            let (ka, kb) = (Key::from(&a[..]), Key::from(&b[..]));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(Probe(&a).compare(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(&ka[..], &a[..]);
        }
    }

    #[test]
    fn boundaries_order_like_bytes() {
        let cases: [&[u8]; 10] = [
            b"",
            b"\0",
            b"\0\0\0\0\0\0\0\0",
            b"\0\0\0\0\0\0\0\0\0",
            b"a",
            b"a\0",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            &[0xff; 30],
        ];
        for a in cases {
            for b in cases {
                assert_eq!(compare(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        assert!(matches!(Key::from(&[1u8; 22][..]).0, Repr::Inline { .. }));
        assert!(matches!(Key::from(&[1u8; 23][..]).0, Repr::Shared(_)));
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }
}
