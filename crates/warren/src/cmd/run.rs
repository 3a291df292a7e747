//! `warren run`: validate what the user typed, resolve it into a launch plan, launch, wait, and
//! pass the workload's exit status through.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;
use warren_cgroup::Limits;
use warren_sandbox::state::StateDir;
use warren_sandbox::{LaunchPlan, Protection, RootSource};
use warren_spec::{ByteSize, CpuQuota, EnvName, limits};

use crate::cli::RunArgs;
use crate::dirs::Dirs;

/// Exit status for Warren's own failures.
const EXIT_WARREN: i32 = 125;

/// What the user typed, checked.
struct Inputs {
    name: EnvName,
    limits: Limits,
    cgroup: warren_cgroup::Placement,
    tmpfs_size: u64,
    writable_root: Option<u64>,
    env: Vec<(String, String)>,
    allow_missing: BTreeSet<Protection>,
    net: Option<warren_spec::VethSpec>,
    workdir: Option<PathBuf>,
    hostname: Option<String>,
    add_hosts: Vec<warren_spec::etc::HostEntry>,
    dns: Vec<std::net::IpAddr>,
    capabilities: Vec<warren_spec::Capability>,
    mounts: Vec<warren_spec::mount::MountRequest>,
    seccomp: warren_seccomp::Selection,
}

/// Stage one: check what the user typed, without touching the system.
fn parse_plan_inputs(args: &RunArgs) -> anyhow::Result<Inputs> {
    if args.tty && args.detach {
        bail!("-t/--tty needs this terminal: it cannot be combined with -d/--detach");
    }
    if !args.with.is_empty() && args.binary.is_none() {
        bail!(
            "--with adds paths to a --binary root; a --rootfs or --image root already holds \
             its files"
        );
    }
    let name: EnvName = match &args.name {
        Some(n) => n.parse().with_context(|| "invalid --name".to_string())?,
        None => generated_name()?,
    };
    let memory = args
        .memory
        .as_deref()
        .map(|m| m.parse::<ByteSize>().context("invalid --memory"))
        .transpose()?;
    if let Some(m) = memory {
        limits::check(limits::MEMORY, m.0).context("invalid --memory")?;
    }
    let pids = match args.pids.as_deref() {
        None => None,
        Some(p) => match p.parse::<u64>() {
            Ok(n) => Some(limits::check(limits::PIDS, n).context("invalid --pids")?),
            _ => bail!("invalid --pids {p:?}: expected a whole number above zero"),
        },
    };
    let cpu = args
        .cpus
        .as_deref()
        .map(|c| c.parse::<CpuQuota>().context("invalid --cpus"))
        .transpose()?;
    let tmpfs = args
        .tmpfs_size
        .parse::<ByteSize>()
        .context("invalid --tmpfs-size")?;
    limits::check(limits::TMPFS_SIZE, tmpfs.0).context("invalid --tmpfs-size")?;
    let writable_root = parse_writable_root(args)?;
    if let Some(c) = args.mailbox_capacity {
        limits::check(limits::MAILBOX_CAPACITY, c as u64).context("invalid --mailbox-capacity")?;
    }
    mailbox_bytes_arg(args)?;
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(parse_env_file(file)?);
    }
    for e in &args.env {
        if let Some(kv) = env_entry(e).with_context(|| format!("invalid --env {e:?}"))? {
            env.push(kv);
        }
    }
    let hostname = args
        .hostname
        .as_deref()
        .map(|h| parse_hostname(h).with_context(|| format!("invalid --hostname {h:?}")))
        .transpose()?;
    let (add_hosts, dns) = parse_etc(args)?;
    let workdir = args
        .workdir
        .as_deref()
        .map(|w| parse_workdir(w).with_context(|| format!("invalid --workdir {w:?}")))
        .transpose()?;
    let allow = args
        .allow_missing
        .iter()
        .map(|p| {
            p.parse::<Protection>()
                .map_err(anyhow::Error::msg)
                .context("invalid --allow-missing")
        })
        .collect::<anyhow::Result<BTreeSet<_>>>()?;
    let capabilities = warren_spec::caps::parse_list(&args.cap_add).context("invalid --cap-add")?;
    let seccomp = match args.seccomp.as_deref() {
        None => warren_seccomp::Selection::Default,
        Some(s) => warren_seccomp::Selection::parse(s).context("invalid --seccomp")?,
    };
    let limits = Limits {
        memory: memory.map(|m| m.0),
        pids: Some(pids.unwrap_or(LaunchPlan::DEFAULT_PIDS)),
        cpu,
    };
    if let Some(p) = args
        .cgroup_parent
        .as_deref()
        .filter(|p| !warren_cgroup::valid_group(p))
    {
        anyhow::bail!(
            "invalid --cgroup-parent {p:?}: it must be plain names separated by / (such as \
             front or front/children/req-1)"
        );
    }
    let cgroup = warren_cgroup::Placement {
        parent: args.cgroup_parent.clone(),
        holds_children: args.cgroup_children,
    };
    Ok(Inputs {
        name,
        limits,
        cgroup,
        tmpfs_size: tmpfs.0,
        writable_root,
        env,
        allow_missing: allow,
        net: parse_net(args)?,
        workdir,
        hostname,
        add_hosts,
        dns,
        capabilities,
        mounts: parse_mounts(args)?,
        seccomp,
    })
}

