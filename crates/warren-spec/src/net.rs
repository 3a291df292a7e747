//! The network an environment is declared with: `none` (loopback only, the default) or a
//! virtual interface with an IPv4 address, published ports, the peers it may reach and whether
//! it may leave the host. Pure parsers; `docs/network.md` describes what each one turns into.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a network declaration was refused. Each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetError(String);

/// An environment's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetSpec {
    /// A network namespace with `lo` only (the default).
    #[default]
    None,
    /// A veth pair: `eth0` inside, a host end routed by the host.
    Veth(VethSpec),
}

impl NetSpec {
    /// Whether the environment gets an interface besides `lo`.
    pub fn is_none(&self) -> bool {
        matches!(self, NetSpec::None)
    }
}

/// A virtual interface as declared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VethSpec {
    /// The address inside, with its prefix; `None` takes one from the host's pool.
    pub address: Option<Cidr>,
    /// Host ports that reach the environment.
    #[serde(default)]
    pub publish: Vec<Publish>,
    /// Addresses of other environments this one may open connections to.
    #[serde(default)]
    pub allow: Vec<Ipv4Addr>,
    /// Whether it may send beyond the host (off by default).
    #[serde(default)]
    pub egress: bool,
}

/// An IPv4 address with a prefix length, e.g. `10.88.0.2/24`. The first address of the
/// prefix is the environment's gateway (the host end), so neither it, the network address nor
/// the broadcast address may be the environment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length (8 to 30).
    pub prefix: u8,
}

impl Cidr {
    /// The prefix's mask.
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The gateway: the first host address of the prefix.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from((u32::from(self.addr) & self.mask()) + 1)
    }

    /// Whether `a` lies in this prefix.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.addr) & self.mask()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Addresses that can never be an environment's or a peer's: they mean something on every
/// host.
fn special(a: Ipv4Addr) -> Option<&'static str> {
    if a.is_loopback() {
        Some("a loopback address")
    } else if a.is_unspecified() {
        Some("the unspecified address")
    } else if a.is_multicast() {
        Some("a multicast address")
    } else if a.is_broadcast() {
        Some("the broadcast address")
    } else if a.is_link_local() {
        Some("a link-local address")
    } else {
        None
    }
}

impl FromStr for Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |why: &str| NetError(format!("invalid address {s:?}: {why}"));
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.88.0.2/24"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| bad("not an IPv4 address (a.b.c.d)"))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| bad("the prefix length is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("the prefix length must be between 8 and 30"));
        }
        if let Some(what) = special(addr) {
            return Err(bad(&format!("{what} cannot be an environment's")));
        }
        let c = Cidr { addr, prefix };
        let host = u32::from(addr) & !c.mask();
        if host == 0 {
            return Err(bad("this is the network address of the prefix"));
        }
        if host == !c.mask() {
            return Err(bad("this is the broadcast address of the prefix"));
        }
        if addr == c.gateway() {
            return Err(bad(&format!(
                "{addr} is the prefix's gateway (the host end): use another address"
            )));
        }
        Ok(c)
    }
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A published port: `[HOST_ADDRESS:]HOST_PORT:ENV_PORT[/tcp|/udp]`. The host address defaults
/// to `127.0.0.1` (only this host can connect), unlike Docker's `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Publish {
    /// The host address that accepts connections.
    pub host_addr: Ipv4Addr,
    /// The host port.
    pub host_port: u16,
    /// The environment's port.
    pub env_port: u16,
    /// The protocol.
    pub proto: Proto,
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_addr,
            self.host_port,
            self.env_port,
            self.proto.as_str()
        )
    }
}

impl FromStr for Publish {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |why: &str| {
            NetError(format!(
                "invalid published port {s:?}: {why} (expected [HOST_ADDRESS:]HOST_PORT:ENV_PORT[/tcp|/udp], e.g. 127.0.0.1:8080:80)"
            ))
        };
        let (body, proto) = match s.rsplit_once('/') {
            Some((b, "tcp")) => (b, Proto::Tcp),
            Some((b, "udp")) => (b, Proto::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = body.split(':').collect();
        let (addr, hp, ep) = match parts.as_slice() {
            [hp, ep] => (Ipv4Addr::LOCALHOST, *hp, *ep),
            [a, hp, ep] => (
                a.parse::<Ipv4Addr>()
                    .map_err(|_| bad(&format!("{a:?} is not an IPv4 address")))?,
                *hp,
                *ep,
            ),
            _ => return Err(bad("wrong number of fields")),
        };
        let port = |p: &str, which: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!(
                "the {which} port {p:?} is not a number from 1 to 65535"
            ))),
        };
        let host_port = port(hp, "host")?;
        let env_port = port(ep, "environment")?;
        if addr.is_unspecified() {
            return Err(bad(
                "0.0.0.0 is not accepted: name the host address to publish on",
            ));
        }
        if addr.is_multicast() || addr.is_broadcast() {
            return Err(bad("the host address must be a unicast address"));
        }
        Ok(Publish {
            host_addr: addr,
            host_port,
            env_port,
            proto,
        })
    }
}

