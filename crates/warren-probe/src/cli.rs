//! Command-line parsing: options (host pids, markers, targets) and what to run.

use std::path::PathBuf;

/// Options shared by every probe; children re-executed for isolated probes get the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Pids of host processes (as the host sees them) that must be invisible and unreachable.
    pub host_pids: Vec<i32>,
    /// Absolute host paths of marker files that must be unreadable.
    pub markers: Vec<PathBuf>,
    /// `HOST:PORT` listeners (on the host, or in another environment) that must be unreachable.
    pub tcp: Vec<String>,
    /// Name of a host abstract unix socket (without the leading `@`) that must be unreachable.
    pub abstract_name: Option<String>,
    /// A terminal descriptor to try `TIOCSTI`/`TIOCLINUX` on (default: 0, if it is a tty).
    pub tty_fd: Option<i32>,
    /// Require the uid map to be a single extent that maps inside root to a non-root host uid.
    pub expect_uid_map: bool,
    /// Copies of this probe with a set-id bit or file capabilities, for `priv.setuid_exec`.
    pub setuid_exe: Vec<PathBuf>,
    /// Keep `/tmp/warren-probe-owner` after `id.tmp_file_owner` so the host can inspect it.
    pub keep_owner_file: bool,
    /// Most processes `abuse.fork_bomb` creates.
    pub fork_cap: u32,
    /// Most MiB `abuse.fill_tmp` writes.
    pub fill_cap_mb: u64,
    /// Restrict the selection to these probe names (or class prefixes such as `net`).
    pub only: Vec<String>,
    /// The option words exactly as given, forwarded to re-executed children.
    pub raw: Vec<String>,
}

/// The default for [`Options::fork_cap`].
pub const DEFAULT_FORK_CAP: u32 = 10_000;
/// The default for [`Options::fill_cap_mb`] (2 GiB).
pub const DEFAULT_FILL_CAP_MB: u64 = 2048;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print every probe name, one per line.
    List,
    /// Run the probes selected by a target (`all`, a class such as `fs`, or a probe name).
    Run(String),
    /// Hidden: run one probe in this (child) process and print its report.
    Child(String),
    /// Hidden: allocate and touch this many MiB, printing progress.
    MemoryBomb(u64),
    /// Hidden: burn CPU for this many seconds, printing iterations per second.
    Spin(u64),
    /// Hidden: sleep this many seconds.
    Sleep(u64),
    /// Hidden: listen on 127.0.0.1:port for a number of seconds.
    ListenTcp {
        /// The port to bind.
        port: u16,
        /// How long to accept connections.
        seconds: u64,
    },
    /// Hidden: print this process's ids and capability sets as JSON (for `priv.setuid_exec`).
    Ids,
}

/// A command-line mistake, reported on stderr with exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one-screen usage text.
pub const USAGE: &str = "usage: warren-probe [--host-pid PID]... [--marker PATH]... \
[--tcp HOST:PORT]... [--abstract NAME] [--tty-fd N] [--expect-uid-map] [--setuid-exe PATH]... \
[--keep-owner-file] [--fork-cap N] [--fill-cap-mb N] [--only NAME[,NAME]] \
list|all|CLASS|PROBE-NAME";

