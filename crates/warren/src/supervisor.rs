//! Supervision of the environments the kernel daemon manages (those declared in a manifest
//! and applied): their desired specs, observed states, restart policy with exponential backoff,
//! and the launcher processes that run them.
//!
//! The decisions (what to do when a launcher exits, when to retry) are pure functions of the
//! record and the time, tested here; `daemon.rs` does the spawning, the pidfds and the timers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warren_spec::{RestartPolicy, SpaceSpec};

/// The first backoff delay after a failure, in milliseconds; it doubles per restart.
pub const BACKOFF_START_MS: u64 = 100;
/// The longest backoff delay, in milliseconds.
pub const BACKOFF_MAX_MS: u64 = 30_000;
/// A run this long (milliseconds) counts as healthy: the restart count starts again.
pub const HEALTHY_RUN_MS: u64 = 10_000;

/// Where a managed environment is in its life (OCI's vocabulary where it fits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Its launcher is starting or running it.
    Running,
    /// It exited and the policy will start it again after the backoff delay.
    Restarting,
    /// It exited and stays so (policy `no`, or `on-failure` after a clean exit).
    Exited,
    /// It was stopped on request and stays so until applied or started again.
    Stopped,
    /// It failed more often than `max_restarts` allows: the kernel gave up.
    Failed,
}

impl State {
    /// The name shown by `ps` and `inspect`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Restarting => "restarting",
            State::Exited => "exited",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// One managed environment, as persisted in `<state>/managed.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Managed {
    /// The declared spec.
    pub spec: SpaceSpec,
    /// Its state.
    pub state: State,
    /// Restarts since it last ran healthily.
    pub restarts: u32,
    /// Restarts over its whole life.
    pub total_restarts: u64,
    /// The last exit code (128 + signal for a signal), if it ever exited.
    pub last_exit: Option<i32>,
    /// The launcher's pid while running.
    pub launcher_pid: Option<i32>,
    /// Once its launcher handed it to the launch helper's waiter and ended: the environment's
    /// first process, which the kernel then signals to stop it and a restarted kernel takes
    /// back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_pid: Option<i32>,
    /// When (wall clock, ms since the epoch) the current run started.
    pub started_at_ms: Option<u64>,
    /// When (daemon ms) a restart is due, while `Restarting`.
    #[serde(skip)]
    pub restart_at: Option<u64>,
    /// For a child spawned through the protocol (not declared in a manifest): its spawner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawned_by: Option<String>,
    /// For a linked child: the cgroup group (relative to Warren's `warren` cgroup) of its
    /// spawner, under which its own cgroup is made (`warren run --cgroup-parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// For a spawned child: what its launch record states about where it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<warren_attest::SpawnProvenance>,
    /// For a running spawned child: what a restarted kernel needs to take it back (its link,
    /// its spawner's `down` reference, its initial names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<warren_kernel::KeptChild>,
}

impl Managed {
    /// A newly declared environment, about to be started.
    pub fn new(spec: SpaceSpec) -> Managed {
        Managed {
            spec,
            state: State::Running,
            restarts: 0,
            total_restarts: 0,
            last_exit: None,
            launcher_pid: None,
            env_pid: None,
            started_at_ms: None,
            restart_at: None,
            spawned_by: None,
            cgroup_parent: None,
            provenance: None,
            kept: None,
        }
    }

    /// Where its cgroup goes: under its spawner's group for a linked child, and holding
    /// children when it may spawn.
    pub fn cgroup_placement(&self) -> warren_cgroup::Placement {
        warren_cgroup::Placement {
            parent: self.cgroup_parent.clone(),
            holds_children: !self.spec.may_spawn.is_empty(),
        }
    }
}

/// What to do after a launcher exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again at this daemon time (ms).
    RestartAt(u64),
    /// Leave it exited.
    Stay,
    /// Give up: too many restarts.
    GiveUp,
}

/// The backoff delay before restart number `n` (1-based): 100 ms, 200 ms, 400 ms, … 30 s.
pub fn backoff_ms(n: u32) -> u64 {
    BACKOFF_START_MS
        .saturating_mul(1u64 << n.saturating_sub(1).min(20))
        .min(BACKOFF_MAX_MS)
}

