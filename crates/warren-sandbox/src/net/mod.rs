//! An environment's virtual network interface: a veth pair whose inside end (`eth0`) is created
//! directly in the environment's network namespace, whose host end (`wrn<slot>`) is routed by
//! the host, and the packet-filter elements that say what may reach it and what it may reach.
//! `docs/network.md` describes the whole design.
//!
//! The parent's steps, in launch order:
//! * [`Prepared::claim`] (`net-claim`): the address lease and the published ports' reservations;
//! * [`Prepared::install_rules`] (`net-rules`): the filter elements, before any link exists;
//! * [`Prepared::attach`] (`net-link`): the veth pair, the host end's address and route.
//!
//! The child's step `net-config` ([`configure_inside`]) gives `eth0` its address and routes.
//!
//! Teardown: dropping [`Prepared`] removes the filter elements, waits until the kernel has
//! removed the host end (the veth pair dies with the namespace, which dies with the
//! environment's last process), and only then releases the address and the ports. A launcher
//! killed outright leaves its elements and lease file behind; [`sweep`] removes the elements of
//! every address whose lease nobody holds, and runs before an address is handed out again.

mod nfnl;
mod nft;
mod rtnl;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use warren_spec::{Cidr, Proto, Publish, VethSpec};

use crate::state::{Held, StateDir, try_lock};

pub use nft::RULESET;

/// The inside end's name.
pub const INSIDE_IFNAME: &str = "eth0";
/// The pool addresses come from when none is declared: `10.88.0.0/16`, gateway `10.88.0.1`.
pub const POOL: Cidr = Cidr {
    addr: Ipv4Addr::new(10, 88, 0, 2),
    prefix: 16,
};
/// How long teardown waits for the kernel to remove a dead environment's host end.
const LINK_GONE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an environment's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Another environment holds the address, or the host has it.
    #[error("address {address} is in use ({by})")]
    AddressInUse {
        /// The address.
        address: Ipv4Addr,
        /// By whom.
        by: String,
    },
    /// The environment's prefix overlaps a network the host is on.
    #[error(
        "address {cidr} overlaps the host's network {host}: choose a prefix the host does not use"
    )]
    HostNetwork {
        /// The environment's address and prefix.
        cidr: Cidr,
        /// The host's network and its interface.
        host: String,
    },
    /// Every pool address is taken.
    #[error("no free address left in the pool {pool}")]
    PoolExhausted {
        /// The pool.
        pool: Cidr,
    },
    /// A published host port is taken.
    #[error("published port {publish}: host port in use")]
    PortInUse {
        /// What was to be published.
        publish: Publish,
    },
    /// A published host port could not be reserved.
    #[error("published port {publish}: cannot reserve the host port")]
    Port {
        /// What was to be published.
        publish: Publish,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Egress was declared but the host does not forward.
    #[error(
        "egress needs the host to forward IPv4 (net.ipv4.ip_forward is 0); Warren does not change that host-wide setting"
    )]
    NoForwarding,
    /// The lease bookkeeping failed.
    #[error("address lease")]
    Lease(#[from] crate::state::StateError),
    /// The `nft` program failed or is missing.
    #[error("nftables: {what}")]
    Nft {
        /// What was being done, and what nft said.
        what: String,
    },
    /// A netlink request failed.
    #[error("{what}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn netlink(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

/// What an environment's network is, as recorded for `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct NetInfo {
    /// The interface inside.
    pub interface: &'static str,
    /// The host end.
    pub host_interface: String,
    /// The address inside, with its prefix.
    pub address: String,
    /// The gateway (the host end's address).
    pub gateway: Ipv4Addr,
    /// Published ports, `HOST_ADDR:HOST_PORT:ENV_PORT/PROTO`.
    pub published: Vec<String>,
    /// Peers it may open connections to.
    pub allow: Vec<Ipv4Addr>,
    /// Whether it may leave the host.
    pub egress: bool,
    /// The filter elements installed for it in `inet warren`, in nft syntax.
    pub rules: Vec<String>,
    /// What setting it up cost, in microseconds, step by step (for `bench/net.sh`).
    pub setup_us: NetTimings,
}

/// The cost of each network step of one launch, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NetTimings {
    /// `net-claim`: lease, port reservations.
    pub claim: u64,
    /// `net-rules`: the filter elements (one `nft` run).
    pub rules: u64,
    /// `net-link`: the veth pair and the host end's address and route.
    pub link: u64,
    /// `net-config`: the inside end's address and routes (measured in the child).
    pub config: u64,
}

/// What the child needs to configure `eth0`.
#[derive(Debug, Clone, Copy)]
pub struct Inside {
    /// The address and prefix.
    pub cidr: Cidr,
    /// The gateway.
    pub gateway: Ipv4Addr,
}

