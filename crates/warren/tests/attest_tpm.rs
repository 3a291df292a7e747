//! The TPM root of trust against a swtpm this test starts itself (loopback TCP, its own state
//! directory, an EK certificate from `swtpm_setup --create-ek-cert`), through the real `warren`
//! binary and the `warren-tpm` agent: enrollment with the Privacy CA (EK chain,
//! MakeCredential/ActivateCredential), measured launches in a TPM quote that verifies, and the
//! attacks, each refused for its own reason. One test function, because the swtpm must outlive
//! every step and is stopped (by its pid) when the function ends.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use common::{busybox_root, unique, warren};

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The `warren-tpm` agent: `WARREN_TPM_AGENT`, else built (dynamically linked) into
/// `target/tpm` as scripts/test.sh does.
fn agent() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_TPM_AGENT") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = root.join("target/tpm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "--manifest-path"])
        .arg(root.join("crates/warren-tpm/Cargo.toml"))
        .env("RUSTFLAGS", "-C target-feature=-crt-static")
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(st.success(), "cannot build the warren-tpm agent");
    target.join("x86_64-unknown-linux-gnu/debug/warren-tpm")
}

/// A swtpm on loopback with an EK certificate, killed when dropped.
struct Swtpm {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// Two free loopback ports in a row: tss's swtpm TCTI finds the control port at port + 1.
fn free_ports() -> (u16, u16) {
    loop {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (port, port + 1);
        }
    }
}

impl Swtpm {
    fn start() -> Swtpm {
        let dir = PathBuf::from(format!("/run/warren-attest-{}-swtpm", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        ok(Command::new("swtpm_setup")
            .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpmstate"])
            .arg(dir.join("state"))
            .stdout(Stdio::null())
            .output()
            .expect("swtpm_setup (scripts/setup.sh installs swtpm-tools)"));
        let (port, ctrl) = free_ports();
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.join("state").display()))
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm");
        let tpm = Swtpm { child, dir, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return tpm;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("swtpm did not listen on {port}");
    }

    fn spec(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The certificates of swtpm-localca, which issued the EK certificate.
fn localca_certs() -> Vec<PathBuf> {
    let conf = std::fs::read_to_string("/etc/swtpm-localca.conf").unwrap_or_default();
    let dir = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("statedir"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .unwrap_or_else(|| "/var/lib/swtpm-localca".into());
    let dir = PathBuf::from(dir);
    vec![
        dir.join("issuercert.pem"),
        dir.join("swtpm-localca-rootca-cert.pem"),
    ]
}

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
    let tpm = Swtpm::start();
    let host = Host::new("tpm", &agent);
    let ca = host.state.with_extension("ca");
    let _ = std::fs::remove_dir_all(&ca);

    // The root of trust: the TPM, provisioned (attestation key, anchor); doctor says so.
    ok(host
        .w()
        .args(["attest", "init", "--root", "tpm", "--tpm", &tpm.spec()])
        .output()
        .unwrap());
    let o = ok(host.w().args(["doctor", "--json"]).output().unwrap());
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["attestation"]["root"], "tpm");

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

fn sha2_256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
