//! The bytes that cross hosts: signed batches of messages and signed capability tokens.
//!
//! A **batch** is what one AMQP message carries: every message one host forwards to one other
//! host in one turn of its kernel loop, under one Ed25519 signature and one sequence number.
//! Signing a batch signs every message in it; it costs one signature and one verification per
//! turn rather than per message, and one publisher confirm and one broker acknowledgement.
//!
//! A **token** is a capability exported to another host: issuer host, export number, the
//! mailbox it designates on the issuer, rights, uses, and the bearer (`env@host`) it is bound
//! to, signed by the issuer. Only the issuer acts on it, when a message comes back through it.
//!
//! Layout (all integers big-endian; `str8` = u8 length + UTF-8; `bytes16`/`bytes32` = u16/u32
//! length + bytes):
//!
//! ```text
//! batch   = "WLB1" sig[64] payload          sig = Ed25519(key, "warren-link batch v1" || payload)
//! payload = from_host:str8 to_host:str8 epoch:u64 seq:u64 count:u32 message{count}
//! message = to:str8 from_env:str8 flags:u8 [correlation:u64 if flags&1] [via:bytes16 if flags&2]
//!           nheaders:u16 (name:bytes16 value:bytes32){nheaders} body:bytes32
//!           ncaps:u16 token:bytes16{ncaps} [reply:bytes16 if flags&4]
//! token   = "WLT1" sig[64] tpayload         sig = Ed25519(key, "warren-link token v1" || tpayload)
//! tpayload = issuer:str8 id:u64 target:str8 rights:u8 flags:u8 [uses:u32 if flags&1] bearer:str8
//! ```
//!
//! Decoding never trusts a length: every read is bounds-checked and a batch holds at most
//! [`MAX_BATCH_MESSAGES`] messages.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::trust::{Trust, TrustError};

const BATCH_MAGIC: &[u8; 4] = b"WLB1";
const TOKEN_MAGIC: &[u8; 4] = b"WLT1";
const BATCH_DOMAIN: &[u8] = b"warren-link batch v1";
const TOKEN_DOMAIN: &[u8] = b"warren-link token v1";
/// Most messages one batch may carry.
pub const MAX_BATCH_MESSAGES: usize = 65_536;

/// Messages from one host to another, signed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// The sending host.
    pub from_host: String,
    /// The receiving host.
    pub to_host: String,
    /// The sender's outbox generation: sequence numbers count within one epoch.
    pub epoch: u64,
    /// The batch's number from `from_host` to `to_host` in this epoch, from 1, without gaps.
    pub seq: u64,
    /// The messages, in the order the sender's kernel accepted them.
    pub messages: Vec<Envelope>,
}

/// One message inside a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// The mailbox on the receiving host: `env` or `env/mailbox`.
    pub to: String,
    /// The sending environment on the sending host.
    pub from_env: String,
    /// Correlation, as sent.
    pub correlation: Option<u64>,
    /// Headers, as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body, as sent.
    pub body: Vec<u8>,
    /// A token of the receiving host that the message travels on (a reply to an exported
    /// capability), encoded.
    pub via: Option<Vec<u8>>,
    /// Capabilities passed to the receiver, as encoded tokens of the sending host.
    pub caps: Vec<Vec<u8>>,
    /// The one-shot reply capability, as an encoded token of the sending host.
    pub reply: Option<Vec<u8>>,
}

/// A capability exported by `issuer` to `bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The host that issued it and acts on it.
    pub issuer: String,
    /// The issuer's export number.
    pub id: u64,
    /// The mailbox it designates on the issuer (`env` or `env/mailbox`).
    pub target: String,
    /// Rights bits (`warren_proto::Rights`).
    pub rights: u8,
    /// Sends allowed, when limited.
    pub uses: Option<u32>,
    /// The one environment that may use it: `env@host`.
    pub bearer: String,
}

/// Why bytes from another host were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The bytes do not decode.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// `batch` or `token`.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signer is not trusted, or its key is unknown.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// The signature does not verify against the host's key.
    #[error("bad signature on a {what} from host {host:?}")]
    BadSignature {
        /// `batch` or `token`.
        what: &'static str,
        /// The host it claims to come from.
        host: String,
    },
}

