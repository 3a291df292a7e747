//! libwarren: the C ABI of the Warren client (`include/warren.h` is its contract).
//!
//! A C program (or any language with a C FFI) links `libwarren.so.0` or `libwarren.a` and
//! talks to the kernel through the environment's inherited descriptor, exactly as the Rust
//! client `warren-client` does: every operation of `docs/protocol.md` (batches, attestation
//! and spawn included), a blocking interface, and an event-loop interface (the descriptor, `warren_submit_*`
//! calls that never wait, `warren_process` to read what is readable, `warren_next_completion`
//! to collect answers). The byte layout comes from `warren-proto`; this crate adds the
//! connection (`conn`) and the C types.
//!
//! **Deviation from the workspace rule:** `unsafe` lives outside `warren-sys` here because a C
//! ABI cannot avoid it (raw pointers from C, `extern "C"` entry points). It is confined to the
//! conversions at the top of this file (`slice`, `opt_ref`, `out`, `str_arg`) and the
//! `Box::from_raw` of the `*_free` functions; each block says why it holds. No panic crosses
//! the boundary: every entry point runs inside `guard` (`catch_unwind`), which turns a panic
//! into `WARREN_E_INTERNAL` (in a build with `panic = "abort"`, as the workspace's release
//! profile is, a panic aborts the process instead of unwinding).
#![allow(non_camel_case_types)]
// The entry points are called from C, where Rust's `unsafe fn` marker means nothing: their
// safety contract is the header's (valid pointers, ownership, one thread per client), and each
// dereference carries a `// SAFETY:` note that cites it.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod conn;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use conn::{Conn, Failure};
use warren_proto::{
    Bodies, Deliveries, Delivery, Filter, Frame, Identity, MAX_BATCH, Message, Request, Response,
    Rights,
};

/// The default mailbox's handle in every environment's table.
const DEFAULT_MAILBOX: u32 = 1;
/// The largest packet `warren_send_batch` fills (as the Rust client's `send_many`).
const BATCH_PACKET: usize = 64 * 1024;
/// Batch frames `warren_send_batch` keeps in flight when it waits for room.
const SEND_WINDOW: usize = 8;

// ---------------------------------------------------------------------------------------------
// Status codes.

/// Success.
pub const WARREN_OK: c_int = 0;
/// A system call on the connection failed (errno is in the message).
pub const WARREN_E_IO: c_int = 1000;
/// The kernel closed the connection.
pub const WARREN_E_CLOSED: c_int = 1001;
/// The kernel sent bytes that do not decode (stop using the connection).
pub const WARREN_E_DECODE: c_int = 1002;
/// The request exceeds a protocol limit; nothing was sent.
pub const WARREN_E_ENCODE: c_int = 1003;
/// The kernel answered with something the request does not expect.
pub const WARREN_E_UNEXPECTED: c_int = 1004;
/// No kernel connection (`WARREN_FD` unset or not a socket).
pub const WARREN_E_NO_CONNECTION: c_int = 1005;
/// A bad argument (a NULL pointer, a string that is not UTF-8, ...).
pub const WARREN_E_INVALID: c_int = 1006;
/// Nothing to do without blocking (event-loop calls).
pub const WARREN_E_WOULD_BLOCK: c_int = 1007;
/// A bug in libwarren (a caught panic).
pub const WARREN_E_INTERNAL: c_int = 1008;
/// The kernel's protocol version lacks the operation (batches need version 2).
pub const WARREN_E_UNSUPPORTED: c_int = 1009;

/// The names of the kernel's error codes (docs/protocol.md section 10), by number; 14 (`quota`)
/// is answered only on protocol version 3, as are 40 and 41 (spawn, section 16). A unit test
/// checks them against `warren-proto`.
const KERNEL_CODE_NAMES: [(c_int, &CStr); 17] = [
    (1, c"bad-request"),
    (2, c"no-such-handle"),
    (3, c"no-right"),
    (4, c"revoked"),
    (5, c"expired"),
    (6, c"used-up"),
    (7, c"full"),
    (8, c"timeout"),
    (9, c"not-found"),
    (10, c"dead"),
    (11, c"version"),
    (12, c"too-large"),
    (13, c"unavailable"),
    (14, c"quota"),
    (20, c"attest-failed"),
    (40, c"spawn-failed"),
    (41, c"not-allowed"),
];

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: String) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Records the failure's message for `warren_last_error` and returns its status.
fn fail(f: Failure) -> c_int {
    let (code, msg) = match f {
        Failure::Kernel(code, detail) => (code as u16 as c_int, format!("{code}: {detail}")),
        Failure::Io(e) => (WARREN_E_IO, format!("kernel connection: {e}")),
        Failure::Closed => (WARREN_E_CLOSED, "the kernel closed the connection".into()),
        Failure::Decode(e) => (
            WARREN_E_DECODE,
            format!("undecodable packet from the kernel: {e}"),
        ),
        Failure::Encode(e) => (WARREN_E_ENCODE, format!("request too large: {e}")),
        Failure::Unexpected(s) => (
            WARREN_E_UNEXPECTED,
            format!("unexpected answer from the kernel: {s}"),
        ),
        Failure::WouldBlock => (WARREN_E_WOULD_BLOCK, "would block".into()),
        Failure::Invalid(s) => (WARREN_E_INVALID, format!("invalid argument: {s}")),
        Failure::NoConnection(s) => (WARREN_E_NO_CONNECTION, format!("no kernel connection: {s}")),
        Failure::Unsupported(s) => (WARREN_E_UNSUPPORTED, s),
    };
    set_error(msg);
    code
}

/// Runs an entry point's body: `Ok` is `WARREN_OK`, a failure its status, a panic
/// `WARREN_E_INTERNAL`.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => WARREN_OK,
        Ok(Err(e)) => fail(e),
        Err(_) => {
            set_error("internal error in libwarren (a panic was caught)".into());
            WARREN_E_INTERNAL
        }
    }
}

fn invalid(s: &str) -> Failure {
    Failure::Invalid(s.to_owned())
}

// ---------------------------------------------------------------------------------------------
// The only places raw pointers from C are read or written.

/// `len` bytes at `ptr` (NULL allowed when `len` is 0).
fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(&format!("{what} is NULL with a length of {len}")));
    }
    // SAFETY: the header requires `ptr` to point to `len` initialised, readable elements that
    // stay valid and unmodified for the duration of the call; it is not NULL (checked).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The value at `ptr`, or none for NULL.
fn opt_ref<'a, T>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: the header requires a non-NULL pointer argument to point to a valid, aligned
    // value for the duration of the call; `as_ref` maps NULL to None.
    unsafe { ptr.as_ref() }
}

/// The value at `ptr`, which must not be NULL.
fn arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    opt_ref(ptr).ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// Store `v` at the out-parameter `ptr` (ignored when NULL).
fn out<T>(ptr: *mut T, v: T) {
    if !ptr.is_null() {
        // SAFETY: the header requires a non-NULL out-parameter to point to writable, aligned
        // storage for a `T`; the old value is plain data (integers or pointers) and is
        // overwritten without being dropped.
        unsafe { ptr.write(v) }
    }
}

/// A NUL-terminated UTF-8 string argument.
fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: the header requires string arguments to be NUL-terminated and valid for the
    // duration of the call; not NULL (checked).
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// The client behind a `warren_client *`.
fn client<'a>(c: *mut warren_client) -> Result<&'a mut warren_client, Failure> {
    // SAFETY: the header requires `c` to be a client returned by `warren_connect` or
    // `warren_from_fd`, not yet closed, used by one thread at a time; `as_mut` maps NULL to
    // None.
    unsafe { c.as_mut() }.ok_or_else(|| invalid("the client is NULL"))
}

// ---------------------------------------------------------------------------------------------
// C types.

/// A connection to the kernel (opaque).
pub struct warren_client {
    conn: Conn,
    env_z: CString,
    /// The detail of the last Error completion handed out.
    detail_z: CString,
}

/// A header of a message: a name (`name_len` bytes of UTF-8) and a value.
#[repr(C)]
pub struct warren_header {
    /// The name's bytes (UTF-8, need not be NUL-terminated).
    pub name: *const c_char,
    /// The name's length in bytes (at most 255).
    pub name_len: usize,
    /// The value's bytes.
    pub value: *const u8,
    /// The value's length (at most 1024).
    pub value_len: usize,
}

/// A message to send.
#[repr(C)]
pub struct warren_message {
    /// Headers (at most 32), or NULL with `n_headers` 0.
    pub headers: *const warren_header,
    /// How many headers.
    pub n_headers: usize,
    /// Whether `correlation` is set.
    pub has_correlation: bool,
    /// The correlation id.
    pub correlation: u64,
    /// The body's bytes.
    pub body: *const u8,
    /// The body's length (at most 983040).
    pub body_len: usize,
    /// Handles to attach (each needs GRANT), at most 16.
    pub caps: *const u32,
    /// How many handles.
    pub n_caps: usize,
    /// A mailbox of the sender's (a handle with RECEIVE) to be answered at; 0 = none.
    pub reply_to: u32,
}

