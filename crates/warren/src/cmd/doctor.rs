//! `warren doctor`: which kernel features Warren relies on are present here, and the assurance
//! environments will get. Exit status: 0 full assurance, 1 degraded (a defence-in-depth layer or
//! a limit is missing: `warren run` refuses unless told `--allow-missing`), 2 insufficient (the
//! isolation boundary itself cannot be built).

use warren_sandbox::features::{AssuranceLevel, ProbeRoots, probe};

use crate::cli::DoctorArgs;

/// `warren doctor`.
pub fn doctor(state_dir: &std::path::Path, args: DoctorArgs) -> anyhow::Result<i32> {
    let mut host = probe(&ProbeRoots::default());
    let attestation = super::attest::root_summary(state_dir);
    // The probe looks for a local TPM device only; a state directory configured for a TPM
    // elsewhere (swtpm, a device named by WARREN_TPM) does not use the software root, so the
    // report must not say both "no TPM" and "root: tpm".
    if attestation["root"].as_str() == Some("tpm") {
        let spec = attestation["tpm"].as_str().unwrap_or("?").to_owned();
        for f in host
            .features
            .iter_mut()
            .filter(|f| f.name == "tpm" && !f.available)
        {
            f.detail = format!(
                "no local TPM device; the attestation root is the TPM configured at {spec}"
            );
        }
        host.assurance
            .notes
            .retain(|n| !n.starts_with("no TPM: attestation root will be software"));
    }
    let code = match host.assurance.level {
        AssuranceLevel::Full => 0,
        AssuranceLevel::Degraded => 1,
        AssuranceLevel::Insufficient => 2,
    };
    if args.json {
        let mut v = serde_json::to_value(&host)?;
        v["attestation"] = attestation;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    println!("kernel {}", host.kernel);
    let width = host
        .features
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(10);
    for f in &host.features {
        let mark = match (f.available, f.required) {
            (true, _) => "ok  ",
            (false, true) => "MISS",
            (false, false) => "--  ",
        };
        println!("  {mark} {:<width$}  {}", f.name, f.detail);
    }
    let level = match host.assurance.level {
        AssuranceLevel::Full => "full",
        AssuranceLevel::Degraded => "DEGRADED",
        AssuranceLevel::Insufficient => "INSUFFICIENT",
    };
    println!(
        "attestation root: {}{}",
        attestation["root"].as_str().unwrap_or("unavailable"),
        attestation["detail"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    println!("assurance: {level}");
    if !host.assurance.missing.is_empty() {
        println!("  missing: {}", host.assurance.missing.join(", "));
        println!("  `warren run` refuses to start without these unless given --allow-missing");
    }
    for note in &host.assurance.notes {
        println!("  note: {note}");
    }
    Ok(code)
}
