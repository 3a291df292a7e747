//! Images (issue 9), black-box: OCI layouts made by `umoci`, layouts and `docker save`
//! archives put together by hand from the documented formats (gzip, zstd and plain layers),
//! and hostile archives, imported with the real `warren` binary and run under
//! `warren run --image`. Every test has a state directory (and so an image store) of its own,
//! removed at the end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{assert_code, stderr, stdout, unique};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A state directory of one test, removed (with its image store) on drop.
struct State(PathBuf);

impl State {
    fn new() -> State {
        let p = PathBuf::from(format!("/run/{}", unique("warren-image")));
        let _ = std::fs::remove_dir_all(&p);
        State(p)
    }

    fn warren(&self) -> Command {
        let mut c = common::warren();
        c.env("WARREN_STATE_DIR", &self.0);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.warren().args(args).output().unwrap()
    }

    fn images(&self) -> PathBuf {
        self.0.join("images")
    }

    /// Entries of a store subdirectory.
    fn entries(&self, sub: &str) -> Vec<String> {
        std::fs::read_dir(self.images().join(sub))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The store holds nothing: no root, no blob, no scratch, no name.
    fn assert_empty(&self) {
        for sub in ["roots", "blobs/sha256", "tmp"] {
            assert!(
                self.entries(sub).is_empty(),
                "{sub} is not empty: {:?}",
                self.entries(sub)
            );
        }
        let ls = self.run(&["image", "ls", "-q"]);
        assert_code(&ls, 0);
        assert_eq!(stdout(&ls), "", "no image may be listed");
    }

    fn import(&self, path: &Path, extra: &[&str]) -> Output {
        self.warren()
            .args(["image", "import"])
            .arg(path)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Import and return the JSON report.
    fn import_ok(&self, path: &Path, extra: &[&str]) -> Value {
        let o = self.import(path, &[extra, &["--json"]].concat());
        assert_code(&o, 0);
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-ec", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("warren-image-{tag}-"))
        .tempdir()
        .unwrap()
}

/// A small busybox root directory: the applets the tests use, passwd and group.
fn busybox_tree(dir: &Path) {
    for d in ["bin", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for a in [
        "sh", "cat", "ls", "id", "stat", "echo", "sleep", "test", "touch", "pwd",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
}

// --- a tar writer for archives GNU tar will not write (hostile ones) ---------------------------

/// One ustar entry: `kind` is the typeflag (`0` file, `2` symlink, `1` hard link, `3` char
/// device, `5` directory).
fn tar_entry(kind: u8, path: &str, mode: u32, data: &[u8], link: &str) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, len: usize, s: &[u8]| {
        h[off..off + s.len().min(len)].copy_from_slice(&s[..s.len().min(len)]);
    };
    put(&mut h, 0, 100, path.as_bytes());
    put(&mut h, 100, 8, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    if kind == b'3' {
        put(&mut h, 329, 8, b"0000001\0");
        put(&mut h, 337, 8, b"0000003\0");
    }
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t = entries.concat();
    t.extend_from_slice(&[0u8; 1024]);
    t
}

/// An OCI layout written by hand: blobs, one manifest, a config, the index.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_owned(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let d = sha256(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    }

    /// Write the image: layers as (blob bytes, media type, uncompressed bytes).
    fn image(&self, layers: &[(Vec<u8>, &str, Vec<u8>)], run: Value) -> String {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.2)).collect();
        let config = json!({
            "architecture": "amd64", "os": "linux", "config": run,
            "rootfs": { "type": "layers", "diff_ids": diff_ids }
        });
        let (cd, cs) = self.blob(config.to_string().as_bytes());
        let descs: Vec<Value> = layers
            .iter()
            .map(|(b, mt, _)| {
                let (d, s) = self.blob(b);
                json!({ "mediaType": mt, "digest": d, "size": s })
            })
            .collect();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs },
            "layers": descs
        });
        let (md, ms) = self.blob(manifest.to_string().as_bytes());
        let index = json!({ "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": { "org.opencontainers.image.ref.name": "latest" } }] });
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
        md
    }
}

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn gzip(b: &[u8]) -> Vec<u8> {
    compress("gzip", &["-n", "-c"], b)
}

fn zstd(b: &[u8]) -> Vec<u8> {
    compress("zstd", &["-q", "-c"], b)
}

fn compress(tool: &str, args: &[&str], b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = b.to_vec();
    // Feed it from another thread: the output pipe would fill up and block both sides.
    let feeder = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let o = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(o.status.success());
    o.stdout
}

/// The busybox base layer as an uncompressed tar made by GNU tar.
fn base_layer() -> Vec<u8> {
    let t = scratch("base");
    let root = t.path().join("root");
    busybox_tree(&root);
    let out = t.path().join("base.tar");
    sh(&format!(
        "tar --numeric-owner --owner=0 --group=0 -C {} -cf {} .",
        root.display(),
        out.display()
    ));
    std::fs::read(out).unwrap()
}

// --- umoci ----------------------------------------------------------------------------------