/// An environment's network, from its claims to its teardown. Dropping it releases everything.
#[derive(Debug)]
pub struct Prepared {
    host_ifname: String,
    cidr: Cidr,
    elements: nft::Elements,
    rules_installed: bool,
    // Held, never read: the bound sockets keep the published host ports reserved.
    _ports: Vec<OwnedFd>,
    info: NetInfo,
    lease: Held,
}

/// The lease directory: host-wide, next to the uid registry.
fn lease_dir(state: &StateDir) -> PathBuf {
    state.net_registry().join("leases")
}

fn lease_path(dir: &Path, a: Ipv4Addr) -> PathBuf {
    dir.join(a.to_string())
}

/// Claim `a`: `Ok(None)` if another environment holds it. A lease file left by a killed
/// launcher is reclaimed, and its filter elements are swept first.
fn claim_address(dir: &Path, a: Ipv4Addr) -> Result<Option<Held>, NetError> {
    let path = lease_path(dir, a);
    let stale = path.exists();
    let Some(held) = try_lock(&path)? else {
        return Ok(None);
    };
    if stale {
        nft::sweep_owner(a)?;
    }
    Ok(Some(held))
}

impl Prepared {
    /// `net-claim`: take the address (declared or from the pool) and reserve the published
    /// host ports. `slot` is the environment's uid slot, which names its host end.
    pub fn claim(spec: &VethSpec, slot: u32, state: &StateDir) -> Result<Prepared, NetError> {
        nft::check_available()?;
        if spec.egress && !host_forwards() {
            return Err(NetError::NoForwarding);
        }
        let dir = lease_dir(state);
        crate::state::ensure_dir(&dir)?;
        let host_addrs = rtnl::Rtnl::open()
            .and_then(|mut r| r.addresses())
            .map_err(netlink("list the host's addresses"))?;
        // The host's own networks (loopback and Warren's host ends aside): an environment's
        // prefix must not overlap one, or the gateway address Warren puts on the host end could
        // shadow a real neighbour of the host (its router, say).
        let host_nets: Vec<(Cidr, &str)> = host_addrs
            .iter()
            .filter(|(a, _, l)| !a.is_loopback() && !l.starts_with("wrn"))
            .map(|(a, p, l)| {
                (
                    Cidr {
                        addr: *a,
                        prefix: *p,
                    },
                    l.as_str(),
                )
            })
            .collect();
        let clash = |c: &Cidr| {
            host_nets
                .iter()
                .find(|(h, _)| overlap(c, h))
                .map(|(h, l)| format!("{h} on {l}"))
        };
        // The gateways of running environments: addresses on Warren's host ends. None may be
        // an environment's address (it is local to the host: the environment would be
        // unreachable and send with a host address as its source).
        let gateway_on = |a: Ipv4Addr| {
            host_addrs
                .iter()
                .find(|(h, _, l)| *h == a && l.starts_with("wrn"))
                .map(|(_, _, l)| l.clone())
        };
        let (cidr, lease) = match spec.address {
            Some(c) => {
                if let Some(h) = clash(&c) {
                    return Err(NetError::HostNetwork { cidr: c, host: h });
                }
                if let Some(l) = gateway_on(c.addr) {
                    return Err(NetError::AddressInUse {
                        address: c.addr,
                        by: format!("the gateway of another environment, on {l}"),
                    });
                }
                // Nor may its own gateway be another environment's address.
                if claim_address(&dir, c.gateway())?.is_none() {
                    return Err(NetError::AddressInUse {
                        address: c.gateway(),
                        by: format!(
                            "it would be the gateway of {c}, and another environment holds it"
                        ),
                    });
                }
                match claim_address(&dir, c.addr)? {
                    Some(l) => (c, l),
                    None => {
                        let by = std::fs::read_to_string(lease_path(&dir, c.addr))
                            .ok()
                            .filter(|s| !s.is_empty())
                            .map(|s| format!("held by environment {s:?}"))
                            .unwrap_or_else(|| "held by another environment".into());
                        return Err(NetError::AddressInUse {
                            address: c.addr,
                            by,
                        });
                    }
                }
            }
            None => {
                if let Some(h) = clash(&POOL) {
                    return Err(NetError::HostNetwork {
                        cidr: POOL,
                        host: h,
                    });
                }
                if claim_address(&dir, POOL.gateway())?.is_none() {
                    return Err(NetError::AddressInUse {
                        address: POOL.gateway(),
                        by: format!(
                            "it is the gateway of the pool {POOL}, and another environment \
                             holds it"
                        ),
                    });
                }
                let base = u32::from(POOL.gateway());
                let size = 1u32 << (32 - POOL.prefix);
                let mut found = None;
                for i in 1..size - 2 {
                    let a = Ipv4Addr::from(base + i);
                    if gateway_on(a).is_some() {
                        continue;
                    }
                    if let Some(l) = claim_address(&dir, a)? {
                        found = Some((
                            Cidr {
                                addr: a,
                                prefix: POOL.prefix,
                            },
                            l,
                        ));
                        break;
                    }
                }
                found.ok_or(NetError::PoolExhausted { pool: POOL })?
            }
        };
        let mut ports = Vec::new();
        for p in &spec.publish {
            ports.push(reserve_port(p)?);
        }
        let host_ifname = format!("wrn{slot}");
        let elements = nft::Elements {
            host_ifname: host_ifname.clone(),
            addr: cidr.addr,
            allow: spec.allow.clone(),
            egress: spec.egress,
            publish: spec.publish.clone(),
        };
        let info = NetInfo {
            interface: INSIDE_IFNAME,
            host_interface: host_ifname.clone(),
            address: cidr.to_string(),
            gateway: cidr.gateway(),
            published: spec.publish.iter().map(|p| p.to_string()).collect(),
            allow: spec.allow.clone(),
            egress: spec.egress,
            rules: elements.lines(),
            setup_us: NetTimings::default(),
        };
        Ok(Prepared {
            host_ifname,
            cidr,
            elements,
            rules_installed: false,
            _ports: ports,
            info,
            lease,
        })
    }

