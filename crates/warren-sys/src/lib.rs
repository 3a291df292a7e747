//! The one home of `unsafe` in Warren.
//!
//! Thin, documented wrappers for the few system calls that the safe crates (rustix, landlock,
//! seccompiler) do not offer: `clone3` with namespace flags and a pidfd, `close_range`, the
//! interface-flags ioctl that brings `lo` up, the Landlock ABI query, and the signal mask and
//! `signalfd` the single-threaded launcher waits on. Every `unsafe` block carries a `// SAFETY:`
//! note; every other crate in the workspace forbids `unsafe` outright.
//!
//! Raw return codes become `std::io::Result` here, once; callers map them to error variants that
//! name what was being done.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod loopdev;
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
mod memcpy;
pub use loopdev::loop_attach;

#[cfg(target_env = "musl")]
pub mod alloc;

/// The allocator of every Warren program in the musl build (Warren's, `.cargo/config.toml`;
/// each links this crate): TLSF for small blocks, mappings of their own for large ones
/// ([`alloc`]). The glibc build keeps glibc's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Namespace flags for [`clone_process`], a subset of `CLONE_NEW*`.
pub mod ns {
    /// New user namespace.
    pub const USER: u64 = libc::CLONE_NEWUSER as u64;
    /// New pid namespace (the child becomes its pid 1).
    pub const PID: u64 = libc::CLONE_NEWPID as u64;
    /// New mount namespace.
    pub const MOUNT: u64 = libc::CLONE_NEWNS as u64;
    /// New uts namespace (hostname).
    pub const UTS: u64 = libc::CLONE_NEWUTS as u64;
    /// New ipc namespace.
    pub const IPC: u64 = libc::CLONE_NEWIPC as u64;
    /// New network namespace.
    pub const NET: u64 = libc::CLONE_NEWNET as u64;
    /// New cgroup namespace.
    pub const CGROUP: u64 = libc::CLONE_NEWCGROUP as u64;
    /// Every namespace flag Warren knows; the seccomp policy refuses these in `clone`.
    pub const ALL: u64 = USER | PID | MOUNT | UTS | IPC | NET | CGROUP;
}

