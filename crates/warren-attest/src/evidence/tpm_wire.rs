//! TPM 2.0 evidence in pure Rust: parsing the structures a TPM signs (`TPMS_ATTEST`), the
//! attestation key's `TPMT_PUBLIC` and the anchor's `TPMS_NV_PUBLIC`, computing Names and the
//! anchor's policy, and checking a TPM quote (TPM 2.0 Library Part 2; big-endian).

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

/// `TPM_GENERATED_VALUE`: the first four bytes of everything a TPM signs about itself.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_NV`.
pub const ST_ATTEST_NV: u16 = 0x8014;

/// The object attributes an attestation key must have: `fixedTPM`, `fixedParent`,
/// `sensitiveDataOrigin`, `restricted`, `sign`.
pub const AK_REQUIRED: u32 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 18);
/// ... and must not have: `decrypt`.
pub const AK_FORBIDDEN: u32 = 1 << 17;
/// `userWithAuth`: a bound attestation key must not have it, or its bare authValue (a password
/// session) would authorise it and the PCR policy would be bypassed.
pub const USER_WITH_AUTH: u32 = 1 << 6;

/// Warren's own PCR: Warren extends its binary's and its configuration's digests into it at
/// kernel start (docs/attestation.md, "Warren's PCR").
pub const WARREN_PCR: u32 = 15;
/// The SHA-256 PCRs the attestation key is bound to, in ascending order: the boot PCRs
/// ([`crate::evidence::bootlog::BOOT_PCRS`]) and [`WARREN_PCR`]. A quote covers all of them.
pub const BOUND_PCRS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15];

/// `TPM_CC_PolicyPCR`.
const CC_POLICY_PCR: u32 = 0x17f;
/// `TPM_CC_PolicyAuthValue` (also what `TPM2_PolicyPassword` extends the digest with).
const CC_POLICY_AUTH_VALUE: u32 = 0x16b;

/// A `TPML_PCR_SELECTION` of one SHA-256 bank with three select bytes.
pub fn pcr_selection(pcrs: &[u32]) -> Vec<u8> {
    let mut bits = [0u8; 3];
    for p in pcrs {
        bits[(*p / 8) as usize] |= 1 << (p % 8);
    }
    let mut b = 1u32.to_be_bytes().to_vec();
    b.extend_from_slice(&0x000bu16.to_be_bytes());
    b.push(3);
    b.extend_from_slice(&bits);
    b
}

/// The authPolicy of an attestation key bound to [`BOUND_PCRS`] holding `values` (in the
/// order of [`BOUND_PCRS`]): `TPM2_PolicyPCR(selection, SHA-256(values))` then
/// `TPM2_PolicyAuthValue`.
pub fn ak_bound_policy<'a>(values: impl IntoIterator<Item = &'a [u8; 32]>) -> [u8; 32] {
    let mut pcr = Sha256::new();
    for v in values {
        pcr.update(v);
    }
    let pcr_digest: [u8; 32] = pcr.finalize().into();
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_PCR.to_be_bytes());
    h.update(pcr_selection(&BOUND_PCRS));
    h.update(pcr_digest);
    let d: [u8; 32] = h.finalize().into();
    let mut h = Sha256::new();
    h.update(d);
    h.update(CC_POLICY_AUTH_VALUE.to_be_bytes());
    h.finalize().into()
}

/// The anchor's attributes once written: `TPM_NT_EXTEND`, `POLICYWRITE`, `AUTHREAD`,
/// `NO_DA`, `CLEAR_STCLEAR`, `WRITTEN`, and nothing else (no owner or platform write, no
/// password write).
pub const ANCHOR_ATTRIBUTES: u32 =
    (4 << 4) | (1 << 3) | (1 << 18) | (1 << 25) | (1 << 27) | (1 << 29);

/// A reader over big-endian TPM structures.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take(8)
            .map(|s| u64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
    }
    fn tpm2b(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn end(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err(format!("{} bytes left over", self.b.len() - self.at))
        }
    }
}

/// An ECC P-256 signing key's public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccPublic {
    /// `objectAttributes`.
    pub attributes: u32,
    /// `authPolicy` (empty when the key has none).
    pub auth_policy: Vec<u8>,
    /// The uncompressed point, `04 || x || y`.
    pub point: Vec<u8>,
}

/// Parses a `TPMT_PUBLIC` that must be an ECDSA/SHA-256 NIST P-256 key with SHA-256 names.
pub fn parse_ak_public(b: &[u8]) -> Result<EccPublic, String> {
    let mut r = Reader::new(b);
    if r.u16()? != 0x0023 {
        return Err("not an ECC key".into());
    }
    if r.u16()? != 0x000b {
        return Err("its name algorithm is not SHA-256".into());
    }
    let attributes = r.u32()?;
    let auth_policy = r.tpm2b()?.to_vec();
    let sym = r.u16()?;
    if sym != 0x0010 {
        return Err("a signing key has a symmetric algorithm".into());
    }
    let scheme = r.u16()?;
    if scheme != 0x0018 || r.u16()? != 0x000b {
        return Err("its scheme is not ECDSA with SHA-256".into());
    }
    if r.u16()? != 0x0003 {
        return Err("its curve is not NIST P-256".into());
    }
    if r.u16()? != 0x0010 {
        return Err("it has a KDF".into());
    }
    let x = r.tpm2b()?;
    let y = r.tpm2b()?;
    r.end()?;
    if x.len() > 32 || y.len() > 32 {
        return Err("its point is too long".into());
    }
    let mut point = vec![4u8];
    point.extend(std::iter::repeat_n(0, 32 - x.len()));
    point.extend_from_slice(x);
    point.extend(std::iter::repeat_n(0, 32 - y.len()));
    point.extend_from_slice(y);
    Ok(EccPublic {
        attributes,
        auth_policy,
        point,
    })
}

