//! Adding and removing set elements of `inet warren` over nfnetlink, without running `nft`.
//!
//! A launch changes only set elements (the table's rules never change), and those two messages
//! are small and stable (`NFT_MSG_NEWSETELEM`, `NFT_MSG_DELSETELEM` in one batch), so they are
//! written here by hand: it saves a process start and a ruleset cache dump (about 4 ms) on each
//! start and each stop. The table itself is installed, and listed for sweeps, through `nft`.
//!
//! Layout (`include/uapi/linux/netfilter/nf_tables.h`): each message is a netlink header, a
//! `nfgenmsg` (family, version, resource id), then attributes; an element's key (and a map
//! element's data) is the concatenation of its fields, each padded to 4 bytes.

use std::io;
use std::net::Ipv4Addr;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_INET: u8 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const IFNAMSIZ: usize = 16;

/// One field of an element's key or data.
#[derive(Debug, Clone)]
pub enum Field {
    /// An interface name (`ifname`): 16 bytes, zero-padded.
    IfName(String),
    /// An IPv4 address (`ipv4_addr`).
    Addr(Ipv4Addr),
    /// A port (`inet_service`), in network order, padded to 4 bytes.
    Port(u16),
}

/// One element: the set it belongs to, its key, and for a map its data.
#[derive(Debug, Clone)]
pub struct Element {
    /// The set or map.
    pub set: &'static str,
    /// The key's fields.
    pub key: Vec<Field>,
    /// The data's fields (maps only).
    pub data: Vec<Field>,
}

fn concat(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            Field::IfName(n) => {
                let mut b = [0u8; IFNAMSIZ];
                let n = n.as_bytes();
                b[..n.len().min(IFNAMSIZ - 1)].copy_from_slice(&n[..n.len().min(IFNAMSIZ - 1)]);
                out.extend_from_slice(&b);
            }
            Field::Addr(a) => out.extend_from_slice(&a.octets()),
            Field::Port(p) => {
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
        }
    }
    out
}

/// Append attribute `kind` holding `value`, padded to 4 bytes.
fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

fn nested(buf: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    attr(buf, kind | NLA_F_NESTED, inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// One netlink message: header, `nfgenmsg`, attributes.
fn message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// The attributes of one set-element message: table, set, and its elements.
fn element_attrs(table: &str, set: &str, elements: &[&Element]) -> Vec<u8> {
    let mut list = Vec::new();
    for e in elements {
        let mut el = Vec::new();
        let mut key = Vec::new();
        attr(&mut key, NFTA_DATA_VALUE, &concat(&e.key));
        nested(&mut el, NFTA_SET_ELEM_KEY, &key);
        if !e.data.is_empty() {
            let mut data = Vec::new();
            attr(&mut data, NFTA_DATA_VALUE, &concat(&e.data));
            nested(&mut el, NFTA_SET_ELEM_DATA, &data);
        }
        nested(&mut list, NFTA_LIST_ELEM, &el);
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
    attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &cstr(set));
    nested(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS, &list);
    attrs
}

/// Whether to add or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `NFT_MSG_NEWSETELEM` (like `nft add element`: an identical element is no error).
    Add,
    /// `NFT_MSG_DELSETELEM`.
    Delete,
}

/// The batch for `elements` of table `inet <table>`: one message per set, all in one
/// transaction. Returns the bytes and how many acknowledgements to expect.
pub fn batch(op: Op, table: &str, elements: &[Element], seq: u32) -> (Vec<u8>, usize) {
    let mut buf = Vec::new();
    message(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut sets: Vec<&'static str> = Vec::new();
    for e in elements {
        if !sets.contains(&e.set) {
            sets.push(e.set);
        }
    }
    let (ty, flags) = match op {
        Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
        Op::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
    };
    let mut n = 0;
    for (i, set) in sets.iter().enumerate() {
        let of_set: Vec<&Element> = elements.iter().filter(|e| e.set == *set).collect();
        let attrs = element_attrs(table, set, &of_set);
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | ty;
        message(
            &mut buf,
            ty,
            flags,
            seq + 1 + i as u32,
            NFPROTO_INET,
            0,
            &attrs,
        );
        n += 1;
    }
    let end = seq + 1 + sets.len() as u32;
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        end,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    (buf, n)
}

/// Send one batch and collect its acknowledgements; the first error ends it (the kernel then
/// aborts the whole transaction).
pub fn apply(op: Op, table: &str, elements: &[Element]) -> io::Result<()> {
    if elements.is_empty() {
        return Ok(());
    }
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )?;
    let (buf, mut expected) = batch(op, table, elements, 1);
    sock.send_to(&buf, &SocketAddr::new(0, 0), 0)?;
    while expected > 0 {
        let (data, _) = sock.recv_from_full()?;
        let mut off = 0;
        while off + 16 <= data.len() {
            let len =
                u32::from_ne_bytes(data[off..off + 4].try_into().unwrap_or_default()) as usize;
            let ty = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            if len < 16 || off + len > data.len() {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 {
                let code =
                    i32::from_ne_bytes(data[off + 16..off + 20].try_into().unwrap_or_default());
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                expected -= 1;
            }
            off += (len + 3) & !3;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fields_padded_to_four_bytes() {
        let k = concat(&[
            Field::IfName("wrn5".into()),
            Field::Addr(Ipv4Addr::new(10, 88, 0, 2)),
        ]);
        assert_eq!(k.len(), 20);
        assert_eq!(&k[..5], b"wrn5\0");
        assert_eq!(&k[16..], &[10, 88, 0, 2]);
        let k = concat(&[Field::Addr(Ipv4Addr::LOCALHOST), Field::Port(8080)]);
        assert_eq!(k, [127, 0, 0, 1, 0x1f, 0x90, 0, 0]);
    }

    #[test]
    fn a_batch_is_begin_one_message_per_set_end() {
        let e = |set, a| Element {
            set,
            key: vec![Field::Addr(a)],
            data: vec![],
        };
        let els = [
            e("egress", Ipv4Addr::new(10, 0, 0, 2)),
            e("allow", Ipv4Addr::new(10, 0, 0, 3)),
            e("allow", Ipv4Addr::new(10, 0, 0, 4)),
        ];
        let (buf, n) = batch(Op::Add, "warren", &els, 7);
        assert_eq!(n, 2);
        // Walk the messages: types and sequence numbers.
        let mut off = 0;
        let mut seen = vec![];
        while off < buf.len() {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
            assert_eq!(len % 4, 0);
            seen.push((ty, seq));
            off += len;
        }
        assert_eq!(
            seen,
            [(0x10, 7), (0xa0c, 8), (0xa0c, 9), (0x11, 10)],
            "begin, egress, allow (both elements), end"
        );
    }
}
