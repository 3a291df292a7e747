//! The allocator of every Warren program in the musl build (`.cargo/config.toml`; each program
//! links this crate, which declares it the global allocator).
//!
//! Two parts, chosen by size as glibc's `malloc` chooses:
//! - **small blocks** (under [`LARGE`]) come from a TLSF allocator (`rlsf`: constant-time
//!   allocation and release from size-segregated free lists) over pools of at least [`POOL`]
//!   mapped from the system and kept for reuse. musl's own allocator gives memory back eagerly:
//!   it made a launch about 0.3 ms slower and a client's round trip slower by microseconds
//!   (BENCHMARKS.md, "Issue 13, tenth session"). [`release`](Allocator::release) discards the
//!   pages inside the pools' free blocks (they read as zero when next touched), so a process
//!   that idles after a burst of work (a launcher waiting for its environment) keeps only the
//!   pages its live blocks use;
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
/// The smallest pool the small-block part maps at a time.
pub const POOL: usize = 256 * 1024;
/// Pools remembered for [`Allocator::release`]; pools beyond these work, but are not trimmed.
const MAX_POOLS: usize = 64;
/// How many freed mappings are kept for reuse.
pub const CACHE_SLOTS: usize = 4;
/// The largest freed mapping kept for reuse.
pub const CACHE_MAX: usize = 4 << 20;
const PAGE: usize = 4096;

/// A freed mapping kept for reuse: its address and length (0 when the slot is empty).
type Slot = (usize, usize);

/// The TLSF state of the small-block part (the type `rlsf::GlobalTlsf` uses).
type Tlsf = rlsf::Tlsf<'static, usize, usize, { usize::BITS as usize }, { usize::BITS as usize }>;

/// The small-block part: TLSF and the pools it was given.
struct Small {
    tlsf: Tlsf,
    /// The pools (address, length) handed to `tlsf`, the first `npools` of them.
    pools: [Slot; MAX_POOLS],
    npools: usize,
}

impl Small {
    /// A block of `layout` from the pools, a new pool mapped when none has room.
    fn alloc(&mut self, layout: Layout) -> *mut u8 {
        if let Some(p) = self.tlsf.allocate(layout) {
            return p.as_ptr();
        }
        // Room for the block at any alignment, and for the pool's own headers.
        let need = layout.size() + layout.align() + 4 * rlsf::GRANULARITY;
        let len = pages(need.max(POOL));
        let (p, _) = map_fresh(len);
        let Some(pool) = core::ptr::NonNull::new(p) else {
            return ptr::null_mut();
        };
        // SAFETY: a fresh private mapping of `len` bytes, owned by nobody else and never
        // unmapped: TLSF may use it for the process's life ('static).
        unsafe {
            self.tlsf
                .insert_free_block_ptr(core::ptr::NonNull::slice_from_raw_parts(pool, len))
        };
        if self.npools < MAX_POOLS {
            self.pools[self.npools] = (p as usize, len);
            self.npools += 1;
        }
        self.tlsf
            .allocate(layout)
            .map_or(ptr::null_mut(), |p| p.as_ptr())
    }

    /// Discards the pages inside free blocks: all but the block's header (its first
    /// `GRANULARITY` bytes hold the free-list links; the next block's header is outside it).
    fn release(&mut self) {
        for &(addr, len) in &self.pools[..self.npools] {
            let Some(start) = core::ptr::NonNull::new(addr as *mut u8) else {
                continue;
            };
            let pool = core::ptr::NonNull::slice_from_raw_parts(start, len);
            // SAFETY: `pool` is exactly a block handed to `insert_free_block_ptr` above.
            for block in unsafe { self.tlsf.iter_blocks(pool) } {
                if block.is_occupied() {
                    continue;
                }
                let start = block.as_ptr().as_ptr() as *mut u8 as usize;
                let from = (start + rlsf::GRANULARITY).div_ceil(PAGE) * PAGE;
                let to = (start + block.size()) / PAGE * PAGE;
                if to > from {
                    // SAFETY: [from, to) lies inside a free block of a pool this allocator
                    // mapped, past the block's header: no live block and no allocator state
                    // is there; MADV_DONTNEED makes those private pages read as zero when next
                    // touched, which TLSF does not rely on.
                    unsafe {
                        libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED)
                    };
                }
            }
        }
    }
}

/// See the module documentation.
pub struct Allocator {
    small: Mutex<Small>,
    cache: Mutex<[Slot; CACHE_SLOTS]>,
}

