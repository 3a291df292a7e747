//! Attestation-gated federation, the daemon's side (docs/federation.md, "Attestation-gated
//! federation"): the host's **attestation mailbox** and the **gate** over peer hosts.
//!
//! * The attestation mailbox `warren.attest` (a name no environment can have: labels have no
//!   `.`) is served by the daemon itself. A message to it from a trusted host with header
//!   `warren-attest: request`, a correlation and a nonce as body is answered, through the same
//!   federation (outbox, signed batch), by a message from `warren.attest` with the same
//!   correlation: `warren-attest: quote` and the host quote document (JSON, docs/attestation.md)
//!   over that nonce, or `warren-attest: error` and why. Quotes are made on a thread of this
//!   module (a TPM takes up to a second), which wakes the loop through the link's eventfd.
//! * `attest-peer` control requests (from `warren attest watch`) send such a request to a peer
//!   and are answered when its quote arrives, or with an error once their deadline passes.
//! * The gate keeps a verdict per peer host, set by `gate` control requests: a host that failed
//!   is **cut off** — the kernel refuses sends through its proxies (`revoked`, with the verdict)
//!   and the link refuses its inbound messages (audited `cut-off`) except those to the
//!   attestation mailbox — until a passing verdict lets it back in. A passing verdict may carry
//!   a lease: when it lapses without a new pass, the host is cut off ("attestation expired"),
//!   so a verifier that dies fails closed. Verdicts are kept in `<state>/link/gate.json`, so a
//!   restarted kernel keeps hosts cut off.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use warren_link::wire::Envelope;

use crate::control::ControlResponse;

/// The attestation mailbox of every host.
pub const ATTEST_MAILBOX: &str = "warren.attest";
/// The header naming the kind of an attestation message.
pub const KIND_HEADER: &str = "warren-attest";
/// The longest nonce a host quotes over (bytes).
pub const MAX_NONCE: usize = 64;
/// Quote requests from peers waiting or running at most; one more is answered `error` at once.
const MAX_QUOTES: usize = 16;

/// What the gate knows of one peer host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostGate {
    /// `admitted` or `cut-off`.
    pub state: String,
    /// For a cut-off host: the text shown (`cut off: attestation failed (REASON) at TIME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The verifier's reason code of the last failure (`boot-digest`, `timeout`, `expired`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the state began (Unix milliseconds).
    pub since_ms: u64,
    /// The last passing verdict (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_ms: Option<u64>,
    /// The lease of the last pass: cut off when it lapses (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<u64>,
}

impl HostGate {
    fn is_cut_off(&self) -> bool {
        self.state == "cut-off"
    }
}

/// An `attest-peer` request waiting for the peer's answer.
struct Pending {
    correlation: u64,
    host: String,
    token: u64,
    deadline: u64,
    asked: std::time::Instant,
    sent_bytes: usize,
}

/// A quote to make for a peer, and the finished one.
struct QuoteJob {
    host: String,
    correlation: u64,
    nonce: Vec<u8>,
}
struct QuoteDone {
    host: String,
    correlation: u64,
    result: Result<Vec<u8>, String>,
}

