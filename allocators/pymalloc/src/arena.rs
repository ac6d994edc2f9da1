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
    /// Empty pools plus never-carved pools: `len(freepools) + never carved`.
    pub(crate) nfreepools: u32,
    /// Pools in this arena: 64, or 63 when `address` is not pool-aligned (3.10 layout).
    pub(crate) ntotalpools: u32,
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

/// The arena descriptors and the lists threaded through them.
pub(crate) struct Arenas {
    pub(crate) objs: crate::os::OsVec<ArenaObject>,
    /// Head of the unused-descriptor list.
    pub(crate) unused: u32,
    /// Head of `usable_arenas`.
    pub(crate) usable: u32,
    /// `nfp2lasta[k]`: last arena on `usable` with `k` free pools, or NONE; `[0]` is always NONE.
    pub(crate) nfp2lasta: [u32; 257],
    pub(crate) policy: ArenaPolicy,
    next_seq: u64,
}

impl Arenas {
    pub(crate) const fn new(policy: ArenaPolicy) -> Self {
        Arenas {
            objs: crate::os::OsVec::new(),
            unused: NONE,
            usable: NONE,
            nfp2lasta: [NONE; 257],
            policy,
            next_seq: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: u32) -> &ArenaObject {
        &self.objs.as_slice()[i as usize]
    }

    #[inline(always)]
    pub(crate) fn get_mut(&mut self, i: u32) -> &mut ArenaObject {
        &mut self.objs.as_mut_slice()[i as usize]
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
        let ntotal = ((address + arena_size - first) / pool_size) as u32;
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
            self.nfp2lasta[ntotal as usize] = i;
        }
    }

    /// Takes one pool from the head of `usable` (CPython always allocates from the head).
    /// Returns the pool and whether it was never carved before.
    pub(crate) fn take_pool(&mut self, pool_size: usize) -> (*mut PoolHeader, bool) {
        let i = self.usable;
        debug_assert_ne!(i, NONE);
        let nf = self.get(i).nfreepools;
        if self.policy == ArenaPolicy::MostUsedFirst {
            // The head has the fewest free pools, so taking one cannot break the order; only
            // the fingers move: it is now the sole arena with nf - 1.
            if self.nfp2lasta[nf as usize] == i {
                self.nfp2lasta[nf as usize] = NONE;
            }
            if nf > 1 {
                self.nfp2lasta[nf as usize - 1] = i;
            }
        }
        let a = self.get_mut(i);
        a.nfreepools = nf - 1;
        let (pool, fresh) = if !a.freepools.is_null() {
            let p = a.freepools;
            // SAFETY: pools on `freepools` are live carved pools of this arena.
            a.freepools = unsafe { (*p).nextpool };
            (p, false)
        } else {
            let p = a.ptr(a.pool_address).cast::<PoolHeader>();
            a.pool_address += pool_size;
            (p, true)
        };
        if nf == 1 {
            // Now full of used pools: on no list.
            let next = self.get(i).next;
            self.usable = next;
            if next != NONE {
                self.get_mut(next).prev = NONE;
            }
            let a = self.get_mut(i);
            a.next = NONE;
            a.prev = NONE;
        }
        (pool, fresh)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.get(i).prev, self.get(i).next);
        if prev == NONE {
            self.usable = next;
        } else {
            self.get_mut(prev).next = next;
        }
        if next != NONE {
            self.get_mut(next).prev = prev;
        }
        let a = self.get_mut(i);
        a.next = NONE;
        a.prev = NONE;
    }

    fn insert_after(&mut self, i: u32, after: u32) {
        let next = if after == NONE { self.usable } else { self.get(after).next };
        {
            let a = self.get_mut(i);
            a.prev = after;
            a.next = next;
        }
        if after == NONE {
            self.usable = i;
        } else {
            self.get_mut(after).next = i;
        }
        if next != NONE {
            self.get_mut(next).prev = i;
        }
    }

    /// A pool of arena `i` became empty: put it on the arena's `freepools`, count it, and keep
    /// `usable` in policy order. Returns `true` when the whole arena is now to be released
    /// (it has been unlinked; the caller unmaps it and calls [`Arenas::retire`]).
    pub(crate) fn pool_emptied(&mut self, i: u32, pool: *mut PoolHeader, keep_last: bool) -> bool {
        let a = self.get_mut(i);
        // SAFETY: `pool` is a live pool of this arena, now empty and on no list.
        unsafe { (*pool).nextpool = a.freepools };
        a.freepools = pool;
        let old = a.nfreepools;
        let nf = old + 1;
        let ntotal = a.ntotalpools;
        let was_listed = old > 0;
        let mut lastnf = false;
        if self.policy == ArenaPolicy::MostUsedFirst && was_listed {
            // If this arena was the rightmost with the old count, the finger moves to its
            // predecessor when that one has the same count, else there is none left.
            if self.nfp2lasta[old as usize] == i {
                lastnf = true;
                let p = self.get(i).prev;
                self.nfp2lasta[old as usize] =
                    if p != NONE && self.get(p).nfreepools == old { p } else { NONE };
            }
        }
        self.get_mut(i).nfreepools = nf;

        // Case 1: wholly empty. 3.9+ keeps it when it is the last usable arena (anti-thrashing:
        // a program that frees and reallocates around an arena boundary would otherwise map and
        // unmap an arena on every cycle, bpo-37257).
        if nf == ntotal && (!keep_last || !self.would_be_last(i, was_listed)) {
            if was_listed {
                self.unlink(i);
            }
            return true;
        }
        // Case 2: it was full (on no list); now it has one free pool. With CPython's order it
        // goes to the head: 1 is the smallest possible count.
        if !was_listed {
            match self.policy {
                ArenaPolicy::MostUsedFirst => {
                    self.insert_after(i, NONE);
                    if self.nfp2lasta[1] == NONE {
                        self.nfp2lasta[1] = i;
                    }
                }
                ArenaPolicy::NewestFirst => self.insert_by_age(i),
            }
            return false;
        }
        if self.policy == ArenaPolicy::NewestFirst {
            return false; // position depends only on age
        }
        if self.nfp2lasta[nf as usize] == NONE {
            self.nfp2lasta[nf as usize] = i;
        }
        // Case 4: it was the rightmost with the old count: the next arena has more free pools
        // than `old`, so at least `nf`: still in order.
        if lastnf {
            return false;
        }
        // Case 3: move it right after the last arena with the old count, restoring the order.
        let after = self.nfp2lasta[old as usize];
        debug_assert_ne!(after, NONE);
        self.unlink(i);
        self.insert_after(i, after);
        false
    }

    /// Whether wholly free arena `i` is (or, when it was full and so on no list, would be once
    /// listed) the last arena of `usable`: the one the keep-one rule keeps.
    ///
    /// A listed arena is last when it has no successor. An arena that was full goes from no
    /// list straight to wholly free only when it holds a single pool (a 2-pool arena placed
    /// off a pool boundary; CPython's own layouts never do this). Its `next` says nothing then.
    /// With CPython's order it would go to the head (1 free pool is the fewest), so it is last
    /// only when no arena is usable; newest first, it would go after every newer arena, so it
    /// is last when no usable arena is older. Either way at most one such arena is kept.
    fn would_be_last(&self, i: u32, was_listed: bool) -> bool {
        if was_listed {
            return self.get(i).next == NONE;
        }
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
        self.insert_after(i, after);
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