/// What [`clone_process`] returns on each side of the fork.
#[derive(Debug)]
pub enum Forked {
    /// In the parent: the child's pid (in the parent's pid namespace) and a pidfd for it.
    Parent {
        /// The child's pid as the parent sees it.
        pid: i32,
        /// A pidfd referring to the child, immune to pid reuse.
        pidfd: OwnedFd,
    },
    /// In the child.
    Child,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Fork the calling process into new namespaces with `clone3(2)`, returning a pidfd for the child.
///
/// `namespaces` is a combination of [`ns`] flags. With `cgroup` (a directory descriptor of a
/// cgroup v2 cgroup) the child starts inside that cgroup (`CLONE_INTO_CGROUP`), without the
/// later migration that costs an RCU grace period. The child continues from this call with a copy
/// of the parent's memory, as after `fork(2)`.
///
/// # Safety
///
/// The calling process must be single-threaded: as after `fork(2)`, the child holds a copy of
/// every lock another thread may have held (the allocator's among them), and only the calling
/// thread exists in it. Warren's launcher is single-threaded by construction.
pub unsafe fn clone_process(namespaces: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    // SAFETY: the caller's contract is this function's.
    unsafe { clone_process_as(namespaces, cgroup, false) }
}

/// [`clone_process`]; with `sibling`, the child's parent is the caller's own parent
/// (`CLONE_PARENT`), as with [`fork_sibling`].
///
/// # Safety
///
/// As [`clone_process`].
unsafe fn clone_process_as(
    namespaces: u64,
    cgroup: Option<BorrowedFd<'_>>,
    sibling: bool,
) -> io::Result<Forked> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: (namespaces & ns::ALL) | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if sibling {
        // With CLONE_PARENT, clone3 wants exit_signal 0: the child takes the caller's.
        args.flags |= libc::CLONE_PARENT as u64;
        args.exit_signal = 0;
    }
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `pidfd`, which `args` points at, outlives the call; the caller guarantees that the
    // process is single-threaded.
    match unsafe { clone3(&args) }? {
        None => Ok(Forked::Child),
        Some(pid) => Ok(Forked::Parent {
            pid,
            // SAFETY: with CLONE_PIDFD the kernel stored a new, owned descriptor in `pidfd`.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

/// `clone3(2)` with `args` and no stack: the child's pid in the caller, `None` in the child,
/// which continues from this call on a copy of the caller's memory and stack, as after
/// `fork(2)`.
///
/// # Safety
///
/// As [`clone_process`]: the process must be single-threaded, and whatever `args` points at
/// must be valid for the call.
unsafe fn clone3(args: &CloneArgs) -> io::Result<Option<i32>> {
    // SAFETY: `args` is a valid, fully initialised `clone_args` of the size we pass (what it
    // points at is the caller's to keep valid). No stack is given, so the child runs on a copy
    // of the caller's stack exactly as with fork(2).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as i32)),
    }
}

/// `EBUSY` unless the caller is the process's only thread. The check cannot race: a single
/// thread cannot gain a sibling between the check and a fork except by its own action.
fn single_threaded() -> io::Result<()> {
    if thread_count()? != 1 {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    Ok(())
}

/// Read a kernel pseudo-file (procfs, sysfs, cgroupfs) whole, in as few system calls as it
/// allows. Such files report a size of 0, so `std::fs::read_to_string` starts from a 32-byte
/// probe and doubles its buffer (ten calls for `/proc/self/mountinfo`); one 16 KiB read
/// usually takes all of it.
pub fn read_pseudo_file(path: impl AsRef<std::path::Path>) -> io::Result<String> {
    use std::io::Read as _;
    let mut buf = Vec::with_capacity(16 * 1024);
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How many threads the calling process has (from `/proc/self/task`).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// [`clone_process`], made safe by checking first that the caller is the process's only thread.
/// Fails with `EBUSY` otherwise.
pub fn fork_into_namespaces(namespaces: u64, cgroup: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    single_threaded()?;
    // SAFETY: the process has exactly one thread (checked just above), which is the contract
    // of clone_process.
    unsafe { clone_process(namespaces, cgroup) }
}

/// [`fork_into_namespaces`], the child being the caller's sibling: its parent is the caller's
/// own parent (`CLONE_PARENT`), which is signalled when it ends and alone may wait for it. Its
/// pidfd still lets the caller signal it and see it end (a pidfd turns readable on exit).
///
/// A launcher whose environment is so its parent's child may end while the environment runs,
/// leaving the environment to its parent, which can take over waiting for it.
pub fn fork_into_namespaces_as_sibling(
    namespaces: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Forked> {
    single_threaded()?;
    // SAFETY: the process has exactly one thread (checked just above), which is the contract
    // of clone_process_as.
    unsafe { clone_process_as(namespaces, cgroup, true) }
}

/// Whether the process `pidfd` refers to has ended (a pidfd turns readable once its process
/// has exited, reaped or not), looked at without waiting. An error counts as ended.
pub fn pidfd_ended(pidfd: BorrowedFd<'_>) -> bool {
    let mut fd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n != 0
}

/// Fork the calling process as a sibling: the child's parent is the caller's own parent
/// (`clone3` with `CLONE_PARENT`), which is signalled (with the caller's exit signal) and may
/// wait for it as for any child of its own. Returns the child's pid in the caller and `None` in
/// the child, which continues from this call with a copy of the caller's memory. Fails with
/// `EBUSY` unless the caller is the process's only thread (see [`clone_process`]).
///
/// Warren's kernel daemon forks a single-threaded launch helper at its start; the helper forks
/// each launcher so, and the launchers are the daemon's children, as if it had started them.
pub fn fork_sibling() -> io::Result<Option<i32>> {
    single_threaded()?;
    // With CLONE_PARENT, clone3 wants exit_signal 0: the child takes the caller's.
    let args = CloneArgs {
        flags: libc::CLONE_PARENT as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the process has exactly one thread (checked above), so the child holds no lock
    // another thread held; `args` points at nothing.
    unsafe { clone3(&args) }
}

/// Replace what `/proc/self/cmdline` shows (and `ps` prints) with `args`, NUL-separated, as
/// after an `execve` of them. A launcher forked by the kernel's launch helper shows its own
/// command line so, which is also how a restarted kernel recognises it (by `--name NAME`).
///
/// `prctl(PR_SET_MM, PR_SET_MM_MAP)`, the checkpoint/restore interface, with the process's
/// current layout (from `/proc/self/stat` and the current program break) and the arguments
/// moved to a copy that lives as long as the process. It needs no capability (unlike the
/// single-field `PR_SET_MM_ARG_START`, which wants `CAP_SYS_RESOURCE`); it needs a kernel built
/// with checkpoint/restore support, and fails with `EINVAL` otherwise. The caller must be
/// single-threaded: another thread moving the program break meanwhile would have the old one
/// written back.
pub fn set_cmdline(args: &[&str]) -> io::Result<()> {
    const PR_SET_MM: libc::c_int = 35;
    const PR_SET_MM_MAP: libc::c_ulong = 14;
    #[repr(C)]
    struct PrctlMmMap {
        start_code: u64,
        end_code: u64,
        start_data: u64,
        end_data: u64,
        start_brk: u64,
        brk: u64,
        start_stack: u64,
        arg_start: u64,
        arg_end: u64,
        env_start: u64,
        env_end: u64,
        auxv: u64,
        auxv_size: u32,
        exe_fd: u32,
    }
    let mut text = Vec::new();
    for a in args {
        if a.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        text.extend_from_slice(a.as_bytes());
        text.push(0);
    }
    if text.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // The kernel reads the command line from this memory whenever it is asked for it, for the
    // rest of the process's life: it is never freed.
    let text: &'static [u8] = Box::leak(text.into_boxed_slice());
    // The fields after the command name, which is in parentheses and may hold anything.
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    // `rest` starts with field 3 (state): field N is at index N - 3.
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let mut map = PrctlMmMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk: 0,
        start_stack: field(28)?,
        arg_start: text.as_ptr() as u64,
        arg_end: text.as_ptr() as u64 + text.len() as u64,
        env_start: field(50)?,
        env_end: field(51)?,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: sbrk(0) only returns the current program break; nothing allocates between it and
    // the prctl below, so the break written back is the current one.
    map.brk = unsafe { libc::sbrk(0) } as u64;
    // SAFETY: PR_SET_MM_MAP reads a `struct prctl_mm_map` of the size given from `map`, which
    // is valid for the call. Every field but the arguments' bounds carries the process's
    // current value (auxv_size 0 keeps the auxiliary vector, exe_fd -1 the executable); the
    // arguments' bounds point at `text`, leaked, so valid for the life of the process.
    let ret = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP,
            &map as *const PrctlMmMap,
            std::mem::size_of::<PrctlMmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Mark every descriptor from `first` upwards close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), so that nothing the launcher inherited crosses into a workload.
pub fn close_range_cloexec(first: u32) -> io::Result<()> {
    // SAFETY: close_range only changes flags of descriptors of this process; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set `IFF_UP` on the network interface `name` in the caller's network namespace.
pub fn interface_up(name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    // SAFETY: plain socket(2) call; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) returned a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which is a valid
    // ifreq for the duration of the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds the flags member.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The Landlock ABI version the running kernel offers (`landlock_create_ruleset` with
/// `LANDLOCK_CREATE_RULESET_VERSION`); an error (ENOSYS, EOPNOTSUPP) when Landlock is absent.
pub fn landlock_abi_version() -> io::Result<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 this call only returns the ABI version.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

/// A set of signals, for [`block_signals`] and [`signalfd`].
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSet")
    }
}

impl SignalSet {
    /// A set holding exactly `signals`.
    pub fn of(signals: &[i32]) -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        for &sig in signals {
            // SAFETY: `set` is a valid, initialised sigset_t; the signal number is checked.
            if unsafe { libc::sigaddset(&mut set, sig) } != 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
        }
        Ok(SignalSet(set))
    }

    /// The empty set.
    pub fn empty() -> Self {
        Self::of(&[]).expect("the empty signal set is always valid")
    }
}

/// Replace the calling thread's signal mask with `set`, returning the previous mask.
pub fn set_signal_mask(set: &SignalSet) -> io::Result<SignalSet> {
    // SAFETY: sigset_t is plain data and is fully written by pthread_sigmask below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to valid sigset_t values for the duration of the call.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set.0, &mut old) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(SignalSet(old))
    }
}

/// Add `set` to the calling thread's blocked signals, returning the previous mask.
pub fn block_signals(set: &SignalSet) -> io::Result<SignalSet> {
    // SAFETY: as in set_signal_mask.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to valid sigset_t values for the duration of the call.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, &mut old) };
    if ret != 0 {
        Err(io::Error::from_raw_os_error(ret))
    } else {
        Ok(SignalSet(old))
    }
}

/// A close-on-exec, non-blocking `signalfd(2)` for `set` (which the caller should have blocked).
pub fn signalfd(set: &SignalSet) -> io::Result<OwnedFd> {
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read one pending signal number from a [`signalfd`]; `Ok(None)` when none is pending.
pub fn read_signal(fd: &OwnedFd) -> io::Result<Option<i32>> {
    use std::os::fd::AsRawFd;
    // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable buffer of exactly `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut _ as *mut libc::c_void,
            size,
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        };
    }
    if n as usize != size {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(Some(info.ssi_signo as i32))
}

/// Reset the disposition of every catchable signal to its default, as a freshly exec'd program
/// expects (handlers are reset by exec anyway; ignored signals are not).
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors for reserved signals are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

#[cfg(feature = "probe")]
pub mod probe;

/// Drop capability `cap` from the calling thread's bounding set (`PR_CAPBSET_DROP`).
/// Returns `EINVAL` for numbers past the kernel's last capability, which ends a drop loop.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes an integer argument and touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Move the calling process into a new cgroup namespace rooted at its current cgroup
/// (`unshare(CLONE_NEWCGROUP)`). Only this flag: it shares no other per-process state.
pub fn unshare_cgroup_namespace() -> io::Result<()> {
    // SAFETY: CLONE_NEWCGROUP changes only the cgroup namespace of the caller; unlike
    // CLONE_FILES or CLONE_FS it cannot invalidate state other threads rely on.
    let ret = unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Restore the default disposition of `SIGPIPE` (Rust's runtime ignores it), so that a command
/// whose output is piped into `head` ends quietly instead of failing on `EPIPE`.
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE; no handler code is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Give memory the process no longer uses back to the system: for a process that goes on to
/// idle for a long time after a burst of work (a launcher waiting for its environment).
/// - the allocator's free memory: with glibc, `malloc_trim(3)` (the top of the heap released,
///   free pages inside it discarded); in the musl build, the freed large mappings kept for reuse
///   and the pages inside the small-block pools' free blocks ([`alloc::Allocator::release`]);
/// - when called on the main thread, the pages of its stack below the caller's frame: whatever
///   deeper calls left there is dead (a launch's deepest calls dirtied ~100 KiB of it), and a
///   later call that goes that deep again finds zeroed pages;
/// - the page-table entries of the program's own code and read-only data (a launcher mapped
///   about 4 MiB of them for its launch, and the page tables that held them; it idles in a few
///   pages of them).
#[inline(never)]
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only reorganises the allocator's own free lists and pages; it takes
    // the allocator's locks like any malloc call and touches no memory the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    // One read of the mappings for both the program's own and the stack's; the text is freed
    // before the allocator gives its free pages back.
    let (own, stack) = match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => {
            let exe = std::fs::read_link("/proc/self/exe");
            let own = exe.map_or_else(
                |_| Vec::new(),
                |e| file_only_mappings(&smaps, &e.to_string_lossy()),
            );
            (own, unused_stack(&smaps, here))
        }
        Err(_) => (Vec::new(), None),
    };
    for (start, len) in own {
        // SAFETY: the range is a private, non-writable file mapping of this program with no
        // anonymous page (smaps says `Anonymous: 0 kB`, and a page becomes anonymous only when
        // written, which a non-writable mapping is not: a static PIE's relocated data is a
        // mapping of its own, with anonymous pages, and is skipped); MADV_DONTNEED then only
        // removes page-table entries (the kernel frees page tables left empty,
        // `CONFIG_PT_RECLAIM`), and the next access maps the same page of the page cache.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
    #[cfg(target_env = "musl")]
    ALLOCATOR.release();
    if let Some((start, len)) = stack {
        // SAFETY: the range lies inside the main thread's stack mapping, entirely below the
        // frames of this function and its callers ([`unused_stack`]), which are the only live
        // part of this thread's stack (it grows down; the calls made above have returned, so no
        // deeper frame exists, and a signal handler that runs later writes below the stack
        // pointer again, onto zeroed pages). MADV_DONTNEED on private anonymous memory only
        // makes those pages read as zero when next touched.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

/// The mappings of file `exe` in `smaps` (`/proc/self/smaps`) that are private, not writable
/// and hold no anonymous page, as (start, length).
fn file_only_mappings(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for l in smaps.lines() {
        let mut f = l.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            current = None;
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            if path == exe
                && perms.len() == 4
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p')
                && b > a
            {
                current = Some((a, b - a));
            }
        } else if first == "Anonymous:" {
            if let (Some(m), Some("0")) = (current.take(), f.next()) {
                out.push(m);
            }
        }
    }
    out
}

/// The part of the `[stack]` mapping listed in `maps` (`/proc/self/maps` or `smaps`) that lies more than
/// two pages below `here`, as (start, length); `None` when `here` is not in that mapping (not
/// the main thread) or nothing lies below.
fn unused_stack(maps: &str, here: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let line = maps.lines().find(|l| l.ends_with("[stack]"))?;
    let (lo, hi) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(lo, 16).ok()?,
        usize::from_str_radix(hi, 16).ok()?,
    );
    if !(start..end).contains(&here) {
        return None;
    }
    let below = (here & !(PAGE - 1)).checked_sub(2 * PAGE)?;
    (below > start).then(|| (start, below - start))
}

/// Set a socket's mark (`SO_MARK`, needs `CAP_NET_ADMIN`): a 32-bit value stored on the
/// socket itself, which means nothing to a Unix socket's traffic. It lives as long as the
/// socket, whichever process holds a descriptor of it.
pub fn set_socket_mark(fd: BorrowedFd<'_>, mark: u32) -> io::Result<()> {
    // SAFETY: `mark` is a live u32 and its size is passed; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A socket's mark ([`set_socket_mark`]; 0 when none was set).
pub fn socket_mark(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut mark = 0u32;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `mark` and `len` are live and `len` holds `mark`'s size; the kernel writes at
    // most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mut mark as *mut u32).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(mark)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `MOUNT_ATTR_RDONLY` for [`mount_setattr_idmap`]'s `extra`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_NOSUID` for [`mount_setattr_idmap`]'s `extra`.
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
/// `MOUNT_ATTR_NODEV` for [`mount_setattr_idmap`]'s `extra`.
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
/// `MOUNT_ATTR_IDMAP`: the mount shows file owners through a user namespace's id mapping.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// The kernel's `struct mount_attr` (`linux/mount.h`), which libc does not declare.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, { IDMAP | extra, userns })`: make the
/// detached mount tree `tree` (from `open_tree(OPEN_TREE_CLONE)`, not yet attached anywhere)
/// an idmapped mount that maps file owners through the id mapping of the user namespace
/// `userns` (an open `/proc/PID/ns/user`), and set the `MOUNT_ATTR_*` flags in `extra`.
///
/// A file owned by uid `N` on disk then appears owned by the host uid that `N` maps to in
/// `userns`, i.e. by uid `N` inside that namespace. The caller needs `CAP_SYS_ADMIN` over the
/// filesystem's superblock (host root for a host filesystem), and the filesystem must support
/// idmapped mounts (ext4, xfs, btrfs, tmpfs since 6.3, ...): otherwise `EINVAL` or `EPERM`.
pub fn mount_setattr_idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    extra: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | extra,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a valid, initialised
    // `struct mount_attr` that lives across the call, and its exact size is passed; the kernel
    // only reads it. Both descriptors are borrowed, so they stay open during the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | 0x8000, // AT_RECURSIVE
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The lowest descriptor number the launcher uses for its own descriptors between `clone3` and
/// `execve` (pipes, cgroup files, the mailbox before it is installed). Everything below it,
/// except 0, 1 and 2, is either unused or an inherited descriptor that is about to be closed.
pub const LAUNCHER_FD_FLOOR: RawFd = 100;

/// Duplicate `fd` to a close-on-exec descriptor numbered at least [`LAUNCHER_FD_FLOOR`].
pub fn dup_high(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, LAUNCHER_FD_FLOOR) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// In a forked child about to `execve`: make `fd` descriptor `target` (below
/// [`LAUNCHER_FD_FLOOR`]), *without* close-on-exec, so the new program inherits it. Whatever
/// was at `target` is closed.
///
/// Contract (checked in part): the caller keeps every descriptor it owns at or above
/// [`LAUNCHER_FD_FLOOR`], so `target` can only be an inherited descriptor nothing owns.
pub fn install_inherited(fd: OwnedFd, target: RawFd) -> io::Result<()> {
    if !(3..LAUNCHER_FD_FLOOR).contains(&target) || fd.as_raw_fd() < LAUNCHER_FD_FLOOR {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: dup2 touches no memory. Closing `target` cannot break an owner elsewhere: by the
    // contract above (the launcher owns only descriptors >= LAUNCHER_FD_FLOOR, and `fd` was
    // checked to be one of them), `target` is owned by no OwnedFd in this process.
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(fd);
    Ok(())
}

/// In an environment: take ownership of the inherited descriptor `fd` (the mailbox, fd 3),
/// after checking that it is open and a socket. It hands out an owner for a number this process
/// did not open itself, so it succeeds only once per process (`EBUSY` after that).
pub fn take_inherited_socket(fd: RawFd) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    if fd < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: fstat on a number only reads its metadata into `st`, a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::from_raw_os_error(libc::ENOTSOCK));
    }
    // SAFETY: the descriptor is open (fstat succeeded) and was inherited across exec for this
    // very purpose; the process takes ownership of it here, once (the TAKEN flag above), and
    // nothing else in it owns that number (no runtime opens a descriptor at a fixed number).
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Keep it out of any program this one execs.
    // SAFETY: F_SETFD with FD_CLOEXEC only changes the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned)
}

/// `PTRACE_SECCOMP_GET_FILTER` (linux/ptrace.h; not in the libc crate).
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

/// The classic-BPF seccomp filters installed in process `pid`, most recent first, each in the
/// layout the kernel was given (8 bytes per `struct sock_filter`). For inspection and tests: it
/// attaches with `PTRACE_SEIZE`, stops the process with `PTRACE_INTERRUPT`, reads every filter
/// with `PTRACE_SECCOMP_GET_FILTER` and detaches, which lets the process go on as before.
///
/// Needs `CAP_SYS_ADMIN` and a caller not itself under seccomp (the kernel answers `EACCES`
/// otherwise), the right to trace `pid`, and a kernel built with `CONFIG_CHECKPOINT_RESTORE`
/// (`EINVAL` without). A process with no filter gives an empty list.
pub fn seccomp_filters(pid: i32) -> io::Result<Vec<Vec<u8>>> {
    let null = std::ptr::null_mut::<libc::c_void>();
    let ptrace = |request: u32, addr: usize, data: *mut libc::c_void| -> io::Result<libc::c_long> {
        // SAFETY: every request used here passes `addr` as a plain number and `data` either as
        // null or as a buffer the caller sized for what the kernel writes (see below).
        let ret = unsafe { libc::ptrace(request as _, pid, addr as *mut libc::c_void, data) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    };
    // The request constants are `c_uint` in glibc's headers and `c_int` in musl's.
    #[allow(clippy::unnecessary_cast)]
    let (seize, detach, interrupt) = (
        libc::PTRACE_SEIZE as u32,
        libc::PTRACE_DETACH as u32,
        libc::PTRACE_INTERRUPT as u32,
    );
    ptrace(seize, 0, null)?;
    /// Detaches on every way out, so the tracee is never left stopped.
    struct Detach<F: Fn()>(F);
    impl<F: Fn()> Drop for Detach<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _detach = Detach(|| {
        let _ = ptrace(detach, 0, null);
    });
    ptrace(interrupt, 0, null)?;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`, a valid out-parameter.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if ret == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let mut filters = Vec::new();
    for index in 0.. {
        // With a null buffer the kernel returns the filter's length in instructions.
        let len = match ptrace(PTRACE_SECCOMP_GET_FILTER, index, null) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) if index == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                // Not filtered at all (mode is not SECCOMP_MODE_FILTER), or no CRIU support.
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                if status
                    .lines()
                    .any(|l| l.replace(char::is_whitespace, "") == "Seccomp:0")
                {
                    break;
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; len * std::mem::size_of::<libc::sock_filter>()];
        // SAFETY: `buf` holds `len` sock_filter structures, which is what the kernel copies for
        // a filter of `len` instructions (it returned that length just above, and the tracee is
        // stopped, so its filters cannot change in between).
        let got = ptrace(PTRACE_SECCOMP_GET_FILTER, index, buf.as_mut_ptr().cast())?;
        buf.truncate(got as usize * std::mem::size_of::<libc::sock_filter>());
        filters.push(buf);
    }
    Ok(filters)
}

/// Have `cmd`'s child start with an empty signal mask, whatever the caller blocks (an init
/// blocks the signals it reads through a [`signalfd`]; `std::process::Command` passes the mask
/// on to the child).
pub fn clear_signal_mask_on_spawn(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // `pthread_sigmask` (through `set_signal_mask`) on a stack-built empty set, which is
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(|| {
            set_signal_mask(&SignalSet::empty())?;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_main_stack_below_the_caller_is_released() {
        let maps = "55d0c0000000-55d0c0001000 r--p 00000000 00:20 12 /bin/x\n\
                    7ffd0000a000-7ffd00040000 rw-p 00000000 00:00 0                          [stack]\n\
                    7ffd000f0000-7ffd000f2000 r-xp 00000000 00:00 0                          [vdso]\n";
        // A frame at 0x7ffd0003f123: everything below 0x7ffd0003d000 (two pages under its page).
        assert_eq!(
            unused_stack(maps, 0x7ffd_0003_f123),
            Some((0x7ffd_0000_a000, 0x7ffd_0003_d000 - 0x7ffd_0000_a000))
        );
        // Another thread's frame (not in [stack]), or one at the bottom: nothing.
        assert_eq!(unused_stack(maps, 0x7f00_1234_5678), None);
        assert_eq!(unused_stack(maps, 0x7ffd_0000_b000), None);
        assert_eq!(unused_stack("no stack here\n", 0x7ffd_0003_f123), None);
    }

    #[test]
    fn only_the_programs_unwritten_read_only_mappings_are_released() {
        let smaps = "\
7f0000000000-7f0000100000 r--p 00000000 fe:00 5 /usr/bin/warren
Rss:                 400 kB
Anonymous:             0 kB
VmFlags: rd mr mw me
7f0000100000-7f0000900000 r-xp 00100000 fe:00 5 /usr/bin/warren
Rss:                3000 kB
Anonymous:             0 kB
7f0000900000-7f0000940000 rw-p 00900000 fe:00 5 /usr/bin/warren
Anonymous:           256 kB
7f0000940000-7f0000950000 r--p 00940000 fe:00 5 /usr/bin/warren
Anonymous:             4 kB
7f0000950000-7f0000960000 r-xp 00000000 fe:00 9 /usr/lib/other.so
Anonymous:             0 kB
7f0000960000-7f0000970000 rw-p 00000000 00:00 0
Anonymous:            64 kB
";
        // The read-only data and the code; not the written data, not a read-only mapping with
        // a private copy of a page (relocated data made read-only), not another file's.
        assert_eq!(
            file_only_mappings(smaps, "/usr/bin/warren"),
            vec![(0x7f00_0000_0000, 0x10_0000), (0x7f00_0010_0000, 0x80_0000)]
        );
        assert_eq!(file_only_mappings(smaps, "/usr/bin/none"), vec![]);
    }

    #[test]
    fn landlock_version_is_positive_or_unsupported() {
        match landlock_abi_version() {
            Ok(v) => assert!(v >= 1, "landlock abi {v}"),
            Err(e) => assert!(
                matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
                ),
                "{e}"
            ),
        }
    }

    #[test]
    fn interface_name_too_long_is_rejected() {
        let long = std::ffi::CString::new("x".repeat(40)).unwrap();
        let e = interface_up(&long).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    }

    #[test]
    fn signal_sets_reject_bad_numbers() {
        assert!(SignalSet::of(&[libc::SIGTERM, libc::SIGINT]).is_ok());
        assert!(SignalSet::of(&[0x1000]).is_err());
    }
}

/// `SECCOMP_RET_USER_NOTIF`: the filter action that hands the call to the listener.
pub const SECCOMP_RET_USER_NOTIF: u32 = libc::SECCOMP_RET_USER_NOTIF;

/// Install `program` — classic-BPF instructions in the layout `seccomp(2)` reads, 8 bytes each
/// (`code` u16, `jt` u8, `jf` u8, `k` u32, native endian) — as the calling thread's seccomp
/// filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER`, and return the listener: the descriptor on
/// which calls the program answers with `SECCOMP_RET_USER_NOTIF` arrive
/// ([`seccomp_notif_recv`]). The descriptor is close-on-exec (the kernel makes it so).
///
/// Fails with `EINVAL` if `program` is not a whole number of instructions, and with the
/// kernel's error otherwise (`EBUSY`: a filter already installed in this process has a
/// listener; `EACCES`: neither `no_new_privs` nor `CAP_SYS_ADMIN`).
pub fn seccomp_install_listener(program: &[u8]) -> io::Result<OwnedFd> {
    if program.is_empty() || program.len() % 8 != 0 || program.len() / 8 > u16::MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let filter: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, which holds exactly `prog.len` instructions and lives
    // until the call returns; the kernel copies the program and keeps no pointer to it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: with NEW_LISTENER, a successful seccomp(2) returns a new descriptor nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// One call a seccomp filter handed to its listener (`struct seccomp_notif`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompNotif {
    /// The notification's id, to answer it with [`seccomp_notif_send_errno`].
    pub id: u64,
    /// The calling thread's id, in the listener's pid namespace (0 if it has none there).
    pub pid: u32,
    /// The system call number.
    pub nr: i32,
    /// The audit architecture of the call.
    pub arch: u32,
    /// The call's six register arguments.
    pub args: [u64; 6],
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: take the next call waiting on `listener`. Blocks if none waits
/// (poll the listener for `POLLIN` first); `ENOENT` if the caller died meanwhile.
pub fn seccomp_notif_recv(listener: BorrowedFd<'_>) -> io::Result<SeccompNotif> {
    // SAFETY: seccomp_notif is plain integers; the kernel requires it zeroed on entry.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `n`, a valid, correctly sized buffer.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut n as *mut libc::seccomp_notif,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SeccompNotif {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        arch: n.data.arch,
        args: n.data.args,
    })
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: make the call `id` fail with `errno` (positive, e.g. `EPERM`),
/// without running it. `ENOENT` if the caller died or was interrupted meanwhile.
pub fn seccomp_notif_send_errno(listener: BorrowedFd<'_>, id: u64, errno: i32) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: -errno.abs(),
        flags: 0,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from `resp`, a valid, initialised value.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
