//! `net.*`: raw and packet sockets, reaching listeners outside the environment (TCP, abstract
//! unix), changing routes through netlink, `AF_VSOCK`, and which interfaces are visible.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType, connect, ipproto, recv, send,
    socket,
    sockopt::{Timeout, set_socket_timeout},
};

use super::Ctx;
use crate::procfs;
use crate::report::{Report, describe, strict_report};

/// `net.raw_socket`: `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)`.
pub fn raw_socket(_: &Ctx) -> Report {
    let result =
        socket(AddressFamily::INET, SocketType::RAW, Some(ipproto::ICMP)).map_err(io::Error::from);
    strict_report(
        "net.raw_socket",
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        result,
    )
}

/// `net.packet_socket`: `socket(AF_PACKET, SOCK_RAW, 0)` (protocol 0: receives nothing).
pub fn packet_socket(_: &Ctx) -> Report {
    let result = socket(AddressFamily::PACKET, SocketType::RAW, None).map_err(io::Error::from);
    strict_report(
        "net.packet_socket",
        "socket(AF_PACKET, SOCK_RAW, 0)",
        result,
    )
}

/// `net.connect_tcp`: connect to each `--tcp HOST:PORT` (2 s timeout); open if any connects.
pub fn connect_tcp(ctx: &Ctx) -> Report {
    const P: &str = "net.connect_tcp";
    if ctx.opts.tcp.is_empty() {
        return Report::skipped(P, "no --tcp target given");
    }
    let mut notes = Vec::new();
    let mut first_err = None;
    for target in &ctx.opts.tcp {
        let result = target
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))
            })
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)));
        match result {
            Ok(_) => return Report::open(P, format!("connected to {target}")),
            Err(e) => {
                notes.push(format!("{target}: {}", describe(&e)));
                first_err.get_or_insert(e);
            }
        }
    }
    let report = Report::blocked(P, notes.join("; "));
    match first_err {
        Some(e) => report.with_errno(&e),
        None => report,
    }
}

/// `net.abstract_unix`: connect to the abstract unix socket `@NAME` (stream, then seqpacket,
/// then datagram, whichever type it has).
pub fn abstract_unix(ctx: &Ctx) -> Report {
    const P: &str = "net.abstract_unix";
    let Some(name) = &ctx.opts.abstract_name else {
        return Report::skipped(P, "no --abstract name given");
    };
    let addr = match SocketAddrUnix::new_abstract_name(name.as_bytes()) {
        Ok(a) => a,
        Err(e) => return Report::skipped(P, format!("bad abstract name {name:?}: {e}")),
    };
    let mut last = Ok(());
    for kind in [SocketType::STREAM, SocketType::SEQPACKET, SocketType::DGRAM] {
        last = socket(AddressFamily::UNIX, kind, None).and_then(|fd| connect(&fd, &addr));
        if last != Err(rustix::io::Errno::PROTOTYPE) {
            break;
        }
    }
    strict_report(
        P,
        &format!("connect(@{name})"),
        last.map_err(io::Error::from),
    )
}

/// `RTM_SETLINK`.
const RTM_SETLINK: u16 = 19;
/// `NLMSG_ERROR`, the type of an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST | NLM_F_ACK`.
const REQUEST_ACK: u16 = 1 | 4;

/// An `RTM_SETLINK` for interface `index` that changes nothing (`ifi_change = 0`, no
/// attributes): the kernel still demands `CAP_NET_ADMIN` for it, and then does nothing.
pub fn setlink_noop_message(index: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&RTM_SETLINK.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&REQUEST_ACK.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&[0, 0]); // ifi_family = AF_UNSPEC, pad
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&index.to_ne_bytes()); // ifi_index
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
    m
}

/// The errno of a netlink acknowledgement (0 for success), or `None` if `reply` is not one.
pub fn ack_errno(reply: &[u8]) -> Option<i32> {
    let kind = u16::from_ne_bytes(reply.get(4..6)?.try_into().ok()?);
    if kind != NLMSG_ERROR {
        return None;
    }
    Some(-i32::from_ne_bytes(reply.get(16..20)?.try_into().ok()?))
}

