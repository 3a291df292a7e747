//! Safe wrappers around hostile system calls, for the escape probe (`warren-probe`) only.
//!
//! Each function performs one system call that a confined workload must not be able to use, with
//! arguments chosen so that the call is harmless even where it is allowed: invalid magic numbers,
//! invalid sizes, paths that do not exist, "turn off" rather than "turn on", and descriptors that
//! are closed again at once. What the caller learns is how far the call got: the error the sandbox
//! returns (`EPERM`, `ENOSYS`), or the error (or success) the kernel returns once the call is past
//! every permission check, which proves the call is reachable.
//!
//! None of these functions may ever change the host: the probe runs them as host root for the
//! positive control. Every `unsafe` block passes only null pointers or pointers to buffers owned by
//! the wrapper (or the caller's `&mut` slice) for the duration of the call.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Turn a raw `syscall(2)` return value into an `io::Result`.
fn check(ret: libc::c_long) -> io::Result<i64> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Take ownership of a descriptor a system call just returned.
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)`: look up (never create) the
/// session keyring. Returns its serial number.
pub fn keyctl_get_session_keyring() -> io::Result<i64> {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    // SAFETY: integer arguments only; no memory is passed to the kernel.
    check(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_SESSION_KEYRING,
            0,
        )
    })
}

/// `add_key` with a key type that does not exist, into the process keyring. When the call is
/// reachable the kernel answers `ENODEV` (unknown type); at most it creates this process's own
/// process keyring, which dies with the process.
pub fn add_key_bogus_type() -> io::Result<i64> {
    const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
    let key_type = c"warren-probe-no-such-type";
    let description = c"warren-probe";
    // SAFETY: both strings are valid NUL-terminated C strings that outlive the call; the payload
    // pointer is null with length 0.
    check(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            key_type.as_ptr(),
            description.as_ptr(),
            std::ptr::null::<libc::c_void>(),
            0usize,
            KEY_SPEC_PROCESS_KEYRING,
        )
    })
}

/// `bpf(BPF_MAP_CREATE)` for the smallest possible map (an array of one 4-byte value). Returns
/// the map descriptor, which the caller drops at once.
pub fn bpf_map_create_tiny() -> io::Result<OwnedFd> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    // The leading fields of `union bpf_attr` for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries; every later field stays zero, which the kernel requires of unused bytes.
    let mut attr = [0u32; 32];
    attr[0] = BPF_MAP_TYPE_ARRAY;
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: `attr` is a readable buffer of exactly the size passed; BPF_MAP_CREATE only reads it.
    owned(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    })
}

/// The first 64 bytes (`PERF_ATTR_SIZE_VER0`) of `struct perf_event_attr`.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// `perf_event_open` for a disabled software "dummy" event on the calling process, counting
/// kernel and user space (so the kernel's `perf_event_paranoid` check applies). Returns the
/// event descriptor, which the caller drops at once.
pub fn perf_event_open_dummy() -> io::Result<OwnedFd> {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_DUMMY: u64 = 9;
    const DISABLED: u64 = 1;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    let mut attr = PerfEventAttrV0 {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttrV0>() as u32,
        config: PERF_COUNT_SW_DUMMY,
        flags: DISABLED,
        ..PerfEventAttrV0::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares, and writable (the kernel
    // may write the size it expects back into it). pid 0 = self, cpu -1, no group.
    owned(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut attr as *mut PerfEventAttrV0,
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    })
}

/// `userfaultfd(O_CLOEXEC | O_NONBLOCK)`. Returns the descriptor, which the caller drops at once.
pub fn userfaultfd() -> io::Result<OwnedFd> {
    // SAFETY: integer flags only.
    owned(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) })
}

/// `io_uring_setup(1, &params)` with all-zero parameters. Returns the ring descriptor (never
/// mapped), which the caller drops at once.
pub fn io_uring_setup_one() -> io::Result<OwnedFd> {
    // `struct io_uring_params` is 120 bytes; the kernel reads the flags and writes the offsets.
    let mut params = [0u32; 30];
    // SAFETY: `params` is a writable 120-byte buffer, the size of struct io_uring_params.
    owned(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) })
}

/// `kexec_load` with more segments than the kernel accepts (and an undefined flag bit) and a null
/// segment list: past the `CAP_SYS_BOOT` check the kernel always answers `EINVAL` without reading
/// memory. (`kexec_load(0, 0, NULL, 0)` would *unload* a loaded kexec image, so it is not used.)
pub fn kexec_load_invalid() -> io::Result<i64> {
    const UNDEFINED_FLAG: libc::c_ulong = 1 << 15;
    // SAFETY: the segment pointer is null, and the kernel rejects the segment count before it
    // would dereference it.
    check(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0 as libc::c_ulong,
            libc::c_ulong::MAX,
            std::ptr::null::<libc::c_void>(),
            UNDEFINED_FLAG,
        )
    })
}

/// `init_module(NULL, 0, "")`: an empty image, which past the `CAP_SYS_MODULE` check the kernel
/// rejects with `ENOEXEC` before reading anything.
pub fn init_module_empty() -> io::Result<i64> {
    // SAFETY: a null image of length 0 is never read; the parameter string is a valid empty C
    // string.
    check(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            std::ptr::null::<libc::c_void>(),
            0usize,
            c"".as_ptr(),
        )
    })
}

/// `reboot` with wrong magic numbers: the kernel checks `CAP_SYS_BOOT` first (`EPERM`) and then
/// the magic (`EINVAL`), so this can never reboot anything.
pub fn reboot_bad_magic() -> io::Result<i64> {
    // SAFETY: integer arguments and a null argument pointer, which the kernel does not read for
    // an invalid magic.
    check(unsafe {
        libc::syscall(
            libc::SYS_reboot,
            0 as libc::c_int,
            0 as libc::c_int,
            0 as libc::c_uint,
            std::ptr::null::<libc::c_void>(),
        )
    })
}

/// The path [`swapon_nonexistent`] and [`acct_nonexistent`] name; it must never exist.
pub const NONEXISTENT_PATH: &CStr = c"/nonexistent-warren-probe";

/// `swapon("/nonexistent-warren-probe", 0)`: `EPERM` without `CAP_SYS_ADMIN`, `ENOENT` past it.
pub fn swapon_nonexistent() -> io::Result<i64> {
    // SAFETY: the path is a valid NUL-terminated C string; flags are an integer.
    check(unsafe {
        libc::syscall(
            libc::SYS_swapon,
            NONEXISTENT_PATH.as_ptr(),
            0 as libc::c_int,
        )
    })
}

/// `acct("/nonexistent-warren-probe")`: `EPERM` without `CAP_SYS_PACCT`, `ENOENT` past it. (A null
/// path would switch accounting off, so it is not used.)
pub fn acct_nonexistent() -> io::Result<i64> {
    // SAFETY: the path is a valid NUL-terminated C string.
    check(unsafe { libc::syscall(libc::SYS_acct, NONEXISTENT_PATH.as_ptr()) })
}

/// `clock_settime` on a clock id that does not exist (100): `EINVAL` once the call reaches the
/// kernel. (The kernel validates the clock before it checks `CAP_SYS_TIME`, so this shows only
/// whether the call is reachable, never whether the caller could set the clock.)
pub fn clock_settime_invalid_clock() -> io::Result<i64> {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec that outlives the call; the kernel only reads it.
    check(unsafe { libc::syscall(libc::SYS_clock_settime, 100 as libc::clockid_t, &ts) })
}

/// `getpid` through the i386 system-call gate (`int 0x80`, i386 number 20) from 64-bit code:
/// the classic way around a seccomp filter that does not check the architecture. Returns the
/// pid when the gate is open; a correct filter kills the process instead (SIGSYS).
pub fn i386_getpid() -> io::Result<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        let ret: i64;
        // SAFETY: i386 getpid takes no arguments and touches no memory. `int 0x80` from 64-bit
        // code returns in rax and clobbers r8-r11 (the kernel zeroes them), declared here.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inlateout("rax") 20i64 => ret,
                lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
                options(nostack),
            );
        }
        check(ret)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// `getpid` with the x32 bit set (`39 | 0x4000_0000`): the other number space that a deny-list
/// filter may forget. ENOSYS on kernels built without x32; EPERM under Warren's allow-list.
pub fn x32_getpid() -> io::Result<i64> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: getpid takes no arguments; a raw syscall number is passed, no memory.
        check(unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// `iopl(0)`: asks for the lowest I/O privilege level, which never raises anything.
pub fn iopl_zero() -> io::Result<i64> {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        // SAFETY: integer argument only; level 0 can only lower the I/O privilege level.
        check(unsafe { libc::syscall(libc::SYS_iopl, 0 as libc::c_int) })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// `ioperm(0x80, 1, 0)`: turns *off* access to one I/O port, which never grants anything.
pub fn ioperm_off() -> io::Result<i64> {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        // SAFETY: integer arguments only; turn_on = 0 can only remove port access.
        check(unsafe {
            libc::syscall(
                libc::SYS_ioperm,
                0x80 as libc::c_ulong,
                1 as libc::c_ulong,
                0i32,
            )
        })
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    {
        Err(io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// `ptrace(PTRACE_ATTACH, pid, 0, 0)`. On success the target is stopped and traced by the caller;
/// the probe only does this to a sleeping child of its own, which it then kills.
pub fn ptrace_attach(pid: i32) -> io::Result<i64> {
    // SAFETY: PTRACE_ATTACH ignores the address and data arguments, which are null.
    check(unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            libc::PTRACE_ATTACH as libc::c_long,
            pid as libc::pid_t,
            std::ptr::null::<libc::c_void>(),
            std::ptr::null::<libc::c_void>(),
        )
    })
}

/// `process_vm_readv`: copy `buf.len()` bytes at `remote_addr` in process `pid` into `buf`.
/// Returns the number of bytes copied.
pub fn process_vm_read(pid: i32, remote_addr: usize, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: remote_addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the local iovec describes `buf`, which is writable for its whole length for the
    // duration of the call; the remote address is interpreted in the other process's address
    // space and never dereferenced in ours.
    let n = check(unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            pid as libc::pid_t,
            &local as *const libc::iovec,
            1 as libc::c_ulong,
            &remote as *const libc::iovec,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })?;
    Ok(n as usize)
}

/// The longest file handle the kernel produces (`MAX_HANDLE_SZ`).
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the longest handle.
#[repr(C)]
struct RawFileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// An opaque file handle as produced by `name_to_handle_at(2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    /// The filesystem-specific handle type (`FILEID_*`).
    pub handle_type: i32,
    /// The handle bytes (at most 128).
    pub bytes: Vec<u8>,
}

