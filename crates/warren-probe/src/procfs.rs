//! Pure parsers for the `/proc` files the probes read (status, id maps, mountinfo, kallsyms,
//! net/dev), plus small readers that take the procfs root as a path so tests can use a tempdir.

use std::path::Path;

/// The value of `Key:` in a `/proc/<pid>/status` text, trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// The five capability sets of a status text, as `(name, mask)` pairs.
pub fn capability_sets(status: &str) -> Vec<(&'static str, Option<u64>)> {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .into_iter()
        .map(|k| {
            (
                k,
                status_field(status, k).and_then(|v| u64::from_str_radix(v, 16).ok()),
            )
        })
        .collect()
}

/// One line of `/proc/<pid>/uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdExtent {
    /// First id inside the namespace.
    pub inside: u64,
    /// First id outside (in the parent namespace).
    pub outside: u64,
    /// Number of ids.
    pub count: u64,
}

/// Parse an id map; malformed lines are skipped.
pub fn parse_id_map(text: &str) -> Vec<IdExtent> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(|w| w.parse::<u64>());
            Some(IdExtent {
                inside: f.next()?.ok()?,
                outside: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect()
}

/// Translate an inside id to the outside id through `map`.
pub fn map_to_outside(map: &[IdExtent], id: u64) -> Option<u64> {
    map.iter()
        .find(|e| id >= e.inside && id - e.inside < e.count)
        .map(|e| e.outside + (id - e.inside))
}

/// Whether any extent of `map` covers outside id 0 (host root, when the parent is the host).
pub fn covers_outside_root(map: &[IdExtent]) -> bool {
    map.iter().any(|e| e.outside == 0 && e.count > 0)
}

/// Undo mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'\\')
            .then(|| {
                field
                    .get(i + 1..i + 4)
                    .and_then(|s| u8::from_str_radix(s, 8).ok())
            })
            .flatten();
        if let Some(v) = escaped {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points listed in a `/proc/<pid>/mountinfo` text (field 5), in order.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect()
}

/// `(number of symbol lines, number with a non-zero address)` of a `/proc/kallsyms` text.
pub fn kallsyms_addresses(text: &str) -> (usize, usize) {
    let mut lines = 0;
    let mut nonzero = 0;
    for line in text.lines() {
        let Some(addr) = line.split_whitespace().next() else {
            continue;
        };
        lines += 1;
        if addr.bytes().any(|b| b != b'0') {
            nonzero += 1;
        }
    }
    (lines, nonzero)
}

/// Interface names in a `/proc/net/dev` text.
pub fn net_dev_interfaces(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_owned()))
        .filter(|n| !n.is_empty())
        .collect()
}

/// The numeric entries of a procfs root, sorted: the pids visible in this pid namespace.
pub fn visible_pids(proc_root: &Path) -> std::io::Result<Vec<i32>> {
    let mut pids: Vec<i32> = std::fs::read_dir(proc_root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// This process and its ancestors as far as they are visible (following `PPid:`).
pub fn self_and_ancestors(proc_root: &Path) -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = std::process::id() as i32;
    while pid > 0 && !chain.contains(&pid) && chain.len() < 4096 {
        chain.push(pid);
        let Ok(status) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status"))
        else {
            break;
        };
        pid = status_field(&status, "PPid")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tprobe\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n\
CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";

    #[test]
    fn status_fields_and_capabilities() {
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        assert_eq!(status_field(STATUS, "Seccomp_filters"), Some("1"));
        assert_eq!(status_field(STATUS, "Missing"), None);
        let caps = capability_sets(STATUS);
        assert_eq!(caps[3], ("CapBnd", Some(0x1ff_ffff_ffff)));
        assert!(
            caps.iter()
                .filter(|(n, _)| *n != "CapBnd")
                .all(|(_, v)| *v == Some(0))
        );
    }

    #[test]
    fn id_maps_translate_and_flag_host_root() {
        let host = parse_id_map("         0          0 4294967295\n");
        assert!(covers_outside_root(&host));
        let env = parse_id_map("0 100000 65536\n");
        assert!(!covers_outside_root(&env));
        assert_eq!(map_to_outside(&env, 0), Some(100_000));
        assert_eq!(map_to_outside(&env, 65_535), Some(165_535));
        assert_eq!(map_to_outside(&env, 65_536), None);
        let sneaky = parse_id_map("0 100000 1\n1000 0 1\n");
        assert!(covers_outside_root(&sneaky));
        assert!(parse_id_map("garbage\n1 2\n").is_empty());
    }

    #[test]
    fn mountinfo_points_are_unescaped() {
        let mi = "22 1 0:21 / / ro,relatime - tmpfs tmpfs rw\n\
                  23 22 0:5 /null /proc/kcore rw - devtmpfs udev rw\n\
                  24 22 0:6 / /my\\040dir rw - tmpfs t rw\n";
        assert_eq!(mount_points(mi), ["/", "/proc/kcore", "/my dir"]);
    }

    #[test]
    fn kallsyms_zero_and_real_addresses() {
        assert_eq!(
            kallsyms_addresses("0000000000000000 T _text\n0000000000000000 t x\n"),
            (2, 0)
        );
        assert_eq!(
            kallsyms_addresses("ffffffff81000000 T _text\n0000000000000000 t x\n"),
            (2, 1)
        );
        assert_eq!(kallsyms_addresses(""), (0, 0));
    }

    #[test]
    fn net_dev_lists_interfaces() {
        let t = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\n";
        assert_eq!(net_dev_interfaces(t), ["lo", "eth0"]);
    }

    #[test]
    fn pids_and_ancestors_from_a_fake_proc() {
        let dir = std::env::temp_dir().join(format!("warren-probe-procfs-{}", std::process::id()));
        let me = std::process::id() as i32;
        for (pid, ppid) in [(me, 7), (7, 1), (1, 0), (99, 1)] {
            std::fs::create_dir_all(dir.join(pid.to_string())).unwrap();
            std::fs::write(
                dir.join(pid.to_string()).join("status"),
                format!("PPid:\t{ppid}\n"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(dir.join("self")).unwrap();
        let pids = visible_pids(&dir).unwrap();
        let ancestors = self_and_ancestors(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut expected = vec![1, 7, 99, me];
        expected.sort_unstable();
        assert_eq!(pids, expected);
        assert_eq!(ancestors, [me, 7, 1]);
    }
}
