//! Throughput of the attestation paths, for `bench/attest.sh`:
//!
//! ```text
//! attest_bench tree DIR [ROUNDS]        # warren-tree/1 digest of DIR: prints bytes, seconds
//! attest_bench quote RECORDS SECONDS    # software quotes per second over a log of RECORDS
//! attest_bench verify RECORDS SECONDS   # verifications per second of such a quote
//! ```
//!
//! Each prints one JSON line.

use std::time::{Duration, Instant};

use warren_attest::measure::{ImageMeasurement, LaunchConfig, LaunchContent};
use warren_attest::root::{RootConfig, RootKind};

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
    };
    LaunchContent {
        event: "launch".into(),
        name: format!("env-{i}"),
        image: ImageMeasurement {
            kind: "rootfs".into(),
            digest: format!("blake3:{}", "cd".repeat(32)),
            format: "warren-tree/1".into(),
            manifest_digest: None,
        },
        command: vec!["/bin/true".into()],
        env: vec![("PATH".into(), "/bin".into())],
        config_digest: config.digest(),
        config,
        uid_base: 1_000_000_000,
        uid_count: 65536,
        launched_at: 0,
    }
}

/// A state directory with `records` launches, a CA, and the host enrolled with it.
fn host(records: usize) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    RootConfig {
        root: RootKind::Software,
        tpm: None,
        agent: None,
    }
    .save(&state)
    .unwrap();
    let log = warren_attest::EventLog::new(&state);
    let cfg = RootConfig::resolve(&state).unwrap();
    let mut root = cfg.open(&state).unwrap();
    for i in 0..records {
        log.append(content(i), root.as_mut()).unwrap();
    }
    let ca_dir = dir.path().join("ca");
    let ca = warren_attest::ca::PrivacyCa::init(&ca_dir).unwrap();
    warren_attest::enroll::enroll_local(&state, &ca_dir, "bench").unwrap();
    let ca_pem = std::fs::read_to_string(ca.issuer_cert_path(RootKind::Software)).unwrap();
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
                let d = warren_attest::measure::tree_digest(dir).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                bytes = d.bytes;
            }
            println!("{{\"op\":\"tree\",\"bytes\":{bytes},\"seconds\":{best}}}");
        }
        Some(op @ ("quote" | "verify")) => {
            let records: usize = args[1].parse().unwrap();
            let secs: f64 = args[2].parse().unwrap();
            let (dir, ca_pem) = host(records);
            let state = dir.path().join("state");
            let nonce = [7u8; 32];
            let quote = warren_attest::make_quote(&state, &nonce, None, &[]).unwrap();
            let opts = warren_attest::verify::Options {
                nonce: &nonce,
                ca_pem: &ca_pem,
                allow_software: true,
                policy: None,
                now: 1_800_000_000,
            };
            warren_attest::verify(&quote, &opts).unwrap();
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let start = Instant::now();
            let mut n = 0u64;
            while Instant::now() < end {
                if op == "quote" {
                    std::hint::black_box(
                        warren_attest::make_quote(&state, &nonce, None, &[]).unwrap(),
                    );
                } else {
                    std::hint::black_box(warren_attest::verify(&quote, &opts).unwrap());
                }
                n += 1;
            }
            let el = start.elapsed().as_secs_f64();
            println!(
                "{{\"op\":\"{op}\",\"records\":{records},\"count\":{n},\"seconds\":{el},\"per_second\":{}}}",
                n as f64 / el
            );
        }
        _ => {
            eprintln!(
                "usage: attest_bench tree DIR [ROUNDS] | quote RECORDS SECONDS | verify RECORDS SECONDS"
            );
            std::process::exit(2);
        }
    }
}
