//! "Is this pointer ours?": the O(1) ownership map consulted by every free.
//!
//! CPython 3.10+ answers with a radix tree keyed by the "ideal" arena-sized chunk an address
//! falls in (bpo-37448); before that, `address_in_range` read an index out of the would-be pool
//! header, which can touch memory pymalloc never owned. This map follows the 3.10 idea with two
//! levels: a root of leaf pointers and leaves of chunk entries, all mapped from the OS on demand.
//!
//! An arena of size A is mapped at some page-aligned address, so it covers the tail of one
//! A-aligned chunk and the head of the next. Each chunk entry therefore records at most two
//! arenas: one that *ends* inside it (`lo_end`: the arena covers offsets `[0, lo_end)`) and one
//! that *starts* inside it (`hi_len`: the arena covers the last `hi_len` bytes of the chunk).
//! Zero means "none" for both, so fresh zeroed leaves need no initialisation. Beside each
//! length sits the index of that arena's descriptor: a free finds its arena, and from the
//! arena's base pointer a pointer with the arena's provenance, in the same lookup.

use crate::os::{self, PAGE};
use core::ptr::NonNull;

const LEAF_BITS: u32 = 14;
const LEAF_LEN: usize = 1 << LEAF_BITS;
/// User-space addresses on x86-64 and AArch64 Linux fit in 48 bits.
const ADDRESS_BITS: u32 = 48;

/// One chunk: see the module docs.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Entry {
    /// The arena ending in this chunk covers offsets `[0, lo_end)`; 0: none.
    lo_end: u32,
    /// The arena starting in this chunk covers its last `hi_len` bytes; 0: none.
    hi_len: u32,
    /// Descriptor index of the arena ending here (meaningful when `lo_end > 0`).
    lo_arena: u32,
    /// Descriptor index of the arena starting here (meaningful when `hi_len > 0`).
    hi_arena: u32,
}

/// The ownership map.
///
/// Invariant: `root` is null or maps `root_len` leaf pointers; each non-null leaf maps
/// `LEAF_LEN` entries; an address is inside a live arena iff its entry says so; every arena
/// index in an entry names a descriptor of the heap's arena vector (which never shrinks).
pub(crate) struct OwnershipMap {
    arena_shift: u32,
    /// Arena size − 1, kept beside the shift so that a lookup computes neither.
    mask: usize,
    /// Slots in `root`: 0 until the root is mapped, so one comparison in `contains` rejects
    /// both an address beyond the map and a map with no root yet.
    root_len: usize,
    root: *mut *mut Entry,
    /// Leaves mapped so far (the "bot nodes" of CPython's report).
    pub(crate) leaves: usize,
}

impl OwnershipMap {
    pub(crate) const fn new(arena_shift: u32) -> Self {
        OwnershipMap {
            arena_shift,
            mask: (1 << arena_shift) - 1,
            root_len: 0,
            root: core::ptr::null_mut(),
            leaves: 0,
        }
    }

    /// Slots the root has once mapped.
    fn full_root_len(&self) -> usize {
        1 << (ADDRESS_BITS - self.arena_shift - LEAF_BITS)
    }

    fn root_bytes(&self) -> usize {
        (self.full_root_len() * core::mem::size_of::<*mut Entry>()).div_ceil(PAGE) * PAGE
    }

    const fn leaf_bytes() -> usize {
        LEAF_LEN * core::mem::size_of::<Entry>()
    }

    /// Whether `p` lies inside a live arena. Never touches memory outside the map.
    #[inline(always)]
    pub(crate) fn contains(&self, p: usize) -> bool {
        self.arena_of(p).is_some()
    }

