//! `warren attest` (quotes over the event log and their verification) and `warren ca` (the
//! Privacy CA). The work is done by `warren-attest`; this module reads and writes files and
//! owns the exit codes: `verify` exits 0 for an accepted quote, 1 for a rejected one (with the
//! reason's code), 125 when it cannot check at all.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use warren_attest::config::DEFAULT_TPM;
use warren_attest::verify::{Options, Policy};
use warren_attest::{RootConfig, RootKind};

use crate::cli::{
    AttestCommand, AttestPolicyCommand, CaCommand, PolicyLearnArgs, QuoteArgs, VerifyArgs,
};

/// Saves the root of trust for the state directory (`auto` detects).
pub fn configure_root(state_dir: &Path, root: &str, tpm: Option<String>) -> anyhow::Result<()> {
    configure_root_with(state_dir, root, tpm, None, None, false)
}

/// [`configure_root`], naming the UEFI event log TPM quotes carry.
pub fn configure_root_with(
    state_dir: &Path,
    root: &str,
    tpm: Option<String>,
    boot_log: Option<PathBuf>,
    ima_log: Option<PathBuf>,
    reprovision: bool,
) -> anyhow::Result<()> {
    let mut config = match root {
        "auto" => RootConfig::detect(),
        other => {
            // `auto` is a choice of the CLI, not a root: name all three here.
            let root: RootKind = other.parse().map_err(|_| {
                anyhow::anyhow!("unknown root of trust {other:?}: expected tpm, software or auto")
            })?;
            let (tpm, agent) = match root {
                RootKind::Tpm => (
                    Some(tpm.unwrap_or_else(|| DEFAULT_TPM.to_owned())),
                    warren_attest::tpm::agent_path(),
                ),
                RootKind::Software => (None, None),
            };
            RootConfig {
                root,
                tpm,
                agent,
                boot_log: None,
                ima_log: None,
            }
        }
    };
    if reprovision && config.root != RootKind::Tpm {
        bail!("--reprovision: only a TPM root has an attestation key bound to PCRs");
    }
    if let Some(p) = boot_log {
        if config.root != RootKind::Tpm {
            bail!(
                "--boot-log {}: a software root has no PCRs to check a boot log against; it \
                 needs --root tpm",
                p.display()
            );
        }
        std::fs::read(&p)
            .map_err(anyhow::Error::from)
            .and_then(|b| {
                warren_attest::evidence::bootlog::parse(&b)?;
                Ok(())
            })
            .with_context(|| format!("--boot-log {}", p.display()))?;
        config.boot_log = Some(std::path::absolute(&p).unwrap_or(p));
    }
    if let Some(p) = ima_log {
        if config.root != RootKind::Tpm {
            bail!(
                "--ima-log {}: a software root has no PCR 10 to check an IMA list against; it \
                 needs --root tpm",
                p.display()
            );
        }
        std::fs::read(&p)
            .map_err(anyhow::Error::from)
            .and_then(|b| {
                warren_attest::evidence::ima::parse(&b)?;
                Ok(())
            })
            .with_context(|| format!("--ima-log {}", p.display()))?;
        config.ima_log = Some(std::path::absolute(&p).unwrap_or(p));
    }
    config
        .save(state_dir)
        .context("save the root of trust configuration")?;
    if config.root == RootKind::Tpm {
        warren_attest::tpm::TpmRoot::new(
            &state_dir.join("attest"),
            config.tpm.as_deref().unwrap_or(DEFAULT_TPM),
            config.agent.as_deref(),
        )
        .and_then(|t| {
            if reprovision {
                t.reprovision()
            } else {
                t.provision()
            }
        })
        .context("provision the TPM (attestation key and event log anchor)")?;
        if reprovision {
            // The new anchor starts unwritten: the old log no longer replays to it, so it is
            // kept aside (for the record) and the log starts over.
            let log = warren_attest::EventLog::new(state_dir).path();
            let old = log.with_extension("jsonl.before-reprovision");
            match std::fs::rename(&log, &old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("move {} aside", log.display())),
            }
        }
    }
    Ok(())
}

/// The root in use, for `warren doctor`.
pub fn root_summary(state_dir: &Path) -> Value {
    match RootConfig::resolve(state_dir) {
        Ok(c) => {
            let detail = match c.root {
                RootKind::Software => format!(
                    "key {}; quotes say `root: software` and verifiers must opt in",
                    state_dir.join("attest/software.key").display()
                ),
                RootKind::Tpm => c.tpm.clone().unwrap_or_else(|| DEFAULT_TPM.to_owned()),
            };
            json!({ "root": c.root.as_str(), "tpm": c.tpm, "detail": detail,
                    "boot_log": c.boot_log.as_ref().map(|p| p.display().to_string()) })
        }
        Err(e) => json!({ "root": null, "detail": format!("{e}") }),
    }
}

