//! Warren's nftables table `inet warren` and the elements each environment adds to it.
//!
//! The base ruleset (`ruleset.nft`) is reviewed data, installed once per host through the `nft`
//! program in one transaction that begins with `create table`, so two launchers racing to
//! install it cannot both succeed and no rule is ever duplicated. An environment's elements are
//! added and removed in one nfnetlink transaction each (`nfnl.rs`), on every start and stop.
//! Sweeps list the table and delete stale elements through `nft`. Every value written into a
//! script or a message is typed (addresses, ports, interface names Warren generates), so nothing
//! a user typed reaches nft unparsed. ARCHITECTURE.md says why no nftables crate is used.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use warren_spec::{Proto, Publish};

use super::NetError;
use super::nfnl::{self, Field, Op};

/// The base ruleset, in nft syntax, with the reason for each rule.
pub const RULESET: &str = include_str!("ruleset.nft");

/// Where `nft` is looked for.
const NFT: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

fn nft_path() -> Option<&'static str> {
    NFT.into_iter().find(|p| std::path::Path::new(p).exists())
}

/// Fail unless `nft` is installed.
pub fn check_available() -> Result<(), NetError> {
    nft_path().map(drop).ok_or_else(|| NetError::Nft {
        what: "the nft program is not installed (apt-get install nftables)".into(),
    })
}

/// The elements one environment adds.
#[derive(Debug, Clone)]
pub struct Elements {
    /// Its host end.
    pub host_ifname: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Peers it may reach.
    pub allow: Vec<Ipv4Addr>,
    /// Whether it may leave the host.
    pub egress: bool,
    /// Its published ports.
    pub publish: Vec<Publish>,
}

impl Elements {
    /// Each element as `SET { ELEMENT }`, in nft syntax.
    pub fn lines(&self) -> Vec<String> {
        let a = self.addr;
        let mut out = vec![format!("ifaddr {{ \"{}\" . {a} }}", self.host_ifname)];
        out.extend(self.allow.iter().map(|p| format!("allow {{ {a} . {p} }}")));
        if self.egress {
            out.push(format!("egress {{ {a} }}"));
        }
        for p in &self.publish {
            let map = match p.proto {
                Proto::Tcp => "publish_tcp",
                Proto::Udp => "publish_udp",
            };
            out.push(format!(
                "{map} {{ {} . {} : {a} . {} }}",
                p.host_addr, p.host_port, p.env_port
            ));
        }
        out
    }
}

impl Elements {
    /// The same elements, for nfnetlink.
    fn messages(&self) -> Vec<nfnl::Element> {
        let a = self.addr;
        let el = |set, key, data| nfnl::Element { set, key, data };
        let mut out = vec![el(
            "ifaddr",
            vec![Field::IfName(self.host_ifname.clone()), Field::Addr(a)],
            vec![],
        )];
        for p in &self.allow {
            out.push(el("allow", vec![Field::Addr(a), Field::Addr(*p)], vec![]));
        }
        if self.egress {
            out.push(el("egress", vec![Field::Addr(a)], vec![]));
        }
        for p in &self.publish {
            let map = match p.proto {
                Proto::Tcp => "publish_tcp",
                Proto::Udp => "publish_udp",
            };
            out.push(el(
                map,
                vec![Field::Addr(p.host_addr), Field::Port(p.host_port)],
                vec![Field::Addr(a), Field::Port(p.env_port)],
            ));
        }
        out
    }
}

fn script(verb: &str, lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("{verb} element inet warren {l}\n"))
        .collect()
}

/// Run `nft` with `args`, feeding it `input`; its standard output on success.
fn run(args: &[&str], input: Option<&str>) -> Result<String, String> {
    let nft = nft_path().ok_or("the nft program is not installed")?;
    let mut child = Command::new(nft)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {nft}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {nft}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        Err(first.trim().to_owned())
    }
}

/// Install the base table unless it exists.
fn ensure_table() -> Result<(), NetError> {
    match run(&["-f", "-"], Some(RULESET)) {
        Ok(_) => Ok(()),
        // Another launcher created it first: its transaction holds the whole ruleset.
        Err(e) if e.contains("File exists") => Ok(()),
        Err(e) => Err(NetError::Nft {
            what: format!("install the table inet warren: {e}"),
        }),
    }
}

/// Add an environment's elements (installing the table on first use).
pub fn add(el: &Elements, state: &crate::state::StateDir) -> Result<(), NetError> {
    let messages = el.messages();
    match nfnl::apply(Op::Add, TABLE, &messages) {
        Ok(()) => Ok(()),
        Err(_) => {
            // The table may be missing (first networked launch on this host), or a killed
            // launcher's elements may be in the way: set both right and try once more.
            ensure_table()?;
            let _ = super::sweep(state);
            nfnl::apply(Op::Add, TABLE, &messages).map_err(|e| NetError::Nft {
                what: format!("add the environment's elements: {e}"),
            })
        }
    }
}

/// Remove an environment's elements: in one transaction, or (when one of them is already gone,
/// which fails the whole transaction) one by one.
pub fn remove(el: &Elements) -> Result<(), NetError> {
    let messages = el.messages();
    match nfnl::apply(Op::Delete, TABLE, &messages) {
        Ok(()) => Ok(()),
        Err(_) => {
            let mut first = None;
            for m in messages {
                match nfnl::apply(Op::Delete, TABLE, std::slice::from_ref(&m)) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(2) => {} // ENOENT: already gone
                    Err(e) => first = first.or(Some(e)),
                }
            }
            first.map_or(Ok(()), |e| {
                Err(NetError::Nft {
                    what: format!("remove the environment's elements: {e}"),
                })
            })
        }
    }
}

/// Warren's table (family `inet`).
const TABLE: &str = "warren";

