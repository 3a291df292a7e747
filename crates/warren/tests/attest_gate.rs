//! Attestation-gated federation (issue 18) with three hosts on a private loopback RabbitMQ:
//! `alpha`, `beta` and `gamma`, each a kernel with its own state directory and its own swtpm
//! whose PCRs were extended by a simulated UEFI boot, all enrolled with one Privacy CA. In each
//! host an environment sends to the two others every 200 ms and logs what it gets.
//!
//! `beta` boots "wrong" (a kernel digest the policy, learnt from alpha's boot, does not allow).
//! `warren attest watch` on alpha (watching beta and gamma) and on gamma (watching beta):
//! * beta is cut off within one interval, by both: sends to it are refused `revoked` naming
//!   the verdict, its messages are refused and audited, `warren ps`/`inspect` of its proxy say
//!   `cut off: attestation failed (...) at TIME` — while alpha and gamma keep talking;
//! * once the policy allows beta's kernel (the administrator approved it), beta passes and is
//!   let back in: messages flow both ways again;
//! * gamma's kernel stops answering (SIGSTOP): alpha cuts it off within one interval
//!   (`timeout`) and lets it back in after it answers again (SIGCONT);
//! * the watch on alpha stops: its last passes lapse and alpha cuts both peers off by itself
//!   (`attestation expired`).
//!
//! Everything is removed at the end: environments, kernels, swtpms, state directories, broker.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::swtpm::{self, Boot, Swtpm, good_boot, ok};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/rabbitmq-instance.sh"
);
const INTERVAL_S: f64 = 3.0;

fn warren_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warren")
}

/// A private RabbitMQ node, stopped (and its files removed) on drop.
struct Broker {
    dir: PathBuf,
    port: u16,
}

impl Broker {
    fn start() -> Broker {
        // Below federation.rs's range (21000..30600), four ports per test process.
        let port = 12000 + (std::process::id() % 2000) as u16 * 4;
        let dir = std::env::temp_dir().join(format!("warren-gate-rmq-{port}"));
        let st = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(&dir)
            .arg(port.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "the broker did not start");
        Broker { dir, port }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([SCRIPT, "stop"])
            .arg(&self.dir)
            .status();
    }
}

/// One host: its swtpm, state directory, kernel and environment.
struct Host {
    name: &'static str,
    state: PathBuf,
    agent: PathBuf,
    node: String,
    daemon: Option<Child>,
    watch: Option<Child>,
    _tpm: Swtpm,
}

fn node(host: &str) -> String {
    format!("n{host}{}", std::process::id())
}

