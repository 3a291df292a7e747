//! Trust for Warren: measured launch, the append-only event log, roots of trust (TPM and
//! software) behind one trait, quotes and their pure-Rust verification, and the Privacy CA.
//!
//! * [`measure`]: the image tree digest and the launch record's content;
//! * [`log`]: the CEL-JSON event log and its register arithmetic;
//! * [`seal`]: sealed roots (`warren rootfs seal`) and the digest a launch uses for a root;
//! * [`root`]: the [`root::RootOfTrust`] trait, the software root and the configuration;
//! * [`tpm`], [`tpm_wire`]: the TPM root (through the `warren-tpm` agent) and its structures;
//! * [`quote`], [`verify`]: making and checking quotes, golden values;
//! * [`ca`], [`enroll`], [`credential`]: the Privacy CA, enrollment, MakeCredential.
//!
//! docs/attestation.md describes the formats and the choices behind them.
#![forbid(unsafe_code)]

pub mod ca;
pub mod credential;
pub mod enroll;
pub mod log;
pub mod measure;
pub mod quote;
pub mod root;
pub mod seal;
pub mod tpm;
pub mod tpm_wire;
pub mod verify;

pub use log::{EventLog, Record};
pub use measure::{LaunchConfig, LaunchContent};
pub use quote::{Quote, make_quote};
pub use root::{RootConfig, RootKind, RootOfTrust};
pub use verify::{Rejection, verify};
