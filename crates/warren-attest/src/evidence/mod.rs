//! The pure evidence layer: formats, canonical encodings, replay, verification, credential
//! maths and TPM wire structures. Nothing here opens a file, runs a process or reads a clock;
//! every function is bytes (or parsed documents) in, a result out. [`crate::io`] builds on
//! it; nothing here uses [`crate::io`].
//!
//! Module order, each using only those above it: [`bootlog`], [`kind`], [`launch`], [`record`],
//! [`tpm_wire`], [`selfpcr`], [`quote`], [`verify`]; [`credential`] (uses [`tpm_wire`]).

pub mod bootlog;
pub mod credential;
pub mod ima;
pub mod kind;
pub mod launch;
pub mod quote;
pub mod record;
pub mod selfpcr;
pub mod tpm_wire;
pub mod verify;
