//! Byte-exact test vectors: every entry of `tests/vectors.txt` against the value (or the error)
//! written here. A valid vector must decode to its value and its value must encode to exactly
//! its bytes; an invalid one must fail with exactly the error given. Every vector in the file
//! has an expectation here and the other way round, and every request and response variant
//! appears in some vector.

use std::collections::{BTreeMap, BTreeSet};

use warren_proto::{
    Bodies, DecodeError, Deliveries, Delivery, ErrorCode, Filter, Frame, Identity, Limits,
    MAX_BATCH, MAX_BODY, MAX_CAPS, MAX_DETAIL, MAX_FRAME, MAX_HEADERS, MAX_SPAWN_ARGS,
    MAX_SPAWN_TEXT, Message, PacketBuilder, Request, Response, Rights, Run, Sender, Spawn, Spawned,
    decode_requests, decode_responses, encode_request, encode_response,
};

fn bodies(list: &[&[u8]]) -> Bodies {
    list.iter().copied().collect()
}

fn run(env: &str, badge: u64, list: &[&[u8]]) -> Run {
    Run {
        from: Sender {
            env: env.into(),
            badge,
        },
        bodies: bodies(list),
    }
}

/// What a vector decodes to, or how it fails.
enum Expect {
    Requests(Vec<Frame<Request>>),
    Responses(Vec<Frame<Response>>),
    Invalid(DecodeError),
}

/// One entry of the file.
struct Entry {
    name: String,
    direction: String,
    valid: bool,
    bytes: Vec<u8>,
}

fn parse(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap();
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [kind, name, direction] = words[..] else {
                panic!(
                    "vectors.txt:{}: expected `vector|invalid NAME DIRECTION`",
                    n + 1
                )
            };
            assert!(
                kind == "vector" || kind == "invalid",
                "vectors.txt:{}: {kind}",
                n + 1
            );
            assert!(
                direction == "request" || direction == "response",
                "vectors.txt:{}: {direction}",
                n + 1
            );
            entries.push(Entry {
                name: name.to_owned(),
                direction: direction.to_owned(),
                valid: kind == "vector",
                bytes: Vec::new(),
            });
            continue;
        }
        let entry = entries.last_mut().expect("hex before the first entry");
        for word in line.split_whitespace() {
            assert!(word.len() % 2 == 0, "vectors.txt:{}: odd hex {word}", n + 1);
            for i in (0..word.len()).step_by(2) {
                let byte = u8::from_str_radix(&word[i..i + 2], 16)
                    .unwrap_or_else(|_| panic!("vectors.txt:{}: bad hex {word}", n + 1));
                entry.bytes.push(byte);
            }
        }
    }
    entries
}

fn req(id: u32, body: Request) -> Frame<Request> {
    Frame { id, body }
}

fn resp(id: u32, body: Response) -> Frame<Response> {
    Frame { id, body }
}

fn send(handle: u32, message: Message, wait: bool) -> Request {
    Request::Send {
        handle,
        message,
        wait,
    }
}

fn delivery(mailbox: u32, env: &str, badge: u64) -> Delivery {
    Delivery {
        mailbox,
        from: Sender {
            env: env.into(),
            badge,
        },
        headers: vec![],
        correlation: None,
        body: vec![],
        caps: vec![],
        reply: None,
        down: None,
    }
}

fn truncated(offset: usize, what: &'static str, need: usize, have: usize) -> DecodeError {
    DecodeError::Truncated {
        offset,
        what,
        need,
        have,
    }
}

fn too_large(offset: usize, what: &'static str, len: usize, limit: usize) -> DecodeError {
    DecodeError::TooLarge {
        offset,
        what,
        len,
        limit,
    }
}

fn unknown_op(offset: usize, op: u8, direction: &'static str) -> DecodeError {
    DecodeError::UnknownOp {
        offset,
        op,
        direction,
    }
}

