//! Fuzz target for the wire-protocol decoder: any bytes, read as a packet of requests (what
//! the kernel receives) and as a packet of responses (what a client receives), must decode
//! without panicking; whatever decodes must re-encode to exactly the same bytes, since the
//! encoding is canonical; and an error must point inside the packet. Every op of protocol
//! versions 1 to 3 is reached (the batch frames' `bodies` blocks and version 3's Spawn, Stop,
//! Restrict and Spawned included): the decoders are the same for every version, and
//! `scripts/fuzz.sh` seeds the corpus with every vector of
//! `crates/warren-proto/tests/vectors.txt`, the version-2 and version-3 frames among them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_proto::{decode_requests, decode_responses, encode_request, encode_response};

fuzz_target!(|packet: &[u8]| {
    match decode_requests(packet) {
        Ok(frames) => {
            let mut out = Vec::new();
            for frame in &frames {
                encode_request(frame, &mut out).expect("a decoded request must encode");
            }
            assert_eq!(
                out, packet,
                "requests must re-encode to the bytes they came from"
            );
        }
        Err(e) => assert!(e.offset() <= packet.len(), "{e:?} points past the packet"),
    }
    match decode_responses(packet) {
        Ok(frames) => {
            let mut out = Vec::new();
            for frame in &frames {
                encode_response(frame, &mut out).expect("a decoded response must encode");
            }
            assert_eq!(
                out, packet,
                "responses must re-encode to the bytes they came from"
            );
        }
        Err(e) => assert!(e.offset() <= packet.len(), "{e:?} points past the packet"),
    }
});
