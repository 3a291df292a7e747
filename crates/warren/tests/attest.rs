//! Measured launch and attestation with the software root, end to end through the real binary:
//! launches append records, `warren attest quote` signs them, `warren attest verify` accepts the
//! quote, and every tampering is refused with its own reason. The suite uses state directories
//! of its own (`/run/warren-attest-<pid>-...`), so it runs alongside any other suite.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use common::{busybox_root, unique, warren};

fn sweep_stale() {
    common::sweep_stale_runs("warren-attest-");
}

/// A state directory of this suite (`/run/warren-attest-<pid>-<tag>`); later runs sweep it.
fn state_dir(tag: &str) -> PathBuf {
    let p = PathBuf::from(format!("/run/warren-attest-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn w(state: &Path) -> Command {
    let mut c = warren();
    c.arg("--state-dir").arg(state);
    c.env_remove("WARREN_ATTEST_ROOT");
    c.env_remove("WARREN_TPM");
    c
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct Fixture {
    state: PathBuf,
    ca: PathBuf,
    quote: Value,
    nonce: &'static str,
    web: String,
}

/// One host: a CA, the host enrolled with it, two launches, and a quote.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        sweep_stale();
        let state = state_dir("host");
        let ca = state.join("ca");
        ok(w(&state)
            .args(["ca", "init", "--dir"])
            .arg(&ca)
            .output()
            .unwrap());
        ok(w(&state)
            .args(["ca", "enroll", "--host", "test-host", "--dir"])
            .arg(&ca)
            .output()
            .unwrap());
        let web = unique("web");
        for (name, cmd) in [(&web, "/bin/true"), (&unique("db"), "/bin/echo")] {
            ok(w(&state)
                .args(["run", "--name", name, "--rootfs"])
                .arg(busybox_root())
                .args(["--", cmd])
                .output()
                .unwrap());
        }
        let nonce = "5eed0001";
        let o = ok(w(&state)
            .args(["attest", "quote", "--nonce", nonce])
            .output()
            .unwrap());
        let quote = serde_json::from_slice(&o.stdout).unwrap();
        Fixture {
            state,
            ca,
            quote,
            nonce,
            web,
        }
    })
}

/// Verifies `quote` and returns `(accepted, reason code)`.
fn verify_with(quote: &Value, nonce: &str, ca_cert: &Path, extra: &[&str]) -> (bool, String) {
    let f = fixture();
    let file = f.state.join(format!("{}.json", unique("q")));
    std::fs::write(&file, serde_json::to_vec(quote).unwrap()).unwrap();
    let o = w(&f.state)
        .args(["attest", "verify", "--json", "--quote"])
        .arg(&file)
        .args(["--nonce", nonce, "--ca"])
        .arg(ca_cert)
        .args(extra)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "verify printed no JSON: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let accepted = v["accepted"].as_bool().unwrap();
    assert_eq!(o.status.code(), Some(if accepted { 0 } else { 1 }));
    (accepted, v["reason"].as_str().unwrap_or("").to_owned())
}

fn software_ca() -> PathBuf {
    fixture().ca.join("software-ca.crt")
}

fn verify(quote: &Value) -> (bool, String) {
    verify_with(
        quote,
        fixture().nonce,
        &software_ca(),
        &["--allow-software"],
    )
}

fn rejected(quote: &Value, reason: &str) {
    assert_eq!(verify(quote), (false, reason.to_owned()));
}