impl Allocator {
    /// An allocator with nothing taken from the system yet.
    pub const fn new() -> Self {
        Allocator {
            small: Mutex::new(Small {
                tlsf: Tlsf::new(),
                pools: [(0, 0); MAX_POOLS],
                npools: 0,
            }),
            cache: Mutex::new([(0, 0); CACHE_SLOTS]),
        }
    }

    /// Hands what is free back to the system (for a process about to idle for long): the kept
    /// mappings, and the pages inside the small-block pools' free blocks.
    pub fn release(&self) {
        let kept = core::mem::take(&mut *self.lock());
        for (addr, len) in kept {
            if len != 0 {
                unmap(addr, len);
            }
        }
        self.small().release();
    }

    fn small(&self) -> std::sync::MutexGuard<'_, Small> {
        // As `lock`: never poisoned by a panic of ours; the state stays consistent.
        self.small.lock().unwrap_or_else(|e| e.into_inner())
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
        map_fresh(len)
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

/// A fresh anonymous mapping of `len` bytes (null when the system refuses), and `true`: its
/// pages are zero.
fn map_fresh(len: usize) -> (*mut u8, bool) {
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
            self.small().alloc(layout)
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
            let p = self.small().alloc(layout);
            if !p.is_null() {
                // SAFETY: a block of at least `layout.size()` bytes, just allocated.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
            p
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            self.unmap_or_keep(p as usize, pages(layout.size()));
        } else if let Some(p) = core::ptr::NonNull::new(p) {
            // SAFETY: the caller's contract: `p` was allocated here with this layout, a small
            // one, so by TLSF with this alignment.
            unsafe { self.small().tlsf.deallocate(p, layout.align()) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (was, will) = (
            is_large(layout.size(), layout.align()),
            is_large(new_size, layout.align()),
        );
        match (was, will) {
            (false, false) => {
                let Some(block) = core::ptr::NonNull::new(p) else {
                    return ptr::null_mut();
                };
                // SAFETY: `new_size` with the old alignment is a valid layout (the caller's
                // contract for realloc).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let mut small = self.small();
                // SAFETY: `block` was allocated by TLSF with this alignment (the caller's
                // contract); on success it moved or resized it and the old address is dead.
                if let Some(q) = unsafe { small.tlsf.reallocate(block, new_layout) } {
                    return q.as_ptr();
                }
                // No room in the pools: a new block (mapping a pool), the contents, the old
                // block freed.
                let q = small.alloc(new_layout);
                if !q.is_null() {
                    // SAFETY: both blocks are live and distinct; the old one holds
                    // `layout.size()` bytes, the new one at least `new_size`.
                    unsafe {
                        ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                        small.tlsf.deallocate(block, layout.align());
                    }
                }
                q
            }
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

    /// The tests that read this process's resident memory run one at a time.
    static RESIDENT: Mutex<()> = Mutex::new(());

    #[test]
    fn a_large_zeroed_block_costs_nothing_until_written() {
        let _one = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
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
    fn release_gives_back_the_pages_of_freed_small_blocks_and_keeps_live_ones() {
        let _one = RESIDENT.lock().unwrap_or_else(|e| e.into_inner());
        let a = Allocator::new();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: every block is used within its layout and freed with it.
        unsafe {
            let blocks: Vec<*mut u8> = (0..8192).map(|_| a.alloc(layout)).collect();
            for (i, &b) in blocks.iter().enumerate() {
                ptr::write_bytes(b, (i % 251) as u8, layout.size());
            }
            // Every 64th block stays live; the others (about 7.9 MB) are freed.
            for (i, &b) in blocks.iter().enumerate() {
                if i % 64 != 0 {
                    a.dealloc(b, layout);
                }
            }
            let freed = resident_kib();
            a.release();
            let released = resident_kib();
            // The freed blocks' pages were resident until the release (positive control:
            // freeing alone gave nothing back), and most of them are not after it.
            assert!(
                released + 6 * 1024 < freed,
                "{freed} -> {released} KiB: the free blocks' pages stayed"
            );
            for (i, &b) in blocks.iter().enumerate().filter(|(i, _)| i % 64 == 0) {
                let live = std::slice::from_raw_parts(b, layout.size());
                assert!(
                    live.iter().all(|&x| x == (i % 251) as u8),
                    "block {i} changed"
                );
                a.dealloc(b, layout);
            }
            // The pools still serve, zeroed where asked.
            let z = a.alloc_zeroed(layout);
            assert!(
                std::slice::from_raw_parts(z, layout.size())
                    .iter()
                    .all(|&x| x == 0)
            );
            a.dealloc(z, layout);
        }
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
