//! `warren-tpm`: Warren's TPM agent. The `warren` binary is linked statically and tpm2-tss
//! exists only as shared libraries, so everything that needs a TPM runs in this small,
//! dynamically linked helper, one operation per process:
//!
//! ```text
//! warren-tpm --tpm SPEC --dir ATTEST_DIR OP [ARGS]
//!   provision              create the attestation key (persistent, bound to the PCRs as they
//!                          are now) and the NV extend index
//!   reprovision            remove both and provision again (after a legitimate update)
//!   warren-pcr             the value of Warren's PCR 15
//!   measure-self HEX...    extend PCR 15 with each digest, only if it is still zero
//!   extend DIGEST_HEX [continues]
//!                          extend the anchor with a record digest; answers the TPM's reset
//!                          and restart counts (`continues`: the log holds records, so fail
//!                          with `anchor-reset startup=R.S` if the anchor is unwritten)
//!   read                   the anchor's value
//!   quote QUALIFYING_HEX [continues]
//!                          TPM2_NV_Certify of the anchor by the attestation key
//!   ek                     the EK certificate, the EK modulus, the AK's public area
//!   activate BLOB_HEX SECRET_HEX   TPM2_ActivateCredential with the EK and the AK
//!   diag-pcr-reset N | diag-pcr-extend N HEX | diag-pcr-read N | diag-nv-undefine |
//!   diag-extend-with AUTH_HEX DIGEST_HEX | diag-provision-unbound
//!                          (for tests of the anchor and the key binding against attacks)
//! ```
//!
//! It prints one JSON object on standard output (`{"error": "..."}` and exit status 1 on
//! failure). SPEC is a tss TCTI: `swtpm:host=127.0.0.1,port=2321` or `device:/dev/tpmrm0`. The
//! protocol is documented in docs/attestation.md.
#![forbid(unsafe_code)]

mod raw;

use std::convert::TryFrom;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, KeyCustomization, ak, ek};
use tss_esapi::attributes::{NvIndexAttributes, ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, NvIndexTpmHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, EncryptedSecret, IdObject, NvPublic, Public, PublicBuilder, SymmetricDefinition,
};
use tss_esapi::{Context, TctiNameConf};

/// The persistent handle of Warren's attestation key.
const AK_HANDLE: u32 = 0x8101_5741;
/// The PCRs of the SHA-256 bank a quote covers and the attestation key is bound to: the boot
/// PCRs (`warren_attest::evidence::bootlog::BOOT_PCRS`) and Warren's own PCR 15
/// (`warren_attest::evidence::tpm_wire::BOUND_PCRS`).
const BOUND_PCRS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15];
/// Warren's own PCR.
const WARREN_PCR: u32 = 15;
/// The PCRs a quote covers: the bound ones and IMA's PCR 10 (not bound: it grows with every
/// file IMA measures).
const QUOTED_PCRS: [u32; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15];

/// `TPM_CC_PolicyPCR`, `TPM_CC_PolicyAuthValue` (also what `TPM2_PolicyPassword` records).
const CC_POLICY_PCR: u32 = 0x17f;
const CC_POLICY_AUTH_VALUE: u32 = 0x16b;

/// The attestation key's authPolicy: `TPM2_PolicyPCR` over [`BOUND_PCRS`] with the SHA-256 of
/// their values (in ascending order), then `TPM2_PolicyAuthValue`. With `userWithAuth` clear,
/// every use of the key as a signer (quote, NV certification) and as the authorising object of
/// the anchor's `PolicySecret` needs both: the authValue and the PCRs in this state.
fn ak_policy(values: &[Vec<u8>]) -> [u8; 32] {
    let mut pcr = Sha256::new();
    for v in values {
        pcr.update(v);
    }
    let pcr_digest: [u8; 32] = pcr.finalize().into();
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_PCR.to_be_bytes());
    h.update(raw::selection(&BOUND_PCRS));
    h.update(pcr_digest);
    let d: [u8; 32] = h.finalize().into();
    let mut h = Sha256::new();
    h.update(d);
    h.update(CC_POLICY_AUTH_VALUE.to_be_bytes());
    h.finalize().into()
}

