//! TPM 2.0 commands that tss-esapi 7 does not wrap (`TPM2_NV_Extend`, `TPM2_NV_Certify`) and a
//! few small ones, marshalled by hand and sent on a connection of their own: the TCP port of
//! swtpm, or the kernel's resource manager `/dev/tpmrm0`. Authorisation is by password sessions
//! (`TPM_RS_PW`) and policy sessions (unsalted, unbound; `TPM2_PolicyPassword` carries an
//! authValue in clear, as a password session does). Byte layouts are TPM 2.0 Library Part 3; integers are big-endian.

use std::io::{self, Read, Write};

/// `TPM_RS_PW`: the password authorisation session.
const RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER`.
pub const RH_OWNER: u32 = 0x4000_0001;
const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;

/// An error: the transport failed, or the TPM answered with a response code.
#[derive(Debug)]
pub enum RawError {
    /// The connection failed.
    Io(io::Error),
    /// The TPM's response code.
    Rc(u32),
    /// The response was shorter than its fields.
    Short,
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Io(e) => write!(f, "tpm transport: {e}"),
            RawError::Rc(rc) => write!(f, "tpm response code {rc:#x}"),
            RawError::Short => write!(f, "tpm response too short"),
        }
    }
}

impl From<io::Error> for RawError {
    fn from(e: io::Error) -> Self {
        RawError::Io(e)
    }
}

/// How one handle of a command is authorised.
#[derive(Clone, Copy)]
pub enum Session<'a> {
    /// A password session with this authValue.
    Password(&'a [u8]),
    /// A policy session (already satisfied), used once.
    Policy(u32),
    /// A policy session that asserted `TPM2_PolicyPassword`: the authValue travels in the
    /// HMAC field, as with a password session. Used once.
    PolicyPassword(u32, &'a [u8]),
}

/// What `TPM2_NV_Certify` returns: the `TPMS_ATTEST` bytes and the ECDSA `r` and `s`.
pub type Certified = (Vec<u8>, Vec<u8>, Vec<u8>);

/// `TPM_RH_NULL`.
const RH_NULL: u32 = 0x4000_0007;

/// A connection for raw commands.
pub enum Transport {
    /// swtpm's data port.
    Tcp(std::net::TcpStream),
    /// A TPM character device.
    Device(std::fs::File),
}

impl Transport {
    /// Opens the TPM named like a tss TCTI: `swtpm:host=H,port=P` or `device:/dev/tpmrm0`.
    pub fn open(spec: &str) -> io::Result<Transport> {
        if let Some(conf) = spec.strip_prefix("swtpm:") {
            let mut host = "127.0.0.1".to_owned();
            let mut port = 2321u16;
            for kv in conf.split(',').filter(|s| !s.is_empty()) {
                match kv.split_once('=') {
                    Some(("host", h)) => host = h.to_owned(),
                    Some(("port", p)) => {
                        port = p.parse().map_err(|_| io::Error::other("bad swtpm port"))?
                    }
                    _ => return Err(io::Error::other(format!("bad swtpm option {kv:?}"))),
                }
            }
            let s = std::net::TcpStream::connect((host.as_str(), port))?;
            s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
            Ok(Transport::Tcp(s))
        } else if let Some(path) = spec.strip_prefix("device:") {
            let path = if path.is_empty() { "/dev/tpmrm0" } else { path };
            Ok(Transport::Device(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)?,
            ))
        } else {
            Err(io::Error::other(format!(
                "unknown tpm {spec:?}: expected swtpm:host=H,port=P or device:PATH"
            )))
        }
    }

    fn transact(&mut self, cmd: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Transport::Tcp(s) => {
                s.write_all(cmd)?;
                let mut head = [0u8; 10];
                s.read_exact(&mut head)?;
                let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
                let mut rest = vec![0u8; size.saturating_sub(10)];
                s.read_exact(&mut rest)?;
                Ok([head.as_slice(), &rest].concat())
            }
            Transport::Device(f) => {
                f.write_all(cmd)?;
                let mut buf = vec![0u8; 8192];
                let n = f.read(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
        }
    }

    /// Sends a command and returns its response parameters.
    fn command(
        &mut self,
        cc: u32,
        handles: &[u32],
        sessions: &[Session<'_>],
        params: &[u8],
    ) -> Result<Vec<u8>, RawError> {
        let mut body = Vec::new();
        for h in handles {
            body.extend_from_slice(&h.to_be_bytes());
        }
        if !sessions.is_empty() {
            let mut auth = Vec::new();
            for s in sessions {
                match s {
                    Session::Password(pw) => {
                        auth.extend_from_slice(&RS_PW.to_be_bytes());
                        auth.extend_from_slice(&0u16.to_be_bytes()); // nonce: empty
                        auth.push(0); // session attributes
                        auth.extend_from_slice(&(pw.len() as u16).to_be_bytes());
                        auth.extend_from_slice(pw);
                    }
                    Session::Policy(handle) => {
                        // A policy session needs no HMAC unless the policy asked for the
                        // authValue; its nonceCaller must be fresh and at least 16 bytes.
                        auth.extend_from_slice(&handle.to_be_bytes());
                        auth.extend_from_slice(&16u16.to_be_bytes());
                        auth.extend_from_slice(&nonce16());
                        auth.push(0); // continueSession clear: the session ends here
                        auth.extend_from_slice(&0u16.to_be_bytes());
                    }
                    Session::PolicyPassword(handle, pw) => {
                        auth.extend_from_slice(&handle.to_be_bytes());
                        auth.extend_from_slice(&16u16.to_be_bytes());
                        auth.extend_from_slice(&nonce16());
                        auth.push(0);
                        auth.extend_from_slice(&(pw.len() as u16).to_be_bytes());
                        auth.extend_from_slice(pw);
                    }
                }
            }
            body.extend_from_slice(&(auth.len() as u32).to_be_bytes());
            body.extend_from_slice(&auth);
        }
        body.extend_from_slice(params);
        let tag = if sessions.is_empty() {
            ST_NO_SESSIONS
        } else {
            ST_SESSIONS
        };
        let mut cmd = Vec::with_capacity(10 + body.len());
        cmd.extend_from_slice(&tag.to_be_bytes());
        cmd.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        cmd.extend_from_slice(&cc.to_be_bytes());
        cmd.extend_from_slice(&body);
        // TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING ask for the same command again.
        let mut tries = 0;
        let (resp, rc) = loop {
            let resp = self.transact(&cmd)?;
            if resp.len() < 10 {
                return Err(RawError::Short);
            }
            let rc = u32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
            tries += 1;
            if !matches!(rc, 0x922 | 0x908 | 0x90a) || tries >= 20 {
                break (resp, rc);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        if rc != 0 {
            return Err(RawError::Rc(rc));
        }
        let rest = &resp[10..];
        if sessions.is_empty() {
            Ok(rest.to_vec())
        } else {
            if rest.len() < 4 {
                return Err(RawError::Short);
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest.get(4..4 + n)
                .map(<[u8]>::to_vec)
                .ok_or(RawError::Short)
        }
    }

    /// `TPM2_ReadPublic`: the object's `TPMT_PUBLIC` (without its size).
    pub fn read_public(&mut self, handle: u32) -> Result<Vec<u8>, RawError> {
        let r = self.command(0x173, &[handle], &[], &[])?;
        tpm2b(&r, 0).map(|(b, _)| b.to_vec())
    }

    /// `TPM2_NV_ReadPublic`: the index's `TPMS_NV_PUBLIC` (without its size).
    pub fn nv_read_public(&mut self, index: u32) -> Result<Vec<u8>, RawError> {
        let r = self.command(0x169, &[index], &[], &[])?;
        tpm2b(&r, 0).map(|(b, _)| b.to_vec())
    }

    /// `TPM2_NV_Extend` of an index, authorised by `session` for the index itself.
    pub fn nv_extend(
        &mut self,
        index: u32,
        session: Session<'_>,
        data: &[u8],
    ) -> Result<(), RawError> {
        let mut p = (data.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(data);
        self.command(0x136, &[index, index], &[session], &p)
            .map(|_| ())
    }

    /// `TPM2_StartAuthSession` of an unbound, unsalted policy session with SHA-256.
    pub fn start_policy_session(&mut self) -> Result<u32, RawError> {
        let mut p = 16u16.to_be_bytes().to_vec();
        p.extend_from_slice(&nonce16());
        p.extend_from_slice(&0u16.to_be_bytes()); // encryptedSalt: empty
        p.push(0x01); // TPM_SE_POLICY
        p.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric: TPM_ALG_NULL
        p.extend_from_slice(&0x000bu16.to_be_bytes()); // authHash: SHA-256
        let r = self.command(0x176, &[RH_NULL, RH_NULL], &[], &p)?;
        u32_at(&r, 0)
    }

    /// `TPM2_PolicySecret` with the object `auth_object` (authorised by `auth`) into `session`.
    pub fn policy_secret(
        &mut self,
        auth_object: u32,
        auth: Session<'_>,
        session: u32,
    ) -> Result<(), RawError> {
        // nonceTPM, cpHashA, policyRef: empty; expiration: 0.
        let p = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        self.command(0x151, &[auth_object, session], &[auth], &p)
            .map(|_| ())
    }

    /// `TPM2_PolicyPCR` of the SHA-256 PCRs in `pcrs` with an empty pcrDigest: the TPM
    /// extends the session's digest with the digest of their **current** values, so the
    /// session satisfies an authPolicy only while they hold the values it was computed from.
    pub fn policy_pcr(&mut self, session: u32, pcrs: &[u32]) -> Result<(), RawError> {
        let mut p = 0u16.to_be_bytes().to_vec();
        p.extend_from_slice(&selection(pcrs));
        self.command(0x17f, &[session], &[], &p).map(|_| ())
    }

    /// `TPM2_PolicyPassword`: the object's authValue must come with the command, in clear.
    pub fn policy_password(&mut self, session: u32) -> Result<(), RawError> {
        self.command(0x18c, &[session], &[], &[]).map(|_| ())
    }

    /// `TPM2_EvictControl` of the persistent object `handle` (owner authorisation
    /// `owner_auth`): removes it from NV.
    pub fn evict(&mut self, handle: u32, owner_auth: &[u8]) -> Result<(), RawError> {
        self.command(
            0x120,
            &[RH_OWNER, handle],
            &[Session::Password(owner_auth)],
            &handle.to_be_bytes(),
        )
        .map(|_| ())
    }

    /// `TPM2_FlushContext`.
    pub fn flush(&mut self, handle: u32) -> Result<(), RawError> {
        self.command(0x165, &[], &[], &handle.to_be_bytes())
            .map(|_| ())
    }

    /// `TPM2_NV_Read` of `size` bytes at 0.
    pub fn nv_read(&mut self, index: u32, auth: &[u8], size: u16) -> Result<Vec<u8>, RawError> {
        let mut p = size.to_be_bytes().to_vec();
        p.extend_from_slice(&0u16.to_be_bytes());
        let r = self.command(0x14e, &[index, index], &[Session::Password(auth)], &p)?;
        tpm2b(&r, 0).map(|(b, _)| b.to_vec())
    }

    /// `TPM2_NV_Certify` of `size` bytes of `index` (empty read authValue) by the key `signer`
    /// (authValue `signer_auth`), with the key's own scheme: returns the `TPMS_ATTEST` bytes
    /// and the ECDSA `r`, `s`.
    pub fn nv_certify(
        &mut self,
        signer: u32,
        signer_auth: Session<'_>,
        index: u32,
        qualifying: &[u8],
        size: u16,
    ) -> Result<Certified, RawError> {
        let mut p = (qualifying.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(qualifying);
        p.extend_from_slice(&0x0010u16.to_be_bytes()); // inScheme: TPM_ALG_NULL
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        let r = self.command(
            0x184,
            &[signer, index, index],
            &[signer_auth, Session::Password(b"")],
            &p,
        )?;
        let (attest, at) = tpm2b(&r, 0)?;
        // TPMT_SIGNATURE: sigAlg, then TPMS_SIGNATURE_ECDSA { hash, r, s }.
        let sig_alg = u16_at(&r, at)?;
        if sig_alg != 0x0018 {
            return Err(RawError::Rc(0xffff_0000 | u32::from(sig_alg)));
        }
        let (sr, at) = tpm2b(&r, at + 4)?;
        let (ss, _) = tpm2b(&r, at)?;
        Ok((attest.to_vec(), sr.to_vec(), ss.to_vec()))
    }

    /// `TPM2_Quote` of the SHA-256 PCRs in `pcrs` by the key `signer` (authValue
    /// `signer_auth`), with the key's own scheme: the `TPMS_ATTEST` bytes and the ECDSA `r`, `s`.
    pub fn quote(
        &mut self,
        signer: u32,
        signer_auth: Session<'_>,
        qualifying: &[u8],
        pcrs: &[u32],
    ) -> Result<Certified, RawError> {
        let mut p = (qualifying.len() as u16).to_be_bytes().to_vec();
        p.extend_from_slice(qualifying);
        p.extend_from_slice(&0x0010u16.to_be_bytes()); // inScheme: TPM_ALG_NULL
        p.extend_from_slice(&selection(pcrs));
        let r = self.command(0x158, &[signer], &[signer_auth], &p)?;
        let (attest, at) = tpm2b(&r, 0)?;
        let sig_alg = u16_at(&r, at)?;
        if sig_alg != 0x0018 {
            return Err(RawError::Rc(0xffff_0000 | u32::from(sig_alg)));
        }
        let (sr, at) = tpm2b(&r, at + 4)?;
        let (ss, _) = tpm2b(&r, at)?;
        Ok((attest.to_vec(), sr.to_vec(), ss.to_vec()))
    }

    /// `TPM2_PCR_Read` of several SHA-256 PCRs (as many calls as the TPM needs: it returns at
    /// most eight digests per call), in ascending order.
    pub fn pcr_read_many(&mut self, pcrs: &[u32]) -> Result<Vec<(u32, Vec<u8>)>, RawError> {
        let mut want: Vec<u32> = pcrs.to_vec();
        want.sort_unstable();
        want.dedup();
        let mut out = Vec::new();
        while !want.is_empty() {
            let r = self.command(0x17e, &[], &[], &selection(&want))?;
            // pcrUpdateCounter, TPML_PCR_SELECTION (what was read), TPML_DIGEST.
            let count = u32_at(&r, 4)? as usize;
            let mut at = 8;
            let mut read = Vec::new();
            for _ in 0..count {
                let n = *r.get(at + 2).ok_or(RawError::Short)? as usize;
                let bits = r.get(at + 3..at + 3 + n).ok_or(RawError::Short)?;
                read.extend(
                    (0..n * 8)
                        .filter(|i| bits[i / 8] & (1 << (i % 8)) != 0)
                        .map(|i| i as u32),
                );
                at += 3 + n;
            }
            let digests = u32_at(&r, at)? as usize;
            at += 4;
            if read.is_empty() || digests != read.len() {
                return Err(RawError::Short);
            }
            for pcr in read {
                let (d, next) = tpm2b(&r, at)?;
                out.push((pcr, d.to_vec()));
                want.retain(|p| *p != pcr);
                at = next;
            }
        }
        Ok(out)
    }

    /// `TPM2_NV_UndefineSpace` with owner authorisation `owner_auth`.
    pub fn nv_undefine(&mut self, index: u32, owner_auth: &[u8]) -> Result<(), RawError> {
        self.command(
            0x122,
            &[RH_OWNER, index],
            &[Session::Password(owner_auth)],
            &[],
        )
        .map(|_| ())
    }

    /// `TPM2_PCR_Reset` (empty authValue).
    pub fn pcr_reset(&mut self, pcr: u32) -> Result<(), RawError> {
        self.command(0x13d, &[pcr], &[Session::Password(b"")], &[])
            .map(|_| ())
    }

    /// `TPM2_PCR_Extend` of the SHA-256 bank.
    pub fn pcr_extend(&mut self, pcr: u32, digest: &[u8; 32]) -> Result<(), RawError> {
        let mut p = 1u32.to_be_bytes().to_vec();
        p.extend_from_slice(&0x000bu16.to_be_bytes());
        p.extend_from_slice(digest);
        self.command(0x182, &[pcr], &[Session::Password(b"")], &p)
            .map(|_| ())
    }

    /// `TPM2_ReadClock`: the TPM's reset and restart counts (`clockInfo.resetCount`,
    /// `restartCount`). One of them grows at every `TPM2_Startup(CLEAR)`, i.e. whenever PCRs
    /// and `CLEAR_STCLEAR` indices are cleared (a reboot, a resume from hibernation), and
    /// neither does otherwise.
    pub fn startup_counts(&mut self) -> Result<(u32, u32), RawError> {
        // TPMS_TIME_INFO: time u64, then TPMS_CLOCK_INFO: clock u64, resetCount u32,
        // restartCount u32, safe u8.
        let r = self.command(0x181, &[], &[], &[])?;
        Ok((u32_at(&r, 16)?, u32_at(&r, 20)?))
    }

    /// `TPM2_PCR_Read` of one SHA-256 PCR.
    pub fn pcr_read(&mut self, pcr: u32) -> Result<Vec<u8>, RawError> {
        let mut sel = [0u8; 3];
        sel[(pcr / 8) as usize] = 1 << (pcr % 8);
        let mut p = 1u32.to_be_bytes().to_vec();
        p.extend_from_slice(&0x000bu16.to_be_bytes());
        p.push(3);
        p.extend_from_slice(&sel);
        let r = self.command(0x17e, &[], &[], &p)?;
        // pcrUpdateCounter u32, TPML_PCR_SELECTION (count u32 + (u16 + u8 + 3) each), TPML_DIGEST.
        let count = u32_at(&r, 4)? as usize;
        let at = 8 + count * 6;
        let n = u32_at(&r, at)?;
        if n == 0 {
            return Err(RawError::Short);
        }
        tpm2b(&r, at + 4).map(|(b, _)| b.to_vec())
    }
}

/// A `TPML_PCR_SELECTION` of SHA-256 PCRs.
pub fn selection(pcrs: &[u32]) -> Vec<u8> {
    let mut bits = [0u8; 3];
    for p in pcrs {
        bits[(*p / 8) as usize] |= 1 << (p % 8);
    }
    let mut p = 1u32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x000bu16.to_be_bytes());
    p.push(3);
    p.extend_from_slice(&bits);
    p
}

/// 16 fresh bytes for a nonceCaller.
fn nonce16() -> [u8; 16] {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, RawError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(RawError::Short)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, RawError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RawError::Short)
}

/// A `TPM2B` at `at`: its bytes and the offset after it.
fn tpm2b(b: &[u8], at: usize) -> Result<(&[u8], usize), RawError> {
    let n = u16_at(b, at)? as usize;
    let v = b.get(at + 2..at + 2 + n).ok_or(RawError::Short)?;
    Ok((v, at + 2 + n))
}
