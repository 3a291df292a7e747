//! The unpacker against small archives: whiteouts and opaque directories as the OCI
//! specification has them, replacement across layers, and a property test that no archive, however
//! built, writes outside the root.

use super::*;

#[test]
fn clean_refuses_absolute_and_dotdot_and_drops_dots() {
    assert_eq!(clean(b"./a//b/./c").unwrap(), vec![&b"a"[..], b"b", b"c"]);
    assert!(clean(b"/etc/passwd").unwrap_err().contains("absolute"));
    assert!(clean(b"a/../../etc").unwrap_err().contains(".."));
    assert!(clean(b"./").unwrap().is_empty());
}

#[test]
fn relative_symlinks_may_not_climb_above_the_root() {
    assert!(check_symlink(0, b"/etc/passwd").is_ok());
    assert!(check_symlink(1, b"../lib/x").is_ok());
    assert!(check_symlink(2, b"../../x").is_ok());
    assert!(check_symlink(1, b"../../x").is_err());
    assert!(check_symlink(0, b"a/../../x").is_err());
    assert!(check_symlink(0, b"").is_err());
}

use std::path::Path;

use proptest::prelude::*;

/// One raw ustar entry (the tar crate's builder refuses the hostile paths tested here).
fn entry(kind: u8, path: &str, data: &[u8], link: &str) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, len: usize, s: &[u8]| {
        let n = s.len().min(len);
        h[off..off + n].copy_from_slice(&s[..n]);
    };
    put(&mut h, 0, 100, path.as_bytes());
    let mode: &[u8] = if kind == b'5' {
        b"0000755\0"
    } else {
        b"0000644\0"
    };
    put(&mut h, 100, 8, mode);
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn file(path: &str, data: &str) -> Vec<u8> {
    entry(b'0', path, data.as_bytes(), "")
}

fn dir(path: &str) -> Vec<u8> {
    entry(b'5', path, b"", "")
}

fn layer(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t = entries.concat();
    t.extend_from_slice(&[0u8; 1024]);
    t
}

fn unpacker(root: &Path) -> Unpacker {
    let fd = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    Unpacker::new(fd, Limits::default(), false)
}

/// The tree under `root` as sorted `path` (directories end in `/`, symlinks show `-> target`).
fn tree(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers_only() {
    let t = tempfile::tempdir().unwrap();
    let mut u = unpacker(t.path());
    u.apply_layer(
        "1",
        &layer(&[
            dir("d"),
            file("d/a", "a"),
            dir("d/sub"),
            file("d/sub/deep", "x"),
            file("x", "x"),
            file("keep", "k"),
        ])[..],
    )
    .unwrap();
    u.apply_layer(
        "2",
        &layer(&[
            file("d/new", "n"),         // before the opaque marker: this layer's, kept
            file("d/.wh..wh..opq", ""), // hides a, sub (lower layer)
            file("d/later", "l"),       // after the marker: kept
            file(".wh.x", ""),          // hides x
            file("y", "y"),
            file(".wh.y", ""),           // y is this layer's: kept
            file(".wh.never-there", ""), // nothing to hide
            file("gone/.wh.z", ""),      // parent missing: nothing to hide
            file(".wh..wh.plnk", ""),    // aufs bookkeeping: ignored
        ])[..],
    )
    .unwrap();
    assert_eq!(tree(t.path()), ["d/", "d/later", "d/new", "keep", "y"]);
    assert_eq!(
        std::fs::read_to_string(t.path().join("d/new")).unwrap(),
        "n"
    );
}

#[test]
fn later_layers_replace_files_directories_and_links() {
    let t = tempfile::tempdir().unwrap();
    let mut u = unpacker(t.path());
    u.apply_layer(
        "1",
        &layer(&[
            dir("p"),
            file("p/child", "c"),
            file("q", "q"),
            entry(b'2', "l", b"", "q"),
            file("f", "old"),
        ])[..],
    )
    .unwrap();
    u.apply_layer(
        "2",
        &layer(&[
            file("p", "now a file"),
            dir("q"),
            file("q/inside", "i"),
            file("l", "was a link"),
            file("f", "new"),
            entry(b'1', "hard", b"", "f"),
        ])[..],
    )
    .unwrap();
    assert_eq!(tree(t.path()), ["f", "hard", "l", "p", "q/", "q/inside"]);
    assert_eq!(
        std::fs::read_to_string(t.path().join("p")).unwrap(),
        "now a file"
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("l")).unwrap(),
        "was a link"
    );
    use std::os::unix::fs::MetadataExt;
    let (f, h) = (t.path().join("f"), t.path().join("hard"));
    assert_eq!(
        std::fs::metadata(f).unwrap().ino(),
        std::fs::metadata(h).unwrap().ino()
    );
}