/// The attestation key's template changes: no password use (`userWithAuth` clear), and the
/// PCR-bound authPolicy (`None`: the standard template, for the tests' positive controls).
struct Bound(Option<[u8; 32]>);

impl KeyCustomization for Bound {
    fn attributes(&self, b: ObjectAttributesBuilder) -> ObjectAttributesBuilder {
        b.with_user_with_auth(self.0.is_none())
    }
    fn template(&self, t: PublicBuilder) -> PublicBuilder {
        match self.0.map(|p| Digest::try_from(p.to_vec())) {
            Some(Ok(d)) => t.with_auth_policy(d),
            _ => t,
        }
    }
}

/// `TPM_RC_POLICY_FAIL` whatever session or parameter it names: the policy session's digest
/// is not the object's authPolicy, here because the PCRs moved.
fn is_policy_fail(e: &raw::RawError) -> bool {
    matches!(e, raw::RawError::Rc(rc) if rc & 0x0bf == 0x09d)
}

/// Like [`raw_err`], naming the PCR state when the TPM refused the attestation key's policy.
fn ak_err(what: &str) -> impl Fn(raw::RawError) -> String + '_ {
    move |e| {
        if is_policy_fail(&e) {
            format!(
                "{what}: the TPM refused the attestation key (pcr-state): PCRs 0-9, 14 and 15 \
                 are not in the state the key is bound to, so this host booted or runs something \
                 other than what it was provisioned in ({e}); after a legitimate update, \
                 `warren attest init --reprovision` and enroll the new key"
            )
        } else {
            format!("{what}: {e}")
        }
    }
}

/// The NV extend index that anchors the event log (the same number as `warren_attest::log`).
const NV_INDEX: u32 = 0x0157_4152;

type Res<T> = Result<T, String>;

