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
    /// Slot 0 or 1: the two tests of this file may run at once in one process.
    fn start(slot: u16) -> Broker {
        // Below federation.rs's range (21000..30600), four ports per slot, two slots per test
        // process.
        let port = 12000 + (std::process::id() % 1000) as u16 * 8 + slot * 4;
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
    fn new(tag: &str, name: &'static str, agent: &Path, boot: &Boot) -> Host {
        let state = PathBuf::from(format!(
            "/run/warren-gate-{}-{tag}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        let tpm = Swtpm::start(&format!("gate-{tag}-{name}"));
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
        self.start_with(dir, broker, true);
    }

    /// Starts the kernel; with `chatter`, its environment talks to the two other hosts.
    fn start_with(&mut self, dir: &Path, broker: &Broker, chatter: bool) {
        let others: Vec<String> = ["alpha", "beta", "gamma"]
            .iter()
            .filter(|h| **h != self.name)
            .map(|h| format!("{}@{h}", node(h)))
            .collect();
        let quoted: Vec<String> = others.iter().map(|o| format!("\"{o}\"")).collect();
        let manifest = dir.join(format!("{}.toml", self.name));
        let mut text = format!(
            "[host]\nname = \"{n}\"\nbroker = \"{url}\"\nkey = \"keys/{n}.key\"\n\
             trusted_keys = \"trusted\"\n",
            n = self.name,
            url = broker.url(),
        );
        if chatter {
            let peer = common::workspace_bin("warren-bench", "warren-fed-peer").display();
            text.push_str(&format!(
                "\n[space.{env}]\nimage = {{ binary = \"{peer}\" }}\n\
                 command = [\"{peer}\", \"chatter\", \"200\", {list}]\nmay_send = [{list}]\n\
                 accept_from = [{list}]\n",
                env = self.node,
                list = quoted.join(", "),
            ));
        }
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

/// A Privacy CA in `dir/ca` (trusting swtpm-localca's EK certificates) that enrolls `hosts`.
fn enroll(dir: &Path, hosts: &[&Host]) -> PathBuf {
    let ca = dir.join("ca");
    let mut init = hosts[0].w();
    init.args(["ca", "init", "--dir"]).arg(&ca);
    for c in swtpm::localca_certs() {
        init.arg("--ek-ca").arg(c);
    }
    ok(init.output().unwrap());
    for h in hosts {
        ok(h.w()
            .args(["ca", "enroll", "--dir"])
            .arg(&ca)
            .output()
            .unwrap());
    }
    ca
}

/// Host keys in `dir/keys` and the trusted-keys file `dir/trusted` naming them all.
fn host_keys(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let mut trusted = String::new();
    for h in names {
        let out = Command::new(warren_bin())
            .args(["host-key", "--name", h])
            .arg(dir.join("keys").join(format!("{h}.key")))
            .output()
            .unwrap();
        assert!(out.status.success());
        trusted.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    std::fs::write(dir.join("trusted"), trusted).unwrap();
}

/// CPU time (user + system, with waited-for children: the TPM agent) of process `pid`, in ms.
fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split(' ')
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap())
        .collect();
    // USER_HZ is 100 on Linux.
    f.iter().sum::<f64>() * 10.0
}

/// CPU time of this process's waited-for children, in ms (10 ms resolution).
fn children_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split(' ')
        .skip(13)
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    f.iter().sum::<f64>() * 10.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Re-attestation cost per host per interval (BENCHMARKS.md, "Re-attestation"): a verifier
/// (`alpha`) re-attests one host (`beta`, a swtpm with a simulated UEFI boot and three
/// measured launches) through the federation for ROUNDS rounds; then, on the same swtpm, the
/// floor a bare poller would pay: `tpm2_quote` + `tpm2_checkquote` over the same PCRs (no
/// transport, no NV certification, no logs). Run with a release build:
///
/// ```text
/// ROUNDS=50 GATE_INTERVAL=1 WARREN_TPM_AGENT=$PWD/target/tpm/x86_64-unknown-linux-gnu/release/warren-tpm \
///   cargo test --release --locked -p warren --test attest_gate -- --ignored --nocapture reattestation_cost
/// ```
#[test]
#[ignore]
fn reattestation_cost() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (rounds, interval) = (env("ROUNDS", 30.0) as u64, env("GATE_INTERVAL", 1.0));
    let agent = swtpm::agent();
    let dir = tempfile::tempdir().unwrap();
    let mut alpha = Host::new("cost", "alpha", &agent, &good_boot());
    let mut beta = Host::new("cost", "beta", &agent, &good_boot());
    let ca = enroll(dir.path(), &[&alpha, &beta]);
    let policy = dir.path().join("policy.toml");
    ok(beta
        .w()
        .args(["attest", "policy", "learn", "--boot-log"])
        .arg(beta.state.join("binary_bios_measurements"))
        .arg("--out")
        .arg(&policy)
        .output()
        .unwrap());
    // Three measured launches on beta, so that its quote carries a launch log.
    for i in 0..3 {
        ok(beta
            .w()
            .args(["run", "--name", &format!("b{i}x{}", std::process::id())])
            .arg("--rootfs")
            .arg(common::busybox_root())
            .args(["--", "/bin/true"])
            .output()
            .unwrap());
    }
    host_keys(dir.path(), &["alpha", "beta"]);
    let broker = Broker::start(1);
    alpha.start_with(dir.path(), &broker, false);
    beta.start_with(dir.path(), &broker, false);
    let watch = |n: u64| {
        let o = ok(alpha
            .w()
            .args(["attest", "watch", "--host", "beta", "--interval"])
            .arg(interval.to_string())
            .args(["--rounds", &n.to_string(), "--ca"])
            .arg(ca.join("tpm-ca.crt"))
            .arg("--crl")
            .arg(ca.join("tpm-ca.crl"))
            .arg("--policy")
            .arg(&policy)
            .output()
            .unwrap());
        let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for l in &lines {
            assert_eq!(l["verdict"], "pass", "{l}");
        }
        lines
    };
    watch(2); // warm-up: connections, page cache
    let pids = (
        alpha.daemon.as_ref().unwrap().id(),
        beta.daemon.as_ref().unwrap().id(),
    );
    let (a0, b0, c0) = (cpu_ms(pids.0), cpu_ms(pids.1), children_cpu_ms());
    let t0 = Instant::now();
    let lines = watch(rounds);
    let wall = t0.elapsed().as_secs_f64();
    let (a1, b1, c1) = (cpu_ms(pids.0), cpu_ms(pids.1), children_cpu_ms());
    let n = rounds as f64;
    let col = |k: &str| {
        lines
            .iter()
            .map(|l| l[k].as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let (quote_ms, verify_ms) = (median(col("quote_ms")), median(col("verify_ms")));
    let verify_cpu = median(col("verify_cpu_ms"));
    let (req, ans) = (median(col("request_bytes")), median(col("answer_bytes")));
    let (verifier_cpu, attested_cpu) = ((a1 - a0 + c1 - c0) / n, (b1 - b0) / n);

    // The floor: tpm2-tools on beta's swtpm, a fresh AK, the same PCRs, ROUNDS times.
    let t = dir.path().join("tpm2");
    std::fs::create_dir_all(&t).unwrap();
    let tcti = beta._tpm.spec();
    let tool = |args: &[&str], must: bool| {
        let o = Command::new(args[0])
            .args(&args[1..])
            .current_dir(&t)
            .env("TPM2TOOLS_TCTI", &tcti)
            .output()
            .unwrap();
        assert!(
            !must || o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    tool(
        &["tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
        true,
    );
    tool(
        &[
            "tpm2_createak",
            "-C",
            "ek.ctx",
            "-c",
            "ak.ctx",
            "-G",
            "ecc",
            "-g",
            "sha256",
            "-s",
            "ecdsa",
            "-u",
            "ak.pem",
            "-f",
            "pem",
        ],
        true,
    );
    tool(&["tpm2_flushcontext", "-t"], false);
    tool(&["tpm2_flushcontext", "-s"], false);
    tool(
        &["tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", "0x81010011"],
        true,
    );
    tool(&["tpm2_flushcontext", "-t"], false);
    let sel = "sha256:0,1,2,3,4,5,6,7,8,9,14";
    let (mut q_ms, mut v_ms, mut q_cpu, mut v_cpu) = (Vec::new(), Vec::new(), 0.0, 0.0);
    let mut floor_bytes = 0;
    for i in 0..rounds {
        let nonce = format!("{:032x}", i + 1);
        let (c, s) = (children_cpu_ms(), Instant::now());
        tool(
            &[
                "tpm2_quote",
                "-c",
                "0x81010011",
                "-l",
                sel,
                "-q",
                &nonce,
                "-m",
                "msg",
                "-s",
                "sig",
                "-o",
                "pcrs",
                "-g",
                "sha256",
            ],
            true,
        );
        q_ms.push(s.elapsed().as_secs_f64() * 1000.0);
        q_cpu += children_cpu_ms() - c;
        let (c, s) = (children_cpu_ms(), Instant::now());
        tool(
            &[
                "tpm2_checkquote",
                "-u",
                "ak.pem",
                "-m",
                "msg",
                "-s",
                "sig",
                "-f",
                "pcrs",
                "-g",
                "sha256",
                "-q",
                &nonce,
            ],
            true,
        );
        v_ms.push(s.elapsed().as_secs_f64() * 1000.0);
        v_cpu += children_cpu_ms() - c;
        floor_bytes = ["msg", "sig", "pcrs"]
            .iter()
            .map(|f| std::fs::metadata(t.join(f)).unwrap().len())
            .sum::<u64>();
    }
    tool(&["tpm2_evictcontrol", "-C", "o", "-c", "0x81010011"], false);
    let (fq, fv, fvc, fqc) = (median(q_ms), median(v_ms), v_cpu / n, q_cpu / n);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# re-attestation of one host, {rounds} rounds every {interval} s ({wall:.1} s), load {}",
        load.trim()
    );
    let row =
        |what: &str, w: f64, f: f64| println!("{what:<56} {w:>10.2} {f:>10.2} {:>7.2}", w / f);
    println!(
        "{:<56} {:>10} {:>10} {:>7}",
        "per host per round", "warren", "tpm2", "ratio"
    );
    row(
        "time to the quote at the verifier, ms (median)",
        quote_ms,
        fq,
    );
    row("verification time, ms (median)", verify_ms, fv);
    row(
        "verifier CPU, ms (watch + kernel; tpm2_checkquote)",
        verifier_cpu,
        fvc,
    );
    println!(
        "{:<56} {:>10.2}\n{:<56} {:>10.2}",
        "  of which the verifier's kernel, ms",
        (a1 - a0) / n,
        "  of which the watch process, ms",
        (c1 - c0) / n
    );
    println!(
        "{:<56} {verify_cpu:>10.2}",
        "  of which verification CPU, ms (median)"
    );
    row(
        "attested host CPU, ms (kernel + agent; tpm2_quote)",
        attested_cpu,
        fqc,
    );
    row("bytes on the wire: request", req, 16.0);
    row("bytes on the wire: answer", ans, floor_bytes as f64);
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
    let mut alpha = Host::new("gate", "alpha", &agent, &good_boot());
    let mut beta = Host::new("gate", "beta", &agent, &wrong);
    let mut gamma = Host::new("gate", "gamma", &agent, &good_boot());

    // One Privacy CA (trusting swtpm-localca's EK certificates) enrolls the three hosts.
    let ca = enroll(dir.path(), &[&alpha, &beta, &gamma]);
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
    host_keys(dir.path(), &["alpha", "beta", "gamma"]);
    let broker = Broker::start(0);
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

    // Bad input: a host that is not a peer, an unreadable CA — refused up front, naming it.
    let bad = |args: &[&str], ca: &Path, needle: &str| {
        let o = alpha
            .w()
            .args(["attest", "watch", "--rounds", "1"])
            .args(args)
            .arg("--ca")
            .arg(ca)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(125), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(o.stdout.is_empty());
    };
    bad(
        &["--host", "delta"],
        &ca.join("tpm-ca.crt"),
        "--host delta: not a peer",
    );
    bad(
        &["--host", "alpha"],
        &ca.join("tpm-ca.crt"),
        "--host alpha: not a peer",
    );
    bad(
        &["--host", "beta"],
        &ca.join("nonexistent.crt"),
        "nonexistent.crt",
    );
    bad(
        &["--host", "beta", "--interval", "0"],
        &ca.join("tpm-ca.crt"),
        "--interval 0",
    );
    assert!(alpha.audit().iter().all(|r| r["op"] != "attest"));

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
        // Cut off in the first round: the quote came within the interval, and the verdict
        // right after its verification.
        let verified_at = v["at_s"].as_f64().unwrap() - v["verify_ms"].as_f64().unwrap() / 1000.0;
        assert!(verified_at < INTERVAL_S, "{v}");
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
    eprintln!(
        "alpha's watch, round 1:\n{}\n{g}",
        first(&alpha, "beta").unwrap()
    );

    // What the others see: beta's proxy is cut off, named so in ps and inspect.
    let state = alpha.proxy_state("beta");
    assert!(
        state.starts_with("cut off: attestation failed ("),
        "{state}"
    );
    assert!(state.contains(" at 20"), "{state}");
    let ps = alpha.ps();
    eprintln!("warren ps on alpha:\n{ps}");
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