/// A selective-receive filter.
#[repr(C)]
pub struct warren_filter {
    /// Whether to match `correlation`.
    pub has_correlation: bool,
    /// Only messages with this correlation id.
    pub correlation: u64,
    /// Only messages with a header of this name (NULL = no header condition).
    pub header_name: *const c_char,
    /// The header name's length.
    pub header_name_len: usize,
    /// ... and exactly this value.
    pub header_value: *const u8,
    /// The value's length (at most 1024).
    pub header_value_len: usize,
}

/// A body for a batch send.
#[repr(C)]
pub struct warren_bytes {
    /// The bytes.
    pub ptr: *const u8,
    /// How many.
    pub len: usize,
}

/// A received message (opaque; free with `warren_delivery_free`).
pub struct warren_delivery {
    d: Delivery,
    from_z: CString,
}

/// What a batch receive took (opaque; free with `warren_batch_free`).
pub struct warren_batch {
    mailbox: u32,
    /// How many plain messages.
    count: usize,
    /// Plain messages by index, (run, offset of the body in that run's encoded bodies,
    /// length): built on the first `warren_batch_get`, so that a reader that walks the batch
    /// with `warren_batch_next` never pays for it.
    index: std::cell::OnceCell<Vec<(u32, u32, u32)>>,
    runs: Vec<(CString, u64, Bodies)>,
    /// `warren_batch_next`'s position: (run, byte offset in its encoded bodies).
    cursor: (usize, usize),
    /// A message that is not plain, which came alone.
    one: Option<Box<warren_delivery>>,
}

/// A Whoami answer (opaque; free with `warren_identity_free`).
pub struct warren_identity {
    env: CString,
    entries: Vec<(u32, CString, u32)>,
}

/// Resource limits for a spawn or a restricted SPAWN handle (`docs/protocol.md` section 16);
/// each field 0 = no limit asked (the ceiling).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct warren_limits {
    /// Memory, in bytes.
    pub memory: u64,
    /// Most processes and threads.
    pub pids: u64,
    /// CPU, in millionths of a cpu (500000 = half a cpu).
    pub cpus: u64,
    /// Size of `/tmp`, in bytes.
    pub tmpfs_size: u64,
}

/// One variable a spawn sets (NUL-terminated strings, borrowed for the call).
#[repr(C)]
pub struct warren_env_var {
    /// The variable's name.
    pub name: *const c_char,
    /// Its value.
    pub value: *const c_char,
}

/// One initial name of a spawned child: `handle` from the spawner's table installed in the
/// child's table under `name` (NUL-terminated, borrowed for the call).
#[repr(C)]
pub struct warren_spawn_name {
    /// The name in the child's table.
    pub name: *const c_char,
    /// The spawner's handle.
    pub handle: u32,
}

/// A Spawn request (everything borrowed for the call only).
#[repr(C)]
pub struct warren_spawn_request {
    /// A handle with SPAWN on the template.
    pub handle: u32,
    /// The child's name suffix (the child is `TEMPLATE-SUFFIX`); NULL lets the kernel number it.
    pub suffix: *const c_char,
    /// Arguments appended to the template's command (NUL-terminated strings).
    pub args: *const *const c_char,
    /// How many.
    pub n_args: usize,
    /// Variables to set.
    pub env: *const warren_env_var,
    /// How many.
    pub n_env: usize,
    /// Limits; NULL = the template's ceilings.
    pub limits: *const warren_limits,
    /// Let the child outlive the spawner.
    pub detach: bool,
    /// The child's initial names.
    pub names: *const warren_spawn_name,
    /// How many.
    pub n_names: usize,
}

/// A Spawned answer (opaque; free with `warren_spawned_free`).
pub struct warren_spawned {
    child: CString,
    mailbox: u32,
    control: u32,
    reference: u64,
}

/// What kind of answer a completion carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum warren_kind {
    /// The request failed: `status` is the error code, `detail` the kernel's text.
    WARREN_DONE_ERROR = 0,
    /// Ok (Send, Revoke, Drop).
    WARREN_DONE_OK = 1,
    /// A handle (Lookup, Attenuate, CreateMailbox): `handle`, `rights`.
    WARREN_DONE_HANDLE = 2,
    /// A monitor reference: `reference`.
    WARREN_DONE_MONITOR = 3,
    /// A message (Recv, or a RecvBatch whose oldest message is not plain): `delivery`.
    WARREN_DONE_DELIVERY = 4,
    /// Plain messages (RecvBatch): `batch`.
    WARREN_DONE_BATCH = 5,
    /// An identity (Whoami): `identity`.
    WARREN_DONE_IDENTITY = 6,
    /// A SendBatch's count: `accepted`.
    WARREN_DONE_ACCEPTED = 7,
    /// An attestation quote: `quote`, `quote_len`.
    WARREN_DONE_QUOTE = 8,
    /// A spawned child (Spawn, protocol version 3): `spawned`.
    WARREN_DONE_SPAWNED = 9,
}

/// One answer, from `warren_next_completion`.
#[repr(C)]
pub struct warren_completion {
    /// The request's id (from its `warren_submit_*` call).
    pub id: u32,
    /// What the answer is.
    pub kind: warren_kind,
    /// `WARREN_OK`, or the error code when `kind` is `WARREN_DONE_ERROR`.
    pub status: c_int,
    /// `WARREN_DONE_HANDLE`: the new handle.
    pub handle: u32,
    /// `WARREN_DONE_HANDLE`: its rights.
    pub rights: u32,
    /// `WARREN_DONE_MONITOR`: the reference.
    pub reference: u64,
    /// `WARREN_DONE_ACCEPTED`: how many bodies were accepted.
    pub accepted: u32,
    /// `WARREN_DONE_DELIVERY`: owned by the caller.
    pub delivery: *mut warren_delivery,
    /// `WARREN_DONE_BATCH`: owned by the caller.
    pub batch: *mut warren_batch,
    /// `WARREN_DONE_IDENTITY`: owned by the caller.
    pub identity: *mut warren_identity,
    /// `WARREN_DONE_QUOTE`: owned by the caller (`warren_buffer_free`).
    pub quote: *mut u8,
    /// The quote's length.
    pub quote_len: usize,
    /// `WARREN_DONE_SPAWNED`: owned by the caller (`warren_spawned_free`).
    pub spawned: *mut warren_spawned,
    /// `WARREN_DONE_ERROR`: the kernel's detail, NUL-terminated, owned by the client and valid
    /// until the next `warren_next_completion` on it.
    pub detail: *const c_char,
}

// ---------------------------------------------------------------------------------------------
// Conversions from C types to protocol values.