fn err(what: &str) -> impl Fn(tss_esapi::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn raw_err(what: &str) -> impl Fn(raw::RawError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The Name of an object: nameAlg (SHA-256) and the digest of its `TPMT_PUBLIC`.
fn object_name(public: &[u8]) -> Vec<u8> {
    let mut n = 0x000bu16.to_be_bytes().to_vec();
    n.extend_from_slice(&Sha256::digest(public));
    n
}

/// The anchor's authPolicy: `TPM2_PolicySecret` with the attestation key as the authorising
/// object, so only whoever knows the AK's authValue can extend the index. An owner who
/// re-creates the index must give it this policy to keep its Name, and still cannot write it.
fn write_policy(ak_name: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(0x151u32.to_be_bytes());
    h.update(ak_name);
    let d: [u8; 32] = h.finalize().into();
    let mut h = Sha256::new();
    h.update(d);
    h.finalize().into()
}

/// The anchor's attributes: an extend index written only through its policy, read by anyone
/// (empty authValue), not subject to dictionary-attack lockout, reset to "unwritten" only by
/// TPM2_Startup(CLEAR), i.e. a reboot.
fn anchor_attributes() -> Res<NvIndexAttributes> {
    NvIndexAttributes::builder()
        .with_nv_index_type(tss_esapi::constants::NvIndexType::Extend)
        .with_policy_write(true)
        .with_auth_read(true)
        .with_clear_stclear(true)
        .with_no_da(true)
        .build()
        .map_err(err("nv attributes"))
}

fn context(spec: &str) -> Res<Context> {
    let tcti = TctiNameConf::from_str(spec).map_err(err("tpm spec"))?;
    Context::new(tcti).map_err(err("open the tpm"))
}

fn random32() -> Res<Vec<u8>> {
    let mut b = vec![0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| e.to_string())?,
        &mut b,
    )
    .map_err(|e| e.to_string())?;
    Ok(b)
}

struct Agent {
    spec: String,
    dir: PathBuf,
}

impl Agent {
    fn auth_path(&self) -> PathBuf {
        self.dir.join("ak.auth")
    }

    /// The attestation key's authValue (`<dir>/ak.auth`, 0600).
    fn auth(&self) -> Res<Vec<u8>> {
        let s = std::fs::read_to_string(self.auth_path())
            .map_err(|e| format!("read {}: {e}", self.auth_path().display()))?;
        hex::decode(s.trim()).map_err(|e| e.to_string())
    }

    /// With `continues` after an operation's argument (`extend DIGEST continues`, `quote Q
    /// continues`: the caller's event log already holds records), fail with `anchor-reset
    /// startup=R.S` when the anchor is unwritten: a reboot cleared it (then the TPM's reset
    /// and restart counts R.S differ from those the log began in, and Warren starts a new
    /// log), or someone deleted and defined it again (the same counts: Warren extends it
    /// anyway, and the log, which no longer replays to it, shows the reset to every verifier).
    fn check_continues(&self, rest: &[String]) -> Res<()> {
        match rest.get(2).map(String::as_str) {
            None => return Ok(()),
            Some("continues") if rest.len() == 3 => {}
            Some(_) => return Err(format!("unexpected arguments {:?}", &rest[2..])),
        }
        let mut t = self.raw()?;
        match t.nv_read(NV_INDEX, b"", 32) {
            Ok(_) => Ok(()),
            // TPM_RC_NV_UNINITIALIZED: never extended since the TPM last started up anew, or
            // deleted and defined again; its reset and restart counts tell the caller which.
            Err(raw::RawError::Rc(0x14a)) => {
                let (resets, restarts) = t
                    .startup_counts()
                    .map_err(raw_err("read the TPM's clock"))?;
                Err(format!(
                    "anchor-reset startup={resets}.{restarts}: the anchor is unwritten, but the \
                     event log holds records"
                ))
            }
            Err(e) => Err(format!("read the anchor: {e}")),
        }
    }

    fn ak_public(&self) -> Res<Vec<u8>> {
        self.raw()?
            .read_public(AK_HANDLE)
            .map_err(raw_err("read the attestation key"))
    }

    /// Extends the anchor: a policy session satisfied by PolicySecret with the AK, which is
    /// itself authorised by a policy session (the AK's PCRs and its authValue).
    fn extend(&self, ak_auth: &[u8], digest: &[u8]) -> Res<()> {
        let mut t = self.raw()?;
        let session = t
            .start_policy_session()
            .map_err(raw_err("start a policy session"))?;
        let ak = match ak_session(&mut t, ak_auth) {
            Ok(s) => s,
            Err(e) => {
                let _ = t.flush(session);
                return Err(e);
            }
        };
        let result = t
            .policy_secret(AK_HANDLE, ak, session)
            .map_err(ak_err("satisfy the anchor's policy"))
            .and_then(|()| {
                t.nv_extend(NV_INDEX, raw::Session::Policy(session), digest)
                    .map_err(raw_err("extend the anchor"))
            });
        if result.is_err() {
            let _ = t.flush(session);
            end(&mut t, ak);
        }
        result
    }

    fn raw(&self) -> Res<raw::Transport> {
        raw::Transport::open(&self.spec).map_err(|e| format!("open the tpm: {e}"))
    }

    fn publics(&self) -> Res<Value> {
        let mut t = self.raw()?;
        let ak = t
            .read_public(AK_HANDLE)
            .map_err(raw_err("read the attestation key"))?;
        let nv = t
            .nv_read_public(NV_INDEX)
            .map_err(raw_err("read the anchor's public area"))?;
        Ok(json!({ "ak_public": hex::encode(ak), "nv_public": hex::encode(nv) }))
    }

    /// Removes the attestation key and the anchor (owner authorisation), then provisions
    /// again: a new key bound to the PCRs as they are now, which must be enrolled again.
    fn reprovision(&self, bound: bool) -> Res<Value> {
        let mut t = self.raw()?;
        if t.read_public(AK_HANDLE).is_ok() {
            t.evict(AK_HANDLE, b"")
                .map_err(raw_err("remove the old attestation key"))?;
        }
        if t.nv_read_public(NV_INDEX).is_ok() {
            t.nv_undefine(NV_INDEX, b"")
                .map_err(raw_err("remove the old anchor"))?;
        }
        drop(t);
        self.provision_with(bound)
    }

    fn provision(&self) -> Res<Value> {
        self.provision_with(true)
    }

    /// Provisions; `bound: false` makes the key the way Warren did before the PCR binding
    /// (standard AK template, `userWithAuth`), for the tests' positive controls only.
    fn provision_with(&self, bound: bool) -> Res<Value> {
        let (has_ak, nv) = {
            let mut t = self.raw()?;
            (
                t.read_public(AK_HANDLE).is_ok(),
                t.nv_read_public(NV_INDEX).ok(),
            )
        };
        if !has_ak {
            let values: Vec<Vec<u8>> = self
                .raw()?
                .pcr_read_many(&BOUND_PCRS)
                .map_err(raw_err("read the PCRs the attestation key is bound to"))?
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            let policy = ak_policy(&values);
            let auth = random32()?;
            write_secret(&self.auth_path(), &auth)?;
            let mut ctx = context(&self.spec)?;
            let ek = ek::create_ek_object(&mut ctx, AsymmetricAlgorithm::Rsa, None)
                .map_err(err("create the endorsement key"))?;
            let created = ak::create_ak_2(
                &mut ctx,
                ek,
                HashingAlgorithm::Sha256,
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
                Some(Auth::try_from(auth.clone()).map_err(err("ak auth"))?),
                Bound(bound.then_some(policy)),
            )
            .map_err(err("create the attestation key"))?;
            let loaded = ak::load_ak(
                &mut ctx,
                ek,
                Some(Auth::try_from(auth).map_err(err("ak auth"))?),
                created.out_private,
                created.out_public,
            )
            .map_err(err("load the attestation key"))?;
            let persistent = PersistentTpmHandle::new(AK_HANDLE).map_err(err("ak handle"))?;
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.evict_control(
                    Provision::Owner,
                    loaded.into(),
                    Persistent::Persistent(persistent),
                )
            })
            .map_err(err("make the attestation key persistent"))?;
            let _ = ctx.flush_context(loaded.into());
            let _ = ctx.flush_context(ek.into());
        }
        match nv {
            Some(public) => {
                // An index already there must be exactly Warren's, or it is someone else's.
                let expected = self.expected_nv_public()?;
                if public != expected && public != with_written(&expected) {
                    return Err(format!(
                        "nv index {NV_INDEX:#010x} exists with other attributes or policy; \
                         refusing to anchor the log in it"
                    ));
                }
                self.auth()?;
            }
            None => self.define_anchor()?,
        }
        self.publics()
    }

    /// Defines the anchor (owner authorisation, empty here as on most hosts).
    fn define_anchor(&self) -> Res<()> {
        let policy = write_policy(&object_name(&self.ak_public()?));
        let public = NvPublic::builder()
            .with_nv_index(NvIndexTpmHandle::new(NV_INDEX).map_err(err("nv handle"))?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(anchor_attributes()?)
            .with_index_auth_policy(Digest::try_from(policy.to_vec()).map_err(err("policy"))?)
            .with_data_area_size(32)
            .build()
            .map_err(err("nv public"))?;
        let mut ctx = context(&self.spec)?;
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.nv_define_space(Provision::Owner, None, public)
        })
        .map_err(err("define the anchor"))?;
        Ok(())
    }

    /// The `TPMS_NV_PUBLIC` Warren defines, before the first extension.
    fn expected_nv_public(&self) -> Res<Vec<u8>> {
        let attrs: u32 = tss_esapi::tss2_esys::TPMA_NV::try_from(anchor_attributes()?)
            .map_err(err("nv attributes"))?;
        let mut b = NV_INDEX.to_be_bytes().to_vec();
        b.extend_from_slice(&0x000bu16.to_be_bytes());
        b.extend_from_slice(&attrs.to_be_bytes());
        b.extend_from_slice(&32u16.to_be_bytes());
        b.extend_from_slice(&write_policy(&object_name(&self.ak_public()?)));
        b.extend_from_slice(&32u16.to_be_bytes());
        Ok(b)
    }

    fn ek(&self) -> Res<Value> {
        let mut ctx = context(&self.spec)?;
        let cert = ek::retrieve_ek_pubcert(
            &mut ctx,
            AsymmetricAlgorithmSelection::Rsa(
                tss_esapi::interface_types::key_bits::RsaKeyBits::Rsa2048,
            ),
        )
        .map_err(err("read the EK certificate"))?;
        let ekh = ek::create_ek_object(&mut ctx, AsymmetricAlgorithm::Rsa, None)
            .map_err(err("create the endorsement key"))?;
        let (public, _, _) = ctx.read_public(ekh).map_err(err("read the EK"))?;
        let _ = ctx.flush_context(ekh.into());
        let modulus = match public {
            Public::Rsa { unique, .. } => unique.value().to_vec(),
            _ => return Err("the EK is not an RSA key".into()),
        };
        drop(ctx);
        let ak = self
            .raw()?
            .read_public(AK_HANDLE)
            .map_err(raw_err("read the attestation key"))?;
        Ok(
            json!({ "ek_cert": hex::encode(cert), "ek_modulus": hex::encode(modulus),
                   "ak_public": hex::encode(ak) }),
        )
    }

    fn activate(&self, blob: &[u8], secret: &[u8]) -> Res<Value> {
        let mut ctx = context(&self.spec)?;
        let ekh = ek::create_ek_object(&mut ctx, AsymmetricAlgorithm::Rsa, None)
            .map_err(err("create the endorsement key"))?;
        let akh = ctx
            .tr_from_tpm_public(TpmHandle::Persistent(
                PersistentTpmHandle::new(AK_HANDLE).map_err(err("ak handle"))?,
            ))
            .map_err(err("find the attestation key"))?;
        ctx.tr_set_auth(akh, Auth::try_from(self.auth()?).map_err(err("ak auth"))?)
            .map_err(err("ak auth"))?;
        let (attrs, mask) = SessionAttributesBuilder::new().build();
        let hmac = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(err("start a session"))?
            .ok_or("no session")?;
        ctx.tr_sess_set_attributes(hmac, attrs, mask)
            .map_err(err("session attributes"))?;
        let policy = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(err("start a policy session"))?
            .ok_or("no session")?;
        ctx.tr_sess_set_attributes(policy, attrs, mask)
            .map_err(err("session attributes"))?;
        ctx.execute_with_session(Some(hmac), |c| {
            c.policy_secret(
                PolicySession::try_from(policy)?,
                AuthHandle::Endorsement,
                Default::default(),
                Default::default(),
                Default::default(),
                None,
            )
        })
        .map_err(err("satisfy the EK policy"))?;
        ctx.set_sessions((Some(hmac), Some(policy), None));
        let out = ctx
            .activate_credential(
                akh.into(),
                ekh,
                IdObject::try_from(blob.to_vec()).map_err(err("credential blob"))?,
                EncryptedSecret::try_from(secret.to_vec()).map_err(err("encrypted secret"))?,
            )
            .map_err(err("activate the credential"))?;
        ctx.clear_sessions();
        let _ = ctx.flush_context(ekh.into());
        Ok(json!({ "secret": hex::encode(out.value()) }))
    }
}

