//! `warren run`'s command line read without clap, when it is plain.
//!
//! clap builds the `run` verb's 45 arguments and matches against them on every start, about
//! 0.15 ms of the 5 ms a launch takes here (BENCHMARKS.md, issue 13, ninth session): the largest
//! single step before the clone that is not the launch's own work. [`parse`] reads the common
//! forms directly and gives up (`None`) on everything else, which clap then parses as before:
//! help and version flags, unknown or repeated options, grouped or attached short options
//! (`-it`, `-eK=V`), values that start with `-` or are empty, bytes that are not UTF-8, a missing
//! or second root, an unmet `requires`. Whatever it accepts, clap accepts with the same result:
//! the tests compare the two on thousands of generated command lines, and check the table below
//! against clap's own definition of the arguments, so a flag added to [`RunArgs`] and not here
//! fails the build's tests instead of being misread.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cli::{Cli, Command, Lazy, RunArgs};

/// How an option takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One value, at most once (`Option<T>`, or `T` with a default).
    One,
    /// One value per occurrence, repeatable (`Vec<T>`).
    Many,
    /// No value, at most once (`bool`).
    Flag,
}

/// The options of `warren run` (long name, short name, kind), the global ones included.
const OPTIONS: &[(&str, Option<char>, Kind)] = &[
    ("state-dir", None, Kind::One),
    ("data-dir", None, Kind::One),
    ("name", None, Kind::One),
    ("rootfs", None, Kind::One),
    ("binary", None, Kind::One),
    ("with", None, Kind::Many),
    ("image", None, Kind::One),
    ("memory", None, Kind::One),
    ("pids", None, Kind::One),
    ("cpus", None, Kind::One),
    ("cgroup-parent", None, Kind::One),
    ("spawned-by", None, Kind::One),
    ("spawn-template", None, Kind::One),
    ("parent-record", None, Kind::One),
    ("cgroup-children", None, Kind::Flag),
    ("tmpfs-size", None, Kind::One),
    ("writable-root", None, Kind::Flag),
    ("writable-root-size", None, Kind::One),
    ("env", Some('e'), Kind::Many),
    ("env-file", None, Kind::Many),
    ("user", Some('u'), Kind::One),
    ("hostname", None, Kind::One),
    ("add-host", None, Kind::Many),
    ("dns", None, Kind::Many),
    ("volume", Some('v'), Kind::Many),
    ("mount", None, Kind::Many),
    ("workdir", Some('w'), Kind::One),
    ("entrypoint", None, Kind::One),
    ("cap-add", None, Kind::Many),
    ("seccomp", None, Kind::One),
    ("allow-missing", None, Kind::Many),
    ("may-send", None, Kind::Many),
    ("may-discover", None, Kind::Many),
    ("mailbox-capacity", None, Kind::One),
    ("mailbox-bytes", None, Kind::One),
    ("net", None, Kind::One),
    ("publish", Some('p'), Kind::Many),
    ("net-allow", None, Kind::Many),
    ("egress", None, Kind::Flag),
    ("detach", Some('d'), Kind::Flag),
    ("tty", Some('t'), Kind::Flag),
    ("interactive", Some('i'), Kind::Flag),
    ("init", None, Kind::Flag),
    ("rm", None, Kind::Flag),
    ("json", None, Kind::Flag),
];

/// The global options, which may also come before `run`, and the variables they fall back to.
const GLOBALS: &[(&str, &str)] = &[
    ("state-dir", "WARREN_STATE_DIR"),
    ("data-dir", "WARREN_DATA_DIR"),
];

/// The index of option `name` in [`OPTIONS`].
fn slot(name: &str) -> Option<usize> {
    OPTIONS.iter().position(|(n, _, _)| *n == name)
}

/// The values given, by option (its index in [`OPTIONS`]).
struct Given {
    values: Vec<Vec<String>>,
}

impl Given {
    fn has(&self, name: &str) -> bool {
        slot(name).is_some_and(|k| !self.values[k].is_empty())
    }

    fn one(&mut self, name: &str) -> Option<String> {
        self.take(name).into_iter().next()
    }

    fn many(&mut self, name: &str) -> Vec<String> {
        self.take(name)
    }

