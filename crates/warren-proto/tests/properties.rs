//! Property tests of the codec: every valid frame survives encode then decode unchanged,
//! packets of many frames too; any bytes at all decode without panicking; and whatever decodes
//! re-encodes to exactly the bytes it came from (the encoding is canonical).

use proptest::collection::vec;
use proptest::prelude::*;

use warren_proto::{
    Bodies, DecodeError, Deliveries, Delivery, EncodeError, ErrorCode, Filter, Frame, Identity,
    Limits, MAX_BATCH, MAX_CAPS, MAX_HEADERS, MAX_SPAWN_NAMES, Message, PacketBuilder, Request,
    Response, Rights, Run, Sender, Spawn, Spawned, decode_requests, decode_responses,
    encode_request, encode_response,
};

/// Names of up to 63 characters (at most 252 bytes of UTF-8), half of them plain ASCII.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(0x20u8..0x7f, 0..=24).prop_map(|b| String::from_utf8(b).unwrap()),
        vec(any::<char>(), 0..=63).prop_map(String::from_iter),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn rights() -> impl Strategy<Value = Rights> {
    (0u32..64).prop_map(Rights)
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
    )
        .prop_map(|(memory, pids, cpus, tmpfs_size)| Limits {
            memory,
            pids,
            cpus,
            tmpfs_size,
        })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => name(),
        1 => vec(any::<char>(), 0..=1024).prop_map(String::from_iter),
    ]
}

fn spawn() -> impl Strategy<Value = Spawn> {
    (
        any::<u32>(),
        proptest::option::of(name()),
        vec(text(), 0..=6),
        vec((name(), text()), 0..=6),
        limits(),
        any::<bool>(),
        vec((name(), any::<u32>()), 0..=MAX_SPAWN_NAMES),
    )
        .prop_map(|(handle, suffix, args, env, limits, detach, names)| Spawn {
            handle,
            suffix,
            args,
            env,
            limits,
            detach,
            names,
        })
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop_oneof![
        3 => vec((name(), bytes(16)), 0..=3),
        1 => vec((name(), bytes(64)), 0..=MAX_HEADERS),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        headers(),
        any::<Option<u64>>(),
        bytes(300),
        vec(any::<u32>(), 0..=MAX_CAPS),
        any::<Option<u32>>(),
    )
        .prop_map(|(headers, correlation, body, caps, reply_to)| Message {
            headers,
            correlation,
            body,
            caps,
            reply_to,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(min_version, max_version)| Request::Hello {
            min_version,
            max_version
        }),
        (any::<u32>(), message(), any::<bool>()).prop_map(|(handle, message, wait)| {
            Request::Send {
                handle,
                message,
                wait,
            }
        }),
        (
            any::<Option<u32>>(),
            any::<Option<u64>>(),
            proptest::option::of((name(), bytes(64))),
            any::<Option<u64>>()
        )
            .prop_map(|(mailbox, correlation, header, timeout_ms)| Request::Recv {
                mailbox,
                filter: Filter {
                    correlation,
                    header
                },
                timeout_ms,
            }),
        name().prop_map(|name| Request::Lookup { name }),
        Just(Request::Whoami),
        (
            any::<u32>(),
            rights(),
            any::<Option<u32>>(),
            any::<Option<u64>>(),
            any::<Option<u64>>()
        )
            .prop_map(
                |(handle, rights, uses, expires_in_ms, badge)| Request::Attenuate {
                    handle,
                    rights,
                    uses,
                    expires_in_ms,
                    badge,
                }
            ),
        any::<u32>().prop_map(|handle| Request::Revoke { handle }),
        any::<u32>().prop_map(|handle| Request::Drop { handle }),
        any::<u32>().prop_map(|handle| Request::Monitor { handle }),
        proptest::option::of(name()).prop_map(|name| Request::CreateMailbox { name }),
        (any::<u32>(), any::<bool>(), any::<bool>(), some_bodies()).prop_map(
            |(handle, wait, quiet, bodies)| Request::SendBatch {
                handle,
                wait,
                quiet,
                bodies,
            }
        ),
        (
            any::<Option<u32>>(),
            0..=MAX_BATCH as u32,
            any::<Option<u64>>()
        )
            .prop_map(|(mailbox, max, timeout_ms)| Request::RecvBatch {
                mailbox,
                max,
                timeout_ms,
            }),
        (vec(any::<u8>(), 1..=64), vec(any::<u8>(), 0..=64))
            .prop_map(|(nonce, data)| Request::Attest { nonce, data }),
        spawn().prop_map(Request::Spawn),
        (any::<u32>(), any::<bool>()).prop_map(|(handle, kill)| Request::Stop { handle, kill }),
        (any::<u32>(), any::<Option<u32>>(), limits()).prop_map(|(handle, share, limits)| {
            Request::Restrict {
                handle,
                share,
                limits,
            }
        }),
    ]
}

