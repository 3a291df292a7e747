//! Trust for Warren: measured launch, the append-only event log, roots of trust (TPM and
//! software) behind one trait, quotes and their pure-Rust verification, and the Privacy CA.
//!
//! Two layers, and no module of the first uses the second:
//!
//! * [`evidence`] (pure): the launch record and its canonical bytes, the register arithmetic,
//!   the quote format and its qualifying value, TPM wire structures, verification and golden
//!   values, MakeCredential;
//! * [`io`]: the event log file, the roots of trust (software, TPM through the `warren-tpm`
//!   agent) and their configuration, making quotes, the Privacy CA's store, enrollment.
//!
//! The modules are also reachable by their historical paths (`warren_attest::log`,
//! `warren_attest::verify`, …).
//!
//! docs/attestation.md describes the formats and the choices behind them.
#![forbid(unsafe_code)]

pub mod evidence;
pub mod io;

pub use evidence::{credential, tpm_wire, verify};
pub use io::{ca, config, enroll, log, measure, outcome, quote, root, seal, tpm};

pub use config::RootConfig;
pub use log::{EventLog, Record};
pub use measure::{LaunchConfig, LaunchContent, LaunchMount, SpawnProvenance};
pub use quote::{Disclosure, Quote, make_quote};
pub use root::{RootKind, RootOfTrust};
pub use verify::{Rejection, verify};
