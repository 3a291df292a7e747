//! `warren attest watch`: continuous verification of peer hosts through the federation.
//!
//! Every interval, for each `--host` at once: a fresh 32-byte nonce; an `attest-peer` request to
//! this host's kernel, which carries it to the peer's attestation mailbox and hands back the
//! peer's host quote (or an error once the interval has passed); the quote verified here, in
//! pure Rust, against the CA, the CRL and the policy (both read again every round); then a
//! `gate` verdict to this host's kernel — a failure or a silence cuts the peer off, a pass
//! admits it for a lease. One JSON line per host per round on standard output.
//! docs/federation.md ("Attestation-gated federation") says why every host runs its own watch.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use warren_attest::verify::{Options, Policy};

use crate::cli::WatchArgs;
use crate::control::{self, ControlRequest};

/// A fresh nonce.
fn nonce() -> anyhow::Result<[u8; 32]> {
    use std::io::Read;
    let mut n = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut n))
        .context("read /dev/urandom")?;
    Ok(n)
}

fn read_policy(p: &Path) -> anyhow::Result<Policy> {
    let t = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    Policy::from_toml(&t)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("policy {}", p.display()))
}

fn thread_cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
}

/// What the round found for one host.
struct Outcome {
    pass: bool,
    code: String,
    reason: String,
    line: serde_json::Value,
}

/// Settings shared by every host's check in a round.
struct Round<'a> {
    state_dir: &'a Path,
    ca: &'a str,
    crl: Option<&'a str>,
    policy: Option<&'a Policy>,
    allow_software: bool,
    timeout_ms: u64,
}

fn check(r: &Round<'_>, host: &str) -> Outcome {
    let n = match nonce() {
        Ok(n) => n,
        Err(e) => {
            return Outcome {
                pass: false,
                code: "internal".into(),
                reason: format!("{e:#}"),
                line: json!({}),
            };
        }
    };
    let req = ControlRequest::AttestPeer {
        host: host.to_owned(),
        nonce: hex::encode(n),
        timeout_ms: r.timeout_ms,
    };
    let resp = match control::request(r.state_dir, &req) {
        Ok(resp) => resp,
        Err(e) => {
            return Outcome {
                pass: false,
                code: "no-kernel".into(),
                reason: format!("{e:#}"),
                line: json!({}),
            };
        }
    };
    if !resp.ok {
        let why = resp.error.unwrap_or_default();
        let code = if why.starts_with("timeout") {
            "timeout"
        } else {
            "no-quote"
        };
        return Outcome {
            pass: false,
            code: code.into(),
            reason: why,
            line: json!({}),
        };
    }
    let data = resp.data.unwrap_or_default();
    let cpu0 = thread_cpu_ms();
    let t0 = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let result = serde_json::from_value::<warren_attest::Quote>(data["quote"].clone())
        .map_err(|e| warren_attest::Rejection::Malformed(e.to_string()))
        .and_then(|q| {
            warren_attest::verify(
                &q,
                &Options {
                    nonce: &n,
                    ca_pem: r.ca,
                    allow_software: r.allow_software,
                    policy: r.policy,
                    now,
                    crl_pem: r.crl,
                },
            )
        });
    let line = json!({
        "quote_ms": data["ms"], "verify_ms": t0.elapsed().as_secs_f64() * 1000.0,
        "verify_cpu_ms": thread_cpu_ms() - cpu0,
        "request_bytes": data["request_bytes"], "answer_bytes": data["answer_bytes"],
    });
    match result {
        Ok(_) => Outcome {
            pass: true,
            code: String::new(),
            reason: String::new(),
            line,
        },
        Err(rej) => Outcome {
            pass: false,
            code: rej.code().into(),
            reason: rej.to_string(),
            line,
        },
    }
}

/// `warren attest watch`.
pub fn watch(state_dir: &Path, a: WatchArgs) -> anyhow::Result<i32> {
    if !(a.interval.is_finite() && a.interval >= 0.1) {
        bail!("--interval {}: must be at least 0.1 seconds", a.interval);
    }
    let interval = Duration::from_secs_f64(a.interval);
    let lease = match a.lease {
        Some(l) if !(l.is_finite() && l >= a.interval) => {
            bail!(
                "--lease {l}: must be at least the interval ({} s)",
                a.interval
            )
        }
        Some(l) => Duration::from_secs_f64(l),
        None => interval * 3,
    };
    let ca = std::fs::read_to_string(&a.ca).with_context(|| format!("read {}", a.ca.display()))?;
    let mut policy = a.policy.as_deref().map(read_policy).transpose()?;
    if let Some(p) = &a.crl {
        std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    }
    // Every host must be a peer the kernel federates with: ask once before the first round.
    let status = control::request(state_dir, &ControlRequest::Status)?
        .status
        .unwrap_or_default();
    let link = &status["link"];
    if link.is_null() {
        bail!("this host's kernel does not federate (its manifest's [host] names no broker)");
    }
    let peers: Vec<&str> = link["peers"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    for h in &a.hosts {
        if !peers.contains(&h.as_str()) {
            bail!(
                "--host {h}: not a peer of this host's kernel (its trusted keys name: {})",
                peers.join(", ")
            );
        }
    }
    let mut hosts = a.hosts.clone();
    hosts.sort();
    hosts.dedup();
    let start = Instant::now();
    let mut round = 0u64;
    loop {
        round += 1;
        let began = Instant::now();
        if let Some(p) = &a.policy {
            match read_policy(p) {
                Ok(np) => policy = Some(np),
                Err(e) => eprintln!("warren: warning: {e:#}; keeping the previous policy"),
            }
        }
        let crl = match &a.crl {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("warren: warning: read {}: {e}", p.display());
                    None
                }
            },
            None => None,
        };
        let r = Round {
            state_dir,
            ca: &ca,
            crl: crl.as_deref(),
            policy: policy.as_ref(),
            allow_software: a.allow_software,
            timeout_ms: interval.as_millis() as u64,
        };
        let outcomes: Vec<(String, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|h| (h.clone(), s.spawn(|| check(&r, h))))
                .collect();
            handles
                .into_iter()
                .map(|(h, j)| {
                    let o = j.join().unwrap_or_else(|_| Outcome {
                        pass: false,
                        code: "internal".into(),
                        reason: "the check panicked".into(),
                        line: json!({}),
                    });
                    (h, o)
                })
                .collect()
        });
        for (host, o) in outcomes {
            let req = ControlRequest::Gate {
                host: host.clone(),
                pass: o.pass,
                code: o.code.clone(),
                reason: o.reason.clone(),
                valid_ms: Some(lease.as_millis() as u64),
            };
            let state = match control::request(state_dir, &req) {
                Ok(resp) if resp.ok => resp.data.unwrap_or_default()["state"].clone(),
                Ok(resp) => json!(format!(
                    "verdict refused: {}",
                    resp.error.unwrap_or_default()
                )),
                Err(e) => json!(format!("verdict not delivered: {e:#}")),
            };
            let mut line = o.line;
            line["round"] = json!(round);
            line["at_s"] = json!(start.elapsed().as_secs_f64());
            line["host"] = json!(host);
            line["verdict"] = json!(if o.pass { "pass" } else { "fail" });
            if !o.pass {
                line["code"] = json!(o.code);
                line["reason"] = json!(o.reason);
            }
            line["state"] = state;
            println!("{line}");
        }
        if a.rounds.is_some_and(|n| round >= n) {
            return Ok(0);
        }
        if let Some(rest) = interval.checked_sub(began.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