    fn flag(&mut self, name: &str) -> bool {
        !self.take(name).is_empty()
    }

    fn take(&mut self, name: &str) -> Vec<String> {
        slot(name)
            .map(|k| std::mem::take(&mut self.values[k]))
            .unwrap_or_default()
    }
}

/// `argv` (the program name first) as a `warren run` command line, if it is in the plain forms
/// described in the module documentation; `None` sends it to clap. `env` looks up the variables
/// the global options fall back to (`std::env::var_os` outside tests).
pub fn parse(argv: &[OsString], env: &dyn Fn(&str) -> Option<OsString>) -> Option<Cli> {
    let args: Vec<&str> = argv
        .get(1..)?
        .iter()
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    let mut given = Given {
        values: vec![Vec::new(); OPTIONS.len()],
    };
    let mut i = 0;
    // Global options before the verb.
    while let Some(a) = args.get(i) {
        if *a == "run" {
            break;
        }
        let (name, inline) = long_option(a)?;
        if !GLOBALS.iter().any(|(g, _)| *g == name) {
            return None;
        }
        i = take_value(&args, i, slot(name)?, inline, &mut given)?;
    }
    if args.get(i) != Some(&"run") {
        return None;
    }
    i += 1;
    let mut command = None;
    while let Some(a) = args.get(i) {
        if *a == "--" {
            command = Some(args[i + 1..].iter().map(|s| s.to_string()).collect());
            break;
        }
        let (name, inline) = match short_option(a) {
            Some(name) => (name, None),
            None => long_option(a)?,
        };
        i = take_value(&args, i, slot(name)?, inline, &mut given)?;
    }
    let command: Vec<String> = command.unwrap_or_default();

    // The checks clap's definition makes: exactly one root, and what requires what.
    let roots = ["rootfs", "binary", "image"]
        .iter()
        .filter(|r| given.has(r))
        .count();
    if roots != 1
        || (given.has("spawned-by") != given.has("spawn-template"))
        || (given.has("parent-record") && !given.has("spawned-by"))
    {
        return None;
    }
    let mailbox_capacity = match given.one("mailbox-capacity") {
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => Some(v.parse::<usize>().ok()?),
        Some(_) => return None,
        None => None,
    };
    let mut global = |name: &str| -> Option<Option<PathBuf>> {
        if let Some(v) = given.one(name) {
            return Some(Some(PathBuf::from(v)));
        }
        let var = GLOBALS.iter().find(|(g, _)| *g == name)?.1;
        match env(var) {
            // clap takes an empty variable as an empty value, which it refuses.
            Some(v) if v.is_empty() => None,
            Some(v) => Some(Some(PathBuf::from(v))),
            None => Some(None),
        }
    };
    let state_dir = global("state-dir")?.unwrap_or_else(|| PathBuf::from("/run/warren"));
    let data_dir = global("data-dir")?;
    let paths = |v: Vec<String>| v.into_iter().map(PathBuf::from).collect::<Vec<_>>();
    let run = RunArgs {
        name: given.one("name"),
        rootfs: given.one("rootfs").map(PathBuf::from),
        binary: given.one("binary").map(PathBuf::from),
        with: paths(given.many("with")),
        image: given.one("image"),
        memory: given.one("memory"),
        pids: given.one("pids"),
        cpus: given.one("cpus"),
        cgroup_parent: given.one("cgroup-parent"),
        spawned_by: given.one("spawned-by"),
        spawn_template: given.one("spawn-template"),
        parent_record: given.one("parent-record"),
        cgroup_children: given.flag("cgroup-children"),
        tmpfs_size: given.one("tmpfs-size").unwrap_or_else(|| "16M".to_owned()),
        writable_root: given.flag("writable-root"),
        writable_root_size: given.one("writable-root-size"),
        env: given.many("env"),
        env_file: paths(given.many("env-file")),
        user: given.one("user"),
        hostname: given.one("hostname"),
        add_host: given.many("add-host"),
        dns: given.many("dns"),
        volumes: given.many("volume"),
        mounts: given.many("mount"),
        workdir: given.one("workdir"),
        entrypoint: given.one("entrypoint"),
        cap_add: given.many("cap-add"),
        seccomp: given.one("seccomp"),
        allow_missing: given.many("allow-missing"),
        may_send: given.many("may-send"),
        may_discover: given.many("may-discover"),
        mailbox_capacity,
        mailbox_bytes: given.one("mailbox-bytes"),
        net: given.one("net").unwrap_or_else(|| "none".to_owned()),
        publish: given.many("publish"),
        net_allow: given.many("net-allow"),
        egress: given.flag("egress"),
        detach: given.flag("detach"),
        tty: given.flag("tty"),
        interactive: given.flag("interactive"),
        init: given.flag("init"),
        rm: given.flag("rm"),
        json: given.flag("json"),
        command,
    };
    Some(Cli {
        state_dir,
        data_dir,
        command: Command::Run(Lazy(Box::new(run))),
    })
}

