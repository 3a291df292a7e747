//! The seccomp digest a launch records is the digest of the filter the kernel actually runs.
//!
//! Each test launches an environment in a state directory of its own, reads the filter of the
//! workload's process back from the kernel with `PTRACE_SECCOMP_GET_FILTER` (root, not itself
//! under seccomp), and compares its SHA-256 with the digest in the environment's `inspect`
//! record (`applied.seccomp.profile_digest`) and in its event log record
//! (`config.seccomp_profile`). The second test plants files where earlier versions cached the
//! compiled program — garbage, and a well-formed entry naming an allow-everything filter and a
//! made-up digest, which those versions would have installed and recorded — and shows that they
//! change neither the filter nor the record.

mod common;

use std::path::Path;

use common::{Background, busybox_root, unique, warren};
use serde_json::Value;

/// `SECCOMP_RET_ALLOW`.
const RET_ALLOW: u32 = 0x7fff_0000;

/// A state directory of the test's own, removed at the end.
fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("warren-seccomp-digest-")
        .tempdir_in("/run")
        .unwrap()
}

/// Start `sleep` in an environment under `state`; wait until `inspect` shows it.
fn start(state: &Path, name: &str) -> (Background, Value) {
    let root = busybox_root().to_str().unwrap();
    let bg = Background::start_in(Some(state), name, &["--rootfs", root, "--", "sleep", "60"]);
    let record = bg.inspect().expect("running");
    (bg, record)
}

/// The event log record numbered `recnum` in `state`.
fn log_record(state: &Path, recnum: u64) -> Value {
    let o = warren()
        .env("WARREN_STATE_DIR", state)
        .args(["attest", "log"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["recnum"].as_u64() == Some(recnum))
        .unwrap_or_else(|| panic!("no record {recnum} in the log"))
}

/// The filter installed in `pid`, read back from the kernel: there must be exactly one.
fn installed_filter(pid: i32) -> Vec<u8> {
    let filters = warren_sys::seccomp_filters(pid).expect("PTRACE_SECCOMP_GET_FILTER");
    assert_eq!(
        filters.len(),
        1,
        "the workload runs under exactly one filter"
    );
    filters.into_iter().next().unwrap()
}

/// Check the three digests of one environment agree; return the digest.
fn check_environment(state: &Path, record: &Value) -> String {
    let pid = record["pid"].as_i64().unwrap() as i32;
    let installed = installed_filter(pid);
    let installed_digest = warren_seccomp::digest_of(&installed);
    let applied = &record["applied"];
    assert_eq!(applied["seccomp"]["mode"], "filter");
    assert_eq!(
        applied["seccomp"]["profile_digest"].as_str(),
        Some(installed_digest.as_str()),
        "inspect records the digest of the filter the kernel runs"
    );
    let recnum = applied["measurement"]["recnum"].as_u64().unwrap();
    let logged = log_record(state, recnum);
    assert_eq!(logged["content"]["name"], record["name"]);
    assert_eq!(
        logged["content"]["config"]["seccomp_profile"].as_str(),
        Some(installed_digest.as_str()),
        "the event log records the digest of the filter the kernel runs"
    );
    // And it is the program compiled into Warren, byte for byte: the notifying variant (refused
    // calls go to the launcher, which logs them), not the plain one.
    let built = warren_seccomp::Program::host_notifying();
    assert_eq!(installed, built.bytes());
    assert_eq!(installed_digest, built.digest());
    assert_ne!(installed_digest, warren_seccomp::Program::host().digest());
    installed_digest
}

#[test]
fn the_measured_seccomp_digest_is_the_digest_of_the_loaded_filter() {
    // Control for the read-back: a process under no filter reads back as none, so the filter
    // found below is the environment's.
    let plain = spawn_sleep();
    assert_eq!(
        warren_sys::seccomp_filters(plain.id() as i32).unwrap(),
        Vec::<Vec<u8>>::new()
    );
    let state = state_dir();
    let name = unique("secd");
    let (bg, record) = start(state.path(), &name);
    check_environment(state.path(), &record);
    drop(bg);
}

#[test]
fn no_file_on_disk_changes_the_filter_or_its_recorded_digest() {
    let state = state_dir();
    // Where the old launcher kept its compiled program: `<state>/cache/seccomp-<key>.bpf`, keyed
    // by the `warren` binary's device, inode, size and mtime, first line the digest to record.
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata(env!("CARGO_BIN_EXE_warren")).unwrap();
    let key = format!(
        "{:x}-{:x}-{:x}-{:x}",
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime()
    );
    let cache = state.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let entry = cache.join(format!("seccomp-{key}.bpf"));

    // A well-formed old entry: a made-up digest and a one-instruction "allow everything".
    let forged_digest = format!("sha256:{}", "ab".repeat(32));
    let mut forged = format!("{forged_digest}\n").into_bytes();
    forged.extend_from_slice(&0x06u16.to_le_bytes()); // BPF_RET | BPF_K
    forged.extend_from_slice(&[0, 0]);
    forged.extend_from_slice(&RET_ALLOW.to_le_bytes());
    std::fs::write(&entry, &forged).unwrap();
    let (bg, record) = start(state.path(), &unique("secf"));
    let digest = check_environment(state.path(), &record);
    assert_ne!(digest, forged_digest);
    drop(bg);
    assert_eq!(
        std::fs::read(&entry).unwrap(),
        forged,
        "the launcher does not touch the old cache file"
    );

    // Garbage there changes nothing either.
    std::fs::write(&entry, b"garbage\n\x00\x01\x02").unwrap();
    let (bg, record) = start(state.path(), &unique("secg"));
    assert_eq!(check_environment(state.path(), &record), digest);
    drop(bg);
}

/// A plain child process (no seccomp), killed when the test ends.
fn spawn_sleep() -> KillOnDrop {
    KillOnDrop(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap(),
    )
}

struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