/// `name_to_handle_at(dirfd, path, &handle, &mount_id, 0)`. Returns the handle and the mount id.
pub fn name_to_handle_at(dirfd: BorrowedFd<'_>, path: &CStr) -> io::Result<(FileHandle, i32)> {
    let mut raw = RawFileHandle {
        handle_bytes: MAX_HANDLE_SZ as u32,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `path` is a valid C string; `raw` is a writable file_handle whose handle_bytes
    // states the real capacity of f_handle; `mount_id` is a writable int. All outlive the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            &mut raw as *mut RawFileHandle,
            &mut mount_id as *mut libc::c_int,
            0 as libc::c_int,
        )
    })?;
    let len = (raw.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok((
        FileHandle {
            handle_type: raw.handle_type,
            bytes: raw.f_handle[..len].to_vec(),
        },
        mount_id,
    ))
}

/// `open_by_handle_at(mount_fd, handle, flags | O_CLOEXEC)` (the "shocker" call).
pub fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> io::Result<OwnedFd> {
    if handle.bytes.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut raw = RawFileHandle {
        handle_bytes: handle.bytes.len() as u32,
        handle_type: handle.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    raw.f_handle[..handle.bytes.len()].copy_from_slice(&handle.bytes);
    // SAFETY: `raw` is a valid file_handle whose handle_bytes does not exceed its buffer; the
    // kernel only reads it.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &raw as *const RawFileHandle,
            flags | libc::O_CLOEXEC,
        )
    })
}

