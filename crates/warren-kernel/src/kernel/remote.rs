//! Remote mailboxes: the kernel's side of federation between hosts (issue 8).
//!
//! The kernel stays pure: it never sees a broker, a key or a signature. It knows three things:
//!
//! * **Proxy mailboxes.** A name `env@host` or `env/mailbox@host` in `may_send` (or looked up
//!   through `may_send`/`may_discover`) designates a *proxy*: a mailbox object owned by no
//!   environment, designated by the remote address, never full. A capability to it is an
//!   ordinary capability — attenuated, revoked, used up, expired and passed on between local
//!   environments exactly like any other — but a send through it does not queue: the kernel
//!   checks it as every send, then hands the message to the driver as
//!   [`Action::Forward`](crate::Action::Forward) and answers `ok`. The driver (the daemon's link)
//!   must make the message durable before that answer leaves (see `docs/federation.md`).
//!   Remote capabilities carry SEND and GRANT, never MONITOR: the kernel cannot see a remote
//!   owner end.
//! * **Exports.** A local capability attached to a message for another host (or the one-shot
//!   reply capability of `reply_to`) becomes an *export*: a capability object derived from the
//!   attached one, held by the kernel under a number, that the driver turns into a signed token
//!   bound to the receiving environment. A message that comes back through the token names the
//!   export; the kernel checks that object at that moment (revoked, expired, used up, SEND, the
//!   mailbox alive) and spends a use, so revoking the capability the sender attached — the
//!   caretaker pattern — takes effect across hosts at once. Exports are kernel state: a kernel
//!   restart forgets them, and tokens issued before it are refused (fail closed).
//! * **Injection.** [`Kernel::inject`] puts a message that arrived from another host (already
//!   verified by the driver: signature, trusted key, sequence) into a local mailbox, with the
//!   remote sender's identity `env@host` — which no local environment can have, labels having
//!   no `@`. Without a token, the receiving environment's inbound policy (`accept_from`, set
//!   with [`Kernel::set_accept_from`]) must name the sender; with one, the capability is the
//!   authority. An injected message may exceed the mailbox's capacity (the driver bounds how
//!   many it has in flight) and carries the driver's ticket: when it is delivered — or
//!   discarded because its mailbox died — the kernel says so with
//!   [`Action::Settled`](crate::Action::Settled), which is when the driver acknowledges it to
//!   the broker. Tokens attached to it become handles to per-token proxy mailboxes.
//! * **Cut-off hosts.** The driver may cut a host off ([`Kernel::set_cut_off`], an attestation
//!   verdict: docs/federation.md, "Attestation-gated federation"): every send through a proxy
//!   for that host — a declared name or an imported token alike — is refused `revoked` with
//!   the verdict as its detail, and audited, until the host is let back in. Nothing is
//!   forwarded meanwhile, so nothing sent during the cut-off arrives later.

use std::sync::Arc;

use warren_proto::{Bodies, ErrorCode, Message, RequestId, Response, Rights};

use super::{Deny, Kernel, MAY_DISCOVER_RIGHTS, MAY_SEND_RIGHTS, without_receive};
use crate::action::{Action, AuditRecord};
use crate::caps::{CapId, CapSpec};
use crate::mailbox::{MailboxId, Stored};
use crate::{EnvId, Millis};

/// The environment number that owns proxy mailboxes: no environment has it (ids start at 1).
const NOBODY: EnvId = EnvId(0);

/// What remote capabilities may carry at most.
const REMOTE_RIGHTS: Rights = Rights(Rights::SEND.0 | Rights::GRANT.0);

/// Where a proxy mailbox forwards to.
#[derive(Debug, Clone)]
pub(crate) struct RemoteTarget {
    /// `env@host` or `env/mailbox@host`.
    pub(crate) address: Arc<str>,
    /// The token (opaque to the kernel) that authorizes sends, for proxies made from one.
    pub(crate) token: Option<Arc<[u8]>>,
}

/// A message for another host, as the kernel accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The sending environment.
    pub env: EnvId,
    /// Its name.
    pub from: String,
    /// The badge of the capability it sent through.
    pub badge: u64,
    /// The remote address: `env@host` or `env/mailbox@host`.
    pub to: String,
    /// The token the capability was imported with, if it designates a mailbox another host
    /// exported (the message then travels on that token's authority).
    pub token: Option<Arc<[u8]>>,
    /// Headers, as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Correlation, as sent.
    pub correlation: Option<u64>,
    /// Body, as sent.
    pub body: Vec<u8>,
    /// Capabilities attached, exported for the receiver.
    pub exports: Vec<Export>,
    /// The one-shot reply capability, exported, when the send named `reply_to`.
    pub reply: Option<Export>,
}

/// A local capability made available to another host under a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The export's number: what a message coming back through it names.
    pub id: u64,
    /// The local mailbox it designates (`env` or `env/mailbox`), for tokens and audits.
    pub designation: String,
    /// Its rights (never RECEIVE, never MONITOR).
    pub rights: Rights,
    /// Sends left, when limited.
    pub uses: Option<u32>,
}

/// A message from another host, verified by the driver, to put into a local mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The local mailbox: `env` or `env/mailbox` (ignored when `via` names an export).
    pub to: String,
    /// The remote sender: `env@host`.
    pub from: String,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Correlation.
    pub correlation: Option<u64>,
    /// Body.
    pub body: Vec<u8>,
    /// The export the message came back through, if it travels on a token this host issued
    /// (checked by the driver to be this host's, bound to `from`).
    pub via: Option<u64>,
    /// Capabilities attached by the remote sender.
    pub imports: Vec<Import>,
    /// The one-shot reply capability, if the remote sender asked for a reply.
    pub reply: Option<Import>,
    /// The driver's number for it, given back in [`Action::Settled`].
    pub ticket: u64,
}

