//! The bounds of every count and size an environment is declared with, and the one routine
//! that checks them.
//!
//! The manifest parser, the CLI (`warren run`, which `apply`'s supervisor also drives) and the
//! control socket (the daemon checks what a `register` or `apply` request carries, since a
//! client can write those by hand) all check through [`check`], [`check_env_var`] and
//! [`validate_space`], so one value is accepted or refused the same way everywhere, with an
//! error that names the key and the bound. `docs/manifest.md` lists the same table.

use crate::SpaceSpec;

/// A count or size key and its inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The manifest key (`mailbox_capacity`); the CLI flag is the same with dashes.
    pub key: &'static str,
    /// The smallest value allowed.
    pub min: u64,
    /// The largest value allowed.
    pub max: u64,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Messages a mailbox may hold: 1 to 65,536.
pub const MAILBOX_CAPACITY: Bound = Bound {
    key: "mailbox_capacity",
    min: 1,
    max: 65_536,
};

/// An environment's byte quota in the kernel (`docs/protocol.md` §11): 4 KiB to 1 GiB.
pub const MAILBOX_BYTES: Bound = Bound {
    key: "mailbox_bytes",
    min: 4 * KIB,
    max: GIB,
};

/// Most processes: 1 to 4,194,304 (Linux's `PID_MAX_LIMIT`).
pub const PIDS: Bound = Bound {
    key: "pids",
    min: 1,
    max: 4_194_304,
};

/// Memory limit: 4 MiB to 16 TiB (below 4 MiB the launcher could not even start the workload:
/// `warren-sandbox`'s launch refuses it).
pub const MEMORY: Bound = Bound {
    key: "memory",
    min: 4 * MIB,
    max: 16 * TIB,
};

/// The writable `/tmp` tmpfs: 4 KiB to 1 TiB.
pub const TMPFS_SIZE: Bound = Bound {
    key: "tmpfs_size",
    min: 4 * KIB,
    max: TIB,
};

/// A writable root's tmpfs: 1 MiB to 1 TiB.
pub const WRITABLE_ROOT_SIZE: Bound = Bound {
    key: "writable_root_size",
    min: 1024 * KIB,
    max: TIB,
};

/// A cpu limit in millionths of a cpu: above zero, at most 4096.999999 cpus (what the manifest
/// and `--cpus` accept, `crates/warren-spec/src/quantity.rs`); a Spawn carries this form.
pub const CPUS_MICROS: Bound = Bound {
    key: "cpus",
    min: 1,
    max: 4_096_999_999,
};

/// Restarts within the backoff window: 0 to 1,000.
pub const MAX_RESTARTS: Bound = Bound {
    key: "max_restarts",
    min: 0,
    max: 1_000,
};

/// Most names a `may_send` list may hold: a capability table holds 1,024 handles
/// (`docs/protocol.md` §11.1), handle 1 is the environment's own mailbox, and each `ENV` or
/// `ENV@HOST` name takes one more.
pub const MAX_MAY_SEND: usize = 1023;

/// Most names a `may_discover` list may hold (a capability table holds 1,024 handles).
pub const MAX_MAY_DISCOVER: usize = 1024;

/// Every bound, in the order `docs/manifest.md` lists them.
pub const ALL: [Bound; 7] = [
    MEMORY,
    PIDS,
    TMPFS_SIZE,
    WRITABLE_ROOT_SIZE,
    MAX_RESTARTS,
    MAILBOX_CAPACITY,
    MAILBOX_BYTES,
];

/// A declared value that is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A count or size outside its range.
    #[error("{key} {value} is out of range: expected {min} to {max}")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Its smallest allowed value.
        min: u64,
        /// Its largest allowed value.
        max: u64,
    },
    /// An environment variable Warren sets itself.
    #[error("variable {name:?} is reserved: Warren sets WARREN_* variables itself")]
    ReservedVariable {
        /// The variable.
        name: String,
    },
    /// A list of names longer than its limit.
    #[error("{key} lists {count} names; at most {max} are allowed")]
    TooManyNames {
        /// The key (`may_send`, `may_discover`).
        key: &'static str,
        /// How many it lists.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// A command-line argument or environment entry longer than Linux passes to a program.
    #[error(
        "{what} is {bytes} bytes; Linux passes at most {max} bytes per argument or \
         environment entry (MAX_ARG_STRLEN)"
    )]
    TooLong {
        /// What it is (`command item 2`, `env.KEY`).
        what: String,
        /// Its length in bytes (for an environment entry, of `KEY=value`).
        bytes: usize,
        /// The most allowed, [`MAX_ARG_BYTES`].
        max: usize,
    },
    /// A variable name that is not letters, digits and `_`.
    #[error(
        "variable name {name:?} is not valid: use letters, digits and '_', not starting with a digit"
    )]
    BadVariable {
        /// The variable.
        name: String,
    },
}