/// An OCI layout built with umoci: a busybox base layer (with /etc/doomed, files owned by the
/// app user and by root, and /opt/old), then `umoci insert --whiteout /etc/doomed`,
/// `umoci insert` of /etc/added.txt, `umoci insert --opaque` of a new /opt, and a config with
/// entrypoint, cmd, env, user and working directory.
fn umoci_layout(work: &Path) -> PathBuf {
    let l = work.join("layout");
    let b = work.join("bundle");
    let umoci = |args: &[&str]| {
        let o = Command::new("umoci").args(args).output().unwrap();
        assert!(o.status.success(), "umoci {args:?}: {}", stderr(&o));
    };
    let (ls, bs) = (l.to_str().unwrap(), b.to_str().unwrap());
    umoci(&["init", "--layout", ls]);
    umoci(&["new", "--image", &format!("{ls}:latest")]);
    umoci(&["unpack", "--image", &format!("{ls}:latest"), bs]);
    let r = b.join("rootfs");
    busybox_tree(&r);
    std::fs::write(r.join("etc/doomed"), "doomed\n").unwrap();
    std::fs::write(r.join("etc/rootonly"), "root secret\n").unwrap();
    std::fs::create_dir_all(r.join("home/app")).unwrap();
    std::fs::create_dir_all(r.join("opt")).unwrap();
    std::fs::write(r.join("opt/old"), "old\n").unwrap();
    std::fs::write(r.join("home/app/mine"), "app secret\n").unwrap();
    sh(&format!(
        "chmod 600 {0}/etc/rootonly {0}/home/app/mine && chown -R 1000:1000 {0}/home/app",
        r.display()
    ));
    umoci(&["repack", "--image", &format!("{ls}:latest"), bs]);
    umoci(&[
        "insert",
        "--image",
        &format!("{ls}:latest"),
        "--whiteout",
        "/etc/doomed",
    ]);
    let added = work.join("added.txt");
    std::fs::write(&added, "added by a later layer\n").unwrap();
    umoci(&[
        "insert",
        "--image",
        &format!("{ls}:latest"),
        added.to_str().unwrap(),
        "/etc/added.txt",
    ]);
    let newopt = work.join("newopt");
    std::fs::create_dir_all(&newopt).unwrap();
    std::fs::write(newopt.join("new"), "new\n").unwrap();
    umoci(&[
        "insert",
        "--image",
        &format!("{ls}:latest"),
        "--opaque",
        newopt.to_str().unwrap(),
        "/opt",
    ]);
    umoci(&[
        "config",
        "--image",
        &format!("{ls}:latest"),
        "--config.entrypoint",
        "/bin/sh",
        "--config.cmd=-c",
        "--config.cmd=id; pwd; echo greeting=$GREETING home=$HOME; ls /etc; ls /opt; cat mine; cat /etc/rootonly 2>&1 || true",
        "--config.env",
        "GREETING=hi",
        "--config.user",
        "app",
        "--config.workingdir",
        "/home/app",
    ]);
    l
}

