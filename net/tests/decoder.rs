//! Decoder behaviour on good and bad bytes, without sockets: each bad-input class is rejected
//! with its own error (and never panics), and random or mutated streams are survived.

use proptest::prelude::*;
use ringraft_net::decoder::{decode_stream, Decoder, DecoderConfig};
use ringraft_net::error::{DecodeError, ErrorKind};
use ringraft_net::frame::{payload_crc32, FrameHeader, HEADER_BYTES, PROTOCOL_VERSION};
use ringraft_net::message::{AppendEntries, Entry, EntryKind, Kind, MessageRef, Ping};
use ringraft_net::send_queue::encode_frame;
use rkyv::util::AlignedVec;

/// Proptest config with a fixed seed (deterministic runs); `PROPTEST_RNG_SEED=N` overrides it.
fn seeded_config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::with_cases(cases);
    if matches!(c.rng_seed, proptest::test_runner::RngSeed::Random) {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x00DE_C0DE_5EED);
    }
    c
}

fn append_entries(n: u64) -> AppendEntries {
    AppendEntries {
        group: 3,
        term: 9,
        leader: 1,
        prev_index: 100,
        prev_term: 8,
        commit: 99,
        entries: (0..n)
            .map(|i| Entry {
                term: 9,
                index: 101 + i,
                kind: EntryKind::Normal,
                payload: vec![i as u8; 40],
            })
            .collect(),
    }
}

fn frame_of<M: ringraft_net::Encode>(m: &M, id: u64) -> Vec<u8> {
    let mut out = AlignedVec::<16>::new();
    encode_frame(&mut out, 0, id, m, 1 << 20).unwrap();
    out.as_slice().to_vec()
}

fn reseal(frame: &mut [u8]) {
    let c = payload_crc32(&frame[..28]);
    frame[28..32].copy_from_slice(&c.to_le_bytes());
}

fn first_error(bytes: &[u8], cfg: DecoderConfig) -> DecodeError {
    let s = decode_stream(bytes, cfg, 7);
    s.error.expect("expected an error")
}

fn raw_frame(kind: u16, payload: &[u8], crc: Option<u32>) -> Vec<u8> {
    let h = FrameHeader {
        version: PROTOCOL_VERSION,
        kind,
        flags: 0,
        payload_len: payload.len() as u32,
        request_id: 5,
        payload_crc32: crc.unwrap_or_else(|| payload_crc32(payload)),
    };
    let mut hdr = [0u8; HEADER_BYTES];
    h.write_to(&mut hdr);
    let mut v = hdr.to_vec();
    v.extend_from_slice(payload);
    while v.len() % 16 != 0 {
        v.push(0);
    }
    v
}

#[test]
fn good_stream_in_one_byte_chunks() {
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(frame_of(&append_entries(i), i + 1));
        bytes.extend(frame_of(
            &Ping {
                nonce: i,
                data: vec![1, 2, 3],
            },
            100 + i,
        ));
    }
    let s = decode_stream(&bytes, DecoderConfig::default(), 1);
    assert_eq!(s.frames, 10);
    assert_eq!(s.error, None);
}

#[test]
fn in_place_access_sees_entries() {
    let bytes = frame_of(&append_entries(3), 42);
    let mut dec = Decoder::new(DecoderConfig::default());
    assert_eq!(dec.push(&bytes), bytes.len());
    let f = dec.next_frame().unwrap().unwrap();
    assert_eq!(f.kind, Kind::AppendEntries);
    assert_eq!(f.header.request_id, 42);
    let MessageRef::AppendEntries(ae) = f.message else {
        panic!()
    };
    assert_eq!(ae.commit.to_native(), 99);
    let idx: Vec<u64> = ae.entry_payloads().map(|(_, i, _, _)| i).collect();
    assert_eq!(idx, vec![101, 102, 103]);
    assert!(ae.entry_payloads().all(|(_, _, _, p)| p.len() == 40));
}

