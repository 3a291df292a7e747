//! The daemon's control connections: the admin socket `<state>/kernel.sock` (accepting, the
//! `SO_PEERCRED` gate), reassembly of requests from tagged packets (`crate::control`), their
//! dispatch, answers cut into packets and queued (a large answer is written as the client reads
//! it, never dropped), and registration of `warren run` launchers.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::epoll::{self, EventFlags};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType, sockopt,
};
use warren_kernel::{EnvId, EnvSpec};

use super::conn::EnvConn;
use super::{Conn, Daemon, token_event};
use crate::control::{self, Assembly, ControlRequest, ControlResponse, Piece};

/// The send buffer forced on both ends of an environment's connection, so that packets up to
/// the protocol's 1 MiB limit pass (Linux's default allows about 208 KiB).
const SOCKET_BUFFER: usize = 2 << 20;

/// One connection on the control socket.
pub(super) struct ControlConn {
    fd: OwnedFd,
    /// The environment this connection registered (a launcher's connection).
    pub(super) env: Option<EnvId>,
    /// Whether the launcher said its environment runs.
    pub(super) started: bool,
    /// Whether the launcher re-attached after a kernel restart (it outlived a kernel).
    reattached: bool,
    assembly: Assembly,
    /// Descriptors received with the request being assembled.
    passed: Vec<OwnedFd>,
    /// Packets to write, each with the descriptors it carries.
    out: VecDeque<(Vec<u8>, Vec<OwnedFd>)>,
    want_write: bool,
    /// The request being answered came in the older one-packet framing.
    legacy: bool,
}

impl Daemon {
    pub(super) fn accept_all(&mut self) {
        loop {
            let fd = match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(e) => {
                    tracing::info!("accept on the control socket: {e}");
                    return;
                }
            };
            let allowed = match sockopt::socket_peercred(&fd) {
                Ok(cred) => {
                    cred.uid.is_root() || self.group.is_some_and(|g| cred.gid.as_raw() == g)
                }
                Err(_) => false,
            };
            if !allowed {
                let resp = ControlResponse::error(
                    "permission denied: the control socket is for root and the kernel's group",
                );
                let doc = serde_json::to_vec(&resp).unwrap_or_default();
                for p in control::packets(&doc) {
                    let _ = rustix::net::send(&fd, &p, SendFlags::DONTWAIT);
                }
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            let (flags, data) = token_event(token, true, false);
            if epoll::add(&self.epoll, &fd, data, flags).is_ok() {
                self.conns.insert(
                    token,
                    Conn::Control(ControlConn {
                        fd,
                        env: None,
                        started: false,
                        reattached: false,
                        assembly: Assembly::default(),
                        passed: Vec::new(),
                        out: VecDeque::new(),
                        want_write: false,
                        legacy: false,
                    }),
                );
            }
        }
    }

