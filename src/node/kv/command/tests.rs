use super::*;
use proptest::prelude::*;

/// Transactions of every compare kind and op kind (also used by the store's tests).
pub(crate) fn arb_txn() -> impl Strategy<Value = Txn> {
    let b = || prop::collection::vec(any::<u8>(), 0..4);
    let check = prop_oneof![
        prop::option::of(b()).prop_map(TxnCheck::Value),
        (0u64..4).prop_map(TxnCheck::Version),
        any::<bool>().prop_map(TxnCheck::Exists),
    ];
    let cmp = (b(), check).prop_map(|(key, check)| TxnCompare { key, check });
    let op = prop_oneof![
        (b(), b()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        b().prop_map(|key| TxnOp::Delete { key }),
        b().prop_map(|key| TxnOp::Get { key }),
    ];
    (
        prop::collection::vec(cmp, 0..4),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compares, success, failure)| Txn {
            compares,
            success,
            failure,
        })
}

fn arb_op() -> impl Strategy<Value = WriteOp> {
    let b = || prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        (b(), b()).prop_map(|(key, value)| WriteOp::Put { key, value }),
        b().prop_map(|key| WriteOp::Delete { key }),
        (b(), prop::option::of(b()), b()).prop_map(|(key, expected, new)| WriteOp::CasValue {
            key,
            expected,
            new
        }),
        (b(), any::<u64>(), b()).prop_map(|(key, expected_version, new)| {
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            }
        }),
        Just(WriteOp::Noop),
        arb_txn().prop_map(WriteOp::Txn),
        (b(), b(), any::<u64>(), any::<u64>()).prop_map(|(key, value, lease, ttl_ms)| {
            WriteOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, ttl_ms)| WriteOp::LeaseGrant { id, ttl_ms }),
        any::<u64>().prop_map(|id| WriteOp::LeaseKeepAlive { id }),
        any::<u64>().prop_map(|id| WriteOp::LeaseRevoke { id }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(id, refreshed)| WriteOp::LeaseExpire { id, refreshed }),
    ]
}

proptest! {
    #[test]
    fn encoded_len_is_exact_and_round_trips(op in arb_op(), c in any::<u64>(), s in any::<u64>()) {
        let cmd = Command { client_id: c, seq: s, op };
        let b = cmd.encode();
        prop_assert_eq!(b.len(), cmd.encoded_len());
        // The shared encoding is the same bytes, written in place.
        prop_assert_eq!(&cmd.encode_shared()[..], &b[..]);
        prop_assert_eq!(Command::decode(&b).unwrap(), cmd);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Command::decode(&bytes);
        let _ = Command::decode_put(&bytes);
    }

    /// The borrowed put reader accepts exactly the bytes `decode` reads as a put, with the
    /// same fields; cut or extended by a byte, a put is refused by both.
    #[test]
    fn decode_put_reads_exactly_what_decode_reads_as_a_put(
        op in arb_op(), c in any::<u64>(), s in any::<u64>(), cut in any::<prop::sample::Index>(),
    ) {
        let b = Command { client_id: c, seq: s, op }.encode();
        match (Command::decode_put(&b), Command::decode(&b).unwrap()) {
            (Some(p), Command { client_id, seq, op: WriteOp::Put { key, value } }) => {
                prop_assert_eq!((p.client_id, p.seq, p.key, p.value), (client_id, seq, &key[..], &value[..]));
                let short = &b[..cut.index(b.len())];
                prop_assert!(Command::decode_put(short).is_none() && Command::decode(short).is_err());
                let mut long = b.clone();
                long.push(0);
                prop_assert!(Command::decode_put(&long).is_none() && Command::decode(&long).is_err());
            }
            (None, Command { op, .. }) => {
                let is_put = matches!(op, WriteOp::Put { .. });
                prop_assert!(!is_put, "a put not read by decode_put");
            }
            (Some(p), cmd) => prop_assert!(false, "{:?} read as the put {:?}", cmd, p),
        }
    }
}

#[test]
fn a_fill_never_writes_past_its_buffer() {
    // The in-place encoder drops a write that does not fit and remembers it, so a wrong
    // `encoded_len` can never lead to handing out a partly written shared buffer.
    let mut buf = [std::mem::MaybeUninit::new(0u8); 4];
    let mut f = Fill {
        buf: &mut buf,
        pos: 0,
        overflow: false,
    };
    f.put(&[1, 2, 3]);
    f.put(&[4, 5]);
    assert!(f.overflow);
    assert_eq!(f.pos, 3);
    f.byte(9);
    assert_eq!(f.pos, 4);
}