#[test]
fn truncated_frame() {
    let bytes = frame_of(&append_entries(2), 1);
    let e = first_error(&bytes[..bytes.len() - 20], DecoderConfig::default());
    assert!(matches!(e, DecodeError::Truncated { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Truncated);
    // Truncated inside the header too.
    let e = first_error(&bytes[..10], DecoderConfig::default());
    assert!(matches!(e, DecodeError::Truncated { pending: 10 }), "{e:?}");
}

#[test]
fn oversize_length_rejected_before_payload_arrives() {
    let bytes = frame_of(&append_entries(50), 1);
    let cfg = DecoderConfig {
        max_frame_bytes: 512,
        ..DecoderConfig::default()
    };
    let mut dec = Decoder::new(cfg);
    dec.push(&bytes[..HEADER_BYTES]); // only the header
    let e = dec.next_frame().unwrap_err();
    assert!(matches!(e, DecodeError::Oversize { max: 512, .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::Oversize);
    // The buffer did not grow to the announced size.
    assert!(dec.buffer_bytes() < 1 << 20);
    // A huge announced length (4 GiB - 1) is also just an error.
    let mut huge = raw_frame(Kind::Ping as u16, &[], None);
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut huge);
    assert!(matches!(
        first_error(&huge, DecoderConfig::default()),
        DecodeError::Oversize { .. }
    ));
}

#[test]
fn wrong_magic() {
    let mut bytes = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    );
    bytes[1] = b'X';
    let e = first_error(&bytes, DecoderConfig::default());
    assert!(matches!(e, DecodeError::BadMagic { .. }), "{e:?}");
}

#[test]
fn header_crc_mismatch() {
    let mut bytes = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    );
    bytes[18] ^= 1; // request id
    let e = first_error(&bytes, DecoderConfig::default());
    assert!(matches!(e, DecodeError::HeaderCrcMismatch { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::CrcMismatch);
}

#[test]
fn crc_mismatch() {
    let mut bytes = frame_of(&append_entries(1), 1);
    bytes[HEADER_BYTES + 3] ^= 0x40;
    let e = first_error(&bytes, DecoderConfig::default());
    assert!(matches!(e, DecodeError::CrcMismatch { .. }), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::CrcMismatch);
}

#[test]
fn invalid_archive_with_valid_crc() {
    // 16 bytes cannot hold an AppendEntries root: validation must fail, not read out of bounds.
    let bytes = raw_frame(Kind::AppendEntries as u16, &[0xFF; 16], None);
    let e = first_error(&bytes, DecoderConfig::default());
    assert!(
        matches!(e, DecodeError::InvalidArchive { kind: 16, .. }),
        "{e:?}"
    );
    // A Ping whose vec length points past the buffer.
    let mut ping = frame_of(
        &Ping {
            nonce: 1,
            data: vec![7; 8],
        },
        1,
    );
    let len = u32::from_le_bytes(ping[12..16].try_into().unwrap()) as usize;
    // Patch the vec's length field (last 4 bytes of the 16-byte root) and fix the CRC.
    let root_end = HEADER_BYTES + len;
    ping[root_end - 4..root_end].copy_from_slice(&10_000u32.to_le_bytes());
    let crc = payload_crc32(&ping[HEADER_BYTES..root_end]);
    ping[24..28].copy_from_slice(&crc.to_le_bytes());
    reseal(&mut ping);
    let e = first_error(&ping, DecoderConfig::default());
    assert!(
        matches!(e, DecodeError::InvalidArchive { kind: 4, .. }),
        "{e:?}"
    );
}

#[test]
fn unknown_kind() {
    let bytes = raw_frame(999, &[0; 16], None);
    let e = first_error(&bytes, DecoderConfig::default());
    assert!(matches!(e, DecodeError::UnknownKind { kind: 999 }), "{e:?}");
}

#[test]
fn unsupported_frame_version_and_bad_header() {
    let mut v = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    );
    v[4] = 2;
    reseal(&mut v);
    assert!(matches!(
        first_error(&v, DecoderConfig::default()),
        DecodeError::UnsupportedVersion { got: 2, .. }
    ));
    let mut r = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    );
    r[10] = 1;
    reseal(&mut r);
    assert!(matches!(
        first_error(&r, DecoderConfig::default()),
        DecodeError::BadHeader { .. }
    ));
}

#[test]
fn failed_decoder_stays_failed() {
    let mut bytes = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    );
    bytes[0] = 0;
    let mut dec = Decoder::new(DecoderConfig::default());
    dec.push(&bytes);
    let e1 = dec.next_frame().unwrap_err();
    dec.push(&frame_of(
        &Ping {
            nonce: 2,
            data: vec![],
        },
        2,
    ));
    assert_eq!(dec.next_frame().unwrap_err(), e1);
}