fn name_bytes(ptr: *const c_char, len: usize, what: &str) -> Result<String, Failure> {
    let b = slice(ptr.cast::<u8>(), len, what)?;
    String::from_utf8(b.to_vec()).map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

fn to_message(m: *const warren_message) -> Result<Message, Failure> {
    let m = arg(m, "the message")?;
    let mut headers = Vec::with_capacity(m.n_headers);
    for h in slice(m.headers, m.n_headers, "headers")? {
        headers.push((
            name_bytes(h.name, h.name_len, "a header name")?,
            slice(h.value, h.value_len, "a header value")?.to_vec(),
        ));
    }
    Ok(Message {
        headers,
        correlation: m.has_correlation.then_some(m.correlation),
        body: slice(m.body, m.body_len, "the body")?.to_vec(),
        caps: slice(m.caps, m.n_caps, "caps")?.to_vec(),
        reply_to: (m.reply_to != 0).then_some(m.reply_to),
    })
}

fn to_filter(f: *const warren_filter) -> Result<Filter, Failure> {
    let Some(f) = opt_ref(f) else {
        return Ok(Filter::default());
    };
    let header = if f.header_name.is_null() {
        None
    } else {
        Some((
            name_bytes(f.header_name, f.header_name_len, "the filter's header name")?,
            slice(
                f.header_value,
                f.header_value_len,
                "the filter's header value",
            )?
            .to_vec(),
        ))
    };
    Ok(Filter {
        correlation: f.has_correlation.then_some(f.correlation),
        header,
    })
}

fn timeout(ms: i64) -> Option<u64> {
    u64::try_from(ms).ok()
}

fn mailbox(h: u32) -> Option<u32> {
    (h != 0).then_some(h)
}

fn zstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

fn boxed_delivery(d: Delivery) -> Box<warren_delivery> {
    let from_z = zstring(&d.from.env);
    Box::new(warren_delivery { d, from_z })
}

fn boxed_batch(d: Deliveries) -> Box<warren_batch> {
    Box::new(warren_batch {
        mailbox: d.mailbox,
        count: d.len(),
        index: std::cell::OnceCell::new(),
        runs: d
            .runs
            .into_iter()
            .map(|r| (zstring(&r.from.env), r.from.badge, r.bodies))
            .collect(),
        cursor: (0, 0),
        one: None,
    })
}

fn batch_index(b: &warren_batch) -> &[(u32, u32, u32)] {
    b.index.get_or_init(|| {
        let mut index = Vec::with_capacity(b.count);
        for (r, (_, _, bodies)) in b.runs.iter().enumerate() {
            let mut pos = 0usize;
            for body in bodies.iter() {
                index.push((r as u32, (pos + 4) as u32, body.len() as u32));
                pos += 4 + body.len();
            }
        }
        index
    })
}

fn boxed_identity(i: Identity) -> Box<warren_identity> {
    Box::new(warren_identity {
        env: zstring(&i.env),
        entries: i
            .handles
            .into_iter()
            .map(|(h, d, r)| (h, zstring(&d), r.0))
            .collect(),
    })
}

fn boxed_spawned(s: warren_proto::Spawned) -> Box<warren_spawned> {
    Box::new(warren_spawned {
        child: zstring(&s.child),
        mailbox: s.mailbox,
        control: s.control,
        reference: s.reference,
    })
}

fn unexpected(r: Response) -> Failure {
    Failure::Unexpected(format!("{r:?}"))
}

fn need_v2(c: &warren_client) -> Result<(), Failure> {
    if c.conn.version < 2 {
        Err(Failure::Unsupported(format!(
            "the kernel speaks protocol version {}; batch frames need 2",
            c.conn.version
        )))
    } else {
        Ok(())
    }
}

fn need_v3(c: &warren_client) -> Result<(), Failure> {
    if c.conn.version < warren_proto::SPAWN_VERSION {
        Err(Failure::Unsupported(format!(
            "the kernel speaks protocol version {}; spawn needs {}",
            c.conn.version,
            warren_proto::SPAWN_VERSION
        )))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Connection.

fn new_client(conn: Conn) -> *mut warren_client {
    let env_z = zstring(&conn.env);
    Box::into_raw(Box::new(warren_client {
        conn,
        env_z,
        detail_z: CString::default(),
    }))
}

/// Connect through the descriptor named by `WARREN_FD` (3 when unset) and shake hands.
#[unsafe(no_mangle)]
pub extern "C" fn warren_connect(out_client: *mut *mut warren_client) -> c_int {
    guard(|| {
        let fd = match std::env::var("WARREN_FD") {
            Ok(v) => v.trim().parse::<i32>().map_err(|_| {
                Failure::NoConnection(format!("WARREN_FD={v:?} is not a descriptor number"))
            })?,
            Err(_) => 3,
        };
        let owned = warren_sys::take_inherited_socket(fd)
            .map_err(|e| Failure::NoConnection(format!("descriptor {fd}: {e}")))?;
        out(out_client, new_client(Conn::handshake(owned)?));
        Ok(())
    })
}

/// Take ownership of `fd` (one end of a kernel connection) and shake hands.
#[unsafe(no_mangle)]
pub extern "C" fn warren_from_fd(fd: c_int, out_client: *mut *mut warren_client) -> c_int {
    guard(|| {
        if fd < 0 {
            return Err(invalid("a negative descriptor"));
        }
        // SAFETY: the header documents that the call takes ownership of `fd`, which the caller
        // must own and not use or close afterwards (libwarren closes it in `warren_close`).
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // As `warren_connect`: a descriptor that is not a socket is no kernel connection (it is
        // closed on the way out, as ownership passed).
        let st = rustix::fs::fstat(&owned)
            .map_err(|e| Failure::NoConnection(format!("descriptor {fd}: {e}")))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
            return Err(Failure::NoConnection(format!(
                "descriptor {fd} is not a socket"
            )));
        }
        out(out_client, new_client(Conn::handshake(owned)?));
        Ok(())
    })
}

/// Close the connection and free the client (NULL is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn warren_close(c: *mut warren_client) {
    if !c.is_null() {
        // SAFETY: the header requires `c` to come from `warren_connect`/`warren_from_fd` and
        // not to be used again; it was made by `Box::into_raw`.
        drop(unsafe { Box::from_raw(c) });
    }
}

/// The environment's name (NUL-terminated, owned by the client).
#[unsafe(no_mangle)]
pub extern "C" fn warren_env(c: *mut warren_client) -> *const c_char {
    client(c).map_or(std::ptr::null(), |c| c.env_z.as_ptr())
}

/// The protocol version agreed with the kernel (0 for a NULL client).
#[unsafe(no_mangle)]
pub extern "C" fn warren_version(c: *mut warren_client) -> u16 {
    client(c).map_or(0, |c| c.conn.version)
}

/// The connection's descriptor, to watch for readability in an event loop (-1 for NULL).
#[unsafe(no_mangle)]
pub extern "C" fn warren_fd(c: *mut warren_client) -> c_int {
    client(c).map_or(-1, |c| c.conn.raw_fd())
}

/// The name of a status (`"ok"`, `"revoked"`, `"io"`, ...), static.
#[unsafe(no_mangle)]
pub extern "C" fn warren_status_name(status: c_int) -> *const c_char {
    let s: &'static CStr = match status {
        WARREN_OK => c"ok",
        WARREN_E_IO => c"io",
        WARREN_E_CLOSED => c"closed",
        WARREN_E_DECODE => c"decode",
        WARREN_E_ENCODE => c"encode",
        WARREN_E_UNEXPECTED => c"unexpected",
        WARREN_E_NO_CONNECTION => c"no-connection",
        WARREN_E_INVALID => c"invalid",
        WARREN_E_WOULD_BLOCK => c"would-block",
        WARREN_E_INTERNAL => c"internal",
        WARREN_E_UNSUPPORTED => c"unsupported",
        n => KERNEL_CODE_NAMES
            .iter()
            .find(|(code, _)| *code == n)
            .map_or(c"unknown", |(_, name)| *name),
    };
    s.as_ptr()
}

/// The message of this thread's last failed call (NUL-terminated, valid until this thread's
/// next failing call).
#[unsafe(no_mangle)]
pub extern "C" fn warren_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ---------------------------------------------------------------------------------------------
// Requests built from C arguments, shared by the blocking and the submit calls.

fn req_attenuate(
    handle: u32,
    rights: u32,
    uses: *const u32,
    expires_in_ms: *const u64,
    badge: *const u64,
) -> Result<Request, Failure> {
    if rights & !Rights::KNOWN.0 != 0 {
        return Err(invalid(&format!("rights {rights:#x} has unknown bits")));
    }
    Ok(Request::Attenuate {
        handle,
        rights: Rights(rights),
        uses: opt_ref(uses).copied(),
        expires_in_ms: opt_ref(expires_in_ms).copied(),
        badge: opt_ref(badge).copied(),
    })
}

fn req_attest(
    nonce: *const u8,
    nonce_len: usize,
    data: *const u8,
    data_len: usize,
) -> Result<Request, Failure> {
    Ok(Request::Attest {
        nonce: slice(nonce, nonce_len, "the nonce")?.to_vec(),
        data: slice(data, data_len, "the data")?.to_vec(),
    })
}

fn to_limits(l: *const warren_limits) -> warren_proto::Limits {
    let l = opt_ref(l).copied().unwrap_or_default();
    let some = |v: u64| (v != 0).then_some(v);
    warren_proto::Limits {
        memory: some(l.memory),
        pids: some(l.pids),
        cpus: some(l.cpus),
        tmpfs_size: some(l.tmpfs_size),
    }
}

fn req_spawn(r: *const warren_spawn_request) -> Result<Request, Failure> {
    let r = arg(r, "the spawn request")?;
    let suffix = if r.suffix.is_null() {
        None
    } else {
        Some(str_arg(r.suffix, "the suffix")?.to_owned())
    };
    let args = slice(r.args, r.n_args, "args")?
        .iter()
        .map(|a| str_arg(*a, "an argument").map(str::to_owned))
        .collect::<Result<_, _>>()?;
    let env = slice(r.env, r.n_env, "env")?
        .iter()
        .map(|v| {
            Ok((
                str_arg(v.name, "a variable's name")?.to_owned(),
                str_arg(v.value, "a variable's value")?.to_owned(),
            ))
        })
        .collect::<Result<_, Failure>>()?;
    let names = slice(r.names, r.n_names, "names")?
        .iter()
        .map(|n| Ok((str_arg(n.name, "an initial name")?.to_owned(), n.handle)))
        .collect::<Result<_, Failure>>()?;
    Ok(Request::Spawn(warren_proto::Spawn {
        handle: r.handle,
        suffix,
        args,
        env,
        limits: to_limits(r.limits),
        detach: r.detach,
        names,
    }))
}

fn req_restrict(
    handle: u32,
    share: *const u32,
    limits: *const warren_limits,
) -> Result<Request, Failure> {
    Ok(Request::Restrict {
        handle,
        share: opt_ref(share).copied(),
        limits: to_limits(limits),
    })
}

