//! Virtual network interfaces (issue 7): a networked environment is reachable on its published
//! port and nowhere else, environments cannot reach each other unless declared, bad input is
//! refused, and nothing is left behind (links, addresses, filter elements, leases, cgroups),
//! even after 100 start/stop cycles, faults at every launch step, or a killed launcher.
//!
//! Traffic only ever goes to 127.0.0.1 or to addresses inside the namespaces these tests
//! create. Each test uses its own /24 under 10.88.0.0/16, so checks never see another test's
//! environments.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every launch step, as `WARREN_FAULT_INJECT` names them (the net steps included).
const STEPS: [&str; 37] = LAUNCH_STEPS;

fn root() -> String {
    busybox_root().to_str().unwrap().to_owned()
}

/// A host port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A shell line that serves `body` over HTTP on `port` inside the environment.
fn serve(port: u16, body: &str) -> String {
    format!(
        "mkdir -p /tmp/w{port} && echo {body} > /tmp/w{port}/index.html && httpd -p {port} -h /tmp/w{port}"
    )
}

/// GET / on `addr` from the host; the body, or the error.
fn http_get(addr: &str) -> Result<String, String> {
    let sa: SocketAddr = addr.parse().unwrap();
    let mut s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// `http_get`, retried while the server inside may still be starting.
fn http_get_eventually(addr: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http_get(addr);
        if r.is_ok() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The elements of Warren's table, as text.
fn elements() -> String {
    let o = Command::new("nft")
        .args(["list", "table", "inet", "warren"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `text` holds `word` as a whole address or number.
fn mentions(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|t| t == word)
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The host-side traces of an environment named `name` with address `addr` (and host end
/// `ifname`, when known): each one found is a leak.
fn traces(name: &str, addr: &str, ifname: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    // The link goes with the namespace, and the kernel frees namespaces asynchronously: allow
    // it a moment (the launcher itself waits for it, so this is normally immediate).
    if let Some(i) = ifname {
        let deadline = Instant::now() + Duration::from_secs(3);
        while link_exists(i) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if link_exists(i) {
            found.push(format!("link {i}"));
        }
    }
    // A route to the address on a host end: the link of an ended environment keeps its route
    // until the kernel frees the namespace, so this too is given a moment.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let routed = routes_to(addr);
        if routed.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            found.extend(routed);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if mentions(&elements(), addr) {
        found.push(format!("filter elements for {addr}"));
    }
    if std::path::Path::new("/run/warren/net/leases")
        .join(addr)
        .exists()
    {
        found.push(format!("lease file for {addr}"));
    }
    if !cgroup_dirs(name).is_empty() {
        found.push(format!("cgroup {name}"));
    }
    found
}

/// Host ends (`wrn*`) with a route to `addr`.
fn routes_to(addr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let links = std::fs::read_dir("/sys/class/net").unwrap();
    for l in links.flatten() {
        let n = l.file_name().to_string_lossy().into_owned();
        if !n.starts_with("wrn") {
            continue;
        }
        let o = Command::new("ip")
            .args(["-4", "route", "show", "dev", &n])
            .output()
            .unwrap();
        if mentions(&String::from_utf8_lossy(&o.stdout), addr) {
            found.push(format!("route to {addr} on {n}"));
        }
    }
    found
}

fn run_net(name: &str, args: &[&str], script: &str) -> std::process::Output {
    let mut c = warren();
    c.args(["run", "--name", name, "--rootfs", &root()])
        .args(args)
        .args(["--", "/bin/sh", "-c", script]);
    c.output().unwrap()
}

#[test]
fn a_published_port_reaches_the_environment_and_nothing_else_does() {
    let name = unique("pub");
    let (port, other) = (free_port(), free_port());
    let publish = format!("127.0.0.1:{port}:80");
    let script = format!(
        "{} && {} && exec sleep 30",
        serve(80, "published"),
        serve(81, "hidden")
    );
    let env = Background::start(
        &name,
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.101.2/24",
            "--publish",
            &publish,
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    // Published: reachable from the host.
    let body = http_get_eventually(&format!("127.0.0.1:{port}")).unwrap();
    assert!(body.contains("published"), "{body}");
    // Positive control: port 81 does serve, inside the environment.
    let o = Command::new("nsenter")
        .args([
            "-t",
            &env.pid().to_string(),
            "-n",
            "-U",
            "--preserve-credentials",
        ])
        .args([
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:81/",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hidden"),
        "the control cannot reach port 81 inside: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Unpublished: not from the host, neither through another host port nor directly.
    // (A connect to a free port of the ephemeral range can meet itself — TCP self-connect — and
    // read back its own request: what matters is that no server of the environment answers.)
    if let Ok(reply) = http_get(&format!("127.0.0.1:{other}")) {
        assert!(
            !reply.contains("hidden") && !reply.contains("published"),
            "the environment answered on host port {other}: {reply}"
        );
    }
    assert!(http_get("10.88.101.2:81").is_err(), "port 81 reached");
    assert!(
        http_get("10.88.101.2:80").is_err(),
        "port 80 reached without the published port"
    );
    // inspect shows the interface, the address, the published port and the rules.
    let v = env.inspect().unwrap();
    let net = &v["applied"]["net"];
    assert_eq!(net["interface"], "eth0");
    assert_eq!(net["address"], "10.88.101.2/24");
    assert_eq!(net["published"][0], format!("127.0.0.1:{port}:80/tcp"));
    let ifname = net["host_interface"].as_str().unwrap().to_owned();
    assert!(link_exists(&ifname));
    let rules = net["rules"].to_string();
    assert!(
        rules.contains("publish_tcp") && rules.contains(&port.to_string()),
        "{rules}"
    );
    assert!(mentions(&elements(), "10.88.101.2"));
    // ps --json lists the address and the published ports.
    let o = warren().args(["ps", "--json"]).output().unwrap();
    let line = stdout(&o)
        .lines()
        .find(|l| l.contains(&format!("\"name\":\"{name}\"")))
        .map(str::to_owned)
        .unwrap_or_default();
    let row: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(row["address"], "10.88.101.2/24");
    assert_eq!(row["published"][0], format!("127.0.0.1:{port}:80/tcp"));
    env.stop();
    assert_eq!(
        traces(&name, "10.88.101.2", Some(&ifname)),
        Vec::<String>::new()
    );
    // The port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn environments_cannot_reach_each_other_unless_allowed() {
    let server = Background::start(
        &unique("srv"),
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.102.3/24",
            "--",
            "/bin/sh",
            "-c",
            &format!("{} && exec sleep 30", serve(80, "server")),
        ],
    );
    // busybox wget crashes in a static root without name services; nc speaks HTTP well enough.
    let get = |addr: &str| format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {addr}");
    let fetch = format!(
        "for i in 1 2 3 4 5 6 7 8 9 10; do {} | grep -q server && exit 0; sleep 0.2; done; exit 1",
        get("10.88.102.3 80")
    );
    // Allowed: the positive control, proving the server is up and reachable when declared.
    let o = run_net(
        &unique("ok"),
        &["--net", "10.88.102.4/24", "--net-allow", "10.88.102.3"],
        &fetch,
    );
    assert_code(&o, 0);
    // Not allowed: refused.
    let o = run_net(
        &unique("no"),
        &["--net", "10.88.102.5/24"],
        &format!("{} | grep server", get("10.88.102.3 80")),
    );
    assert_ne!(o.status.code(), Some(0), "reached: {}", stdout(&o));
    assert!(stderr(&o).contains("No route to host"), "{}", stderr(&o));
    // Nor may the server open connections back, nor reach the host through its gateway.
    let o = run_net(
        &unique("no2"),
        &["--net", "10.88.102.6/24"],
        &format!("{} || {}", get("10.88.102.1 22"), get("10.88.102.4 80")),
    );
    assert_ne!(o.status.code(), Some(0));
    // An environment without a network has only lo.
    let o = run_net(
        &unique("none"),
        &[],
        "ls /sys/class/net 2>/dev/null; cat /proc/net/dev",
    );
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("eth0"), "{}", stdout(&o));
    drop(server);
}

#[test]
fn a_hundred_start_stop_cycles_leave_nothing_behind() {
    let started = Instant::now();
    let mut ifnames = std::collections::BTreeSet::new();
    for i in 0..100 {
        let name = unique("cyc");
        let port = free_port();
        let addr = format!("10.88.103.{}", 2 + i % 4);
        let mut c = warren();
        c.args(["run", "--json", "--name", &name, "--rootfs", &root()])
            .args([
                "--net",
                &format!("{addr}/24"),
                "--net-allow",
                "10.88.103.200",
            ])
            .args(["-p", &format!("{port}:80"), "--", "/bin/true"]);
        let o = c.output().unwrap();
        assert_code(&o, 0);
        let last = stdout(&o).lines().last().unwrap_or("").to_owned();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap();
        let ifname = v["applied"]["net"]["host_interface"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            traces(&name, &addr, Some(&ifname)),
            Vec::<String>::new(),
            "cycle {i}"
        );
        ifnames.insert(ifname);
    }
    for i in &ifnames {
        assert!(!link_exists(i), "{i} is back");
    }
    assert!(!mentions(&elements(), "10.88.103.200"));
    eprintln!("100 networked start/stop cycles in {:?}", started.elapsed());
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let check = |args: &[&str], fragment: &str, addr: &str| {
        let name = unique("bad");
        let o = run_net(&name, args, "true");
        assert_code(&o, 125);
        let err = stderr(&o);
        assert!(
            err.starts_with("warren: error: ") && err.contains(fragment),
            "{fragment}: {err}"
        );
        assert_eq!(
            traces(&name, addr, None),
            Vec::<String>::new(),
            "{fragment}"
        );
    };
    check(
        &["--net", "10.88.104.1/24"],
        "is the prefix's gateway",
        "10.88.104.1",
    );
    check(
        &["--net", "10.88.104.300/24"],
        "not an IPv4 address",
        "10.88.104.300",
    );
    check(
        &["--net", "bridge"],
        "--net takes none, auto or ADDRESS/PREFIX",
        "x",
    );
    check(
        &["--net", "10.88.104.2/24", "-p", "80"],
        "invalid --publish",
        "10.88.104.2",
    );
    check(&["-p", "8080:80"], "need a network", "x");
    check(
        &["--net", "10.88.104.2/24", "--net-allow", "127.0.0.1"],
        "loopback",
        "10.88.104.2",
    );

    // Egress needs the host to forward IPv4, which Warren never turns on by itself.
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .unwrap()
        .trim()
        == "0"
    {
        check(
            &["--net", "10.88.104.2/24", "--egress"],
            "egress needs the host to forward IPv4",
            "10.88.104.2",
        );
    } else {
        let name = unique("egress");
        let o = run_net(
            &name,
            &["--net", "10.88.104.2/24", "--egress", "--json"],
            "true",
        );
        assert_code(&o, 0);
        assert!(
            stdout(&o).contains("egress { 10.88.104.2 }"),
            "{}",
            stdout(&o)
        );
        assert_eq!(traces(&name, "10.88.104.2", None), Vec::<String>::new());
    }

    // A prefix the host is on: the gateway Warren would put on the host end could shadow a
    // real neighbour. The test makes such a host network on a veth pair of its own.
    let ifname = format!("wnt{}", std::process::id() % 100_000);
    let ip = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    ip(&[
        "link",
        "add",
        &ifname,
        "type",
        "veth",
        "peer",
        "name",
        &format!("{ifname}p"),
    ]);
    ip(&["addr", "add", "172.31.250.1/24", "dev", &ifname]);
    check(
        &["--net", "172.31.250.5/24"],
        &format!("address 172.31.250.5/24 overlaps the host's network 172.31.250.1/24 on {ifname}"),
        "172.31.250.5",
    );
    ip(&["link", "del", &ifname]);
    // Control: the same address is accepted once the host is off that network.
    let o = run_net(&unique("ok"), &["--net", "172.31.250.5/24"], "true");
    assert_code(&o, 0);

    // Port in use: a host program holds it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    check(
        &["--net", "10.88.104.2/24", "-p", &format!("{port}:80")],
        &format!("published port 127.0.0.1:{port}:80/tcp: host port in use"),
        "10.88.104.2",
    );
    drop(held);

    // Address in use, and a port another environment publishes.
    let port = free_port().to_string();
    let first = Background::start(
        &unique("first"),
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.104.3/24",
            "-p",
            &format!("{port}:80"),
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    check(
        &["--net", "10.88.104.3/24"],
        "address 10.88.104.3 is in use (held by environment",
        "10.88.104.99",
    );
    check(
        &["--net", "10.88.104.4/24", "-p", &format!("{port}:80")],
        "host port in use",
        "10.88.104.4",
    );
    // The first environment is untouched.
    assert!(mentions(&elements(), "10.88.104.3"));
    drop(first);
}

#[test]
fn faults_at_every_launch_step_leave_nothing_behind() {
    for (i, step) in STEPS.iter().enumerate() {
        let name = unique("fault");
        let addr = format!("10.88.105.{}", 2 + i % 8);
        let port = free_port();
        let mut c = warren();
        c.env("WARREN_FAULT_INJECT", step)
            .args(["run", "--name", &name, "--rootfs", &root()])
            .args(["--net", &format!("{addr}/24"), "-p", &format!("{port}:80")])
            .args(["--", "/bin/true"]);
        let o = c.output().unwrap();
        assert_code(&o, 125);
        assert!(stderr(&o).contains(step), "{step}: {}", stderr(&o));
        assert_eq!(
            traces(&name, &addr, None),
            Vec::<String>::new(),
            "fault at {step}"
        );
        std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("fault at {step}: port {port} still taken: {e}"));
    }
}

#[test]
fn a_killed_launcher_is_swept_before_its_address_is_reused() {
    let name = unique("crash");
    let port = free_port();
    let env = Background::start(
        &name,
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.106.2/24",
            "-p",
            &format!("{port}:80"),
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    let ifname = env.inspect().unwrap()["applied"]["net"]["host_interface"]
        .as_str()
        .unwrap()
        .to_owned();
    env.crash();
    // The workload died with its launcher (parent-death signal), and the link with its
    // namespace; the filter elements stay until someone sweeps them.
    let deadline = Instant::now() + Duration::from_secs(3);
    while link_exists(&ifname) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!link_exists(&ifname), "the link outlived its namespace");
    assert!(
        mentions(&elements(), "10.88.106.2"),
        "control: the crash left elements"
    );
    // Another environment publishing the same port, at another address: its elements collide
    // with the stale publish element, so it sweeps and succeeds.
    let other = unique("other");
    let o = run_net(
        &other,
        &["--net", "10.88.106.3/24", "-p", &format!("{port}:80")],
        "true",
    );
    assert_code(&o, 0);
    assert!(!mentions(&elements(), "10.88.106.2"), "{}", elements());
    assert_eq!(traces(&other, "10.88.106.3", None), Vec::<String>::new());
    // A second crash; this time the next environment to take the same address sweeps first.
    let env = Background::start(
        &unique("crash"),
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.106.2/24",
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    env.crash();
    assert!(
        mentions(&elements(), "10.88.106.2"),
        "control: the crash left elements"
    );
    // (The crashed launchers' cgroups are swept by a later launch once they are old enough;
    // run_limits.rs covers that.)
    let next = unique("next");
    let o = run_net(&next, &["--net", "10.88.106.2/24"], "true");
    assert_code(&o, 0);
    assert_eq!(traces(&next, "10.88.106.2", None), Vec::<String>::new());
    // And the published port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

/// A kernel of this test's own, on a state directory of its own; killed on drop.
struct Kernel {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Kernel {
    fn start() -> Kernel {
        let dir = std::path::PathBuf::from(format!("/run/warren-net-{}", std::process::id()));
        Kernel::start_on(dir)
    }

    /// Stop this kernel (its environments keep running under their launchers) and start
    /// another on the same state directory, which re-adopts them.
    fn restart(mut self) -> Kernel {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        std::mem::forget(self);
        let _ = std::fs::remove_file(dir.join("kernel.sock"));
        Kernel::start_on(dir)
    }

    fn start_on(dir: std::path::PathBuf) -> Kernel {
        let child = warren()
            .env("WARREN_STATE_DIR", &dir)
            .arg("daemon")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let k = Kernel { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !k.dir.join("kernel.sock").exists() {
            assert!(Instant::now() < deadline, "the kernel did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    fn warren(&self, args: &[&str]) -> std::process::Output {
        warren()
            .env("WARREN_STATE_DIR", &self.dir)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_manifest_declares_the_network_and_apply_carries_it_out_across_a_kernel_restart() {
    let kernel = Kernel::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spaces.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"
[space.netweb]
image = "{root}"
command = ["/bin/sh", "-c", "{serve} && exec sleep 60"]
net = {{ address = "10.88.107.2/24", publish = ["127.0.0.1:{port}:80"] }}
"#,
            root = root(),
            serve = serve(80, "managed")
        ),
    )
    .unwrap();
    let o = kernel.warren(&["apply", manifest.to_str().unwrap()]);
    assert_code(&o, 0);
    let body = http_get_eventually(&format!("127.0.0.1:{port}")).unwrap();
    assert!(body.contains("managed"), "{body}");
    // A kernel restart leaves the environment and its network alone.
    let kernel = kernel.restart();
    let body = http_get_eventually(&format!("127.0.0.1:{port}")).unwrap();
    assert!(body.contains("managed"), "after a kernel restart: {body}");
    let o = kernel.warren(&["inspect", "netweb"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["applied"]["net"]["address"], "10.88.107.2/24");
    assert_eq!(v["spec"]["net"]["veth"]["address"], "10.88.107.2/24");
    let ifname = v["applied"]["net"]["host_interface"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_code(&kernel.warren(&["stop", "-t", "1", "netweb"]), 0);
    assert_code(&kernel.warren(&["rm", "netweb"]), 0);
    assert_eq!(
        traces("netweb", "10.88.107.2", Some(&ifname)),
        Vec::<String>::new()
    );
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
}

/// An environment's address may not be another's gateway (an address of the host, on its host
/// end), nor may its own gateway be another environment's address. Positive control: an
/// address next to them in the same prefix is granted while the first environment runs.
#[test]
fn gateways_and_addresses_of_running_environments_do_not_cross() {
    let first = Background::start(
        &unique("gw1"),
        &[
            "--rootfs",
            &root(),
            "--net",
            "10.88.106.5/24",
            "--",
            "/bin/sleep",
            "30",
        ],
    );
    // Wait until its host end carries the gateway.
    let t = std::time::Instant::now();
    while routes_to("10.88.106.5").is_empty() && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Its gateway, 10.88.106.1, as another environment's address.
    let o = run_net(&unique("gw2"), &["--net", "10.88.106.1/16"], "true");
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("10.88.106.1 is in use (the gateway of another environment"),
        "{}",
        stderr(&o)
    );
    // Its address, 10.88.106.5, as another environment's gateway (10.88.106.6/30's).
    let o = run_net(&unique("gw3"), &["--net", "10.88.106.6/30"], "true");
    assert_code(&o, 125);
    assert!(
        stderr(&o).contains("10.88.106.5 is in use (it would be the gateway of 10.88.106.6/30"),
        "{}",
        stderr(&o)
    );
    let o = run_net(&unique("gw4"), &["--net", "10.88.106.9/24"], "true");
    assert_code(&o, 0);
    drop(first);
}