fn value<'a>(
    flag: &str,
    it: &mut impl Iterator<Item = &'a String>,
    raw: &mut Vec<String>,
) -> Result<String, UsageError> {
    let v = it
        .next()
        .ok_or_else(|| UsageError(format!("{flag} needs a value")))?;
    raw.push(flag.to_owned());
    raw.push(v.clone());
    Ok(v.clone())
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, UsageError> {
    v.parse()
        .map_err(|_| UsageError(format!("{flag}: not a number: {v:?}")))
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<(Options, Command), UsageError> {
    let mut o = Options {
        fork_cap: DEFAULT_FORK_CAP,
        fill_cap_mb: DEFAULT_FILL_CAP_MB,
        ..Options::default()
    };
    let mut it = args.iter();
    let mut positional: Vec<String> = Vec::new();
    while let Some(arg) = it.next() {
        let mut raw = std::mem::take(&mut o.raw);
        match arg.as_str() {
            "--host-pid" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.host_pids.push(number(arg, &v)?);
            }
            "--marker" => {
                let v = value(arg, &mut it, &mut raw)?;
                if !v.starts_with('/') {
                    return Err(UsageError(format!(
                        "--marker must be an absolute path: {v:?}"
                    )));
                }
                o.markers.push(PathBuf::from(v));
            }
            "--tcp" => o.tcp.push(value(arg, &mut it, &mut raw)?),
            "--abstract" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.abstract_name = Some(v.strip_prefix('@').unwrap_or(&v).to_owned());
            }
            "--tty-fd" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.tty_fd = Some(number(arg, &v)?);
            }
            "--expect-uid-map" => {
                raw.push(arg.clone());
                o.expect_uid_map = true;
            }
            "--setuid-exe" => o
                .setuid_exe
                .push(PathBuf::from(value(arg, &mut it, &mut raw)?)),
            "--keep-owner-file" => {
                raw.push(arg.clone());
                o.keep_owner_file = true;
            }
            "--fork-cap" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.fork_cap = number(arg, &v)?;
            }
            "--fill-cap-mb" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.fill_cap_mb = number(arg, &v)?;
            }
            "--only" => {
                let v = value(arg, &mut it, &mut raw)?;
                o.only
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
            }
            "-h" | "--help" => return Err(UsageError(USAGE.to_owned())),
            flag if flag.starts_with("--") => {
                return Err(UsageError(format!("unknown option {flag:?}\n{USAGE}")));
            }
            _ => positional.push(arg.clone()),
        }
        o.raw = raw;
    }
    let command = match positional.first().map(String::as_str) {
        None if !o.only.is_empty() => Command::Run("all".to_owned()),
        None => return Err(UsageError(USAGE.to_owned())),
        Some("list") => Command::List,
        Some("__child") => Command::Child(arg1(&positional, "__child")?),
        Some("memory-bomb") => {
            Command::MemoryBomb(number("memory-bomb", &arg1(&positional, "memory-bomb")?)?)
        }
        Some("spin") => Command::Spin(number("spin", &arg1(&positional, "spin")?)?),
        Some("sleep") => Command::Sleep(number("sleep", &arg1(&positional, "sleep")?)?),
        Some("listen-tcp") => Command::ListenTcp {
            port: number("listen-tcp", &arg1(&positional, "listen-tcp")?)?,
            seconds: match positional.get(2) {
                Some(s) => number("listen-tcp", s)?,
                None => 30,
            },
        },
        Some("__ids") => Command::Ids,
        Some(target) => Command::Run(target.to_owned()),
    };
    Ok((o, command))
}

fn arg1(positional: &[String], what: &str) -> Result<String, UsageError> {
    positional
        .get(1)
        .cloned()
        .ok_or_else(|| UsageError(format!("{what} needs an argument")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_are_collected_and_forwarded() {
        let (o, c) = parse(&args(
            "--host-pid 1 --host-pid 42 --marker /tmp/m --tcp 127.0.0.1:80 --abstract @sock \
             --tty-fd 5 --expect-uid-map --only sys.bpf,net all",
        ))
        .unwrap();
        assert_eq!(c, Command::Run("all".into()));
        assert_eq!(o.host_pids, [1, 42]);
        assert_eq!(o.markers, [PathBuf::from("/tmp/m")]);
        assert_eq!(o.tcp, ["127.0.0.1:80"]);
        assert_eq!(o.abstract_name.as_deref(), Some("sock"));
        assert_eq!(o.tty_fd, Some(5));
        assert!(o.expect_uid_map);
        assert_eq!(o.only, ["sys.bpf", "net"]);
        assert_eq!(o.fork_cap, DEFAULT_FORK_CAP);
        // Everything but the target is forwarded to children verbatim.
        let (again, _) = parse(&[o.raw.clone(), vec!["all".into()]].concat()).unwrap();
        assert_eq!(again, o);
    }

    #[test]
    fn hidden_subcommands_parse() {
        assert_eq!(
            parse(&args("memory-bomb 64")).unwrap().1,
            Command::MemoryBomb(64)
        );
        assert_eq!(parse(&args("spin 3")).unwrap().1, Command::Spin(3));
        assert_eq!(
            parse(&args("listen-tcp 4000")).unwrap().1,
            Command::ListenTcp {
                port: 4000,
                seconds: 30
            }
        );
        assert_eq!(
            parse(&args("--marker /m __child mnt.pivot_root"))
                .unwrap()
                .1,
            Command::Child("mnt.pivot_root".into())
        );
        assert_eq!(
            parse(&args("--only fs")).unwrap().1,
            Command::Run("all".into())
        );
    }

    #[test]
    fn mistakes_are_usage_errors() {
        assert!(parse(&args("--marker relative all")).is_err());
        assert!(parse(&args("--host-pid x all")).is_err());
        assert!(parse(&args("--bogus all")).is_err());
        assert!(parse(&args("--tcp")).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&args("spin")).is_err());
    }
}