fn req_create(name: *const c_char) -> Result<Request, Failure> {
    Ok(Request::CreateMailbox {
        name: if name.is_null() {
            None
        } else {
            Some(str_arg(name, "the mailbox name")?.to_owned())
        },
    })
}

fn bodies_of<'a>(bodies: *const warren_bytes, n: usize) -> Result<Vec<&'a [u8]>, Failure> {
    slice(bodies, n, "the bodies")?
        .iter()
        .map(|b| slice(b.ptr, b.len, "a body"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Blocking calls.

/// Send `msg` through `handle`; `wait`: wait for room when the mailbox is full (else `full`).
#[unsafe(no_mangle)]
pub extern "C" fn warren_send(
    c: *mut warren_client,
    handle: u32,
    msg: *const warren_message,
    wait: bool,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let message = to_message(msg)?;
        match c.conn.request(Request::Send {
            handle,
            message,
            wait,
        })? {
            Response::Ok => Ok(()),
            r => Err(unexpected(r)),
        }
    })
}

/// Take the oldest message of `mailbox` (0 = the default one) that matches `filter` (NULL =
/// any), waiting up to `timeout_ms` (negative = forever, 0 = not at all).
#[unsafe(no_mangle)]
pub extern "C" fn warren_recv(
    c: *mut warren_client,
    mailbox_handle: u32,
    filter: *const warren_filter,
    timeout_ms: i64,
    out_delivery: *mut *mut warren_delivery,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let filter = to_filter(filter)?;
        match c.conn.request(Request::Recv {
            mailbox: mailbox(mailbox_handle),
            filter,
            timeout_ms: timeout(timeout_ms),
        })? {
            Response::Delivery(d) => {
                out(out_delivery, Box::into_raw(boxed_delivery(d)));
                Ok(())
            }
            r => Err(unexpected(r)),
        }
    })
}

fn handle_answer(r: Response, h: *mut u32, rights: *mut u32) -> Result<(), Failure> {
    match r {
        Response::Handle {
            handle,
            rights: got,
        } => {
            out(h, handle);
            out(rights, got.0);
            Ok(())
        }
        r => Err(unexpected(r)),
    }
}

/// A handle for the mailbox `name` (NUL-terminated), where policy lets this environment
/// discover it.
#[unsafe(no_mangle)]
pub extern "C" fn warren_lookup(
    c: *mut warren_client,
    name: *const c_char,
    out_handle: *mut u32,
    out_rights: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let name = str_arg(name, "the name")?.to_owned();
        handle_answer(
            c.conn.request(Request::Lookup { name })?,
            out_handle,
            out_rights,
        )
    })
}

/// This environment's name and every handle in its table.
#[unsafe(no_mangle)]
pub extern "C" fn warren_whoami(
    c: *mut warren_client,
    out_identity: *mut *mut warren_identity,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        match c.conn.request(Request::Whoami)? {
            Response::Identity(i) => {
                out(out_identity, Box::into_raw(boxed_identity(i)));
                Ok(())
            }
            r => Err(unexpected(r)),
        }
    })
}

/// A weaker handle derived from `handle`. `uses`, `expires_in_ms`, `badge`: NULL = none.
#[unsafe(no_mangle)]
pub extern "C" fn warren_attenuate(
    c: *mut warren_client,
    handle: u32,
    rights: u32,
    uses: *const u32,
    expires_in_ms: *const u64,
    badge: *const u64,
    out_handle: *mut u32,
    out_rights: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_attenuate(handle, rights, uses, expires_in_ms, badge)?;
        handle_answer(c.conn.request(req)?, out_handle, out_rights)
    })
}

fn ok_answer(r: Response) -> Result<(), Failure> {
    match r {
        Response::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

/// Revoke every capability derived from `handle`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_revoke(c: *mut warren_client, handle: u32) -> c_int {
    guard(|| ok_answer(client(c)?.conn.request(Request::Revoke { handle })?))
}

/// Remove `handle` from this environment's table.
#[unsafe(no_mangle)]
pub extern "C" fn warren_drop(c: *mut warren_client, handle: u32) -> c_int {
    guard(|| ok_answer(client(c)?.conn.request(Request::Drop { handle })?))
}

/// Be sent a `down` notice when the owner of `handle`'s mailbox ends.
#[unsafe(no_mangle)]
pub extern "C" fn warren_monitor(
    c: *mut warren_client,
    handle: u32,
    out_reference: *mut u64,
) -> c_int {
    guard(
        || match client(c)?.conn.request(Request::Monitor { handle })? {
            Response::Monitor { reference } => {
                out(out_reference, reference);
                Ok(())
            }
            r => Err(unexpected(r)),
        },
    )
}

/// Create a mailbox (`name` NULL = unnamed); returns its RECEIVE|SEND|GRANT|MONITOR handle.
#[unsafe(no_mangle)]
pub extern "C" fn warren_create_mailbox(
    c: *mut warren_client,
    name: *const c_char,
    out_handle: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_create(name)?;
        handle_answer(c.conn.request(req)?, out_handle, std::ptr::null_mut())
    })
}

/// A quote binding this environment's launch record and `data` to `nonce`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_attest(
    c: *mut warren_client,
    nonce: *const u8,
    nonce_len: usize,
    data: *const u8,
    data_len: usize,
    out_quote: *mut *mut u8,
    out_quote_len: *mut usize,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_attest(nonce, nonce_len, data, data_len)?;
        match c.conn.request(req)? {
            Response::Quote { quote } => {
                let (p, n) = into_buffer(quote);
                out(out_quote, p);
                out(out_quote_len, n);
                Ok(())
            }
            r => Err(unexpected(r)),
        }
    })
}

/// Create a child environment from a template (protocol version 3; `req->handle` needs SPAWN).
/// `*out_spawned` is the caller's (`warren_spawned_free`).
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawn(
    c: *mut warren_client,
    req: *const warren_spawn_request,
    out_spawned: *mut *mut warren_spawned,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        let req = req_spawn(req)?;
        match c.conn.request(req)? {
            Response::Spawned(s) => {
                out(out_spawned, Box::into_raw(boxed_spawned(s)));
                Ok(())
            }
            r => Err(unexpected(r)),
        }
    })
}

/// Stop the environment `handle` designates (protocol version 3; needs STOP): SIGTERM, then
/// SIGKILL after the grace period, or SIGKILL at once with `kill`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_stop(c: *mut warren_client, handle: u32, kill: bool) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        ok_answer(c.conn.request(Request::Stop { handle, kill })?)
    })
}

/// A new SPAWN handle derived from `handle` (protocol version 3): at most `*share` live
/// children (NULL = no share of its own) and the lower of its ceilings and `limits` (NULL =
/// none lower).
#[unsafe(no_mangle)]
pub extern "C" fn warren_restrict(
    c: *mut warren_client,
    handle: u32,
    share: *const u32,
    limits: *const warren_limits,
    out_handle: *mut u32,
    out_rights: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        let req = req_restrict(handle, share, limits)?;
        handle_answer(c.conn.request(req)?, out_handle, out_rights)
    })
}

fn into_buffer(v: Vec<u8>) -> (*mut u8, usize) {
    let b = v.into_boxed_slice();
    let n = b.len();
    (Box::into_raw(b).cast::<u8>(), n)
}

/// Free a buffer libwarren returned (a quote), with its length. NULL is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn warren_buffer_free(p: *mut u8, len: usize) {
    if !p.is_null() {
        // SAFETY: the header requires `p`/`len` to be exactly a buffer returned by libwarren
        // (made by `into_buffer` from a boxed slice of that length), freed once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
    }
}