/// The gate and the attestation mailbox (see the module documentation).
pub struct Gate {
    path: PathBuf,
    hosts: BTreeMap<String, HostGate>,
    pending: Vec<Pending>,
    next_correlation: u64,
    jobs: mpsc::Sender<QuoteJob>,
    done: mpsc::Receiver<QuoteDone>,
    in_flight: usize,
    answers: Vec<(u64, ControlResponse)>,
    /// The kernel has been told the saved cut-offs.
    synced: bool,
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms` (Unix milliseconds) as RFC 3339 UTC, to the second.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Gate {
    /// The gate of the state directory; its quote thread wakes the loop through `wake` (the
    /// link's eventfd).
    pub fn open(state_dir: &Path, wake: OwnedFd) -> anyhow::Result<Gate> {
        let path = state_dir.join("link").join("gate.json");
        let hosts = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| anyhow::anyhow!("{}: not a gate file: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("read {}", path.display()))),
        };
        let (jobs, rx) = mpsc::channel::<QuoteJob>();
        let (tx, done) = mpsc::channel::<QuoteDone>();
        let dir = state_dir.to_owned();
        std::thread::Builder::new()
            .name("host-quote".into())
            .spawn(move || {
                for job in rx {
                    let result = warren_attest::make_quote(
                        &dir,
                        &job.nonce,
                        None,
                        &[],
                        // Between trusted hosts' kernels: whole (attestation.md).
                        warren_attest::Disclosure::Whole,
                    )
                    .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
                    .and_then(|q| serde_json::to_vec(&q).map_err(|e| e.to_string()));
                    let done = QuoteDone {
                        host: job.host,
                        correlation: job.correlation,
                        result,
                    };
                    if tx.send(done).is_err() {
                        return;
                    }
                    let _ = rustix::io::write(&wake, &1u64.to_ne_bytes());
                }
            })?;
        Ok(Gate {
            path,
            hosts,
            pending: Vec::new(),
            next_correlation: 1,
            jobs,
            done,
            in_flight: 0,
            answers: Vec::new(),
            synced: false,
        })
    }

    fn save(&self) {
        let tmp = self.path.with_extension("tmp");
        let res = serde_json::to_vec_pretty(&self.hosts)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            tracing::error!("federation: cannot save {}: {e}", self.path.display());
        }
    }

    /// The cut-off text of `host`, if it is cut off.
    pub fn cut_off(&self, host: &str) -> Option<&str> {
        self.hosts
            .get(host)
            .filter(|g| g.is_cut_off())
            .and_then(|g| g.detail.as_deref())
    }

    /// The saved cut-offs the kernel has not been told yet (once, after a start).
    pub fn unsynced(&mut self) -> Vec<(String, String)> {
        if std::mem::replace(&mut self.synced, true) {
            return Vec::new();
        }
        self.hosts
            .iter()
            .filter(|(_, g)| g.is_cut_off())
            .map(|(h, g)| (h.clone(), g.detail.clone().unwrap_or_default()))
            .collect()
    }

    /// A quote request from `host`: queued for the quote thread (`None`), or the error to
    /// answer now.
    pub fn quote_for(&mut self, host: &str, env: &Envelope) -> Option<Envelope> {
        let refuse = |why: String| Some(answer(env.correlation, "error", why.into_bytes()));
        if env.correlation.is_none() {
            return refuse("a quote request needs a correlation".into());
        }
        if env.body.is_empty() || env.body.len() > MAX_NONCE {
            return refuse(format!(
                "the nonce must be 1 to {MAX_NONCE} bytes, not {}",
                env.body.len()
            ));
        }
        if self.in_flight >= MAX_QUOTES {
            return refuse(format!(
                "{MAX_QUOTES} quotes are already waiting; ask again later"
            ));
        }
        let job = QuoteJob {
            host: host.to_owned(),
            correlation: env.correlation.unwrap_or_default(),
            nonce: env.body.clone(),
        };
        match self.jobs.send(job) {
            Ok(()) => {
                self.in_flight += 1;
                None
            }
            Err(_) => refuse("the quote thread has stopped".into()),
        }
    }

    /// Finished quotes: (destination host, answer message).
    pub fn finished_quotes(&mut self) -> Vec<(String, Envelope)> {
        let done: Vec<QuoteDone> = self.done.try_iter().collect();
        self.in_flight -= done.len().min(self.in_flight);
        done.into_iter()
            .map(|d| {
                let env = match d.result {
                    Ok(q) => answer(Some(d.correlation), "quote", q),
                    Err(why) => {
                        tracing::warn!("federation: quote for {} failed: {why}", d.host);
                        answer(Some(d.correlation), "error", why.into_bytes())
                    }
                };
                (d.host, env)
            })
            .collect()
    }

    /// An `attest-peer` request: the message to send to `host`, its pending entry kept until
    /// the answer or `deadline` (daemon clock).
    pub fn ask(&mut self, token: u64, host: &str, nonce: Vec<u8>, deadline: u64) -> Envelope {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let env = Envelope {
            to: ATTEST_MAILBOX.into(),
            from_env: ATTEST_MAILBOX.into(),
            correlation: Some(correlation),
            headers: vec![(KIND_HEADER.to_owned(), b"request".to_vec())],
            body: nonce,
            ..Envelope::default()
        };
        self.pending.push(Pending {
            correlation,
            host: host.to_owned(),
            token,
            deadline,
            asked: std::time::Instant::now(),
            sent_bytes: wire_size(&env),
        });
        env
    }

    /// An answer from `host` to one of our requests; `false` when none waits for it.
    pub fn answered(&mut self, host: &str, env: &Envelope) -> bool {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| Some(p.correlation) == env.correlation && p.host == host)
        else {
            return false;
        };
        let p = self.pending.swap_remove(i);
        let kind = header(env, KIND_HEADER);
        let resp = match kind.as_deref() {
            Some("quote") => match serde_json::from_slice::<serde_json::Value>(&env.body) {
                Ok(q) => ControlResponse::data(serde_json::json!({
                    "host": host,
                    "quote": q,
                    "ms": p.asked.elapsed().as_secs_f64() * 1000.0,
                    "request_bytes": p.sent_bytes,
                    "answer_bytes": wire_size(env),
                })),
                Err(e) => ControlResponse::error(format!(
                    "host {host} answered a quote that is not JSON: {e}"
                )),
            },
            Some("error") => ControlResponse::error(format!(
                "host {host} could not quote: {}",
                String::from_utf8_lossy(&env.body)
            )),
            other => ControlResponse::error(format!(
                "host {host} answered with {KIND_HEADER}: {other:?}, not a quote"
            )),
        };
        self.answers.push((p.token, resp));
        true
    }

    /// Requests whose deadline passed are answered with an error; leases that lapsed cut their
    /// host off. Returns the hosts newly cut off (host, text) for the kernel and the audit.
    pub fn expire(&mut self, now: u64) -> Vec<(String, String)> {
        let (late, keep): (Vec<Pending>, Vec<Pending>) =
            self.pending.drain(..).partition(|p| p.deadline <= now);
        self.pending = keep;
        for p in late {
            let ms = p.asked.elapsed().as_millis();
            let resp = ControlResponse::error(format!(
                "timeout: no answer from host {} within {ms} ms",
                p.host
            ));
            self.answers.push((p.token, resp));
        }
        let t = unix_ms();
        let lapsed: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, g)| !g.is_cut_off() && g.valid_until_ms.is_some_and(|u| u <= t))
            .map(|(h, _)| h.clone())
            .collect();
        let mut out = Vec::new();
        for h in lapsed {
            let since = self.hosts[&h].last_pass_ms.unwrap_or(0);
            let reason = format!("no passing quote since {}", utc(since));
            let text = self.set(&h, Some(("expired", &reason)), None);
            out.push((h, text));
        }
        if !out.is_empty() {
            self.save();
        }
        out
    }

    /// The next deadline (daemon clock) the loop must wake for, given the daemon's `now`.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let t = unix_ms();
        let lease = self
            .hosts
            .values()
            .filter(|g| !g.is_cut_off())
            .filter_map(|g| g.valid_until_ms)
            .map(|u| now + u.saturating_sub(t))
            .min();
        let req = self.pending.iter().map(|p| p.deadline).min();
        match (lease, req) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records a verdict: `failure = Some((code, reason))` cuts the host off, `None` admits it
    /// (with a lease of `valid_ms`). Returns the state text.
    fn set(&mut self, host: &str, failure: Option<(&str, &str)>, valid_ms: Option<u64>) -> String {
        let t = unix_ms();
        let old = self.hosts.get(host).cloned();
        let was_cut = old.as_ref().is_some_and(HostGate::is_cut_off);
        let g = match failure {
            Some((code, reason)) => {
                if was_cut {
                    // Still cut off: keep when it began, update why.
                    let mut g = old.expect("present");
                    g.code = Some(code.to_owned());
                    g
                } else {
                    let what = if code == "expired" {
                        "attestation expired"
                    } else {
                        "attestation failed"
                    };
                    HostGate {
                        state: "cut-off".into(),
                        detail: Some(format!("cut off: {what} ({reason}) at {}", utc(t))),
                        code: Some(code.to_owned()),
                        since_ms: t,
                        last_pass_ms: old.as_ref().and_then(|g| g.last_pass_ms),
                        valid_until_ms: None,
                    }
                }
            }
            None => HostGate {
                state: "admitted".into(),
                detail: None,
                code: None,
                since_ms: if was_cut || old.is_none() {
                    t
                } else {
                    old.as_ref().map_or(t, |g| g.since_ms)
                },
                last_pass_ms: Some(t),
                valid_until_ms: valid_ms.map(|v| t + v),
            },
        };
        let text = g.detail.clone().unwrap_or_else(|| "admitted".into());
        self.hosts.insert(host.to_owned(), g);
        text
    }

    /// A `gate` control request. Returns the answer's data and, when the host's state changed,
    /// `Some(Some(text))` (cut off) or `Some(None)` (let back in).
    pub fn verdict(
        &mut self,
        host: &str,
        pass: bool,
        code: &str,
        reason: &str,
        valid_ms: Option<u64>,
    ) -> (serde_json::Value, Option<Option<String>>) {
        let was_cut = self.hosts.get(host).is_some_and(HostGate::is_cut_off);
        let text = if pass {
            self.set(host, None, valid_ms)
        } else {
            self.set(host, Some((code, reason)), None)
        };
        self.save();
        let change = match (was_cut, pass) {
            (false, false) => Some(Some(text.clone())),
            (true, true) => Some(None),
            _ => None,
        };
        let data = serde_json::json!({
            "host": host, "state": text, "changed": change.is_some(),
        });
        (data, change)
    }

    /// Answers for control connections, ready to send.
    pub fn take_answers(&mut self) -> Vec<(u64, ControlResponse)> {
        std::mem::take(&mut self.answers)
    }

    /// The gate per host, for `list`.
    pub fn view(&self) -> serde_json::Value {
        let hosts: serde_json::Map<String, serde_json::Value> = self
            .hosts
            .iter()
            .map(|(h, g)| {
                let mut v = serde_json::to_value(g).unwrap_or_default();
                v["shown"] = g
                    .detail
                    .clone()
                    .unwrap_or_else(|| match g.last_pass_ms {
                        Some(p) => format!("admitted: attestation passed at {}", utc(p)),
                        None => "admitted".into(),
                    })
                    .into();
                (h.clone(), v)
            })
            .collect();
        serde_json::Value::Object(hosts)
    }
}

/// An answer from this host's attestation mailbox.
fn answer(correlation: Option<u64>, kind: &str, body: Vec<u8>) -> Envelope {
    Envelope {
        to: ATTEST_MAILBOX.into(),
        from_env: ATTEST_MAILBOX.into(),
        correlation,
        headers: vec![(KIND_HEADER.to_owned(), kind.as_bytes().to_vec())],
        body,
        ..Envelope::default()
    }
}

/// The value of header `name`, as text.
pub fn header(env: &Envelope, name: &str) -> Option<String> {
    env.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The bytes a message takes in its batch (docs/federation.md, "Encoding").
fn wire_size(env: &Envelope) -> usize {
    let headers: usize = env.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    2 + env.to.len()
        + env.from_env.len()
        + 1
        + env.correlation.map_or(0, |_| 8)
        + 2
        + headers
        + 4
        + env.body.len()
        + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(dir: &Path) -> Gate {
        std::fs::create_dir_all(dir.join("link")).unwrap();
        let wake = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        Gate::open(dir, wake).unwrap()
    }

    #[test]
    fn verdicts_cut_off_and_let_back_once_each_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = gate(dir.path());
        assert_eq!(g.cut_off("beta"), None);
        // A failure cuts off (a change), a second one does not change when it began.
        let (data, change) = g.verdict("beta", false, "boot-digest", "kernel X", None);
        let text = change.unwrap().unwrap();
        assert!(
            text.starts_with("cut off: attestation failed (kernel X) at 20"),
            "{text}"
        );
        assert_eq!(data["changed"], true);
        let (_, change) = g.verdict("beta", false, "timeout", "no answer", None);
        assert_eq!(change, None);
        assert_eq!(g.cut_off("beta"), Some(text.as_str()));
        // A restarted kernel keeps it cut off and tells its kernel once.
        let mut again = gate(dir.path());
        assert_eq!(again.cut_off("beta"), Some(text.as_str()));
        assert_eq!(again.unsynced(), vec![("beta".to_owned(), text.clone())]);
        assert!(again.unsynced().is_empty());
        // A pass lets it back in (a change), a second pass changes nothing.
        let (_, change) = g.verdict("beta", true, "", "", Some(60_000));
        assert_eq!(change, Some(None));
        assert_eq!(g.cut_off("beta"), None);
        assert_eq!(g.verdict("beta", true, "", "", Some(60_000)).1, None);
        assert!(g.expire(0).is_empty(), "a live lease does not lapse");
    }

    #[test]
    fn a_lapsed_lease_cuts_the_host_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = gate(dir.path());
        g.verdict("gamma", true, "", "", Some(0));
        let cut = g.expire(0);
        assert_eq!(cut.len(), 1);
        assert!(
            cut[0]
                .1
                .starts_with("cut off: attestation expired (no passing quote since 20"),
            "{cut:?}"
        );
        assert_eq!(g.cut_off("gamma"), Some(cut[0].1.as_str()));
        assert!(g.expire(0).is_empty(), "cut off once");
    }

    #[test]
    fn answers_match_their_request_and_late_ones_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = gate(dir.path());
        let req = g.ask(7, "beta", vec![1; 32], 1_000);
        assert_eq!(req.to, ATTEST_MAILBOX);
        assert_eq!(header(&req, KIND_HEADER).as_deref(), Some("request"));
        let mut ans = answer(
            req.correlation,
            "quote",
            br#"{"format":"warren-quote/1"}"#.to_vec(),
        );
        // From another host, or with another correlation: nobody waits for it.
        assert!(!g.answered("gamma", &ans));
        ans.correlation = req.correlation.map(|c| c + 1);
        assert!(!g.answered("beta", &ans));
        ans.correlation = req.correlation;
        assert!(g.answered("beta", &ans));
        assert!(!g.answered("beta", &ans), "answered once");
        let got = g.take_answers();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 7);
        assert_eq!(
            got[0].1.data.as_ref().unwrap()["quote"]["format"],
            "warren-quote/1"
        );
        // A request whose deadline passes is answered with a timeout.
        g.ask(8, "beta", vec![2; 32], 1_000);
        assert!(g.next_deadline(0).is_some());
        g.expire(999);
        assert!(g.take_answers().is_empty());
        g.expire(1_000);
        let got = g.take_answers();
        assert_eq!(got[0].0, 8);
        assert!(
            got[0]
                .1
                .error
                .as_deref()
                .unwrap()
                .starts_with("timeout: no answer from host beta")
        );
        // A bad nonce is refused at once, with the request's correlation.
        let bad = Envelope {
            correlation: Some(3),
            ..answer(Some(3), "request", Vec::new())
        };
        let refusal = g.quote_for("beta", &bad).unwrap();
        assert_eq!(header(&refusal, KIND_HEADER).as_deref(), Some("error"));
        assert_eq!(refusal.correlation, Some(3));
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_535_845_000), "2026-12-06T05:44:05Z");
    }
}