/// How one use of the attestation key is authorised. A bound key (no `userWithAuth`): a policy
/// session with `PolicyPCR` over [`BOUND_PCRS`] as they are now, then `PolicyPassword` (the
/// authValue goes with the command). A key made before the binding (`userWithAuth`, no
/// policy): a password session, so such hosts keep working until re-provisioned; verifiers
/// refuse their quotes (`ak-unbound`).
fn ak_session<'a>(t: &mut raw::Transport, auth: &'a [u8]) -> Res<raw::Session<'a>> {
    let public = t
        .read_public(AK_HANDLE)
        .map_err(raw_err("read the attestation key"))?;
    let attributes = public
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("the attestation key's public area is truncated")?;
    if attributes & (1 << 6) != 0 {
        return Ok(raw::Session::Password(auth));
    }
    let s = t
        .start_policy_session()
        .map_err(raw_err("start a policy session"))?;
    let r = t
        .policy_pcr(s, &BOUND_PCRS)
        .and_then(|()| t.policy_password(s));
    if let Err(e) = r {
        let _ = t.flush(s);
        return Err(format!("the attestation key's policy session: {e}"));
    }
    Ok(raw::Session::PolicyPassword(s, auth))
}

/// Ends a policy session a failed command left open (a password session has nothing to end).
fn end(t: &mut raw::Transport, s: raw::Session<'_>) {
    if let raw::Session::PolicyPassword(h, _) | raw::Session::Policy(h) = s {
        let _ = t.flush(h);
    }
}

