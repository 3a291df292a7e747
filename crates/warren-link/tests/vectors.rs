//! Byte-exact test vectors of the federation wire format (`docs/federation.md`, "Wire
//! format"), read from `vectors.txt`: every `vector` must be exactly what sealing its value
//! (defined here, by name) with the named host key gives — Ed25519 signatures are
//! deterministic — and must open back to that value; every `invalid` entry must be refused
//! with the error kind given. A peer written from the document alone checks itself against
//! the same file.
//!
//! `WARREN_LINK_VECTORS=print cargo test -p warren-link --test vectors -- --nocapture` prints
//! the vectors as sealed now (to write the file after a deliberate change of format).

use std::collections::BTreeMap;

use warren_link::trust::TrustedKeys;
use warren_link::wire::{
    Batch, Envelope, OpenError, Token, open_batch, open_token, peek_token, seal_batch, seal_token,
};
use warren_link::{SigningKey, VerifyingKey};

const FILE: &str = include_str!("vectors.txt");

enum Value {
    Batch(Batch, &'static str),
    Token(Token, &'static str),
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn alpha() -> SigningKey {
    key(1)
}

fn beta() -> SigningKey {
    key(2)
}

fn token_send_once() -> Token {
    Token {
        issuer: "alpha".into(),
        id: 3,
        target: "web".into(),
        rights: 1,
        uses: Some(1),
        bearer: "db@beta".into(),
    }
}

fn token_unlimited() -> Token {
    Token {
        issuer: "beta".into(),
        id: 7,
        target: "db/jobs".into(),
        rights: 3,
        uses: None,
        bearer: "web@alpha".into(),
    }
}

/// The values the vectors are made of, by name, with the host whose key seals them.
fn values() -> BTreeMap<&'static str, Value> {
    let mut v = BTreeMap::new();
    v.insert(
        "batch-minimal",
        Value::Batch(
            Batch {
                from_host: "alpha".into(),
                to_host: "beta".into(),
                epoch: 1,
                seq: 1,
                messages: vec![Envelope {
                    to: "db".into(),
                    from_env: "web".into(),
                    body: b"hi".to_vec(),
                    ..Envelope::default()
                }],
            },
            "alpha",
        ),
    );
    v.insert(
        "batch-empty",
        Value::Batch(
            Batch {
                from_host: "alpha".into(),
                to_host: "beta".into(),
                epoch: 1,
                seq: 2,
                messages: vec![],
            },
            "alpha",
        ),
    );
    v.insert(
        "batch-full",
        Value::Batch(
            Batch {
                from_host: "alpha".into(),
                to_host: "beta".into(),
                epoch: 0x0102_0304_0506_0708,
                seq: 3,
                messages: vec![
                    Envelope {
                        to: "db/jobs".into(),
                        from_env: "web".into(),
                        correlation: Some(9),
                        headers: vec![("k".into(), b"v".to_vec())],
                        body: b"hello".to_vec(),
                        via: None,
                        caps: vec![seal_token(&token_send_once(), &alpha())],
                        reply: Some(seal_token(&token_send_once(), &alpha())),
                    },
                    Envelope {
                        to: "db".into(),
                        from_env: "web".into(),
                        via: Some(seal_token(&token_unlimited(), &beta())),
                        ..Envelope::default()
                    },
                ],
            },
            "alpha",
        ),
    );
    v.insert("token-send-once", Value::Token(token_send_once(), "alpha"));
    v.insert("token-unlimited", Value::Token(token_unlimited(), "beta"));
    v
}

fn signer(host: &str) -> SigningKey {
    match host {
        "alpha" => alpha(),
        "beta" => beta(),
        other => panic!("no key for {other}"),
    }
}

fn trust() -> TrustedKeys {
    TrustedKeys::from_keys([
        ("alpha".to_string(), alpha().verifying_key()),
        ("beta".to_string(), beta().verifying_key()),
    ])
}

fn verifying(host: &str) -> VerifyingKey {
    signer(host).verifying_key()
}

fn sealed(v: &Value) -> Vec<u8> {
    match v {
        Value::Batch(b, host) => seal_batch(b, &signer(host)),
        Value::Token(t, host) => seal_token(t, &signer(host)),
    }
}

/// One entry of the file: kind (`vector` or `invalid`), name, what (`batch`/`token`), the
/// expected error kind for an invalid one, and the bytes.
struct Entry {
    kind: String,
    name: String,
    what: String,
    expect: Option<String>,
    bytes: Vec<u8>,
}

fn parse() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for line in FILE.lines() {
        let text = line.split('#').next().unwrap_or("");
        if text.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            let w: Vec<&str> = text.split_whitespace().collect();
            assert!(
                matches!(w.as_slice(), ["vector", _, _] | ["invalid", _, _, _]),
                "bad entry line: {line}"
            );
            out.push(Entry {
                kind: w[0].into(),
                name: w[1].into(),
                what: w[2].into(),
                expect: w.get(3).map(|s| s.to_string()),
                bytes: vec![],
            });
            continue;
        }
        let e = out.last_mut().expect("bytes belong to an entry");
        let hex: String = text.split_whitespace().collect();
        e.bytes
            .extend(hex::decode(&hex).unwrap_or_else(|_| panic!("bad hex: {line}")));
    }
    out
}