/// `--spawned-by`, `--spawn-template` and `--parent-record`: the provenance the launch record
/// states.
fn spawn_provenance(args: &RunArgs) -> anyhow::Result<Option<warren_attest::SpawnProvenance>> {
    let (Some(parent), Some(template)) = (&args.spawned_by, &args.spawn_template) else {
        return Ok(None);
    };
    let (parent_recnum, parent_digest) = match args.parent_record.as_deref() {
        None => (None, None),
        Some(r) => {
            let bad = || {
                anyhow::anyhow!(
                    "invalid --parent-record {r:?}: expected RECNUM:sha256:HEX (64 hex digits)"
                )
            };
            let (n, digest) = r.split_once(':').ok_or_else(bad)?;
            let n: u64 = n.parse().map_err(|_| bad())?;
            let hex = digest.strip_prefix("sha256:").ok_or_else(bad)?;
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            (Some(n), Some(digest.to_owned()))
        }
    };
    Ok(Some(warren_attest::SpawnProvenance {
        parent: parent.clone(),
        template: template.clone(),
        parent_recnum,
        parent_digest,
    }))
}

/// What `--init` puts before the command: the recorded and measured `command` starts with it.
pub use warren_sandbox::INIT_PREFIX;

/// `-v` then `--mount`, each checked for form.
/// The default size of a writable root's tmpfs.
const WRITABLE_ROOT_SIZE: u64 = 64 << 20;

/// `--writable-root` and `--writable-root-size`: the size of the overlay's tmpfs, or `None`
/// for a read-only root. A size without `--writable-root` is refused rather than ignored.
fn parse_writable_root(args: &RunArgs) -> anyhow::Result<Option<u64>> {
    let size = args
        .writable_root_size
        .as_deref()
        .map(|s| {
            let b = s
                .parse::<ByteSize>()
                .with_context(|| format!("invalid --writable-root-size {s:?}"))?;
            limits::check(limits::WRITABLE_ROOT_SIZE, b.0).context("invalid --writable-root-size")
        })
        .transpose()?;
    match (args.writable_root, size) {
        (false, Some(_)) => bail!("--writable-root-size needs --writable-root"),
        (false, None) => Ok(None),
        (true, s) => {
            if args.binary.is_some() {
                bail!(
                    "--writable-root needs --rootfs or --image (a --binary root is built in memory)"
                );
            }
            if args
                .rootfs
                .as_deref()
                .is_some_and(|r| std::fs::canonicalize(r).is_ok_and(|r| r == Path::new("/")))
            {
                bail!(
                    "--writable-root over --rootfs / is refused: the writable root's lower layer \
                     is idmapped, so root inside would own (and read) the host's root-only files"
                );
            }
            Ok(Some(s.unwrap_or(WRITABLE_ROOT_SIZE)))
        }
    }
}

fn parse_mounts(args: &RunArgs) -> anyhow::Result<Vec<warren_spec::mount::MountRequest>> {
    let mut out = Vec::new();
    for v in &args.volumes {
        out.push(warren_spec::mount::parse_volume(v).with_context(|| format!("invalid -v {v:?}"))?);
    }
    for m in &args.mounts {
        out.push(
            warren_spec::mount::parse_mount_options(m)
                .with_context(|| format!("invalid --mount {m:?}"))?,
        );
    }
    Ok(out)
}

/// One `-e` or `--env-file` entry: `KEY=VALUE`, or `KEY` alone for the value of Warren's own
/// variable (`None` when it has none, as Docker skips it).
fn env_entry(e: &str) -> anyhow::Result<Option<(String, String)>> {
    let (k, v) = match e.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (e, None),
    };
    if k.is_empty() {
        bail!("the name is empty");
    }
    if k.chars().any(char::is_whitespace) {
        bail!("the name {k:?} contains white space");
    }
    limits::check_env_var(k)?;
    if e.contains('\0') {
        bail!("it contains a NUL byte");
    }
    Ok(match v {
        Some(v) => Some((k.to_owned(), v)),
        None => std::env::var(k).ok().map(|v| (k.to_owned(), v)),
    })
}

/// `--env-file FILE`: one `KEY=VALUE` (or `KEY`) a line; blank lines and lines starting with
/// `#` are skipped. Errors name the file and the line.
fn parse_env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("invalid --env-file: cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = env_entry(line)
            .with_context(|| format!("invalid --env-file {}, line {}", path.display(), i + 1))?;
        out.extend(entry);
    }
    Ok(out)
}

/// `--hostname`: an RFC 1123 host name (`warren_spec::etc::check_host_name`).
fn parse_hostname(h: &str) -> anyhow::Result<String> {
    match warren_spec::etc::check_host_name(h) {
        Ok(()) => Ok(h.to_owned()),
        // The caller's context names the value: say only the rule broken.
        Err(warren_spec::etc::EtcError::HostName(_, why)) => bail!("{why}"),
        Err(e) => Err(e.into()),
    }
}