// ----- encoding -----

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(u32::MAX as usize)];
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn batch_payload(b: &Batch) -> Vec<u8> {
    let size: usize = b
        .messages
        .iter()
        .map(|m| {
            64 + m.body.len()
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 6)
                    .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(40 + size);
    put_str8(&mut out, &b.from_host);
    put_str8(&mut out, &b.to_host);
    out.extend_from_slice(&b.epoch.to_be_bytes());
    out.extend_from_slice(&b.seq.to_be_bytes());
    out.extend_from_slice(&(b.messages.len() as u32).to_be_bytes());
    for m in &b.messages {
        put_str8(&mut out, &m.to);
        put_str8(&mut out, &m.from_env);
        let flags = u8::from(m.correlation.is_some())
            | (u8::from(m.via.is_some()) << 1)
            | (u8::from(m.reply.is_some()) << 2);
        out.push(flags);
        if let Some(c) = m.correlation {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(v) = &m.via {
            put_bytes16(&mut out, v);
        }
        out.extend_from_slice(&(m.headers.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for (k, v) in m.headers.iter().take(u16::MAX as usize) {
            put_bytes16(&mut out, k.as_bytes());
            put_bytes32(&mut out, v);
        }
        put_bytes32(&mut out, &m.body);
        out.extend_from_slice(&(m.caps.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for t in m.caps.iter().take(u16::MAX as usize) {
            put_bytes16(&mut out, t);
        }
        if let Some(r) = &m.reply {
            put_bytes16(&mut out, r);
        }
    }
    out
}

/// The bytes `m` takes in a batch's payload, exactly as [`seal_batch`] encodes it.
pub fn message_size(m: &Envelope) -> usize {
    let b16 = |b: &[u8]| 2 + b.len().min(u16::MAX as usize);
    (1 + m.to.len().min(255))
        + (1 + m.from_env.len().min(255))
        + 1
        + m.correlation.map_or(0, |_| 8)
        + m.via.as_deref().map_or(0, b16)
        + 2
        + m.headers
            .iter()
            .take(u16::MAX as usize)
            .map(|(k, v)| b16(k.as_bytes()) + 4 + v.len())
            .sum::<usize>()
        + (4 + m.body.len())
        + 2
        + m.caps
            .iter()
            .take(u16::MAX as usize)
            .map(|t| b16(t))
            .sum::<usize>()
        + m.reply.as_deref().map_or(0, b16)
}

fn signed(magic: &[u8; 4], domain: &[u8], payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut msg = Vec::with_capacity(domain.len() + payload.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(payload);
    let sig = key.sign(&msg);
    let mut out = Vec::with_capacity(4 + 64 + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encodes and signs a batch with the sending host's key.
pub fn seal_batch(batch: &Batch, key: &SigningKey) -> Vec<u8> {
    signed(BATCH_MAGIC, BATCH_DOMAIN, &batch_payload(batch), key)
}

/// Encodes and signs a token with the issuing host's key.
pub fn seal_token(token: &Token, key: &SigningKey) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    put_str8(&mut p, &token.issuer);
    p.extend_from_slice(&token.id.to_be_bytes());
    put_str8(&mut p, &token.target);
    p.push(token.rights);
    p.push(u8::from(token.uses.is_some()));
    if let Some(u) = token.uses {
        p.extend_from_slice(&u.to_be_bytes());
    }
    put_str8(&mut p, &token.bearer);
    signed(TOKEN_MAGIC, TOKEN_DOMAIN, &p, key)
}

// ----- decoding -----

struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> OpenError {
        OpenError::Malformed {
            what: self.what,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OpenError> {
        if self.b.len() < n {
            return Err(self.err("truncated"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn u8(&mut self) -> Result<u8, OpenError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, OpenError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, OpenError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, OpenError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn str_of(&self, b: &[u8]) -> Result<String, OpenError> {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| self.err("a name is not UTF-8"))
    }

    fn str8(&mut self) -> Result<String, OpenError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        self.str_of(b)
    }

    fn bytes16(&mut self) -> Result<Vec<u8>, OpenError> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn bytes32(&mut self) -> Result<Vec<u8>, OpenError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// Splits `magic sig payload`.
fn split_signed<'a>(
    b: &'a [u8],
    magic: &[u8; 4],
    what: &'static str,
) -> Result<(Signature, &'a [u8]), OpenError> {
    if b.len() < 68 || &b[..4] != magic {
        return Err(OpenError::Malformed {
            what,
            reason: "bad magic or too short",
        });
    }
    let sig = Signature::from_bytes(b[4..68].try_into().expect("64 bytes"));
    Ok((sig, &b[68..]))
}

fn verify(key: &VerifyingKey, domain: &[u8], payload: &[u8], sig: &Signature) -> Result<(), ()> {
    let mut msg = Vec::with_capacity(domain.len() + payload.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(payload);
    key.verify(&msg, sig).map_err(|_| ())
}

fn decode_payload(p: &[u8]) -> Result<Batch, OpenError> {
    let mut r = Reader {
        b: p,
        what: "batch",
    };
    let from_host = r.str8()?;
    let to_host = r.str8()?;
    let epoch = r.u64()?;
    let seq = r.u64()?;
    // Sequences start at 1, and the receiver counts one past the last it admitted.
    if seq == 0 || seq == u64::MAX {
        return Err(r.err("seq out of range (1 to 2^64 - 2)"));
    }
    let count = r.u32()? as usize;
    if count > MAX_BATCH_MESSAGES {
        return Err(r.err("too many messages"));
    }
    let mut messages = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let to = r.str8()?;
        let from_env = r.str8()?;
        let flags = r.u8()?;
        if flags & !7 != 0 {
            return Err(r.err("unknown message flags"));
        }
        let correlation = if flags & 1 != 0 { Some(r.u64()?) } else { None };
        let via = if flags & 2 != 0 {
            Some(r.bytes16()?)
        } else {
            None
        };
        let nh = r.u16()? as usize;
        let mut headers = Vec::with_capacity(nh.min(64));
        for _ in 0..nh {
            let k = r.bytes16()?;
            let k = r.str_of(&k)?;
            headers.push((k, r.bytes32()?));
        }
        let body = r.bytes32()?;
        let nc = r.u16()? as usize;
        let mut caps = Vec::with_capacity(nc.min(64));
        for _ in 0..nc {
            caps.push(r.bytes16()?);
        }
        let reply = if flags & 4 != 0 {
            Some(r.bytes16()?)
        } else {
            None
        };
        messages.push(Envelope {
            to,
            from_env,
            correlation,
            headers,
            body,
            via,
            caps,
            reply,
        });
    }
    if !r.b.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    Ok(Batch {
        from_host,
        to_host,
        epoch,
        seq,
        messages,
    })
}

/// Decodes a batch and verifies its signature against the key `trust` holds for the host it
/// names as sender. Nothing of an unverified batch is returned.
pub fn open_batch(bytes: &[u8], trust: &dyn Trust) -> Result<Batch, OpenError> {
    let (sig, payload) = split_signed(bytes, BATCH_MAGIC, "batch")?;
    let batch = decode_payload(payload)?;
    let key = trust.verifying_key(&batch.from_host)?;
    verify(&key, BATCH_DOMAIN, payload, &sig).map_err(|()| OpenError::BadSignature {
        what: "batch",
        host: batch.from_host.clone(),
    })?;
    Ok(batch)
}

/// Decodes a token without checking its signature (what a bearer does: it only passes the
/// token back to its issuer, who checks it with [`open_token`]).
pub fn peek_token(bytes: &[u8]) -> Result<Token, OpenError> {
    let (_, p) = split_signed(bytes, TOKEN_MAGIC, "token")?;
    let mut r = Reader {
        b: p,
        what: "token",
    };
    let issuer = r.str8()?;
    let id = r.u64()?;
    let target = r.str8()?;
    let rights = r.u8()?;
    let flags = r.u8()?;
    if flags & !1 != 0 {
        return Err(r.err("unknown token flags"));
    }
    let uses = if flags & 1 != 0 { Some(r.u32()?) } else { None };
    let bearer = r.str8()?;
    if !r.b.is_empty() {
        return Err(r.err("trailing bytes"));
    }
    Ok(Token {
        issuer,
        id,
        target,
        rights,
        uses,
        bearer,
    })
}

/// Decodes a token and verifies it was signed by `key` (the issuer's own key).
pub fn open_token(bytes: &[u8], key: &VerifyingKey) -> Result<Token, OpenError> {
    let token = peek_token(bytes)?;
    let (sig, payload) = split_signed(bytes, TOKEN_MAGIC, "token")?;
    verify(key, TOKEN_DOMAIN, payload, &sig).map_err(|()| OpenError::BadSignature {
        what: "token",
        host: token.issuer.clone(),
    })?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::TrustedKeys;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample() -> Batch {
        Batch {
            from_host: "alpha".into(),
            to_host: "beta".into(),
            epoch: 7,
            seq: 42,
            messages: vec![
                Envelope {
                    to: "db".into(),
                    from_env: "web".into(),
                    correlation: Some(9),
                    headers: vec![("k".into(), b"v".to_vec())],
                    body: b"hello".to_vec(),
                    via: None,
                    caps: vec![vec![1, 2, 3]],
                    reply: Some(vec![4]),
                },
                Envelope {
                    to: "db/jobs".into(),
                    from_env: "web".into(),
                    body: vec![0; 40],
                    via: Some(vec![5, 6]),
                    ..Envelope::default()
                },
            ],
        }
    }

    fn trust() -> TrustedKeys {
        TrustedKeys::from_keys([("alpha".to_string(), key(1).verifying_key())])
    }

    #[test]
    fn a_sealed_batch_opens_with_the_senders_key() {
        let b = sample();
        let bytes = seal_batch(&b, &key(1));
        assert_eq!(open_batch(&bytes, &trust()).unwrap(), b);
    }

    #[test]
    fn message_size_is_what_the_encoding_takes() {
        let m = |body: usize, extras: bool| Envelope {
            to: "db/inbox".into(),
            from_env: "web".into(),
            correlation: extras.then_some(7),
            headers: if extras {
                vec![("k".into(), b"value".to_vec()), ("kk".into(), Vec::new())]
            } else {
                Vec::new()
            },
            body: vec![1; body],
            via: extras.then(|| vec![2; 90]),
            caps: if extras {
                vec![vec![3; 80], vec![4; 81]]
            } else {
                Vec::new()
            },
            reply: extras.then(|| vec![5; 77]),
        };
        for msgs in [
            vec![m(0, false)],
            vec![m(1000, true), m(3, false), m(70_000, true)],
        ] {
            let empty = batch_payload(&Batch {
                messages: Vec::new(),
                ..sample()
            })
            .len();
            let b = Batch {
                messages: msgs.clone(),
                ..sample()
            };
            let sum: usize = msgs.iter().map(message_size).sum();
            assert_eq!(batch_payload(&b).len(), empty + sum);
        }
    }

    /// A trusted peer's batch numbered 0 or 2^64 - 1 is malformed (sequences run from 1, and
    /// the receiver counts one past the last): refused before admission, where the last one
    /// overflowed the receiver's counter. Control: 2^64 - 2 opens.
    #[test]
    fn a_sequence_number_out_of_range_is_malformed() {
        for seq in [0, u64::MAX] {
            let mut b = sample();
            b.seq = seq;
            assert!(
                matches!(
                    open_batch(&seal_batch(&b, &key(1)), &trust()),
                    Err(OpenError::Malformed { .. })
                ),
                "seq {seq}"
            );
        }
        let mut b = sample();
        b.seq = u64::MAX - 1;
        assert_eq!(open_batch(&seal_batch(&b, &key(1)), &trust()).unwrap(), b);
    }

    #[test]
    fn a_batch_signed_by_another_key_is_refused() {
        let bytes = seal_batch(&sample(), &key(2));
        assert_eq!(
            open_batch(&bytes, &trust()),
            Err(OpenError::BadSignature {
                what: "batch",
                host: "alpha".into()
            })
        );
    }

    #[test]
    fn a_batch_from_an_unknown_host_is_refused() {
        let mut b = sample();
        b.from_host = "mallory".into();
        let bytes = seal_batch(&b, &key(1));
        assert!(matches!(
            open_batch(&bytes, &trust()),
            Err(OpenError::Untrusted(TrustError::UnknownHost { .. }))
        ));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = seal_batch(&sample(), &key(1));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                open_batch(&bad, &trust()).is_err(),
                "byte {i} flipped was accepted"
            );
        }
    }

    #[test]
    fn tokens_round_trip_and_bind_their_fields() {
        let t = Token {
            issuer: "alpha".into(),
            id: 3,
            target: "web".into(),
            rights: 2,
            uses: Some(1),
            bearer: "db@beta".into(),
        };
        let bytes = seal_token(&t, &key(1));
        assert_eq!(open_token(&bytes, &key(1).verifying_key()).unwrap(), t);
        assert_eq!(peek_token(&bytes).unwrap(), t);
        assert!(open_token(&bytes, &key(2).verifying_key()).is_err());
        // Changing the bearer (the last byte of its name) breaks the signature.
        let mut other = bytes.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open_token(&other, &key(1).verifying_key()),
            Err(OpenError::BadSignature { .. })
        ));
    }

    #[test]
    fn truncations_never_panic_and_are_refused() {
        let bytes = seal_batch(&sample(), &key(1));
        for n in 0..bytes.len() {
            assert!(open_batch(&bytes[..n], &trust()).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = open_batch(&bytes, &trust());
            let _ = peek_token(&bytes);
        }
    }
}
