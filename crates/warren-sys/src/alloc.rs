//! The allocator of every Warren program in the musl build (`.cargo/config.toml`; each program
//! links this crate, which declares it the global allocator).
//!
//! Two parts, chosen by size as glibc's `malloc` chooses:
//! - **small blocks** (under [`LARGE`]) come from a TLSF allocator (`rlsf`: constant-time
//!   allocation and release from size-segregated free lists, memory taken from the system in
//!   64 KiB pools and kept for reuse). musl's own allocator gives memory back eagerly: it made a
//!   launch about 0.3 ms slower and a client's round trip slower by microseconds
//!   (BENCHMARKS.md, "Issue 13, tenth session");
//! - **large blocks** are mappings of their own, given back to the system when freed. A zeroed
//!   large block (`vec![0; n]`: every client's and the daemon's 1 MiB packet buffer) is a fresh
//!   mapping, whose pages cost nothing until they are written. TLSF alone zeroed such a buffer
//!   byte by byte, which made every environment running a Rust client 1 MiB bigger
//!   (BENCHMARKS.md, "Spawn", eleventh session). Grown in place or moved by `mremap`, without a
//!   copy. A few freed mappings (at most [`CACHE_SLOTS`], each at most [`CACHE_MAX`]) are kept
//!   for the next large block, so a stream of large messages does not fault in fresh pages for
//!   each; [`release`](Allocator::release) hands them back.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use std::sync::Mutex;

/// Blocks of this size or more are mappings of their own (glibc's default threshold).
pub const LARGE: usize = 128 * 1024;
/// How many freed mappings are kept for reuse.
pub const CACHE_SLOTS: usize = 4;
/// The largest freed mapping kept for reuse.
pub const CACHE_MAX: usize = 4 << 20;
const PAGE: usize = 4096;

/// A freed mapping kept for reuse: its address and length (0 when the slot is empty).
type Slot = (usize, usize);

/// See the module documentation.
pub struct Allocator {
    small: rlsf::GlobalTlsf,
    cache: Mutex<[Slot; CACHE_SLOTS]>,
}

impl Allocator {
    /// An allocator with nothing taken from the system yet.
    pub const fn new() -> Self {
        Allocator {
            small: rlsf::GlobalTlsf::new(),
            cache: Mutex::new([(0, 0); CACHE_SLOTS]),
        }
    }