fn hex_arg(what: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(s).with_context(|| format!("{what} {s:?} is not hex"))
}

/// `warren attest ...`.
pub fn attest(state_dir: &Path, cmd: AttestCommand) -> anyhow::Result<i32> {
    match cmd {
        AttestCommand::Init(a) => {
            configure_root_with(
                state_dir,
                &a.root,
                a.tpm,
                a.boot_log,
                a.ima_log,
                a.reprovision,
            )?;
            println!(
                "{}",
                root_summary(state_dir)["root"].as_str().unwrap_or("?")
            );
            Ok(0)
        }
        AttestCommand::Quote(a) => quote(state_dir, a),
        AttestCommand::Verify(a) => verify(a),
        AttestCommand::Log => {
            let path = warren_attest::EventLog::new(state_dir).path();
            match std::fs::read_to_string(&path) {
                Ok(s) => print!("{s}"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
            }
            Ok(0)
        }
        AttestCommand::Policy(AttestPolicyCommand::Learn(a)) => learn(a),
        AttestCommand::Watch(a) => super::watch::watch(state_dir, a),
    }
}

/// `warren attest policy learn`: the `[boot]` table that accepts exactly this boot.
fn learn(a: PolicyLearnArgs) -> anyhow::Result<i32> {
    // From a quote, what Warren measured into PCR 15 is learnt too (the `[warren]` table).
    let mut warren_table = None;
    let bytes = match (&a.quote, &a.boot_log) {
        (Some(q), _) => {
            let text =
                std::fs::read_to_string(q).with_context(|| format!("read {}", q.display()))?;
            let quote: warren_attest::Quote =
                serde_json::from_str(&text).with_context(|| format!("quote {}", q.display()))?;
            let boot = quote
                .boot
                .with_context(|| format!("quote {} carries no boot state", q.display()))?;
            if !boot.warren_log.is_empty() {
                use warren_attest::evidence::selfpcr;
                let pcr = selfpcr::replay(&boot.warren_log);
                let facts = selfpcr::check(&boot.warren_log, &pcr).map_err(|f| {
                    anyhow::anyhow!(
                        "quote {}: warren_log ({}): {}",
                        q.display(),
                        f.code,
                        f.detail
                    )
                })?;
                warren_table = Some(selfpcr::WarrenPolicy::learn(&facts).to_toml());
            }
            match boot.event_log {
                Some(log) => Some(
                    hex::decode(log)
                        .with_context(|| format!("quote {}: boot.event_log", q.display()))?,
                ),
                // A host without measured boot (a VM with a vTPM, swtpm): the [warren] table
                // alone, if there is one.
                None if warren_table.is_some() => None,
                None => bail!(
                    "quote {} carries neither a UEFI event log nor Warren's PCR 15 records: \
                     nothing to learn",
                    q.display()
                ),
            }
        }
        (None, p) => {
            let p = p
                .clone()
                .unwrap_or_else(|| PathBuf::from(warren_attest::config::DEFAULT_BOOT_LOG));
            Some(
                std::fs::read(&p)
                    .with_context(|| format!("read the UEFI event log {}", p.display()))?,
            )
        }
    };
    let text = match bytes {
        Some(bytes) => {
            let log = warren_attest::evidence::bootlog::parse(&bytes)?;
            warren_attest::evidence::bootlog::BootPolicy::learn(&log.facts()).to_toml()
        }
        None => "# No [boot] table: the quote carries no UEFI event log (no measured boot).\n"
            .to_owned(),
    };
    let text = format!(
        "# Learnt by `warren attest policy learn`: review before use. Digests are SHA-256, hex.\n{text}{}",
        warren_table.unwrap_or_default()
    );
    match &a.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}

fn quote(state_dir: &Path, a: QuoteArgs) -> anyhow::Result<i32> {
    let nonce = hex_arg("--nonce", &a.nonce)?;
    if nonce.is_empty() {
        bail!("--nonce is empty: the verifier must choose a fresh nonce");
    }
    let data = a
        .data
        .as_deref()
        .map(|d| hex_arg("--data", d))
        .transpose()?
        .unwrap_or_default();
    let q = warren_attest::make_quote(state_dir, &nonce, a.env.as_deref(), &data)
        .context("make the quote")?;
    let text = serde_json::to_string_pretty(&q)?;
    match &a.out {
        Some(p) => {
            std::fs::write(p, text + "\n").with_context(|| format!("write {}", p.display()))?
        }
        None => println!("{text}"),
    }
    Ok(0)
}

fn verify(a: VerifyArgs) -> anyhow::Result<i32> {
    let nonce = hex_arg("--nonce", &a.nonce)?;
    let text =
        std::fs::read_to_string(&a.quote).with_context(|| format!("read {}", a.quote.display()))?;
    let ca_pem =
        std::fs::read_to_string(&a.ca).with_context(|| format!("read {}", a.ca.display()))?;
    let policy = match &a.policy {
        Some(p) => {
            let t = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
            Some(
                Policy::from_toml(&t)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("golden values {}", p.display()))?,
            )
        }
        None => None,
    };
    let crl = a
        .crl
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display())))
        .transpose()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let result = serde_json::from_str::<warren_attest::Quote>(&text)
        .map_err(|e| warren_attest::Rejection::Malformed(e.to_string()))
        .and_then(|q| {
            warren_attest::verify(
                &q,
                &Options {
                    nonce: &nonce,
                    ca_pem: &ca_pem,
                    allow_software: a.allow_software,
                    policy: policy.as_ref(),
                    now,
                    crl_pem: crl.as_deref(),
                },
            )
        });
    match result {
        Ok(v) => {
            if a.json {
                println!(
                    "{}",
                    json!({ "accepted": true, "root": v.root.as_str(),
                            "register": hex::encode(v.register), "records": v.records,
                            "subject": v.subject.as_ref().map(|(e, d)| json!({"env": e, "data": hex::encode(d)})),
                            "boot": v.boot, "warren": v.warren, "ima": v.ima, "outcomes": v.outcomes, "lineage": v.lineage })
                );
            } else {
                println!(
                    "accepted: root {}, {} records, register {}",
                    v.root,
                    v.records,
                    hex::encode(v.register)
                );
                if let Some((env, data)) = &v.subject {
                    println!("subject: environment {env}, data {}", hex::encode(data));
                    for a in v.lineage.iter().skip(1) {
                        println!("  spawned by: {} (record {})", a.name, a.recnum);
                    }
                    for a in &v.lineage {
                        if let Some(t) = &a.template {
                            println!("  {} was made from template {t}", a.name);
                        }
                        if let Some(p) = &a.unconfirmed_parent {
                            println!("  {}'s spawner {p} is not confirmed by the log", a.name);
                        }
                    }
                }
                for o in v.outcomes.iter().filter(|o| o.outcome == "refused") {
                    println!(
                        "refused: record {} ({}) was measured and never ran (record {})",
                        o.recnum,
                        o.name,
                        o.refused_by.unwrap_or(0)
                    );
                }
                match &v.boot {
                    Some(b) => println!(
                        "boot: secure boot {}, kernel {}, command line {:?}",
                        if b.secure_boot { "on" } else { "off" },
                        b.kernel.as_deref().unwrap_or("(none measured)"),
                        b.cmdline.as_deref().unwrap_or("")
                    ),
                    None => println!("boot: not shown (root: {})", v.root),
                }
                if let Some(w) = &v.warren {
                    println!(
                        "warren (PCR 15): binary {}, agent {}",
                        w.binary
                            .first()
                            .map(String::as_str)
                            .unwrap_or("(not measured)"),
                        w.agent
                            .first()
                            .map(String::as_str)
                            .unwrap_or("(not measured)")
                    );
                }
            }
            Ok(0)
        }
        Err(r) => {
            if a.json {
                println!(
                    "{}",
                    json!({ "accepted": false, "reason": r.code(), "detail": r.to_string() })
                );
            } else {
                eprintln!("warren: quote rejected ({}): {r}", r.code());
            }
            Ok(1)
        }
    }
}

