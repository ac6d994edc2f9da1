//! Arenas and the order in which they are used: `usable_arenas` and its search fingers.
//!
//! An arena is one mapping of `arena_size` bytes cut into pools. Descriptors live in a vector
//! that only grows (CPython's `arenas[]`); a descriptor with `address == 0` is unused and sits on
//! the `unused` list. Arenas with at least one free pool are on the doubly-linked `usable` list.
//!
//! With CPython's policy ([`ArenaPolicy::MostUsedFirst`]) `usable` is sorted by ascending
//! `nfreepools`, so pools are taken from the most-used arena and the nearly empty ones get the
//! chance to drain completely and be unmapped. `nfp2lasta[k]` is the *last* arena on the list
//! with `k` free pools (bpo-37029), which lets a free re-position its arena in O(1).
//!
//! Every pointer into an arena is derived from the arena's `base`, the pointer its source
//! returned, so that it carries the provenance of the mapping (`base.with_addr(a)`), never
//! that of a pointer some caller passed in: addresses are computed as integers, pointers are
//! made only from `base`.

use crate::config::ArenaPolicy;
use crate::pool::PoolHeader;

/// "No arena": the null link.
pub(crate) const NONE: u32 = u32::MAX;

/// One arena descriptor (`struct arena_object`).
#[derive(Clone, Copy)]
pub(crate) struct ArenaObject {
    /// Start of the mapping; 0 iff this descriptor is unused (on the `unused` list).
    pub(crate) address: usize,
    /// The mapping as the arena source returned it (`base.addr() == address`); null iff unused.
    /// Every pointer into the arena is made from it.
    pub(crate) base: *mut u8,
    /// First never-carved pool (the high-water mark of carving).
    pub(crate) pool_address: usize,
    /// Empty pools plus never-carved pools: `len(freepools) + never carved`. A `u8`: config
    /// validation allows at most 255 pools per arena, and a count indexes `nfp2lasta`
    /// directly.
    pub(crate) nfreepools: u8,
    /// Pools in this arena: 64, or 63 when `address` is not pool-aligned (3.10 layout).
    pub(crate) ntotalpools: u8,
    /// Singly-linked list of empty pools through `nextpool` (LIFO).
    pub(crate) freepools: *mut PoolHeader,
    /// Next on `usable` (or on `unused` when unused).
    pub(crate) next: u32,
    /// Previous on `usable`.
    pub(crate) prev: u32,
    /// Creation order, for [`ArenaPolicy::NewestFirst`].
    pub(crate) seq: u64,
}

impl ArenaObject {
    const UNUSED: ArenaObject = ArenaObject {
        address: 0,
        base: core::ptr::null_mut(),
        pool_address: 0,
        nfreepools: 0,
        ntotalpools: 0,
        freepools: core::ptr::null_mut(),
        next: NONE,
        prev: NONE,
        seq: 0,
    };

    /// Address of the first pool: the arena start rounded up to a pool boundary.
    pub(crate) fn first_pool(&self, pool_size: usize) -> usize {
        self.address.next_multiple_of(pool_size)
    }

    /// A pointer to `addr`, an address inside this arena, with the arena's provenance.
    #[inline(always)]
    pub(crate) fn ptr(&self, addr: usize) -> *mut u8 {
        self.base.with_addr(addr)
    }
}

/// The number of `nfp2lasta` fingers: one per possible free-pool count. Config validation
/// allows at most 255 pools per arena, so a count fits a `u8` and indexing with one needs no
/// bounds check.
const FINGERS: usize = 256;

/// The arena descriptors and the lists threaded through them.
///
/// Type invariant, relied on by the unchecked accessors of the hot paths: every index held in
/// `unused`, `usable`, `nfp2lasta`, a descriptor's `next`/`prev` or a pool header's
/// `arenaindex` is either [`NONE`] or below `objs.len()`, and `objs` never shrinks (a retired
/// descriptor stays in the vector, on `unused`). So an index read from any of these links,
/// once checked against `NONE`, names a descriptor.
pub(crate) struct Arenas {
    pub(crate) objs: crate::os::OsVec<ArenaObject>,
    /// Head of the unused-descriptor list.
    pub(crate) unused: u32,
    /// Head of `usable_arenas`.
    pub(crate) usable: u32,
    /// `nfp2lasta[k]`: last arena on `usable` with `k` free pools, or NONE; `[0]` is always NONE.
    pub(crate) nfp2lasta: [u32; FINGERS],
    pub(crate) policy: ArenaPolicy,
    next_seq: u64,
}

/// The finger slot of free-pool count `nf`: a `u8`, so the compiler sees the index is in range.
#[inline(always)]
fn finger(nf: u8) -> usize {
    nf as usize
}