/// The Name of an object or NV index with a SHA-256 name algorithm.
pub fn name(public: &[u8]) -> Vec<u8> {
    let mut n = 0x000bu16.to_be_bytes().to_vec();
    n.extend_from_slice(&Sha256::digest(public));
    n
}

/// The anchor's authPolicy: `TPM2_PolicySecret` with the attestation key (Name `ak_name`) as
/// the authorising object, no policyRef.
pub fn anchor_policy(ak_name: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(0x151u32.to_be_bytes());
    h.update(ak_name);
    let d: [u8; 32] = h.finalize().into();
    Sha256::digest(d).into()
}

/// A parsed `TPMS_NV_PUBLIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    /// The index handle.
    pub index: u32,
    /// The name algorithm.
    pub name_alg: u16,
    /// `TPMA_NV`.
    pub attributes: u32,
    /// The authPolicy.
    pub auth_policy: Vec<u8>,
    /// The data size.
    pub size: u16,
}

/// Parses a `TPMS_NV_PUBLIC`.
pub fn parse_nv_public(b: &[u8]) -> Result<NvPublic, String> {
    let mut r = Reader::new(b);
    let p = NvPublic {
        index: r.u32()?,
        name_alg: r.u16()?,
        attributes: r.u32()?,
        auth_policy: r.tpm2b()?.to_vec(),
        size: r.u16()?,
    };
    r.end()?;
    Ok(p)
}

/// What a `TPMS_ATTEST` of type `TPM_ST_ATTEST_NV` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvAttest {
    /// The Qualified Name of the key that signed.
    pub signer: Vec<u8>,
    /// `extraData`: the qualifying value.
    pub extra: Vec<u8>,
    /// The TPM's reset count (reboots).
    pub reset_count: u32,
    /// The certified index's Name.
    pub index_name: Vec<u8>,
    /// The offset certified.
    pub offset: u16,
    /// The contents certified.
    pub contents: Vec<u8>,
}

/// Parses a `TPMS_ATTEST` that must be an NV certification.
pub fn parse_nv_attest(b: &[u8]) -> Result<NvAttest, String> {
    let mut r = Reader::new(b);
    if r.u32()? != TPM_GENERATED {
        return Err("not generated by a TPM (magic)".into());
    }
    if r.u16()? != ST_ATTEST_NV {
        return Err("not an NV certification".into());
    }
    let signer = r.tpm2b()?.to_vec();
    let extra = r.tpm2b()?.to_vec();
    r.u64()?; // clock
    let reset_count = r.u32()?;
    r.u32()?; // restartCount
    r.take(1)?; // safe
    r.u64()?; // firmwareVersion
    let index_name = r.tpm2b()?.to_vec();
    let offset = r.u16()?;
    let contents = r.tpm2b()?.to_vec();
    r.end()?;
    Ok(NvAttest {
        signer,
        extra,
        reset_count,
        index_name,
        offset,
        contents,
    })
}

/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

/// What a `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    /// `extraData`: the qualifying value.
    pub extra: Vec<u8>,
    /// The TPM's reset count (reboots).
    pub reset_count: u32,
    /// The TPM's restart count.
    pub restart_count: u32,
    /// The PCR selection: per bank, the hash algorithm and the PCR numbers, ascending.
    pub selection: Vec<(u16, Vec<u32>)>,
    /// `pcrDigest`: the hash of the selected PCRs' values, concatenated in selection order.
    pub pcr_digest: Vec<u8>,
}

/// Parses a `TPMS_ATTEST` that must be a PCR quote.
pub fn parse_quote_attest(b: &[u8]) -> Result<QuoteAttest, String> {
    let mut r = Reader::new(b);
    if r.u32()? != TPM_GENERATED {
        return Err("not generated by a TPM (magic)".into());
    }
    if r.u16()? != ST_ATTEST_QUOTE {
        return Err("not a PCR quote".into());
    }
    r.tpm2b()?; // qualifiedSigner
    let extra = r.tpm2b()?.to_vec();
    r.u64()?; // clock
    let reset_count = r.u32()?;
    let restart_count = r.u32()?;
    r.take(1)?; // safe
    r.u64()?; // firmwareVersion
    let count = r.u32()?;
    if count > 16 {
        return Err(format!("{count} PCR banks"));
    }
    let mut selection = Vec::new();
    for _ in 0..count {
        let alg = r.u16()?;
        let n = r.take(1)?[0] as usize;
        let bits = r.take(n)?;
        let pcrs = (0..n * 8)
            .filter(|i| bits[i / 8] & (1 << (i % 8)) != 0)
            .map(|i| i as u32)
            .collect();
        selection.push((alg, pcrs));
    }
    let pcr_digest = r.tpm2b()?.to_vec();
    r.end()?;
    Ok(QuoteAttest {
        extra,
        reset_count,
        restart_count,
        selection,
        pcr_digest,
    })
}

/// The DER `SubjectPublicKeyInfo` of an attestation key's `TPMT_PUBLIC`.
pub fn ak_spki_of(tpmt_public: &[u8]) -> Result<Vec<u8>, String> {
    let key = parse_ak_public(tpmt_public)?;
    let vk = VerifyingKey::from_sec1_bytes(&key.point)
        .map_err(|e| format!("the attestation key's point: {e}"))?;
    vk.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}