/// `warren ca ...`.
pub fn ca(state_dir: &Path, cmd: CaCommand) -> anyhow::Result<i32> {
    match cmd {
        CaCommand::Init(a) => {
            // Every EK issuer is read and checked before the CA exists, so a bad one leaves
            // nothing behind.
            let ek_cas = a
                .ek_ca
                .iter()
                .map(|p| {
                    let pem = std::fs::read_to_string(p)
                        .with_context(|| format!("read --ek-ca {}", p.display()))?;
                    warren_attest::ca::PrivacyCa::check_ek_ca(&pem)
                        .with_context(|| format!("--ek-ca {}", p.display()))?;
                    Ok(pem)
                })
                .collect::<anyhow::Result<Vec<String>>>()?;
            let ca = warren_attest::ca::PrivacyCa::init(&a.dir).context("create the CA")?;
            for (i, pem) in ek_cas.iter().enumerate() {
                ca.trust_ek_ca(pem, &format!("ek-ca-{i}.pem"))
                    .context("trust the EK CA")?;
            }
            println!(
                "TPM issuing CA: {} (revocation list {})\nsoftware issuing CA: {} (revocation list {})",
                ca.issuer_cert_path(RootKind::Tpm).display(),
                ca.crl_path(RootKind::Tpm).display(),
                ca.issuer_cert_path(RootKind::Software).display(),
                ca.crl_path(RootKind::Software).display()
            );
            Ok(0)
        }
        CaCommand::Request(a) => {
            let req = warren_attest::enroll::make_request(state_dir, &host_name(a.host))
                .context("make the enrollment request")?;
            write_json(&a.out, &req)?;
            Ok(0)
        }
        CaCommand::Challenge(a) => {
            let req: warren_attest::enroll::EnrollRequest = read_json(&a.request)?;
            let warren_attest::enroll::EnrollRequest::Tpm { request } = req else {
                bail!(
                    "{}: a software request has no challenge; run `warren ca certify`",
                    a.request.display()
                );
            };
            let c = warren_attest::enroll::ca_make_challenge(&a.dir, &request)
                .with_context(|| format!("challenge {}", a.request.display()))?;
            write_json(&a.out, &c)?;
            Ok(0)
        }
        CaCommand::Answer(a) => {
            let c: warren_attest::enroll::Challenge = read_json(&a.challenge)?;
            let ans = warren_attest::enroll::make_answer(state_dir, &c)
                .with_context(|| format!("answer {}", a.challenge.display()))?;
            write_json(&a.out, &ans)?;
            Ok(0)
        }
        CaCommand::Certify(a) => {
            let req: warren_attest::enroll::EnrollRequest = read_json(&a.request)?;
            let ans: Option<warren_attest::enroll::Answer> =
                a.answer.as_deref().map(read_json).transpose()?;
            let pem = warren_attest::enroll::ca_certify(&a.dir, &req, ans.as_ref())
                .with_context(|| format!("certify {}", a.request.display()))?;
            std::fs::write(&a.out, pem).with_context(|| format!("write {}", a.out.display()))?;
            Ok(0)
        }
        CaCommand::Install(a) => {
            let pem = std::fs::read_to_string(&a.cert)
                .with_context(|| format!("read {}", a.cert.display()))?;
            warren_attest::enroll::install_certificate(state_dir, &pem).context("install")?;
            println!(
                "installed: {}",
                warren_attest::quote::certificate_path(state_dir).display()
            );
            Ok(0)
        }
        CaCommand::Revoke(a) => {
            let pem = std::fs::read_to_string(&a.cert)
                .with_context(|| format!("read {}", a.cert.display()))?;
            let ca = warren_attest::ca::PrivacyCa::new(&a.dir);
            let (root, serial) = ca
                .revoke(&pem)
                .with_context(|| format!("revoke {}", a.cert.display()))?;
            println!(
                "revoked: serial {serial} of the {root} issuing CA; publish {}",
                ca.crl_path(root).display()
            );
            Ok(0)
        }
        CaCommand::Crl(a) => {
            let ca = warren_attest::ca::PrivacyCa::new(&a.dir);
            for root in [RootKind::Tpm, RootKind::Software] {
                let p = ca
                    .write_crl(root)
                    .with_context(|| format!("write the {root} revocation list"))?;
                println!("{}", p.display());
            }
            Ok(0)
        }
        CaCommand::Enroll(a) => {
            let host = host_name(a.host);
            let (root, _) =
                warren_attest::enroll::enroll_local(state_dir, &a.dir, &host).context("enroll")?;
            println!(
                "enrolled: {root} attestation key of {host}, certificate {}",
                warren_attest::quote::certificate_path(state_dir).display()
            );
            Ok(0)
        }
    }
}

fn host_name(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into())
    })
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not the expected document", p.display()))
}

fn write_json<T: serde::Serialize>(p: &Path, v: &T) -> anyhow::Result<()> {
    std::fs::write(p, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("write {}", p.display()))
}