fn valid_stream(seed: u64, frames: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..frames as u64 {
        if seed.wrapping_add(i).is_multiple_of(2) {
            out.extend(frame_of(&append_entries(seed.wrapping_add(i) % 5), i + 1));
        } else {
            out.extend(frame_of(
                &Ping {
                    nonce: seed,
                    data: vec![i as u8; (i * 13 % 50) as usize],
                },
                i + 1,
            ));
        }
    }
    out
}

proptest! {
    #![proptest_config(seeded_config(256))]

    /// Random bytes never panic the decoder and (practically) never yield a frame.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), chunk in 1usize..600) {
        let s = decode_stream(&bytes, DecoderConfig { max_frame_bytes: 1 << 16, ..DecoderConfig::default() }, chunk);
        prop_assert!(s.frames == 0 || bytes.starts_with(&ringraft_net::MAGIC));
        prop_assert!(bytes.is_empty() || s.error.is_some());
    }

    /// A valid, sealed header with random fields followed by random payload bytes (with a
    /// matching payload CRC half the time), so the length, kind and archive paths are exercised.
    #[test]
    fn random_payload_behind_valid_header(payload in proptest::collection::vec(any::<u8>(), 0..2048), kind in 0u16..64, flags in 0u16..4, len_delta in -8i64..8, good_crc in any::<bool>(), chunk in 1usize..600) {
        let len = (payload.len() as i64 + len_delta).max(0) as u32;
        let h = FrameHeader {
            version: PROTOCOL_VERSION,
            kind,
            flags,
            payload_len: len,
            request_id: 9,
            payload_crc32: if good_crc { payload_crc32(&payload[..(len as usize).min(payload.len())]) } else { 0 },
        };
        let mut hdr = [0u8; HEADER_BYTES];
        h.write_to(&mut hdr);
        let mut bytes = hdr.to_vec();
        bytes.extend_from_slice(&payload);
        while bytes.len() % 16 != 0 { bytes.push(0); }
        let s = decode_stream(&bytes, DecoderConfig { max_frame_bytes: 1 << 16, ..DecoderConfig::default() }, chunk);
        prop_assert!(s.frames <= 1);
    }

    /// A valid stream with bytes flipped, cut or inserted: no panic; every frame before the
    /// first damaged byte still decodes; an undamaged stream decodes completely.
    #[test]
    fn mutated_streams(seed in any::<u64>(), frames in 1usize..8, flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4), cut in any::<prop::sample::Index>(), do_cut in any::<bool>(), chunk in 1usize..1000) {
        let good = valid_stream(seed, frames);
        let whole = decode_stream(&good, DecoderConfig::default(), chunk);
        prop_assert_eq!(whole.frames, frames);
        prop_assert_eq!(whole.error, None);

        let mut boundaries = vec![0usize];
        {
            let mut dec = Decoder::new(DecoderConfig::default());
            dec.push(&good);
            while let Ok(Some(f)) = dec.next_frame() {
                let last = *boundaries.last().unwrap();
                boundaries.push(last + f.header.frame_bytes());
            }
        }
        let mut bad = good.clone();
        let mut first_damage = bad.len();
        if do_cut {
            let c = cut.index(bad.len());
            bad.truncate(c);
            // A cut between two frames is a clean end of stream, not damage.
            if !boundaries.contains(&c) {
                first_damage = c;
            }
        }
        if !bad.is_empty() {
            for (at, x) in &flips {
                let i = at.index(bad.len());
                bad[i] ^= x;
                first_damage = first_damage.min(i);
            }
        }
        let s = decode_stream(&bad, DecoderConfig::default(), chunk);
        if first_damage == good.len() {
            let expect = boundaries.iter().filter(|&&b| b > 0 && b <= bad.len()).count();
            prop_assert_eq!(s.frames, expect);
            prop_assert_eq!(s.error, None);
        } else {
            prop_assert!(s.error.is_some(), "damage at {} went unnoticed", first_damage);
            // Frames wholly before the damage are still delivered.
            let mut intact = 0;
            let mut off = 0;
            let mut dec = Decoder::new(DecoderConfig::default());
            dec.push(&good);
            while let Ok(Some(f)) = dec.next_frame() {
                off += f.header.frame_bytes();
                if off <= first_damage { intact += 1; }
            }
            prop_assert!(s.frames >= intact && s.frames <= frames);
        }
    }
}