/// Decide what follows an exit with `code` after a run of `ran_ms`, at daemon time `now`.
/// Updates the restart counters.
pub fn after_exit(m: &mut Managed, code: i32, ran_ms: u64, now: u64) -> AfterExit {
    m.last_exit = Some(code);
    m.launcher_pid = None;
    m.env_pid = None;
    if ran_ms >= HEALTHY_RUN_MS {
        m.restarts = 0;
    }
    let wants = match m.spec.restart {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Always => true,
    };
    if !wants {
        m.state = State::Exited;
        return AfterExit::Stay;
    }
    if m.restarts >= m.spec.max_restarts {
        m.state = State::Failed;
        return AfterExit::GiveUp;
    }
    m.restarts += 1;
    m.total_restarts += 1;
    m.state = State::Restarting;
    let at = now + backoff_ms(m.restarts);
    m.restart_at = Some(at);
    AfterExit::RestartAt(at)
}

/// The `warren run` arguments that state a spawned child's provenance in its launch record.
pub fn provenance_args(p: &warren_attest::SpawnProvenance) -> Vec<String> {
    let mut a = vec![
        "--spawned-by".to_owned(),
        p.parent.clone(),
        "--spawn-template".to_owned(),
        p.template.clone(),
    ];
    if let (Some(n), Some(d)) = (p.parent_recnum, &p.parent_digest) {
        a.push("--parent-record".into());
        a.push(format!("{n}:{d}"));
    }
    a
}

/// The `warren run` arguments that start `name` as `spec` declares, its cgroup at `cgroup`.
pub fn launcher_args(
    name: &str,
    spec: &SpaceSpec,
    cgroup: &warren_cgroup::Placement,
) -> Vec<String> {
    let mut a = vec!["run".to_owned(), "--name".to_owned(), name.to_owned()];
    if let Some(parent) = &cgroup.parent {
        a.push("--cgroup-parent".into());
        a.push(parent.clone());
    }
    if cgroup.holds_children {
        a.push("--cgroup-children".into());
    }
    if spec.init {
        a.push("--init".into());
    }
    match &spec.image {
        warren_spec::ImageSpec::Rootfs(dir) => {
            a.push("--rootfs".into());
            a.push(dir.display().to_string());
        }
        warren_spec::ImageSpec::Binary(bin) => {
            a.push("--binary".into());
            a.push(bin.display().to_string());
            for path in &spec.with {
                a.push("--with".into());
                a.push(path.display().to_string());
            }
        }
        warren_spec::ImageSpec::Name(image) => {
            a.push("--image".into());
            a.push(image.to_string());
        }
    }
    if let Some(m) = spec.memory {
        a.push("--memory".into());
        a.push(m.0.to_string());
    }
    if let Some(p) = spec.pids {
        a.push("--pids".into());
        a.push(p.to_string());
    }
    if let Some(c) = spec.cpus {
        a.push("--cpus".into());
        a.push(c.to_string());
    }
    for m in &spec.volumes {
        let mut opts = Vec::new();
        if m.read_only {
            opts.push("ro");
        }
        if m.kind == warren_spec::mount::MountKind::Volume && !m.copy_up {
            opts.push("nocopy");
        }
        a.push("-v".into());
        a.push(format!(
            "{}:{}{}{}",
            m.source,
            m.dest.display(),
            if opts.is_empty() { "" } else { ":" },
            opts.join(",")
        ));
    }
    if !spec.read_only {
        a.push("--writable-root".into());
        if let Some(s) = spec.writable_root_size {
            a.push("--writable-root-size".into());
            a.push(s.0.to_string());
        }
    }
    if let Some(t) = spec.tmpfs_size {
        a.push("--tmpfs-size".into());
        a.push(t.0.to_string());
    }
    for (k, v) in &spec.env {
        a.push("-e".into());
        a.push(format!("{k}={v}"));
    }
    for n in &spec.may_send {
        a.push("--may-send".into());
        a.push(n.clone());
    }
    for n in &spec.may_discover {
        a.push("--may-discover".into());
        a.push(n.clone());
    }
    if let Some(c) = spec.mailbox_capacity {
        a.push("--mailbox-capacity".into());
        a.push(c.to_string());
    }
    if let Some(b) = spec.mailbox_bytes {
        a.push("--mailbox-bytes".into());
        a.push(b.0.to_string());
    }
    for p in &spec.allow_missing {
        a.push("--allow-missing".into());
        a.push(p.clone());
    }
    for c in &spec.capabilities {
        a.push("--cap-add".into());
        a.push(c.clone());
    }
    for h in &spec.add_hosts {
        a.push("--add-host".into());
        a.push(format!("{}:{}", h.name, h.ip));
    }
    for d in &spec.dns {
        a.push("--dns".into());
        a.push(d.to_string());
    }
    if let Some(s) = &spec.seccomp {
        a.push("--seccomp".into());
        a.push(s.clone());
    }
    if let warren_spec::NetSpec::Veth(v) = &spec.net {
        a.push("--net".into());
        a.push(
            v.address
                .map_or_else(|| "auto".to_owned(), |c| c.to_string()),
        );
        for p in &v.publish {
            a.push("--publish".into());
            a.push(p.to_string());
        }
        for p in &v.allow {
            a.push("--net-allow".into());
            a.push(p.to_string());
        }
        if v.egress {
            a.push("--egress".into());
        }
    }
    a.push("--".into());
    a.extend(spec.command.iter().cloned());
    a
}