/// `unshare(flags)` for namespace flags only (a combination of [`crate::ns`] values); any other
/// bit (`CLONE_FILES`, `CLONE_FS`, ...) is refused with `EINVAL` without a system call.
///
/// Meant for a child process whose own state may change: a new pid namespace applies to the
/// caller's future children, a new user namespace to the caller itself.
pub fn unshare(flags: u64) -> io::Result<()> {
    if flags & !crate::ns::ALL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: only namespace flags are passed; these do not share or unshare memory or the
    // descriptor table, so no Rust invariant can be affected.
    let ret = unsafe { libc::unshare(flags as libc::c_int) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `clone3(NULL, 0)`: a size below the first version of `struct clone_args`, which the kernel
/// rejects with `EINVAL` before it reads anything, so no process can be created. A sandbox that
/// filters `clone3` answers `ENOSYS` (so that libc falls back to `clone`) or `EPERM`.
pub fn clone3_invalid_size() -> io::Result<i64> {
    // SAFETY: a null pointer with size 0 is rejected by the size check and never read.
    check(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0usize) })
}

/// The `TIOCSTI` ioctl request (push one byte into a terminal's input queue).
const TIOCSTI: u64 = 0x5412;
/// The `TIOCLINUX` ioctl request (virtual console sub-commands).
const TIOCLINUX: u64 = 0x541C;
/// `TIOCL_GETSHIFTSTATE`: a read-only `TIOCLINUX` sub-command.
const TIOCL_GETSHIFTSTATE: u8 = 6;