/// `net.netlink_route_change`: send the no-op `RTM_SETLINK` for `lo` and read the ack.
pub fn netlink_route_change(_: &Ctx) -> Report {
    const P: &str = "net.netlink_route_change";
    let fd = match socket(AddressFamily::NETLINK, SocketType::RAW, None) {
        Ok(fd) => fd,
        Err(e) => {
            let e = io::Error::from(e);
            return Report::blocked(
                P,
                format!("socket(AF_NETLINK, NETLINK_ROUTE): {}", describe(&e)),
            )
            .with_errno(&e);
        }
    };
    let lo = socket(AddressFamily::INET, SocketType::DGRAM, None)
        .and_then(|s| rustix::net::netdevice::name_to_index(&s, "lo"))
        .map(|i| i as i32)
        .unwrap_or(1);
    let _ = set_socket_timeout(&fd, Timeout::Recv, Some(Duration::from_secs(2)));
    if let Err(e) = send(&fd, &setlink_noop_message(lo), SendFlags::empty()) {
        let e = io::Error::from(e);
        return Report::blocked(P, format!("send RTM_SETLINK: {}", describe(&e))).with_errno(&e);
    }
    let mut buf = [0u8; 4096];
    let what = format!("RTM_SETLINK(lo = {lo}, no change)");
    match recv(&fd, &mut buf[..], RecvFlags::empty()) {
        Ok((n, _)) => match ack_errno(&buf[..n]) {
            Some(0) => Report::open(P, format!("{what}: acknowledged")),
            Some(errno) => {
                strict_report(P, &what, Err::<(), _>(io::Error::from_raw_os_error(errno)))
            }
            None => Report::blocked(P, format!("{what}: unexpected reply of {n} bytes")),
        },
        Err(e) => {
            let e = io::Error::from(e);
            Report::blocked(P, format!("{what}: no ack: {}", describe(&e))).with_errno(&e)
        }
    }
}

/// `net.vsock`: `socket(AF_VSOCK, SOCK_STREAM, 0)`.
pub fn vsock(_: &Ctx) -> Report {
    let result = socket(AddressFamily::VSOCK, SocketType::STREAM, None).map_err(io::Error::from);
    strict_report("net.vsock", "socket(AF_VSOCK, SOCK_STREAM)", result)
}

/// `net.interfaces`: only `lo` may be visible. `/proc/self/net/dev` shows the reader's own
/// network namespace (and exists under `subset=pid` procfs); `/sys/class/net`, the fallback,
/// shows the namespace sysfs was mounted in.
pub fn interfaces(_: &Ctx) -> Report {
    const P: &str = "net.interfaces";
    let (source, mut names) = match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(text) => ("/proc/self/net/dev", procfs::net_dev_interfaces(&text)),
        Err(proc_err) => match std::fs::read_dir("/sys/class/net") {
            Ok(dir) => (
                "/sys/class/net",
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                return Report::skipped(
                    P,
                    format!(
                        "cannot list interfaces: /proc/self/net/dev: {}; /sys/class/net: {}",
                        describe(&proc_err),
                        describe(&e)
                    ),
                );
            }
        },
    };
    names.sort();
    let others = names.iter().filter(|n| *n != "lo").count();
    let detail = format!("{source}: {}", names.join(" "));
    if others == 0 {
        Report::blocked(P, detail)
    } else {
        Report::open(P, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setlink_message_layout() {
        let m = setlink_noop_message(1);
        assert_eq!(m.len(), 32);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 32);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_SETLINK);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 1);
        // ifi_flags and ifi_change are zero: the request changes nothing.
        assert!(m[24..32].iter().all(|&b| b == 0));
    }

    #[test]
    fn ack_parsing() {
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(0));
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack), Some(1));
        ack[4..6].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(ack_errno(&ack), None);
        assert_eq!(ack_errno(&[0u8; 3]), None);
    }
}
