//! The daemon's worker for slow jobs: quotes (`Action::Attest`), which read the event log,
//! sign, and may spawn the `warren-tpm` agent. They run on one thread of their own, in the
//! order asked, so the event loop keeps serving every environment meanwhile; each answer comes
//! back through a channel and an eventfd that the loop watches, and is queued to the asker
//! like any other answer.
//!
//! Jobs are bounded: at most [`MAX_JOBS`] wait at once, and at most [`MAX_JOBS_PER_ENV`] of
//! one environment, so that one tenant pipelining Attests cannot take every place and shut its
//! neighbours out; one more is answered `attest-failed` at once, naming the limit.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc;

use warren_kernel::EnvId;
use warren_proto::{ErrorCode, Response};

/// Quotes waiting or running at most; one more is refused at once.
pub(super) const MAX_JOBS: usize = 64;

/// Quotes of one environment waiting or running at most; one more is refused at once.
pub(super) const MAX_JOBS_PER_ENV: usize = 4;

/// A quote to make.
pub(super) struct Job {
    pub(super) env: EnvId,
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) nonce: Vec<u8>,
    pub(super) data: Vec<u8>,
}

/// A finished job: the answer for request `id` of `env`.
pub(super) struct Done {
    pub(super) env: EnvId,
    pub(super) id: u32,
    pub(super) response: Response,
}

/// The worker thread's handle.
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
    wake: OwnedFd,
    /// Jobs sent and not yet taken back.
    in_flight: usize,
    /// The same, per environment (no entry for none).
    per_env: std::collections::BTreeMap<EnvId, usize>,
}

impl Worker {
    /// Start the worker for the state directory `state_dir`.
    pub(super) fn start(state_dir: PathBuf) -> std::io::Result<Worker> {
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let notify = rustix::io::fcntl_dupfd_cloexec(&wake, 3)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        let (tx, done) = mpsc::channel::<Done>();
        // A delay before each quote, for the test that shows the loop serving during a slow
        // quote (a TPM takes about a second); read once, at start.
        let delay = std::env::var("WARREN_TEST_QUOTE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis);
        std::thread::Builder::new()
            .name("quote-worker".into())
            .spawn(move || {
                for job in rx {
                    if let Some(d) = delay {
                        std::thread::sleep(d);
                    }
                    let response = quote(&state_dir, &job);
                    let done = Done {
                        env: job.env,
                        id: job.id,
                        response,
                    };
                    if tx.send(done).is_err() {
                        return;
                    }
                    let _ = rustix::io::write(&notify, &1u64.to_ne_bytes());
                }
            })?;
        Ok(Worker {
            jobs,
            done,
            wake,
            in_flight: 0,
            per_env: std::collections::BTreeMap::new(),
        })
    }

    /// The eventfd the loop watches: readable when answers wait.
    pub(super) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Hand a job to the worker; `Err` gives the answer to send now (too many jobs).
    pub(super) fn submit(&mut self, job: Job) -> Result<(), Box<Done>> {
        let mine = self.per_env.get(&job.env).copied().unwrap_or(0);
        let refusal = if mine >= MAX_JOBS_PER_ENV {
            Some(format!(
                "{MAX_JOBS_PER_ENV} quotes of this environment are already waiting; try again later"
            ))
        } else if self.in_flight >= MAX_JOBS {
            Some(format!(
                "{MAX_JOBS} quotes are already waiting; try again later"
            ))
        } else {
            None
        };
        if let Some(detail) = refusal {
            return Err(Box::new(Done {
                env: job.env,
                id: job.id,
                response: Response::Error {
                    code: ErrorCode::AttestFailed,
                    detail,
                },
            }));
        }
        let (env, id) = (job.env, job.id);
        match self.jobs.send(job) {
            Ok(()) => {
                self.in_flight += 1;
                *self.per_env.entry(env).or_default() += 1;
                Ok(())
            }
            Err(_) => Err(Box::new(Done {
                env,
                id,
                response: Response::Error {
                    code: ErrorCode::AttestFailed,
                    detail: "the quote worker has stopped".into(),
                },
            })),
        }
    }

    /// The answers that are ready.
    pub(super) fn take(&mut self) -> Vec<Done> {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.wake, &mut b);
        let done: Vec<Done> = self.done.try_iter().collect();
        self.in_flight -= done.len().min(self.in_flight);
        for d in &done {
            if let Some(n) = self.per_env.get_mut(&d.env) {
                *n -= 1;
                if *n == 0 {
                    self.per_env.remove(&d.env);
                }
            }
        }
        done
    }

    /// Whether jobs are waiting or running.
    pub(super) fn busy(&self) -> bool {
        self.in_flight > 0
    }
}

/// A quote about environment `job.name`'s launch record (the kernel decided who may ask).
fn quote(state_dir: &std::path::Path, job: &Job) -> Response {
    match warren_attest::make_quote(
        state_dir,
        &job.nonce,
        Some(&job.name),
        &job.data,
        // Programs inside environments see their own records only (attestation.md).
        warren_attest::Disclosure::Subject,
    )
    .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    .and_then(|q| serde_json::to_vec(&q).map_err(|e| e.to_string()))
    {
        Ok(quote) => Response::Quote { quote },
        Err(detail) => {
            // The whole reason goes to the kernel's log; the environment gets it without the
            // host's paths (where the state, the keys and the log live are the host's).
            tracing::warn!(env = job.name, "attest failed: {detail}");
            let mut detail = without_host_paths(&detail);
            while detail.len() > warren_proto::MAX_DETAIL {
                detail.pop();
            }
            Response::Error {
                code: ErrorCode::AttestFailed,
                detail,
            }
        }
    }
}

/// `text` with every word that is an absolute path (a `/` first and another after it) put as
/// `<host path>`, keeping what follows the path (`: No such file`, a closing bracket).
fn without_host_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let start = word.find('/').filter(|&at| {
            // A path starts the word or follows an opening quote or bracket.
            word[..at]
                .chars()
                .all(|c| matches!(c, '"' | '\'' | '(' | '[' | '`'))
                && word[at + 1..].contains('/')
        });
        match start {
            Some(at) => {
                let end = word[at..]
                    .find([':', ',', ';', '"', '\'', ')', ']', '`'])
                    .map_or(word.len(), |e| at + e);
                out.push_str(&word[..at]);
                out.push_str("<host path>");
                out.push_str(&word[end..]);
            }
            None => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_host_paths;

    #[test]
    fn host_paths_are_left_out_of_what_an_environment_is_told() {
        assert_eq!(
            without_host_paths(
                "read the event log /var/lib/warren/attest/events.jsonl: No such file (\"/run/warren/x\")"
            ),
            "read the event log <host path>: No such file (\"<host path>\")"
        );
        // The control: text without paths, and a lone slash or a ratio, stay as they are.
        for same in [
            "no launch record of this environment",
            "the TPM answered 0x921 / retry",
            "4/64 quotes waiting",
        ] {
            assert_eq!(without_host_paths(same), same);
        }
    }
}