    /// Hands the kept mappings back to the system (for a process about to idle for long).
    pub fn release(&self) {
        let kept = core::mem::take(&mut *self.lock());
        for (addr, len) in kept {
            if len != 0 {
                unmap(addr, len);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Slot; CACHE_SLOTS]> {
        // The allocator never panics while holding the lock; a poisoned lock still holds
        // consistent slots.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A mapping of `len` bytes (a multiple of the page size): a kept one if one is as long or
    /// longer (its tail beyond `len` unmapped), else a fresh one. The flag says whether it is
    /// fresh (all zero).
    fn map(&self, len: usize) -> (*mut u8, bool) {
        let reused = {
            let mut slots = self.lock();
            slots
                .iter_mut()
                .filter(|s| s.1 >= len)
                .min_by_key(|s| s.1)
                .map(core::mem::take)
        };
        if let Some((addr, have)) = reused {
            if have > len {
                unmap(addr + len, have - len);
            }
            return (addr as *mut u8, false);
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
        // existing memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            (ptr::null_mut(), true)
        } else {
            (p.cast(), true)
        }
    }

    /// Gives back a mapping of `len` bytes: kept for reuse when there is room, else unmapped.
    fn unmap_or_keep(&self, addr: usize, len: usize) {
        if len <= CACHE_MAX {
            let mut slots = self.lock();
            if let Some(s) = slots.iter_mut().find(|s| s.1 == 0) {
                *s = (addr, len);
                return;
            }
        }
        unmap(addr, len);
    }
}

impl Default for Allocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a block of this layout is a mapping of its own. Mappings are page-aligned, so a
/// block asking for more alignment stays with TLSF.
fn is_large(size: usize, align: usize) -> bool {
    size >= LARGE && align <= PAGE
}

fn pages(size: usize) -> usize {
    size.div_ceil(PAGE) * PAGE
}

fn unmap(addr: usize, len: usize) {
    // SAFETY: called only with a whole mapping (or a whole tail of one) that this allocator
    // made and no live block uses any more.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

// SAFETY: every block handed out is either TLSF's (its own contract) or a private mapping of
// at least the layout's size, page-aligned (so aligned for any layout routed to it), used by
// nobody else until it is deallocated with the same layout, which routes it back to the same
// part (the routing depends on the layout alone).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            self.map(pages(layout.size())).0
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { self.small.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            let (p, fresh) = self.map(pages(layout.size()));
            if !fresh && !p.is_null() {
                // SAFETY: a kept mapping of at least `layout.size()` bytes, now this block's.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { self.small.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            self.unmap_or_keep(p as usize, pages(layout.size()));
        } else {
            // SAFETY: the caller's contract, passed on (a small layout: TLSF's block).
            unsafe { self.small.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was, will) = (
            is_large(layout.size(), layout.align()),
            is_large(new_size, layout.align()),
        );
        match (was, will) {
            // SAFETY: the caller's contract, passed on (both sizes TLSF's).
            (false, false) => unsafe { self.small.realloc(p, layout, new_size) },
            (true, true) => {
                let (old, new) = (pages(layout.size()), pages(new_size));
                if old == new {
                    return p;
                }
                // SAFETY: `p` is a whole mapping of `old` bytes made here; the kernel moves or
                // resizes it (contents kept) and the old address is not used again on success.
                let q = unsafe { libc::mremap(p.cast(), old, new, libc::MREMAP_MAYMOVE) };
                if q == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    q.cast()
                }
            }
            _ => {
                // SAFETY: `new_size` with the old alignment is a valid layout (the caller's
                // contract for realloc).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                // SAFETY: a fresh block of the new layout.
                let q = unsafe { self.alloc(new_layout) };
                if !q.is_null() {
                    // SAFETY: both blocks are live, distinct and at least this long.
                    unsafe {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        self.dealloc(p, layout);
                    }
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's resident memory in KiB (`/proc/self/statm`, second field, in pages).
    fn resident_kib() -> usize {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap();
        s.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * (PAGE / 1024)
    }

    #[test]
    fn a_large_zeroed_block_costs_nothing_until_written() {
        let a = Allocator::new();
        let layout = Layout::from_size_align(64 << 20, 8).unwrap();
        let before = resident_kib();
        // SAFETY: a non-zero layout; freed below with the same layout.
        let p = unsafe { a.alloc_zeroed(layout) };
        assert!(!p.is_null());
        let untouched = resident_kib();
        // SAFETY: the block is 64 MiB long and ours.
        let all_zero = unsafe { std::slice::from_raw_parts(p, layout.size()) }
            .iter()
            .step_by(PAGE)
            .all(|&b| b == 0);
        assert!(all_zero);
        // SAFETY: as above; writing every page makes them resident (the positive control).
        unsafe { ptr::write_bytes(p, 1, layout.size()) };
        let written = resident_kib();
        // SAFETY: allocated above with this layout.
        unsafe { a.dealloc(p, layout) };
        a.release();
        assert!(
            untouched < before + 1024,
            "{before} -> {untouched} KiB before any write"
        );
        assert!(
            written > untouched + 60 * 1024,
            "{untouched} -> {written} KiB after writing"
        );
    }

    #[test]
    fn a_kept_mapping_comes_back_zeroed_and_grows_with_its_contents() {
        let a = Allocator::new();
        let layout = Layout::from_size_align(LARGE * 2, 8).unwrap();
        // SAFETY: each block is used within its layout and freed with it.
        unsafe {
            let p = a.alloc(layout);
            ptr::write_bytes(p, 0xaa, layout.size());
            a.dealloc(p, layout);
            // The dirty mapping is kept and handed out again: it must be zeroed now.
            let q = a.alloc_zeroed(layout);
            assert_eq!(q, p, "the kept mapping was not reused");
            assert!(
                std::slice::from_raw_parts(q, layout.size())
                    .iter()
                    .all(|&b| b == 0)
            );
            // Large to larger (mremap), larger to small (copy to TLSF), small to large.
            for (i, b) in std::slice::from_raw_parts_mut(q, layout.size())
                .iter_mut()
                .enumerate()
            {
                *b = i as u8;
            }
            let r = a.realloc(q, layout, LARGE * 8);
            let big = Layout::from_size_align(LARGE * 8, 8).unwrap();
            assert!(
                std::slice::from_raw_parts(r, layout.size())
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == i as u8)
            );
            let s = a.realloc(r, big, 1000);
            let small = Layout::from_size_align(1000, 8).unwrap();
            assert!(
                std::slice::from_raw_parts(s, 1000)
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == i as u8)
            );
            let t = a.realloc(s, small, LARGE + 1);
            assert!(
                std::slice::from_raw_parts(t, 1000)
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == i as u8)
            );
            a.dealloc(t, Layout::from_size_align(LARGE + 1, 8).unwrap());
        }
        a.release();
        assert!(a.lock().iter().all(|s| s.1 == 0));
    }
}