fn encode_chunks(bodies: &[&[u8]]) -> Result<Vec<Bodies>, Failure> {
    let mut chunks = Vec::new();
    let mut chunk = Bodies::with_capacity(BATCH_PACKET);
    for b in bodies {
        let fits = chunk.encoded_len() + 4 + b.len() <= BATCH_PACKET - 64;
        if !chunk.is_empty() && (!fits || chunk.len() == MAX_BATCH) {
            chunks.push(std::mem::replace(
                &mut chunk,
                Bodies::with_capacity(BATCH_PACKET),
            ));
        }
        chunk.push(b)?;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

fn accepted(r: Response) -> Result<usize, Failure> {
    match r {
        Response::Accepted { count } => Ok(count as usize),
        Response::Error { code, detail } => Err(Failure::Kernel(code, detail)),
        r => Err(unexpected(r)),
    }
}

/// Send `n` plain bodies through `handle` in batch frames (protocol version 2). With `wait`,
/// every body is accepted (frames pipelined, at most 8 in flight); without, sending stops at
/// the first frame not accepted whole. `*out_accepted`: how many were accepted, a prefix.
#[unsafe(no_mangle)]
pub extern "C" fn warren_send_batch(
    c: *mut warren_client,
    handle: u32,
    bodies: *const warren_bytes,
    n: usize,
    wait: bool,
    out_accepted: *mut usize,
) -> c_int {
    out(out_accepted, 0);
    guard(|| {
        let c = client(c)?;
        need_v2(c)?;
        let bodies = bodies_of(bodies, n)?;
        let chunks = encode_chunks(&bodies)?;
        let mut total = 0usize;
        let mut inflight: std::collections::VecDeque<(u32, usize)> = Default::default();
        for chunk in &chunks {
            let id = c.conn.submit_send_batch(handle, wait, false, chunk)?;
            c.conn.flush(true)?;
            if wait {
                inflight.push_back((id, chunk.len()));
                if inflight.len() >= SEND_WINDOW {
                    let (id, k) = inflight.pop_front().unwrap_or((0, 0));
                    total += accepted(c.conn.wait_for(id, None)?)?.min(k);
                    out(out_accepted, total);
                }
                continue;
            }
            let got = accepted(c.conn.wait_for(id, None)?)?;
            total += got;
            out(out_accepted, total);
            if got < chunk.len() {
                return Ok(());
            }
        }
        while let Some((id, k)) = inflight.pop_front() {
            total += accepted(c.conn.wait_for(id, None)?)?.min(k);
            out(out_accepted, total);
        }
        Ok(())
    })
}

fn batch_answer(r: Response, out_batch: *mut *mut warren_batch) -> Result<(), Failure> {
    let b = match r {
        Response::Deliveries(d) => boxed_batch(d),
        Response::Delivery(d) => Box::new(warren_batch {
            mailbox: d.mailbox,
            count: 0,
            index: std::cell::OnceCell::new(),
            runs: Vec::new(),
            cursor: (0, 0),
            one: Some(boxed_delivery(d)),
        }),
        r => return Err(unexpected(r)),
    };
    out(out_batch, Box::into_raw(b));
    Ok(())
}

/// Take up to `max` (1..16384) messages of `mailbox` (0 = default) in one request, waiting up
/// to `timeout_ms` for the first (protocol version 2).
#[unsafe(no_mangle)]
pub extern "C" fn warren_recv_batch(
    c: *mut warren_client,
    mailbox_handle: u32,
    max: u32,
    timeout_ms: i64,
    out_batch: *mut *mut warren_batch,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v2(c)?;
        let r = c.conn.request(Request::RecvBatch {
            mailbox: mailbox(mailbox_handle),
            max: max.clamp(1, MAX_BATCH as u32),
            timeout_ms: timeout(timeout_ms),
        })?;
        batch_answer(r, out_batch)
    })
}

/// Send `msg` through `handle` (waiting for room) and take the next message of the default
/// mailbox, both in one packet (a server's reply-and-wait step). On protocol version 2 a plain
/// message goes as a quiet one-body batch, as the Rust client's `send_and_recv`.
/// `*out_send_status` is the send's outcome; the return value is the receive's.
#[unsafe(no_mangle)]
pub extern "C" fn warren_send_recv(
    c: *mut warren_client,
    handle: u32,
    msg: *const warren_message,
    timeout_ms: i64,
    out_send_status: *mut c_int,
    out_delivery: *mut *mut warren_delivery,
) -> c_int {
    out(out_send_status, WARREN_OK);
    let mut send_failure = None;
    let r = guard(|| {
        let c = client(c)?;
        let message = to_message(msg)?;
        let plain = message.headers.is_empty()
            && message.correlation.is_none()
            && message.caps.is_empty()
            && message.reply_to.is_none();
        let quiet = c.conn.version >= 2 && plain;
        let send_id = if quiet {
            let mut b = Bodies::with_capacity(4 + message.body.len());
            b.push(&message.body)?;
            c.conn.submit_send_batch(handle, true, true, &b)?
        } else {
            c.conn.submit(Request::Send {
                handle,
                message,
                wait: true,
            })?
        };
        let recv_id = c.conn.submit(Request::Recv {
            mailbox: None,
            filter: Filter::default(),
            timeout_ms: timeout(timeout_ms),
        })?;
        let deadline = timeout(timeout_ms).and_then(|ms| {
            std::time::Instant::now().checked_add(Duration::from_millis(ms) + conn::RESTART_GRACE)
        });
        let got = c.conn.wait_for(recv_id, deadline)?;
        let sent = if quiet {
            c.conn.take(send_id)
        } else {
            Some(c.conn.wait_for(send_id, None)?)
        };
        match sent {
            None | Some(Response::Ok) => {}
            Some(Response::Error { code, detail }) => {
                send_failure = Some(Failure::Kernel(code, detail))
            }
            Some(r) => send_failure = Some(unexpected(r)),
        }
        match got {
            Response::Delivery(d) => {
                out(out_delivery, Box::into_raw(boxed_delivery(d)));
                Ok(())
            }
            Response::Error { code, detail } => Err(Failure::Kernel(code, detail)),
            r => Err(unexpected(r)),
        }
    });
    if let Some(f) = send_failure {
        let saved = LAST_ERROR.with(|e| e.borrow().clone());
        out(out_send_status, fail(f));
        if r != WARREN_OK {
            LAST_ERROR.with(|e| *e.borrow_mut() = saved);
        }
    }
    r
}

/// Request and reply: send `msg` through `handle` with a fresh correlation id and a one-shot
/// reply capability to the default mailbox, then wait (up to `timeout_ms`) for the message
/// carrying that correlation id. The convention of `warren-msg call`: the correlation id is
/// `(pid << 32) | request id`; the message's own correlation and `reply_to` are replaced.
#[unsafe(no_mangle)]
pub extern "C" fn warren_call(
    c: *mut warren_client,
    handle: u32,
    msg: *const warren_message,
    timeout_ms: i64,
    out_reply: *mut *mut warren_delivery,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let mut message = to_message(msg)?;
        let correlation = (u64::from(std::process::id()) << 32) | u64::from(c.conn.next_id());
        message.correlation = Some(correlation);
        message.reply_to = Some(DEFAULT_MAILBOX);
        ok_answer(c.conn.request(Request::Send {
            handle,
            message,
            wait: true,
        })?)?;
        match c.conn.request(Request::Recv {
            mailbox: None,
            filter: Filter {
                correlation: Some(correlation),
                header: None,
            },
            timeout_ms: timeout(timeout_ms),
        })? {
            Response::Delivery(d) => {
                out(out_reply, Box::into_raw(boxed_delivery(d)));
                Ok(())
            }
            r => Err(unexpected(r)),
        }
    })
}

/// Answer `request` (a message received with a reply handle): send `msg` through the
/// request's reply handle, carrying the request's correlation id (the message's own is
/// replaced). The kernel removes the spent reply handle from the table by itself; if the send
/// is refused, the handle is dropped here (a server that cannot answer drops it), and the
/// send's refusal is returned. `WARREN_E_INVALID` if the request has no reply handle.
#[unsafe(no_mangle)]
pub extern "C" fn warren_reply(
    c: *mut warren_client,
    request: *const warren_delivery,
    msg: *const warren_message,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = arg(request, "the request")?;
        let reply = req
            .d
            .reply
            .ok_or_else(|| invalid("the request carries no reply handle"))?;
        let mut message = to_message(msg)?;
        message.correlation = req.d.correlation;
        message.reply_to = None;
        match c.conn.request(Request::Send {
            handle: reply,
            message,
            wait: true,
        }) {
            Ok(r) => ok_answer(r),
            Err(refused @ Failure::Kernel(..)) => {
                // Not spent: the handle is still in the table. Best effort; the refusal is
                // what the caller needs to know.
                let _ = c.conn.request(Request::Drop { handle: reply });
                Err(refused)
            }
            Err(e) => Err(e),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Event-loop calls: submit (never blocks unless the outgoing packet is full), flush, process,
// next completion.

fn submitted(id: u32, out_id: *mut u32) -> Result<(), Failure> {
    out(out_id, id);
    Ok(())
}

/// Queue a Send; its answer comes as a completion with the id stored at `out_id`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_send(
    c: *mut warren_client,
    handle: u32,
    msg: *const warren_message,
    wait: bool,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let message = to_message(msg)?;
        submitted(
            c.conn.submit(Request::Send {
                handle,
                message,
                wait,
            })?,
            out_id,
        )
    })
}

/// Queue a Recv.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_recv(
    c: *mut warren_client,
    mailbox_handle: u32,
    filter: *const warren_filter,
    timeout_ms: i64,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let filter = to_filter(filter)?;
        submitted(
            c.conn.submit(Request::Recv {
                mailbox: mailbox(mailbox_handle),
                filter,
                timeout_ms: timeout(timeout_ms),
            })?,
            out_id,
        )
    })
}

/// Queue a Lookup.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_lookup(
    c: *mut warren_client,
    name: *const c_char,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let name = str_arg(name, "the name")?.to_owned();
        submitted(c.conn.submit(Request::Lookup { name })?, out_id)
    })
}