/// Checks `value` against `bound`.
pub fn check(bound: Bound, value: u64) -> Result<u64, LimitError> {
    if (bound.min..=bound.max).contains(&value) {
        Ok(value)
    } else {
        Err(LimitError::OutOfRange {
            key: bound.key,
            value,
            min: bound.min,
            max: bound.max,
        })
    }
}

/// Checks an environment variable's name: letters, digits and `_`, not starting with a digit,
/// and not `WARREN_*` (reserved: `WARREN_FD` says where the kernel connection is).
pub fn check_env_var(name: &str) -> Result<(), LimitError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(LimitError::BadVariable {
            name: name.to_owned(),
        });
    }
    if name.starts_with("WARREN_") {
        return Err(LimitError::ReservedVariable {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The longest string Linux passes to a program as one argument or one environment entry
/// (`KEY=value`): `MAX_ARG_STRLEN`, 32 pages of 4 KiB, less the terminating NUL. A longer one
/// makes `execve` fail with `E2BIG`, so it is refused where it is declared, not when the
/// environment starts.
pub const MAX_ARG_BYTES: usize = 32 * 4096 - 1;

/// Checks the length of one argument or environment entry (see [`MAX_ARG_BYTES`]).
pub fn check_arg(what: impl FnOnce() -> String, bytes: usize) -> Result<(), LimitError> {
    if bytes > MAX_ARG_BYTES {
        return Err(LimitError::TooLong {
            what: what(),
            bytes,
            max: MAX_ARG_BYTES,
        });
    }
    Ok(())
}

/// Checks every bounded value of a declared environment: what the control socket runs on
/// whatever `apply` request it is given.
pub fn validate_space(spec: &SpaceSpec) -> Result<(), LimitError> {
    if let Some(m) = spec.memory {
        check(MEMORY, m.0)?;
    }
    if let Some(p) = spec.pids {
        check(PIDS, p)?;
    }
    if let Some(t) = spec.tmpfs_size {
        check(TMPFS_SIZE, t.0)?;
    }
    if let Some(t) = spec.writable_root_size {
        check(WRITABLE_ROOT_SIZE, t.0)?;
    }
    check(MAX_RESTARTS, u64::from(spec.max_restarts))?;
    if let Some(c) = spec.mailbox_capacity {
        check(MAILBOX_CAPACITY, c as u64)?;
    }
    if let Some(b) = spec.mailbox_bytes {
        check(MAILBOX_BYTES, b.0)?;
    }
    for (name, value) in &spec.env {
        check_env_var(name)?;
        check_arg(
            || format!("the env entry {name}=value"),
            name.len() + 1 + value.len(),
        )?;
    }
    for (i, item) in spec.command.iter().enumerate() {
        check_arg(|| format!("command item {}", i + 1), item.len())?;
    }
    check_names("may_send", spec.may_send.len(), MAX_MAY_SEND)?;
    check_names("may_discover", spec.may_discover.len(), MAX_MAY_DISCOVER)?;
    Ok(())
}

/// Checks the length of a list of names.
pub fn check_names(key: &'static str, count: usize, max: usize) -> Result<(), LimitError> {
    if count > max {
        return Err(LimitError::TooManyNames { key, count, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_accepts_its_ends_and_refuses_past_them_naming_key_and_bound() {
        for b in ALL {
            assert_eq!(check(b, b.min), Ok(b.min));
            assert_eq!(check(b, b.max), Ok(b.max));
            let over = check(b, b.max + 1).unwrap_err().to_string();
            assert!(
                over.contains(b.key) && over.contains(&b.max.to_string()),
                "{over}"
            );
            if b.min > 0 {
                let under = check(b, b.min - 1).unwrap_err().to_string();
                assert!(under.contains(&b.min.to_string()), "{under}");
            }
        }
        assert_eq!(
            check(PIDS, u64::MAX).unwrap_err().to_string(),
            "pids 18446744073709551615 is out of range: expected 1 to 4194304"
        );
    }

    /// `may_send` holds one name fewer than a table's 1,024 handles (handle 1 is the
    /// environment's own), `may_discover` 1,024: the control socket checks what it is given.
    #[test]
    fn name_lists_are_bounded() {
        let names = |n: usize| (0..n).map(|i| format!("e{i}")).collect::<Vec<_>>();
        let text = "[space.db]\nimage = \"r\"\ncommand = [\"/x\"]\n";
        let m = crate::parse_manifest(std::path::Path::new("m.toml"), text).unwrap();
        let mut spec = m.spaces.into_values().next().unwrap();
        spec.may_send = names(MAX_MAY_SEND);
        spec.may_discover = names(MAX_MAY_DISCOVER);
        assert_eq!(validate_space(&spec), Ok(()));
        spec.may_send = names(MAX_MAY_SEND + 1);
        assert_eq!(
            validate_space(&spec).unwrap_err().to_string(),
            "may_send lists 1024 names; at most 1023 are allowed"
        );
        spec.may_send = Vec::new();
        spec.may_discover = names(MAX_MAY_DISCOVER + 1);
        assert_eq!(
            validate_space(&spec).unwrap_err().to_string(),
            "may_discover lists 1025 names; at most 1024 are allowed"
        );
    }

    /// The launcher refuses a memory limit below 4 MiB, so validation must refuse it too
    /// (otherwise `memory = "1M"` passes `diff` and fails only at the start).
    #[test]
    fn memory_is_at_least_4_mib() {
        assert_eq!(check(MEMORY, 4 * MIB), Ok(4 * MIB));
        assert_eq!(
            check(MEMORY, MIB).unwrap_err().to_string(),
            "memory 1048576 is out of range: expected 4194304 to 17592186044416"
        );
        assert!(check(MEMORY, 4 * MIB - 1).is_err());
    }

    #[test]
    fn warren_variables_are_reserved_and_names_are_checked() {
        assert!(matches!(
            check_env_var("WARREN_FD"),
            Err(LimitError::ReservedVariable { .. })
        ));
        for bad in ["", "1X", "A-B", "A=B", "É"] {
            assert!(matches!(
                check_env_var(bad),
                Err(LimitError::BadVariable { .. })
            ));
        }
        for good in ["PATH", "_X", "a1", "WARREN"] {
            assert_eq!(check_env_var(good), Ok(()));
        }
    }

    /// What the control socket deserializes from a hand-written `apply` request is checked
    /// against the same table as a manifest.
    #[test]
    fn a_space_from_the_control_socket_is_checked_key_by_key() {
        let base = serde_json::json!({
            "image": { "rootfs": "/r" }, "command": ["/x"], "env": {}, "memory": null,
            "pids": null, "cpus": null, "tmpfs_size": null, "restart": "no",
            "max_restarts": 5, "may_send": [], "may_discover": [], "mailbox_capacity": null,
            "allow_missing": [],
        });
        let spec = |patch: serde_json::Value| -> SpaceSpec {
            let mut v = base.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            serde_json::from_value(v).unwrap()
        };
        assert_eq!(validate_space(&spec(serde_json::json!({}))), Ok(()));
        let refused = [
            (serde_json::json!({ "pids": u64::MAX }), "pids"),
            (
                serde_json::json!({ "mailbox_capacity": 1u64 << 63 }),
                "mailbox_capacity",
            ),
            (
                serde_json::json!({ "mailbox_bytes": 1u64 << 40 }),
                "mailbox_bytes",
            ),
            (serde_json::json!({ "memory": 1 }), "memory"),
            (
                serde_json::json!({ "tmpfs_size": 1u64 << 50 }),
                "tmpfs_size",
            ),
            (
                serde_json::json!({ "max_restarts": 4_000_000_000u64 }),
                "max_restarts",
            ),
            (
                serde_json::json!({ "env": { "WARREN_FD": "7" } }),
                "WARREN_FD",
            ),
        ];
        for (patch, key) in refused {
            let err = validate_space(&spec(patch.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{patch}: {err}");
        }
    }
}