#[test]
fn a_software_quote_over_measured_launches_verifies() {
    let f = fixture();
    assert_eq!(f.quote["root"], "software");
    let log = f.quote["event_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["content_type"], "warren_launch");
    assert_eq!(log[0]["content"]["name"], f.web.as_str());
    assert_eq!(log[0]["content"]["command"][0], "/bin/true");
    assert!(
        log[0]["content"]["image"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    assert_eq!(verify(&f.quote), (true, String::new()));
}

#[test]
fn the_log_is_the_one_on_disk_and_records_the_configuration() {
    let f = fixture();
    let o = ok(w(&f.state).args(["attest", "log"]).output().unwrap());
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2);
    let c = &lines[0]["content"];
    assert_eq!(c["config"]["pids"], 1024);
    assert_eq!(c["config"]["no_new_privs"], true);
    assert!(
        c["config"]["seccomp_profile"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(c["uid_base"].as_u64().unwrap() >= 1_000_000_000);
    let key = f.state.join("attest/software.key");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(key).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn a_verifier_that_requires_a_tpm_refuses_a_software_quote() {
    let f = fixture();
    // Without opting in.
    assert_eq!(
        verify_with(&f.quote, f.nonce, &software_ca(), &[]),
        (false, "software-root".into())
    );
    // Opting in but trusting only the TPM issuing CA: the software key's certificate does not
    // chain to it.
    assert_eq!(
        verify_with(
            &f.quote,
            f.nonce,
            &f.ca.join("tpm-ca.crt"),
            &["--allow-software"]
        ),
        (false, "chain".into())
    );
    // Claiming to be a TPM quote does not help: the certificate says software.
    let mut q = f.quote.clone();
    q["root"] = "tpm".into();
    assert_eq!(
        verify_with(&q, f.nonce, &software_ca(), &[]),
        (false, "root-mismatch".into())
    );
}

#[test]
fn a_replayed_quote_is_refused_for_another_nonce() {
    let f = fixture();
    assert_eq!(
        verify_with(&f.quote, "5eed0002", &software_ca(), &["--allow-software"]),
        (false, "nonce".into())
    );
    // Rewriting the nonce field to the new nonce does not help: the signed value binds it.
    let mut q = f.quote.clone();
    q["nonce"] = "5eed0002".into();
    assert_eq!(
        verify_with(&q, "5eed0002", &software_ca(), &["--allow-software"]),
        (false, "nonce".into())
    );
}

#[test]
fn a_tampered_quote_is_refused() {
    let mut q = fixture().quote.clone();
    let mut attest = q["attest"].as_str().unwrap().to_owned();
    // Flip a bit of the signed register (the last byte).
    let last = u8::from_str_radix(&attest[attest.len() - 2..], 16).unwrap() ^ 1;
    attest.replace_range(attest.len() - 2.., &format!("{last:02x}"));
    q["attest"] = attest.into();
    rejected(&q, "signature");
}

#[test]
fn a_tampered_record_is_refused() {
    let mut q = fixture().quote.clone();
    q["event_log"][0]["content"]["command"][0] = "/bin/sh".into();
    rejected(&q, "record-digest");
}

#[test]
fn a_truncated_log_is_refused() {
    let mut q = fixture().quote.clone();
    q["event_log"].as_array_mut().unwrap().pop();
    rejected(&q, "log-replay");
}

#[test]
fn an_inserted_record_is_refused() {
    let mut q = fixture().quote.clone();
    let log = q["event_log"].as_array_mut().unwrap();
    let copy = log[0].clone();
    log.insert(1, copy);
    for (i, r) in log.iter_mut().enumerate() {
        r["recnum"] = i.into();
    }
    rejected(&q, "log-replay");
}

#[test]
fn reordered_records_are_refused() {
    let mut q = fixture().quote.clone();
    q["event_log"].as_array_mut().unwrap().swap(0, 1);
    rejected(&q, "log-order");
    // Renumbered to look in order: the replay gives another register.
    for (i, r) in q["event_log"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        r["recnum"] = i.into();
    }
    rejected(&q, "log-replay");
}

#[test]
fn a_key_that_is_not_enrolled_is_refused() {
    let f = fixture();
    // A second host, never enrolled: its quote carries no certificate.
    let other = state_dir("other");
    ok(w(&other)
        .args(["run", "--name", &unique("o"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/true"])
        .output()
        .unwrap());
    let o = ok(w(&other)
        .args(["attest", "quote", "--nonce", f.nonce])
        .output()
        .unwrap());
    let mut q: Value = serde_json::from_slice(&o.stdout).unwrap();
    // Absent, not null (docs/attestation.md), as are a host quote's `subject` and a software
    // quote's `nv_public` and `boot`; the enrolled host's quote has its certificate.
    for key in ["ak_certificate", "subject", "nv_public", "boot"] {
        assert!(q.get(key).is_none(), "{key} in {q}");
    }
    assert!(f.quote["ak_certificate"].is_string());
    rejected(&q, "not-enrolled");
    // Presenting the enrolled host's certificate for its own key.
    q["ak_certificate"] = f.quote["ak_certificate"].clone();
    rejected(&q, "not-enrolled");
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn golden_values_accept_the_launch_and_refuse_a_mismatch() {
    let f = fixture();
    let rec = &f.quote["event_log"][0]["content"];
    let good = format!(
        "[env.{}]\nimage_digest = {}\ncommand = [\"/bin/true\"]\nconfig_digest = {}\n",
        f.web, rec["image"]["digest"], rec["config_digest"]
    );
    let policy = f.state.join(format!("{}.toml", unique("golden")));
    std::fs::write(&policy, &good).unwrap();
    let p = policy.to_str().unwrap();
    assert_eq!(
        verify_with(
            &f.quote,
            f.nonce,
            &software_ca(),
            &["--allow-software", "--policy", p]
        ),
        (true, String::new())
    );
    let bad = good.replace("/bin/true", "/bin/false");
    std::fs::write(&policy, bad).unwrap();
    assert_eq!(
        verify_with(
            &f.quote,
            f.nonce,
            &software_ca(),
            &["--allow-software", "--policy", p]
        ),
        (false, "golden".into())
    );
}

#[test]
fn the_workload_does_not_run_when_its_launch_cannot_be_recorded() {
    let f = fixture();
    // Positive control: without the fault the workload runs and prints.
    let o = ok(w(&f.state)
        .args(["run", "--name", &unique("pc"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/echo", "RAN"])
        .output()
        .unwrap());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "RAN");
    let o = w(&f.state)
        .env("WARREN_FAULT_INJECT", "measure")
        .args(["run", "--name", &unique("mf"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/echo", "RAN"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("RAN"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("measure"));
}

/// A kernel daemon on a state directory of this suite, stopped (by its pid) on drop.
struct Daemon(Child);

impl Daemon {
    fn start(state: &Path) -> Daemon {
        let log = state.with_extension("kernel.log");
        let daemon = Daemon(
            w(state)
                .args(["daemon"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let sock = state.join("kernel.sock");
        for _ in 0..200 {
            if kernel_answers(&sock) {
                return daemon;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        drop(daemon);
        panic!(
            "the kernel did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// Whether a kernel accepts connections on its control socket (a `SOCK_SEQPACKET` socket).
fn kernel_answers(sock: &Path) -> bool {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let Ok(fd) = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    ) else {
        return false;
    };
    SocketAddrUnix::new(sock).is_ok_and(|a| rustix::net::connect(&fd, &a).is_ok())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.0.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn a_program_inside_an_environment_proves_its_own_launch() {
    let f = fixture();
    common::workspace_bin("warren-client", "warren-msg");
    let state = state_dir("kernel");
    ok(w(&state)
        .args(["ca", "enroll", "--host", "kernel-host", "--dir"])
        .arg(&f.ca)
        .output()
        .unwrap());
    let before = {
        let _d = Daemon::start(&state);
        ok(w(&state)
            .args(["run", "--name", &unique("early"), "--rootfs"])
            .arg(busybox_root())
            .args(["--", "/bin/true"])
            .output()
            .unwrap());
        1
    };
    // A restarted kernel keeps the log: the new quote covers the launch before the restart.
    let _d = Daemon::start(&state);
    let name = unique("prover");
    let o = ok(w(&state)
        .args(["run", "--name", &name, "--rootfs"])
        .arg(busybox_root())
        .args([
            "--",
            "/bin/sh",
            "-c",
            "warren-msg attest --nonce c0ffee --data 0123abcd",
        ])
        .output()
        .unwrap());
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(q["subject"]["env"], name.as_str());
    assert_eq!(q["subject"]["data"], "0123abcd");
    assert_eq!(q["event_log"].as_array().unwrap().len(), before + 1);
    let sca = software_ca();
    assert_eq!(
        verify_with(&q, "c0ffee", &sca, &["--allow-software"]),
        (true, String::new())
    );
    // The data and the subject are bound by the signature.
    let mut t = q.clone();
    t["subject"]["data"] = "0123abce".into();
    assert_eq!(
        verify_with(&t, "c0ffee", &sca, &["--allow-software"]),
        (false, "nonce".into())
    );
    let mut t = q.clone();
    t["subject"]["recnum"] = 0.into();
    assert_eq!(
        verify_with(&t, "c0ffee", &sca, &["--allow-software"]),
        (false, "subject".into())
    );
    // An empty nonce is refused by the kernel.
    let o = w(&state)
        .args(["run", "--name", &unique("nononce"), "--rootfs"])
        .arg(busybox_root())
        .args(["--", "/bin/sh", "-c", "warren-msg attest --nonce ''"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    drop(_d);
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(state.with_extension("kernel.log"));
}

#[test]
fn inspect_shows_the_launch_measurement() {
    let root = busybox_root().to_str().unwrap().to_owned();
    let bg = common::Background::start(&unique("insp"), &["--rootfs", &root, "--", "sleep", "30"]);
    let v = bg.inspect().unwrap();
    let m = &v["measurement"];
    assert_eq!(m["root"], "software", "{v}");
    assert!(m["recnum"].is_u64());
    assert!(m["image_digest"].as_str().unwrap().starts_with("blake3:"));
    assert!(m["config_digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(m["image_manifest_digest"].is_null());
    // The record it names is in the log of that state directory, with the same digest.
    let o = ok(warren().args(["attest", "log"]).output().unwrap());
    let recnum = m["recnum"].as_u64().unwrap() as usize;
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .nth(recnum)
        .map(str::to_owned)
        .unwrap();
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(rec["content"]["name"], v["name"]);
    assert_eq!(
        format!("sha256:{}", rec["digests"][0]["digest"].as_str().unwrap()),
        m["digest"].as_str().unwrap()
    );
    bg.stop();
}

#[test]
fn a_launch_refused_after_it_was_measured_is_recorded_as_refused() {
    sweep_stale();
    let state = state_dir("outcome");
    let ca = state.join("ca");
    ok(w(&state)
        .args(["ca", "init", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    ok(w(&state)
        .args(["ca", "enroll", "--host", "outcome-host", "--dir"])
        .arg(&ca)
        .output()
        .unwrap());
    let run = |name: &str, fault: Option<&str>, cmd: &str| {
        let mut c = w(&state);
        if let Some(f) = fault {
            c.env("WARREN_FAULT_INJECT", f);
        }
        c.args(["run", "--name", name, "--rootfs"])
            .arg(busybox_root())
            .args(["--", cmd])
            .output()
            .unwrap()
    };
    let ran = unique("ran");
    ok(run(&ran, None, "/bin/true"));
    // Measured, then the launcher failed: the workload never ran, and a record says so.
    let refused = unique("refused");
    assert_eq!(
        run(&refused, Some("measure"), "/bin/true").status.code(),
        Some(125)
    );
    // Measured, then execve failed.
    let missing = unique("missing");
    assert_eq!(
        run(&missing, None, "/no/such/program").status.code(),
        Some(127)
    );
    // Failed before it was measured: no record at all.
    let early = unique("early");
    assert_eq!(
        run(&early, Some("cgroup"), "/bin/true").status.code(),
        Some(125)
    );

    let o = ok(w(&state)
        .args(["attest", "quote", "--nonce", "0c0c"])
        .output()
        .unwrap());
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    let events: Vec<(String, String)> = q["event_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["content"]["name"].as_str().unwrap().to_owned(),
                r["content"]["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(!events.iter().any(|(n, _)| *n == early), "{events:?}");
    let file = state.join("q.json");
    std::fs::write(&file, serde_json::to_vec(&q).unwrap()).unwrap();
    let o = ok(w(&state)
        .args([
            "attest",
            "verify",
            "--json",
            "--allow-software",
            "--nonce",
            "0c0c",
            "--quote",
        ])
        .arg(&file)
        .arg("--ca")
        .arg(ca.join("software-ca.crt"))
        .output()
        .unwrap());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let outcome = |name: &str| {
        v["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| o["outcome"].as_str().unwrap().to_owned())
    };
    assert_eq!(outcome(&ran).as_deref(), Some("ran"), "{v}");
    assert_eq!(outcome(&refused).as_deref(), Some("refused"), "{v}");
    assert_eq!(outcome(&missing).as_deref(), Some("refused"), "{v}");
    assert_eq!(outcome(&early), None);
    // The refusal record is part of the signed history: dropping it breaks the replay.
    let mut t = q.clone();
    let log = t["event_log"].as_array_mut().unwrap();
    assert_eq!(log.last().unwrap()["content"]["event"], "refused");
    log.pop();
    std::fs::write(&file, serde_json::to_vec(&t).unwrap()).unwrap();
    let o = w(&state)
        .args([
            "attest",
            "verify",
            "--json",
            "--allow-software",
            "--nonce",
            "0c0c",
            "--quote",
        ])
        .arg(&file)
        .arg("--ca")
        .arg(ca.join("software-ca.crt"))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reason"], "log-replay", "{v}");
    let _ = std::fs::remove_dir_all(&state);
}

/// An unknown `--attest-root` is refused before the kernel starts, naming all three choices
/// (`auto` included), for `daemon` as for `attest init`.
#[test]
fn an_unknown_root_of_trust_names_tpm_software_and_auto() {
    let state = state_dir("badroot");
    for args in [
        &["daemon", "--attest-root", "bogus"][..],
        &["attest", "init", "--root", "bogus"][..],
    ] {
        let o = w(&state).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(125), "{args:?}: {err}");
        assert!(
            err.contains("unknown root of trust \"bogus\": expected tpm, software or auto"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}

/// `ca init` with an `--ek-ca` that cannot be read, or is not a PEM certificate, is refused
/// naming the file, and leaves no CA behind (it used to create the whole CA first, so the retry
/// was refused with "already holds a CA"); a good one lands in `ek-roots/` (positive control).
#[test]
fn ca_init_with_a_bad_ek_ca_leaves_no_ca_behind() {
    let f = fixture();
    let state = state_dir("ekca");
    let garbage = state.join("garbage.pem");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = state.join("missing.pem");
    let dir = state.join("ca");
    for bad in [&missing, &garbage] {
        let o = w(&state)
            .args(["ca", "init", "--dir"])
            .arg(&dir)
            .arg("--ek-ca")
            .arg(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(125), "{}: {err}", bad.display());
        assert!(
            err.contains(&*bad.to_string_lossy()),
            "names the file: {err}"
        );
        assert!(!dir.exists(), "{}: a CA was left behind", bad.display());
    }
    ok(w(&state)
        .args(["ca", "init", "--dir"])
        .arg(&dir)
        .arg("--ek-ca")
        .arg(f.ca.join("root.crt"))
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(dir.join("ek-roots/ek-ca-0.pem")).unwrap(),
        std::fs::read_to_string(f.ca.join("root.crt")).unwrap()
    );
    let _ = std::fs::remove_dir_all(&state);
}