impl Arenas {
    pub(crate) const fn new(policy: ArenaPolicy) -> Self {
        Arenas {
            objs: crate::os::OsVec::new(),
            unused: NONE,
            usable: NONE,
            nfp2lasta: [NONE; FINGERS],
            policy,
            next_seq: 0,
        }
    }

    /// Descriptor `i`, bounds-checked: for code that must not trust an index (the invariant
    /// checker) and for cold paths.
    #[inline(always)]
    pub(crate) fn get(&self, i: u32) -> &ArenaObject {
        &self.objs.as_slice()[i as usize]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, i: u32) -> &mut ArenaObject {
        &mut self.objs.as_mut_slice()[i as usize]
    }

    /// Descriptor `i` without a bounds or null check.
    ///
    /// # Safety
    /// `i < objs.len()`: any index read from a link of this structure other than `NONE` (type
    /// invariant).
    #[inline(always)]
    pub(crate) unsafe fn at(&self, i: u32) -> &ArenaObject {
        debug_assert!((i as usize) < self.objs.len());
        // SAFETY: i < len (caller).
        unsafe { self.objs.get_unchecked(i as usize) }
    }

    /// Descriptor `i`, mutable, without a bounds or null check.
    ///
    /// # Safety
    /// As for [`at`](Self::at).
    #[inline(always)]
    pub(crate) unsafe fn at_mut(&mut self, i: u32) -> &mut ArenaObject {
        debug_assert!((i as usize) < self.objs.len());
        // SAFETY: i < len (caller).
        unsafe { self.objs.get_unchecked_mut(i as usize) }
    }

    /// A free descriptor: popped from `unused`, growing the vector (doubling) when none is left.
    pub(crate) fn take_descriptor(&mut self) -> Option<u32> {
        if self.unused == NONE {
            let from = self.objs.len();
            let target = if from == 0 { 16 } else { from * 2 };
            for _ in from..target {
                if !self.objs.push(ArenaObject::UNUSED) {
                    break;
                }
            }
            // Thread the new slots onto `unused`, lowest index first.
            let to = self.objs.len();
            for i in (from..to).rev() {
                let head = self.unused;
                self.get_mut(i as u32).next = head;
                self.unused = i as u32;
            }
        }
        let i = self.unused;
        if i == NONE {
            return None;
        }
        self.unused = self.get(i).next;
        Some(i)
    }

    /// Fills descriptor `i` for a freshly mapped arena at `base` and makes it the only usable
    /// arena (a new arena is only created when no arena has a free pool).
    pub(crate) fn install(&mut self, i: u32, base: *mut u8, arena_size: usize, pool_size: usize) {
        debug_assert_eq!(self.usable, NONE);
        let address = base.addr();
        let first = address.next_multiple_of(pool_size);
        // At most 255 (config validation), so the count fits.
        let ntotal = ((address + arena_size - first) / pool_size) as u8;
        let seq = self.next_seq;
        self.next_seq += 1;
        *self.get_mut(i) = ArenaObject {
            address,
            base,
            pool_address: first,
            nfreepools: ntotal,
            ntotalpools: ntotal,
            freepools: core::ptr::null_mut(),
            next: NONE,
            prev: NONE,
            seq,
        };
        self.usable = i;
        if self.policy == ArenaPolicy::MostUsedFirst {
            self.nfp2lasta[finger(ntotal)] = i;
        }
    }

    /// Takes one pool from the head of `usable` (CPython always allocates from the head) and
    /// returns it: the first of its `freepools` or, when `carve`, its next never-carved pool,
    /// which gets a fresh header (class `NO_CLASS`, so the caller initialises it). When
    /// `maybe_last`, the arena may be giving its last free pool (and then leaves `usable`);
    /// otherwise it has more than one. Both are parameters so that each caller, inlined, holds
    /// only the paths it can take.
    ///
    /// # Safety
    /// `usable` is not `NONE`; `carve` is whether its `freepools` is empty; when `maybe_last`
    /// is false it has at least two free pools.
    #[inline(always)]
    pub(crate) unsafe fn take_pool(
        &mut self,
        pool_size: usize,
        carve: bool,
        maybe_last: bool,
    ) -> *mut PoolHeader {
        let i = self.usable;
        // SAFETY: i is not NONE (caller) and comes from a link (type invariant).
        let a = unsafe { self.at_mut(i) };
        debug_assert_eq!(carve, a.freepools.is_null());
        debug_assert!(maybe_last || a.nfreepools > 1);
        let nf = a.nfreepools;
        a.nfreepools = nf - 1;
        let pool = if !carve {
            let p = a.freepools;
            // SAFETY: pools on `freepools` are live carved pools of this arena.
            a.freepools = unsafe { (*p).nextpool };
            p
        } else {
            let p = a.ptr(a.pool_address).cast::<PoolHeader>();
            a.pool_address += pool_size;
            // SAFETY: `pool_address` was below the arena's end (nfreepools > 0 counts this
            // never-carved pool), so `p` is a pool-sized, writable, unused region of the arena.
            unsafe { PoolHeader::carve(p, i) };
            p
        };
        if maybe_last && nf == 1 {
            // Now full of used pools: on no list.
            let next = a.next;
            a.next = NONE;
            a.prev = NONE;
            self.usable = next;
            if next != NONE {
                // SAFETY: a link other than NONE (type invariant).
                unsafe { self.at_mut(next) }.prev = NONE;
            }
        }
        if self.policy == ArenaPolicy::MostUsedFirst {
            // The head has the fewest free pools, so taking one cannot break the order; only
            // the fingers move: it is now the sole arena with nf - 1.
            if self.nfp2lasta[finger(nf)] == i {
                self.nfp2lasta[finger(nf)] = NONE;
            }
            if !maybe_last || nf > 1 {
                self.nfp2lasta[finger(nf - 1)] = i;
            }
        }
        pool
    }