/// Queue a Whoami.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_whoami(c: *mut warren_client, out_id: *mut u32) -> c_int {
    guard(|| {
        let c = client(c)?;
        submitted(c.conn.submit(Request::Whoami)?, out_id)
    })
}

/// Queue an Attenuate.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_attenuate(
    c: *mut warren_client,
    handle: u32,
    rights: u32,
    uses: *const u32,
    expires_in_ms: *const u64,
    badge: *const u64,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_attenuate(handle, rights, uses, expires_in_ms, badge)?;
        submitted(c.conn.submit(req)?, out_id)
    })
}

/// Queue a Revoke.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_revoke(
    c: *mut warren_client,
    handle: u32,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        submitted(c.conn.submit(Request::Revoke { handle })?, out_id)
    })
}

/// Queue a Drop.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_drop(
    c: *mut warren_client,
    handle: u32,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        submitted(c.conn.submit(Request::Drop { handle })?, out_id)
    })
}

/// Queue a Monitor.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_monitor(
    c: *mut warren_client,
    handle: u32,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        submitted(c.conn.submit(Request::Monitor { handle })?, out_id)
    })
}

/// Queue a CreateMailbox.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_create_mailbox(
    c: *mut warren_client,
    name: *const c_char,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_create(name)?;
        submitted(c.conn.submit(req)?, out_id)
    })
}

/// Queue one SendBatch frame (protocol version 2): `n` bodies (1..16384, the frame within
/// 1 MiB); `quiet`: no answer when every body is accepted.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_send_batch(
    c: *mut warren_client,
    handle: u32,
    bodies: *const warren_bytes,
    n: usize,
    wait: bool,
    quiet: bool,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v2(c)?;
        let bodies = bodies_of(bodies, n)?;
        let mut b = Bodies::with_capacity(bodies.iter().map(|x| 4 + x.len()).sum());
        for body in bodies {
            b.push(body)?;
        }
        submitted(c.conn.submit_send_batch(handle, wait, quiet, &b)?, out_id)
    })
}

/// Queue a RecvBatch (protocol version 2).
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_recv_batch(
    c: *mut warren_client,
    mailbox_handle: u32,
    max: u32,
    timeout_ms: i64,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v2(c)?;
        submitted(
            c.conn.submit(Request::RecvBatch {
                mailbox: mailbox(mailbox_handle),
                max: max.clamp(1, MAX_BATCH as u32),
                timeout_ms: timeout(timeout_ms),
            })?,
            out_id,
        )
    })
}

/// Queue an Attest.
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_attest(
    c: *mut warren_client,
    nonce: *const u8,
    nonce_len: usize,
    data: *const u8,
    data_len: usize,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let req = req_attest(nonce, nonce_len, data, data_len)?;
        submitted(c.conn.submit(req)?, out_id)
    })
}

/// Queue a Spawn (protocol version 3).
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_spawn(
    c: *mut warren_client,
    req: *const warren_spawn_request,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        let req = req_spawn(req)?;
        submitted(c.conn.submit(req)?, out_id)
    })
}

/// Queue a Stop (protocol version 3).
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_stop(
    c: *mut warren_client,
    handle: u32,
    kill: bool,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        submitted(c.conn.submit(Request::Stop { handle, kill })?, out_id)
    })
}

/// Queue a Restrict (protocol version 3).
#[unsafe(no_mangle)]
pub extern "C" fn warren_submit_restrict(
    c: *mut warren_client,
    handle: u32,
    share: *const u32,
    limits: *const warren_limits,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        need_v3(c)?;
        let req = req_restrict(handle, share, limits)?;
        submitted(c.conn.submit(req)?, out_id)
    })
}

/// Whether submitted frames wait to be sent (watch the descriptor for writability, then
/// `warren_flush`).
#[unsafe(no_mangle)]
pub extern "C" fn warren_want_write(c: *mut warren_client) -> bool {
    client(c).is_ok_and(|c| c.conn.pending_out())
}

/// Send the submitted frames as one packet, without blocking: `WARREN_E_WOULD_BLOCK` when the
/// socket has no room (they stay queued).
#[unsafe(no_mangle)]
pub extern "C" fn warren_flush(c: *mut warren_client) -> c_int {
    guard(|| client(c)?.conn.flush(false))
}

/// Flush (as `warren_flush`; a full socket is not an error here), then read every packet that
/// is readable now, without blocking. `*out_ready`: how many answers wait to be collected
/// with `warren_next_completion`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_process(c: *mut warren_client, out_ready: *mut usize) -> c_int {
    guard(|| {
        let c = client(c)?;
        match c.conn.flush(false) {
            Ok(()) | Err(Failure::WouldBlock) => {}
            Err(e) => return Err(e),
        }
        c.conn.read_ready()?;
        out(out_ready, c.conn.ready());
        Ok(())
    })
}

/// The oldest answer read and not yet collected, or `WARREN_E_WOULD_BLOCK` when there is none
/// (call `warren_process` when the descriptor is readable). Pointers in `*out` are owned by
/// the caller (free them, or pass `out` to `warren_completion_release`), except `detail`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_next_completion(
    c: *mut warren_client,
    out_completion: *mut warren_completion,
) -> c_int {
    guard(|| {
        let c = client(c)?;
        let Some(Frame { id, body }) = c.conn.pop() else {
            return Err(Failure::WouldBlock);
        };
        let mut done = warren_completion {
            id,
            kind: warren_kind::WARREN_DONE_OK,
            status: WARREN_OK,
            handle: 0,
            rights: 0,
            reference: 0,
            accepted: 0,
            delivery: std::ptr::null_mut(),
            batch: std::ptr::null_mut(),
            identity: std::ptr::null_mut(),
            quote: std::ptr::null_mut(),
            quote_len: 0,
            spawned: std::ptr::null_mut(),
            detail: std::ptr::null(),
        };
        match body {
            Response::Ok | Response::Welcome { .. } => {}
            Response::Handle { handle, rights } => {
                done.kind = warren_kind::WARREN_DONE_HANDLE;
                done.handle = handle;
                done.rights = rights.0;
            }
            Response::Monitor { reference } => {
                done.kind = warren_kind::WARREN_DONE_MONITOR;
                done.reference = reference;
            }
            Response::Delivery(d) => {
                done.kind = warren_kind::WARREN_DONE_DELIVERY;
                done.delivery = Box::into_raw(boxed_delivery(d));
            }
            Response::Deliveries(d) => {
                done.kind = warren_kind::WARREN_DONE_BATCH;
                done.batch = Box::into_raw(boxed_batch(d));
            }
            Response::Identity(i) => {
                done.kind = warren_kind::WARREN_DONE_IDENTITY;
                done.identity = Box::into_raw(boxed_identity(i));
            }
            Response::Accepted { count } => {
                done.kind = warren_kind::WARREN_DONE_ACCEPTED;
                done.accepted = count;
            }
            Response::Quote { quote } => {
                done.kind = warren_kind::WARREN_DONE_QUOTE;
                (done.quote, done.quote_len) = into_buffer(quote);
            }
            Response::Spawned(s) => {
                done.kind = warren_kind::WARREN_DONE_SPAWNED;
                done.spawned = Box::into_raw(boxed_spawned(s));
            }
            Response::Error { code, detail } => {
                done.kind = warren_kind::WARREN_DONE_ERROR;
                done.status = code as u16 as c_int;
                c.detail_z = zstring(&detail);
                done.detail = c.detail_z.as_ptr();
            }
        }
        out(out_completion, done);
        Ok(())
    })
}

/// Free whatever a completion still owns (its non-NULL delivery, batch, identity, quote) and
/// set those pointers to NULL.
#[unsafe(no_mangle)]
pub extern "C" fn warren_completion_release(done: *mut warren_completion) {
    // SAFETY: the header requires `done` to be NULL or a completion filled by
    // `warren_next_completion`, whose pointers are owned by the caller or NULL.
    let Some(done) = (unsafe { done.as_mut() }) else {
        return;
    };
    warren_delivery_free(std::mem::replace(&mut done.delivery, std::ptr::null_mut()));
    warren_batch_free(std::mem::replace(&mut done.batch, std::ptr::null_mut()));
    warren_identity_free(std::mem::replace(&mut done.identity, std::ptr::null_mut()));
    warren_buffer_free(
        std::mem::replace(&mut done.quote, std::ptr::null_mut()),
        done.quote_len,
    );
    done.quote_len = 0;
    warren_spawned_free(std::mem::replace(&mut done.spawned, std::ptr::null_mut()));
}

// ---------------------------------------------------------------------------------------------
// Accessors.

fn delivery<'a>(d: *const warren_delivery) -> Option<&'a warren_delivery> {
    opt_ref(d)
}

/// Free a Spawned answer (NULL is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawned_free(s: *mut warren_spawned) {
    if !s.is_null() {
        // SAFETY: the header requires `s` to be a Spawned answer libwarren handed out, freed
        // once; it was made by `Box::into_raw`.
        drop(unsafe { Box::from_raw(s) });
    }
}

