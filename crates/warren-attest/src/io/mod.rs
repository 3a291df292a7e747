//! The I/O layer: the event log file, the roots of trust (software register and key, the
//! TPM through the `warren-tpm` agent), making quotes, the Privacy CA's store and enrollment.
//! It builds on [`crate::evidence`] for every format and check.
//!
//! Module order, each using only those above it (and [`crate::evidence`]): [`root`] (the trait,
//! the software root), [`measure`], [`log`], [`selfpcr`], [`tpm`], [`config`], [`outcome`], [`quote`], [`ca`], [`enroll`].

pub mod ca;
pub mod config;
pub mod enroll;
pub mod log;
pub mod measure;
pub mod outcome;
pub mod quote;
pub mod root;
pub mod seal;
pub mod selfpcr;
pub mod tpm;