    /// The descriptor index of the live arena holding address `p`, if any. Any `p` is fine:
    /// the lookup never touches memory outside the map and cannot overflow.
    #[inline(always)]
    pub(crate) fn arena_of(&self, p: usize) -> Option<u32> {
        let chunk = p >> self.arena_shift;
        let ri = chunk >> LEAF_BITS;
        if ri >= self.root_len {
            return None;
        }
        // SAFETY: root_len > 0 only once root maps root_len pointers, and ri < root_len.
        let leaf = unsafe { *self.root.add(ri) };
        if leaf.is_null() {
            return None;
        }
        // SAFETY: a non-null leaf maps LEAF_LEN entries; the index is masked to that range.
        let e = unsafe { *leaf.add(chunk & (LEAF_LEN - 1)) };
        let off = p & self.mask;
        if off < e.lo_end as usize {
            Some(e.lo_arena)
        } else if off + e.hi_len as usize > self.mask {
            Some(e.hi_arena)
        } else {
            None
        }
    }

    /// The entry for `chunk`, mapping the root and its leaf if needed.
    fn entry(&mut self, chunk: usize) -> Option<*mut Entry> {
        let ri = chunk >> LEAF_BITS;
        if ri >= self.full_root_len() {
            return None;
        }
        if self.root.is_null() {
            self.root = os::map_zeroed(self.root_bytes())?.as_ptr().cast();
            self.root_len = self.full_root_len();
        }
        // SAFETY: root is mapped with root_len slots and ri < root_len.
        let slot = unsafe { self.root.add(ri) };
        // SAFETY: `slot` is a valid, initialised (zeroed or written) pointer slot.
        let mut leaf = unsafe { *slot };
        if leaf.is_null() {
            leaf = os::map_zeroed(Self::leaf_bytes())?.as_ptr().cast();
            // SAFETY: as above; the slot is ours to write.
            unsafe { *slot = leaf };
            self.leaves += 1;
        }
        // SAFETY: the leaf maps LEAF_LEN entries; the index is masked to that range.
        Some(unsafe { leaf.add(chunk & (LEAF_LEN - 1)) })
    }

    /// Marks `[base, base + arena size)` as arena `arena`. Returns `false` if the map could not
    /// grow (then nothing is marked).
    pub(crate) fn insert(&mut self, base: usize, arena: u32) -> bool {
        let size = 1usize << self.arena_shift;
        let chunk = base >> self.arena_shift;
        let off = base & (size - 1);
        let (Some(first), second) = (self.entry(chunk), (off != 0).then(|| self.entry(chunk + 1)))
        else {
            return false;
        };
        if let Some(None) = second {
            return false;
        }
        // SAFETY: `first` points at a live entry of a mapped leaf (from `entry`).
        unsafe {
            (*first).hi_len = (size - off) as u32;
            (*first).hi_arena = arena;
        }
        if let Some(Some(next)) = second {
            // SAFETY: as above.
            unsafe {
                (*next).lo_end = off as u32;
                (*next).lo_arena = arena;
            }
        }
        true
    }

    /// Forgets the arena at `base`.
    pub(crate) fn remove(&mut self, base: usize) {
        let size = 1usize << self.arena_shift;
        let chunk = base >> self.arena_shift;
        let off = base & (size - 1);
        if let Some(e) = self.entry(chunk) {
            // SAFETY: `e` points at a live entry of a mapped leaf.
            unsafe { (*e).hi_len = 0 };
        }
        if off != 0
            && let Some(e) = self.entry(chunk + 1)
        {
            // SAFETY: as above.
            unsafe { (*e).lo_end = 0 };
        }
    }

    /// Bytes of memory the map itself has mapped (CPython reports these as "lost to arena map").
    pub(crate) fn bytes(&self) -> usize {
        if self.root.is_null() { 0 } else { self.root_bytes() + self.leaves * Self::leaf_bytes() }
    }
}

impl Drop for OwnershipMap {
    fn drop(&mut self) {
        if self.root.is_null() {
            return;
        }
        for i in 0..self.root_len {
            // SAFETY: root maps root_len slots.
            let leaf = unsafe { *self.root.add(i) };
            if let Some(l) = NonNull::new(leaf) {
                // SAFETY: each leaf is one whole mapping of leaf_bytes, owned by the map.
                unsafe { os::unmap(l.cast(), Self::leaf_bytes()) };
            }
        }
        // SAFETY: the root is one whole mapping of root_bytes, owned by the map.
        unsafe { os::unmap(NonNull::new_unchecked(self.root.cast()), self.root_bytes()) };
    }
}