fn some_bodies() -> impl Strategy<Value = Bodies> {
    vec(bytes(40), 0..12).prop_map(|v| v.iter().map(Vec::as_slice).collect())
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u16>(), name()).prop_map(|(version, env)| Response::Welcome { version, env }),
        Just(Response::Ok),
        (any::<u32>(), rights()).prop_map(|(handle, rights)| Response::Handle { handle, rights }),
        any::<u64>().prop_map(|reference| Response::Monitor { reference }),
        (
            any::<u32>(),
            name(),
            any::<u64>(),
            message(),
            any::<Option<u64>>()
        )
            .prop_map(
                |(mailbox, env, badge, m, down)| Response::Delivery(Delivery {
                    mailbox,
                    from: Sender { env, badge },
                    headers: m.headers,
                    correlation: m.correlation,
                    body: m.body,
                    caps: m.caps,
                    reply: m.reply_to,
                    down,
                })
            ),
        (name(), vec((any::<u32>(), name(), rights()), 0..20))
            .prop_map(|(env, handles)| Response::Identity(Identity { env, handles })),
        (
            any::<u32>(),
            vec((name(), any::<u64>(), some_bodies()), 0..4)
        )
            .prop_map(|(mailbox, runs)| Response::Deliveries(Deliveries {
                mailbox,
                runs: runs
                    .into_iter()
                    .map(|(env, badge, bodies)| Run {
                        from: Sender { env, badge },
                        bodies,
                    })
                    .collect(),
            })),
        any::<u32>().prop_map(|count| Response::Accepted { count }),
        (error_code(), vec(any::<char>(), 0..=255)).prop_map(|(code, detail)| Response::Error {
            code,
            detail: String::from_iter(detail)
        }),
        vec(any::<u8>(), 0..256).prop_map(|quote| Response::Quote { quote }),
        (name(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
            |(child, mailbox, control, reference)| Response::Spawned(Spawned {
                child,
                mailbox,
                control,
                reference,
            })
        ),
    ]
}

fn request_frames() -> impl Strategy<Value = Vec<Frame<Request>>> {
    vec(
        (any::<u32>(), request()).prop_map(|(id, body)| Frame { id, body }),
        1..8,
    )
}

fn response_frames() -> impl Strategy<Value = Vec<Frame<Response>>> {
    vec(
        (any::<u32>(), response()).prop_map(|(id, body)| Frame { id, body }),
        1..8,
    )
}

fn encode_requests(frames: &[Frame<Request>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        encode_request(f, &mut out).unwrap();
    }
    out
}

fn encode_responses(frames: &[Frame<Response>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        encode_response(f, &mut out).unwrap();
    }
    out
}

/// Decodes `bytes` both ways: whatever decodes must re-encode to exactly `bytes`, and an error
/// must point inside the packet (or just past its end, for a truncation).
fn decode_is_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_requests(bytes) {
        Ok(frames) => prop_assert_eq!(encode_requests(&frames), bytes),
        Err(e) => prop_assert!(e.offset() <= bytes.len(), "{:?}", e),
    }
    match decode_responses(bytes) {
        Ok(frames) => prop_assert_eq!(encode_responses(&frames), bytes),
        Err(e) => prop_assert!(e.offset() <= bytes.len(), "{:?}", e),
    }
    Ok(())
}