/// The public area as it reads once the index has been written (`TPMA_NV_WRITTEN` set).
fn with_written(public: &[u8]) -> Vec<u8> {
    let mut p = public.to_vec();
    if p.len() >= 10 {
        let attrs = u32::from_be_bytes([p[6], p[7], p[8], p[9]]) | (1 << 29);
        p[6..10].copy_from_slice(&attrs.to_be_bytes());
    }
    p
}

fn write_secret(path: &Path, bytes: &[u8]) -> Res<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut f, hex::encode(bytes).as_bytes()).map_err(|e| e.to_string())
}

fn hex_arg(args: &[String], i: usize) -> Res<Vec<u8>> {
    let s = args.get(i).ok_or("missing argument")?;
    hex::decode(s).map_err(|_| format!("{s:?} is not hex"))
}

fn run(args: &[String]) -> Res<Value> {
    let mut spec = None;
    let mut dir = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tpm" => spec = it.next().cloned(),
            "--dir" => dir = it.next().map(PathBuf::from),
            _ => rest.push(a.clone()),
        }
    }
    let agent = Agent {
        spec: spec.ok_or("--tpm SPEC is required")?,
        dir: dir.unwrap_or_else(|| Path::new(".").to_owned()),
    };
    let op = rest.first().map(String::as_str).unwrap_or("");
    match op {
        "provision" => agent.provision(),
        "reprovision" => agent.reprovision(true),
        // A host where the binding is off: what an attacker gets from a key Warren made
        // before PolicyPCR (the tests' positive control).
        "diag-provision-unbound" => agent.reprovision(false),
        "extend" => {
            let digest = hex_arg(&rest, 1)?;
            agent.check_continues(&rest)?;
            agent.extend(&agent.auth()?, &digest)?;
            let (resets, restarts) = agent
                .raw()?
                .startup_counts()
                .map_err(raw_err("read the TPM's clock"))?;
            Ok(json!({ "startup": format!("{resets}.{restarts}") }))
        }
        "read" => {
            let v = match agent.raw()?.nv_read(NV_INDEX, b"", 32) {
                Ok(v) => v,
                // TPM_RC_NV_UNINITIALIZED: never extended since the last TPM reset.
                Err(raw::RawError::Rc(0x14a)) => vec![0; 32],
                Err(e) => return Err(format!("read the anchor: {e}")),
            };
            Ok(json!({ "value": hex::encode(v) }))
        }
        "quote" => {
            let q = hex_arg(&rest, 1)?;
            agent.check_continues(&rest)?;
            let auth = agent.auth()?;
            let mut t = agent.raw()?;
            let s1 = ak_session(&mut t, &auth)?;
            let (attest, r, s) = t.nv_certify(AK_HANDLE, s1, NV_INDEX, &q, 32).map_err(|e| {
                end(&mut t, s1);
                match e {
                    // TPM_RC_NV_UNINITIALIZED: nothing extended since the last TPM reset.
                    raw::RawError::Rc(0x14a) => "anchor-unwritten: nothing has been measured \
                        since the TPM was reset (a reboot): there is no record to quote until \
                        the first launch"
                        .to_owned(),
                    e => ak_err("certify the anchor")(e),
                }
            })?;
            // The boot state over the same qualifying value: the PCRs are read first and
            // quoted after; the verifier checks that the values hash to the signed digest.
            let pcrs = t
                .pcr_read_many(&QUOTED_PCRS)
                .map_err(raw_err("read the boot PCRs"))?;
            let s2 = ak_session(&mut t, &auth)?;
            let (pcr_attest, pcr_r, pcr_s) =
                t.quote(AK_HANDLE, s2, &q, &QUOTED_PCRS).map_err(|e| {
                    end(&mut t, s2);
                    ak_err("quote the boot PCRs")(e)
                })?;
            let ak = t
                .read_public(AK_HANDLE)
                .map_err(raw_err("read the attestation key"))?;
            let nv = t
                .nv_read_public(NV_INDEX)
                .map_err(raw_err("read the anchor's public area"))?;
            drop(t);
            let mut v = json!({ "ak_public": hex::encode(ak), "nv_public": hex::encode(nv) });
            v["attest"] = hex::encode(attest).into();
            v["r"] = hex::encode(r).into();
            v["s"] = hex::encode(s).into();
            v["pcr_attest"] = hex::encode(pcr_attest).into();
            v["pcr_r"] = hex::encode(pcr_r).into();
            v["pcr_s"] = hex::encode(pcr_s).into();
            let map: serde_json::Map<String, Value> = pcrs
                .into_iter()
                .map(|(n, d)| (n.to_string(), Value::from(hex::encode(d))))
                .collect();
            v["pcrs"] = Value::Object(map);
            Ok(v)
        }
        "warren-pcr" => {
            let v = agent
                .raw()?
                .pcr_read(WARREN_PCR)
                .map_err(raw_err("read PCR 15"))?;
            Ok(json!({ "value": hex::encode(v) }))
        }
        "measure-self" => {
            // Warren measures itself: only into a PCR nothing was extended into since the TPM
            // was reset, checked in the same connection as the extensions.
            let mut t = agent.raw()?;
            let v = t.pcr_read(WARREN_PCR).map_err(raw_err("read PCR 15"))?;
            if v.iter().any(|b| *b != 0) {
                return Err(format!(
                    "PCR {WARREN_PCR} already holds {}: something was extended into it since \
                     the TPM was reset, so Warren cannot measure itself from a known value",
                    hex::encode(v)
                ));
            }
            for i in 1..rest.len() {
                let d: [u8; 32] = hex_arg(&rest, i)?
                    .try_into()
                    .map_err(|_| "a digest is 32 bytes")?;
                t.pcr_extend(WARREN_PCR, &d)
                    .map_err(raw_err("extend PCR 15"))?;
            }
            let v = t.pcr_read(WARREN_PCR).map_err(raw_err("read PCR 15"))?;
            Ok(json!({ "value": hex::encode(v) }))
        }
        "ek" => agent.ek(),
        "activate" => agent.activate(&hex_arg(&rest, 1)?, &hex_arg(&rest, 2)?),
        "diag-pcr-reset" | "diag-pcr-extend" | "diag-pcr-read" => {
            let pcr: u32 = rest
                .get(1)
                .and_then(|p| p.parse().ok())
                .ok_or("pcr number")?;
            let mut t = agent.raw()?;
            match op {
                "diag-pcr-reset" => t.pcr_reset(pcr).map_err(raw_err("pcr reset"))?,
                "diag-pcr-extend" => {
                    let d: [u8; 32] = hex_arg(&rest, 2)?
                        .try_into()
                        .map_err(|_| "a digest is 32 bytes")?;
                    t.pcr_extend(pcr, &d).map_err(raw_err("pcr extend"))?
                }
                _ => {}
            }
            let v = t.pcr_read(pcr).map_err(raw_err("pcr read"))?;
            Ok(json!({ "value": hex::encode(v) }))
        }
        "diag-nv-undefine" => {
            agent
                .raw()?
                .nv_undefine(NV_INDEX, b"")
                .map_err(raw_err("undefine the anchor"))?;
            Ok(json!({}))
        }
        "diag-nv-define" => {
            agent.define_anchor()?;
            agent.publics()
        }
        "diag-extend-with" => {
            // An attacker's extension: with a guessed AK authValue, or with a password session
            // (an empty AUTH_HEX) as an AUTHWRITE index would allow.
            let auth = hex_arg(&rest, 1)?;
            let digest = hex_arg(&rest, 2)?;
            if auth.is_empty() {
                agent
                    .raw()?
                    .nv_extend(NV_INDEX, raw::Session::Password(b""), &digest)
                    .map_err(raw_err("extend the anchor"))?;
            } else {
                agent.extend(&auth, &digest)?;
            }
            Ok(json!({}))
        }
        _ => Err(format!("unknown operation {op:?}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            println!("{}", json!({ "error": e }));
            std::process::exit(1);
        }
    }
}