impl Host {
    /// Boots `boot` on a new swtpm and makes it this host's root of trust.
    fn new(name: &'static str, agent: &Path, boot: &Boot) -> Host {
        let state = PathBuf::from(format!("/run/warren-gate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let tpm = Swtpm::start(&format!("gate-{name}"));
        let log = state.join("binary_bios_measurements");
        swtpm::boot(agent, &tpm, &state.join("firmware"), &log, boot);
        let h = Host {
            name,
            state,
            agent: agent.to_owned(),
            node: node(name),
            daemon: None,
            watch: None,
            _tpm: tpm,
        };
        ok(h.w()
            .args([
                "attest",
                "init",
                "--root",
                "tpm",
                "--tpm",
                &h._tpm.spec(),
                "--boot-log",
            ])
            .arg(&log)
            .output()
            .unwrap());
        h
    }

    fn w(&self) -> Command {
        let mut c = Command::new(warren_bin());
        c.env("WARREN_STATE_DIR", &self.state);
        c.env_remove("WARREN_ATTEST_ROOT");
        c.env_remove("WARREN_TPM");
        c.env("WARREN_TPM_AGENT", &self.agent);
        c
    }

    fn start(&mut self, dir: &Path, broker: &Broker) {
        let others: Vec<String> = ["alpha", "beta", "gamma"]
            .iter()
            .filter(|h| **h != self.name)
            .map(|h| format!("{}@{h}", node(h)))
            .collect();
        let peer = common::workspace_bin("warren-bench", "warren-fed-peer").display();
        let quoted: Vec<String> = others.iter().map(|o| format!("\"{o}\"")).collect();
        let manifest = dir.join(format!("{}.toml", self.name));
        let text = format!(
            "[host]\nname = \"{n}\"\nbroker = \"{url}\"\nkey = \"keys/{n}.key\"\n\
             trusted_keys = \"trusted\"\n\n[space.{env}]\nimage = {{ binary = \"{peer}\" }}\n\
             command = [\"{peer}\", \"chatter\", \"200\", {list}]\nmay_send = [{list}]\n\
             accept_from = [{list}]\n",
            n = self.name,
            url = broker.url(),
            env = self.node,
            list = quoted.join(", "),
        );
        std::fs::write(&manifest, text).unwrap();
        let log = std::fs::File::create(self.state.with_extension("log")).unwrap();
        let child = self
            .w()
            .arg("up")
            .arg(&manifest)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        wait_until(Duration::from_secs(30), "a kernel to be ready", || {
            self.daemon_log().contains("kernel ready")
        });
    }

    fn watch(&mut self, hosts: &[&str], ca: &Path, policy: &Path) {
        let out = std::fs::File::create(self.state.with_extension("watch")).unwrap();
        let mut c = self.w();
        c.args([
            "attest",
            "watch",
            "--interval",
            &INTERVAL_S.to_string(),
            "--ca",
        ])
        .arg(ca.join("tpm-ca.crt"))
        .arg("--crl")
        .arg(ca.join("tpm-ca.crl"))
        .arg("--policy")
        .arg(policy);
        for h in hosts {
            c.args(["--host", h]);
        }
        self.watch = Some(c.stdout(out).stderr(Stdio::null()).spawn().unwrap());
    }

    fn stop_watch(&mut self) {
        if let Some(mut w) = self.watch.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    fn daemon_pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.daemon.as_ref().unwrap().id() as i32).unwrap()
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }

    fn node_log(&self) -> String {
        std::fs::read_to_string(self.state.join("logs").join(format!("{}.log", self.node)))
            .unwrap_or_default()
    }

    /// The watch's verdict lines.
    fn verdicts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.with_extension("watch"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Messages `self`'s node got from `host`'s node.
    fn got_from(&self, host: &str) -> usize {
        let prefix = format!("GOT {}@{host} ", node(host));
        self.node_log()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    /// `warren inspect ADDRESS` of the proxy for `host`'s node.
    fn proxy_state(&self, host: &str) -> String {
        let o = ok(self
            .w()
            .args(["inspect", &format!("{}@{host}", node(host))])
            .output()
            .unwrap());
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["state"].as_str().unwrap_or("").to_owned()
    }

    fn ps(&self) -> String {
        String::from_utf8_lossy(&ok(self.w().arg("ps").output().unwrap()).stdout).into_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_watch();
        if let Some(mut d) = self.daemon.take() {
            let pid = rustix::process::Pid::from_raw(d.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            let _ = self
                .w()
                .args(["rm", "-f", &self.node])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = d.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- kernel {} ---\n{}", self.name, self.daemon_log());
            let log = self.node_log();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            eprintln!(
                "--- node on {} (last lines) ---\n{}",
                self.name,
                tail.join("\n")
            );
            let w = std::fs::read_to_string(self.state.with_extension("watch")).unwrap_or_default();
            eprintln!("--- watch on {} ---\n{w}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.state);
        for ext in ["log", "watch"] {
            let _ = std::fs::remove_file(self.state.with_extension(ext));
        }
    }
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_host_that_fails_attestation_is_cut_off_and_let_back_after_it_passes() {
    common::sweep_stale_runs("warren-gate-");
    common::sweep_stale_runs("warren-swtpm-");
    let agent = swtpm::agent();
    let dir = tempfile::tempdir().unwrap();
    let wrong = Boot {
        kernel: b"vmlinuz-6.1.0-rogue",
        ..good_boot()
    };
    let mut alpha = Host::new("alpha", &agent, &good_boot());
    let mut beta = Host::new("beta", &agent, &wrong);
    let mut gamma = Host::new("gamma", &agent, &good_boot());

    // One Privacy CA (trusting swtpm-localca's EK certificates) enrolls the three hosts.
    let ca = dir.path().join("ca");
    let mut init = alpha.w();
    init.args(["ca", "init", "--dir"]).arg(&ca);
    for c in swtpm::localca_certs() {
        init.arg("--ek-ca").arg(c);
    }
    ok(init.output().unwrap());
    for h in [&alpha, &beta, &gamma] {
        ok(h.w()
            .args(["ca", "enroll", "--dir"])
            .arg(&ca)
            .output()
            .unwrap());
    }
    // The boot policy, learnt from alpha (a known-good host): it pins alpha's kernel.
    let policy = dir.path().join("policy.toml");
    ok(alpha
        .w()
        .args(["attest", "policy", "learn", "--boot-log"])
        .arg(alpha.state.join("binary_bios_measurements"))
        .arg("--out")
        .arg(&policy)
        .output()
        .unwrap());
    let learnt = std::fs::read_to_string(&policy).unwrap();
    let (good_kernel, rogue_kernel) = (
        sha256_hex(b"vmlinuz-6.1.0-warren"),
        sha256_hex(b"vmlinuz-6.1.0-rogue"),
    );
    assert!(
        learnt.contains(&good_kernel) && !learnt.contains(&rogue_kernel),
        "{learnt}"
    );

    // Host keys, the trusted-keys file, the broker, the kernels.
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    let mut trusted = String::new();
    for h in ["alpha", "beta", "gamma"] {
        let out = Command::new(warren_bin())
            .args(["host-key", "--name", h])
            .arg(dir.path().join("keys").join(format!("{h}.key")))
            .output()
            .unwrap();
        assert!(out.status.success());
        trusted.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    std::fs::write(dir.path().join("trusted"), trusted).unwrap();
    let broker = Broker::start();
    for h in [&mut alpha, &mut beta, &mut gamma] {
        h.start(dir.path(), &broker);
    }
    // Positive control: before any verdict, everyone talks to everyone.
    wait_until(
        Duration::from_secs(60),
        "all six directions to carry messages",
        || {
            alpha.got_from("beta") > 0
                && alpha.got_from("gamma") > 0
                && beta.got_from("alpha") > 0
                && beta.got_from("gamma") > 0
                && gamma.got_from("alpha") > 0
                && gamma.got_from("beta") > 0
        },
    );
    assert!(alpha.ps().contains("REMOTE MAILBOX"), "{}", alpha.ps());
    assert_eq!(alpha.proxy_state("beta"), "admitted");

    // The watches start; beta fails its first round (its kernel is not the policy's).
    alpha.watch(&["beta", "gamma"], &ca, &policy);
    gamma.watch(&["beta"], &ca, &policy);
    let first = |h: &Host, peer: &str| h.verdicts().into_iter().find(|v| v["host"] == peer);
    wait_until(Duration::from_secs(30), "the first verdicts", || {
        first(&alpha, "beta").is_some()
            && first(&alpha, "gamma").is_some()
            && first(&gamma, "beta").is_some()
    });
    for (h, peer) in [(&alpha, "beta"), (&gamma, "beta")] {
        let v = first(h, peer).unwrap();
        assert_eq!(v["verdict"], "fail", "{v}");
        assert_eq!(v["code"], "boot-digest", "{v}");
        assert_eq!(v["round"], 1, "{v}");
        // Cut off within one interval of the watch's start.
        assert!(v["at_s"].as_f64().unwrap() < INTERVAL_S, "{v}");
        assert!(
            v["state"]
                .as_str()
                .unwrap()
                .starts_with("cut off: attestation failed (measured-boot policy (boot-digest)"),
            "{v}"
        );
        // Bytes on the wire were counted both ways: the quote carries the boot log.
        assert!(v["answer_bytes"].as_u64().unwrap() > 1000, "{v}");
    }
    let g = first(&alpha, "gamma").unwrap();
    assert_eq!(g["verdict"], "pass", "{g}");

    // What the others see: beta's proxy is cut off, named so in ps and inspect.
    let state = alpha.proxy_state("beta");
    assert!(
        state.starts_with("cut off: attestation failed ("),
        "{state}"
    );
    assert!(state.contains(" at 20"), "{state}");
    let ps = alpha.ps();
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&format!("{}@beta", node("beta")))
                && l.contains("cut off: attestation failed")),
        "{ps}"
    );
    assert!(
        alpha.proxy_state("gamma").starts_with("admitted"),
        "{}",
        alpha.proxy_state("gamma")
    );

    // Sends to beta are refused `revoked` with the verdict; alpha and gamma keep talking.
    let refused_line = format!("REFUSED {}@beta ", node("beta"));
    for h in [&alpha, &gamma] {
        wait_until(Duration::from_secs(10), "a send to beta refused", || {
            h.node_log().lines().any(|l| {
                l.starts_with(&refused_line)
                    && l.contains("revoked: host beta is cut off: attestation failed (")
            })
        });
    }
    let (ag, ga) = (alpha.got_from("gamma"), gamma.got_from("alpha"));
    let (ab, gb) = (alpha.got_from("beta"), gamma.got_from("beta"));
    let ba = beta.got_from("alpha");
    wait_until(
        Duration::from_secs(20),
        "alpha and gamma to keep talking",
        || alpha.got_from("gamma") >= ag + 10 && gamma.got_from("alpha") >= ga + 10,
    );
    // Beta keeps sending (it does not know), and nothing of it is delivered; each of its
    // messages is refused and audited by the receiving host, not dropped silently.
    assert!(alpha.got_from("beta") <= ab + 1, "{}", alpha.node_log());
    assert!(gamma.got_from("beta") <= gb + 1);
    assert!(beta.got_from("alpha") <= ba + 1);
    for h in [&alpha, &gamma] {
        let audit = h.audit();
        assert!(
            audit.iter().any(|r| r["op"] == "attest"
                && r["code"] == "cut-off"
                && r["target"] == "host beta"),
            "{audit:#?}"
        );
        let from_beta = format!("{}@beta -> {}", node("beta"), h.node);
        wait_until(
            Duration::from_secs(10),
            "beta's messages refused and audited",
            || {
                h.audit().iter().any(|r| {
                    r["op"] == "inbound"
                        && r["code"] == "cut-off"
                        && r["target"] == from_beta.as_str()
                })
            },
        );
    }

    // The administrator approves beta's kernel: the next round passes and beta is let back in.
    std::fs::write(
        &policy,
        learnt.replace(
            &format!("\"{good_kernel}\""),
            &format!("\"{good_kernel}\", \"{rogue_kernel}\""),
        ),
    )
    .unwrap();
    let passes = |h: &Host, peer: &str| {
        h.verdicts()
            .iter()
            .filter(|v| v["host"] == peer && v["verdict"] == "pass")
            .count()
    };
    wait_until(
        Duration::from_secs(4 * INTERVAL_S as u64),
        "beta to pass",
        || passes(&alpha, "beta") > 0 && passes(&gamma, "beta") > 0,
    );
    assert!(
        alpha
            .proxy_state("beta")
            .starts_with("admitted: attestation passed at 20")
    );
    let (ab, ba) = (alpha.got_from("beta"), beta.got_from("alpha"));
    wait_until(
        Duration::from_secs(20),
        "beta to talk with alpha again",
        || alpha.got_from("beta") >= ab + 5 && beta.got_from("alpha") >= ba + 5,
    );
    assert!(
        alpha.audit().iter().any(|r| r["op"] == "attest"
            && r["code"] == "readmitted"
            && r["target"] == "host beta")
    );

    // Gamma's kernel stops answering: alpha cuts it off within one interval of asking.
    let before = alpha.verdicts().len();
    let _ = rustix::process::kill_process(gamma.daemon_pid(), rustix::process::Signal::STOP);
    wait_until(
        Duration::from_secs(4 * INTERVAL_S as u64),
        "gamma to be cut off",
        || {
            alpha.verdicts()[before..]
                .iter()
                .any(|v| v["host"] == "gamma" && v["verdict"] == "fail")
        },
    );
    let v = alpha.verdicts()[before..]
        .iter()
        .find(|v| v["host"] == "gamma" && v["verdict"] == "fail")
        .cloned()
        .unwrap();
    assert_eq!(v["code"], "timeout", "{v}");
    let state = alpha.proxy_state("gamma");
    assert!(
        state.starts_with("cut off: attestation failed (timeout: no answer from host gamma within"),
        "{state}"
    );
    // ... and lets it back in once it answers again.
    let _ = rustix::process::kill_process(gamma.daemon_pid(), rustix::process::Signal::CONT);
    wait_until(
        Duration::from_secs(6 * INTERVAL_S as u64),
        "gamma to be let back in",
        || alpha.proxy_state("gamma").starts_with("admitted"),
    );

    // The watch on alpha stops: its last passes lapse (three intervals) and alpha's kernel
    // cuts both peers off by itself.
    alpha.stop_watch();
    wait_until(
        Duration::from_secs(5 * INTERVAL_S as u64),
        "the leases to lapse",
        || {
            alpha
                .proxy_state("beta")
                .starts_with("cut off: attestation expired (no passing quote since")
                && alpha
                    .proxy_state("gamma")
                    .starts_with("cut off: attestation expired")
        },
    );
    gamma.stop_watch();
}