/// A change to a valid packet: flip bits of one byte, insert a byte, or delete a byte.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Xor(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ];
    vec(one, 1..4)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Xor(i, x) if len > 0 => bytes[i % len] ^= x,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn requests_round_trip(frames in request_frames()) {
        let packet = encode_requests(&frames);
        prop_assert_eq!(decode_requests(&packet), Ok(frames));
    }

    #[test]
    fn responses_round_trip(frames in response_frames()) {
        let packet = encode_responses(&frames);
        prop_assert_eq!(decode_responses(&packet), Ok(frames));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(bytes in bytes(512)) {
        decode_is_canonical(&bytes)?;
    }

    /// Random bytes rarely get past the frame header; these do: a consistent length and a real
    /// op code, followed by anything.
    #[test]
    fn arbitrary_fields_behind_a_valid_header(
        op in proptest::sample::select(
            vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87]),
        id in any::<u32>(),
        fields in bytes(128),
    ) {
        let mut packet = ((fields.len() + 5) as u32).to_le_bytes().to_vec();
        packet.push(op);
        packet.extend_from_slice(&id.to_le_bytes());
        packet.extend_from_slice(&fields);
        decode_is_canonical(&packet)?;
    }

    #[test]
    fn mutated_packets_never_panic_and_decode_canonically(
        requests in request_frames(),
        responses in response_frames(),
        m in mutations(),
    ) {
        decode_is_canonical(&mutate(encode_requests(&requests), &m))?;
        decode_is_canonical(&mutate(encode_responses(&responses), &m))?;
    }

    /// A frame cut short anywhere is rejected, never mistaken for a shorter valid frame.
    #[test]
    fn every_strict_prefix_of_a_frame_is_rejected(
        frame in (any::<u32>(), request()).prop_map(|(id, body)| Frame { id, body }),
        cut in any::<prop::sample::Index>(),
    ) {
        let packet = encode_requests(std::slice::from_ref(&frame));
        let cut = cut.index(packet.len());
        let result = decode_requests(&packet[..cut]);
        if cut == 0 {
            prop_assert_eq!(result, Err(DecodeError::EmptyPacket));
        } else {
            let is_truncated = matches!(result, Err(DecodeError::Truncated { .. }));
            prop_assert!(is_truncated, "{:?}", result);
        }
    }

    /// Filling packets with the builder, sending each when it reports full, loses no frame,
    /// reorders none, and never exceeds the limit.
    #[test]
    fn builder_splits_a_stream_of_frames_into_packets(
        frames in vec((any::<u32>(), request()).prop_map(|(id, body)| Frame { id, body }), 1..40),
        limit in 600usize..4096,
    ) {
        let mut builder = PacketBuilder::with_limit(limit);
        let mut packets = Vec::new();
        let mut pushed = Vec::new();
        for frame in &frames {
            match builder.push_request(frame) {
                Ok(()) => pushed.push(frame.clone()),
                Err(EncodeError::PacketFull { .. }) => {
                    if builder.is_empty() {
                        // Larger than the whole limit: can never be sent in such packets.
                        continue;
                    }
                    packets.push(builder.take());
                    if builder.push_request(frame).is_ok() {
                        pushed.push(frame.clone());
                    }
                }
                Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            }
        }
        if !builder.is_empty() {
            packets.push(builder.take());
        }
        let mut decoded = Vec::new();
        for p in &packets {
            prop_assert!(p.len() <= limit);
            decoded.extend(decode_requests(p).unwrap());
        }
        prop_assert_eq!(&decoded, &pushed);
        // Exactly the frames no larger than the limit got through.
        let fitting: Vec<_> = frames
            .iter()
            .filter(|f| encode_requests(std::slice::from_ref(f)).len() <= limit)
            .cloned()
            .collect();
        prop_assert_eq!(decoded, fitting);
    }
}
