//! "Which heap owns this block?": the process-wide, lock-free arena map of a [`PyMalloc`].
//!
//! Every [`Heap`](crate::Heap) keeps its own ownership map (`radix`), which only its owner
//! may read. A block freed by *another* thread needs its owner found without touching that
//! heap, so a `PyMalloc` keeps a second map, shared by all its heaps, with the same geometry
//! as `radix` (a root of leaf pointers, leaves of arena-sized chunk entries; an arena covers
//! the tail of one chunk and the head of the next) but every field atomic:
//!
//! * an entry names, for the arena ending in the chunk and for the arena starting in it, the
//!   length it covers, the heap that owns it and the arena's base pointer (the free path
//!   re-derives the block's pointer from it, as the heap does: strict provenance);
//! * the heap's arena source (`OwnedArenas`) writes the entry after mapping an arena and
//!   clears it before unmapping, both under the heap's exclusive access;
//! * a lookup reads the covered length (acquire), then the owner and base it published.
//!
//! A lookup for a *live* block cannot race the entry of its own arena: the arena stays
//! mapped, and its entry unchanged, while one of its blocks lives. The other half of the chunk
//! may change meanwhile (another arena mapped or unmapped beside it), but that half never
//! covers the block's offset, and each half is read through its own atomics. Leaves are mapped
//! on demand and installed with a compare-exchange; they are unmapped only when the map is
//! dropped.
//!
//! [`PyMalloc`]: crate::PyMalloc

use crate::os::{self, PAGE};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

const LEAF_BITS: u32 = 14;
const LEAF_LEN: usize = 1 << LEAF_BITS;
/// User-space addresses on x86-64 and AArch64 Linux fit in 48 bits.
const ADDRESS_BITS: u32 = 48;

/// One chunk: the arena ending in it covers `[0, lo_end)`, the one starting in it the last
/// `hi_len` bytes; 0 means none.
#[repr(C)]
struct Entry {
    lo_end: AtomicU32,
    hi_len: AtomicU32,
    lo_owner: AtomicPtr<u8>,
    hi_owner: AtomicPtr<u8>,
    lo_base: AtomicPtr<u8>,
    hi_base: AtomicPtr<u8>,
}

/// The shared arena map.
///
/// Invariant: `root` maps `root_len` leaf pointers (or is null when the root could not be
/// mapped, and then `root_len` is 0); each non-null leaf maps `LEAF_LEN` zeroed-then-written
/// entries and stays mapped until the map is dropped.
pub(crate) struct OwnerMap {
    arena_shift: u32,
    root_len: usize,
    root: *mut AtomicPtr<Entry>,
}

// SAFETY: every field reachable through `root` is atomic; the root and leaves are owned by the
// map and only unmapped in `drop` (exclusive access).
unsafe impl Sync for OwnerMap {}
// SAFETY: as above; the map owns its mappings.
unsafe impl Send for OwnerMap {}

impl OwnerMap {
    /// A map for arenas of `1 << arena_shift` bytes; the root (a few hundred KiB of address
    /// space, untouched until used) is mapped now. `None` when the OS refuses it.
    pub(crate) fn new(arena_shift: u32) -> Option<OwnerMap> {
        let root_len = 1usize << (ADDRESS_BITS - arena_shift - LEAF_BITS);
        let root = os::map_zeroed(Self::root_bytes(root_len))?.as_ptr().cast();
        Some(OwnerMap { arena_shift, root_len, root })
    }

    fn root_bytes(root_len: usize) -> usize {
        (root_len * core::mem::size_of::<AtomicPtr<Entry>>()).div_ceil(PAGE) * PAGE
    }

    const fn leaf_bytes() -> usize {
        LEAF_LEN * core::mem::size_of::<Entry>()
    }

    /// The entry of `chunk` if its leaf exists.
    #[inline(always)]
    fn find(&self, chunk: usize) -> Option<&Entry> {
        let ri = chunk >> LEAF_BITS;
        if ri >= self.root_len {
            return None;
        }
        // SAFETY: root maps root_len slots and ri < root_len.
        let leaf = unsafe { &*self.root.add(ri) }.load(Ordering::Acquire);
        if leaf.is_null() {
            return None;
        }
        // SAFETY: a published leaf maps LEAF_LEN entries (zeroed memory is a valid `Entry`:
        // atomics of 0 and null) and stays mapped while the map lives; the index is masked.
        Some(unsafe { &*leaf.add(chunk & (LEAF_LEN - 1)) })
    }

