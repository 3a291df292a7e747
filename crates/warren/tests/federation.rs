//! Federation (issue 8) against a real RabbitMQ: each test starts a private broker on loopback
//! (`scripts/rabbitmq-instance.sh`) and two Warren kernels, `alpha` and `beta`, each with its
//! own state directory, whose environments run `warren-fed-peer` and report what they saw in
//! their logs. Every test leaves nothing behind: environments removed, kernels stopped, state
//! directories deleted, the broker and its epmd stopped.
//!
//! * 10,000 messages from an environment on alpha to one on beta while the broker, then the
//!   sending kernel, then the receiving kernel restart: all arrive, in order, once.
//! * Forged batches (unknown host, bad signature) and a sender outside `accept_from` are
//!   refused and audited, while a genuine message gets through (the positive control).
//! * A capability passed from alpha to beta works until its issuer revokes it, then the
//!   issuer refuses what comes through it (on quorum queues).
//! * With the broker down from the start, both kernels say it is unreachable, sends are
//!   accepted into the outbox, and everything arrives once the broker comes.
//! * `send-many` (SendBatch frames) to a remote mailbox delivers every body, in order, once;
//!   a validly signed message whose body is over `MAX_BODY` is refused and audited by the
//!   receiving host, while the message after it in the same batch is delivered.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warren_link::amqp::{BrokerConfig, Command as LinkCommand, Driver, Event, QueueType};
use warren_link::wire::{Batch, Envelope, seal_batch};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/rabbitmq-instance.sh"
);

fn warren_bin() -> &'static str {
    env!("CARGO_BIN_EXE_warren")
}

fn peer() -> &'static Path {
    common::workspace_bin("warren-bench", "warren-fed-peer")
}

/// A private RabbitMQ node, stopped (and its files removed) on drop.
struct Broker {
    dir: PathBuf,
    port: u16,
}

impl Broker {
    /// A node's place (port, directory), not started yet.
    fn new(slot: u16) -> Broker {
        // Three ports per node (AMQP, epmd, distribution), four per slot, eight slots per
        // test process, below the ephemeral range.
        let port = 21000 + (std::process::id() % 300) as u16 * 32 + slot * 4;
        let dir = std::env::temp_dir().join(format!("warren-fed-rmq-{port}"));
        Broker { dir, port }
    }

    fn start(slot: u16) -> Broker {
        let b = Broker::new(slot);
        b.boot();
        b
    }