/// A capability another host exported to a local environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The mailbox it designates: `env@host` or `env/mailbox@host`.
    pub address: String,
    /// The token, kept opaque and sent with every message through it.
    pub token: Arc<[u8]>,
    /// Its rights (masked to SEND and GRANT).
    pub rights: Rights,
    /// Sends left, when limited.
    pub uses: Option<u32>,
}

/// Why an inbound message was not put into a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// No running environment has that mailbox (it may not have started yet).
    #[error("no running mailbox {to:?}")]
    NoMailbox {
        /// The mailbox named.
        to: String,
    },
    /// Refused for good: policy, or a token that no longer authorizes anything. The refusal
    /// was written to the audit trail.
    #[error("refused: {reason}")]
    Refused {
        /// The stable code of the refusal (`no-right`, `revoked`, ...).
        code: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why an inbound message exceeds what the local protocol can deliver (`docs/protocol.md` §11),
/// if it does: a conforming sending host never forwards one, since its own environments could
/// not send it.
fn beyond_protocol_limits(msg: &Inbound) -> Option<String> {
    use warren_proto::{MAX_BODY, MAX_CAPS, MAX_HEADER_VALUE, MAX_HEADERS, MAX_NAME};
    if msg.body.len() > MAX_BODY {
        return Some(format!(
            "the body is {} bytes, over MAX_BODY ({MAX_BODY})",
            msg.body.len()
        ));
    }
    if msg.headers.len() > MAX_HEADERS {
        return Some(format!(
            "{} headers, over MAX_HEADERS ({MAX_HEADERS})",
            msg.headers.len()
        ));
    }
    if let Some((name, value)) = msg
        .headers
        .iter()
        .find(|(n, v)| n.len() > MAX_NAME || v.len() > MAX_HEADER_VALUE)
    {
        return Some(format!(
            "a header ({} byte name, {} byte value) is over MAX_NAME ({MAX_NAME}) or \
             MAX_HEADER_VALUE ({MAX_HEADER_VALUE})",
            name.len(),
            value.len()
        ));
    }
    if msg.imports.len() > MAX_CAPS {
        return Some(format!(
            "{} capabilities, over MAX_CAPS ({MAX_CAPS})",
            msg.imports.len()
        ));
    }
    if msg.from.len() > MAX_NAME {
        return Some(format!("the sender's name is over MAX_NAME ({MAX_NAME})"));
    }
    None
}

/// Whether `from` (`env@host`) matches an `accept_from` entry: `env@host` exactly, or
/// `*@host` for every environment of that host.
pub fn accepts(accept_from: &[String], from: &str) -> bool {
    let host = from.split_once('@').map(|(_, h)| h);
    accept_from.iter().any(|p| {
        p == from
            || p.strip_prefix("*@")
                .is_some_and(|h| host.is_some_and(|host| host == h))
    })
}

/// The environment a message's `to` (`env` or `env/mailbox`) names, or `-` when it names none.
pub fn receiving_env(to: &str) -> &str {
    let env = to.split('/').next().unwrap_or(to);
    if super::check_label(env).is_ok() {
        env
    } else {
        "-"
    }
}

impl Kernel {
    /// Turns remote names on: from now, `may_send` entries and lookups naming `env@host` (with
    /// `host` other than `local_host`) designate proxy mailboxes. Without it, remote names are
    /// not granted and look up as `not-found`.
    pub fn enable_federation(&mut self, local_host: &str) {
        self.local_host = Some(local_host.to_owned());
    }

    /// Sets `env`'s inbound policy: the remote senders (`env@host`, or `*@host`) whose messages
    /// it accepts without a capability of its own.
    pub fn set_accept_from(&mut self, env: EnvId, accept_from: Vec<String>) {
        if self.envs.contains_key(&env) {
            self.accept_from.insert(env, accept_from);
        }
    }

    /// Names spelled with this host's own name (`db@alpha` on `alpha`) are the local names.
    pub(super) fn localize(&self, names: Vec<String>) -> Vec<String> {
        if self.local_host.is_none() {
            return names;
        }
        names
            .into_iter()
            .map(|n| match self.strip_local_host(&n) {
                Some(local) => local.to_owned(),
                None => n,
            })
            .collect()
    }

    /// A remote address with this host's own suffix removed is local: `Some(local)`.
    pub(super) fn strip_local_host<'a>(&self, name: &'a str) -> Option<&'a str> {
        let (local, host) = name.split_once('@')?;
        (self.local_host.as_deref() == Some(host)).then_some(local)
    }

    /// Whether `name` names another host's mailbox, with federation on.
    fn is_remote(&self, name: &str) -> bool {
        self.local_host.is_some() && name.contains('@') && self.strip_local_host(name).is_none()
    }

    /// The shared proxy mailbox for `address`, made on first use.
    fn proxy(&mut self, address: &str, token: Option<Arc<[u8]>>) -> MailboxId {
        if token.is_none() {
            if let Some(&mb) = self.proxies.get(address) {
                return mb;
            }
        }
        let name: Arc<str> = Arc::from(address);
        let mb = self.new_mailbox(NOBODY, name.clone(), address.into(), None, usize::MAX);
        if token.is_none() {
            self.proxies.insert(address.to_owned(), mb);
        }
        self.remote.insert(
            mb,
            RemoteTarget {
                address: name,
                token,
            },
        );
        mb
    }

    /// Installs the environment's declared remote grants (after its local ones).
    pub(super) fn grant_remote(&mut self, env: EnvId) {
        if self.local_host.is_none() {
            return;
        }
        let declared: Vec<String> = self.envs[&env].may_send.clone();
        let mut seen = std::collections::BTreeSet::new();
        for target in declared {
            // `env/mailbox@host` is found by lookup, like `env/mailbox` locally.
            if !self.is_remote(&target) || target.contains('/') || !seen.insert(target.clone()) {
                continue;
            }
            let mb = self.proxy(&target, None);
            let cap = self.mint(Self::root_spec(mb, REMOTE_RIGHTS), None);
            self.install(env, cap);
        }
    }

    /// `lookup` of a name with `@`: a local name spelled with this host's name is looked up as
    /// local; a remote one answers a handle to its proxy if the caller's policy names it.
    pub(super) fn lookup_remote(
        &mut self,
        env: EnvId,
        id: RequestId,
        name: String,
    ) -> Result<(), Deny> {
        let not_found = |reason: &str| {
            Deny::new(ErrorCode::NotFound, "no mailbox by that name for you")
                .reason(reason)
                .target(name.clone())
        };
        if !self.is_remote(&name) {
            return Err(not_found(if self.local_host.is_none() {
                "remote names need federation ([host] broker)"
            } else {
                "a name of this host is looked up without its host part"
            }));
        }
        let e = &self.envs[&env];
        let rights = if e.may_send.contains(&name) {
            REMOTE_RIGHTS
        } else if e.may_discover.contains(&name) {
            Rights(MAY_DISCOVER_RIGHTS.0 & REMOTE_RIGHTS.0)
        } else {
            return Err(not_found(
                "the name is in neither may_send nor may_discover",
            ));
        };
        debug_assert_eq!(MAY_SEND_RIGHTS.0 & REMOTE_RIGHTS.0, REMOTE_RIGHTS.0);
        if !self.has_room(env, 1) {
            return Err(
                Deny::new(ErrorCode::Unavailable, "the capability table is full").target(name),
            );
        }
        let mb = self.proxy(&name, None);
        let cap = self.mint(Self::root_spec(mb, rights), None);
        let handle = self.install(env, cap);
        self.respond(env, id, Response::Handle { handle, rights });
        Ok(())
    }

    /// A proxy made for one imported token goes with the last capability to it.
    pub(super) fn forget_token_proxy(&mut self, mb: MailboxId) {
        if self.remote.get(&mb).is_some_and(|t| t.token.is_some()) {
            self.remote.remove(&mb);
            self.mailboxes.remove(&mb);
        }
    }

    /// Cuts `host` off (`Some(detail)`: sends through its proxies are refused `revoked` with
    /// `detail`) or lets it back in (`None`).
    pub fn set_cut_off(&mut self, host: &str, detail: Option<String>) {
        match detail {
            Some(d) => {
                self.cut_off.insert(host.to_owned(), d);
            }
            None => {
                self.cut_off.remove(host);
            }
        }
    }

    /// The hosts a proxy may forward to (the driver's trusted keys): a send through a proxy for
    /// any other host is refused `revoked` and audited, and nothing is forwarded. Until this
    /// is called, every host is allowed.
    pub fn set_peer_hosts(&mut self, hosts: impl IntoIterator<Item = String>) {
        self.peer_hosts = Some(hosts.into_iter().collect());
    }

    /// Every remote address a proxy mailbox designates (declared names and imported tokens),
    /// without repeats, in order.
    pub fn remote_addresses(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<String> = self
            .remote
            .values()
            .map(|t| t.address.to_string())
            .collect();
        set.into_iter().collect()
    }

    /// A send through proxy `mb_id` to a host that is cut off, or whose key this host does not
    /// trust: the refusal.
    fn refuse_cut_off(&self, mb_id: MailboxId) -> Result<(), Deny> {
        if self.cut_off.is_empty() && self.peer_hosts.is_none() {
            return Ok(());
        }
        let address = &self.remote[&mb_id].address;
        let host = address.rsplit_once('@').map_or("", |(_, h)| h);
        if self.peer_hosts.as_ref().is_some_and(|p| !p.contains(host)) {
            return Err(Deny::new(
                ErrorCode::Revoked,
                format!("host {host} is not in this host's trusted keys"),
            )
            .reason(format!("host {host} is not trusted: nothing is sent to it"))
            .target(address.to_string()));
        }
        match self.cut_off.get(host) {
            Some(detail) => Err(Deny::new(ErrorCode::Revoked, detail.clone())
                .reason(format!("host {host} is cut off"))
                .target(address.to_string())),
            None => Ok(()),
        }
    }

    /// Whether the mailbox is a proxy for another host's.
    pub(super) fn is_proxy(&self, mb: MailboxId) -> bool {
        !self.remote.is_empty() && self.remote.contains_key(&mb)
    }

    /// The rest of a send through a proxy: the checks common to every send are done; the
    /// attachments are exported, the message leaves as [`Action::Forward`], and the sender is
    /// answered `ok`.
    #[allow(clippy::too_many_arguments)] // the state `send` has already worked out
    pub(super) fn send_remote(
        &mut self,
        env: EnvId,
        id: RequestId,
        cap_id: CapId,
        mb_id: MailboxId,
        badge: u64,
        message: Message,
        attached: Vec<CapId>,
        reply_src: Option<CapId>,
    ) -> Result<(), Deny> {
        self.refuse_cut_off(mb_id)?;
        for (&h, &c) in message.caps.iter().zip(&attached) {
            if self.is_proxy(self.caps.get(c).mailbox) {
                return Err(self.deny_at(
                    ErrorCode::NoRight,
                    h,
                    c,
                    "a capability to a remote mailbox cannot be passed to another host",
                ));
            }
        }
        self.caps.consume(cap_id);
        let mut exports = Vec::with_capacity(attached.len());
        for a in attached {
            let src = self.caps.get(a);
            let spec = CapSpec {
                mailbox: src.mailbox,
                rights: Rights(without_receive(src.rights).0 & REMOTE_RIGHTS.0),
                uses_left: src.uses_left,
                expires_at: src.expires_at,
                badge: src.badge,
                reply: src.reply,
            };
            exports.push(self.export(spec, a));
        }
        let reply = reply_src.map(|r| {
            let spec = CapSpec {
                mailbox: self.caps.get(r).mailbox,
                rights: Rights::SEND,
                uses_left: Some(1),
                expires_at: None,
                badge: 0,
                reply: true,
            };
            self.export(spec, r)
        });
        let target = &self.remote[&mb_id];
        let out = Outbound {
            env,
            from: self.envs[&env].name.to_string(),
            badge,
            to: target.address.to_string(),
            token: target.token.clone(),
            headers: message.headers,
            correlation: message.correlation,
            body: message.body,
            exports,
            reply,
        };
        self.actions.push_back(Action::Forward(Box::new(out)));
        self.respond(env, id, Response::Ok);
        Ok(())
    }

    /// A batch send through a proxy: the checks common to every batch are done; each body
    /// leaves, in order, as its own [`Action::Forward`] (a plain message: no headers, no
    /// capabilities), one use is spent per body, and the batch is answered `accepted` with the
    /// whole count (nothing, if quiet). A proxy is never full, so nothing waits or is refused.
    #[allow(clippy::too_many_arguments)] // the state `send_batch` has already worked out
    pub(super) fn send_batch_remote(
        &mut self,
        env: EnvId,
        id: RequestId,
        cap_id: CapId,
        mb_id: MailboxId,
        badge: u64,
        quiet: bool,
        bodies: Bodies,
    ) -> Result<(), Deny> {
        self.refuse_cut_off(mb_id)?;
        let n = bodies.len();
        self.caps.consume_n(cap_id, n);
        let target = &self.remote[&mb_id];
        let (to, token) = (target.address.to_string(), target.token.clone());
        let from = self.envs[&env].name.to_string();
        for body in bodies.iter() {
            let out = Outbound {
                env,
                from: from.clone(),
                badge,
                to: to.clone(),
                token: token.clone(),
                headers: Vec::new(),
                correlation: None,
                body: body.to_vec(),
                exports: Vec::new(),
                reply: None,
            };
            self.actions.push_back(Action::Forward(Box::new(out)));
        }
        if !quiet {
            let count = u32::try_from(n).expect("a batch holds at most MAX_BATCH bodies");
            self.respond(env, id, Response::Accepted { count });
        }
        Ok(())
    }

    fn export(&mut self, spec: CapSpec, parent: CapId) -> Export {
        let cap = self.mint(spec, Some(parent));
        let id = self.next_export;
        self.next_export += 1;
        self.exports.insert(id, cap);
        Export {
            id,
            designation: self.mailboxes[&spec.mailbox].designation.to_string(),
            rights: spec.rights,
            uses: spec.uses_left,
        }
    }

    /// Number this kernel's exports from `first` on. The daemon starts each kernel at an
    /// unpredictable number, so that a token another host still holds from a previous kernel
    /// designates nothing here instead of whatever the new kernel exported under its number.
    pub fn number_exports_from(&mut self, first: u64) {
        let first = first.max(1);
        self.next_export = first;
        self.first_export = first;
    }

    /// How many exports the kernel holds (for tests and status).
    pub fn exports(&self) -> usize {
        self.exports.len()
    }

    /// Puts a message from another host into a local mailbox (see the module documentation).
    /// On success the message is queued (or handed to a waiting receive) and will be settled
    /// by [`Action::Settled`] with its ticket. A refusal for good is audited.
    pub fn inject(&mut self, msg: Inbound, now: Millis) -> Result<(), InjectError> {
        self.advance(now);
        // A message no local environment could be given (its Delivery would not encode) is
        // refused for good, before anything else is looked at.
        if let Some(why) = beyond_protocol_limits(&msg) {
            return Err(self.refuse_inbound(&msg, ErrorCode::TooLarge, why));
        }
        let (mb_id, badge) = match msg.via {
            Some(export) => self.check_export(export, &msg)?,
            None => {
                let (env_name, mailbox) = match msg.to.split_once('/') {
                    Some((e, m)) => (e, Some(m)),
                    None => (msg.to.as_str(), None),
                };
                let no_mailbox = || InjectError::NoMailbox { to: msg.to.clone() };
                let owner = *self.names.get(env_name).ok_or_else(no_mailbox)?;
                let e = &self.envs[&owner];
                let mb = match mailbox {
                    None => Some(e.default_mailbox),
                    Some(m) => e
                        .mailboxes
                        .iter()
                        .copied()
                        .find(|mb| self.mailboxes[mb].name.as_deref() == Some(m)),
                };
                let mb = mb.ok_or_else(no_mailbox)?;
                let allowed = self
                    .accept_from
                    .get(&owner)
                    .is_some_and(|a| accepts(a, &msg.from));
                if !allowed {
                    let name = e.name.clone();
                    return Err(self.refuse_inbound(
                        &msg,
                        ErrorCode::NoRight,
                        format!("{} is not in {name}'s accept_from", msg.from),
                    ));
                }
                (mb, 0)
            }
        };
        let mut caps = Vec::with_capacity(msg.imports.len());
        for import in msg.imports.iter() {
            caps.push(self.import(import, false));
        }
        let reply = msg.reply.as_ref().map(|r| self.import(r, true));
        let stored = Stored {
            from: Arc::from(msg.from.as_str()),
            badge,
            headers: msg.headers,
            correlation: msg.correlation,
            body: msg.body,
            caps,
            reply,
            down: None,
            ticket: Some(msg.ticket),
        };
        self.place(mb_id, stored, None);
        Ok(())
    }

    /// Checks and spends an export for a message coming back through it.
    fn check_export(
        &mut self,
        export: u64,
        msg: &Inbound,
    ) -> Result<(MailboxId, u64), InjectError> {
        let Some(&cap_id) = self.exports.get(&export) else {
            // Issued by this kernel and gone: spent (an export leaves the table only when its
            // last use is taken).
            if (self.first_export..self.next_export).contains(&export) {
                return Err(self.refuse_inbound(
                    msg,
                    ErrorCode::UsedUp,
                    format!("the exported capability is used up (token {export})"),
                ));
            }
            return Err(self.refuse_inbound(
                msg,
                ErrorCode::Revoked,
                format!("token {export} is unknown here (issued before a kernel restart?)"),
            ));
        };
        let cap = self.caps.get(cap_id);
        let mb = cap.mailbox;
        if *self.mailboxes[&mb].designation != *msg.to {
            // The token names another mailbox than the export of that number: not this
            // kernel's token.
            let here = self.mailboxes[&mb].designation.to_string();
            return Err(self.refuse_inbound(
                msg,
                ErrorCode::Revoked,
                format!(
                    "token {export} names {:?}, but export {export} here is {here:?} (issued \
                     before a kernel restart?)",
                    msg.to
                ),
            ));
        }
        let problem = if cap.revoked {
            Some((ErrorCode::Revoked, "the exported capability was revoked"))
        } else if cap.expires_at.is_some_and(|at| self.now >= at) {
            Some((ErrorCode::Expired, "the exported capability expired"))
        } else if !self.caps.has_uses(cap_id) {
            Some((ErrorCode::UsedUp, "the exported capability is used up"))
        } else if !cap.rights.contains(Rights::SEND) {
            Some((ErrorCode::NoRight, "the exported capability lacks SEND"))
        } else if !self.mailboxes[&mb].alive {
            Some((ErrorCode::Dead, "the mailbox is gone"))
        } else {
            None
        };
        if let Some((code, why)) = problem {
            let target = self.mailboxes[&mb].designation.to_string();
            return Err(self.refuse_inbound(msg, code, format!("{why} ({target})")));
        }
        let badge = cap.badge;
        self.caps.consume(cap_id);
        if !self.caps.has_uses(cap_id) {
            // Nothing more can come through it: let the tree forget it.
            self.exports.remove(&export);
            self.release_cap(cap_id);
        }
        Ok((mb, badge))
    }

    fn import(&mut self, import: &Import, reply: bool) -> CapId {
        let mb = self.proxy(&import.address, Some(import.token.clone()));
        let spec = CapSpec {
            mailbox: mb,
            rights: Rights(import.rights.0 & REMOTE_RIGHTS.0),
            uses_left: import.uses,
            expires_at: None,
            badge: 0,
            reply,
        };
        self.mint(spec, None)
    }

    /// Audits a refused inbound message. Its `env` is always the receiving environment: the
    /// one `to` names (for a message through a token, the token's target), or `-` when `to`
    /// names none.
    fn refuse_inbound(&mut self, msg: &Inbound, code: ErrorCode, reason: String) -> InjectError {
        self.audit(AuditRecord {
            at: self.now,
            env: receiving_env(&msg.to).to_owned(),
            op: "inbound",
            handle: None,
            target: Some(format!("{} -> {}", msg.from, msg.to)),
            code: code.as_str(),
            reason: reason.clone(),
            repeated: None,
        });
        InjectError::Refused {
            code: code.as_str(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use warren_proto::{Filter, Request};

    use super::*;
    use crate::{Config, EnvSpec};

    fn spec(name: &str, may_send: &[&str]) -> EnvSpec {
        EnvSpec {
            name: name.into(),
            may_send: may_send.iter().map(|s| s.to_string()).collect(),
            ..EnvSpec::default()
        }
    }

    fn drain(k: &mut Kernel) -> Vec<Action> {
        std::iter::from_fn(|| k.poll_action()).collect()
    }

    fn send(k: &mut Kernel, env: EnvId, handle: u32, body: &str, caps: Vec<u32>) -> Vec<Action> {
        let message = Message {
            body: body.into(),
            caps,
            ..Message::default()
        };
        k.handle_request(
            env,
            1,
            Request::Send {
                handle,
                message,
                wait: true,
            },
            0,
        );
        drain(k)
    }

    fn recv(k: &mut Kernel, env: EnvId) -> Vec<Action> {
        let req = Request::Recv {
            mailbox: None,
            filter: Filter::default(),
            timeout_ms: Some(0),
        };
        k.handle_request(env, 2, req, 0);
        drain(k)
    }

    fn inbound(to: &str, from: &str, via: Option<u64>, ticket: u64) -> Inbound {
        Inbound {
            to: to.into(),
            from: from.into(),
            headers: Vec::new(),
            correlation: None,
            body: b"hi".to_vec(),
            via,
            imports: Vec::new(),
            reply: None,
            ticket,
        }
    }

    /// A send through a proxy was refused `revoked` with `detail` in its answer, audited with
    /// `target`, and nothing was forwarded.
    fn assert_send_refused_revoked(acts: &[Action], target: &str, detail: &str) {
        assert!(
            !acts.iter().any(|a| matches!(a, Action::Forward(_))),
            "{acts:?}"
        );
        assert!(
            acts.iter()
                .any(|a| matches!(a, Action::Audit(r) if r.code == "revoked"
                && r.target.as_deref() == Some(target))),
            "{acts:?}"
        );
        match acts.last() {
            Some(Action::Respond {
                response: Response::Error { code, detail: d },
                ..
            }) => {
                assert_eq!(*code, ErrorCode::Revoked);
                assert!(d.contains(detail), "{d}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// `env` attenuates its default mailbox handle (`rights`, `uses`, `badge`) and passes it to
    /// db@beta (its handle 2): the attenuated handle and the export the forwarded message
    /// carries.
    fn export_own_mailbox(
        k: &mut Kernel,
        env: EnvId,
        rights: Rights,
        uses: Option<u32>,
        badge: Option<u64>,
    ) -> (u32, Export) {
        let att = Request::Attenuate {
            handle: 1,
            rights,
            uses,
            expires_in_ms: None,
            badge,
        };
        k.handle_request(env, 1, att, 0);
        let Some(Action::Respond {
            response: Response::Handle { handle: h, .. },
            ..
        }) = drain(k).pop()
        else {
            panic!("no handle");
        };
        let acts = send(k, env, 2, "cap", vec![h]);
        let Some(Action::Forward(out)) = acts.first() else {
            panic!("{acts:?}")
        };
        (h, out.exports[0].clone())
    }

    /// `env`'s lookup of `name` is answered `not-found`.
    fn assert_lookup_not_found(k: &mut Kernel, env: EnvId, id: u32, name: &str) {
        k.handle_request(env, id, Request::Lookup { name: name.into() }, 0);
        let acts = drain(k);
        assert!(
            matches!(
                acts.last(),
                Some(Action::Respond {
                    response: Response::Error {
                        code: ErrorCode::NotFound,
                        ..
                    },
                    ..
                })
            ),
            "{name}: {acts:?}"
        );
    }

    #[test]
    fn a_cut_off_host_refuses_sends_revoked_with_the_verdict_until_let_back() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        let web = k.add_env(spec("web", &["db@beta", "db@gamma"]), 0).unwrap();
        k.set_cut_off(
            "beta",
            Some("cut off: attestation failed (boot-digest) at T".into()),
        );
        assert_eq!(k.remote_addresses(), ["db@beta", "db@gamma"]);
        // To the cut-off host: refused `revoked` with the verdict, audited, nothing forwarded.
        let acts = send(&mut k, web, 2, "hello", Vec::new());
        assert_send_refused_revoked(&acts, "db@beta", "attestation failed (boot-digest)");
        // The other host is unaffected (positive control).
        let acts = send(&mut k, web, 3, "hello", Vec::new());
        assert!(
            matches!(acts.first(), Some(Action::Forward(o)) if o.to == "db@gamma"),
            "{acts:?}"
        );
        // Let back in: the same send is forwarded.
        k.set_cut_off("beta", None);
        let acts = send(&mut k, web, 2, "hello", Vec::new());
        assert!(
            matches!(acts.first(), Some(Action::Forward(o)) if o.to == "db@beta"),
            "{acts:?}"
        );
    }

    #[test]
    fn a_send_to_a_host_whose_key_is_not_trusted_is_refused_and_nothing_leaves() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        let web = k.add_env(spec("web", &["db@beta", "x@zeta"]), 0).unwrap();
        // Before the driver names its peers, both leave (the control for the refusal below).
        let acts = send(&mut k, web, 3, "early", Vec::new());
        assert!(
            matches!(acts.first(), Some(Action::Forward(o)) if o.to == "x@zeta"),
            "{acts:?}"
        );
        k.set_peer_hosts(["beta".to_owned()]);
        let acts = send(&mut k, web, 3, "secret", Vec::new());
        assert_send_refused_revoked(&acts, "x@zeta", "zeta is not in this host's trusted keys");
        // The trusted host still gets its message.
        let acts = send(&mut k, web, 2, "hello", Vec::new());
        assert!(
            matches!(acts.first(), Some(Action::Forward(o)) if o.to == "db@beta"),
            "{acts:?}"
        );
    }

    #[test]
    fn without_federation_remote_names_are_not_granted_nor_found() {
        let mut k = Kernel::new(Config::default());
        let web = k.add_env(spec("web", &["db@beta"]), 0).unwrap();
        assert_eq!(k.debug_table(web).len(), 1);
        assert_lookup_not_found(&mut k, web, 1, "db@beta");
    }

    #[test]
    fn a_send_through_a_remote_handle_is_forwarded_and_answered() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        let web = k.add_env(spec("web", &["db@beta"]), 0).unwrap();
        let table = k.debug_table(web);
        assert_eq!(table[1].1.designation, "db@beta");
        assert_eq!(table[1].1.rights, REMOTE_RIGHTS);
        let acts = send(&mut k, web, 2, "hello", Vec::new());
        match &acts[..] {
            [
                Action::Forward(out),
                Action::Respond {
                    response: Response::Ok,
                    ..
                },
            ] => {
                assert_eq!((out.from.as_str(), out.to.as_str()), ("web", "db@beta"));
                assert_eq!(out.body, b"hello");
            }
            other => panic!("{other:?}"),
        }
        // A name of this host spelled with its host part is local.
        let db = k.add_env(spec("db", &[]), 0).unwrap();
        let cache = k.add_env(spec("cache", &["db@alpha"]), 0).unwrap();
        assert_eq!(k.debug_table(cache)[1].1.designation, "db");
        let _ = db;
        assert_lookup_not_found(&mut k, web, 3, "db@alpha");
    }

    #[test]
    fn inbound_messages_need_accept_from_and_settle_on_delivery() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("beta");
        let db = k.add_env(spec("db", &[]), 0).unwrap();
        // Not in accept_from: refused and audited.
        let err = k
            .inject(inbound("db", "web@alpha", None, 1), 0)
            .unwrap_err();
        assert!(matches!(
            err,
            InjectError::Refused {
                code: "no-right",
                ..
            }
        ));
        assert!(matches!(&drain(&mut k)[..], [Action::Audit(r)] if r.op == "inbound"));
        // No such mailbox (yet): the driver waits.
        assert_eq!(
            k.inject(inbound("cache", "web@alpha", None, 2), 0),
            Err(InjectError::NoMailbox { to: "cache".into() })
        );
        k.set_accept_from(db, vec!["*@alpha".into()]);
        k.inject(inbound("db", "web@alpha", None, 3), 0).unwrap();
        let acts = recv(&mut k, db);
        match &acts[..] {
            [
                Action::Settled {
                    ticket: 3,
                    delivered: true,
                },
                Action::Respond {
                    response: Response::Delivery(d),
                    ..
                },
            ] => {
                assert_eq!(d.from.env, "web@alpha");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_exported_capability_works_until_revoked() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        let web = k.add_env(spec("web", &["db@beta"]), 0).unwrap();
        // web attenuates its own mailbox handle and passes it to db@beta.
        let both = Rights(Rights::SEND.0 | Rights::GRANT.0);
        let (h, export) = export_own_mailbox(&mut k, web, both, None, Some(7));
        assert_eq!(export.designation, "web");
        assert_eq!(k.exports(), 1);
        // db@beta sends back through it (the link passes the token's target as `to`):
        // delivered with the badge web chose.
        k.inject(inbound("web", "db@beta", Some(export.id), 1), 0)
            .unwrap();
        match &recv(&mut k, web)[..] {
            [
                Action::Settled { .. },
                Action::Respond {
                    response: Response::Delivery(d),
                    ..
                },
            ] => {
                assert_eq!((d.from.env.as_str(), d.from.badge), ("db@beta", 7));
            }
            other => panic!("{other:?}"),
        }
        // web revokes what it passed: the next one is refused and audited.
        k.handle_request(web, 3, Request::Revoke { handle: h }, 0);
        drain(&mut k);
        let err = k
            .inject(inbound("web", "db@beta", Some(export.id), 2), 0)
            .unwrap_err();
        assert!(matches!(
            err,
            InjectError::Refused {
                code: "revoked",
                ..
            }
        ));
        // An export number never issued is refused too.
        assert!(
            k.inject(inbound("web", "db@beta", Some(999), 3), 0)
                .is_err()
        );
    }

    #[test]
    fn a_spent_token_is_used_up_and_one_from_an_earlier_kernel_finds_nothing() {
        let issue = |k: &mut Kernel, web: EnvId, uses: Option<u32>| {
            let both = Rights(Rights::SEND.0 | Rights::GRANT.0);
            export_own_mailbox(k, web, both, uses, None).1
        };
        let code = |r: Result<(), InjectError>| match r {
            Err(InjectError::Refused { code, reason }) => (code, reason),
            other => panic!("{other:?}"),
        };
        // The first kernel: a one-shot export, used, then used again.
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        k.number_exports_from(1 << 40);
        let web = k.add_env(spec("web", &["db@beta"]), 0).unwrap();
        let once = issue(&mut k, web, Some(1));
        assert_eq!(once.id, 1 << 40);
        k.inject(inbound("web", "db@beta", Some(once.id), 1), 0)
            .unwrap();
        let (c, why) = code(k.inject(inbound("web", "db@beta", Some(once.id), 2), 0));
        assert_eq!(c, "used-up", "{why}");
        // A number this kernel never issued: unknown.
        let (c, why) = code(k.inject(inbound("web", "db@beta", Some(5), 3), 0));
        assert_eq!(
            (c, why.contains("unknown here")),
            ("revoked", true),
            "{why}"
        );

        // A second kernel that numbered from 1, as every kernel did: its export 1 is another
        // mailbox's, and a token for "web" with number 1 must not reach it.
        let mut k2 = Kernel::new(Config::default());
        k2.enable_federation("alpha");
        let web2 = k2.add_env(spec("web", &["db@beta"]), 0).unwrap();
        k2.handle_request(
            web2,
            1,
            Request::CreateMailbox {
                name: Some("other".into()),
            },
            0,
        );
        drain(&mut k2);
        let first = issue(&mut k2, web2, None);
        assert_eq!(first.designation, "web");
        let (c, why) = code(k2.inject(inbound("web/other", "db@beta", Some(first.id), 1), 0));
        assert_eq!(c, "revoked", "{why}");
        assert!(why.contains("names \"web/other\""), "{why}");
        // The control: the right target goes through.
        k2.inject(inbound("web", "db@beta", Some(first.id), 2), 0)
            .unwrap();
    }

    #[test]
    fn imported_capabilities_forward_with_their_token_and_cannot_leave_for_a_third_host() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("beta");
        let db = k.add_env(spec("db", &["log@gamma"]), 0).unwrap();
        k.set_accept_from(db, vec!["web@alpha".into()]);
        let mut m = inbound("db", "web@alpha", None, 1);
        m.imports.push(Import {
            address: "web@alpha".into(),
            token: Arc::from(&b"tok"[..]),
            rights: Rights(Rights::SEND.0 | Rights::GRANT.0 | Rights::MONITOR.0),
            uses: None,
        });
        k.inject(m, 0).unwrap();
        let acts = recv(&mut k, db);
        let Some(Action::Respond {
            response: Response::Delivery(d),
            ..
        }) = acts.last()
        else {
            panic!("{acts:?}")
        };
        let h = d.caps[0];
        let acts = send(&mut k, db, h, "back", Vec::new());
        let Some(Action::Forward(out)) = acts.first() else {
            panic!("{acts:?}")
        };
        assert_eq!(out.to, "web@alpha");
        assert_eq!(out.token.as_deref(), Some(&b"tok"[..]));
        let before = k.debug_mailbox_objects();
        k.handle_request(db, 9, Request::Drop { handle: h }, 0);
        drain(&mut k);
        assert_eq!(
            k.debug_mailbox_objects(),
            before - 1,
            "the token's proxy went with it"
        );
        // Passing an imported capability to a third host is refused.
        let mut m = inbound("db", "web@alpha", None, 2);
        m.imports.push(Import {
            address: "web@alpha".into(),
            token: Arc::from(&b"tok2"[..]),
            rights: Rights(Rights::SEND.0 | Rights::GRANT.0),
            uses: None,
        });
        k.inject(m, 0).unwrap();
        let acts = recv(&mut k, db);
        let Some(Action::Respond {
            response: Response::Delivery(d),
            ..
        }) = acts.last()
        else {
            panic!("{acts:?}")
        };
        let acts = send(&mut k, db, 2, "pass", vec![d.caps[0]]);
        assert!(matches!(
            acts.last(),
            Some(Action::Respond {
                response: Response::Error {
                    code: ErrorCode::NoRight,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn an_inbound_message_beyond_the_protocol_limits_is_refused_and_audited() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("beta");
        let db = k.add_env(spec("db", &[]), 0).unwrap();
        k.set_accept_from(db, vec!["*@alpha".into()]);
        let mut big = inbound("db", "web@alpha", None, 1);
        big.body = vec![0; warren_proto::MAX_BODY + 1];
        let err = k.inject(big, 0).unwrap_err();
        assert!(
            matches!(&err, InjectError::Refused { code: "too-large", reason } if reason.contains("MAX_BODY")),
            "{err:?}"
        );
        match &drain(&mut k)[..] {
            [Action::Audit(r)] => {
                assert_eq!((r.op, r.code), ("inbound", "too-large"));
                assert_eq!(r.target.as_deref(), Some("web@alpha -> db"));
            }
            other => panic!("{other:?}"),
        }
        let mut headers = inbound("db", "web@alpha", None, 2);
        headers.headers = vec![("h".into(), vec![0; warren_proto::MAX_HEADER_VALUE + 1])];
        assert!(matches!(
            k.inject(headers, 0),
            Err(InjectError::Refused {
                code: "too-large",
                ..
            })
        ));
        // Positive control: the largest body the protocol carries is delivered.
        let mut max = inbound("db", "web@alpha", None, 3);
        max.body = vec![0; warren_proto::MAX_BODY];
        k.inject(max, 0).unwrap();
        let acts = recv(&mut k, db);
        assert!(
            acts.iter().any(|a| matches!(a, Action::Respond { response: Response::Delivery(d), .. } if d.body.len() == warren_proto::MAX_BODY)),
            "{acts:?}"
        );
    }

    #[test]
    fn a_send_batch_through_a_remote_handle_forwards_every_body_in_order() {
        let mut k = Kernel::new(Config::default());
        k.enable_federation("alpha");
        let web = k.add_env(spec("web", &["db@beta"]), 0).unwrap();
        drain(&mut k);
        let bodies: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
        let bodies: warren_proto::Bodies = bodies.iter().map(Vec::as_slice).collect();
        let req = Request::SendBatch {
            handle: 2,
            wait: false,
            quiet: false,
            bodies,
        };
        k.handle_request(web, 7, req, 0);
        let acts = drain(&mut k);
        let forwarded: Vec<(String, String, Vec<u8>)> = acts
            .iter()
            .filter_map(|a| match a {
                Action::Forward(o) => Some((o.from.clone(), o.to.clone(), o.body.clone())),
                _ => None,
            })
            .collect();
        let expected: Vec<(String, String, Vec<u8>)> = (0..5)
            .map(|i| ("web".into(), "db@beta".into(), format!("m{i}").into_bytes()))
            .collect();
        assert_eq!(forwarded, expected);
        assert!(matches!(
            acts.last(),
            Some(Action::Respond {
                id: 7,
                response: Response::Accepted { count: 5 },
                ..
            })
        ));
        // A quiet batch is answered by nothing but its forwards.
        let one: warren_proto::Bodies = [&b"q"[..]].into_iter().collect();
        let req = Request::SendBatch {
            handle: 2,
            wait: true,
            quiet: true,
            bodies: one,
        };
        k.handle_request(web, 8, req, 0);
        let acts = drain(&mut k);
        assert!(
            matches!(&acts[..], [Action::Forward(o)] if o.body == b"q"),
            "{acts:?}"
        );
    }
}