#[test]
fn umoci_image_runs_with_its_config_whiteouts_and_owners() {
    let st = State::new();
    let work = scratch("umoci");
    let layout = umoci_layout(work.path());
    let report = st.import_ok(&layout, &["--name", "umoci-busybox"]);
    assert_eq!(report["name"], "umoci-busybox:latest");
    assert_eq!(report["layers"], 4, "{report}");
    assert_eq!(report["format"], "oci-layout");
    // umoci's base has no /proc, /dev or /tmp: the import creates them and says so.
    assert_eq!(
        report["created"],
        json!(["/proc", "/dev", "/tmp"]),
        "{report}"
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    assert_eq!(
        report["manifest_digest"], digest,
        "the digest is umoci's manifest's"
    );

    let o = st.run(&["run", "--name", &unique("img"), "--image", "umoci-busybox"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "uid=1000(app) gid=1000(app) groups=1000(app)",
        "{out}"
    );
    assert_eq!(lines[1], "/home/app", "the working directory: {out}");
    assert_eq!(lines[2], "greeting=hi home=/home/app", "{out}");
    // The whiteout removed /etc/doomed; the later layer added /etc/added.txt.
    let etc: Vec<&str> = lines[3..]
        .iter()
        .take_while(|l| **l != "new")
        .copied()
        .collect();
    assert!(
        etc.contains(&"added.txt") && etc.contains(&"passwd"),
        "{out}"
    );
    assert!(
        !etc.contains(&"doomed"),
        "the whiteout must hide /etc/doomed: {out}"
    );
    // The opaque /opt holds only the new layer's file.
    assert!(
        out.contains("\nnew\n") && !out.contains("\nold\n"),
        "opaque /opt: {out}"
    );
    // Owners through the idmapped root: the app user reads its own 0600 file, not root's.
    assert!(out.contains("app secret"), "{out}");
    assert!(
        out.contains("Permission denied") && !out.contains("root secret"),
        "{out}"
    );

    // On disk the store keeps the image's owners; through the mount the environment sees them.
    let root = st
        .images()
        .join("roots")
        .join(report["root"].as_str().unwrap());
    let meta = std::fs::metadata(root.join("home/app/mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
    let o = st.run(&[
        "run",
        "--name",
        &unique("img"),
        "--image",
        "umoci-busybox",
        "--",
        "-c",
        "stat -c '%u:%g %a %n' /home/app/mine /bin/busybox; touch /bin/x 2>&1",
    ]);
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(out.contains("1000:1000 600 /home/app/mine"), "{out}");
    assert!(out.contains("0:0 755 /bin/busybox"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // The root as the environment sees it: read-only, nosuid, nodev and idmapped.
    let o = st.run(&[
        "run",
        "--name",
        &unique("img"),
        "--image",
        "umoci-busybox",
        "--",
        "-c",
        "cat /proc/self/mountinfo",
    ]);
    assert_code(&o, 0);
    let root_line = stdout(&o)
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .map(str::to_owned)
        .unwrap_or_default();
    for opt in ["ro", "nosuid", "nodev", "idmapped"] {
        assert!(
            root_line.split([' ', ',']).any(|w| w == opt),
            "{opt} missing from the root's mount: {root_line}"
        );
    }

    // A layout in a tar is the same image: same manifest, root reused.
    let tarred = work.path().join("layout.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        layout.display(),
        tarred.display()
    ));
    let again = st.import_ok(&tarred, &["--name", "umoci-busybox:tarred"]);
    assert_eq!(again["manifest_digest"], digest);
    assert_eq!(again["reused_root"], true, "{again}");
    assert_eq!(st.entries("roots").len(), 1, "one root for both names");
}

#[test]
fn gzip_zstd_and_plain_layers_are_verified_and_applied() {
    let st = State::new();
    let work = scratch("layers");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    let second = tar_of(&[
        tar_entry(b'0', "etc/.wh.group", 0o644, b"", ""),
        tar_entry(b'0', "etc/zstd-was-here", 0o644, b"zstd\n", ""),
    ]);
    let third = tar_of(&[tar_entry(b'0', "etc/plain", 0o644, b"plain\n", "")]);
    let digest = layout.image(
        &[
            (gzip(&base), TAR_GZ, base.clone()),
            (zstd(&second), TAR_ZST, second.clone()),
            (third.clone(), TAR, third.clone()),
        ],
        json!({ "Cmd": ["/bin/sh", "-c", "cat /etc/zstd-was-here /etc/plain; test -e /etc/group || echo no-group"] }),
    );
    let r = st.import_ok(&layout.dir, &["--name", "layers"]);
    assert_eq!(r["manifest_digest"], digest);
    let o = st.run(&["run", "--name", &unique("img"), "--image", "layers"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "zstd\nplain\nno-group\n");

    // One changed byte in a layer: refused, naming the blob, and nothing stored.
    let st2 = State::new();
    let blob = work
        .path()
        .join("layout/blobs/sha256")
        .join(&sha256(&third)[7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let o = st2.import(&layout.dir, &["--name", "layers"]);
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains(&format!(
            "blob {} does not match its descriptor",
            sha256(&third)
        )),
        "{}",
        stderr(&o)
    );
    st2.assert_empty();
    // A blob cut short fails on its size before anything is read.
    std::fs::write(&blob, &third[..1000]).unwrap();
    let o = st2.import(&layout.dir, &[]);
    assert!(
        stderr(&o).contains("the descriptor says 2048 bytes, the blob has 1000"),
        "{}",
        stderr(&o)
    );
    st2.assert_empty();
}

#[test]
fn docker_save_archives_import_and_run() {
    let st = State::new();
    let work = scratch("docker");
    let d = work.path().join("save");
    std::fs::create_dir_all(&d).unwrap();
    let base = base_layer();
    let top = tar_of(&[tar_entry(
        b'0',
        "etc/saved",
        0o644,
        b"from docker save\n",
        "",
    )]);
    let (d1, d2) = (sha256(&base), sha256(&top));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Entrypoint": ["/bin/cat"], "Cmd": ["/etc/saved"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [d1, d2, d2] }
    })
    .to_string();
    let chex = &sha256(config.as_bytes())[7..];
    std::fs::write(d.join(format!("{chex}.json")), &config).unwrap();
    for (id, bytes) in [(&d1[7..], &base), (&d2[7..], &top)] {
        std::fs::create_dir_all(d.join(id)).unwrap();
        std::fs::write(d.join(id).join("layer.tar"), bytes).unwrap();
        std::fs::write(d.join(id).join("VERSION"), "1.0").unwrap();
    }
    // docker save links a repeated layer to its first copy.
    std::fs::create_dir_all(d.join("again")).unwrap();
    std::os::unix::fs::symlink(
        format!("../{}/layer.tar", &d2[7..]),
        d.join("again/layer.tar"),
    )
    .unwrap();
    let manifest = json!([{
        "Config": format!("{chex}.json"),
        "RepoTags": ["saved/app:v1"],
        "Layers": [format!("{}/layer.tar", &d1[7..]), format!("{}/layer.tar", &d2[7..]), "again/layer.tar"]
    }]);
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(
        d.join("repositories"),
        json!({"saved/app": {"v1": &d2[7..]}}).to_string(),
    )
    .unwrap();
    let archive = work.path().join("saved.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        d.display(),
        archive.display()
    ));

    let r = st.import_ok(&archive, &[]);
    assert_eq!(
        r["name"], "saved/app:v1",
        "the name comes from RepoTags: {r}"
    );
    assert_eq!(r["format"], "docker-save");
    let o = st.run(&["run", "--name", &unique("img"), "--image", "saved/app:v1"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "from docker save\n");
    // The manifest Warren wrote for it is stored under its digest, with the layers' digests.
    let o = st.run(&["image", "inspect", "saved/app:v1"]);
    assert_code(&o, 0);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["manifest_document"]["layers"][0]["digest"], d1.as_str());
    assert_eq!(
        v["manifest_document"]["config"]["digest"],
        format!("sha256:{chex}")
    );

    // A config that does not hash to its file name is refused.
    let st2 = State::new();
    let mut bad = config.clone();
    bad.push(' ');
    std::fs::write(d.join(format!("{chex}.json")), &bad).unwrap();
    let o = st2.import(&d, &[]);
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("does not match its descriptor"),
        "{}",
        stderr(&o)
    );
    st2.assert_empty();
}

/// Import a one-layer layout holding `layer`, expecting a refusal mentioning `needle`; the
/// store must be left empty.
fn refused(tag: &str, layer: Vec<u8>, extra: &[&str], needle: &str) {
    let st = State::new();
    let work = scratch(tag);
    let layout = Layout::new(&work.path().join("layout"));
    layout.image(&[(layer.clone(), TAR, layer)], json!({}));
    let o = st.import(&layout.dir, &[&["--name", "hostile"], extra].concat());
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains(needle),
        "{tag}: expected {needle:?} in:\n{}",
        stderr(&o)
    );
    st.assert_empty();
}

#[test]
fn hostile_archives_are_refused_by_entry_and_leave_nothing() {
    let ok = tar_entry(b'0', "fine", 0o644, b"x", "");
    refused(
        "dotdot",
        tar_of(&[
            ok.clone(),
            tar_entry(b'0', "a/../../escaped", 0o644, b"x", ""),
        ]),
        &[],
        "entry \"a/../../escaped\": path climbs out of the root with '..'",
    );
    refused(
        "absolute",
        tar_of(&[tar_entry(b'0', "/etc/cron.d/evil", 0o644, b"x", "")]),
        &[],
        "entry \"/etc/cron.d/evil\": absolute path",
    );
    refused(
        "device",
        tar_of(&[tar_entry(b'3', "dev/mem2", 0o600, b"", "")]),
        &[],
        "entry \"dev/mem2\": device node",
    );
    refused(
        "setuid",
        tar_of(&[tar_entry(b'0', "bin/su", 0o4755, b"x", "")]),
        &[],
        "entry \"bin/su\": set-uid/set-gid bit (mode 4755): refused; import with --allow-setuid",
    );
    refused(
        "hardlink-out",
        tar_of(&[tar_entry(
            b'1',
            "passwd",
            0o644,
            b"",
            "../../../../etc/passwd",
        )]),
        &[],
        "hard link to \"../../../../etc/passwd\": path climbs out of the root",
    );
    refused(
        "hardlink-abs",
        tar_of(&[tar_entry(b'1', "shadow", 0o644, b"", "/etc/shadow")]),
        &[],
        "hard link to \"/etc/shadow\": absolute path",
    );
    refused(
        "symlink-climb",
        tar_of(&[tar_entry(b'2', "a/up", 0o777, b"", "../../etc")]),
        &[],
        "symlink to \"../../etc\" points out of the root",
    );
    let files: Vec<Vec<u8>> = (0..1500)
        .map(|i| tar_entry(b'0', &format!("f{i}"), 0o644, b"", ""))
        .collect();
    refused(
        "count",
        tar_of(&files),
        &["--max-files", "1000"],
        "the number of archive entries exceeds the limit of 1000 (--max-files)",
    );
    refused(
        "bytes",
        tar_of(&[tar_entry(b'0', "big", 0o644, &vec![0u8; 3 << 20], "")]),
        &["--max-bytes", "1M"],
        "the size of the unpacked files exceeds the limit of 1048576 (--max-bytes)",
    );
    let deep = (0..20)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    refused(
        "depth",
        tar_of(&[tar_entry(b'0', &deep, 0o644, b"x", "")]),
        &["--max-depth", "16"],
        "exceeds the limit of 16 (--max-depth)",
    );

    // With --allow-setuid the bit is kept in the store (and is inert: nosuid, no_new_privs).
    let st = State::new();
    let work = scratch("setuid-ok");
    let layout = Layout::new(&work.path().join("layout"));
    let layer = tar_of(&[tar_entry(b'0', "bin/su", 0o4755, b"x", "")]);
    layout.image(&[(layer.clone(), TAR, layer)], json!({}));
    let r = st.import_ok(&layout.dir, &["--name", "suid", "--allow-setuid"]);
    let su = st
        .images()
        .join("roots")
        .join(r["root"].as_str().unwrap())
        .join("bin/su");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(su).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o4755);
}

#[test]
fn a_symlink_then_a_write_through_it_never_reaches_the_host() {
    let host = scratch("host-target");
    let target = host.path().join("victim");
    std::fs::create_dir(&target).unwrap();
    let layer = tar_of(&[
        tar_entry(b'2', "evil", 0o777, b"", target.to_str().unwrap()),
        tar_entry(b'0', "evil/pwned", 0o644, b"pwned\n", ""),
    ]);
    // Positive control: extracting these two entries naively (following the link, as a plain
    // path join does) writes into the host directory, so the check below can see an escape.
    let naive = scratch("naive");
    std::os::unix::fs::symlink(&target, naive.path().join("evil")).unwrap();
    std::fs::write(naive.path().join("evil/pwned"), "pwned\n").unwrap();
    assert!(
        target.join("pwned").exists(),
        "the control must reach the host directory"
    );
    std::fs::remove_file(target.join("pwned")).unwrap();

    refused(
        "symlink-write",
        layer.clone(),
        &[],
        "entry \"evil/pwned\": goes through a symlink",
    );
    assert!(
        !target.join("pwned").exists(),
        "the import wrote through the symlink"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

    // The same with a hard link through a symlink to the host's /etc.
    let layer = tar_of(&[
        tar_entry(b'2', "etc-link", 0o777, b"", "/etc"),
        tar_entry(b'1', "stolen", 0o644, b"", "etc-link/passwd"),
    ]);
    refused(
        "hardlink-symlink",
        layer,
        &[],
        "hard link to \"etc-link/passwd\": its target goes through a symlink",
    );
    // An absolute symlink alone is fine: it names a path inside the image.
    let st = State::new();
    let work = scratch("abs-link");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    let top = tar_of(&[tar_entry(
        b'2',
        "etc/host-passwd",
        0o777,
        b"",
        "/etc/passwd",
    )]);
    layout.image(
        &[(base.clone(), TAR, base), (top.clone(), TAR, top)],
        json!({ "Cmd": ["/bin/cat", "/etc/host-passwd"] }),
    );
    st.import_ok(&layout.dir, &["--name", "abslink"]);
    let o = st.run(&["run", "--name", &unique("img"), "--image", "abslink"]);
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        "the link resolves to the image's passwd, not the host's"
    );
}

#[test]
fn image_rm_is_refused_while_an_environment_uses_it() {
    let st = State::new();
    let work = scratch("rm");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    let digest = layout.image(
        &[(base.clone(), TAR, base)],
        json!({ "Cmd": ["/bin/sleep", "30"] }),
    );
    st.import_ok(&layout.dir, &["--name", "sleeper"]);
    // A second name for the same image shares its root and blobs.
    st.import_ok(&layout.dir, &["--name", "alias"]);
    let env = unique("img");
    let mut child = st
        .warren()
        .args(["run", "--name", &env, "--image", "sleeper"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut record = Value::Null;
    for _ in 0..500 {
        let o = st.run(&["inspect", &env]);
        if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
            if v["pid"].is_i64() {
                record = v;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        record["applied"]["image_manifest_digest"],
        digest.as_str(),
        "{record}"
    );
    assert_eq!(record["applied"]["image_name"], "sleeper:latest");
    assert_eq!(record["applied"]["root"]["kind"], "image");
    // The launch measurement records the manifest digest, in the record and in the event log
    // (`warren attest log`, CEL JSON).
    assert_eq!(
        record["applied"]["measurement"]["image_manifest_digest"],
        digest.as_str(),
        "{record}"
    );
    let log = st.run(&["attest", "log"]);
    assert_code(&log, 0);
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    let entry = log
        .lines()
        .find(|l| l.contains(&format!("\"{env}\"")))
        .unwrap_or_else(|| panic!("no event for {env} in the log:\n{log}"));
    assert!(entry.contains(digest.as_str()), "{entry}");

    let o = st.run(&["image", "rm", "sleeper"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains(&format!(
            "image sleeper:latest is in use by environment {env}"
        )),
        "{}",
        stderr(&o)
    );
    // The alias is not in use and its removal deletes nothing the environment needs.
    assert_code(&st.run(&["image", "rm", "alias"]), 0);
    assert_eq!(st.entries("roots").len(), 1);

    for _ in 0..2 {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait().unwrap();
    let o = st.run(&["image", "rm", "sleeper"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("removed sleeper:latest sha256:"),
        "{}",
        stdout(&o)
    );
    st.assert_empty();
    let o = st.run(&["image", "rm", "sleeper"]);
    assert!(
        stderr(&o).contains("no image named sleeper:latest"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ls_and_bad_input() {
    let st = State::new();
    let work = scratch("ls");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    layout.image(&[(base.clone(), TAR, base)], json!({}));
    st.import_ok(&layout.dir, &["--name", "one:v1", "-q"]);
    let o = st.run(&["image", "ls", "--json"]);
    assert_code(&o, 0);
    let v: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(v["name"], "one:v1");
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    // No entrypoint or cmd: a command is needed.
    let o = st.run(&["run", "--name", &unique("img"), "--image", "one:v1"]);
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("has no entrypoint or cmd"),
        "{}",
        stderr(&o)
    );
    let o = st.run(&["run", "--name", &unique("img"), "--image", "two"]);
    assert!(
        stderr(&o).contains("no image named two:latest"),
        "{}",
        stderr(&o)
    );
    let o = st.run(&["image", "import", "/nonexistent", "--name", "x"]);
    assert_code(&o, 125);
    let o = st.run(&[
        "image",
        "import",
        work.path().to_str().unwrap(),
        "--name",
        "x",
    ]);
    assert!(stderr(&o).contains("is not an image"), "{}", stderr(&o));
    let o = st.run(&[
        "image",
        "import",
        layout.dir.to_str().unwrap(),
        "--name",
        "Bad Name",
    ]);
    assert!(stderr(&o).contains("invalid --name"), "{}", stderr(&o));
    assert_eq!(st.entries("roots").len(), 1);
    assert!(st.entries("tmp").is_empty());
}

#[test]
fn concurrent_imports_into_one_store_all_land() {
    let st = State::new();
    let work = scratch("concurrent");
    let mut layouts = Vec::new();
    for i in 0..3 {
        let layout = Layout::new(&work.path().join(format!("l{i}")));
        let base = base_layer();
        let top = tar_of(&[tar_entry(
            b'0',
            "etc/which",
            0o644,
            format!("{i}\n").as_bytes(),
            "",
        )]);
        layout.image(
            &[(gzip(&base), TAR_GZ, base), (top.clone(), TAR, top)],
            json!({ "Cmd": ["/bin/cat", "/etc/which"] }),
        );
        layouts.push(layout.dir);
    }
    let children: Vec<_> = layouts
        .iter()
        .enumerate()
        .map(|(i, l)| {
            st.warren()
                .args(["image", "import", "-q", "--name", &format!("c{i}")])
                .arg(l)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_code(&o, 0);
    }
    for i in 0..3 {
        let o = st.run(&["run", "--name", &unique("img"), "--image", &format!("c{i}")]);
        assert_code(&o, 0);
        assert_eq!(stdout(&o), format!("{i}\n"));
    }
    // Three images, three roots, and no scratch left by any of the imports.
    assert_eq!(st.entries("roots").len(), 3);
    assert!(st.entries("tmp").is_empty());
}

#[test]
fn an_image_launch_failing_at_any_step_leaves_the_image_removable() {
    let st = State::new();
    let work = scratch("faults");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    layout.image(
        &[(base.clone(), TAR, base)],
        json!({ "Cmd": ["/bin/echo", "ran"], "User": "app", "WorkingDir": "/etc" }),
    );
    st.import_ok(&layout.dir, &["--name", "faulty"]);
    let name = unique("img");
    for step in [
        "clone",
        "uid-map",
        "wait-parent",
        "mount-root",
        "readonly-root",
        "pivot-root",
        "capabilities",
        "exec",
    ] {
        let o = st
            .warren()
            .env("WARREN_FAULT_INJECT", step)
            .args(["run", "--name", &name, "--image", "faulty"])
            .output()
            .unwrap();
        assert_code(&o, 125);
        assert!(stderr(&o).contains(step), "{step}: {}", stderr(&o));
        assert!(
            common::cgroup_dirs(&name).is_empty(),
            "{step}: a cgroup was left"
        );
    }
    // The name, the uid range and the root's lock were all released: the same name runs, as
    // the image's user in its working directory, and the image can then be removed.
    let o = st.run(&[
        "run",
        "--name",
        &name,
        "--image",
        "faulty",
        "--",
        "/bin/sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "1000\n/etc\n");
    assert_code(&st.run(&["image", "rm", "faulty"]), 0);
    st.assert_empty();
}

/// A `warren daemon` on a test's own state directory, killed on drop.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_manifest_runs_a_stored_image_through_the_kernel() {
    let st = State::new();
    let work = scratch("manifest");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    let digest = layout.image(
        &[(base.clone(), TAR, base)],
        json!({ "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo default"], "User": "app" }),
    );
    st.import_ok(&layout.dir, &["--name", "svc:1"]);
    let daemon = Daemon(
        st.warren()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let manifest = work.path().join("spaces.toml");
    std::fs::write(
        &manifest,
        "[space.svc]\nimage = { name = \"svc:1\" }\ncommand = [\"id -u; sleep 30\"]\n",
    )
    .unwrap();
    let mut applied = false;
    for _ in 0..200 {
        let o = st.run(&["apply", manifest.to_str().unwrap()]);
        if o.status.success() {
            applied = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(applied, "the kernel did not accept the manifest");
    let mut record = Value::Null;
    for _ in 0..400 {
        let o = st.run(&["inspect", "svc"]);
        if let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) {
            if v["pid"].is_i64() && stdout(&st.run(&["logs", "svc"])) == "1000\n" {
                record = v;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let rm_refused = st.run(&["image", "rm", "svc:1"]);
    // Stop and remove before asserting, so a failure leaves no environment running.
    assert_code(&st.run(&["stop", "-t", "1", "svc"]), 0);
    assert_code(&st.run(&["rm", "svc"]), 0);
    assert_eq!(
        record["applied"]["image_manifest_digest"],
        digest.as_str(),
        "{record}"
    );
    assert_eq!(record["applied"]["image_name"], "svc:1");
    assert_eq!(record["applied"]["user"], "1000:1000");
    assert!(
        stderr(&rm_refused).contains("in use by environment svc"),
        "{}",
        stderr(&rm_refused)
    );
    assert_code(&st.run(&["image", "rm", "svc:1"]), 0);
    drop(daemon);
    st.assert_empty();
}

#[test]
fn a_layout_with_several_images_needs_a_ref() {
    let st = State::new();
    let work = scratch("refs");
    let dir = work.path().join("multi");
    let layout = Layout::new(&dir);
    let base = base_layer();
    let one = layout.image(
        &[(base.clone(), TAR, base.clone())],
        json!({ "Cmd": ["/bin/echo", "one"] }),
    );
    let two = layout.image(
        &[(base.clone(), TAR, base)],
        json!({ "Cmd": ["/bin/echo", "two"] }),
    );
    let size = |d: &str| {
        std::fs::metadata(dir.join("blobs/sha256").join(&d[7..]))
            .unwrap()
            .len()
    };
    let index = json!({ "schemaVersion": 2, "manifests": [
        { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": one, "size": size(&one),
          "annotations": { "org.opencontainers.image.ref.name": "v1" } },
        { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": two, "size": size(&two),
          "annotations": { "org.opencontainers.image.ref.name": "v2" } } ] });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    let o = st.import(&dir, &[]);
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("the layout holds 2 images (v1, v2): choose one with --ref"),
        "{}",
        stderr(&o)
    );
    let r = st.import_ok(&dir, &["--ref", "v2"]);
    assert_eq!(r["name"], "multi:v2");
    assert_eq!(r["manifest_digest"], two.as_str());
    let r = st.import_ok(&dir, &["--ref", &one, "--name", "first"]);
    assert_eq!(r["manifest_digest"], one.as_str());
    assert_eq!(r["reused_root"], true, "same layers, same root");
    let o = st.run(&["run", "--name", &unique("img"), "--image", "multi:v2"]);
    assert_eq!(stdout(&o), "two\n");
    let o = st.import(&dir, &["--ref", "v3"]);
    assert!(
        stderr(&o).contains("no image tagged \"v3\" in the layout (it has: v1, v2)"),
        "{}",
        stderr(&o)
    );
}

/// The escape probe (issue 3) inside an image environment: the idmapped image root must hold
/// as well as a plain `--rootfs` one. No attack may come out open.
#[test]
fn the_escape_probe_finds_nothing_open_in_an_image_environment() {
    let st = State::new();
    let work = scratch("probe");
    let probe = common::workspace_bin("warren-probe", "warren-probe");
    let t = work.path().join("probe-layer");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::copy(probe, t.join("warren-probe")).unwrap();
    let tarball = work.path().join("probe.tar");
    sh(&format!(
        "tar --numeric-owner --owner=0 --group=0 -C {} -cf {} .",
        t.display(),
        tarball.display()
    ));
    let top = std::fs::read(&tarball).unwrap();
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    layout.image(
        &[(gzip(&base), TAR_GZ, base), (top.clone(), TAR, top)],
        json!({ "Entrypoint": ["/warren-probe"] }),
    );
    st.import_ok(&layout.dir, &["--name", "probe"]);
    let marker = work.path().join("host-marker");
    std::fs::write(&marker, "host secret").unwrap();
    let o = st.run(&[
        "run",
        "--name",
        &unique("img"),
        "--image",
        "probe",
        "--",
        "--marker",
        marker.to_str().unwrap(),
        "all",
    ]);
    assert_code(&o, 0);
    let mut seen = 0;
    let mut open = Vec::new();
    let outcome = |probe: &str| -> (String, String) {
        for l in stdout(&o).lines() {
            if let Some(i) = l.find("{\"probe\"") {
                let v: Value = serde_json::from_str(&l[i..]).unwrap();
                if v["probe"] == probe {
                    return (
                        v["outcome"].as_str().unwrap_or("").to_owned(),
                        v["errno"].as_str().unwrap_or("").to_owned(),
                    );
                }
            }
        }
        (String::new(), String::new())
    };
    for l in stdout(&o).lines() {
        if let Some(i) = l.find("{\"probe\"") {
            let v: Value = serde_json::from_str(&l[i..]).unwrap();
            seen += 1;
            if v["outcome"] == "open" {
                open.push(v.to_string());
            }
        }
    }
    assert!(
        seen > 30,
        "the probe ran only {seen} probes:\n{}",
        stdout(&o)
    );
    assert!(
        open.is_empty(),
        "open in an image environment:\n{}",
        open.join("\n")
    );
    assert_eq!(outcome("fs.write_root"), ("blocked".into(), "EROFS".into()));
    assert_eq!(
        outcome("fs.remount_root_rw"),
        ("blocked".into(), "EPERM".into())
    );
    assert_eq!(outcome("fs.read_marker_path").0, "blocked");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "host secret");
}

/// The `image` of the last launch record in a state directory.
fn last_launch_image(state: &Path) -> Value {
    let log = std::fs::read_to_string(state.join("attest/events.jsonl")).unwrap();
    let rec: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    rec["content"]["image"].clone()
}

#[test]
fn an_image_launch_records_the_digest_the_import_computed() {
    let st = State::new();
    let work = scratch("store-digest");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    layout.image(
        &[(base.clone(), TAR, base.clone())],
        json!({ "Cmd": ["/bin/echo", "ok"] }),
    );
    let r = st.import_ok(&layout.dir, &["--name", "digest"]);
    let tree = r["tree_digest"].as_str().unwrap().to_owned();
    assert!(tree.starts_with("blake3:"), "{r}");
    // It is the digest of the stored root, as a walk computes it.
    let root = st.images().join("roots").join(r["root"].as_str().unwrap());
    assert_eq!(
        tree,
        warren_attest::measure::tree_digest(&root).unwrap().digest
    );

    assert_code(
        &st.run(&["run", "--name", &unique("dg"), "--image", "digest"]),
        0,
    );
    let image = last_launch_image(&st.0);
    assert_eq!(image["kind"], "image");
    assert_eq!(image["digest_source"], "store", "{image}");
    assert_eq!(image["digest"], tree.as_str());
    assert_eq!(image["manifest_digest"], r["manifest_digest"]);

    // A record from a store that predates the digest: the launch walks the root, and finds
    // the same digest (the positive control that the walk and the store agree).
    let index_path = st.images().join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let rec = index["images"]["digest:latest"].as_object_mut().unwrap();
    assert!(rec.remove("tree_digest").is_some());
    std::fs::write(&index_path, index.to_string()).unwrap();
    assert_code(
        &st.run(&["run", "--name", &unique("dg"), "--image", "digest"]),
        0,
    );
    let walked = last_launch_image(&st.0);
    assert_eq!(walked["digest_source"], "walk", "{walked}");
    assert_eq!(walked["digest"], tree.as_str());
    // Importing it again adds the digest back.
    let again = st.import_ok(&layout.dir, &["--name", "digest"]);
    assert_eq!(again["reused_root"], true);
    assert_eq!(again["tree_digest"], tree.as_str());
    assert_code(
        &st.run(&["run", "--name", &unique("dg"), "--image", "digest"]),
        0,
    );
    assert_eq!(last_launch_image(&st.0)["digest_source"], "store");
}

#[test]
fn the_image_user_is_resolved_at_import_and_a_record_without_it_still_runs() {
    let st = State::new();
    let work = scratch("runas");
    let layout = Layout::new(&work.path().join("layout"));
    let base = base_layer();
    layout.image(
        &[(base.clone(), TAR, base)],
        json!({ "Cmd": ["/bin/sh", "-c", "id -u; id -g; echo $HOME"], "User": "app" }),
    );
    st.import_ok(&layout.dir, &["--name", "runas"]);
    let index_path = st.images().join("index.json");
    let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let rec = &index["images"]["runas:latest"];
    assert_eq!(
        rec["run_as"],
        json!({ "uid": 1000, "gid": 1000, "groups": [1000], "home": "/home/app" }),
        "{rec}"
    );
    let o = st.run(&["run", "--name", &unique("ra"), "--image", "runas"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "1000\n1000\n/home/app\n");

    // The record is what the launch uses: a record naming another user runs as that one (a
    // record is only ever written by import, from the root itself; this shows it is read).
    let mut edited = index.clone();
    edited["images"]["runas:latest"]["run_as"] =
        json!({ "uid": 7, "gid": 8, "groups": [8], "home": "/seven" });
    std::fs::write(&index_path, edited.to_string()).unwrap();
    let o = st.run(&["run", "--name", &unique("ra"), "--image", "runas"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "7\n8\n/seven\n");

    // `--user` is still resolved in the root at launch.
    let o = st.run(&[
        "run",
        "--name",
        &unique("ra"),
        "--image",
        "runas",
        "--user",
        "root",
    ]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "0\n0\n/root\n");

    // A record of an older store, without `run_as`: the user is resolved at launch.
    let mut old = index.clone();
    assert!(
        old["images"]["runas:latest"]
            .as_object_mut()
            .unwrap()
            .remove("run_as")
            .is_some()
    );
    std::fs::write(&index_path, old.to_string()).unwrap();
    let o = st.run(&["run", "--name", &unique("ra"), "--image", "runas"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), "1000\n1000\n/home/app\n");
}