/// `--NAME` or `--NAME=VALUE`: the name and the inline value.
fn long_option(a: &str) -> Option<(&str, Option<&str>)> {
    let rest = a.strip_prefix("--").filter(|r| !r.is_empty())?;
    Some(match rest.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (rest, None),
    })
}

/// `-X` alone, for a short option in [`OPTIONS`]: its long name.
fn short_option(a: &str) -> Option<&'static str> {
    let mut chars = a.strip_prefix('-')?.chars();
    let (Some(c), None) = (chars.next(), chars.next()) else {
        return None;
    };
    OPTIONS
        .iter()
        .find(|(_, s, _)| *s == Some(c))
        .map(|(n, _, _)| *n)
}

/// Record option `k` (its index in [`OPTIONS`]) at `args[i]` (with its value: `inline`, or
/// the next argument) and return the index after it; `None` for a form the fast path leaves to
/// clap.
fn take_value(
    args: &[&str],
    i: usize,
    k: usize,
    inline: Option<&str>,
    given: &mut Given,
) -> Option<usize> {
    let kind = OPTIONS[k].2;
    if kind != Kind::Many && !given.values[k].is_empty() {
        return None;
    }
    let (value, next) = match (kind, inline) {
        (Kind::Flag, None) => (String::new(), i + 1),
        (Kind::Flag, Some(_)) => return None,
        (_, Some(v)) => (v.to_owned(), i + 1),
        (_, None) => ((*args.get(i + 1)?).to_owned(), i + 2),
    };
    if kind != Kind::Flag && (value.is_empty() || value.starts_with('-')) {
        return None;
    }
    given.values[k].push(value);
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    /// The fast path's result and clap's, as text (the argument types derive `Debug` only).
    fn both(args: &[&str], env: &dyn Fn(&str) -> Option<OsString>) -> (Option<String>, String) {
        let fast = parse(&os(args), env).map(|c| format!("{c:?}"));
        let clap = match Cli::try_parse_from(os(args)) {
            Ok(c) => format!("{c:?}"),
            Err(e) => format!("error: {}", e.kind()),
        };
        (fast, clap)
    }

    #[test]
    fn the_table_matches_claps_definition_of_run() {
        // Built whole: the deferred arguments (`Lazy`) and the global ones propagated.
        let mut cmd = Cli::command();
        cmd.build();
        let run = cmd
            .get_subcommands()
            .find(|c| c.get_name() == "run")
            .expect("a run verb");
        let mut seen = Vec::new();
        for arg in run.get_arguments() {
            let Some(long) = arg.get_long() else {
                assert!(
                    arg.is_positional(),
                    "{:?} has neither a long name nor a position",
                    arg.get_id()
                );
                continue;
            };
            if long == "help" || long == "version" {
                continue;
            }
            let entry = OPTIONS
                .iter()
                .find(|(n, _, _)| *n == long)
                .unwrap_or_else(|| panic!("--{long} is not in the fast path's table"));
            assert_eq!(entry.1, arg.get_short(), "short name of --{long}");
            let kind = match arg.get_action() {
                clap::ArgAction::SetTrue => Kind::Flag,
                clap::ArgAction::Append => Kind::Many,
                clap::ArgAction::Set => Kind::One,
                other => panic!("--{long}: action {other:?} is not one the fast path reads"),
            };
            assert_eq!(entry.2, kind, "kind of --{long}");
            // What the fast path does not read: values restricted to a list, variables other
            // than the globals', and defaults other than the three filled in below.
            assert!(
                arg.get_possible_values().is_empty(),
                "--{long} restricts its values: the fast path does not check them"
            );
            if !GLOBALS.iter().any(|(g, _)| *g == long) {
                assert!(arg.get_env().is_none(), "--{long} reads a variable");
            }
            if !["tmpfs-size", "net", "state-dir"].contains(&long) && kind != Kind::Flag {
                assert!(
                    arg.get_default_values().is_empty(),
                    "--{long} has a default the fast path does not fill in"
                );
            }
            seen.push(long.to_owned());
        }
        for (name, _, _) in OPTIONS {
            assert!(
                seen.iter().any(|s| s == name),
                "--{name} is not a run option"
            );
        }
        // The defaults and the variables filled in by hand are clap's.
        for (long, default) in [
            ("tmpfs-size", "16M"),
            ("net", "none"),
            ("state-dir", "/run/warren"),
        ] {
            let arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap();
            let d: Vec<_> = arg.get_default_values().iter().collect();
            assert_eq!(d, [default], "default of --{long}");
        }
        for (long, var) in GLOBALS {
            let arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap();
            assert_eq!(arg.get_env().map(|e| e.to_os_string()), Some((*var).into()));
        }
    }

    #[test]
    fn plain_launches_take_the_fast_path_with_claps_result() {
        let cases: &[&[&str]] = &[
            &["warren", "run", "--rootfs", "/r", "--", "/bin/true"],
            &["warren", "run", "--image", "bench/debian"],
            &[
                "warren",
                "--state-dir",
                "/s",
                "run",
                "--rootfs=/r",
                "--name",
                "n",
                "--",
            ],
            &[
                "warren",
                "run",
                "--rootfs",
                "/r",
                "-e",
                "A=B",
                "-e",
                "C=D",
                "--memory",
                "64M",
                "--pids",
                "64",
                "--cpus",
                "0.5",
                "-d",
                "--net",
                "auto",
                "-p",
                "8080:80",
                "--mailbox-capacity",
                "7",
                "--",
                "sh",
                "-c",
                "echo --name",
            ],
            &[
                "warren",
                "run",
                "--binary",
                "/bin/sh",
                "--with",
                "/etc",
                "--state-dir=/x",
                "--spawned-by",
                "p",
                "--spawn-template",
                "t",
                "--parent-record",
                "3:ab",
                "--",
                "-x",
            ],
        ];
        for args in cases {
            let (fast, clap) = both(args, &no_env);
            assert_eq!(fast.as_deref(), Some(clap.as_str()), "{args:?}");
        }
    }

    #[test]
    fn unusual_forms_go_to_clap() {
        let cases: &[&[&str]] = &[
            &["warren", "run", "--help"],
            &["warren", "run", "-it", "--rootfs", "/r"],
            &["warren", "run", "-eA=B", "--rootfs", "/r"],
            &[
                "warren", "run", "--name", "a", "--name", "b", "--rootfs", "/r",
            ],
            &["warren", "run", "--json", "--json", "--rootfs", "/r"],
            &["warren", "run", "--json=yes", "--rootfs", "/r"],
            &["warren", "run", "--name", "-x", "--rootfs", "/r"],
            &["warren", "run", "--name", "", "--rootfs", "/r"],
            &["warren", "run", "--rootfs", "/r", "--image", "i"],
            &["warren", "run", "--name", "n"],
            &["warren", "run", "--rootfs", "/r", "true"],
            &["warren", "run", "--rootfs"],
            &["warren", "run", "--rootfs", "/r", "--spawned-by", "p"],
            &[
                "warren",
                "run",
                "--rootfs",
                "/r",
                "--mailbox-capacity",
                "+5",
            ],
            &["warren", "run", "--rootfs", "/r", "--nope"],
            &["warren", "ps"],
            &["warren", "--name", "x", "run", "--rootfs", "/r"],
            &["warren"],
        ];
        for args in cases {
            assert_eq!(
                parse(&os(args), &no_env).map(|c| format!("{c:?}")),
                None,
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_state_directory_variable_is_read_as_clap_reads_it() {
        let args = os(&["warren", "run", "--rootfs", "/r"]);
        let set = |v: &'static str| move |k: &str| (k == "WARREN_STATE_DIR").then(|| v.into());
        let cli = parse(&args, &set("/from/env")).unwrap();
        assert_eq!(cli.state_dir, PathBuf::from("/from/env"));
        // The option wins over the variable.
        let args2 = os(&["warren", "run", "--state-dir", "/opt", "--rootfs", "/r"]);
        assert_eq!(
            parse(&args2, &set("/from/env")).unwrap().state_dir,
            PathBuf::from("/opt")
        );
        // An empty variable is an error to clap: left to it.
        assert!(parse(&args, &set("")).is_none());
        assert_eq!(
            parse(&args, &no_env).unwrap().state_dir,
            PathBuf::from("/run/warren")
        );
        assert_eq!(parse(&args, &no_env).unwrap().data_dir, None);
    }

    /// Thousands of command lines drawn from a vocabulary of options, values and odd forms:
    /// wherever the fast path answers, clap agrees exactly; and it answers often enough for the
    /// comparison to mean something. Both read the test process's own environment.
    #[test]
    fn the_fast_path_agrees_with_clap_on_generated_command_lines() {
        const WORDS: &[&str] = &[
            "--name",
            "n1",
            "--rootfs",
            "/r",
            "--image",
            "img",
            "--binary",
            "/b",
            "--with",
            "/w",
            "-e",
            "K=V",
            "--env=A=B",
            "--env-file",
            "/f",
            "-u",
            "1:2",
            "--user=nobody",
            "--hostname",
            "h",
            "--add-host",
            "a:1.2.3.4",
            "--dns",
            "1.1.1.1",
            "-v",
            "/a:/b:ro",
            "--mount",
            "type=tmpfs,dst=/t",
            "-w",
            "/wd",
            "--entrypoint",
            "/e",
            "--cap-add",
            "CHOWN",
            "--seccomp",
            "strict",
            "--allow-missing",
            "landlock",
            "--may-send",
            "x",
            "--may-discover",
            "y",
            "--mailbox-capacity",
            "12",
            "+3",
            "x1",
            "--mailbox-bytes",
            "1M",
            "--net",
            "auto",
            "--net=none",
            "-p",
            "80:80",
            "--net-allow",
            "10.0.0.2",
            "--egress",
            "-d",
            "-t",
            "-i",
            "-it",
            "--init",
            "--rm",
            "--json",
            "--detach",
            "--tty",
            "--interactive",
            "--memory",
            "64M",
            "--pids",
            "9",
            "--cpus",
            "1",
            "--cgroup-parent",
            "g",
            "--spawned-by",
            "p",
            "--spawn-template",
            "t",
            "--parent-record",
            "1:ab",
            "--cgroup-children",
            "--tmpfs-size",
            "8M",
            "--writable-root",
            "--writable-root-size",
            "1G",
            "--state-dir",
            "/s",
            "--state-dir=/s2",
            "--data-dir",
            "/d",
            "--data-dir=",
            "--",
            "--",
            "true",
            "-x",
            "",
            "-",
            "--help",
            "-h",
            "--version",
            "run",
            "--name=",
            "--bogus",
            "-z",
            "-ex",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let env = |k: &str| std::env::var_os(k);
        let (mut fast_count, total) = (0, 20_000);
        for _ in 0..total {
            let mut args = vec!["warren"];
            if next() % 4 == 0 {
                args.push(if next() % 2 == 0 {
                    "--state-dir"
                } else {
                    "--data-dir"
                });
                args.push("/g");
            }
            args.push("run");
            // Most lines get one root, so that many are valid.
            if next() % 5 != 0 {
                args.push(["--rootfs", "--image", "--binary"][(next() % 3) as usize]);
                args.push("/root");
            }
            let n = next() % 12;
            for _ in 0..n {
                args.push(WORDS[(next() % WORDS.len() as u64) as usize]);
            }
            if next() % 2 == 0 {
                args.push("--");
                args.push("cmd");
            }
            let (fast, clap) = both(&args, &env);
            if let Some(f) = fast {
                fast_count += 1;
                assert_eq!(f, clap, "{args:?}");
            }
        }
        assert!(
            fast_count > total / 20,
            "the fast path answered only {fast_count} of {total} lines"
        );
    }
}