/// The child's environment name (`TEMPLATE-SUFFIX`; NUL-terminated, owned by the answer).
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawned_child(s: *const warren_spawned) -> *const c_char {
    opt_ref(s).map_or(std::ptr::null(), |s| s.child.as_ptr())
}

/// A handle to the child's default mailbox (SEND|MONITOR).
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawned_mailbox(s: *const warren_spawned) -> u32 {
    opt_ref(s).map_or(0, |s| s.mailbox)
}

/// A handle to the child itself (STOP), for `warren_stop`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawned_control(s: *const warren_spawned) -> u32 {
    opt_ref(s).map_or(0, |s| s.control)
}

/// The reference the `down` notice for the child will carry.
#[unsafe(no_mangle)]
pub extern "C" fn warren_spawned_reference(s: *const warren_spawned) -> u64 {
    opt_ref(s).map_or(0, |s| s.reference)
}

/// Free a delivery (NULL is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_free(d: *mut warren_delivery) {
    if !d.is_null() {
        // SAFETY: the header requires `d` to be a delivery libwarren handed out, freed once.
        drop(unsafe { Box::from_raw(d) });
    }
}

/// The body; `*out_len` its length. Owned by the delivery.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_body(
    d: *const warren_delivery,
    out_len: *mut usize,
) -> *const u8 {
    let d = delivery(d);
    out(out_len, d.map_or(0, |d| d.d.body.len()));
    d.map_or(std::ptr::null(), |d| d.d.body.as_ptr())
}

/// The sending environment's name (as the kernel knows it; NUL-terminated, owned by the
/// delivery).
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_from(d: *const warren_delivery) -> *const c_char {
    delivery(d).map_or(std::ptr::null(), |d| d.from_z.as_ptr())
}

/// The badge of the capability the sender used.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_badge(d: *const warren_delivery) -> u64 {
    delivery(d).map_or(0, |d| d.d.from.badge)
}

/// The mailbox handle the message was taken from.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_mailbox(d: *const warren_delivery) -> u32 {
    delivery(d).map_or(0, |d| d.d.mailbox)
}

/// Whether the message has a correlation id (stored at `out`).
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_correlation(d: *const warren_delivery, out_c: *mut u64) -> bool {
    match delivery(d).and_then(|d| d.d.correlation) {
        Some(v) => {
            out(out_c, v);
            true
        }
        None => false,
    }
}

/// The reply handle (a one-shot SEND capability), or 0 when the sender asked for none.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_reply(d: *const warren_delivery) -> u32 {
    delivery(d).and_then(|d| d.d.reply).unwrap_or(0)
}

/// Whether this is a `down` notice (its monitor reference stored at `out`).
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_down(d: *const warren_delivery, out_ref: *mut u64) -> bool {
    match delivery(d).and_then(|d| d.d.down) {
        Some(v) => {
            out(out_ref, v);
            true
        }
        None => false,
    }
}

/// The handles attached (new in the receiver's table); `*out_n` how many. Owned by the
/// delivery.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_caps(d: *const warren_delivery, out_n: *mut usize) -> *const u32 {
    let d = delivery(d);
    out(out_n, d.map_or(0, |d| d.d.caps.len()));
    d.map_or(std::ptr::null(), |d| d.d.caps.as_ptr())
}

/// How many headers.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_header_count(d: *const warren_delivery) -> usize {
    delivery(d).map_or(0, |d| d.d.headers.len())
}

/// Header `i`: its name and value (pointers owned by the delivery; the name is not
/// NUL-terminated). False when `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn warren_delivery_header(
    d: *const warren_delivery,
    i: usize,
    out_name: *mut *const c_char,
    out_name_len: *mut usize,
    out_value: *mut *const u8,
    out_value_len: *mut usize,
) -> bool {
    let Some((n, v)) = delivery(d).and_then(|d| d.d.headers.get(i)) else {
        return false;
    };
    out(out_name, n.as_ptr().cast::<c_char>());
    out(out_name_len, n.len());
    out(out_value, v.as_ptr());
    out(out_value_len, v.len());
    true
}

/// Free a batch (NULL is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_free(b: *mut warren_batch) {
    if !b.is_null() {
        // SAFETY: the header requires `b` to be a batch libwarren handed out, freed once.
        drop(unsafe { Box::from_raw(b) });
    }
}

/// How many messages the batch holds (1 when it is a single non-plain delivery).
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_count(b: *const warren_batch) -> usize {
    opt_ref(b).map_or(0, |b| if b.one.is_some() { 1 } else { b.count })
}

/// The mailbox handle the messages were taken from.
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_mailbox(b: *const warren_batch) -> u32 {
    opt_ref(b).map_or(0, |b| b.mailbox)
}

/// The one message that is not plain, when the oldest message was one (it comes alone; owned
/// by the batch), else NULL.
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_delivery(b: *const warren_batch) -> *const warren_delivery {
    opt_ref(b)
        .and_then(|b| b.one.as_deref())
        .map_or(std::ptr::null(), |d| d as *const warren_delivery)
}

/// Message `i` of a batch of plain messages, oldest first: its body, length, sender and badge
/// (pointers owned by the batch). False when `i` is out of range.
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_get(
    b: *const warren_batch,
    i: usize,
    out_body: *mut *const u8,
    out_len: *mut usize,
    out_from: *mut *const c_char,
    out_badge: *mut u64,
) -> bool {
    let Some(b) = opt_ref(b) else { return false };
    if let Some(d) = &b.one {
        if i != 0 {
            return false;
        }
        out(out_body, d.d.body.as_ptr());
        out(out_len, d.d.body.len());
        out(out_from, d.from_z.as_ptr());
        out(out_badge, d.d.from.badge);
        return true;
    }
    let Some(&(run, off, len)) = batch_index(b).get(i) else {
        return false;
    };
    let (from, badge, bodies) = &b.runs[run as usize];
    let data = bodies.as_encoded();
    out(out_body, data[off as usize..].as_ptr());
    out(out_len, len as usize);
    out(out_from, from.as_ptr());
    out(out_badge, *badge);
    true
}

/// The next message of a batch of plain messages, oldest first, from a cursor the batch keeps
/// (the cheapest way through a batch: no index is built): body, length, sender and badge
/// (pointers owned by the batch). False after the last message. A batch holding one
/// non-plain delivery yields that delivery's body once.
#[unsafe(no_mangle)]
pub extern "C" fn warren_batch_next(
    b: *mut warren_batch,
    out_body: *mut *const u8,
    out_len: *mut usize,
    out_from: *mut *const c_char,
    out_badge: *mut u64,
) -> bool {
    // SAFETY: the header requires `b` to be NULL or a batch libwarren handed out, not freed,
    // used by one thread at a time; `as_mut` maps NULL to None.
    let Some(b) = (unsafe { b.as_mut() }) else {
        return false;
    };
    if let Some(d) = &b.one {
        if b.cursor != (0, 0) {
            return false;
        }
        b.cursor = (1, 0);
        out(out_body, d.d.body.as_ptr());
        out(out_len, d.d.body.len());
        out(out_from, d.from_z.as_ptr());
        out(out_badge, d.d.from.badge);
        return true;
    }
    loop {
        let (run, pos) = b.cursor;
        let Some((from, badge, bodies)) = b.runs.get(run) else {
            return false;
        };
        let data = bodies.as_encoded();
        if pos + 4 > data.len() {
            b.cursor = (run + 1, 0);
            continue;
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&data[pos..pos + 4]);
        let len = u32::from_le_bytes(len) as usize;
        out(out_body, data[pos + 4..].as_ptr());
        out(out_len, len);
        out(out_from, from.as_ptr());
        out(out_badge, *badge);
        b.cursor = (run, pos + 4 + len);
        return true;
    }
}

/// Free an identity (NULL is ignored).
#[unsafe(no_mangle)]
pub extern "C" fn warren_identity_free(i: *mut warren_identity) {
    if !i.is_null() {
        // SAFETY: the header requires `i` to be an identity libwarren handed out, freed once.
        drop(unsafe { Box::from_raw(i) });
    }
}

/// The environment's name (owned by the identity).
#[unsafe(no_mangle)]
pub extern "C" fn warren_identity_env(i: *const warren_identity) -> *const c_char {
    opt_ref(i).map_or(std::ptr::null(), |i| i.env.as_ptr())
}

/// How many handles.
#[unsafe(no_mangle)]
pub extern "C" fn warren_identity_count(i: *const warren_identity) -> usize {
    opt_ref(i).map_or(0, |i| i.entries.len())
}

/// Entry `k`: handle, designation (for people; owned by the identity) and rights.
#[unsafe(no_mangle)]
pub extern "C" fn warren_identity_entry(
    i: *const warren_identity,
    k: usize,
    out_handle: *mut u32,
    out_designation: *mut *const c_char,
    out_rights: *mut u32,
) -> bool {
    let Some((h, d, r)) = opt_ref(i).and_then(|i| i.entries.get(k)) else {
        return false;
    };
    out(out_handle, *h);
    out(out_designation, d.as_ptr());
    out(out_rights, *r);
    true
}