    /// Record who holds the lease (shown in an "address in use" error).
    pub fn label(&mut self, name: &str) {
        let _ = self.lease.write_record(name.as_bytes());
    }

    /// `net-rules`: add the environment's elements to Warren's table (creating the table on a
    /// host's first networked launch). Runs before the link exists.
    pub fn install_rules(&mut self, state: &StateDir) -> Result<(), NetError> {
        self.rules_installed = true;
        nft::add(&self.elements, state)
    }

    /// `net-link`: create the veth pair with its peer inside the namespace of `pid`, give the
    /// host end the gateway address and a route to the environment, and let it forward.
    pub fn attach(&mut self, pid: i32) -> Result<(), NetError> {
        let ns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(netlink("open the environment's network namespace"))?
            .into();
        let mut nl = rtnl::Rtnl::open().map_err(netlink("open an rtnetlink socket"))?;
        let what = format!(
            "create the veth pair {} / {INSIDE_IFNAME}",
            self.host_ifname
        );
        match nl.create_veth(&self.host_ifname, INSIDE_IFNAME, ns.as_fd()) {
            // The previous holder of this uid slot ended moments ago and the kernel has not
            // freed its namespace yet: wait for its host end to go, then try once more.
            Err(e) if e.raw_os_error() == Some(17) => {
                wait_link_gone(&self.host_ifname);
                nl.create_veth(&self.host_ifname, INSIDE_IFNAME, ns.as_fd())
                    .map_err(netlink(what))?;
            }
            r => r.map_err(netlink(what))?,
        }
        drop(ns);
        let index = nl
            .link_index(&self.host_ifname)
            .map_err(netlink("find the host end"))?
            .ok_or_else(|| netlink("find the host end")(std::io::Error::from_raw_os_error(19)))?;
        // Per-interface switches only: forward what enters from the environment (the filter
        // decides what may), and accept 127.0.0.0/8 for published ports on the loopback.
        for (key, value) in [("forwarding", "1"), ("route_localnet", "1")] {
            let path = format!("/proc/sys/net/ipv4/conf/{}/{key}", self.host_ifname);
            std::fs::write(&path, value).map_err(netlink(format!("write {path}")))?;
        }
        nl.add_address(index, self.cidr.gateway(), 32, true)
            .map_err(netlink("give the host end its address"))?;
        // Replace, not add: the previous holder of this address may have ended moments ago,
        // its host end (and route) not yet freed with its namespace.
        nl.add_route(self.cidr.addr, 32, None, index, true)
            .map_err(netlink("route the environment's address to the host end"))?;
        Ok(())
    }

    /// What the child needs.
    pub fn inside(&self) -> Inside {
        Inside {
            cidr: self.cidr,
            gateway: self.cidr.gateway(),
        }
    }

    /// The record for `inspect`.
    pub fn info(&self) -> NetInfo {
        self.info.clone()
    }