/// The managed set, persisted so that a restarted daemon knows what it manages.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    /// By name.
    pub envs: BTreeMap<String, Managed>,
    /// The templates last declared (`warren up FILE`, `warren apply FILE`), by name: a daemon
    /// started without a manifest declares them again, so that environments that declare
    /// `may_spawn` keep their SPAWN handles across a kernel restart.
    #[serde(default)]
    pub templates: BTreeMap<String, warren_spec::TemplateSpec>,
}

impl Registry {
    /// The file it lives in.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("managed.json")
    }

    /// Load it (empty when absent). Specs saved by a Warren that kept explicit defaults are
    /// normalised as a manifest now is, so that the next `apply` of the same file plans no
    /// change for them.
    pub fn load(state_dir: &Path) -> anyhow::Result<Registry> {
        let p = Registry::path(state_dir);
        match std::fs::read(&p) {
            Ok(bytes) => {
                let mut r: Registry = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                for m in r.envs.values_mut() {
                    m.spec.forget_explicit_defaults();
                }
                Ok(r)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", p.display())),
        }
    }

    /// What is saved: compact JSON (the daemon saves it on every spawn and child exit, and with
    /// 600 children a save took 1.5 ms pretty-printed (549 KB) against 0.95 ms compact
    /// (329 KB)). The daemon's registry writer (`daemon/persist.rs`) puts it at
    /// [`Registry::path`] atomically (a temporary file, then a rename).
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(restart: RestartPolicy, max: u32) -> SpaceSpec {
        let text = format!(
            "[space.a]\nimage = \"/\"\ncommand = [\"/bin/true\"]\nrestart = \"{}\"\nmax_restarts = {max}\n",
            match restart {
                RestartPolicy::No => "no",
                RestartPolicy::OnFailure => "on-failure",
                RestartPolicy::Always => "always",
            }
        );
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), &text).unwrap();
        m.spaces.into_values().next().unwrap()
    }

    /// A registry written by an older Warren, whose specs kept explicit defaults, loads as a
    /// manifest now parses: the defaults are forgotten. Control: a value that is not the
    /// default stays.
    #[test]
    fn a_registry_with_explicit_defaults_loads_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = spec(RestartPolicy::No, 5);
        a.pids = Some(warren_spec::manifest::defaults::PIDS);
        a.seccomp = Some(warren_spec::manifest::defaults::SECCOMP.to_owned());
        a.mailbox_capacity = Some(7);
        let text = serde_json::to_vec(&serde_json::json!({
            "envs": { "a": Managed::new(a.clone()) }
        }))
        .unwrap();
        std::fs::write(Registry::path(dir.path()), text).unwrap();
        let r = Registry::load(dir.path()).unwrap();
        let got = &r.envs["a"].spec;
        assert_eq!((got.pids, got.seccomp.as_deref()), (None, None));
        assert_eq!(got.mailbox_capacity, Some(7));
    }

    #[test]
    fn volumes_become_v_flags() {
        let text = "[space.a]\nimage = \"/\"\ncommand = [\"/bin/true\"]\n\
                    volumes = [\"pg:/mnt\", \"/srv:/srv:ro\", \"q:/q:ro,nocopy\"]\n\
                    read_only = false\nwritable_root_size = \"8M\"\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let a = launcher_args("a", m.spaces.values().next().unwrap(), &Default::default());
        let flags: Vec<&str> = a
            .windows(2)
            .filter(|w| w[0] == "-v")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(flags, ["pg:/mnt", "/srv:/srv:ro", "q:/q:ro,nocopy"]);
        let at = a.iter().position(|x| x == "--writable-root").unwrap();
        assert_eq!(a[at + 1..at + 3], ["--writable-root-size", "8388608"]);
        // The default: a read-only root, no flag.
        let m = warren_spec::parse_manifest(
            Path::new("/m.toml"),
            "[space.a]\nimage = \"/\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let a = launcher_args("a", m.spaces.values().next().unwrap(), &Default::default());
        assert!(!a.iter().any(|x| x.starts_with("--writable-root")), "{a:?}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = (1..=12).map(backoff_ms).collect();
        assert_eq!(&got[..5], [100, 200, 400, 800, 1600]);
        assert_eq!(got[11], BACKOFF_MAX_MS);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_MAX_MS);
    }

    #[test]
    fn policies_decide_restarts() {
        let mut m = Managed::new(spec(RestartPolicy::No, 5));
        assert_eq!(after_exit(&mut m, 1, 5, 1000), AfterExit::Stay);
        assert_eq!(m.state, State::Exited);

        let mut m = Managed::new(spec(RestartPolicy::OnFailure, 5));
        assert_eq!(after_exit(&mut m, 0, 5, 1000), AfterExit::Stay);
        assert_eq!(after_exit(&mut m, 3, 5, 1000), AfterExit::RestartAt(1100));
        assert_eq!(m.state, State::Restarting);
        assert_eq!(m.last_exit, Some(3));

        let mut m = Managed::new(spec(RestartPolicy::Always, 5));
        assert_eq!(after_exit(&mut m, 0, 5, 0), AfterExit::RestartAt(100));
        assert_eq!(after_exit(&mut m, 0, 5, 0), AfterExit::RestartAt(200));
        assert_eq!(after_exit(&mut m, 0, 5, 0), AfterExit::RestartAt(400));
    }

    #[test]
    fn the_limit_gives_up_and_a_healthy_run_resets_it() {
        let mut m = Managed::new(spec(RestartPolicy::Always, 2));
        assert!(matches!(
            after_exit(&mut m, 1, 5, 0),
            AfterExit::RestartAt(_)
        ));
        assert!(matches!(
            after_exit(&mut m, 1, 5, 0),
            AfterExit::RestartAt(_)
        ));
        assert_eq!(after_exit(&mut m, 1, 5, 0), AfterExit::GiveUp);
        assert_eq!(m.state, State::Failed);
        assert_eq!(m.total_restarts, 2);

        let mut m = Managed::new(spec(RestartPolicy::Always, 2));
        after_exit(&mut m, 1, 5, 0);
        after_exit(&mut m, 1, 5, 0);
        // This run lasted long enough: the count starts again and the delay is short again.
        assert_eq!(
            after_exit(&mut m, 1, HEALTHY_RUN_MS, 50_000),
            AfterExit::RestartAt(50_100)
        );
        assert_eq!(m.restarts, 1);
    }

    #[test]
    fn launcher_args_carry_every_declared_field() {
        let text = "[space.web]\nimage = \"/srv/root\"\ncommand = [\"/bin/sh\", \"-c\", \"x\"]\nmemory = \"64M\"\npids = 16\ncpus = 0.5\nenv = { A = \"1\" }\nmay_send = [\"db\"]\nmay_discover = [\"log\"]\nmailbox_capacity = 8\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        let a = launcher_args("web", s, &Default::default()).join(" ");
        assert_eq!(
            a,
            "run --name web --init --rootfs /srv/root --memory 67108864 --pids 16 --cpus 0.5 -e A=1 \
             --may-send db --may-discover log --mailbox-capacity 8 -- /bin/sh -c x"
        );
    }

    #[test]
    fn launcher_args_carry_the_capabilities() {
        let text = "[space.web]\nimage = \"/srv/root\"\ncommand = [\"/bin/x\"]\ncapabilities = [\"setuid\", \"CHOWN\"]\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        assert_eq!(
            launcher_args("web", s, &Default::default()).join(" "),
            "run --name web --init --rootfs /srv/root --cap-add CAP_CHOWN --cap-add CAP_SETUID -- /bin/x"
        );
    }

    #[test]
    fn a_spawner_holds_children_and_a_linked_child_nests_under_it() {
        let text = "[template.req]\nimage = \"/r\"\ncommand = [\"/x\"]\nmax_instances = 2\n\n\
                    [space.front]\nimage = \"/r\"\ncommand = [\"/x\"]\nmay_spawn = [\"req\"]\n\n\
                    [space.plain]\nimage = \"/r\"\ncommand = [\"/x\"]\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let front = Managed::new(m.spaces.values().next().unwrap().clone());
        let placement = front.cgroup_placement();
        assert!(placement.holds_children && placement.parent.is_none());
        assert_eq!(
            launcher_args("front", &front.spec, &placement).join(" "),
            "run --name front --cgroup-children --init --rootfs /r -- /x"
        );
        let plain = Managed::new(m.spaces.values().nth(1).unwrap().clone());
        assert_eq!(plain.cgroup_placement(), Default::default());
        let mut child = Managed::new(plain.spec.clone());
        child.cgroup_parent = Some(placement.group("front"));
        assert_eq!(
            launcher_args("req-1", &child.spec, &child.cgroup_placement()).join(" "),
            "run --name req-1 --cgroup-parent front --init --rootfs /r -- /x"
        );
        // Kept across a daemon restart (managed.json), absent when unset.
        let json = serde_json::to_string(&child).unwrap();
        assert!(json.contains("\"cgroup_parent\":\"front\""), "{json}");
        assert!(
            !serde_json::to_string(&plain)
                .unwrap()
                .contains("cgroup_parent")
        );
    }

    #[test]
    fn launcher_args_carry_the_seccomp_profile() {
        for (value, arg) in [
            ("strict", "--seccomp strict"),
            (
                "profiles/web.json",
                "--seccomp /etc/warren/profiles/web.json",
            ),
        ] {
            let text = format!(
                "[space.web]\nimage = \"/srv/root\"\ncommand = [\"/bin/x\"]\nseccomp = \"{value}\"\n"
            );
            let m = warren_spec::parse_manifest(Path::new("/etc/warren/m.toml"), &text).unwrap();
            let s = &m.spaces.values().next().unwrap();
            assert_eq!(
                launcher_args("web", s, &Default::default()).join(" "),
                format!("run --name web --init --rootfs /srv/root {arg} -- /bin/x")
            );
        }
    }

    #[test]
    fn launcher_args_carry_add_hosts_and_dns() {
        let text = "[space.web]\nimage = \"/srv/root\"\ncommand = [\"/bin/x\"]\n\
                    add_hosts = [\"db:10.0.0.5\", \"v6:fd00::5\"]\ndns = [\"192.0.2.53\"]\n";
        let m = warren_spec::parse_manifest(Path::new("/etc/warren/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        assert_eq!(
            launcher_args("web", s, &Default::default()).join(" "),
            "run --name web --init --rootfs /srv/root --add-host db:10.0.0.5 --add-host \
             v6:fd00::5 --dns 192.0.2.53 -- /bin/x"
        );
    }

    #[test]
    fn init_false_runs_the_command_as_pid_1() {
        let text = "[space.app]\nimage = { name = \"busybox:1.36\" }\ninit = false\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        assert_eq!(
            launcher_args("app", s, &Default::default()).join(" "),
            "run --name app --image busybox:1.36 --"
        );
    }

    #[test]
    fn launcher_args_carry_the_paths_a_binary_image_adds() {
        let text = "[space.py]\nimage = { binary = \"/usr/bin/python3\", with = [\"/etc/ssl\", \"/srv/app\"] }\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        assert_eq!(
            launcher_args("py", s, &Default::default()).join(" "),
            "run --name py --init --binary /usr/bin/python3 --with /etc/ssl --with /srv/app -- \
             /usr/bin/python3"
        );
    }

    #[test]
    fn launcher_args_name_a_stored_image() {
        let text = "[space.app]\nimage = { name = \"busybox:1.36\" }\n";
        let m = warren_spec::parse_manifest(Path::new("/m.toml"), text).unwrap();
        let s = &m.spaces.values().next().unwrap();
        assert_eq!(
            launcher_args("app", s, &Default::default()).join(" "),
            "run --name app --init --image busybox:1.36 --"
        );
    }
}