/// `--add-host NAME:IP` and `--dns IP`, each checked by `warren_spec::etc`; the error names
/// the flag and the value.
fn parse_etc(
    args: &RunArgs,
) -> anyhow::Result<(Vec<warren_spec::etc::HostEntry>, Vec<std::net::IpAddr>)> {
    let hosts = args
        .add_host
        .iter()
        .map(|h| {
            warren_spec::etc::parse_add_host(h).with_context(|| format!("invalid --add-host {h:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dns = args
        .dns
        .iter()
        .map(|d| warren_spec::etc::parse_ip(d).with_context(|| format!("invalid --dns {d:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    warren_spec::etc::check_lists(&hosts, &dns).context("invalid --add-host/--dns")?;
    Ok((hosts, dns))
}

/// `--workdir`: an absolute path without `..`.
fn parse_workdir(w: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(w);
    if !p.is_absolute() {
        bail!("the working directory must be an absolute path");
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        bail!("the working directory must not contain `..`");
    }
    if w.contains('\0') {
        bail!("it contains a NUL byte");
    }
    Ok(p.to_owned())
}

/// Who `--user` (or an image's user) names, resolved in `root`'s own `/etc/passwd` and
/// `/etc/group`; for a `--binary` root, which has neither, only numbers are accepted.
fn resolve_user(root: &RootSource, spec: &str) -> anyhow::Result<warren_image::user::RunAs> {
    let dir = match root {
        RootSource::Rootfs(d) | RootSource::Image(d) => d.as_path(),
        RootSource::Binary(_) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, "0"));
            let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), g.parse::<u32>()) else {
                bail!(
                    "a --binary root has no /etc/passwd or /etc/group: give UID[:GID] as numbers"
                );
            };
            if uid >= 65_536 || gid >= 65_536 {
                bail!("{uid}:{gid} is beyond the 65536 ids an environment maps");
            }
            return Ok(warren_image::user::RunAs {
                uid,
                gid,
                groups: vec![gid],
                home: None,
            });
        }
    };
    warren_image::user::resolve(dir, spec).map_err(|e| match e {
        warren_image::ImageError::User { reason, .. } => anyhow::anyhow!(reason),
        e => e.into(),
    })
}

/// The launcher's form of a resolved user: `None` for root.
fn run_as(who: &warren_image::user::RunAs) -> Option<warren_sandbox::RunAs> {
    (who.uid != 0 || who.gid != 0 || who.groups.iter().any(|g| *g != 0)).then(|| {
        warren_sandbox::RunAs {
            uid: who.uid,
            gid: who.gid,
            groups: who.groups.clone(),
        }
    })
}

/// `--mailbox-bytes SIZE`, within its bound.
fn mailbox_bytes_arg(args: &RunArgs) -> anyhow::Result<Option<u64>> {
    let Some(text) = args.mailbox_bytes.as_deref() else {
        return Ok(None);
    };
    let size = text
        .parse::<ByteSize>()
        .context("invalid --mailbox-bytes")?;
    let n = limits::check(limits::MAILBOX_BYTES, size.0).context("invalid --mailbox-bytes")?;
    Ok(Some(n))
}

/// `--net`, `--publish`, `--net-allow` and `--egress`, checked together.
fn parse_net(args: &RunArgs) -> anyhow::Result<Option<warren_spec::VethSpec>> {
    let mode = warren_spec::net::parse_net_mode(&args.net).context("invalid --net")?;
    let Some(address) = mode else {
        if !args.publish.is_empty() || !args.net_allow.is_empty() || args.egress {
            bail!(
                "--publish, --net-allow and --egress need a network: add --net auto or --net ADDRESS/PREFIX"
            );
        }
        return Ok(None);
    };
    let publish = args
        .publish
        .iter()
        .map(|p| p.parse().context("invalid --publish"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let allow = args
        .net_allow
        .iter()
        .map(|a| warren_spec::net::parse_peer(a).context("invalid --net-allow"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(warren_spec::VethSpec {
        address,
        publish,
        allow,
        egress: args.egress,
    }))
}

fn generated_name() -> anyhow::Result<EnvName> {
    let mut b = [0u8; 4];
    rustix_getrandom(&mut b)?;
    let s = format!("w-{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3]);
    Ok(s.parse()?)
}

fn rustix_getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    let n = rustix::rand::getrandom(&mut *buf, rustix::rand::GetRandomFlags::empty())
        .context("getrandom")?;
    anyhow::ensure!(
        n == buf.len(),
        "getrandom returned {n} of {} bytes",
        buf.len()
    );
    Ok(())
}

/// Stage two: resolve the root (this reads the filesystem) and assemble the plan.
fn resolve_root(args: &RunArgs) -> anyhow::Result<(RootSource, Vec<String>)> {
    match (&args.rootfs, &args.binary) {
        (Some(dir), None) => {
            let argv = with_entrypoint(args, args.command.clone());
            if argv.is_empty() {
                bail!("no command given: add the program to run after --, e.g. -- /bin/sh");
            }
            Ok((RootSource::Rootfs(absolute(dir)?), argv))
        }
        (None, Some(bin)) => {
            let mut root = warren_elf::resolve(bin, Path::new("/")).with_context(|| {
                format!("cannot build a minimal root for --binary {}", bin.display())
            })?;
            // What an interpreter needs besides its ELF files (CPython's standard library),
            // then what the user added.
            for dir in root.interpreter_dirs() {
                root.add_path(&dir).with_context(|| {
                    format!(
                        "cannot add the library directory of --binary {}",
                        bin.display()
                    )
                })?;
            }
            for path in &args.with {
                root.add_path(path)?;
            }
            let argv = if args.command.is_empty() && args.entrypoint.is_none() {
                vec![root.binary.target.display().to_string()]
            } else {
                with_entrypoint(args, args.command.clone())
            };
            Ok((RootSource::Binary(root), argv))
        }
        _ => bail!("give exactly one of --rootfs DIR or --binary PATH"),
    }
}

/// `--entrypoint PROGRAM` (when given and not empty) before `rest`.
fn with_entrypoint(args: &RunArgs, rest: Vec<String>) -> Vec<String> {
    match args.entrypoint.as_deref() {
        Some(ep) if !ep.is_empty() => std::iter::once(ep.to_owned()).chain(rest).collect(),
        _ => rest,
    }
}

/// An image resolved for a launch.
struct ImageLaunch {
    resolved: warren_image::ResolvedImage,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    user: Option<warren_sandbox::RunAs>,
    workdir: Option<PathBuf>,
}

/// Resolve `--image NAME`: the stored root, and the config's entrypoint and cmd (a command
/// given after `--` replaces the cmd, as with Docker), env, user and working directory.
fn resolve_image(dirs: &Dirs, args: &RunArgs, name: &str) -> anyhow::Result<ImageLaunch> {
    let name: warren_spec::ImageName = name.parse().context("invalid --image")?;
    let resolved = warren_image::Store::new(dirs.images()).resolve(&name)?;
    let run = resolved.record.run.clone();
    let argv = if args.entrypoint.is_some() {
        // Docker's rule: a new entrypoint drops the image's cmd too.
        with_entrypoint(args, args.command.clone())
    } else {
        let mut argv = run.entrypoint.clone().unwrap_or_default();
        if args.command.is_empty() {
            argv.extend(run.cmd.clone().unwrap_or_default());
        } else {
            argv.extend(args.command.iter().cloned());
        }
        argv
    };
    if argv.is_empty() {
        bail!("image {name} has no entrypoint or cmd: add the program to run after --");
    }
    let mut env = Vec::new();
    for e in run.env.iter().flatten() {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_owned(), v.to_owned())),
            _ => bail!("image {name} has a malformed env entry {e:?}"),
        }
    }
    let who = match &args.user {
        Some(u) => resolve_user(&RootSource::Image(resolved.root.clone()), u)
            .with_context(|| format!("invalid --user {u:?}"))?,
        // Resolved at import when the record says so (the root never changes).
        None => match &resolved.record.run_as {
            Some(who) => who.clone(),
            None => warren_image::user::resolve(&resolved.root, run.user.as_deref().unwrap_or(""))
                .with_context(|| format!("image {name}"))?,
        },
    };
    if !env.iter().any(|(k, _)| k == "HOME") {
        if let Some(home) = &who.home {
            env.push(("HOME".to_owned(), home.clone()));
        }
    }
    let user = run_as(&who);
    let workdir = run
        .working_dir
        .as_deref()
        .filter(|w| !w.is_empty())
        .map(|w| Path::new("/").join(w));
    Ok(ImageLaunch {
        resolved,
        argv,
        env,
        user,
        workdir,
    })
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

/// `warren run`.
pub fn run(state_dir: &Path, dirs: &Dirs, args: RunArgs) -> anyhow::Result<i32> {
    let json = args.json;
    let report_error = |code: i32, msg: String| -> i32 {
        eprintln!("warren: error: {msg}");
        if json {
            println!("{}", json!({ "error": msg, "exit_code": code }));
        }
        code
    };
    if args.detach && std::env::var_os(DETACHED).is_none() {
        return detach(state_dir, &args);
    }
    let Inputs {
        name,
        limits,
        cgroup,
        tmpfs_size,
        writable_root,
        env,
        allow_missing,
        net,
        workdir,
        hostname,
        add_hosts,
        dns,
        capabilities,
        mounts,
        seccomp,
    } = match parse_plan_inputs(&args) {
        Ok(v) => v,
        Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    // An image from the store: its root stays in the store while `image` lives (until the
    // environment has ended), and its config supplies argv, env, user and working directory.
    // Forked by the launch helper's factory: the socket to hand the environment to its waiter.
    let waiter = crate::daemon::take_handoff_socket();
    let mut image = match args.image.as_deref().map(|n| resolve_image(dirs, &args, n)) {
        None => None,
        Some(Ok(i)) => Some(i),
        Some(Err(e)) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    let (root, argv) = match &image {
        Some(i) => (RootSource::Image(i.resolved.root.clone()), i.argv.clone()),
        None => match resolve_root(&args) {
            Ok(v) => v,
            Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
        },
    };
    let mut env = env;
    if let Some(i) = &image {
        // The image's variables first: those given with -e replace them.
        let mut merged = i.env.clone();
        merged.extend(env);
        env = merged;
    }
    // `--user` for a root that is not an image (an image's was resolved with it above).
    let mut user = image.as_ref().and_then(|i| i.user.clone());
    if let (Some(spec), None) = (&args.user, &image) {
        match resolve_user(&root, spec).with_context(|| format!("invalid --user {spec:?}")) {
            Ok(who) => {
                if let Some(home) = who
                    .home
                    .as_ref()
                    .filter(|_| !env.iter().any(|(k, _)| k == "HOME"))
                {
                    env.push(("HOME".to_owned(), home.clone()));
                }
                user = run_as(&who);
            }
            Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
        }
    }
    // The volumes stay locked (and so cannot be removed) until this launcher ends. `_held` is
    // declared before `plan`, so it drops after it: a size-limited volume's mount (held by the
    // plan) is closed, and its file system shut down, before its exclusive lock is released.
    let (mounts, _held) = match crate::mounts::resolve(dirs, &root, &mounts) {
        Ok(v) => v,
        Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    let mailbox_bytes = match mailbox_bytes_arg(&args) {
        Ok(b) => b,
        Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    // Under the init, pid 1 is `warren-msg init`, which always starts: a command missing from
    // the root would show only as the init's 127 after the launch reported success. Look it up
    // first, as exec will (runc does the same), so the launch fails with 127 or 126 instead.
    if args.init {
        if let Err((code, msg)) = command_in_root(&root, &argv, &env) {
            return Ok(report_error(code, msg));
        }
    }
    // With a kernel daemon running, the environment gets its mailbox connection as fd 3.
    let registration = match crate::control::register(
        state_dir,
        name.as_str(),
        &args.may_send,
        &args.may_discover,
        (args.mailbox_capacity, mailbox_bytes),
    ) {
        Ok(r) => r,
        Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    if registration.is_none() && !(args.may_send.is_empty() && args.may_discover.is_empty()) {
        return Ok(report_error(
            EXIT_WARREN,
            "--may-send and --may-discover need a running kernel: start `warren daemon` first"
                .into(),
        ));
    }
    let (control, mailbox, kept) = match registration {
        Some(r) => (Some(r.control), Some(r.mailbox), r.kept),
        None => (None, None, None),
    };
    let client_tool = if mailbox.is_some() || args.init {
        client_tool()
    } else {
        None
    };
    let mut argv = argv;
    if args.init {
        if client_tool.is_none() {
            return Ok(report_error(
                EXIT_WARREN,
                "--init needs the static warren-msg next to warren (or named by $WARREN_MSG_BIN)"
                    .into(),
            ));
        }
        argv.splice(0..0, INIT_PREFIX.map(str::to_owned));
    }
    if client_tool.is_some() {
        // An image's own PATH replaces the default one: keep the mailbox client reachable.
        for (k, v) in env.iter_mut().filter(|(k, _)| k == "PATH") {
            let _ = k;
            v.push_str(":/dev/warren");
        }
    }
    let plan = LaunchPlan {
        name,
        root,
        argv,
        env,
        limits,
        cgroup,
        tmpfs_size,
        writable_root,
        tty: args.tty,
        allow_missing,
        client_tool,
        net,
        user,
        hostname,
        add_hosts,
        dns,
        capabilities,
        workdir: workdir.or_else(|| image.as_ref().and_then(|i| i.workdir.clone())),
        image_name: image.as_ref().map(|i| i.resolved.record.name.clone()),
        image_manifest_digest: image
            .as_ref()
            .map(|i| i.resolved.record.manifest.to_string()),
        image_tree_digest: image
            .as_ref()
            .and_then(|i| i.resolved.record.tree_digest.clone()),
        mounts,
        seccomp,
    };
    let spawn = match spawn_provenance(&args) {
        Ok(s) => s,
        Err(e) => return Ok(report_error(EXIT_WARREN, format!("{e:#}"))),
    };
    let state = StateDir::new(state_dir);
    // One stat: where this launch's record (if it gets one) will start in the event log.
    let log_len = warren_attest::outcome::log_len(state_dir);
    let mut measure =
        |plan: &warren_sandbox::LaunchPlan,
         applied: &warren_sandbox::Applied,
         env: &[(String, String)]|
         -> Result<warren_sandbox::Measurement, Box<dyn std::error::Error + Send + Sync>> {
            crate::measure::measure_and_record(plan, applied, env, &state, spawn.as_ref())
                .map_err(Into::into)
        };
    // `-d`, managed and spawned environments: the workload writes into a pipe that the waiting thread
    // copies into `<state>/logs/NAME.log`, up to its limit (logcap.rs), not into the file.
    let log_path = state_dir
        .join("logs")
        .join(format!("{}.log", plan.name.as_str()));
    let mut log_cap = match crate::logcap::interpose(&log_path, plan.name.as_str()) {
        Ok(c) => c,
        Err(e) => {
            return Ok(report_error(
                EXIT_WARREN,
                format!("put a pipe before {}: {e}", log_path.display()),
            ));
        }
    };
    // The launch waiter takes the environment over once it runs, unless the launch holds what
    // a hand-off does not carry: a terminal, volumes, a network interface of its own.
    let waiter = waiter.filter(|_| {
        !plan.tty
            && plan.net.is_none()
            && plan.mounts.is_empty()
            && control.is_some()
            && kept.is_some()
            && log_cap.is_some()
    });
    let parentage = match waiter {
        Some(_) => warren_sandbox::Parentage::LaunchersParent,
        None => warren_sandbox::Parentage::Launcher,
    };
    let running = match warren_sandbox::launch_as(&plan, &state, mailbox, &mut measure, parentage) {
        Ok(r) => {
            if let Some(c) = log_cap.as_mut() {
                c.start();
            }
            r
        }
        Err(e) => {
            let code = e.exit_code();
            let mut msg = error_chain(&e);
            // A launch that failed after it was measured is recorded as refused.
            if let Err(r) =
                warren_attest::outcome::record_refusal(state_dir, plan.name.as_str(), log_len)
            {
                msg.push_str(&format!(
                    "; and recording the refusal failed: {}",
                    error_chain(&r)
                ));
            }
            return Ok(report_error(code, msg));
        }
    };
    let mut running = running;
    let applied = running.applied.clone();
    let record = json!({
        "name": applied.name,
        "state": "running",
        "pid": applied.host_pid,
        "launcher_pid": std::process::id(),
        "started": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "command": plan.argv,
        "applied": applied,
    });
    match running.write_record(record.to_string().as_bytes()) {
        // The live record now holds the launch record: its stand-in goes (`measure.rs`).
        Ok(()) if plan.cgroup.holds_children => {
            let _ = std::fs::remove_file(crate::measure::measured_path(
                &state.envs_dir(),
                plan.name.as_str(),
            ));
        }
        Ok(()) => {}
        Err(e) => eprintln!("warren: warning: cannot record the environment for ps/inspect: {e}"),
    }
    if let Some(c) = &control {
        // The kernel reports a managed start only once it is real (`apply` says `created`).
        if let Err(e) = crate::control::started(c) {
            eprintln!("warren: warning: cannot tell the kernel the environment started: {e:#}");
        }
    }
    // The environment runs: the waiting thread also watches the kernel connection and
    // re-attaches the environment to a restarted kernel.
    let (control, mut attachment) = match (control, kept) {
        (Some(c), Some(kept)) => {
            let r = crate::control::Reattach {
                state_dir: state_dir.to_owned(),
                name: plan.name.to_string(),
                may_send: args.may_send.clone(),
                may_discover: args.may_discover.clone(),
                capacity: args.mailbox_capacity,
                mailbox_bytes,
                kept,
                log: None,
            };
            (None, Some(crate::control::Attachment::new(c, r)))
        }
        (c, _) => (c, None),
    };
    // `-t`: relay between this terminal and the environment's pty until the workload ends;
    // the terminal is restored when `relay` is finished or dropped, whatever the path.
    let pty = running.take_pty();
    let mut running = running.into_supervised();
    // Refused system calls are explained on the launcher's standard error: the terminal for
    // `warren run`, `<state>/logs/NAME.log` (so `warren logs`) for `-d` and managed environments.
    // One write per line, so that it does not interleave with the workload's own output.
    let mut log_refusal = |line: &str| {
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(format!("warren: {line}\n").as_bytes());
    };
    if let Some(sock) = waiter {
        // Not at once: during its first second (all the life of a request's environment, say)
        // the launcher waits for the environment as always, so that the hand-off's work does
        // not compete with the environment's start for the CPU; it hands it over then, or as
        // soon as it ends (the waiter, its parent, has its status).
        let mut limit = HAND_OFF_AFTER;
        loop {
            let mut side: Vec<&mut dyn warren_sandbox::Sidework> = Vec::new();
            if let Some(c) = log_cap.as_mut() {
                side.push(c);
            }
            if let Some(a) = attachment.as_mut() {
                side.push(a);
            }
            let ended = running
                .watch_for(limit, &mut log_refusal, &mut side)
                .unwrap_or(true);
            drop(side);
            // A kernel that went away meanwhile (the connection re-attaching, or re-attached to
            // the next kernel) would not hear of the hand-off: then the launcher waits for the
            // end, as a re-adopted launcher, and hands over only the ended environment (the
            // waiter, its parent, has its status and leaves it in `exits/NAME`).
            if ended || !side_outlived(&attachment) {
                break;
            }
            limit = std::time::Duration::from_secs(3600);
        }
        // Ends this process when the waiter has it.
        running = hand_off(
            &sock,
            running,
            (&mut log_cap, &mut attachment, &mut image),
            &plan,
            state_dir,
        );
    }
    let relay = match pty {
        Some(master) => match crate::tty::start(master, args.interactive) {
            Ok(r) => Some(r),
            Err(e) => {
                let _ = running.signal(rustix::process::Signal::KILL);
                let _ = running.wait(&mut |_| {});
                return Ok(report_error(
                    EXIT_WARREN,
                    format!("cannot relay the terminal: {e:#}"),
                ));
            }
        },
        None => None,
    };
    // The launcher idles until the environment ends (for spawned children and `-d`, that is
    // most of its life): what the launch allocated and freed goes back to the system.
    // Not at once: a workload that ends within the second (a `/bin/true`) would only make the
    // launcher fault the pages in again for its teardown.
    let mut side: Vec<&mut dyn warren_sandbox::Sidework> = Vec::new();
    if let Some(c) = log_cap.as_mut() {
        side.push(c);
    }
    if let Some(a) = attachment.as_mut() {
        side.push(a);
    }
    let exit = running.wait_idle(
        &mut log_refusal,
        Some((
            std::time::Duration::from_secs(1),
            &mut warren_sys::release_free_heap,
        )),
        &mut side,
    );
    drop(side);
    if let Some(c) = log_cap.as_mut() {
        c.drain();
    }
    if let Some(r) = relay {
        r.finish();
    }
    let exit = match exit {
        Ok(x) => x,
        Err(e) => return Ok(report_error(EXIT_WARREN, error_chain(&e))),
    };
    // A kernel that did not start this launcher cannot wait for it: it learns the status here.
    if attachment.as_ref().is_some_and(|a| a.outlived_its_kernel()) {
        if let Err(e) = crate::control::record_exit(state_dir, plan.name.as_str(), exit.code) {
            eprintln!("warren: warning: cannot leave the exit status for the kernel: {e:#}");
        }
    }
    // The environment has ended: closing the control connection tells the kernel so.
    drop(control);
    drop(attachment);
    for why in end_reasons(
        &exit,
        plan.limits.memory,
        plan.limits.pids,
        plan.cgroup.parent.as_deref(),
    ) {
        eprintln!("warren: {}: {why}", applied.name);
    }
    if json {
        println!(
            "{}",
            json!({ "name": applied.name, "exit_code": exit.code, "signal": exit.signal,
                    "oom_killed": exit.oom_killed, "pids_limit_hit": exit.pids_limit_hit,
                    "seccomp_refusals": exit.seccomp_refusals.iter()
                        .map(|(name, count)| json!({ "syscall": name, "count": count }))
                        .collect::<Vec<_>>(),
                    "applied": applied })
        );
    }
    Ok(exit.code)
}

/// Whether the kernel that started this launcher's environment went away while it ran.
fn side_outlived(attachment: &Option<crate::control::Attachment>) -> bool {
    attachment.as_ref().is_some_and(|a| a.outlived_its_kernel())
}

/// How long a launcher whose environment the launch waiter can take over waits for it first.
const HAND_OFF_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Hand the running environment to the launch helper's waiter (`daemon/waiter.rs`) with what
/// the rest of this launcher's life would have done (the log copy, the kernel connection, the
/// image's lock, the lines to write at the end), and end this process: the waiter is the
/// environment's parent (it was launched so) and reports its end to the kernel, or, when the
/// kernel that started it went away meanwhile, leaves the status in `exits/NAME`. Returns the
/// environment only when it cannot be handed over at all (`HandOff::new` refuses an
/// environment with a network interface, which is not launched for a hand-off). A hand-off that
/// fails to be sent ends the environment (this process is not its parent, so could never
/// collect its status) and exits 125.
fn hand_off(
    sock: &std::os::fd::OwnedFd,
    sup: warren_sandbox::Supervised,
    (log_cap, attachment, image): (
        &mut Option<crate::logcap::LogCap>,
        &mut Option<crate::control::Attachment>,
        &mut Option<ImageLaunch>,
    ),
    plan: &LaunchPlan,
    state_dir: &Path,
) -> warren_sandbox::Supervised {
    use std::os::fd::AsFd;
    let outlived = side_outlived(attachment);
    let handoff = match warren_sandbox::handoff::HandOff::new(sup) {
        Ok(h) => h,
        Err(b) => return b.0,
    };
    let mut fds = Vec::new();
    let log = match log_cap.take().map(crate::logcap::LogCap::into_parts) {
        Some(Ok((data, f))) => {
            fds.extend(f);
            Some(data)
        }
        Some(Err(cap)) => {
            *log_cap = Some(cap);
            None
        }
        None => None,
    };
    // Still re-attaching (its kernel went away and the next one has not taken it back): the
    // environment has ended (see the caller), and its status goes to `exits/NAME`.
    let attach = match attachment
        .take()
        .map(crate::control::Attachment::into_parts)
    {
        Some(Ok((data, f))) => {
            fds.extend(f);
            Some(data)
        }
        Some(Err(_)) | None => None,
    };
    let held: Vec<std::os::fd::OwnedFd> = image
        .take()
        .map(|i| i.resolved.into_lock())
        .into_iter()
        .collect();
    let sent = crate::daemon::Sent {
        launcher: std::process::id() as i32,
        name: plan.name.to_string(),
        state_dir: state_dir.to_owned(),
        log,
        attach,
        outlived,
        memory: plan.limits.memory,
        pids: plan.limits.pids,
        cgroup_parent: plan.cgroup.parent.clone(),
        held: held.len(),
    };
    fds.extend(held);
    let data = serde_json::to_value(&sent).unwrap_or_default();
    let handoff = handoff.with_extra(data, fds);
    match handoff.send(sock.as_fd()) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!(
                "warren: error: cannot hand {} to the launch waiter: {e}; ending it",
                plan.name
            );
            drop(handoff.take_over());
            std::process::exit(EXIT_WARREN)
        }
    }
}

/// Set in the environment of the background launcher `-d` starts, so that it runs in the
/// foreground of its own process.
const DETACHED: &str = "WARREN_RUN_DETACHED";

/// `warren run -d`: check the input, start this same command as a background launcher (its own
/// process group, standard input closed, output appended to `<state>/logs/NAME.log`), wait until
/// the environment runs, print its name and exit 0. A launch that fails in the background
/// prints the launcher's output and exits with its status.
fn detach(state_dir: &Path, args: &RunArgs) -> anyhow::Result<i32> {
    let inputs = match parse_plan_inputs(args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("warren: error: {e:#}");
            return Ok(EXIT_WARREN);
        }
    };
    let name = inputs.name.to_string();
    let state = StateDir::new(state_dir);
    if state.name_in_use(&name).unwrap_or(false) {
        eprintln!("warren: error: an environment named {name:?} is already running");
        return Ok(EXIT_WARREN);
    }
    let logs = state_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let log_path = logs.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let start = log.metadata().map(|m| m.len()).unwrap_or(0);
    // The same command line, with the generated name made explicit after `run`.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.name.is_none() {
        let at = argv.iter().position(|a| a == "run").map_or(0, |i| i + 1);
        argv.splice(at..at, ["--name".into(), name.clone().into()]);
    }
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new(std::env::current_exe().context("find warren")?)
        .args(&argv)
        .env(DETACHED, "1")
        .env("WARREN_STATE_DIR", state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start the background launcher")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let running = state
            .live_records()
            .unwrap_or_default()
            .iter()
            .any(|(n, rec)| n == &name && !rec.is_empty());
        if running {
            println!("{name}");
            return Ok(0);
        }
        if let Some(st) = child.try_wait()? {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(start as usize..).unwrap_or(&[]));
            eprint!("{text}");
            return Ok(st.code().unwrap_or(EXIT_WARREN));
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{name} did not start within 30 s (see {})",
                log_path.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Why a workload ended, when Warren knows more than its status says: the memory cgroup's
/// OOM kill, and forks refused at the pids limit. Empty for an ordinary exit.
/// A nested environment (`cgroup_parent`) is also bound by its spawner's limits, which the
/// message names.
pub(crate) fn end_reasons(
    exit: &warren_sandbox::launch::ExitState,
    memory: Option<u64>,
    pids: Option<u64>,
    cgroup_parent: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    if exit.oom_killed {
        let mut limit = memory.map_or_else(|| "none set".to_owned(), human_size);
        if let Some(parent) = cgroup_parent {
            limit.push_str(&format!(", and its spawner's: cgroup {parent}"));
        }
        out.push(match exit.signal {
            Some(9) => format!("killed: out of memory (limit {limit})"),
            _ => format!(
                "a process was killed: out of memory (limit {limit}); the workload exited with status {}",
                exit.code
            ),
        });
    }
    if exit.signal == Some(31) {
        // The filter kills only calls made through another architecture's entry point; the
        // kernel does not say which call it was.
        out.push(
            "killed by seccomp (SIGSYS): a system call through another architecture's entry \
             point (i386 `int 0x80`, AArch32), which Warren's filter kills; the syscall number \
             is not reported by the kernel"
                .to_owned(),
        );
    }
    let repeated: Vec<String> = exit
        .seccomp_refusals
        .iter()
        .filter(|(_, n)| *n > 1)
        .map(|(name, n)| format!("{name} {n} times"))
        .collect();
    if !repeated.is_empty() {
        out.push(format!("seccomp refused: {}", repeated.join(", ")));
    }
    if exit.pids_limit_hit {
        let limit = pids.map_or_else(|| "?".to_owned(), |n| n.to_string());
        out.push(format!(
            "pids limit hit: a fork or thread creation failed (limit {limit} processes and \
             threads, --pids); the workload exited with status {}",
            exit.code
        ));
    }
    out
}

/// `536870912` as `512M`: the largest binary unit that divides the size exactly.
fn human_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// The static `warren-msg` client to expose inside environments: `WARREN_MSG_BIN`, else the
/// file next to this binary.
fn client_tool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_MSG_BIN") {
        return Some(PathBuf::from(p));
    }
    let sibling = std::env::current_exe().ok()?.with_file_name("warren-msg");
    sibling.is_file().then_some(sibling)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// [`command_in_root`] for a binary root, which holds nothing but what it lists: the binary,
/// its loader and libraries, and the added paths (`--with`), each at its target path, the
/// binary again at `/<its file name>`, and `/dev/warren` (the init and the client). `cmd` is found when one of the paths `execvp`
/// would try (lexically normalised) is one of those, or lies under an added directory.
fn command_in_binary_root(
    b: &warren_elf::BinaryRoot,
    cmd: &str,
    env: &[(String, String)],
) -> Result<(), (i32, String)> {
    let held = |p: &std::path::Path| {
        b.entries().any(|e| e.target == p)
            || b.added.iter().any(|a| {
                a.entry.target == p
                    || (a.dir && p.starts_with(&a.entry.target))
                    || a.files.iter().any(|f| f.target == p)
            })
            || p.starts_with("/dev/warren")
            // The binary is also placed at `/<its file name>` (warren-sandbox's rootfs.rs).
            || b.binary.target.file_name().is_some_and(|n| Path::new("/").join(n) == p)
    };
    let normal = |p: &str| {
        let mut out = PathBuf::from("/");
        for c in std::path::Path::new(p).components() {
            match c {
                std::path::Component::Normal(n) => out.push(n),
                std::path::Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    };
    let found = if cmd.starts_with('/') {
        held(&normal(cmd))
    } else {
        warren_sandbox::search_path(env)
            .split(':')
            .filter(|d| d.starts_with('/'))
            .any(|d| held(&normal(&format!("{d}/{cmd}"))))
    };
    if found {
        return Ok(());
    }
    Err((
        127,
        format!(
            "command not found in the environment: {cmd} (a binary image's root holds only {}, \
             its loader and libraries, and the paths added with --with)",
            b.binary.target.display()
        ),
    ))
}

/// Whether `argv[0]` names an executable file in the root as `execvp` inside it would find it
/// (a name without `/` is searched in the workload's `PATH`): `Err((127 or 126, message))` if
/// not. Paths are resolved inside the root (`RESOLVE_IN_ROOT`), so the root's absolute symbolic
/// links mean what they mean inside; a binary root holds only what it lists
/// ([`command_in_binary_root`]). Relative paths with a `/` (resolved against the working
/// directory at exec) are left to exec.
fn command_in_root(
    root: &RootSource,
    argv: &[String],
    env: &[(String, String)],
) -> Result<(), (i32, String)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let Some(cmd) = argv.first() else {
        return Ok(());
    };
    if cmd.contains('/') && !cmd.starts_with('/') {
        return Ok(());
    }
    let dir = match root {
        RootSource::Rootfs(p) | RootSource::Image(p) => p,
        RootSource::Binary(b) => return command_in_binary_root(b, cmd, env),
    };
    let Ok(rootfd) = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(());
    };
    // 0: not found; 1: found but not executable; 2: executable.
    let probe = |path: &str| -> u8 {
        let rel = path.trim_start_matches('/');
        let Ok(fd) = rustix::fs::openat2(
            &rootfd,
            if rel.is_empty() { "." } else { rel },
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) else {
            return 0;
        };
        match rustix::fs::fstat(&fd) {
            Ok(st) if (st.st_mode & 0o170000) == 0o100000 && st.st_mode & 0o111 != 0 => 2,
            Ok(_) => 1,
            Err(_) => 0,
        }
    };
    let found = if cmd.starts_with('/') {
        probe(cmd)
    } else {
        warren_sandbox::search_path(env)
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| probe(&format!("{d}/{cmd}")))
            .max()
            .unwrap_or(0)
    };
    match found {
        2 => Ok(()),
        1 => Err((
            126,
            format!(
                "command cannot be executed in the environment: {cmd} (not an executable file)"
            ),
        )),
        _ => Err((
            127,
            format!("command not found in the environment: {cmd} (no such file in the root)"),
        )),
    }
}