    /// # Safety
    /// `i` is a descriptor on `usable`.
    #[inline(always)]
    unsafe fn unlink(&mut self, i: u32) {
        // SAFETY: i is a descriptor (caller); its links are NONE or descriptors (invariant).
        unsafe {
            let a = self.at_mut(i);
            let (prev, next) = (a.prev, a.next);
            a.next = NONE;
            a.prev = NONE;
            if prev == NONE {
                self.usable = next;
            } else {
                self.at_mut(prev).next = next;
            }
            if next != NONE {
                self.at_mut(next).prev = prev;
            }
        }
    }

    /// # Safety
    /// `i` is a descriptor on no list; `after` is `NONE` or a descriptor on `usable`.
    #[inline(always)]
    unsafe fn insert_after(&mut self, i: u32, after: u32) {
        // SAFETY: i and after are descriptors (caller); links are NONE or descriptors.
        unsafe {
            let next = if after == NONE { self.usable } else { self.at(after).next };
            let a = self.at_mut(i);
            a.prev = after;
            a.next = next;
            if after == NONE {
                self.usable = i;
            } else {
                self.at_mut(after).next = i;
            }
            if next != NONE {
                self.at_mut(next).prev = i;
            }
        }
    }

    /// A pool of arena `i` became empty: put it on the arena's `freepools`, count it, and keep
    /// `usable` in policy order. Returns `None` when that is all done, or `Some(old)`, the
    /// arena's former free-pool count, when the caller must finish with
    /// [`pool_emptied_rest`](Self::pool_emptied_rest).
    ///
    /// The common case is decided here, inline, with no call: CPython's order, the arena was
    /// on `usable` and is the rightmost with its old count (so it stays where it is), and it
    /// is not released (it still has a used pool, or it is the last usable arena and the
    /// keep-one rule keeps it). Every other case is left to `pool_emptied_rest`, which does
    /// what the whole function did before the split; the fast path takes the same steps for
    /// the cases it handles.
    ///
    /// # Safety
    /// `i` is the descriptor of a live arena (a pool header's `arenaindex`), and `pool` is a
    /// live pool of that arena, now empty and on no list.
    #[inline(always)]
    pub(crate) unsafe fn pool_emptied(
        &mut self,
        i: u32,
        pool: *mut PoolHeader,
        keep_last: bool,
    ) -> Option<u8> {
        // SAFETY: i is a descriptor (caller).
        let a = unsafe { self.at_mut(i) };
        // SAFETY: `pool` is a live pool of this arena, now empty and on no list (caller).
        unsafe { (*pool).nextpool = a.freepools };
        a.freepools = pool;
        let old = a.nfreepools;
        let nf = old + 1;
        a.nfreepools = nf;
        let (prev, next) = (a.prev, a.next);
        let stays = nf != a.ntotalpools || (keep_last && next == NONE);
        if old == 0
            || !stays
            || self.policy != ArenaPolicy::MostUsedFirst
            || self.nfp2lasta[finger(old)] != i
        {
            return Some(old);
        }
        // Listed, kept, and the rightmost with the old count: the finger of the old count
        // moves to its predecessor when that one has the same count, else there is none left;
        // the arena becomes the finger of the new count if there was none; the next arena has
        // more free pools than `old`, so at least `nf`: still in order (Case 4 below).
        // SAFETY: prev is a link other than NONE (type invariant).
        let same = prev != NONE && unsafe { self.at(prev) }.nfreepools == old;
        self.nfp2lasta[finger(old)] = if same { prev } else { NONE };
        if self.nfp2lasta[finger(nf)] == NONE {
            self.nfp2lasta[finger(nf)] = i;
        }
        None
    }