/// `ioctl(fd, TIOCSTI, &byte)`: push `byte` into the terminal's input queue as if typed. With
/// `high_bits`, the request number has bit 32 set: the kernel truncates the request to 32 bits,
/// so a seccomp filter that compares all 64 bits is bypassed (CVE-2019-10063).
pub fn tiocsti(fd: BorrowedFd<'_>, byte: u8, high_bits: bool) -> io::Result<i64> {
    let request = if high_bits {
        TIOCSTI | (1 << 32)
    } else {
        TIOCSTI
    };
    // SAFETY: TIOCSTI reads exactly one byte from the pointer, which refers to `byte`.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), request, &byte as *const u8) })
}

/// `ioctl(fd, TIOCLINUX, &[TIOCL_GETSHIFTSTATE])`: a read-only virtual-console sub-command.
pub fn tioclinux_get_shift_state(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut arg = [0u8; 8];
    arg[0] = TIOCL_GETSHIFTSTATE;
    // SAFETY: the kernel reads the sub-command byte from `arg` and writes at most one byte of
    // shift state back into it; `arg` is an 8-byte writable buffer that outlives the call.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), TIOCLINUX, arg.as_mut_ptr()) })
}

/// Duplicate descriptor number `fd` (inherited, or named on the command line) into a new owned,
/// close-on-exec descriptor. `EBADF` when no such descriptor is open.
pub fn dup_inherited_fd(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; an invalid number yields EBADF,
    // and the new descriptor is owned by nobody else.
    owned(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) } as libc::c_long)
}

/// Fork a child that does nothing but sleep for `seconds` and exit. It dies with its parent
/// (`PR_SET_DEATHSIG` = `SIGKILL`). Returns the child's pid.
///
/// The child runs only async-signal-safe system calls, so this is sound even in a
/// multi-threaded caller.
pub fn fork_sleeper(seconds: u32) -> io::Result<i32> {
    // SAFETY: plain getpid.
    let parent = unsafe { libc::getpid() };
    // SAFETY: after fork the child only calls prctl, getppid, nanosleep and _exit, all
    // async-signal-safe; it touches no lock, allocator or Rust state.
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above; `ts` is a valid timespec on this stack.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            let ts = libc::timespec {
                tv_sec: seconds.into(),
                tv_nsec: 0,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
            libc::_exit(0);
        }
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshare_refuses_non_namespace_flags() {
        let e = unshare(libc::CLONE_FILES as u64).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn clone3_with_size_zero_never_creates_a_process() {
        let e = clone3_invalid_size().unwrap_err();
        assert!(
            matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM)
            ),
            "{e}"
        );
    }

    #[test]
    fn reboot_with_bad_magic_is_refused() {
        let e = reboot_bad_magic().unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)),
            "{e}"
        );
    }

    #[test]
    fn name_to_handle_round_trips_through_open_by_handle_for_root() {
        let root = std::fs::File::open("/").unwrap();
        use std::os::fd::AsFd;
        match name_to_handle_at(root.as_fd(), c"/") {
            Ok((handle, _mount_id)) => {
                assert!(!handle.bytes.is_empty());
                match open_by_handle_at(root.as_fd(), &handle, libc::O_RDONLY) {
                    Ok(_) => {}
                    Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
                }
            }
            // Filesystems without export support refuse handles.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}"),
        }
    }

    #[test]
    fn process_vm_read_copies_from_a_forked_sleeper() {
        static CANARY: [u8; 4] = *b"WPRB";
        let pid = fork_sleeper(30).unwrap();
        let mut buf = [0u8; 4];
        let res = process_vm_read(
            pid,
            std::hint::black_box(&CANARY).as_ptr() as usize,
            &mut buf,
        );
        // SAFETY: test-only cleanup of our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        match res {
            Ok(n) => assert_eq!((n, &buf), (4, b"WPRB")),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }

    #[test]
    fn dup_of_a_closed_number_is_ebadf() {
        let e = dup_inherited_fd(987_654).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
}
