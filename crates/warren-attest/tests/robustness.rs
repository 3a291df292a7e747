//! The decoders of untrusted evidence never panic: arbitrary bytes as TPM structures, and
//! quotes with arbitrary bytes flipped, are refused with an error (properties, proptest).

use proptest::prelude::*;
use warren_attest::tpm_wire::{parse_ak_public, parse_nv_attest, parse_nv_public};

proptest! {
    #[test]
    fn tpm_structures_of_any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_nv_attest(&bytes);
        let _ = parse_ak_public(&bytes);
        let _ = parse_nv_public(&bytes);
        // A valid prefix with arbitrary tails.
        let mut attest = vec![0xff, 0x54, 0x43, 0x47, 0x80, 0x14];
        attest.extend_from_slice(&bytes);
        let _ = parse_nv_attest(&attest);
    }
}

/// A software host with one launch, enrolled, and its quote.
fn fixture() -> (tempfile::TempDir, String, warren_attest::Quote) {
    use warren_attest::measure::{ImageMeasurement, LaunchConfig, LaunchContent};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    warren_attest::RootConfig {
        root: warren_attest::RootKind::Software,
        tpm: None,
        agent: None,
        boot_log: None,
        ima_log: None,
    }
    .save(&state)
    .unwrap();
    let config = LaunchConfig {
        memory: None,
        pids: Some(1),
        cpu_micros: None,
        tmpfs_size: 1,
        seccomp_profile: None,
        capabilities: vec![],
        no_new_privs: true,
        landlock_abi: None,
        namespaces: vec![],
        network: "none".into(),
        degraded: vec![],
        mounts: vec![],
        writable_root: None,
        etc_files: None,
    };
    let content = LaunchContent {
        event: "launch".into(),
        name: "e".into(),
        image: ImageMeasurement {
            kind: "rootfs".into(),
            digest: "blake3:00".into(),
            format: "warren-tree/1".into(),
            digest_source: None,
            manifest_digest: None,
        },
        command: vec!["/bin/true".into()],
        env: vec![],
        config_digest: config.digest(),
        config,
        uid_base: 0,
        uid_count: 1,
        launched_at: 0,
        spawn: None,
    };
    let cfg = warren_attest::RootConfig::resolve(&state).unwrap();
    let mut root = cfg.open(&state).unwrap();
    warren_attest::EventLog::new(&state)
        .append(content, root.as_mut())
        .unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = warren_attest::ca::PrivacyCa::init(&ca_dir).unwrap();
    warren_attest::enroll::enroll_local(&state, &ca_dir, "h").unwrap();
    let pem =
        std::fs::read_to_string(ca.issuer_cert_path(warren_attest::RootKind::Software)).unwrap();
    let q = warren_attest::make_quote(
        &state,
        b"nonce",
        None,
        &[],
        warren_attest::Disclosure::Whole,
    )
    .unwrap();
    (dir, pem, q)
}

#[test]
fn any_single_byte_change_of_a_quote_is_refused_without_panicking() {
    let (_dir, ca, quote) = fixture();
    let opts = warren_attest::verify::Options {
        nonce: b"nonce",
        ca_pem: &ca,
        allow_software: true,
        policy: None,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        crl_pem: None,
    };
    assert!(
        warren_attest::verify(&quote, &opts).is_ok(),
        "positive control"
    );
    let text = serde_json::to_vec(&quote).unwrap();
    let mut refused = 0;
    // Every position of the document, one bit flipped at a time (stepping for speed).
    for i in (0..text.len()).step_by(3) {
        let mut t = text.clone();
        t[i] ^= 0x01;
        let Ok(q) = serde_json::from_slice::<warren_attest::Quote>(&t) else {
            refused += 1;
            continue;
        };
        if q == quote {
            continue;
        }
        // A change that still parses must be refused, unless it only touched what the
        // signature does not cover and the verifier does not use.
        if warren_attest::verify(&q, &opts).is_err() {
            refused += 1;
        } else {
            let changed_cert = q.ak_certificate != quote.ak_certificate;
            assert!(
                changed_cert,
                "byte {i} changed the quote and it still verified: {}",
                String::from_utf8_lossy(&t[i.saturating_sub(60)..(i + 20).min(t.len())])
            );
        }
    }
    assert!(refused > text.len() / 4);
}