    /// The rest of [`pool_emptied`](Self::pool_emptied) when it returned `Some(old)`: the
    /// pool is on `freepools` and the count of arena `i` went from `old` to `old + 1`.
    /// Returns `true` when the whole arena is now to be released (it has been unlinked; the
    /// caller unmaps it and calls [`Arenas::retire`]).
    #[inline(always)]
    pub(crate) fn pool_emptied_rest(&mut self, i: u32, old: u8, keep_last: bool) -> bool {
        let a = self.get(i);
        let (nf, ntotal, prev, next) = (a.nfreepools, a.ntotalpools, a.prev, a.next);
        let was_listed = old > 0;
        let most_used = self.policy == ArenaPolicy::MostUsedFirst;
        let mut lastnf = false;
        if most_used && was_listed && self.nfp2lasta[finger(old)] == i {
            // It was the rightmost with the old count: the finger moves to its predecessor
            // when that one has the same count, else there is none left.
            lastnf = true;
            let same = prev != NONE && self.get(prev).nfreepools == old;
            self.nfp2lasta[finger(old)] = if same { prev } else { NONE };
        }

        // Case 1: wholly empty. 3.9+ keeps it when it is the last usable arena (anti-thrashing:
        // a program that frees and reallocates around an arena boundary would otherwise map and
        // unmap an arena on every cycle, bpo-37257).
        if nf == ntotal
            && (!keep_last
                || !(if was_listed { next == NONE } else { self.would_be_last_unlisted(i) }))
        {
            if was_listed {
                // SAFETY: i is on `usable` (it had free pools before).
                unsafe { self.unlink(i) };
            }
            return true;
        }
        // Case 2: it was full (on no list); now it has one free pool. With CPython's order it
        // goes to the head: 1 is the smallest possible count.
        if !was_listed {
            if most_used {
                // SAFETY: i is a descriptor on no list.
                unsafe { self.insert_after(i, NONE) };
                if self.nfp2lasta[1] == NONE {
                    self.nfp2lasta[1] = i;
                }
            } else {
                self.insert_by_age(i);
            }
            return false;
        }
        if !most_used {
            return false; // position depends only on age
        }
        if self.nfp2lasta[finger(nf)] == NONE {
            self.nfp2lasta[finger(nf)] = i;
        }
        // Case 4: it was the rightmost with the old count: the next arena has more free pools
        // than `old`, so at least `nf`: still in order.
        if lastnf {
            return false;
        }
        // Case 3: move it right after the last arena with the old count, restoring the order.
        let after = self.nfp2lasta[finger(old)];
        debug_assert_ne!(after, NONE);
        // SAFETY: i is on `usable`; `after` is a finger: NONE or a descriptor on `usable`.
        unsafe {
            self.unlink(i);
            self.insert_after(i, after);
        }
        false
    }

    /// Whether wholly free arena `i`, which was full and so on no list, would be the last
    /// arena of `usable` once listed: the one the keep-one rule keeps. (A listed arena is last
    /// when it has no successor.)
    ///
    /// An arena that was full goes from no list straight to wholly free only when it holds a
    /// single pool (a 2-pool arena placed off a pool boundary; CPython's own layouts never do
    /// this). With CPython's order it would go to the head (1 free pool is the fewest), so it
    /// is last only when no arena is usable; newest first, it would go after every newer arena,
    /// so it is last when no usable arena is older. Either way at most one such arena is kept.
    #[cold]
    fn would_be_last_unlisted(&self, i: u32) -> bool {
        match self.policy {
            ArenaPolicy::MostUsedFirst => self.usable == NONE,
            ArenaPolicy::NewestFirst => {
                let seq = self.get(i).seq;
                let mut cur = self.usable;
                while cur != NONE {
                    if self.get(cur).seq < seq {
                        return false;
                    }
                    cur = self.get(cur).next;
                }
                true
            }
        }
    }

    /// Inserts a newly usable arena so that `usable` stays ordered newest first. O(arenas): the
    /// ablation policy pays a list walk that CPython's fingers avoid.
    fn insert_by_age(&mut self, i: u32) {
        let seq = self.get(i).seq;
        let mut after = NONE;
        let mut cur = self.usable;
        while cur != NONE && self.get(cur).seq > seq {
            after = cur;
            cur = self.get(cur).next;
        }
        // Bounds-checked above: `i` and every `cur` walked are descriptors.
        // SAFETY: i is a descriptor on no list; `after` is NONE or a descriptor on `usable`.
        unsafe { self.insert_after(i, after) };
    }

    /// Returns descriptor `i` (already unlinked and unmapped) to `unused`.
    pub(crate) fn retire(&mut self, i: u32) {
        let head = self.unused;
        let a = self.get_mut(i);
        *a = ArenaObject::UNUSED;
        a.next = head;
        self.unused = i;
    }
}