/// Pieces of hostile archives: paths and link targets that try every way out.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "..",
        ".",
        "",
        "out",
        "s",
        ".wh.a",
        ".wh..wh..opq",
    ])
}

#[derive(Debug, Clone)]
enum Op {
    File(Vec<&'static str>),
    Dir(Vec<&'static str>),
    Symlink(Vec<&'static str>, u8),
    Hard(Vec<&'static str>, Vec<&'static str>),
}

fn op() -> impl Strategy<Value = Op> {
    let path = || prop::collection::vec(piece(), 1..4);
    prop_oneof![
        path().prop_map(Op::File),
        path().prop_map(Op::Dir),
        (path(), 0u8..4).prop_map(|(p, t)| Op::Symlink(p, t)),
        (path(), path()).prop_map(|(p, t)| Op::Hard(p, t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the entries, absolute or not, through links or `..`: nothing outside the root
    /// is created or changed, and nothing panics.
    #[test]
    fn no_archive_writes_outside_the_root(
        layers in prop::collection::vec(prop::collection::vec(op(), 1..8), 1..3),
        absolute in any::<bool>(),
    ) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("marker"), "untouched").unwrap();
        let outside_abs = outside.display().to_string();
        let targets = ["../outside", outside_abs.as_str(), "/", "../../.."];
        let mut u = unpacker(&root);
        for ops in &layers {
            let mut entries = Vec::new();
            for op in ops {
                let p = |parts: &[&str]| {
                    let s = parts.join("/");
                    if absolute { format!("/{s}") } else { s }
                };
                entries.push(match op {
                    Op::File(x) => file(&p(x), "pwned"),
                    Op::Dir(x) => dir(&p(x)),
                    Op::Symlink(x, i) => entry(b'2', &p(x), b"", targets[*i as usize]),
                    Op::Hard(x, y) => entry(b'1', &p(x), b"", &p(y)),
                });
            }
            let _ = u.apply_layer("p", &layer(&entries)[..]);
        }
        let mut all = tree(t.path());
        all.retain(|e| !e.starts_with("root"));
        prop_assert_eq!(all, vec!["outside/".to_owned(), "outside/marker".to_owned()]);
        prop_assert_eq!(std::fs::read_to_string(outside.join("marker")).unwrap(), "untouched");
    }
}

/// Positive control for the property above: its check does see a write that escapes through a
/// symlink, as a naive extractor (a path join and `std::fs`) would make it.
#[test]
fn the_escape_check_sees_a_naive_escape() {
    let t = tempfile::tempdir().unwrap();
    let (root, outside) = (t.path().join("root"), t.path().join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("s")).unwrap();
    std::fs::write(root.join("s").join("pwn"), "pwned").unwrap();
    let mut all = tree(t.path());
    all.retain(|e| !e.starts_with("root"));
    assert_eq!(all, ["outside/", "outside/pwn"]);
    // The unpacker, given the same two entries, refuses the second and writes nothing there.
    std::fs::remove_file(outside.join("pwn")).unwrap();
    std::fs::remove_file(root.join("s")).unwrap();
    let mut u = unpacker(&root);
    let l = layer(&[
        entry(b'2', "s", b"", outside.to_str().unwrap()),
        file("s/pwn", "pwned"),
    ]);
    let err = u.apply_layer("1", &l[..]).unwrap_err().to_string();
    assert!(err.contains("goes through a symlink"), "{err}");
    assert!(!outside.join("pwn").exists());
}