fn print_all() {
    for (name, v) in values() {
        let what = match v {
            Value::Batch(..) => "batch",
            Value::Token(..) => "token",
        };
        println!("vector {name} {what}");
        for chunk in sealed(&v).chunks(32) {
            println!("  {}", hex::encode(chunk));
        }
        println!();
    }
}

#[test]
fn every_vector_is_sealed_exactly_and_opens_to_its_value() {
    if std::env::var("WARREN_LINK_VECTORS").as_deref() == Ok("print") {
        print_all();
    }
    let values = values();
    let entries = parse();
    let mut seen = 0;
    for e in entries.iter().filter(|e| e.kind == "vector") {
        let v = values
            .get(e.name.as_str())
            .unwrap_or_else(|| panic!("no value named {}", e.name));
        assert_eq!(
            hex::encode(sealed(v)),
            hex::encode(&e.bytes),
            "vector {}: sealing its value gives other bytes",
            e.name
        );
        match v {
            Value::Batch(b, _) => {
                assert_eq!(e.what, "batch");
                assert_eq!(&open_batch(&e.bytes, &trust()).unwrap(), b, "{}", e.name);
            }
            Value::Token(t, host) => {
                assert_eq!(e.what, "token");
                assert_eq!(&open_token(&e.bytes, &verifying(host)).unwrap(), t);
                assert_eq!(&peek_token(&e.bytes).unwrap(), t);
            }
        }
        seen += 1;
    }
    assert_eq!(seen, values.len(), "every value has its vector");
}

#[test]
fn every_invalid_entry_is_refused_as_the_file_says() {
    let entries = parse();
    let invalid: Vec<&Entry> = entries.iter().filter(|e| e.kind == "invalid").collect();
    assert!(invalid.len() >= 6);
    for e in invalid {
        let err = match e.what.as_str() {
            "batch" => open_batch(&e.bytes, &trust()).unwrap_err(),
            "token" => open_token(&e.bytes, &alpha().verifying_key()).unwrap_err(),
            other => panic!("{other}"),
        };
        let kind = match &err {
            OpenError::Malformed { reason, .. } => {
                format!("malformed:{}", reason.replace(' ', "-"))
            }
            OpenError::Untrusted(_) => "untrusted".into(),
            OpenError::BadSignature { .. } => "bad-signature".into(),
        };
        assert_eq!(Some(&kind), e.expect.as_ref(), "{}: {err}", e.name);
    }
}

#[test]
fn the_public_keys_are_the_ones_the_file_names() {
    for (host, k) in [("alpha", alpha()), ("beta", beta())] {
        let public = hex::encode(k.verifying_key().to_bytes());
        let line = format!("{host:<5} public key {public}");
        assert!(FILE.contains(&line), "the file should say: {line}");
    }
}