// ---------------------------------------------------------------------------------------------
// Conformance.

/// Decode `len` bytes as a packet travelling in `direction` (0 = client to kernel, 1 = kernel
/// to client) with libwarren's decoder and encode the frames again into `out` (capacity
/// `cap`); `*out_len` is the encoded length. `WARREN_E_DECODE` for bytes the protocol rejects
/// (the message says why). For conformance tests against `vectors.txt`.
#[unsafe(no_mangle)]
pub extern "C" fn warren_packet_roundtrip(
    direction: c_int,
    packet: *const u8,
    len: usize,
    out_buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> c_int {
    guard(|| {
        let bytes = slice(packet, len, "the packet")?;
        let mut enc = Vec::new();
        match direction {
            0 => {
                for f in warren_proto::decode_requests(bytes)? {
                    warren_proto::encode_request(&f, &mut enc)?;
                }
            }
            1 => {
                for f in warren_proto::decode_responses(bytes)? {
                    warren_proto::encode_response(&f, &mut enc)?;
                }
            }
            d => return Err(invalid(&format!("direction {d} (0 or 1)"))),
        }
        out(out_len, enc.len());
        if enc.len() > cap || (out_buf.is_null() && !enc.is_empty()) {
            return Err(invalid(&format!(
                "the output buffer holds {cap} bytes, {} needed",
                enc.len()
            )));
        }
        if !enc.is_empty() {
            // SAFETY: the header requires `out_buf` to point to `cap` writable bytes; `enc`
            // fits (checked) and does not overlap them (it was allocated here).
            unsafe { std::ptr::copy_nonoverlapping(enc.as_ptr(), out_buf, enc.len()) };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_proto::ErrorCode;

    #[test]
    fn every_error_code_of_the_protocol_has_its_name() {
        for code in ErrorCode::ALL {
            let name = warren_status_name(code as u16 as c_int);
            // SAFETY: warren_status_name returns a pointer to a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(name) };
            assert_eq!(name.to_str().unwrap(), code.as_str());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(warren_status_name(999)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown");
    }

    #[test]
    fn a_panic_is_caught_and_reported_as_internal() {
        assert_eq!(guard(|| panic!("boom")), WARREN_E_INTERNAL);
        // SAFETY: warren_last_error returns this thread's NUL-terminated message.
        let msg = unsafe { CStr::from_ptr(warren_last_error()) };
        assert!(msg.to_str().unwrap().contains("panic"));
        assert_eq!(guard(|| Ok(())), WARREN_OK);
    }

    #[test]
    fn a_full_spawn_request_encodes_as_warren_proto_encodes_it() {
        let arg0 = c"--port";
        let arg1 = c"8080";
        let args = [arg0.as_ptr(), arg1.as_ptr()];
        let env = [
            warren_env_var {
                name: c"MODE".as_ptr(),
                value: c"fast".as_ptr(),
            },
            warren_env_var {
                name: c"LEVEL".as_ptr(),
                value: c"3".as_ptr(),
            },
        ];
        let names = [
            warren_spawn_name {
                name: c"db".as_ptr(),
                handle: 4,
            },
            warren_spawn_name {
                name: c"log".as_ptr(),
                handle: 9,
            },
        ];
        let limits = warren_limits {
            memory: 64 << 20,
            pids: 32,
            cpus: 500_000,
            tmpfs_size: 0,
        };
        let req = warren_spawn_request {
            handle: 7,
            suffix: c"w1".as_ptr(),
            args: args.as_ptr(),
            n_args: args.len(),
            env: env.as_ptr(),
            n_env: env.len(),
            limits: &limits,
            detach: true,
            names: names.as_ptr(),
            n_names: names.len(),
        };
        let want = Request::Spawn(warren_proto::Spawn {
            handle: 7,
            suffix: Some("w1".into()),
            args: vec!["--port".into(), "8080".into()],
            env: vec![("MODE".into(), "fast".into()), ("LEVEL".into(), "3".into())],
            limits: warren_proto::Limits {
                memory: Some(64 << 20),
                pids: Some(32),
                cpus: Some(500_000),
                tmpfs_size: None,
            },
            detach: true,
            names: vec![("db".into(), 4), ("log".into(), 9)],
        });
        let encode = |body: Request| {
            let mut out = Vec::new();
            warren_proto::encode_request(&Frame { id: 5, body }, &mut out).unwrap();
            out
        };
        let got = req_spawn(&req).unwrap();
        assert_eq!(got, want);
        assert_eq!(encode(got), encode(want));

        // The minimal form: no suffix, no limits (NULL), empty lists with NULL pointers.
        let bare = warren_spawn_request {
            handle: 7,
            suffix: std::ptr::null(),
            args: std::ptr::null(),
            n_args: 0,
            env: std::ptr::null(),
            n_env: 0,
            limits: std::ptr::null(),
            detach: false,
            names: std::ptr::null(),
            n_names: 0,
        };
        let want = Request::Spawn(warren_proto::Spawn {
            handle: 7,
            ..Default::default()
        });
        assert_eq!(encode(req_spawn(&bare).unwrap()), encode(want));

        // A NULL string inside a list is refused, naming what was wrong.
        let bad_args = [std::ptr::null::<c_char>()];
        let bad = warren_spawn_request {
            args: bad_args.as_ptr(),
            n_args: 1,
            ..bare
        };
        match req_spawn(&bad) {
            Err(Failure::Invalid(s)) => assert!(s.contains("argument"), "{s}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_restrict_request_encodes_as_warren_proto_encodes_it() {
        let limits = warren_limits {
            memory: 0,
            pids: 8,
            cpus: 0,
            tmpfs_size: 1 << 20,
        };
        let share = 3u32;
        let got = req_restrict(6, &share, &limits).unwrap();
        let want = Request::Restrict {
            handle: 6,
            share: Some(3),
            limits: warren_proto::Limits {
                pids: Some(8),
                tmpfs_size: Some(1 << 20),
                ..Default::default()
            },
        };
        assert_eq!(got, want);
        let none = req_restrict(6, std::ptr::null(), std::ptr::null()).unwrap();
        assert_eq!(
            none,
            Request::Restrict {
                handle: 6,
                share: None,
                limits: warren_proto::Limits::default(),
            }
        );
    }

    #[test]
    fn a_spawned_answer_decodes_into_its_accessors() {
        let body = Response::Spawned(warren_proto::Spawned {
            child: "worker-w1".into(),
            mailbox: 11,
            control: 12,
            reference: 0x1234_5678_9abc,
        });
        let mut packet = Vec::new();
        warren_proto::encode_response(&Frame { id: 3, body }, &mut packet).unwrap();
        let mut frames = warren_proto::decode_responses(&packet).unwrap();
        let Some(Frame {
            id: 3,
            body: Response::Spawned(s),
        }) = frames.pop()
        else {
            panic!("not a Spawned frame");
        };
        let s = Box::into_raw(boxed_spawned(s));
        // SAFETY: warren_spawned_child returns the answer's NUL-terminated name.
        let child = unsafe { CStr::from_ptr(warren_spawned_child(s)) };
        assert_eq!(child.to_str().unwrap(), "worker-w1");
        assert_eq!(warren_spawned_mailbox(s), 11);
        assert_eq!(warren_spawned_control(s), 12);
        assert_eq!(warren_spawned_reference(s), 0x1234_5678_9abc);
        // The completion owns it until released.
        let mut done = warren_completion {
            id: 3,
            kind: warren_kind::WARREN_DONE_SPAWNED,
            status: WARREN_OK,
            handle: 0,
            rights: 0,
            reference: 0,
            accepted: 0,
            delivery: std::ptr::null_mut(),
            batch: std::ptr::null_mut(),
            identity: std::ptr::null_mut(),
            quote: std::ptr::null_mut(),
            quote_len: 0,
            spawned: s,
            detail: std::ptr::null(),
        };
        warren_completion_release(&mut done);
        assert!(done.spawned.is_null());
        assert!(warren_spawned_child(std::ptr::null()).is_null());
        assert_eq!(warren_spawned_control(std::ptr::null()), 0);
    }

    #[test]
    fn null_arguments_are_refused_not_dereferenced() {
        assert_eq!(
            warren_spawn(std::ptr::null_mut(), std::ptr::null(), std::ptr::null_mut()),
            WARREN_E_INVALID
        );
        assert_eq!(
            warren_send(std::ptr::null_mut(), 1, std::ptr::null(), true),
            WARREN_E_INVALID
        );
        assert_eq!(warren_fd(std::ptr::null_mut()), -1);
        assert_eq!(warren_batch_count(std::ptr::null()), 0);
        warren_close(std::ptr::null_mut());
    }
}