/// The exact bytes of one frame. If this changes, nodes of different builds cannot talk:
/// bump PROTOCOL_VERSION (and check the rkyv format features pinned in the root Cargo.toml:
/// little_endian, pointer_width_32, aligned).
#[test]
fn golden_frame_bytes_are_stable() {
    let m = Ping {
        nonce: 0x0102_0304_0506_0708,
        data: vec![0xAA, 0xBB, 0xCC],
    };
    let bytes = frame_of(&m, 0x1122);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    println!("{hex}");
    assert_eq!(hex, GOLDEN_PING_FRAME_HEX);
    // pointer_width_32: archived Vec is a 4-byte relative offset + 4-byte length.
    assert_eq!(std::mem::size_of::<rkyv::vec::ArchivedVec<u8>>(), 8);
}

/// magic | version 1 | kind 4 (Ping) | flags 0 | reserved | payload_len 24 | request id 0x1122 |
/// payload crc | header crc | payload: data bytes (aa bb cc + pad), root { nonce u64,
/// data: rel. offset -16 i32, len 3 u32 } | 8 bytes padding.
const GOLDEN_PING_FRAME_HEX: &str = concat!(
    "f1525246",
    "0100",
    "0400",
    "0000",
    "0000",
    "18000000",
    "2211000000000000",
    "02485bd0",
    "cfcc8149",
    "aabbcc0000000000",
    "0807060504030201",
    "f0ffffff",
    "03000000",
    "0000000000000000",
);

#[test]
fn buffer_grows_for_a_big_frame_then_shrinks_when_idle() {
    let cfg = DecoderConfig {
        initial_buffer_bytes: 4096,
        min_read_bytes: 1024,
        max_idle_buffer_bytes: 64 * 1024,
        ..DecoderConfig::default()
    };
    let big = frame_of(&append_entries(2000), 1);
    assert!(big.len() > 64 * 1024);
    let mut dec = Decoder::new(cfg);
    let mut rest = &big[..];
    while !rest.is_empty() {
        let n = dec.push(rest);
        rest = &rest[n..];
    }
    assert!(dec.buffer_bytes() >= big.len());
    assert!(dec.next_frame().unwrap().is_some());
    let small = frame_of(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        2,
    );
    dec.push(&small);
    assert_eq!(dec.buffer_bytes(), 4096);
    assert!(dec.next_frame().unwrap().is_some());
}