    pub(super) fn on_control(&mut self, token: u64, flags: EventFlags) {
        if flags.contains(EventFlags::OUT) {
            self.flush_control(token);
        }
        for _ in 0..self.limits.turn_packets {
            let Some(Conn::Control(c)) = self.conns.get_mut(&token) else {
                return;
            };
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let (n, truncated) = match rustix::net::recvmsg(
                &c.fd,
                &mut [std::io::IoSliceMut::new(
                    &mut self.buf[..control::MAX_PACKET],
                )],
                &mut anc,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            ) {
                Ok(m) => (m.bytes, m.flags.contains(rustix::net::ReturnFlags::TRUNC)),
                Err(rustix::io::Errno::AGAIN) => {
                    if flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR) {
                        self.close_control(token);
                    }
                    return;
                }
                Err(_) => (0, false),
            };
            for m in anc.drain() {
                if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                    c.passed.extend(fds);
                }
            }
            if n == 0 {
                self.close_control(token);
                return;
            }
            let piece = if truncated {
                Err(format!(
                    "a control packet larger than {} bytes",
                    control::MAX_PACKET
                ))
            } else {
                c.assembly.push(&self.buf[..n], control::MAX_REQUEST)
            };
            let doc = match piece {
                Ok(Piece::Partial) => continue,
                Ok(Piece::Done(doc)) => {
                    c.legacy = false;
                    doc
                }
                Ok(Piece::Legacy(doc)) => {
                    c.legacy = true;
                    doc
                }
                Err(why) => {
                    // The rest of the message cannot be told from a new one: answer and close.
                    c.legacy = false;
                    c.passed.clear();
                    self.control_reply(token, ControlResponse::error(why));
                    self.flush_control(token);
                    self.close_control(token);
                    return;
                }
            };
            let passed = std::mem::take(&mut c.passed);
            let req: Result<ControlRequest, _> = serde_json::from_slice(&doc);
            drop(doc);
            self.control_request(token, req, passed);
        }
        // Budget spent: level-triggered epoll reports what is left next turn.
    }

    fn control_request(
        &mut self,
        token: u64,
        req: Result<ControlRequest, serde_json::Error>,
        mut passed: Vec<OwnedFd>,
    ) {
        match req {
            Ok(ControlRequest::Register {
                name,
                may_send,
                may_discover,
                capacity,
                mailbox_bytes,
                readopt,
            }) => {
                let kept = if readopt { passed.pop() } else { None };
                if readopt && kept.is_none() {
                    let resp = ControlResponse::error("re-registration without the connection");
                    self.control_reply(token, resp);
                } else {
                    let limits = (capacity, mailbox_bytes);
                    self.register(token, name, may_send, may_discover, limits, kept);
                }
            }
            Ok(ControlRequest::Started) => {
                let env = match self.conns.get_mut(&token) {
                    Some(Conn::Control(c)) => {
                        c.started = true;
                        c.env
                    }
                    _ => None,
                };
                match env.and_then(|e| self.kernel.env_name(e).map(str::to_owned)) {
                    Some(name) => {
                        self.control_reply(token, ControlResponse::data(serde_json::json!({})));
                        self.on_launcher_started(&name);
                    }
                    None => self.control_reply(
                        token,
                        ControlResponse::error("`started` before a registration"),
                    ),
                }
            }
            Ok(ControlRequest::Status) => {
                let st = self.kernel.stats();
                let status = serde_json::json!({
                    "envs": st.envs, "mailboxes": st.mailboxes, "caps": st.caps,
                    "queued": st.queued, "waiting_sends": st.waiting_sends,
                    "waiting_recvs": st.waiting_recvs, "monitors": st.monitors,
                    "link": self.link.as_ref().map(|l| l.status()),
                    "quotes_waiting": self.worker.busy(),
                });
                self.control_reply(
                    token,
                    ControlResponse {
                        ok: true,
                        error: None,
                        status: Some(status),
                        data: None,
                    },
                );
            }
            Ok(ControlRequest::Apply {
                file,
                spaces,
                templates,
                check,
                stop_timeout,
            }) => {
                if !check {
                    self.declare_templates(templates);
                }
                self.apply(token, file, spaces, check, stop_timeout);
            }
            Ok(ControlRequest::List) => {
                let mut data = self.list();
                if let Some(l) = &self.link {
                    data["remote"] = l.remote_view(&self.kernel);
                }
                self.control_reply(token, ControlResponse::data(data));
            }
            Ok(ControlRequest::AttestPeer {
                host,
                nonce,
                timeout_ms,
            }) => {
                let now = self.start.elapsed().as_millis() as u64;
                let res = match (self.link.as_mut(), hex::decode(&nonce)) {
                    (None, _) => Err("this kernel does not federate (no [host] broker)".into()),
                    (_, Err(e)) => Err(format!("nonce {nonce:?} is not hex: {e}")),
                    (Some(l), Ok(n)) => l.attest_peer(token, &host, n, timeout_ms, now),
                };
                if let Err(why) = res {
                    self.control_reply(token, ControlResponse::error(why));
                }
            }
            Ok(ControlRequest::Gate {
                host,
                pass,
                code,
                reason,
                valid_ms,
            }) => {
                let now = self.start.elapsed().as_millis() as u64;
                let res = match self.link.as_mut() {
                    None => Err("this kernel does not federate (no [host] broker)".into()),
                    Some(l) => {
                        l.verdict(&mut self.kernel, &host, pass, &code, &reason, valid_ms, now)
                    }
                };
                let resp = match res {
                    Ok(data) => ControlResponse::data(data),
                    Err(why) => ControlResponse::error(why),
                };
                self.control_reply(token, resp);
            }
            Ok(ControlRequest::Stop { name, timeout }) => self.stop_request(token, name, timeout),
            Ok(ControlRequest::Remove { name, force }) => self.remove_request(token, name, force),
            Err(e) => {
                let resp = ControlResponse::error(format!("bad control request: {e}"));
                self.control_reply(token, resp);
            }
        }
    }

    /// Answer on a control connection.
    pub(super) fn control_reply(&mut self, token: u64, resp: ControlResponse) {
        self.control_reply_fds(token, resp, Vec::new());
    }

    /// Answer on a control connection, passing `fds` with the answer (on its first packet).
    pub(super) fn control_reply_fds(
        &mut self,
        token: u64,
        resp: ControlResponse,
        fds: Vec<OwnedFd>,
    ) {
        let Some(Conn::Control(c)) = self.conns.get_mut(&token) else {
            return;
        };
        let doc = serde_json::to_vec(&resp).unwrap_or_default();
        let mut fds = Some(fds);
        if c.legacy && doc.len() <= control::MAX_PACKET {
            c.out.push_back((doc, fds.take().unwrap_or_default()));
        } else {
            for p in control::packets(&doc) {
                c.out.push_back((p, fds.take().unwrap_or_default()));
            }
        }
        self.flush_control(token);
    }

    /// Write what a control connection can take now; ask for EPOLLOUT for the rest.
    fn flush_control(&mut self, token: u64) {
        let Some(Conn::Control(c)) = self.conns.get_mut(&token) else {
            return;
        };
        while let Some((packet, fds)) = c.out.front() {
            let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut anc = SendAncillaryBuffer::new(&mut space);
            if !borrowed.is_empty() {
                anc.push(SendAncillaryMessage::ScmRights(&borrowed));
            }
            match rustix::net::sendmsg(
                &c.fd,
                &[std::io::IoSlice::new(packet)],
                &mut anc,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(_) => {
                    c.out.pop_front();
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(_) => {
                    c.out.clear();
                    break;
                }
            }
        }
        let want = !c.out.is_empty();
        if want != c.want_write {
            c.want_write = want;
            let (flags, data) = token_event(token, true, want);
            let _ = epoll::modify(&self.epoll, &c.fd, data, flags);
        }
    }

    /// Register an environment. `kept` is the kernel's end of its connection, handed back by a
    /// launcher after a kernel restart (the launcher keeps a copy from the first registration):
    /// the environment's descriptor 3 then carries on, with a fresh capability table built from
    /// its declaration.
    fn register(
        &mut self,
        token: u64,
        name: String,
        may_send: Vec<String>,
        may_discover: Vec<String>,
        (capacity, mailbox_bytes): (Option<usize>, Option<u64>),
        kept: Option<OwnedFd>,
    ) {
        if let Some(Conn::Control(ControlConn { env: Some(_), .. })) = self.conns.get(&token) {
            let resp = ControlResponse::error("this connection already registered an environment");
            self.control_reply(token, resp);
            return;
        }
        // The same bounds as the manifest and the CLI (warren-spec's limits).
        let checked = capacity
            .map(|c| warren_spec::limits::check(warren_spec::limits::MAILBOX_CAPACITY, c as u64))
            .transpose()
            .and_then(|_| {
                let bound = warren_spec::limits::MAILBOX_BYTES;
                mailbox_bytes
                    .map(|b| warren_spec::limits::check(bound, b))
                    .transpose()
            })
            .and_then(|_| {
                use warren_spec::limits::{MAX_MAY_DISCOVER, MAX_MAY_SEND, check_names};
                check_names("may_send", may_send.len(), MAX_MAY_SEND)?;
                check_names("may_discover", may_discover.len(), MAX_MAY_DISCOVER)
            });
        if let Err(e) = checked {
            self.control_reply(token, ControlResponse::error(e.to_string()));
            return;
        }
        let spec = EnvSpec {
            name: name.clone(),
            may_send,
            may_discover,
            mailbox_capacity: capacity,
            mailbox_bytes: mailbox_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
        };
        let env = match self.register_env(spec) {
            Ok(e) => e,
            Err(e) => {
                self.control_reply(token, ControlResponse::error(e.to_string()));
                return;
            }
        };
        if let Some(m) = self.registry.envs.get(&name) {
            if !m.spec.accept_from.is_empty() {
                self.kernel.set_accept_from(env, m.spec.accept_from.clone());
            }
            if !m.spec.may_spawn.is_empty() {
                self.kernel.set_may_spawn(env, m.spec.may_spawn.clone());
            }
        }
        let readopted = kept.is_some();
        // A re-attached connection speaks the version it agreed with the previous kernel (or
        // still owes its Hello).
        let greeted = kept.as_ref().and_then(super::conn::agreed_version);
        if let Some(v) = greeted {
            self.kernel.set_env_version(env, v);
        }
        if readopted {
            // Its program may hold handle numbers from the previous kernel: new ones start at
            // an unpredictable number in [2^30, 2^31), above anything a kernel that ran less
            // than a billion handles for it gave, so an old number finds nothing.
            let mut r = [0u8; 4];
            let _ = rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty());
            let floor = (1u32 << 30) | (u32::from_le_bytes(r) & ((1 << 30) - 1));
            self.kernel.number_handles_from(env, floor);
        }
        let pair = match kept {
            Some(fd) => Ok((fd, None)),
            None => rustix::net::socketpair(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC,
                None,
            )
            .map(|(a, b)| (a, Some(b))),
        };
        let (ours, theirs) = match pair {
            Ok(p) => p,
            Err(e) => {
                self.kernel.remove_env(env, self.now());
                self.control_reply(token, ControlResponse::error(format!("socketpair: {e}")));
                return;
            }
        };
        for fd in std::iter::once(&ours).chain(theirs.as_ref()) {
            if sockopt::set_socket_send_buffer_size_force(fd, SOCKET_BUFFER).is_err() {
                let _ = sockopt::set_socket_send_buffer_size(fd, SOCKET_BUFFER);
            }
            let _ = sockopt::set_socket_recv_buffer_size_force(fd, SOCKET_BUFFER);
        }
        let _ = rustix::fs::fcntl_setfl(&ours, rustix::fs::OFlags::NONBLOCK);
        if !readopted {
            super::conn::note_waiting(&ours);
        }
        // A copy of our end for the launcher to keep in case this kernel restarts.
        let copy = match theirs {
            Some(_) => rustix::io::fcntl_dupfd_cloexec(&ours, 3).ok(),
            None => None,
        };
        let etoken = self.next_token;
        self.next_token += 1;
        let (flags, data) = token_event(etoken, true, false);
        if let Err(e) = epoll::add(&self.epoll, &ours, data, flags) {
            self.kernel.remove_env(env, self.now());
            self.control_reply(token, ControlResponse::error(format!("epoll: {e}")));
            return;
        }
        self.conns
            .insert(etoken, Conn::Env(EnvConn::new(ours, env, greeted)));
        self.env_conn.insert(env, etoken);
        if let Some(Conn::Control(c)) = self.conns.get_mut(&token) {
            c.env = Some(env);
            // A re-attached launcher's environment has been running all along.
            c.started = readopted;
            c.reattached = readopted;
        }
        let ok = ControlResponse {
            ok: true,
            error: None,
            status: None,
            data: None,
        };
        match theirs {
            // The environment's end, and the copy of ours.
            Some(theirs) => {
                let mut fds = vec![theirs];
                fds.extend(copy);
                self.control_reply_fds(token, ok, fds);
            }
            None => {
                tracing::info!("{name} re-attached its kernel connection");
                self.control_reply(token, ok);
            }
        }
    }

    pub(super) fn close_control(&mut self, token: u64) {
        self.pendings.retain(|p| p.token != token);
        if let Some(Conn::Control(c)) = self.conns.remove(&token) {
            let _ = epoll::delete(&self.epoll, &c.fd);
            if let Some(env) = c.env {
                // An environment no kernel supervises (`warren run` while a kernel runs) that
                // outlived the kernel it first registered with (so it re-attached) leaves its
                // exit status as it ends (`control::record_exit`, before it closes this
                // connection); nobody waits for it, so it goes now.
                if let (true, Some(name)) = (c.reattached, self.kernel.env_name(env)) {
                    if !self.runtime.contains_key(name) && !self.registry.envs.contains_key(name) {
                        crate::control::forget_exit(&self.state_dir, name);
                    }
                }
                if self.end_now(env) {
                    self.kernel.remove_env(env, self.now());
                }
                if let Some(et) = self.env_conn.remove(&env) {
                    self.close_env(et);
                }
            }
        }
    }
}