fn delete_lines(lines: &[String]) -> Result<(), NetError> {
    if lines.is_empty() {
        return Ok(());
    }
    run(&["-f", "-"], Some(&script("delete", lines)))
        .map(drop)
        .map_err(|e| NetError::Nft {
            what: format!("remove elements: {e}"),
        })
}

/// One element as listed: the set, its atoms, and the environment address that owns it.
struct Listed {
    line: String,
    owner: Ipv4Addr,
}

fn atom(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn atoms(v: &serde_json::Value) -> Vec<String> {
    match v.get("concat").and_then(|c| c.as_array()) {
        Some(parts) => parts.iter().filter_map(atom).collect(),
        None => atom(v).into_iter().collect(),
    }
}

/// Every element in the table, with its owner. An absent table has none.
fn list() -> Result<Vec<Listed>, NetError> {
    let text = match run(&["-j", "list", "table", "inet", "warren"], None) {
        Ok(t) => t,
        Err(e) if e.contains("No such file or directory") => return Ok(vec![]),
        Err(e) => {
            return Err(NetError::Nft {
                what: format!("list the table inet warren: {e}"),
            });
        }
    };
    parse_listing(&text)
}

/// The elements of a `nft -j list table inet warren` listing, with their owners.
fn parse_listing(text: &str) -> Result<Vec<Listed>, NetError> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| NetError::Nft {
        what: format!("unreadable listing: {e}"),
    })?;
    let mut out = Vec::new();
    for obj in doc["nftables"].as_array().into_iter().flatten() {
        let Some(set) = obj.get("set").or_else(|| obj.get("map")) else {
            continue;
        };
        let name = set["name"].as_str().unwrap_or("");
        for e in set["elem"].as_array().into_iter().flatten() {
            let (key, data) = match e.as_array() {
                Some(pair) if pair.len() == 2 => (atoms(&pair[0]), atoms(&pair[1])),
                _ => (
                    atoms(e.get("elem").and_then(|v| v.get("val")).unwrap_or(e)),
                    vec![],
                ),
            };
            let parsed = |s: &String| s.parse::<Ipv4Addr>().ok();
            let (line, owner) = match (name, key.as_slice(), data.as_slice()) {
                ("ifaddr", [i, a], []) => (format!("ifaddr {{ \"{i}\" . {a} }}"), parsed(a)),
                ("allow", [s, d], []) => (format!("allow {{ {s} . {d} }}"), parsed(s)),
                ("egress", [a], []) => (format!("egress {{ {a} }}"), parsed(a)),
                ("publish_tcp" | "publish_udp", [h, hp], [a, p]) => {
                    (format!("{name} {{ {h} . {hp} : {a} . {p} }}"), parsed(a))
                }
                _ => continue,
            };
            if let Some(owner) = owner {
                out.push(Listed { line, owner });
            }
        }
    }
    Ok(out)
}

/// The environment addresses that own elements.
pub fn owners() -> Result<Vec<Ipv4Addr>, NetError> {
    let mut v: Vec<Ipv4Addr> = list()?.into_iter().map(|l| l.owner).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Remove every element owned by `owner`; the caller holds its lease.
pub fn sweep_owner(owner: Ipv4Addr) -> Result<(), NetError> {
    let lines: Vec<String> = list()?
        .into_iter()
        .filter(|l| l.owner == owner)
        .map(|l| l.line)
        .collect();
    delete_lines(&lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_yields_each_element_with_its_owner() {
        // As `nft -j list table inet warren` prints it (nftables 1.0.6), trimmed.
        let text = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "inet", "name": "warren", "handle": 5}},
          {"set": {"family": "inet", "name": "ifaddr", "table": "warren", "type": ["ifname", "ipv4_addr"], "handle": 7, "elem": [{"concat": ["wrn5", "10.88.0.2"]}]}},
          {"set": {"family": "inet", "name": "allow", "table": "warren", "type": ["ipv4_addr", "ipv4_addr"], "handle": 8, "elem": [{"concat": ["10.88.0.2", "10.88.0.3"]}]}},
          {"set": {"family": "inet", "name": "egress", "table": "warren", "type": "ipv4_addr", "handle": 9, "elem": ["10.88.0.4"]}},
          {"map": {"family": "inet", "name": "publish_tcp", "table": "warren", "type": ["ipv4_addr", "inet_service"], "handle": 10, "map": "ipv4_addr . inet_service", "elem": [[{"concat": ["127.0.0.1", 8080]}, {"concat": ["10.88.0.5", 80]}]]}},
          {"map": {"family": "inet", "name": "publish_udp", "table": "warren", "type": ["ipv4_addr", "inet_service"], "handle": 11, "map": "ipv4_addr . inet_service"}}]}"#;
        let got: Vec<(String, String)> = parse_listing(text)
            .unwrap()
            .into_iter()
            .map(|l| (l.line, l.owner.to_string()))
            .collect();
        let want = [
            ("ifaddr { \"wrn5\" . 10.88.0.2 }", "10.88.0.2"),
            ("allow { 10.88.0.2 . 10.88.0.3 }", "10.88.0.2"),
            ("egress { 10.88.0.4 }", "10.88.0.4"),
            (
                "publish_tcp { 127.0.0.1 . 8080 : 10.88.0.5 . 80 }",
                "10.88.0.5",
            ),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
        // What the launcher writes is what the sweep would delete.
        let el = Elements {
            host_ifname: "wrn5".into(),
            addr: "10.88.0.2".parse().unwrap(),
            allow: vec!["10.88.0.3".parse().unwrap()],
            egress: false,
            publish: vec![],
        };
        assert_eq!(el.lines(), [want[0].0.clone(), want[1].0.clone()]);
        assert!(parse_listing("not json").is_err());
    }
}
