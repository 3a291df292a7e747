//! `warren doctor`: which kernel features Warren relies on are present here, and the assurance
//! environments will get.

use crate::cli::DoctorArgs;

/// `warren doctor`.
pub fn doctor(_args: DoctorArgs) -> anyhow::Result<i32> {
    anyhow::bail!("doctor is not wired yet")
}