fn expectations() -> Vec<(&'static str, Expect)> {
    use Expect::{Invalid, Requests, Responses};
    let rights = |bits| Rights(bits);
    let minimal_send = send(3, Message::default(), false);
    let pong = Delivery {
        body: b"pong".to_vec(),
        ..delivery(1, "db", 0)
    };
    vec![
        // Requests.
        (
            "hello",
            Requests(vec![req(
                1,
                Request::Hello {
                    min_version: 1,
                    max_version: 1,
                },
            )]),
        ),
        (
            "hello-range",
            Requests(vec![req(
                u32::MAX,
                Request::Hello {
                    min_version: 1,
                    max_version: 3,
                },
            )]),
        ),
        ("send-minimal", Requests(vec![req(2, minimal_send.clone())])),
        (
            "send-body",
            Requests(vec![req(
                2,
                send(
                    4,
                    Message {
                        body: b"hello".to_vec(),
                        ..Message::default()
                    },
                    false,
                ),
            )]),
        ),
        (
            "send-full",
            Requests(vec![req(
                0x0102_0304,
                send(
                    5,
                    Message {
                        headers: vec![("type".into(), b"ping".to_vec())],
                        correlation: Some(0x1122_3344_5566_7788),
                        body: b"hello".to_vec(),
                        caps: vec![6, 7],
                        reply_to: Some(1),
                    },
                    true,
                ),
            )]),
        ),
        (
            "recv-default",
            Requests(vec![req(
                3,
                Request::Recv {
                    mailbox: None,
                    filter: Filter::default(),
                    timeout_ms: None,
                },
            )]),
        ),
        (
            "recv-filtered",
            Requests(vec![req(
                4,
                Request::Recv {
                    mailbox: Some(2),
                    filter: Filter {
                        correlation: Some(42),
                        header: Some(("k".into(), b"v".to_vec())),
                    },
                    timeout_ms: Some(1500),
                },
            )]),
        ),
        (
            "recv-poll",
            Requests(vec![req(
                5,
                Request::Recv {
                    mailbox: None,
                    filter: Filter::default(),
                    timeout_ms: Some(0),
                },
            )]),
        ),
        (
            "lookup",
            Requests(vec![req(5, Request::Lookup { name: "db".into() })]),
        ),
        (
            "lookup-utf8",
            Requests(vec![req(
                14,
                Request::Lookup {
                    name: "café".into(),
                },
            )]),
        ),
        ("whoami", Requests(vec![req(6, Request::Whoami)])),
        (
            "attenuate-all",
            Requests(vec![req(
                7,
                Request::Attenuate {
                    handle: 3,
                    rights: Rights::SEND.union(Rights::GRANT),
                    uses: Some(1),
                    expires_in_ms: Some(60_000),
                    badge: Some(0xdead_beef),
                },
            )]),
        ),
        (
            "attenuate-rights-only",
            Requests(vec![req(
                8,
                Request::Attenuate {
                    handle: 3,
                    rights: Rights::SEND,
                    uses: None,
                    expires_in_ms: None,
                    badge: None,
                },
            )]),
        ),
        (
            "revoke",
            Requests(vec![req(9, Request::Revoke { handle: 10 })]),
        ),
        (
            "drop",
            Requests(vec![req(10, Request::Drop { handle: 11 })]),
        ),
        (
            "monitor",
            Requests(vec![req(11, Request::Monitor { handle: 12 })]),
        ),
        (
            "create-mailbox",
            Requests(vec![req(12, Request::CreateMailbox { name: None })]),
        ),
        (
            "create-mailbox-named",
            Requests(vec![req(
                13,
                Request::CreateMailbox {
                    name: Some("session-1".into()),
                },
            )]),
        ),
        (
            "batch-requests",
            Requests(vec![
                req(1, Request::Whoami),
                req(2, Request::Lookup { name: "db".into() }),
                req(3, minimal_send),
            ]),
        ),
        // Responses.
        (
            "welcome",
            Responses(vec![resp(
                1,
                Response::Welcome {
                    version: 1,
                    env: "web".into(),
                },
            )]),
        ),
        ("ok", Responses(vec![resp(2, Response::Ok)])),
        (
            "handle",
            Responses(vec![resp(
                5,
                Response::Handle {
                    handle: 7,
                    rights: rights(7),
                },
            )]),
        ),
        (
            "monitor-ref",
            Responses(vec![resp(
                11,
                Response::Monitor {
                    reference: 0x0102_0304_0506_0708,
                },
            )]),
        ),
        (
            "delivery-minimal",
            Responses(vec![resp(3, Response::Delivery(pong))]),
        ),
        (
            "delivery-full",
            Responses(vec![resp(
                4,
                Response::Delivery(Delivery {
                    headers: vec![("a".into(), vec![]), ("b".into(), vec![0x00, 0xff])],
                    correlation: Some(42),
                    caps: vec![9],
                    reply: Some(10),
                    ..delivery(2, "web@alpha", 0xfeed)
                }),
            )]),
        ),
        (
            "delivery-down",
            Responses(vec![resp(
                5,
                Response::Delivery(Delivery {
                    down: Some(77),
                    ..delivery(1, "db", 3)
                }),
            )]),
        ),
        (
            "identity",
            Responses(vec![resp(
                6,
                Response::Identity(Identity {
                    env: "web".into(),
                    handles: vec![
                        (1, "web".into(), Rights::KNOWN_V2),
                        (2, "db".into(), Rights::SEND),
                    ],
                }),
            )]),
        ),
        (
            "identity-empty",
            Responses(vec![resp(
                7,
                Response::Identity(Identity {
                    env: "e".into(),
                    handles: vec![],
                }),
            )]),
        ),
        (
            "quota-error",
            Responses(vec![resp(
                10,
                Response::Error {
                    code: ErrorCode::Quota,
                    detail: "receiver's byte quota exceeded".into(),
                },
            )]),
        ),
        (
            "error",
            Responses(vec![resp(
                9,
                Response::Error {
                    code: ErrorCode::Revoked,
                    detail: "capability revoked".into(),
                },
            )]),
        ),
        (
            "error-codes",
            Responses(
                ErrorCode::ALL
                    .iter()
                    .map(|&code| {
                        resp(
                            code as u32,
                            Response::Error {
                                code,
                                detail: String::new(),
                            },
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "batch-responses",
            Responses(vec![
                resp(
                    1,
                    Response::Identity(Identity {
                        env: "web".into(),
                        handles: vec![
                            (1, "web".into(), Rights::KNOWN_V2),
                            (2, "db".into(), rights(7)),
                            (3, "log".into(), rights(7)),
                        ],
                    }),
                ),
                resp(
                    2,
                    Response::Handle {
                        handle: 4,
                        rights: rights(7),
                    },
                ),
                resp(3, Response::Ok),
            ]),
        ),
        // Invalid packets.
        (
            "attest",
            Requests(vec![req(
                14,
                Request::Attest {
                    nonce: vec![1, 2, 3, 4],
                    data: b"ab".to_vec(),
                },
            )]),
        ),
        (
            "quote",
            Responses(vec![resp(
                14,
                Response::Quote {
                    quote: b"{}".to_vec(),
                },
            )]),
        ),
        (
            "spawn-minimal",
            Requests(vec![req(
                0x20,
                Request::Spawn(Spawn {
                    handle: 2,
                    ..Spawn::default()
                }),
            )]),
        ),
        (
            "spawn-full",
            Requests(vec![req(
                0x21,
                Request::Spawn(Spawn {
                    handle: 2,
                    suffix: Some("r1".into()),
                    args: vec!["--once".into(), String::new()],
                    env: vec![("REQUEST_ID".into(), "42".into())],
                    limits: Limits {
                        memory: Some(32 << 20),
                        pids: None,
                        cpus: Some(250_000),
                        tmpfs_size: None,
                    },
                    detach: false,
                    names: vec![("store".into(), 3), ("log".into(), 4)],
                }),
            )]),
        ),
        (
            "stop",
            Requests(vec![req(
                0x22,
                Request::Stop {
                    handle: 5,
                    kill: true,
                },
            )]),
        ),
        (
            "restrict",
            Requests(vec![req(
                0x23,
                Request::Restrict {
                    handle: 2,
                    share: Some(10),
                    limits: Limits {
                        memory: Some(16 << 20),
                        pids: Some(8),
                        cpus: None,
                        tmpfs_size: None,
                    },
                },
            )]),
        ),
        (
            "spawned",
            Responses(vec![resp(
                0x21,
                Response::Spawned(Spawned {
                    child: "req-r1".into(),
                    mailbox: 5,
                    control: 6,
                    reference: 7,
                }),
            )]),
        ),
        (
            "handle-spawn",
            Responses(vec![resp(
                0x24,
                Response::Handle {
                    handle: 7,
                    rights: Rights::SPAWN.union(Rights::GRANT),
                },
            )]),
        ),
        (
            "delivery-child-down",
            Responses(vec![resp(
                0x25,
                Response::Delivery(Delivery {
                    headers: vec![
                        ("warren-down".into(), b"ended".to_vec()),
                        ("warren-exit".into(), b"code=3".to_vec()),
                    ],
                    down: Some(7),
                    ..delivery(1, "req-r1", 0)
                }),
            )]),
        ),
        (
            "spawn-args-over-limit",
            Invalid(too_large(14, "spawn args", 65, MAX_SPAWN_ARGS)),
        ),
        (
            "spawn-arg-over-limit",
            Invalid(too_large(16, "spawn arg", 4097, MAX_SPAWN_TEXT)),
        ),
        (
            "spawn-names-beyond-input",
            Invalid(truncated(25, "spawn names", 10, 0)),
        ),
        (
            "stop-bad-kill",
            Invalid(DecodeError::BadTag {
                offset: 13,
                what: "kill",
                tag: 2,
            }),
        ),
        (
            "rights-beyond-stop",
            Invalid(DecodeError::UnknownRights {
                offset: 13,
                what: "handle rights",
                bits: 0x40,
            }),
        ),
        (
            "error-code-gap",
            Invalid(DecodeError::UnknownErrorCode {
                offset: 9,
                code: 42,
            }),
        ),
        (
            "attest-nonce-over-limit",
            Invalid(too_large(9, "attest nonce", 65, 64)),
        ),
        ("empty", Invalid(DecodeError::EmptyPacket)),
        ("short-length", Invalid(truncated(0, "frame length", 4, 2))),
        ("truncated-frame", Invalid(truncated(4, "frame", 9, 7))),
        (
            "truncated-field",
            Invalid(truncated(11, "max_version", 2, 0)),
        ),
        (
            "frame-too-short",
            Invalid(DecodeError::FrameTooShort { offset: 0, len: 4 }),
        ),
        (
            "frame-length-over-limit",
            Invalid(too_large(0, "frame length", MAX_FRAME - 3, MAX_FRAME - 4)),
        ),
        (
            "frame-length-huge",
            Invalid(too_large(
                0,
                "frame length",
                u32::MAX as usize,
                MAX_FRAME - 4,
            )),
        ),
        (
            "body-over-limit",
            Invalid(too_large(17, "body", u32::MAX as usize, MAX_BODY)),
        ),
        (
            "body-longer-than-frame",
            Invalid(truncated(21, "body", 8, 4)),
        ),
        (
            "headers-over-limit",
            Invalid(too_large(14, "headers", 33, MAX_HEADERS)),
        ),
        (
            "caps-over-limit",
            Invalid(too_large(21, "caps", 17, MAX_CAPS)),
        ),
        ("caps-beyond-input", Invalid(truncated(23, "caps", 64, 1))),
        ("unknown-op", Invalid(unknown_op(4, 0x7f, "request"))),
        (
            "response-op-as-request",
            Invalid(unknown_op(4, 0x82, "request")),
        ),
        (
            "request-op-as-response",
            Invalid(unknown_op(4, 0x05, "response")),
        ),
        (
            "unknown-rights",
            Invalid(DecodeError::UnknownRights {
                offset: 13,
                what: "attenuate rights",
                bits: 0x40,
            }),
        ),
        (
            "unknown-rights-response",
            Invalid(DecodeError::UnknownRights {
                offset: 13,
                what: "handle rights",
                bits: 0x8000_0000,
            }),
        ),
        (
            "bad-utf8",
            Invalid(DecodeError::BadUtf8 {
                offset: 11,
                what: "lookup name",
            }),
        ),
        (
            "overlong-utf8",
            Invalid(DecodeError::BadUtf8 {
                offset: 10,
                what: "lookup name",
            }),
        ),
        (
            "bad-utf8-env",
            Invalid(DecodeError::BadUtf8 {
                offset: 13,
                what: "welcome env",
            }),
        ),
        (
            "bad-option-tag",
            Invalid(DecodeError::BadTag {
                offset: 9,
                what: "mailbox",
                tag: 2,
            }),
        ),
        (
            "bad-bool",
            Invalid(DecodeError::BadTag {
                offset: 13,
                what: "wait",
                tag: 0xff,
            }),
        ),
        (
            "unknown-error-code",
            Invalid(DecodeError::UnknownErrorCode { offset: 9, code: 0 }),
        ),
        (
            "next-error-code",
            Invalid(DecodeError::UnknownErrorCode {
                offset: 9,
                code: 15,
            }),
        ),
        (
            "detail-over-limit",
            Invalid(too_large(11, "error detail", 1025, MAX_DETAIL)),
        ),
        (
            "trailing-in-frame",
            Invalid(DecodeError::TrailingBytes {
                offset: 9,
                count: 1,
            }),
        ),
        (
            "trailing-after-frame",
            Invalid(truncated(9, "frame length", 4, 2)),
        ),
        (
            "zero-length-frame",
            Invalid(DecodeError::FrameTooShort { offset: 9, len: 0 }),
        ),
        ("bad-second-frame", Invalid(unknown_op(13, 0x99, "request"))),
        (
            "send-batch",
            Requests(vec![req(
                7,
                Request::SendBatch {
                    handle: 2,
                    wait: true,
                    quiet: false,
                    bodies: bodies(&[b"hi", b"yo"]),
                },
            )]),
        ),
        (
            "send-batch-quiet-empty",
            Requests(vec![req(
                1,
                Request::SendBatch {
                    handle: 3,
                    wait: false,
                    quiet: true,
                    bodies: Bodies::new(),
                },
            )]),
        ),
        (
            "recv-batch",
            Requests(vec![req(
                9,
                Request::RecvBatch {
                    mailbox: None,
                    max: 512,
                    timeout_ms: Some(0),
                },
            )]),
        ),
        (
            "recv-batch-mailbox",
            Requests(vec![req(
                10,
                Request::RecvBatch {
                    mailbox: Some(5),
                    max: 1,
                    timeout_ms: None,
                },
            )]),
        ),
        (
            "deliveries",
            Responses(vec![resp(
                9,
                Response::Deliveries(Deliveries {
                    mailbox: 1,
                    runs: vec![run("web", 0, &[b"hi", b"yo"])],
                }),
            )]),
        ),
        (
            "deliveries-two-runs",
            Responses(vec![resp(
                2,
                Response::Deliveries(Deliveries {
                    mailbox: 4,
                    runs: vec![run("a", 0, &[b"x"]), run("a", 9, &[b""])],
                }),
            )]),
        ),
        (
            "accepted",
            Responses(vec![resp(7, Response::Accepted { count: 2 })]),
        ),
        (
            "bodies-count-over-limit",
            Invalid(too_large(15, "bodies count", MAX_BATCH + 1, MAX_BATCH)),
        ),
        (
            "bodies-trailing",
            Invalid(DecodeError::TrailingBytes {
                offset: 28,
                count: 1,
            }),
        ),
        (
            "body-past-bodies-size",
            Invalid(truncated(28, "body", 4, 0)),
        ),
        (
            "body-contents-past-bodies-size",
            Invalid(truncated(32, "body", 2, 1)),
        ),
        (
            "recv-batch-max-over-limit",
            Invalid(too_large(10, "batch max", MAX_BATCH + 1, MAX_BATCH)),
        ),
        (
            "bad-quiet-flag",
            Invalid(DecodeError::BadTag {
                offset: 14,
                what: "quiet",
                tag: 2,
            }),
        ),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one vector against its expectation; returns a description of each mismatch.
fn check(entry: &Entry, expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let name = &entry.name;
    match (expect, entry.direction.as_str(), entry.valid) {
        (Expect::Requests(frames), "request", true) => {
            match decode_requests(&entry.bytes) {
                Ok(decoded) if &decoded == frames => {}
                other => problems.push(format!("{name}: decoded to {other:?}")),
            }
            let mut encoded = Vec::new();
            let mut packet = PacketBuilder::new();
            for frame in frames {
                encode_request(frame, &mut encoded).unwrap();
                packet.push_request(frame).unwrap();
            }
            if encoded != entry.bytes || packet.as_bytes() != entry.bytes {
                problems.push(format!("{name}: encoded to {}", hex(&encoded)));
            }
        }
        (Expect::Responses(frames), "response", true) => {
            match decode_responses(&entry.bytes) {
                Ok(decoded) if &decoded == frames => {}
                other => problems.push(format!("{name}: decoded to {other:?}")),
            }
            let mut encoded = Vec::new();
            let mut packet = PacketBuilder::new();
            for frame in frames {
                encode_response(frame, &mut encoded).unwrap();
                packet.push_response(frame).unwrap();
            }
            if encoded != entry.bytes || packet.as_bytes() != entry.bytes {
                problems.push(format!("{name}: encoded to {}", hex(&encoded)));
            }
        }
        (Expect::Invalid(want), "request", false) => {
            let got = decode_requests(&entry.bytes);
            if got.as_ref() != Err(want) {
                problems.push(format!("{name}: expected {want:?}, got {got:?}"));
            }
        }
        (Expect::Invalid(want), "response", false) => {
            let got = decode_responses(&entry.bytes);
            if got.as_ref() != Err(want) {
                problems.push(format!("{name}: expected {want:?}, got {got:?}"));
            }
        }
        _ => problems.push(format!(
            "{name}: kind or direction does not match the expectation"
        )),
    }
    problems
}

fn entries() -> Vec<Entry> {
    parse(include_str!("vectors.txt"))
}

#[test]
fn every_vector_decodes_and_encodes_exactly() {
    let entries = entries();
    let expectations: BTreeMap<&str, Expect> = expectations().into_iter().collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in &entries {
        if !seen.insert(entry.name.clone()) {
            problems.push(format!("{}: listed twice in vectors.txt", entry.name));
        }
        match expectations.get(entry.name.as_str()) {
            Some(expect) => problems.extend(check(entry, expect)),
            None => problems.push(format!("{}: no expectation in vectors.rs", entry.name)),
        }
    }
    for name in expectations.keys() {
        if !seen.contains(*name) {
            problems.push(format!("{name}: expected but not in vectors.txt"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(entries.len() >= 60, "only {} vectors", entries.len());
}

fn request_name(r: &Request) -> &'static str {
    match r {
        Request::Hello { .. } => "Hello",
        Request::Send { .. } => "Send",
        Request::Recv { .. } => "Recv",
        Request::Lookup { .. } => "Lookup",
        Request::Whoami => "Whoami",
        Request::Attenuate { .. } => "Attenuate",
        Request::Revoke { .. } => "Revoke",
        Request::Drop { .. } => "Drop",
        Request::Monitor { .. } => "Monitor",
        Request::CreateMailbox { .. } => "CreateMailbox",
        Request::SendBatch { .. } => "SendBatch",
        Request::RecvBatch { .. } => "RecvBatch",
        Request::Attest { .. } => "Attest",
        Request::Spawn(_) => "Spawn",
        Request::Stop { .. } => "Stop",
        Request::Restrict { .. } => "Restrict",
    }
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Welcome { .. } => "Welcome",
        Response::Ok => "Ok",
        Response::Handle { .. } => "Handle",
        Response::Monitor { .. } => "Monitor",
        Response::Delivery(_) => "Delivery",
        Response::Identity(_) => "Identity",
        Response::Error { .. } => "Error",
        Response::Deliveries(_) => "Deliveries",
        Response::Accepted { .. } => "Accepted",
        Response::Quote { .. } => "Quote",
        Response::Spawned(_) => "Spawned",
    }
}

#[test]
fn every_variant_and_error_code_has_a_vector() {
    let mut requests = BTreeSet::new();
    let mut responses = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for (_, expect) in expectations() {
        match expect {
            Expect::Requests(frames) => {
                requests.extend(frames.iter().map(|f| request_name(&f.body)));
            }
            Expect::Responses(frames) => {
                for f in &frames {
                    responses.insert(response_name(&f.body));
                    if let Response::Error { code, .. } = f.body {
                        codes.insert(code as u16);
                    }
                }
            }
            Expect::Invalid(_) => {}
        }
    }
    assert_eq!(requests.len(), 16, "{requests:?}");
    assert_eq!(responses.len(), 11, "{responses:?}");
    assert_eq!(codes.len(), ErrorCode::ALL.len(), "{codes:?}");
}

#[test]
fn error_codes_are_stable() {
    // The numbers and names are part of the protocol: this table may only grow.
    let table = [
        (1, "bad-request"),
        (2, "no-such-handle"),
        (3, "no-right"),
        (4, "revoked"),
        (5, "expired"),
        (6, "used-up"),
        (7, "full"),
        (8, "timeout"),
        (9, "not-found"),
        (10, "dead"),
        (11, "version"),
        (12, "too-large"),
        (13, "unavailable"),
        (14, "quota"),
        (20, "attest-failed"),
        (40, "spawn-failed"),
        (41, "not-allowed"),
    ];
    let actual: Vec<(u16, &str)> = ErrorCode::ALL
        .iter()
        .map(|&c| (c as u16, c.as_str()))
        .collect();
    assert_eq!(actual, table);
    for (n, _) in table {
        assert_eq!(ErrorCode::from_u16(n).map(|c| c as u16), Some(n));
    }
    assert_eq!(ErrorCode::from_u16(0), None);
    assert_eq!(ErrorCode::from_u16(15), None);
}
