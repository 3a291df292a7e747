//! `memcpy` for the musl build (Warren's binaries, `.cargo/config.toml`). musl's x86_64
//! `memcpy` aligns the destination a byte at a time and then copies with `rep movsq`, whatever
//! the size; the kernel's messages are mostly a few dozen bytes, and a daemon built with it
//! spent more time in `memcpy` than in anything else of its own (the pipelined round trip of
//! bench/ipc.sh 15.6 -> 20.7 us against glibc's). This one copies up to 64 bytes with
//! overlapping unaligned loads and stores (no loop, no branch per byte) and anything longer
//! with `rep movsb`, which CPUs with ERMS/FSRM run at full speed. Linked in place of libc's
//! (a static link takes the first definition; libc's object is then never pulled in).
//!
//! `memmove` is here too: musl's `memmove` calls an entry point inside its `memcpy` object,
//! which would pull that object (and a second `memcpy`) into the link. Up to 64 bytes the copy
//! loads everything before it stores, so overlap does not matter; longer overlapping moves
//! with the destination above the source copy backwards (`std; rep movsb`).
//!
//! No loops here: LLVM turns a copying loop into a call to `memcpy`, which would be this
//! function calling itself.

use core::ptr::{read_unaligned as rd, write_unaligned as wr};

/// Copies `n` bytes from `src` to `dst` (which must not overlap), returns `dst`.
///
/// # Safety
/// The C contract: `src` readable and `dst` writable for `n` bytes, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract, passed on.
    unsafe { copy(dst, src, n) }
}

/// Copies `n` bytes from `src` to `dst`, which may overlap; returns `dst`.
///
/// # Safety
/// The C contract: `src` readable and `dst` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n > 64 && (dst as usize).wrapping_sub(src as usize) < n {
        // The destination starts inside the source: copy from the last byte down.
        // SAFETY: the same ranges as a forward copy, walked from their ends; the direction
        // flag is set only for this instruction and cleared before the block ends (the ABI
        // requires it clear at calls and returns).
        unsafe {
            core::arch::asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dst.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack)
            );
        }
        return dst;
    }
    // SAFETY: up to 64 bytes every load precedes every store; longer, the destination is
    // below the source or disjoint from it, where a forward copy is right.
    unsafe { copy(dst, src, n) }
}

/// The forward copy both use.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; if they overlap, `n <= 64` or `dst` below
/// `src`.
#[inline(always)]
unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: every access below stays within [src, src + n) and [dst, dst + n), which the
    // caller guarantees valid (the pairs of loads overlap each other, first and last k bytes
    // with k <= n, never past the ends of the buffers). Overlap between the two ranges is
    // allowed only where this is still right: up to 64 bytes every load precedes every store,
    // and `rep movsb` copies forwards, right when `dst` is below `src`.
    unsafe {
        if n <= 16 {
            if n >= 8 {
                let (a, b) = (rd(src as *const u64), rd(src.add(n - 8) as *const u64));
                wr(dst as *mut u64, a);
                wr(dst.add(n - 8) as *mut u64, b);
            } else if n >= 4 {
                let (a, b) = (rd(src as *const u32), rd(src.add(n - 4) as *const u32));
                wr(dst as *mut u32, a);
                wr(dst.add(n - 4) as *mut u32, b);
            } else if n >= 2 {
                let (a, b) = (rd(src as *const u16), rd(src.add(n - 2) as *const u16));
                wr(dst as *mut u16, a);
                wr(dst.add(n - 2) as *mut u16, b);
            } else if n == 1 {
                *dst = *src;
            }
        } else if n <= 32 {
            let (a, b) = (rd(src as *const u128), rd(src.add(n - 16) as *const u128));
            wr(dst as *mut u128, a);
            wr(dst.add(n - 16) as *mut u128, b);
        } else if n <= 64 {
            let a = rd(src as *const u128);
            let b = rd(src.add(16) as *const u128);
            let c = rd(src.add(n - 32) as *const u128);
            let d = rd(src.add(n - 16) as *const u128);
            wr(dst as *mut u128, a);
            wr(dst.add(16) as *mut u128, b);
            wr(dst.add(n - 32) as *mut u128, c);
            wr(dst.add(n - 16) as *mut u128, d);
        } else {
            core::arch::asm!(
                "rep movsb",
                inout("rcx") n => _,
                inout("rdi") dst => _,
                inout("rsi") src => _,
                options(nostack, preserves_flags)
            );
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    /// Every length from 0 to 300 and every alignment of both ends within 16 bytes: the bytes
    /// copied are exactly the source's, and not one byte around the destination changes.
    #[test]
    fn copies_exactly_n_bytes_at_every_length_and_alignment() {
        let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in 0..300 {
            for so in 0..16 {
                for d_off in 0..16 {
                    let mut dst = vec![0xAAu8; 400];
                    // SAFETY: both ranges lie inside their vectors (16 + 300 < 400), which do
                    // not overlap.
                    let ret = unsafe {
                        super::memcpy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(so), n)
                    };
                    assert_eq!(ret, dst.as_mut_ptr().wrapping_add(d_off));
                    assert_eq!(&dst[d_off..d_off + n], &src[so..so + n], "n {n}");
                    assert!(dst[..d_off].iter().all(|&b| b == 0xAA), "before, n {n}");
                    assert!(dst[d_off + n..].iter().all(|&b| b == 0xAA), "after, n {n}");
                }
            }
        }
    }

    /// Overlapping moves in both directions, every length to 300 and every distance to 20:
    /// the result is what a copy through a separate buffer gives.
    #[test]
    fn moves_overlapping_ranges_both_ways() {
        for n in 0..300 {
            for dist in 0..20usize {
                for up in [false, true] {
                    let mut buf: Vec<u8> = (0..400u32).map(|i| (i * 13 + 1) as u8).collect();
                    let (s, d) = if up { (10, 10 + dist) } else { (10 + dist, 10) };
                    let mut want = buf.clone();
                    let part = buf[s..s + n].to_vec();
                    want[d..d + n].copy_from_slice(&part);
                    // SAFETY: both ranges lie inside the vector (30 + 300 < 400).
                    unsafe { super::memmove(buf.as_mut_ptr().add(d), buf.as_ptr().add(s), n) };
                    assert_eq!(buf, want, "n {n} dist {dist} up {up}");
                }
            }
        }
    }
}
