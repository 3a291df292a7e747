//! Loop devices: attach an image file to a free loop device with autoclear, for mounting a
//! size-limited volume's file system (`warren`'s `mounts` module).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `struct loop_info64` (`<linux/loop.h>`).
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` (`<linux/loop.h>`).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// Attach the open image file `image` to a free loop device with `LO_FLAGS_AUTOCLEAR` (the
/// device detaches itself once the last user, such as a file system mounted from it, is gone)
/// and return the open device and its path (`/dev/loopN`). Read-only when `read_only`.
///
/// Concurrent callers may be handed the same free device; `LOOP_CONFIGURE` then fails with
/// `EBUSY` for the loser, which asks for another one (up to 64 times). Needs `CAP_SYS_ADMIN`.
pub fn loop_attach(image: BorrowedFd<'_>, read_only: bool) -> io::Result<(OwnedFd, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")?;
    let mut last = io::Error::from_raw_os_error(libc::EBUSY);
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and touches no memory.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = format!("/dev/loop{n}");
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        let mut flags = LO_FLAGS_AUTOCLEAR;
        if read_only {
            flags |= LO_FLAGS_READ_ONLY;
        }
        let cfg = LoopConfig {
            fd: image.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: `cfg` is a valid, initialised `struct loop_config` of the kernel's layout that
        // lives across the call; the kernel only reads it. `image` is borrowed, so it stays open
        // during the call (the kernel takes its own reference to the file).
        let ret = unsafe {
            libc::ioctl(
                dev.as_raw_fd(),
                LOOP_CONFIGURE as _,
                &cfg as *const LoopConfig,
            )
        };
        if ret == 0 {
            return Ok((dev.into(), path));
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EBUSY) {
            return Err(last);
        }
    }
    Err(last)
}