    /// Record what a step cost.
    pub fn timings(&mut self) -> &mut NetTimings {
        &mut self.info.setup_us
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Grants go before the address and ports are released (the fields drop after this), so
        // nothing is handed out again while a grant of this environment remains. The link is
        // not waited for: it goes with the namespace, which the kernel frees asynchronously
        // (a few milliseconds); the next holder of the slot or address copes with a link that
        // is still going (`attach`).
        if self.rules_installed {
            let _ = nft::remove(&self.elements);
        }
    }
}

/// Wait until the kernel has removed the host end `name` (it goes with the namespace).
fn wait_link_gone(name: &str) {
    let Ok(mut nl) = rtnl::Rtnl::open() else {
        return;
    };
    let deadline = Instant::now() + LINK_GONE_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    while let Ok(Some(_)) = nl.link_index(name) {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Whether two prefixes share an address.
fn overlap(a: &Cidr, b: &Cidr) -> bool {
    let p = a.prefix.min(b.prefix);
    let mask = if p == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(p))
    };
    u32::from(a.addr) & mask == u32::from(b.addr) & mask
}

fn host_forwards() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|s| s.trim() == "1")
}

/// Bind a socket on the published host address and port, so no other program (and no other
/// environment) can take it while this environment publishes it.
///
/// A TCP holder sets `SO_REUSEADDR` before `bind`, so connections of an earlier server on that
/// port still in `TIME_WAIT` do not refuse the port (what every server does), and then listens
/// with a backlog of 0: Linux lets two bound but non-listening `SO_REUSEADDR` sockets share a
/// port, never a listening one, so the listen keeps the reservation exclusive. The holder
/// never accepts; connections to the published port are translated to the environment by the
/// filter (`nat_output`, `nat_prerouting`) before any socket on the host sees them. A UDP
/// holder is only bound (`SO_REUSEADDR` would let any other UDP socket share it).
fn reserve_port(p: &Publish) -> Result<OwnedFd, NetError> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let port_err = |e: rustix::io::Errno| match e {
        rustix::io::Errno::ADDRINUSE => NetError::PortInUse { publish: *p },
        e => NetError::Port {
            publish: *p,
            source: e.into(),
        },
    };
    let ty = match p.proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let fd = rustix::net::socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)
        .map_err(port_err)?;
    if p.proto == Proto::Tcp {
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true).map_err(port_err)?;
    }
    rustix::net::bind(&fd, &SocketAddrV4::new(p.host_addr, p.host_port)).map_err(port_err)?;
    if p.proto == Proto::Tcp {
        rustix::net::listen(&fd, 0).map_err(port_err)?;
    }
    Ok(fd)
}

/// `net-config`, in the child: configure `eth0` inside the environment's namespace: its
/// address without a prefix route, a route to the gateway on the link, and the default route
/// through it. Every destination, other environments included, is therefore reached through
/// the host, where the filter decides.
pub fn configure_inside(inside: &Inside) -> std::io::Result<()> {
    let mut nl = rtnl::Rtnl::open()?;
    let index = nl
        .link_index(INSIDE_IFNAME)?
        .ok_or_else(|| std::io::Error::from_raw_os_error(19))?;
    nl.set_up(index)?;
    nl.add_address(index, inside.cidr.addr, inside.cidr.prefix, true)?;
    nl.add_route(inside.gateway, 32, None, index, false)?;
    nl.add_route(Ipv4Addr::UNSPECIFIED, 0, Some(inside.gateway), index, false)?;
    // Low ports: set for every environment at the loopback step (child.rs).
    Ok(())
}

/// Remove the filter elements of every environment whose address lease nobody holds (their
/// launcher was killed). Runs from `warren daemon` at start and whenever an address is reused.
pub fn sweep(state: &StateDir) -> Result<usize, NetError> {
    if nft::check_available().is_err() {
        return Ok(0);
    }
    let dir = lease_dir(state);
    let mut swept = 0;
    for owner in nft::owners()? {
        let path = lease_path(&dir, owner);
        if let Some(held) = try_lock(&path)? {
            nft::sweep_owner(owner)?;
            drop(held);
            swept += 1;
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_the_shorter_one_holds_the_other() {
        let c = |s: &str| {
            let (a, p) = s.split_once('/').unwrap();
            Cidr {
                addr: a.parse().unwrap(),
                prefix: p.parse().unwrap(),
            }
        };
        assert!(overlap(&c("10.88.0.2/16"), &c("10.88.5.1/24")));
        assert!(overlap(&c("10.88.5.1/24"), &c("10.88.0.2/16")));
        assert!(overlap(&c("192.0.2.50/24"), &c("192.0.2.2/24")));
        assert!(!overlap(&c("10.88.0.2/24"), &c("10.88.1.2/24")));
        assert!(!overlap(&c("10.88.0.2/16"), &c("192.0.2.2/24")));
    }
}