    fn boot(&self) {
        let st = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(&self.dir)
            .arg(self.port.to_string())
            .status()
            .unwrap();
        assert!(st.success(), "the broker did not start");
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// A bare driver that publishes to this broker as `host` would (the tests' forger).
    fn publisher(&self, host: &str) -> Driver {
        Driver::start(BrokerConfig {
            host: host.into(),
            url: self.url(),
            tls_ca: None,
            queue_type: QueueType::Classic,
            prefetch: 16,
        })
        .unwrap()
    }

    /// The names of the node's queues.
    fn queues(&self) -> Vec<String> {
        let out = Command::new("bash")
            .args([SCRIPT, "queues"])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "list_queues failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn restart(&self) {
        let st = Command::new("bash")
            .args([SCRIPT, "restart"])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(st.success(), "the broker did not restart");
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

/// One Warren host: a kernel (`warren up MANIFEST`) on its own state directory.
struct Host {
    name: &'static str,
    state: PathBuf,
    manifest: PathBuf,
    envs: Vec<String>,
    daemon: Option<Child>,
}

impl Host {
    fn new(dir: &Path, name: &'static str, broker: &Broker, spaces: &str, envs: &[&str]) -> Host {
        Host::with(dir, name, broker, "", spaces, envs)
    }

    /// A host running one environment `env` of the peer program: `peer ARGS`, with `extra`
    /// lines in its `[space]` table (`binary_space`).
    fn single(
        dir: &Path,
        name: &'static str,
        broker: &Broker,
        env: &str,
        args: &str,
        extra: &str,
    ) -> Host {
        Host::new(dir, name, broker, &binary_space(env, args, extra), &[env])
    }

    /// A host whose `[host]` table has `extra` lines too.
    fn with(
        dir: &Path,
        name: &'static str,
        broker: &Broker,
        extra: &str,
        spaces: &str,
        envs: &[&str],
    ) -> Host {
        let state = PathBuf::from(format!("/run/warren-fed-{}-{name}", broker.port));
        let _ = std::fs::remove_dir_all(&state);
        let manifest = dir.join(format!("{name}.toml"));
        let text = format!(
            "[host]\nname = \"{name}\"\nbroker = \"{}\"\nkey = \"keys/{name}.key\"\n\
             trusted_keys = \"trusted\"\n{extra}\n\n{spaces}",
            broker.url()
        );
        std::fs::write(&manifest, text).unwrap();
        Host {
            name,
            state,
            manifest,
            envs: envs.iter().map(|s| s.to_string()).collect(),
            daemon: None,
        }
    }

    fn warren(&self) -> Command {
        let mut c = Command::new(warren_bin());
        c.env("WARREN_STATE_DIR", &self.state);
        c
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.with_extension("log"))
            .unwrap();
        let child = self
            .warren()
            .arg("up")
            .arg(&self.manifest)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let sock = self.state.join("kernel.sock");
        wait_until(Duration::from_secs(20), "the kernel to listen", || {
            sock.exists() && self.daemon_log().contains("kernel ready")
        });
    }

    /// SIGTERM, as systemd stops it.
    fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let pid = rustix::process::Pid::from_raw(d.id() as i32).unwrap();
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let _ = d.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        // A marker so that `start` waits for this kernel's readiness, not the last one's.
        let log = self.state.with_extension("log");
        let old = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::write(&log, old.replace("kernel ready", "kernel was ready")).unwrap();
        self.start();
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default()
    }

    fn env_log(&self, env: &str) -> String {
        std::fs::read_to_string(self.state.join("logs").join(format!("{env}.log")))
            .unwrap_or_default()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_log(&self, env: &str, needle: &str, secs: u64) {
        let what = format!("{needle:?} in {}'s log on {}", env, self.name);
        wait_until(Duration::from_secs(secs), &what, || {
            self.env_log(env).contains(needle)
        });
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for e in &self.envs {
            let _ = self
                .warren()
                .args(["rm", "-f", e])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- kernel {} ---\n{}", self.name, self.daemon_log());
            for e in &self.envs {
                let log = self.env_log(e);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!(
                    "--- {e}@{} (last lines) ---\n{}",
                    self.name,
                    tail.join("\n")
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_file(self.state.with_extension("log"));
    }
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A working directory with both hosts' keys and the trusted-keys file.
/// The signing key `keys_for` made for `host` under DIR/keys.
fn host_key(dir: &Path, host: &str) -> warren_link::SigningKey {
    warren_link::trust::load_or_create_host_key(&dir.join("keys").join(format!("{host}.key")))
        .unwrap()
}

fn keys(dir: &Path) {
    keys_for(dir, &["alpha", "beta"]);
}

/// Host keys for `hosts` under DIR/keys, all of them in DIR/trusted.
fn keys_for(dir: &Path, hosts: &[&str]) {
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    let mut trusted = String::new();
    for h in hosts {
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

fn name(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

fn binary_space(env: &str, args: &str, extra: &str) -> String {
    let p = peer().display().to_string();
    format!("[space.{env}]\nimage = {{ binary = \"{p}\" }}\ncommand = [\"{p}\", {args}]\n{extra}\n")
}

#[test]
fn ten_thousand_messages_survive_broker_and_both_kernel_restarts_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(0);
    let (web, sink) = (name("fweb"), name("fsink"));
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"10000\", \"3000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    let mut alpha = Host::single(
        dir.path(),
        "alpha",
        &broker,
        &web,
        &format!("\"send\", \"{sink}@beta\", \"10000\", \"50\", \"40\""),
        &format!("may_send = [\"{sink}@beta\"]"),
    );
    beta.start();
    alpha.start();

    // The broker restarts once messages flow; the sender keeps sending into its outbox.
    alpha.wait_log(&web, "SENDING 1000", 60);
    broker.restart();
    // The sending kernel restarts midway through what is left.
    alpha.wait_log(&web, "SENDING 5000", 60);
    alpha.restart();
    // The receiving kernel restarts while messages still arrive.
    beta.wait_log(&sink, "AT 7000", 90);
    beta.restart();

    beta.wait_log(&sink, "DONE", 120);
    let log = beta.env_log(&sink);
    let done = log.lines().find(|l| l.starts_with("DONE")).unwrap();
    assert!(
        done.starts_with(&format!(
            "DONE received=10000 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{done}\n{}",
        log.lines()
            .filter(|l| l.starts_with("REPEAT") || l.starts_with("GAP"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(alpha.env_log(&web).contains("SENT 10000"));
    // Each restart was really seen by the kernels.
    assert!(alpha.daemon_log().contains("the broker is unreachable"));
    assert!(alpha.daemon_log().contains("kernel was ready"));
    assert!(beta.daemon_log().contains("kernel was ready"));
}

/// Publishes a batch straight to beta's queue, as a host that holds `key` and calls itself
/// `from_host` would.
fn publish(driver: &Driver, seq: u64, batch: Batch, key: &warren_link::SigningKey) {
    let bytes = seal_batch(&batch, key);
    driver.send(LinkCommand::Publish {
        dest: "beta".into(),
        seq,
        bytes,
    });
}

#[test]
fn forged_and_unauthorized_messages_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(1);
    let sink = name("gsink");
    let web = name("gweb");
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"1\", \"4000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    beta.start();

    let alpha_key = host_key(dir.path(), "alpha");
    let mallory_key = warren_link::SigningKey::from_bytes(&[7; 32]);
    let driver = broker.publisher("mallory");
    let batch = |from_host: &str, epoch: u64, from_env: &str, body: &str| Batch {
        from_host: from_host.into(),
        to_host: "beta".into(),
        epoch,
        seq: 1,
        messages: vec![Envelope {
            to: sink.clone(),
            from_env: from_env.into(),
            body: body.as_bytes().to_vec(),
            ..Envelope::default()
        }],
    };
    // Unknown host; a known host's name with another key; the right key but a sender the
    // policy does not name; then the genuine message (the positive control).
    publish(&driver, 1, batch("mallory", 1, &web, "666"), &mallory_key);
    publish(&driver, 2, batch("alpha", 2, &web, "667"), &mallory_key);
    publish(&driver, 3, batch("alpha", 3, "intruder", "668"), &alpha_key);
    // Genuine batches whose fields break the wire rules (federation.md, "Message fields"): a
    // sender that is not an environment name — empty, with `@` (which a policy or an
    // application splitting at the first `@` would misread), the attestation mailbox's
    // name — and a `to` that is not a mailbox name. Each is refused at once, not presented
    // as a sender or held for a mailbox that can never exist.
    publish(&driver, 5, batch("alpha", 5, "", "669"), &alpha_key);
    let at = format!("{web}@alpha");
    publish(&driver, 6, batch("alpha", 6, &at, "670"), &alpha_key);
    publish(
        &driver,
        7,
        batch("alpha", 7, "warren.attest", "671"),
        &alpha_key,
    );
    let mut bad_to = batch("alpha", 8, &web, "672");
    bad_to.messages[0].to = format!("{sink}@beta");
    publish(&driver, 8, bad_to, &alpha_key);
    // Capabilities passed along must be the sending host's own tokens, signed with its key and
    // bound to the receiving environment: one signed by another key, one bound elsewhere.
    let token = |bearer: &str, key: &warren_link::SigningKey| {
        warren_link::wire::seal_token(
            &warren_link::wire::Token {
                issuer: "alpha".into(),
                id: 1,
                target: web.clone(),
                rights: 1,
                uses: None,
                bearer: bearer.into(),
            },
            key,
        )
    };
    let mut bad_sig = batch("alpha", 9, &web, "673");
    bad_sig.messages[0].caps = vec![token(&format!("{sink}@beta"), &mallory_key)];
    publish(&driver, 9, bad_sig, &alpha_key);
    let mut elsewhere = batch("alpha", 10, &web, "674");
    elsewhere.messages[0].caps = vec![token("someone@beta", &alpha_key)];
    publish(&driver, 10, elsewhere, &alpha_key);
    // Messages to the attestation mailbox outside the documented shape: a request without
    // its correlation, one carrying a capability, one without the kind header. Refused and
    // audited, not answered.
    let attest = |epoch: u64, correlation: Option<u64>, kind: Option<&str>, caps: Vec<Vec<u8>>| {
        let mut b = batch("alpha", epoch, "warren.attest", "");
        let m = &mut b.messages[0];
        m.to = "warren.attest".into();
        m.body = vec![1; 32];
        m.correlation = correlation;
        m.headers = kind
            .map(|k| vec![("warren-attest".to_owned(), k.as_bytes().to_vec())])
            .unwrap_or_default();
        m.caps = caps;
        b
    };
    publish(
        &driver,
        11,
        attest(11, None, Some("request"), Vec::new()),
        &alpha_key,
    );
    let cap = token(&format!("{sink}@beta"), &alpha_key);
    publish(
        &driver,
        12,
        attest(12, Some(5), Some("request"), vec![cap]),
        &alpha_key,
    );
    publish(
        &driver,
        13,
        attest(13, Some(6), None, Vec::new()),
        &alpha_key,
    );
    publish(&driver, 4, batch("alpha", 4, &web, "1"), &alpha_key);
    let mut confirmed = 0;
    wait_until(Duration::from_secs(30), "publisher confirms", || {
        while let Some(ev) = driver.poll() {
            if let Event::Confirmed { .. } = ev {
                confirmed += 1;
            }
        }
        confirmed == 13
    });

    beta.wait_log(&sink, "DONE", 60);
    let log = beta.env_log(&sink);
    assert!(
        log.contains(&format!(
            "DONE received=1 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{log}"
    );
    let audit = beta.audit();
    let inbound: Vec<_> = audit.iter().filter(|r| r["op"] == "inbound").collect();
    let has = |code: &str, reason: &str| {
        inbound
            .iter()
            .any(|r| r["code"] == code && r["reason"].as_str().unwrap_or("").contains(reason))
    };
    assert!(
        has("forged", "\"mallory\" is not in the trusted keys"),
        "{inbound:#?}"
    );
    assert!(
        has("forged", "bad signature on a batch from host \"alpha\""),
        "{inbound:#?}"
    );
    assert!(
        has(
            "no-right",
            &format!("intruder@alpha is not in {sink}'s accept_from")
        ),
        "{inbound:#?}"
    );
    for (what, why) in [
        ("from_env \"\"", "it is empty"),
        (&format!("from_env {at:?}"), "outside [a-z0-9-]"),
        ("from_env \"warren.attest\"", "outside [a-z0-9-]"),
        (&format!("to \"{sink}@beta\""), "outside [a-z0-9-]"),
    ] {
        assert!(
            inbound.iter().any(|r| r["code"] == "bad-request"
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.contains(what) && t.contains(why))),
            "{what}: {inbound:#?}"
        );
    }
    assert!(
        has("forged", "bad signature on a token from host \"alpha\""),
        "{inbound:#?}"
    );
    assert!(
        has(
            "forged",
            &format!("token 1 of alpha is bound to someone@beta, not to {sink}@beta")
        ),
        "{inbound:#?}"
    );
    for why in [
        "a quote request needs a correlation",
        "a message to warren.attest carries no via, caps or reply",
        "no warren-attest header (request, quote or error)",
    ] {
        assert!(has("bad-request", why), "{why}: {inbound:#?}");
    }
    assert_eq!(inbound.len(), 12, "{inbound:#?}");
    // `env` is the receiving environment, or `-` where the message names none (batch-level
    // refusals, a `to` that is not a mailbox name).
    for r in &inbound {
        let reason = r["reason"].as_str().unwrap_or("");
        let to_attest = r["target"]
            .as_str()
            .unwrap_or("")
            .ends_with("-> warren.attest");
        let want = if to_attest
            || reason.contains("trusted keys")
            || reason.contains("bad signature on a batch")
            || reason.starts_with("to ")
        {
            "-"
        } else {
            sink.as_str()
        };
        assert_eq!(r["env"], want, "{r:#?}");
    }
}

/// A host sends nothing to a host whose key it does not trust: the queue of an untrusted name
/// is anyone's to read. The send is refused `revoked` and audited; the trusted host still gets
/// its message (the control).
#[test]
fn nothing_is_sent_to_a_host_whose_key_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(5);
    let (web, sink) = (name("uweb"), name("usink"));
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"1\", \"1000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    let zeta = name("uzeta");
    let mut alpha = Host::new(
        dir.path(),
        "alpha",
        &broker,
        &(binary_space(
            &zeta,
            "\"send\", \"x@zeta\", \"1\"",
            "may_send = [\"x@zeta\"]",
        ) + &binary_space(
            &web,
            &format!("\"send\", \"{sink}@beta\", \"1\""),
            &format!("may_send = [\"{sink}@beta\"]"),
        )),
        &[&zeta, &web],
    );
    beta.start();
    alpha.start();
    beta.wait_log(&sink, "DONE", 60);
    assert!(
        beta.env_log(&sink).contains(&format!(
            "DONE received=1 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{}",
        beta.env_log(&sink)
    );
    wait_until(Duration::from_secs(30), "the refused send's audit", || {
        alpha
            .audit()
            .iter()
            .any(|r| r["code"] == "revoked" && r["target"] == "x@zeta")
    });
    let log = alpha.env_log(&zeta);
    assert!(
        log.contains("zeta is not in this host's trusted keys"),
        "{log}"
    );
    // Nothing for zeta reached the broker: its queue was never declared.
    let queues = broker.queues();
    assert!(!queues.iter().any(|q| q == "warren.zeta"), "{queues:?}");
    assert!(queues.iter().any(|q| q == "warren.beta"), "{queues:?}");
}

#[test]
fn a_capability_passed_across_hosts_is_revoked_by_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(2);
    let (web, db) = (name("cweb"), name("cdb"));
    // Quorum queues, as on a cluster (a one-node cluster here).
    let quorum = "queue_type = \"quorum\"";
    let mut beta = Host::with(
        dir.path(),
        "beta",
        &broker,
        quorum,
        &binary_space(
            &db,
            "\"grantee\"",
            &format!("accept_from = [\"{web}@alpha\"]"),
        ),
        &[&db],
    );
    let mut alpha = Host::with(
        dir.path(),
        "alpha",
        &broker,
        quorum,
        &binary_space(
            &web,
            &format!("\"grantor\", \"{db}@beta\""),
            &format!("may_send = [\"{db}@beta\"]"),
        ),
        &[&web],
    );
    beta.start();
    alpha.start();
    alpha.wait_log(&web, "END", 60);
    beta.wait_log(&db, "END", 10);
    let w = alpha.env_log(&web);
    // Before revocation the capability works, with the badge its grantor set; the sender is
    // the remote environment as the kernels saw it.
    assert!(
        w.contains(&format!("GOT one from={db}@beta badge=7")),
        "{w}"
    );
    assert!(w.contains("REVOKED"), "{w}");
    let d = beta.env_log(&db);
    assert!(
        d.contains(&format!("GOT here is a capability from={web}@alpha caps=1")),
        "{d}"
    );
    assert!(d.contains("SENT two"), "{d}");
    // After it, what comes through it is refused by the issuer, and audited there.
    assert!(!w.contains("AFTER-REVOKE"), "{w}");
    let refused: Vec<_> = alpha
        .audit()
        .into_iter()
        .filter(|r| r["op"] == "inbound" && r["code"] == "revoked")
        .collect();
    assert_eq!(refused.len(), 1, "{:#?}", alpha.audit());
}

#[test]
fn sends_wait_in_the_outbox_while_the_broker_is_unreachable_and_resume_when_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::new(3);
    let (web, sink) = (name("oweb"), name("osink"));
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"500\", \"1000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    let mut alpha = Host::single(
        dir.path(),
        "alpha",
        &broker,
        &web,
        &format!("\"send\", \"{sink}@beta\", \"500\", \"50\""),
        &format!("may_send = [\"{sink}@beta\"]"),
    );
    beta.start();
    alpha.start();
    // No broker: the kernels say so, and sends are accepted into the outbox all the same.
    alpha.wait_log(&web, "SENT 500", 30);
    let unreachable = format!(
        "federation: the broker is unreachable: broker amqp://guest:***@127.0.0.1:{}/%2f: \
         cannot connect",
        broker.port
    );
    wait_until(
        Duration::from_secs(10),
        "the unreachable-broker error",
        || alpha.daemon_log().contains(&unreachable) && beta.daemon_log().contains(&unreachable),
    );
    assert!(!beta.env_log(&sink).contains("DONE"));
    // The broker comes: everything is delivered, once.
    broker.boot();
    beta.wait_log(&sink, "DONE", 60);
    let log = beta.env_log(&sink);
    assert!(
        log.contains(&format!(
            "DONE received=500 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{log}"
    );
}

#[test]
fn a_bad_federation_setup_is_named_and_leaves_no_kernel_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = PathBuf::from(format!("/run/warren-fed-bad-{}", std::process::id()));
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "[host]\nname = \"alpha\"\nbroker = \"amqp://127.0.0.1:1/\"\ntrusted_keys = \"nope\"\n",
    )
    .unwrap();
    let out = Command::new(warren_bin())
        .env("WARREN_STATE_DIR", &state)
        .arg("up")
        .arg(&manifest)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let (sock, link) = (
        state.join("kernel.sock").exists(),
        state.join("link").exists(),
    );
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(out.status.code(), Some(125), "{err}");
    let expect = format!(
        "warren: error: start federation: the trusted keys: cannot use {}: No such file or \
         directory (os error 2)",
        dir.path().join("nope").display()
    );
    assert!(err.contains(&expect), "{err}");
    assert!(!sock, "the control socket was left behind");
    assert!(!link, "a key or journal was created");
}

#[test]
fn send_many_to_a_remote_mailbox_delivers_in_order_and_an_oversize_body_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(4);
    let (web, sink, big) = (name("mweb"), name("msink"), name("mbig"));
    let spaces = binary_space(
        &sink,
        "\"recv\", \"3000\", \"1000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    ) + &binary_space(
        &big,
        "\"recv\", \"1\", \"1000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    let mut beta = Host::new(dir.path(), "beta", &broker, &spaces, &[&sink, &big]);
    let mut alpha = Host::single(
        dir.path(),
        "alpha",
        &broker,
        &web,
        &format!("\"send-many\", \"{sink}@beta\", \"3000\", \"100\""),
        &format!("may_send = [\"{sink}@beta\"]"),
    );
    beta.start();
    alpha.start();
    alpha.wait_log(&web, "SENT-MANY 3000", 60);
    beta.wait_log(&sink, "DONE", 60);
    let log = beta.env_log(&sink);
    assert!(
        log.contains(&format!(
            "DONE received=3000 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{log}"
    );
    // Nothing was refused or lost on either side.
    assert!(alpha.audit().is_empty(), "{:#?}", alpha.audit());

    // A batch signed with alpha's key (so it passes every check but the size): a body one
    // byte over MAX_BODY, then a genuine message.
    let alpha_key = host_key(dir.path(), "alpha");
    let driver = broker.publisher("alpha-test");
    let envelope = |body: Vec<u8>| Envelope {
        to: big.clone(),
        from_env: web.clone(),
        body,
        ..Envelope::default()
    };
    let batch = Batch {
        from_host: "alpha".into(),
        to_host: "beta".into(),
        epoch: u64::MAX,
        seq: 1,
        messages: vec![
            envelope(vec![b'9'; warren_proto::MAX_BODY + 1]),
            envelope(b"1".to_vec()),
        ],
    };
    publish(&driver, 1, batch, &alpha_key);
    wait_until(Duration::from_secs(30), "the publisher confirm", || {
        std::iter::from_fn(|| driver.poll()).any(|ev| matches!(ev, Event::Confirmed { .. }))
    });
    beta.wait_log(&big, "DONE", 60);
    let log = beta.env_log(&big);
    assert!(
        log.contains(&format!(
            "DONE received=1 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{log}"
    );
    let refused: Vec<_> = beta
        .audit()
        .into_iter()
        .filter(|r| r["op"] == "inbound" && r["code"] == "too-large")
        .collect();
    assert_eq!(refused.len(), 1, "{:#?}", beta.audit());
    assert_eq!(refused[0]["target"], format!("{web}@alpha -> {big}"));
    // The record's environment is the receiving one, as for every inbound refusal.
    assert_eq!(refused[0]["env"], big.as_str());
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("the body is {} bytes", warren_proto::MAX_BODY + 1)),
        "{:#?}",
        refused[0]
    );
}

/// A destination the broker refuses (here its queue was declared by someone else as a quorum
/// queue, so the classic declaration fails with PRECONDITION_FAILED) is set aside and retried:
/// it does not stall the link. Before, every refusal tore the connection down and the
/// republish in (host, seq) order met the refused host first on every reconnection, so no
/// later host received anything.
#[test]
fn a_host_the_broker_refuses_does_not_stall_the_others() {
    let dir = tempfile::tempdir().unwrap();
    keys_for(dir.path(), &["able", "alpha", "beta"]);
    let broker = Broker::start(6);
    // "able" sorts before "beta". Its queue, declared as quorum by another party.
    let squatter = Driver::start(BrokerConfig {
        host: "able".into(),
        url: broker.url(),
        tls_ca: None,
        queue_type: QueueType::Quorum,
        prefetch: 1,
    })
    .unwrap();
    wait_until(Duration::from_secs(30), "the quorum queue", || {
        matches!(squatter.poll(), Some(Event::Connected { .. }))
    });
    drop(squatter);

    let (first, web, sink) = (name("rfirst"), name("rweb"), name("rsink"));
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"1\", \"1000\"",
        &format!("accept_from = [\"{web}@alpha\"]"),
    );
    let mut alpha = Host::new(
        dir.path(),
        "alpha",
        &broker,
        &binary_space(
            &first,
            "\"send\", \"x@able\", \"1\"",
            "may_send = [\"x@able\"]",
        ),
        &[&first, &web],
    );
    beta.start();
    alpha.start();
    wait_until(Duration::from_secs(30), "the broker's refusal", || {
        alpha
            .daemon_log()
            .contains("the broker refuses batches for host able")
    });
    // Now a message for beta, from an environment that starts after the refusal.
    let more = std::fs::read_to_string(&alpha.manifest).unwrap()
        + &binary_space(
            &web,
            &format!("\"send\", \"{sink}@beta\", \"1\""),
            &format!("may_send = [\"{sink}@beta\"]"),
        );
    std::fs::write(&alpha.manifest, more).unwrap();
    let st = alpha
        .warren()
        .arg("apply")
        .arg(&alpha.manifest)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    beta.wait_log(&sink, "DONE", 60);
    assert!(
        beta.env_log(&sink).contains(&format!(
            "DONE received=1 repeats=0 gaps=0 from={web}@alpha "
        )),
        "{}",
        beta.env_log(&sink)
    );
    // The refused batch is kept, not dropped: it is tried again, and said so each time.
    let log = alpha.daemon_log();
    assert!(log.contains("PRECONDITION_FAILED"), "{log}");
    assert!(log.contains("kept in the outbox and tried again"), "{log}");
}

/// A batch that never arrives (here: never published, as if deleted from the queue) holds the
/// batches after it only for `[host] gap_wait`: then the gap is audited `lost`, by number, and
/// the held batch is delivered; the missing batch, when it turns up after all, is delivered
/// late rather than dropped. Before, the held batches waited for ever and, with the 256
/// unacknowledged batches every sender shares, could stop all federation into the host.
#[test]
fn a_gap_that_never_fills_is_reported_and_does_not_hold_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(7);
    let (web, sink) = (name("gweb"), name("gsink"));
    let mut beta = Host::with(
        dir.path(),
        "beta",
        &broker,
        "gap_wait = 2",
        &binary_space(
            &sink,
            "\"recv\", \"3\", \"20000\"",
            &format!("accept_from = [\"{web}@alpha\"]"),
        ),
        &[&sink],
    );
    beta.start();
    let alpha_key = host_key(dir.path(), "alpha");
    let driver = broker.publisher("alpha-test");
    let epoch = 77;
    let batch = |seq: u64, body: &str| Batch {
        from_host: "alpha".into(),
        to_host: "beta".into(),
        epoch,
        seq,
        messages: vec![Envelope {
            to: sink.clone(),
            from_env: web.clone(),
            body: body.as_bytes().to_vec(),
            ..Envelope::default()
        }],
    };
    publish(&driver, 1, batch(1, "1"), &alpha_key);
    publish(&driver, 3, batch(3, "3"), &alpha_key);
    // Batch 3 is delivered once the 2 s wait for batch 2 is over.
    beta.wait_log(&sink, "GAP 2..3", 30);
    let lost: Vec<_> = beta
        .audit()
        .into_iter()
        .filter(|r| r["code"] == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert_eq!(
        lost[0]["target"],
        format!("batch 2 from alpha (epoch {epoch})")
    );
    // Batch 2 after all: delivered, late.
    publish(&driver, 2, batch(2, "2"), &alpha_key);
    beta.wait_log(&sink, "REPEAT 2 (after the end)", 30);
    beta.wait_log(&sink, "DONE", 60);
    let log = beta.env_log(&sink);
    assert!(log.contains("DONE received=3 repeats=1 gaps=1"), "{log}");
}

/// A peer's flood of messages this host refuses (here 100 with a `to` that is no mailbox name)
/// passes the per-environment audit limit like the kernel's own refusals: a few records, then
/// one aggregate that counts the rest. Nothing is dropped uncounted.
#[test]
fn a_peers_flood_of_refused_messages_is_aggregated_in_the_audit() {
    let dir = tempfile::tempdir().unwrap();
    keys(dir.path());
    let broker = Broker::start(3);
    let sink = name("fsink");
    let mut beta = Host::single(
        dir.path(),
        "beta",
        &broker,
        &sink,
        "\"recv\", \"1\", \"1000\"",
        "accept_from = [\"*@alpha\"]",
    );
    beta.start();
    let alpha_key = host_key(dir.path(), "alpha");
    let driver = broker.publisher("alpha-test");
    let bad = Envelope {
        to: "NOT A MAILBOX".into(),
        from_env: "web".into(),
        body: b"x".to_vec(),
        ..Envelope::default()
    };
    let mut messages = vec![bad; 100];
    // The last one is genuine: when it arrives, every refusal before it was decided.
    messages.push(Envelope {
        to: sink.clone(),
        from_env: "web".into(),
        body: b"1".to_vec(),
        ..Envelope::default()
    });
    let batch = Batch {
        from_host: "alpha".into(),
        to_host: "beta".into(),
        epoch: 5,
        seq: 1,
        messages,
    };
    publish(&driver, 1, batch, &alpha_key);
    beta.wait_log(&sink, "DONE", 60);
    let refused = |audit: &[serde_json::Value]| -> Vec<serde_json::Value> {
        audit
            .iter()
            .filter(|r| r["op"] == "inbound" && r["code"] == "bad-request")
            .cloned()
            .collect()
    };
    let first = refused(&beta.audit());
    assert!(
        (1..=10).contains(&first.len()),
        "{} records: {first:#?}",
        first.len()
    );
    // The window (10 s) closes: the aggregate counts the rest, so all 100 are accounted for.
    wait_until(Duration::from_secs(30), "the aggregate record", || {
        refused(&beta.audit()).iter().any(|r| r["count"].is_u64())
    });
    let all = refused(&beta.audit());
    let counted: u64 = all.iter().map(|r| r["count"].as_u64().unwrap_or(1)).sum();
    assert_eq!(counted, 100, "{all:#?}");
}
