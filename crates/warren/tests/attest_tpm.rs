//! The TPM root of trust against a swtpm this test starts itself (loopback TCP, its own state
//! directory, an EK certificate from `swtpm_setup --create-ek-cert`), through the real `warren`
//! binary and the `warren-tpm` agent: enrollment with the Privacy CA (EK chain,
//! MakeCredential/ActivateCredential), measured launches in a TPM quote that verifies, and the
//! attacks, each refused for its own reason. One test function, because the swtpm must outlive
//! every step and is stopped (by its pid) when the function ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use common::swtpm::{Boot, Swtpm, agent, firmware_events, good_boot, localca_certs, ok, sha2_256};
use common::{busybox_root, unique, warren};

struct Host {
    state: PathBuf,
    agent: PathBuf,
}

impl Host {
    fn new(tag: &str, agent: &Path) -> Host {
        let state = PathBuf::from(format!("/run/warren-attest-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        Host {
            state,
            agent: agent.to_owned(),
        }
    }

    /// The Privacy CA's directory next to the state directory, emptied of an earlier run's.
    fn fresh_ca(&self) -> PathBuf {
        let ca = self.state.with_extension("ca");
        let _ = std::fs::remove_dir_all(&ca);
        ca
    }

    /// `warren attest init --root tpm` on `tpm`.
    fn init_tpm(&self, tpm: &Swtpm) {
        ok(self
            .w()
            .args(["attest", "init", "--root", "tpm", "--tpm", &tpm.spec()])
            .output()
            .unwrap());
    }

    fn w(&self) -> Command {
        let mut c = warren();
        c.arg("--state-dir").arg(&self.state);
        c.env_remove("WARREN_ATTEST_ROOT");
        c.env_remove("WARREN_TPM");
        c.env("WARREN_TPM_AGENT", &self.agent);
        c
    }

    fn launch(&self, cmd: &str) -> String {
        let name = unique("t");
        ok(self
            .w()
            .args(["run", "--name", &name, "--rootfs"])
            .arg(busybox_root())
            .args(["--", cmd])
            .output()
            .unwrap());
        name
    }

    fn quote(&self, nonce: &str, extra: &[&str]) -> Value {
        let o = ok(self
            .w()
            .args(["attest", "quote", "--nonce", nonce])
            .args(extra)
            .output()
            .unwrap());
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn verify(&self, quote: &Value, nonce: &str, ca: &Path, extra: &[&str]) -> (bool, String) {
        let file = self.state.join(format!("{}.json", unique("q")));
        std::fs::write(&file, serde_json::to_vec(quote).unwrap()).unwrap();
        let o = self
            .w()
            .args(["attest", "verify", "--json", "--quote"])
            .arg(&file)
            .args(["--nonce", nonce, "--ca"])
            .arg(ca)
            .args(extra)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
            panic!(
                "verify printed no JSON: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (
            v["accepted"].as_bool().unwrap(),
            v["reason"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// `warren attest policy learn --quote` of `quote`, written to `<state>/NAME`; returns the
    /// policy file and its text.
    fn learn_policy(&self, quote: &Value, name: &str) -> (PathBuf, String) {
        let qfile = self.state.join(format!("{name}.quote.json"));
        std::fs::write(&qfile, serde_json::to_vec(quote).unwrap()).unwrap();
        let policy = self.state.join(name);
        ok(self
            .w()
            .args(["attest", "policy", "learn", "--quote"])
            .arg(&qfile)
            .arg("--out")
            .arg(&policy)
            .output()
            .unwrap());
        let text = std::fs::read_to_string(&policy).unwrap();
        (policy, text)
    }

    /// A Privacy CA at `ca` trusting swtpm's EK CA, with this host enrolled; returns the CA
    /// certificate verifiers use (`tpm-ca.crt`).
    fn ca_and_enroll(&self, ca: &Path) -> PathBuf {
        let mut ca_init = self.w();
        ca_init.args(["ca", "init", "--dir"]).arg(ca);
        for c in localca_certs() {
            ca_init.arg("--ek-ca").arg(c);
        }
        ok(ca_init.output().unwrap());
        enroll(self, ca);
        ca.join("tpm-ca.crt")
    }

    /// Runs the agent directly, as an attacker with access to the TPM would run tpm2-tools.
    fn agent(&self, tpm: &Swtpm, dir: &Path, args: &[&str]) -> (bool, Value) {
        let o = Command::new(&self.agent)
            .args(["--tpm", &tpm.spec(), "--dir"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            serde_json::from_slice(&o.stdout).unwrap(),
        )
    }
}

fn sweep_stale() {
    common::sweep_stale_runs("warren-attest-");
}

fn accepted() -> (bool, String) {
    (true, String::new())
}

fn refused(reason: &str) -> (bool, String) {
    (false, reason.to_owned())
}

#[test]
fn tpm_rooted_measured_launch_enrollment_and_attacks() {
    sweep_stale();
    let agent = agent();
    let tpm = Swtpm::start("main");
    let host = Host::new("tpm", &agent);
    let ca = host.fresh_ca();

    // The root of trust: the TPM, provisioned (attestation key, anchor); doctor says so.
    host.init_tpm(&tpm);
    let o = ok(host.w().args(["doctor", "--json"]).output().unwrap());
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["attestation"]["root"], "tpm");
    // No local TPM device here (swtpm over TCP): doctor must not also say "no TPM" or "software".
    let text =
        String::from_utf8_lossy(&ok(host.w().arg("doctor").output().unwrap()).stdout).into_owned();
    assert!(text.contains("attestation root: tpm"), "{text}");
    assert!(
        !text.contains("software root") && !text.contains("will be software"),
        "{text}"
    );

    // A Privacy CA that trusts swtpm-localca as EK issuer.
    let mut init = host.w();
    init.args(["ca", "init", "--dir"]).arg(&ca);
    for c in localca_certs() {
        init.arg("--ek-ca").arg(c);
    }
    ok(init.output().unwrap());
    let tpm_ca = ca.join("tpm-ca.crt");
    let software_ca = ca.join("software-ca.crt");

    // Before enrollment: a TPM quote whose key no CA certified.
    let web = host.launch("/bin/true");
    let q = host.quote("aa01", &[]);
    assert_eq!(q["root"], "tpm");
    assert_eq!(
        host.verify(&q, "aa01", &tpm_ca, &[]),
        refused("not-enrolled")
    );

    // Enrollment refused: an EK certificate from an issuer the CA does not trust, and a
    // credential made for another key than the host's AK.
    let req = warren_attest::enroll::tpm_request(&host.state, "tpm-host").unwrap();
    let e = warren_attest::enroll::ca_challenge(&req, &[]).unwrap_err();
    assert!(e.to_string().contains("does not chain"), "{e}");
    let roots = warren_attest::ca::PrivacyCa::new(&ca).ek_roots().unwrap();
    let modulus = hex::decode(&req.ek_modulus).unwrap();
    let other_name = [&[0u8, 0x0b][..], &[7u8; 32]].concat();
    let (blob, secret) =
        warren_attest::credential::make_credential(&modulus, &other_name, &[1; 32]).unwrap();
    let challenge = warren_attest::enroll::Challenge {
        credential_blob: hex::encode(blob),
        secret: hex::encode(secret),
    };
    let e = warren_attest::enroll::tpm_activate(&host.state, &challenge).unwrap_err();
    assert!(e.to_string().contains("activate the credential"), "{e}");
    // The same check for the right key recovers the secret (positive control).
    let (good, expected) = warren_attest::enroll::ca_challenge(&req, &roots).unwrap();
    assert_eq!(
        warren_attest::enroll::tpm_activate(&host.state, &good).unwrap(),
        expected
    );

    // Enrollment: EK chain, MakeCredential, ActivateCredential, certificate from the TPM CA.
    ok(host
        .w()
        .args(["ca", "enroll", "--host", "tpm-host", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    let db = host.launch("/bin/echo");
    let q = host.quote("aa02", &[]);
    assert_eq!(host.verify(&q, "aa02", &tpm_ca, &[]), accepted());
    let log = q["event_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["content"]["name"], web.as_str());
    assert_eq!(log[1]["content"]["name"], db.as_str());
    // A subject quote for one environment.
    let s = host.quote("aa03", &["--env", &db, "--data", "c0de"]);
    assert_eq!(host.verify(&s, "aa03", &tpm_ca, &[]), accepted());
    // Not under the software CA, not for another nonce.
    assert_eq!(host.verify(&q, "aa02", &software_ca, &[]), refused("chain"));
    assert_eq!(host.verify(&q, "aa09", &tpm_ca, &[]), refused("nonce"));

    // Tampering.
    let mut t = q.clone();
    let mut attest = t["attest"].as_str().unwrap().to_owned();
    let last = u8::from_str_radix(&attest[attest.len() - 2..], 16).unwrap() ^ 1;
    attest.replace_range(attest.len() - 2.., &format!("{last:02x}"));
    t["attest"] = attest.into();
    assert_eq!(host.verify(&t, "aa02", &tpm_ca, &[]), refused("signature"));
    let mut t = q.clone();
    t["event_log"][0]["content"]["command"][0] = "/bin/sh".into();
    assert_eq!(
        host.verify(&t, "aa02", &tpm_ca, &[]),
        refused("record-digest")
    );
    let mut t = q.clone();
    t["event_log"].as_array_mut().unwrap().pop();
    assert_eq!(host.verify(&t, "aa02", &tpm_ca, &[]), refused("log-replay"));
    let mut t = q.clone();
    t["event_log"].as_array_mut().unwrap().swap(0, 1);
    assert_eq!(host.verify(&t, "aa02", &tpm_ca, &[]), refused("log-order"));
    // An anchor described with other attributes (say, owner-writable) is not the one the TPM
    // certified.
    let mut t = q.clone();
    let mut nv = hex::decode(t["nv_public"].as_str().unwrap()).unwrap();
    nv[9] |= 0x02; // TPMA_NV_OWNERWRITE
    t["nv_public"] = hex::encode(nv).into();
    assert_eq!(host.verify(&t, "aa02", &tpm_ca, &[]), refused("anchor"));
    // A software quote where a TPM is required, even from a host the same CA enrolled.
    let soft = Host::new("tpm-soft", &agent);
    ok(soft
        .w()
        .args(["attest", "init", "--root", "software"])
        .output()
        .unwrap());
    ok(soft
        .w()
        .args(["ca", "enroll", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    soft.launch("/bin/true");
    let sq = soft.quote("aa04", &[]);
    assert_eq!(
        soft.verify(&sq, "aa04", &tpm_ca, &[]),
        refused("software-root")
    );
    assert_eq!(
        soft.verify(&sq, "aa04", &tpm_ca, &["--allow-software"]),
        refused("chain")
    );
    assert_eq!(
        soft.verify(&sq, "aa04", &software_ca, &["--allow-software"]),
        accepted()
    );

    // The reset-and-re-extend attack. Positive control: PCR 16 can be reset by anyone who
    // reaches the TPM, and then extended with a forged history: why it is not the anchor.
    let attacker = host.state.with_extension("attacker");
    std::fs::create_dir_all(&attacker).unwrap();
    let x = "11".repeat(32);
    let (_, before) = host.agent(&tpm, &attacker, &["diag-pcr-extend", "16", &x]);
    assert_ne!(before["value"], "00".repeat(32));
    let (reset_ok, after) = host.agent(&tpm, &attacker, &["diag-pcr-reset", "16"]);
    assert!(reset_ok);
    assert_eq!(after["value"], "00".repeat(32), "PCR 16 was reset");
    let forged = "22".repeat(32);
    let (_, re) = host.agent(&tpm, &attacker, &["diag-pcr-extend", "16", &forged]);
    let h = sha2_256(&[[0u8; 32].as_slice(), &hex::decode(&forged).unwrap()].concat());
    assert_eq!(re["value"], hex::encode(h), "a forged history in PCR 16");
    // Against the anchor: with owner authorisation the attacker can delete and re-create the
    // index (same attributes and policy, so the same Name) ...
    assert!(host.agent(&tpm, &attacker, &["diag-nv-undefine"]).0);
    assert!(host.agent(&tpm, &attacker, &["diag-nv-define"]).0);
    // ... but cannot extend it: not with a password, not without the AK's authValue.
    let (ok1, e1) = host.agent(&tpm, &attacker, &["diag-extend-with", "", &forged]);
    assert!(
        !ok1 && e1["error"].as_str().unwrap().contains("extend the anchor"),
        "{e1}"
    );
    let (ok2, e2) = host.agent(
        &tpm,
        &attacker,
        &["diag-extend-with", &"33".repeat(32), &forged],
    );
    assert!(
        !ok2 && e2["error"]
            .as_str()
            .unwrap()
            .contains("satisfy the anchor's policy"),
        "{e2}"
    );
    // The reset anchor cannot be quoted, and once Warren extends it again, the log (three
    // records) no longer replays to it (one extension): the reset is detected.
    let o = host
        .w()
        .args(["attest", "quote", "--nonce", "aa05"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    host.launch("/bin/true");
    let q = host.quote("aa06", &[]);
    assert_eq!(q["event_log"].as_array().unwrap().len(), 3);
    assert_eq!(host.verify(&q, "aa06", &tpm_ca, &[]), refused("log-replay"));

    let _ = std::fs::remove_dir_all(&host.state);
    let _ = std::fs::remove_dir_all(&soft.state);
    let _ = std::fs::remove_dir_all(&ca);
    let _ = std::fs::remove_dir_all(&attacker);
}

/// Boots `b` on a freshly reset TPM: writes the log to `path` and extends the PCRs exactly as
/// the log says.
fn boot(host: &Host, tpm: &Swtpm, path: &Path, b: &Boot) -> Vec<u8> {
    use warren_attest::evidence::bootlog::{build, ev};
    let events = firmware_events(b);
    let (bytes, digests) = build(&events);
    std::fs::write(path, &bytes).unwrap();
    let scratch = host.state.with_extension("firmware");
    std::fs::create_dir_all(&scratch).unwrap();
    for (e, d) in events.iter().zip(&digests) {
        if e.event_type == ev::NO_ACTION {
            continue;
        }
        let (done, v) = host.agent(
            tpm,
            &scratch,
            &["diag-pcr-extend", &e.pcr.to_string(), &hex::encode(d)],
        );
        assert!(done, "extend PCR {}: {v}", e.pcr);
    }
    bytes
}

/// `tpm2_eventlog FILE`: its final SHA-256 PCR values (an independent parser's replay).
fn tpm2_eventlog_pcrs(path: &Path) -> std::collections::BTreeMap<u32, String> {
    let o = ok(Command::new("tpm2_eventlog")
        .arg(path)
        .output()
        .expect("tpm2_eventlog (scripts/setup.sh installs tpm2-tools)"));
    let text = String::from_utf8_lossy(&o.stdout);
    let mut out = std::collections::BTreeMap::new();
    let mut in_sha256 = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("sha") && t.ends_with(':') {
            in_sha256 = t == "sha256:";
            continue;
        }
        if in_sha256 {
            if let Some((n, v)) = t.split_once(':') {
                if let (Ok(n), Some(v)) = (n.trim().parse::<u32>(), v.trim().strip_prefix("0x")) {
                    out.insert(n, v.to_lowercase());
                }
            }
        }
    }
    out
}

/// `tpm2_pcrread sha256:...` against the swtpm.
fn tpm2_pcrread(tpm: &Swtpm, pcrs: &[u32]) -> std::collections::BTreeMap<u32, String> {
    let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
    let o = ok(Command::new("tpm2_pcrread")
        .arg(format!("sha256:{}", list.join(",")))
        .env("TPM2TOOLS_TCTI", tpm.spec())
        .output()
        .expect("tpm2_pcrread"));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (n, v) = l.trim().split_once(':')?;
            Some((
                n.trim().parse().ok()?,
                v.trim().strip_prefix("0x")?.to_lowercase(),
            ))
        })
        .collect()
}

#[test]
fn boot_chain_in_every_quote() {
    use warren_attest::evidence::bootlog::{self, BOOT_PCRS};
    sweep_stale();
    let agent = agent();
    let mut tpm = Swtpm::start("boot");
    let host = Host::new("boot", &agent);
    let ca = host.fresh_ca();
    std::fs::create_dir_all(&host.state).unwrap();
    let log_path = host.state.with_extension("bios_measurements");

    // The machine boots: firmware, shim, GRUB and the kernel measure into PCRs 0-9.
    let good = boot(&host, &tpm, &log_path, &good_boot());
    let init = |tpm: &Swtpm| {
        ok(host
            .w()
            .args([
                "attest",
                "init",
                "--root",
                "tpm",
                "--tpm",
                &tpm.spec(),
                "--boot-log",
            ])
            .arg(&log_path)
            .output()
            .unwrap())
    };
    init(&tpm);

    // Warren's replay of the log equals tpm2-tools' (an independent parser) and the TPM's PCRs.
    let replayed = bootlog::parse(&good).unwrap().replay();
    let ours: std::collections::BTreeMap<u32, String> = BOOT_PCRS
        .iter()
        .map(|p| (*p, hex::encode(replayed[p])))
        .collect();
    let theirs = tpm2_eventlog_pcrs(&log_path);
    for p in 0..10 {
        assert_eq!(theirs.get(&p), ours.get(&p), "tpm2_eventlog's PCR {p}");
    }
    assert_eq!(tpm2_pcrread(&tpm, &BOOT_PCRS), ours, "tpm2_pcrread");

    // A --boot-log that is not a crypto-agile log is refused at init, naming the file.
    let junk = host.state.with_extension("junk");
    std::fs::write(&junk, b"not an event log").unwrap();
    let o = host
        .w()
        .args([
            "attest",
            "init",
            "--root",
            "tpm",
            "--tpm",
            &tpm.spec(),
            "--boot-log",
        ])
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("junk"));
    init(&tpm);

    // Enrollment, a launch, a quote that carries the boot state.
    let mut ca_init = host.w();
    ca_init.args(["ca", "init", "--dir"]).arg(&ca);
    for c in localca_certs() {
        ca_init.arg("--ek-ca").arg(c);
    }
    ok(ca_init.output().unwrap());
    let tpm_ca = ca.join("tpm-ca.crt");
    ok(host
        .w()
        .args(["ca", "enroll", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    host.launch("/bin/true");
    let q = host.quote("bb01", &[]);
    // After a reboot into something else, the key is re-provisioned (bound to that boot) and
    // enrolled again, as an administrator would after an update; the policy then decides.
    let reprovision = |tpm: &Swtpm| {
        ok(host
            .w()
            .args([
                "attest",
                "init",
                "--root",
                "tpm",
                "--tpm",
                &tpm.spec(),
                "--reprovision",
            ])
            .arg("--boot-log")
            .arg(&log_path)
            .output()
            .unwrap());
        ok(host
            .w()
            .args(["ca", "enroll", "--dir"])
            .arg(&ca)
            .output()
            .unwrap());
    };
    assert!(q["boot"]["attest"].is_string(), "{q}");

    // The policy learnt from this known-good host accepts it (positive control) ...
    let (policy, text) = host.learn_policy(&q, "boot-policy.toml");
    assert!(text.contains("secure_boot = true"), "{text}");
    assert!(
        text.contains(&hex::encode(sha2_256(b"vmlinuz-6.1.0-warren"))),
        "{text}"
    );
    let pol = ["--policy", policy.to_str().unwrap()];
    assert_eq!(host.verify(&q, "bb01", &tpm_ca, &pol), accepted());
    // ... and learning from the log file gives the same policy.
    let o = ok(host
        .w()
        .args(["attest", "policy", "learn", "--boot-log"])
        .arg(&log_path)
        .output()
        .unwrap());
    let (boot_part, warren_part) = text.split_once("[warren]\n").unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), boot_part);
    assert!(warren_part.contains("binary = ["), "{text}");

    // A verifier that pins another kernel refuses this one.
    let other_kernel = text.replace(
        &hex::encode(sha2_256(b"vmlinuz-6.1.0-warren")),
        &hex::encode(sha2_256(b"vmlinuz-6.1.0-other")),
    );
    let pfile = host.state.join("other-kernel.toml");
    std::fs::write(&pfile, other_kernel).unwrap();
    let pol2 = ["--policy", pfile.to_str().unwrap()];
    assert_eq!(
        host.verify(&q, "bb01", &tpm_ca, &pol2),
        refused("boot-digest")
    );

    // The log with an event removed no longer explains the PCRs.
    let mut t = q.clone();
    let events = firmware_events(&good_boot());
    let mut fewer = events.clone();
    fewer.remove(2); // a firmware blob
    t["boot"]["event_log"] = hex::encode(bootlog::build(&fewer).0).into();
    assert_eq!(
        host.verify(&t, "bb01", &tpm_ca, &pol),
        refused("boot-replay")
    );
    // A log that claims secure boot on over a digest of "off" is not believed.
    let mut t = q.clone();
    let mut lying = events.clone();
    lying[4].digest = Some(sha2_256(
        &warren_attest::evidence::bootlog::efi_variable_data(
            &bootlog::EFI_GLOBAL_VARIABLE,
            "SecureBoot",
            &[0],
        ),
    ));
    t["boot"]["event_log"] = hex::encode(bootlog::build(&lying).0).into();
    assert_eq!(host.verify(&t, "bb01", &tpm_ca, &pol), refused("boot-log"));
    // PCR values altered in the document do not hash to the signed digest.
    let mut t = q.clone();
    t["boot"]["pcrs"]["4"] = "00".repeat(32).into();
    assert_eq!(
        host.verify(&t, "bb01", &tpm_ca, &pol),
        refused("pcr-digest")
    );
    // A software quote cannot show a boot state at all.
    let soft = Host::new("boot-soft", &agent);
    ok(soft
        .w()
        .args(["attest", "init", "--root", "software"])
        .output()
        .unwrap());
    ok(soft
        .w()
        .args(["ca", "enroll", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    let sq = soft.quote("bb02", &[]);
    assert!(sq.get("boot").is_none(), "{sq}");
    let software_ca = ca.join("software-ca.crt");
    let mut spol = vec!["--allow-software"];
    spol.extend(pol);
    assert_eq!(
        soft.verify(&sq, "bb02", &software_ca, &spol),
        refused("no-boot-state")
    );
    assert_eq!(
        soft.verify(&sq, "bb02", &software_ca, &["--allow-software"]),
        accepted()
    );

    // PCRs extended outside the log (a measurement nobody logged) are caught.
    let scratch = host.state.with_extension("attacker");
    std::fs::create_dir_all(&scratch).unwrap();
    assert!(
        host.agent(&tpm, &scratch, &["diag-pcr-extend", "8", &"44".repeat(32)])
            .0
    );
    // The attestation key, bound to the PCRs it was provisioned with, no longer signs ...
    let o = host
        .w()
        .args(["attest", "quote", "--nonce", "bb03"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pcr-state"), "{err}");
    // ... and a key re-provisioned in this state signs a quote the replay refuses.
    reprovision(&tpm);
    host.launch("/bin/true");
    let q = host.quote("bb03", &[]);
    assert_eq!(
        host.verify(&q, "bb03", &tpm_ca, &pol),
        refused("boot-replay")
    );

    // Reboots into something else, each refused by the learnt policy with its own reason.
    let cases = [
        (
            Boot {
                kernel: b"vmlinuz-evil",
                ..good_boot()
            },
            "boot-digest",
        ),
        (
            Boot {
                secure_boot: 0,
                ..good_boot()
            },
            "secure-boot",
        ),
        (
            Boot {
                dbx: vec![[0xdb; 32], sha2_256(b"grubx64.efi")],
                ..good_boot()
            },
            "dbx",
        ),
    ];
    for (i, (b, reason)) in cases.iter().enumerate() {
        tpm = tpm.reboot();
        let _ = std::fs::remove_file(host.state.join("attest/events.jsonl"));
        boot(&host, &tpm, &log_path, b);
        reprovision(&tpm);
        host.launch("/bin/true");
        let nonce = format!("bc{i:02}");
        let q = host.quote(&nonce, &[]);
        assert_eq!(
            host.verify(&q, &nonce, &tpm_ca, &pol),
            refused(reason),
            "case {i}"
        );
        // Without the boot policy the same quote verifies: what was refused is the boot.
        assert_eq!(
            host.verify(&q, &nonce, &tpm_ca, &[]),
            accepted(),
            "case {i}"
        );
    }

    for d in [&host.state, &soft.state, &ca, &scratch, &log_path, &junk] {
        let _ = std::fs::remove_dir_all(d);
        let _ = std::fs::remove_file(d);
    }
    let _ = std::fs::remove_dir_all(host.state.with_extension("firmware"));
}

#[test]
fn enrollment_across_machines_and_revocation() {
    sweep_stale();
    let agent = agent();
    let tpm = Swtpm::start("pki");
    let host = Host::new("pki", &agent);
    let ca = host.fresh_ca();
    host.init_tpm(&tpm);
    // The CA runs as another "machine": its commands get only its directory and the documents.
    let ca_cmd = || {
        let mut c = warren();
        c.env_remove("WARREN_ATTEST_ROOT").env_remove("WARREN_TPM");
        c
    };
    let mut init = ca_cmd();
    init.args(["ca", "init", "--dir"]).arg(&ca);
    for c in localca_certs() {
        init.arg("--ek-ca").arg(c);
    }
    ok(init.output().unwrap());
    let docs = host.state.with_extension("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let d = |n: &str| docs.join(n);

    // request (host) -> challenge (CA) -> answer (host) -> certificate (CA) -> install (host).
    ok(host
        .w()
        .args(["ca", "request", "--host", "pki-host", "--out"])
        .arg(d("req.json"))
        .output()
        .unwrap());
    let req: Value = serde_json::from_slice(&std::fs::read(d("req.json")).unwrap()).unwrap();
    assert_eq!(req["root"], "tpm");
    ok(ca_cmd()
        .args(["ca", "challenge", "--dir"])
        .arg(&ca)
        .arg("--request")
        .arg(d("req.json"))
        .arg("--out")
        .arg(d("chal.json"))
        .output()
        .unwrap());
    ok(host
        .w()
        .args(["ca", "answer", "--challenge"])
        .arg(d("chal.json"))
        .arg("--out")
        .arg(d("ans.json"))
        .output()
        .unwrap());
    // A wrong answer is refused, and so is any answer once the challenge is used up.
    std::fs::write(
        d("bad.json"),
        format!("{{\"secret\":\"{}\"}}", "00".repeat(32)),
    )
    .unwrap();
    let certify = |answer: &str| {
        ca_cmd()
            .args(["ca", "certify", "--dir"])
            .arg(&ca)
            .arg("--request")
            .arg(d("req.json"))
            .arg("--answer")
            .arg(d(answer))
            .arg("--out")
            .arg(d("ak.crt"))
            .output()
            .unwrap()
    };
    let o = certify("bad.json");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("did not recover"));
    ok(ca_cmd()
        .args(["ca", "challenge", "--dir"])
        .arg(&ca)
        .arg("--request")
        .arg(d("req.json"))
        .arg("--out")
        .arg(d("chal.json"))
        .output()
        .unwrap());
    ok(host
        .w()
        .args(["ca", "answer", "--challenge"])
        .arg(d("chal.json"))
        .arg("--out")
        .arg(d("ans.json"))
        .output()
        .unwrap());
    ok(certify("ans.json"));
    let o = certify("ans.json");
    assert!(!o.status.success(), "a challenge is answered once");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no challenge is pending"));
    ok(host
        .w()
        .args(["ca", "install", "--cert"])
        .arg(d("ak.crt"))
        .output()
        .unwrap());

    // The quote verifies under the TPM CA with its current revocation list ...
    host.launch("/bin/true");
    let tpm_ca = ca.join("tpm-ca.crt");
    let crl = ca.join("tpm-ca.crl");
    let q = host.quote("cc01", &[]);
    let with_crl = ["--crl", crl.to_str().unwrap()];
    assert_eq!(host.verify(&q, "cc01", &tpm_ca, &with_crl), accepted());
    // ... not with another CA's list ...
    let other = ca.join("software-ca.crl");
    assert_eq!(
        host.verify(&q, "cc01", &tpm_ca, &["--crl", other.to_str().unwrap()]),
        refused("crl")
    );
    // ... and not once the CA has revoked the key.
    ok(ca_cmd()
        .args(["ca", "revoke", "--dir"])
        .arg(&ca)
        .arg("--cert")
        .arg(d("ak.crt"))
        .output()
        .unwrap());
    assert_eq!(
        host.verify(&q, "cc01", &tpm_ca, &with_crl),
        refused("revoked")
    );
    // A verifier without the list still accepts: revocation reaches those who fetch the CRL.
    assert_eq!(host.verify(&q, "cc01", &tpm_ca, &[]), accepted());

    drop(tpm);
    for p in [&host.state, &ca, &docs] {
        let _ = std::fs::remove_dir_all(p);
    }
}

/// The forged-record attack of a root on the host: read `attest/ak.auth`, append a launch
/// record of its choosing to the event log, and extend the anchor with its digest through the
/// agent, as tpm2-tools would. Returns whether the TPM accepted the extension, with the
/// agent's answer.
fn forge_record(host: &Host, tpm: &Swtpm, command: &str) -> (bool, Value) {
    use warren_attest::evidence::record::{Record, content_digest};
    let dir = host.state.join("attest");
    let auth = std::fs::read_to_string(dir.join("ak.auth")).unwrap();
    let log = dir.join("events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Record = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut forged = last.clone();
    forged.recnum += 1;
    forged.content.as_mut().unwrap().command = vec![command.to_owned()];
    let digest = content_digest(forged.content.as_ref().unwrap());
    forged.digests[0].digest = hex::encode(digest);
    let (done, v) = host.agent(
        tpm,
        &dir,
        &["diag-extend-with", auth.trim(), &hex::encode(digest)],
    );
    if done {
        let mut line = serde_json::to_string(&forged).unwrap();
        line.push('\n');
        std::fs::write(&log, text + &line).unwrap();
        let _ = std::fs::remove_file(dir.join("events.count"));
    }
    (done, v)
}

/// Enrolls the host's current attestation key with the CA in `ca` (both sides on one machine).
fn enroll(host: &Host, ca: &Path) {
    ok(host
        .w()
        .args(["ca", "enroll", "--dir"])
        .arg(ca)
        .output()
        .unwrap());
}

/// The attestation key and the anchor work only in the PCR state the key was provisioned in:
/// root on a host that booted something else can neither quote nor extend the anchor, even
/// with `ak.auth` in hand; with the binding off (a key made the old way) the same attack
/// works and the verifier refuses the key (`ak-unbound`).
#[test]
fn the_attestation_key_works_only_in_the_measured_state() {
    sweep_stale();
    let agent = agent();
    let mut tpm = Swtpm::start("bound");
    let host = Host::new("bound", &agent);
    let ca = host.fresh_ca();
    std::fs::create_dir_all(&host.state).unwrap();
    let log_path = host.state.with_extension("bios_measurements");
    let init = |tpm: &Swtpm, extra: &[&str]| {
        host.w()
            .args(["attest", "init", "--root", "tpm", "--tpm", &tpm.spec()])
            .arg("--boot-log")
            .arg(&log_path)
            .args(extra)
            .output()
            .unwrap()
    };

    // The known-good boot; the key is provisioned and enrolled in it.
    boot(&host, &tpm, &log_path, &good_boot());
    ok(init(&tpm, &[]));
    let tpm_ca = host.ca_and_enroll(&ca);
    host.launch("/bin/true");
    let q = host.quote("dd01", &[]);
    let (policy, _) = host.learn_policy(&q, "policy.toml");
    let pol = ["--policy", policy.to_str().unwrap()];
    assert_eq!(host.verify(&q, "dd01", &tpm_ca, &pol), accepted());
    // The key has no password path and a PolicyPCR policy over the quoted state.
    let ak = hex::decode(q["ak_public"].as_str().unwrap()).unwrap();
    let key = warren_attest::tpm_wire::parse_ak_public(&ak).unwrap();
    assert_eq!(key.attributes & warren_attest::tpm_wire::USER_WITH_AUTH, 0);
    assert_eq!(key.auth_policy.len(), 32);

    // Root on the measured host itself can still forge a record with ak.auth: the PCRs are
    // the measured ones (what remains, docs/attestation.md). This is also the probe's
    // positive control: the attack below is the same, only the boot differs.
    let (done, v) = forge_record(&host, &tpm, "/bin/forged-on-the-measured-host");
    assert!(done, "{v}");
    let q = host.quote("dd02", &[]);
    assert_eq!(host.verify(&q, "dd02", &tpm_ca, &pol), accepted());
    assert_eq!(
        q["event_log"].as_array().unwrap().last().unwrap()["content"]["command"][0],
        "/bin/forged-on-the-measured-host"
    );

    // The host reboots into another kernel. The key is still in the TPM, ak.auth still on
    // disk, and neither helps: no launch (its measurement cannot extend the anchor), no
    // quote, and no forged record.
    tpm = tpm.reboot();
    let _ = std::fs::remove_file(host.state.join("attest/events.jsonl"));
    let evil = Boot {
        kernel: b"vmlinuz-evil",
        ..good_boot()
    };
    boot(&host, &tpm, &log_path, &evil);
    ok(init(&tpm, &[]));
    let o = host
        .w()
        .args(["run", "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("pcr-state"), "{err}");
    let o = host
        .w()
        .args(["attest", "quote", "--nonce", "dd03"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pcr-state"), "{err}");
    // The forger needs a log line to copy: the good quote's first record.
    let first = serde_json::to_string(&q["event_log"][0]).unwrap() + "\n";
    std::fs::write(host.state.join("attest/events.jsonl"), &first).unwrap();
    let (done, v) = forge_record(&host, &tpm, "/bin/forged-after-another-boot");
    assert!(!done, "{v}");
    assert!(v["error"].as_str().unwrap().contains("pcr-state"), "{v}");

    // Positive control: the same host with the binding off (a key made with the standard
    // template, userWithAuth, no policy), enrolled: the same attack now works, and only the
    // verifier's binding check stands in the way.
    let scratch = host.state.with_extension("attacker");
    std::fs::create_dir_all(&scratch).unwrap();
    let (made, v) = host.agent(
        &tpm,
        &host.state.join("attest"),
        &["diag-provision-unbound"],
    );
    assert!(made, "{v}");
    std::fs::remove_file(host.state.join("attest/events.jsonl")).unwrap();
    enroll(&host, &ca);
    host.launch("/bin/true");
    let (done, v) = forge_record(&host, &tpm, "/bin/forged-with-an-unbound-key");
    assert!(done, "{v}");
    let q = host.quote("dd04", &[]);
    assert_eq!(
        q["event_log"].as_array().unwrap().last().unwrap()["content"]["command"][0],
        "/bin/forged-with-an-unbound-key"
    );
    assert_eq!(host.verify(&q, "dd04", &tpm_ca, &[]), refused("ak-unbound"));

    // The re-enrolment path of a legitimate update: re-provision (a new key bound to this
    // boot), enroll it; the host quotes again, and the verifier's boot policy decides (here:
    // this kernel is not the one it allows).
    ok(init(&tpm, &["--reprovision"]));
    enroll(&host, &ca);
    host.launch("/bin/true");
    let q = host.quote("dd05", &[]);
    assert_eq!(host.verify(&q, "dd05", &tpm_ca, &[]), accepted());
    assert_eq!(
        host.verify(&q, "dd05", &tpm_ca, &pol),
        refused("boot-digest")
    );
    assert!(
        host.state
            .join("attest/events.jsonl.before-reprovision")
            .exists()
    );

    drop(tpm);
    for d in [&host.state, &ca, &scratch, &log_path] {
        let _ = std::fs::remove_dir_all(d);
        let _ = std::fs::remove_file(d);
    }
    let _ = std::fs::remove_dir_all(host.state.with_extension("firmware"));
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2_256(&std::fs::read(p).unwrap()))
}

/// Warren measures itself into PCR 15 (its binary, its agent, its configuration) and every
/// quote shows it: verifiers replay the records, a `[warren]` policy pins the binary, and a
/// modified Warren neither uses the key provisioned for the real one nor passes the policy
/// once given a key of its own.
#[test]
fn warren_measures_itself_into_pcr_15() {
    sweep_stale();
    let agent = agent();
    let mut tpm = Swtpm::start("self");
    let host = Host::new("self", &agent);
    let ca = host.fresh_ca();
    std::fs::create_dir_all(&host.state).unwrap();
    let log_path = host.state.with_extension("bios_measurements");
    boot(&host, &tpm, &log_path, &good_boot());
    let scratch = host.state.with_extension("attacker");
    std::fs::create_dir_all(&scratch).unwrap();
    let pcr15 =
        |tpm: &Swtpm| host.agent(tpm, &scratch, &["diag-pcr-read", "15"]).1["value"].clone();
    assert_eq!(pcr15(&tpm), "00".repeat(32));

    // `attest init` is the first use of the TPM root: Warren measures itself, then the key
    // is made, bound to PCR 15 as measured.
    let genuine = PathBuf::from(env!("CARGO_BIN_EXE_warren"));
    let init = |bin: &Path, tpm: &Swtpm, extra: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--state-dir")
            .arg(&host.state)
            .env_remove("WARREN_ATTEST_ROOT")
            .env_remove("WARREN_TPM")
            .env("WARREN_TPM_AGENT", &agent)
            .args([
                "attest",
                "init",
                "--root",
                "tpm",
                "--tpm",
                &tpm.spec(),
                "--boot-log",
            ])
            .arg(&log_path)
            .args(extra);
        ok(c.output().unwrap());
    };
    init(&genuine, &tpm, &[]);
    let records: Vec<Value> = std::fs::read_to_string(host.state.join("attest/self.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| r["content"]["what"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["binary", "agent", "config"]);
    assert_eq!(records[0]["digests"][0]["digest"], sha256_file(&genuine));
    assert_eq!(records[1]["digests"][0]["digest"], sha256_file(&agent));
    // The PCR is the replay of exactly those digests (the TPM's extend, by hand).
    let mut expect = [0u8; 32];
    for r in &records {
        let d = hex::decode(r["digests"][0]["digest"].as_str().unwrap()).unwrap();
        expect = sha2_256(&[expect.as_slice(), &d].concat());
    }
    let measured = pcr15(&tpm);
    assert_eq!(measured, hex::encode(expect));
    // A second Warren process (a daemon start, a launch) does not measure again.
    init(&genuine, &tpm, &[]);
    assert_eq!(pcr15(&tpm), measured);

    let tpm_ca = host.ca_and_enroll(&ca);
    host.launch("/bin/true");
    let q = host.quote("ee01", &[]);
    assert_eq!(q["boot"]["pcrs"]["15"], measured);
    assert_eq!(q["boot"]["warren_log"].as_array().unwrap().len(), 3);
    let (policy, text) = host.learn_policy(&q, "policy.toml");
    assert!(
        text.contains(&format!("binary = [\"{}\"]", sha256_file(&genuine))),
        "{text}"
    );
    let pol = ["--policy", policy.to_str().unwrap()];
    assert_eq!(host.verify(&q, "ee01", &tpm_ca, &pol), accepted());
    // A policy that pins another Warren refuses this one.
    let other = host.state.join("other.toml");
    std::fs::write(
        &other,
        text.replace(&sha256_file(&genuine), &"ab".repeat(32)),
    )
    .unwrap();
    assert_eq!(
        host.verify(&q, "ee01", &tpm_ca, &["--policy", other.to_str().unwrap()]),
        refused("warren-digest")
    );
    // Records removed, altered or with another configuration do not explain PCR 15.
    let mut t = q.clone();
    t["boot"]["warren_log"].as_array_mut().unwrap().remove(1);
    assert_eq!(
        host.verify(&t, "ee01", &tpm_ca, &[]),
        refused("self-replay")
    );
    let mut t = q.clone();
    t["boot"]["warren_log"][0]["digests"][0]["digest"] = "cd".repeat(32).into();
    assert_eq!(
        host.verify(&t, "ee01", &tpm_ca, &[]),
        refused("self-replay")
    );
    let mut t = q.clone();
    t["boot"]["warren_log"][2]["content"]["config"] = "{\"root\":\"software\"}".into();
    assert_eq!(host.verify(&t, "ee01", &tpm_ca, &[]), refused("self-log"));
    let mut t = q.clone();
    t["boot"].as_object_mut().unwrap().remove("warren_log");
    assert_eq!(
        host.verify(&t, "ee01", &tpm_ca, &[]),
        refused("self-replay")
    );

    // Anything extended into PCR 15 after Warren (root with tpm2_pcrextend) leaves the key
    // unusable until the next reboot: refused, never a quote that hides it.
    assert!(
        host.agent(&tpm, &scratch, &["diag-pcr-extend", "15", &"55".repeat(32)])
            .0
    );
    let o = host
        .w()
        .args(["attest", "quote", "--nonce", "ee02"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("pcr-state"), "{err}");

    // A modified Warren binary, started first after a reboot: it measures itself, so PCR 15
    // is not the state the key is bound to, and neither it nor the genuine Warren (started
    // after it) can use the key.
    tpm = tpm.reboot();
    boot(&host, &tpm, &log_path, &good_boot());
    let modified = host.state.with_extension("warren-modified");
    let mut bytes = std::fs::read(&genuine).unwrap();
    bytes.extend_from_slice(b"\0modified");
    std::fs::write(&modified, &bytes).unwrap();
    std::fs::set_permissions(
        &modified,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    init(&modified, &tpm, &[]);
    assert_ne!(pcr15(&tpm), measured);
    let o = host
        .w()
        .args(["run", "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("pcr-state"), "{err}");
    // Given a key of its own (re-provisioned, enrolled), its quotes show it: the policy that
    // pins the genuine binary refuses them.
    init(&modified, &tpm, &["--reprovision"]);
    enroll(&host, &ca);
    host.launch("/bin/true");
    let q = host.quote("ee03", &[]);
    assert_eq!(
        host.verify(&q, "ee03", &tpm_ca, &pol),
        refused("warren-digest")
    );
    assert_eq!(host.verify(&q, "ee03", &tpm_ca, &[]), accepted());
    assert_eq!(
        q["boot"]["warren_log"][0]["digests"][0]["digest"],
        hex::encode(sha2_256(&bytes))
    );

    // `warren daemon` measures Warren at kernel start: after a reboot, the genuine kernel
    // starting first puts the genuine measurement back into PCR 15 before it says it is ready.
    tpm = tpm.reboot();
    boot(&host, &tpm, &log_path, &good_boot());
    assert_eq!(pcr15(&tpm), "00".repeat(32));
    let mut daemon = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(&genuine)
        .arg("--state-dir")
        .arg(&host.state)
        .args(["daemon", "--attest-root", "tpm", "--tpm", &tpm.spec()])
        .env_remove("WARREN_ATTEST_ROOT")
        .env_remove("WARREN_TPM")
        .env("WARREN_TPM_AGENT", &agent)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(daemon.stderr.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("kernel ready") => break,
                Some(Ok(_)) => continue,
                _ => panic!("the kernel did not come up"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
    }
    assert_eq!(pcr15(&tpm), measured);
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    drop(tpm);
    for d in [&host.state, &ca, &scratch, &log_path, &modified] {
        let _ = std::fs::remove_dir_all(d);
        let _ = std::fs::remove_file(d);
    }
    let _ = std::fs::remove_dir_all(host.state.with_extension("firmware"));
}

/// One `ima-ng` entry of the binary measurement list, built from the kernel's documented
/// layout (Documentation/security/IMA-templates.rst): u32 PCR, SHA-1 template digest, u32
/// len, "ima-ng", u32 len, template data = (u32 len, "sha256:\0" digest) (u32 len, path NUL).
/// Returns the entry and what it extends PCR 10's SHA-256 bank with.
fn ima_entry(digest: &str, path: &str) -> (Vec<u8>, [u8; 32]) {
    let d = hex::decode(digest).unwrap();
    let mut data = Vec::new();
    data.extend_from_slice(&(8 + d.len() as u32).to_le_bytes());
    data.extend_from_slice(b"sha256:\0");
    data.extend_from_slice(&d);
    data.extend_from_slice(&(path.len() as u32 + 1).to_le_bytes());
    data.extend_from_slice(path.as_bytes());
    data.push(0);
    let sha1 = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(&data)?;
            c.wait_with_output()
        })
        .unwrap();
    let sha1 = hex::decode(&String::from_utf8_lossy(&sha1.stdout)[..40]).unwrap();
    let mut e = 10u32.to_le_bytes().to_vec();
    e.extend_from_slice(&sha1);
    e.extend_from_slice(&6u32.to_le_bytes());
    e.extend_from_slice(b"ima-ng");
    e.extend_from_slice(&(data.len() as u32).to_le_bytes());
    e.extend_from_slice(&data);
    (e, sha2_256(&data))
}

/// IMA (PCR 10): the measurement list travels in every quote, is replayed against the quoted
/// PCR 10, and an `[ima]` policy can require that the Warren binary of PCR 15 was measured by
/// IMA too.
#[test]
fn ima_list_replayed_against_pcr_10() {
    sweep_stale();
    let agent = agent();
    let mut tpm = Swtpm::start("ima");
    let host = Host::new("ima", &agent);
    let ca = host.fresh_ca();
    std::fs::create_dir_all(&host.state).unwrap();
    let log_path = host.state.with_extension("bios_measurements");
    let ima_path = host.state.with_extension("ima");
    let scratch = host.state.with_extension("kernel");
    std::fs::create_dir_all(&scratch).unwrap();
    let genuine = PathBuf::from(env!("CARGO_BIN_EXE_warren"));
    let warren_digest = sha256_file(&genuine);
    // The kernel's IMA: appends an entry and extends PCR 10 with it.
    let measure = |tpm: &Swtpm, list: &mut Vec<u8>, digest: &str, path: &str| {
        let (e, ext) = ima_entry(digest, path);
        list.extend_from_slice(&e);
        std::fs::write(&ima_path, &*list).unwrap();
        assert!(
            host.agent(tpm, &scratch, &["diag-pcr-extend", "10", &hex::encode(ext)])
                .0
        );
    };
    let boot_with = |tpm: &Swtpm, files: &[(&str, &str)]| {
        boot(&host, tpm, &log_path, &good_boot());
        let mut list = Vec::new();
        for (d, p) in files {
            measure(tpm, &mut list, d, p);
        }
        list
    };
    let mut list = boot_with(
        &tpm,
        &[
            (&"0a".repeat(32), "boot_aggregate"),
            (&warren_digest, "/usr/local/bin/warren"),
        ],
    );
    let init = |tpm: &Swtpm| {
        let mut init = host.w();
        init.args([
            "attest",
            "init",
            "--root",
            "tpm",
            "--tpm",
            &tpm.spec(),
            "--boot-log",
        ])
        .arg(&log_path)
        .arg("--ima-log")
        .arg(&ima_path);
        ok(init.output().unwrap());
    };
    init(&tpm);
    let tpm_ca = host.ca_and_enroll(&ca);
    host.launch("/bin/true");
    // IMA goes on measuring after the quote: the verifier replays the prefix.
    let q = host.quote("ff01", &[]);
    measure(&tpm, &mut list, &"0b".repeat(32), "/usr/bin/later");
    assert!(q["boot"]["pcrs"]["10"].is_string(), "{q}");
    let policy = host.state.join("ima.toml");
    std::fs::write(&policy, "[ima]\nwarren_binary = true\n").unwrap();
    let pol = ["--policy", policy.to_str().unwrap()];
    assert_eq!(host.verify(&q, "ff01", &tpm_ca, &pol), accepted());
    // A list with an entry removed does not replay to PCR 10.
    let (first, _) = ima_entry(&"0a".repeat(32), "boot_aggregate");
    let mut t = q.clone();
    t["boot"]["ima_log"] = hex::encode(&first).into();
    let mut t2 = t.clone();
    t2["boot"]["ima_log"] = hex::encode(&list[first.len()..]).into();
    assert_eq!(
        host.verify(&t2, "ff01", &tpm_ca, &[]),
        refused("ima-replay")
    );
    // A file digest altered in the list changes its template hash: refused.
    let mut bytes = hex::decode(q["boot"]["ima_log"].as_str().unwrap()).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 1;
    t["boot"]["ima_log"] = hex::encode(&bytes).into();
    let (acc, reason) = host.verify(&t, "ff01", &tpm_ca, &[]);
    assert!(
        !acc && (reason == "ima-log" || reason == "ima-replay"),
        "{reason}"
    );
    // Required digests.
    std::fs::write(
        &policy,
        format!("[ima]\nrequired = [\"{}\"]\n", "0c".repeat(32)),
    )
    .unwrap();
    assert_eq!(
        host.verify(&q, "ff01", &tpm_ca, &pol),
        refused("ima-policy")
    );

    // After a reboot, a host whose IMA did not see the Warren binary: the list replays (the
    // key is not bound to PCR 10, so it still signs), but the rule refuses it.
    tpm = tpm.reboot();
    let _ = std::fs::remove_file(host.state.join("attest/events.jsonl"));
    boot_with(
        &tpm,
        &[
            (&"0a".repeat(32), "boot_aggregate"),
            (&"0d".repeat(32), "/bin/sh"),
        ],
    );
    init(&tpm);
    host.launch("/bin/true");
    let q = host.quote("ff02", &[]);
    std::fs::write(&policy, "[ima]\nwarren_binary = true\n").unwrap();
    assert_eq!(host.verify(&q, "ff02", &tpm_ca, &[]), accepted());
    assert_eq!(
        host.verify(&q, "ff02", &tpm_ca, &pol),
        refused("ima-policy")
    );

    drop(tpm);
    for d in [&host.state, &ca, &scratch, &log_path, &ima_path] {
        let _ = std::fs::remove_dir_all(d);
        let _ = std::fs::remove_file(d);
    }
    let _ = std::fs::remove_dir_all(host.state.with_extension("firmware"));
}

/// The event log lives in the data directory and survives a reboot; the TPM's anchor does not
/// (`CLEAR_STCLEAR`). The first Warren to extend or quote after a TPM reset moves the old log
/// aside (`events.jsonl.before-reset.N`) and starts a new one, so quotes keep verifying.
/// Positive control: before the reset the log holds a record and the anchor is written; after
/// it the anchor reads unwritten (zero) while the old log is still in place.
#[test]
fn the_event_log_starts_anew_after_a_tpm_reset() {
    sweep_stale();
    let agent = agent();
    let mut tpm = Swtpm::start("reset");
    let host = Host::new("reset", &agent);
    let ca = host.fresh_ca();
    std::fs::create_dir_all(&host.state).unwrap();
    // `attest init` again after each reboot only points the state directory at the restarted
    // swtpm's new port (the key and the anchor stay; the log is not touched).
    let init = |tpm: &Swtpm| {
        ok(host
            .w()
            .args(["attest", "init", "--root", "tpm", "--tpm", &tpm.spec()])
            .output()
            .unwrap())
    };
    init(&tpm);
    let tpm_ca = host.ca_and_enroll(&ca);
    let attest = host.state.join("attest");
    let records = |file: &str| -> Vec<Value> {
        std::fs::read_to_string(attest.join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let anchor = |tpm: &Swtpm| -> String {
        let (done, v) = host.agent(tpm, &attest, &["read"]);
        assert!(done, "{v}");
        v["value"].as_str().unwrap().to_owned()
    };

    let first = host.launch("/bin/true");
    let q = host.quote("ab01", &[]);
    assert_eq!(host.verify(&q, "ab01", &tpm_ca, &[]), accepted());
    // This swtpm host has no measured boot: `policy learn` still writes the [warren] table,
    // and a verifier holding it accepts the quote.
    assert!(q["boot"]["event_log"].is_null(), "{}", q["boot"]);
    let (learned, text) = host.learn_policy(&q, "learned.toml");
    assert!(
        text.contains("[warren]") && !text.contains("[boot]\n"),
        "{text}"
    );
    let pol = ["--policy", learned.to_str().unwrap()];
    assert_eq!(host.verify(&q, "ab01", &tpm_ca, &pol), accepted());
    assert_eq!(records("events.jsonl").len(), 1);
    assert_ne!(anchor(&tpm), "00".repeat(32));

    // A reboot: the anchor is unwritten again, the log still holds the old record.
    tpm = tpm.reboot();
    init(&tpm);
    assert_eq!(anchor(&tpm), "00".repeat(32));
    assert_eq!(records("events.jsonl").len(), 1);
    let second = host.launch("/bin/true");
    let log = records("events.jsonl");
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["recnum"], 0);
    assert_eq!(log[0]["content"]["name"], second.as_str());
    let old = records("events.jsonl.before-reset.1");
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0]["content"]["name"], first.as_str());
    let q = host.quote("ab02", &[]);
    assert_eq!(host.verify(&q, "ab02", &tpm_ca, &[]), accepted());
    let q = host.quote("ab03", &["--env", &second]);
    assert_eq!(host.verify(&q, "ab03", &tpm_ca, &[]), accepted());

    // Another reboot, and a quote before any launch: the old log goes aside, and there is
    // nothing to quote yet (the TPM cannot certify an anchor that was never written), which
    // the quote says instead of failing on the replay.
    tpm = tpm.reboot();
    init(&tpm);
    let o = host
        .w()
        .args(["attest", "quote", "--nonce", "ab04"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(err.contains("no record to quote"), "{err}");
    assert_eq!(records("events.jsonl.before-reset.2").len(), 1);
    assert!(!attest.join("events.jsonl").exists());
    // The launch after it starts the log at 0 again.
    host.launch("/bin/true");
    assert_eq!(records("events.jsonl")[0]["recnum"], 0);
    let q = host.quote("ab05", &[]);
    assert_eq!(host.verify(&q, "ab05", &tpm_ca, &[]), accepted());

    drop(tpm);
    let _ = std::fs::remove_dir_all(&host.state);
    let _ = std::fs::remove_dir_all(&ca);
}

/// Under the TPM root, as under the software one (attest.rs): a program's `Attest` quote,
/// answered by the kernel, redacts every other environment's record (another environment's
/// `-e SECRET_X=...` is nowhere in it) and keeps its own whole; it verifies against the TPM CA.
/// The host's quote carries the secret (positive control) and verifies too; a redacted record
/// with another digest fails the replay; a redacted subject is refused (`redacted`).
#[test]
fn an_environment_quote_is_redacted_under_the_tpm_root() {
    sweep_stale();
    common::workspace_bin("warren-client", "warren-msg");
    let agent = agent();
    let tpm = Swtpm::start("redact");
    let host = Host::new("redact", &agent);
    let ca = host.fresh_ca();
    host.init_tpm(&tpm);
    let tpm_ca = host.ca_and_enroll(&ca);
    let klog = host.state.with_extension("kernel.log");
    let mut daemon = host
        .w()
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&klog).unwrap())
        .spawn()
        .unwrap();
    let stop = |daemon: &mut std::process::Child| {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(daemon.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let _ = daemon.wait();
    };
    let sock = host.state.join("kernel.sock");
    let answers = || {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .is_ok_and(|fd| {
            SocketAddrUnix::new(&sock).is_ok_and(|a| rustix::net::connect(&fd, &a).is_ok())
        })
    };
    let mut up = false;
    for _ in 0..400 {
        if answers() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    if !up {
        stop(&mut daemon);
        panic!(
            "the kernel did not start: {}",
            std::fs::read_to_string(&klog).unwrap_or_default()
        );
    }

    let secret = format!("hunter2-{}", unique("secret"));
    let vault = unique("vault");
    let run = |name: &str, env: &str, cmd: &str| {
        host.w()
            .args(["run", "--name", name, "-e", env, "--rootfs"])
            .arg(busybox_root())
            .args(["--", "/bin/sh", "-c", cmd])
            .output()
            .unwrap()
    };
    let o = run(&vault, &format!("SECRET_X={secret}"), "true");
    let snoop = unique("snoop");
    let mine = format!("mine-{}", unique("value"));
    let o2 = run(
        &snoop,
        &format!("MINE={mine}"),
        "warren-msg attest --nonce c0ffee",
    );
    stop(&mut daemon);
    ok(o);
    let text = String::from_utf8_lossy(&ok(o2).stdout).into_owned();
    let q: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(q["root"], "tpm");
    assert!(!text.contains(&secret), "the secret leaked: {text}");
    assert!(!text.contains(&vault), "{text}");
    assert!(text.contains(&mine), "its own record lost its env: {text}");
    let log = q["event_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["content_type"], "warren_redacted");
    assert!(log[0].get("content").is_none(), "{}", log[0]);
    assert_eq!(log[1]["content"]["name"], snoop.as_str());
    assert_eq!(host.verify(&q, "c0ffee", &tpm_ca, &[]), accepted());

    let h = host.quote("c0ffee", &[]);
    assert!(h.to_string().contains(&secret), "{h}");
    assert_eq!(h["event_log"][0]["digests"], log[0]["digests"]);
    assert_eq!(host.verify(&h, "c0ffee", &tpm_ca, &[]), accepted());

    let mut t = q.clone();
    t["event_log"][0]["digests"][0]["digest"] = "00".repeat(32).into();
    assert_eq!(
        host.verify(&t, "c0ffee", &tpm_ca, &[]),
        refused("log-replay")
    );
    let mut t = q.clone();
    t["event_log"][1] = serde_json::json!({"recnum": 1, "nv_index": log[1]["nv_index"],
        "digests": log[1]["digests"], "content_type": "warren_redacted"});
    assert_eq!(host.verify(&t, "c0ffee", &tpm_ca, &[]), refused("redacted"));
    drop(tpm);
    for p in [&host.state, &ca, &klog] {
        let _ = std::fs::remove_dir_all(p);
        let _ = std::fs::remove_file(p);
    }
}