    /// The entry of `chunk`, mapping its leaf if needed.
    fn find_or_make(&self, chunk: usize) -> Option<&Entry> {
        if let Some(e) = self.find(chunk) {
            return Some(e);
        }
        let ri = chunk >> LEAF_BITS;
        if ri >= self.root_len {
            return None;
        }
        let fresh: *mut Entry = os::map_zeroed(Self::leaf_bytes())?.as_ptr().cast();
        // SAFETY: root maps root_len slots and ri < root_len.
        let slot = unsafe { &*self.root.add(ri) };
        if let Err(_other) =
            slot.compare_exchange(core::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // Another heap installed this leaf first: give ours back.
            // SAFETY: `fresh` is one whole mapping of leaf_bytes that nothing else has seen.
            unsafe { os::unmap(NonNull::new_unchecked(fresh.cast()), Self::leaf_bytes()) };
        }
        self.find(chunk)
    }

    /// The owner and arena base of the live arena holding address `p`, if any.
    #[inline(always)]
    pub(crate) fn lookup(&self, p: usize) -> Option<(*mut u8, *mut u8)> {
        let chunk = p >> self.arena_shift;
        let e = self.find(chunk)?;
        let size = 1usize << self.arena_shift;
        let off = p & (size - 1);
        if off < e.lo_end.load(Ordering::Acquire) as usize {
            Some((e.lo_owner.load(Ordering::Relaxed), e.lo_base.load(Ordering::Relaxed)))
        } else if off + e.hi_len.load(Ordering::Acquire) as usize >= size {
            Some((e.hi_owner.load(Ordering::Relaxed), e.hi_base.load(Ordering::Relaxed)))
        } else {
            None
        }
    }

    /// Records the arena `[base, base + arena size)` as `owner`'s. `false` when a leaf could
    /// not be mapped (then nothing is recorded).
    pub(crate) fn insert(&self, base: *mut u8, owner: *mut u8) -> bool {
        let size = 1usize << self.arena_shift;
        let addr = base.addr();
        let chunk = addr >> self.arena_shift;
        let off = addr & (size - 1);
        let Some(first) = self.find_or_make(chunk) else { return false };
        let second = if off != 0 {
            let Some(e) = self.find_or_make(chunk + 1) else { return false };
            Some(e)
        } else {
            None
        };
        first.hi_owner.store(owner, Ordering::Relaxed);
        first.hi_base.store(base, Ordering::Relaxed);
        first.hi_len.store((size - off) as u32, Ordering::Release);
        if let Some(next) = second {
            next.lo_owner.store(owner, Ordering::Relaxed);
            next.lo_base.store(base, Ordering::Relaxed);
            next.lo_end.store(off as u32, Ordering::Release);
        }
        true
    }

    /// Forgets the arena at `base` (recorded by [`insert`](Self::insert)).
    pub(crate) fn remove(&self, base: *mut u8) {
        let size = 1usize << self.arena_shift;
        let addr = base.addr();
        let chunk = addr >> self.arena_shift;
        if let Some(e) = self.find(chunk) {
            e.hi_len.store(0, Ordering::Release);
        }
        if addr & (size - 1) != 0
            && let Some(e) = self.find(chunk + 1)
        {
            e.lo_end.store(0, Ordering::Release);
        }
    }
}

impl Drop for OwnerMap {
    fn drop(&mut self) {
        if self.root.is_null() {
            return;
        }
        for i in 0..self.root_len {
            // SAFETY: root maps root_len slots.
            let leaf = unsafe { &*self.root.add(i) }.load(Ordering::Relaxed);
            if let Some(l) = NonNull::new(leaf) {
                // SAFETY: each leaf is one whole mapping of leaf_bytes, owned by the map.
                unsafe { os::unmap(l.cast(), Self::leaf_bytes()) };
            }
        }
        // SAFETY: the root is one whole mapping of root_bytes, owned by the map.
        unsafe {
            os::unmap(NonNull::new_unchecked(self.root.cast()), Self::root_bytes(self.root_len))
        };
    }
}
