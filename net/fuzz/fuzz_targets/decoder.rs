//! Fuzz target: arbitrary bytes through the frame decoder, exactly the entry point the
//! property tests use (`decode_stream`). The first byte picks the read chunk size so the
//! fuzzer also explores how frames are split across socket reads. It must never panic,
//! overflow, or read out of bounds, and every frame it validates must deserialize.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringraft_net::decoder::{decode_stream, DecoderConfig};

/// Small frame bound so oversize handling is reached with small inputs.
const FUZZ_MAX_FRAME_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let (chunk, bytes) = match data.split_first() {
        Some((c, rest)) => (*c as usize + 1, rest),
        None => (1, data),
    };
    let cfg = DecoderConfig {
        max_frame_bytes: FUZZ_MAX_FRAME_BYTES,
        ..DecoderConfig::default()
    };
    let summary = decode_stream(bytes, cfg, chunk);
    if let Some(ringraft_net::DecodeError::InvalidArchive { reason, .. }) = &summary.error {
        assert!(
            !reason.starts_with("validated but failed to deserialize"),
            "validation accepted an archive that does not deserialize: {reason}"
        );
    }
});
