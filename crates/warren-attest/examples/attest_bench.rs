//! Throughput of the attestation paths, for `bench/attest.sh`:
//!
//! ```text
//! attest_bench tree DIR [ROUNDS]        # warren-tree/1 digest of DIR: prints bytes, seconds
//! attest_bench quote RECORDS SECONDS    # software quotes per second over a log of RECORDS
//! attest_bench verify RECORDS SECONDS   # verifications per second of such a quote
//! attest_bench tpm RECORDS SECONDS      # both with the TPM root: WARREN_BENCH_TPM (a tss TCTI
//!                                       # spec), WARREN_TPM_AGENT, WARREN_BENCH_EK_CA (EK
//!                                       # issuer PEMs, comma-separated)
//! ```
//!
//! Each prints one JSON line.

use std::time::{Duration, Instant};

use warren_attest::measure::{ImageMeasurement, LaunchConfig, LaunchContent};
use warren_attest::{RootConfig, RootKind};

fn content(i: usize) -> LaunchContent {
    let config = LaunchConfig {
        memory: None,
        pids: Some(1024),
        cpu_micros: None,
        tmpfs_size: 16 << 20,
        seccomp_profile: Some(format!("sha256:{}", "ab".repeat(32))),
        capabilities: vec![],
        no_new_privs: true,
        landlock_abi: Some(6),
        namespaces: vec!["user".into(), "pid".into(), "mount".into()],
        network: "none (loopback only)".into(),
        degraded: vec![],
        mounts: vec![],
        writable_root: None,
        etc_files: None,
    };
    LaunchContent {
        event: "launch".into(),
        name: format!("env-{i}"),
        image: ImageMeasurement {
            kind: "rootfs".into(),
            digest: format!("blake3:{}", "cd".repeat(32)),
            format: "warren-tree/1".into(),
            digest_source: None,
            manifest_digest: None,
        },
        command: vec!["/bin/true".into()],
        env: vec![("PATH".into(), "/bin".into())],
        config_digest: config.digest(),
        config,
        uid_base: 1_000_000_000,
        uid_count: 65536,
        launched_at: 0,
        spawn: None,
    }
}

/// A state directory with `records` launches, a CA, and the host enrolled with it.
fn host(records: usize, tpm: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir_in("/run").unwrap();
    let state = dir.path().join("state");
    let config = if tpm {
        RootConfig {
            root: RootKind::Tpm,
            tpm: std::env::var("WARREN_BENCH_TPM").ok(),
            agent: std::env::var_os("WARREN_TPM_AGENT").map(Into::into),
            boot_log: None,
            ima_log: None,
        }
    } else {
        RootConfig::software()
    };
    config.save(&state).unwrap();
    if tpm {
        warren_attest::tpm::TpmRoot::new(
            &state.join("attest"),
            config.tpm.as_deref().unwrap(),
            config.agent.as_deref(),
        )
        .unwrap()
        .provision()
        .unwrap();
    }
    let log = warren_attest::EventLog::new(&state);
    let cfg = RootConfig::resolve(&state).unwrap();
    let mut root = cfg.open(&state).unwrap();
    for i in 0..records {
        log.append(content(i), root.as_mut()).unwrap();
    }
    let ca_dir = dir.path().join("ca");
    let ca = warren_attest::ca::PrivacyCa::init(&ca_dir).unwrap();
    if let Ok(list) = std::env::var("WARREN_BENCH_EK_CA") {
        for (i, p) in list.split(',').enumerate() {
            ca.trust_ek_ca(&std::fs::read_to_string(p).unwrap(), &format!("{i}.pem"))
                .unwrap();
        }
    }
    warren_attest::enroll::enroll_local(&state, &ca_dir, "bench").unwrap();
    let kind = if tpm {
        RootKind::Tpm
    } else {
        RootKind::Software
    };
    let ca_pem = std::fs::read_to_string(ca.issuer_cert_path(kind)).unwrap();
    (dir, ca_pem)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("tree") => {
            let dir = std::path::Path::new(&args[1]);
            let rounds: usize = args.get(2).map(|r| r.parse().unwrap()).unwrap_or(3);
            let mut best = f64::MAX;
            let mut bytes = 0;
            for _ in 0..rounds {
                let t = Instant::now();
                // WARREN_BENCH_CACHE: measure as launches do, with the content cache.
                let cache = std::env::var_os("WARREN_BENCH_CACHE").map(std::path::PathBuf::from);
                let d = warren_attest::measure::tree_digest_cached(dir, cache.as_deref()).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                bytes = d.bytes;
            }
            println!("{{\"op\":\"tree\",\"bytes\":{bytes},\"seconds\":{best}}}");
        }
        Some(op @ ("quote" | "verify" | "tpm")) => {
            let records: usize = args[1].parse().unwrap();
            let secs: f64 = args[2].parse().unwrap();
            let tpm = op == "tpm";
            let (dir, ca_pem) = host(records, tpm);
            let state = dir.path().join("state");
            let nonce = [7u8; 32];
            let quote = warren_attest::make_quote(
                &state,
                &nonce,
                None,
                &[],
                warren_attest::Disclosure::Whole,
            )
            .unwrap();
            let opts = warren_attest::verify::Options {
                nonce: &nonce,
                ca_pem: &ca_pem,
                allow_software: !tpm,
                policy: None,
                now: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0),
                crl_pem: None,
            };
            warren_attest::verify(&quote, &opts).unwrap();
            let ops: &[&str] = match op {
                "tpm" => &["quote", "verify"],
                "quote" => &["quote"],
                _ => &["verify"],
            };
            for op in ops {
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let start = Instant::now();
                let mut n = 0u64;
                while Instant::now() < end {
                    if *op == "quote" {
                        std::hint::black_box(
                            warren_attest::make_quote(
                                &state,
                                &nonce,
                                None,
                                &[],
                                warren_attest::Disclosure::Whole,
                            )
                            .unwrap(),
                        );
                    } else {
                        std::hint::black_box(warren_attest::verify(&quote, &opts).unwrap());
                    }
                    n += 1;
                }
                let el = start.elapsed().as_secs_f64();
                println!(
                    "{{\"op\":\"{op}\",\"root\":\"{}\",\"records\":{records},\"count\":{n},\"seconds\":{el},\"per_second\":{}}}",
                    if tpm { "tpm" } else { "software" },
                    n as f64 / el
                );
            }
        }
        _ => {
            eprintln!("usage: attest_bench tree DIR [ROUNDS] | quote|verify|tpm RECORDS SECONDS");
            std::process::exit(2);
        }
    }
}