/// A peer address for `allow`: a unicast IPv4 address.
pub fn parse_peer(s: &str) -> Result<Ipv4Addr, NetError> {
    let a: Ipv4Addr = s
        .parse()
        .map_err(|_| NetError(format!("invalid peer address {s:?}: not an IPv4 address")))?;
    if let Some(what) = special(a) {
        return Err(NetError(format!(
            "invalid peer address {s:?}: {what} is never another environment's"
        )));
    }
    Ok(a)
}

/// The `--net` value of `warren run`: `none`, `auto` (an address from the pool) or
/// `ADDRESS/PREFIX`.
pub fn parse_net_mode(s: &str) -> Result<Option<Option<Cidr>>, NetError> {
    match s {
        "none" => Ok(None),
        "auto" => Ok(Some(None)),
        _ => s.parse::<Cidr>().map(|c| Some(Some(c))).map_err(|e| {
            NetError(format!(
                "{e}; --net takes none, auto or ADDRESS/PREFIX (e.g. 10.88.0.2/24)"
            ))
        }),
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(Cidr);
string_serde!(Publish);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_bad_ones_say_why() {
        let c: Cidr = "10.88.0.2/24".parse().unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 88, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 88, 1, 2)));
        assert_eq!(c.to_string(), "10.88.0.2/24");
        for (bad, why) in [
            ("10.88.0.2", "expected ADDRESS/PREFIX"),
            ("10.88.0.300/24", "not an IPv4 address"),
            ("10.88.0.2/x", "not a number"),
            ("10.88.0.2/31", "between 8 and 30"),
            ("127.0.0.2/8", "loopback"),
            ("10.88.0.0/24", "network address"),
            ("10.88.0.255/24", "broadcast address"),
            ("10.88.0.1/24", "gateway"),
            ("224.0.0.5/24", "multicast"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn published_ports_parse_and_bad_ones_say_why() {
        let p: Publish = "127.0.0.1:8080:80".parse().unwrap();
        assert_eq!(
            (p.host_addr, p.host_port, p.env_port, p.proto),
            (Ipv4Addr::LOCALHOST, 8080, 80, Proto::Tcp)
        );
        let p: Publish = "9000:53/udp".parse().unwrap();
        assert_eq!((p.host_addr, p.proto), (Ipv4Addr::LOCALHOST, Proto::Udp));
        assert_eq!(p.to_string(), "127.0.0.1:9000:53/udp");
        for (bad, why) in [
            ("8080", "wrong number of fields"),
            ("1:2:3:4", "wrong number of fields"),
            ("127.0.0.1:0:80", "host port"),
            ("127.0.0.1:8080:70000", "environment port"),
            ("localhost:8080:80", "not an IPv4 address"),
            ("0.0.0.0:8080:80", "0.0.0.0 is not accepted"),
            ("8080:80/sctp", "tcp or udp"),
        ] {
            let e = bad.parse::<Publish>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn net_modes_and_peers() {
        assert_eq!(parse_net_mode("none").unwrap(), None);
        assert_eq!(parse_net_mode("auto").unwrap(), Some(None));
        assert!(parse_net_mode("10.9.0.5/16").unwrap().unwrap().is_some());
        assert!(
            parse_net_mode("bridge")
                .unwrap_err()
                .to_string()
                .contains("none, auto or ADDRESS/PREFIX")
        );
        assert!(parse_peer("10.88.0.3").is_ok());
        assert!(parse_peer("127.0.0.1").is_err());
        assert!(parse_peer("x").is_err());
    }

    #[test]
    fn the_spec_round_trips_through_json() {
        let spec = NetSpec::Veth(VethSpec {
            address: Some("10.88.0.2/24".parse().unwrap()),
            publish: vec!["127.0.0.1:8080:80".parse().unwrap()],
            allow: vec![Ipv4Addr::new(10, 88, 0, 3)],
            egress: false,
        });
        let j = serde_json::to_string(&spec).unwrap();
        let back: NetSpec = serde_json::from_str(&j).unwrap();
        assert_eq!(back, spec);
        let none: NetSpec = serde_json::from_str("\"none\"").unwrap();
        assert!(none.is_none());
    }
}
