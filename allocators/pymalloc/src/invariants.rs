//! `check_invariants()`: a full walk of every structure against the invariants written beside
//! the fields (pool.rs, arena.rs) and in the reference (pymalloc-design.md §6). It never
//! allocates, so it can run under the global allocator's lock.

use crate::arena::NONE;
use crate::config::{ArenaPolicy, SizeClass};
use crate::debug::Backend;
use crate::heap::Heap;
use crate::os::ArenaSource;
use crate::pool::{NO_CLASS, PoolHeader};

/// A broken invariant: what, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant broken: {what} (arena {arena}, pool {pool:#x}, value {value})")]
pub struct InvariantError {
    /// The invariant, in words.
    pub what: &'static str,
    /// Arena descriptor index, or `usize::MAX` when not about one arena.
    pub arena: usize,
    /// Pool address, or 0.
    pub pool: usize,
    /// A figure that shows the breach.
    pub value: usize,
}

fn fail(what: &'static str, arena: usize, pool: usize, value: usize) -> Result<(), InvariantError> {
    Err(InvariantError { what, arena, pool, value })
}

macro_rules! ensure {
    ($cond:expr, $what:expr, $arena:expr, $pool:expr, $value:expr) => {
        if !$cond {
            return fail($what, $arena as usize, $pool as usize, $value as usize);
        }
    };
}

impl<S: ArenaSource> Heap<S> {
    /// Walks every structure and checks the invariants of the reference (pymalloc-design.md §6).
    /// Never allocates. Tests call it after every operation.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        check(self)
    }
}

fn check<S: ArenaSource>(h: &Heap<S>) -> Result<(), InvariantError> {
    let c = *h.config();
    let ps = c.pool_size();
    let objs = h.arenas.objs.as_slice();
    let (total, current, highwater) = h.counters();
    let all = usize::MAX;

    // Counters.
    let live = objs.iter().filter(|a| a.address != 0).count();
    ensure!(live == current, "arenas_current equals the live descriptors", all, 0, live);
    ensure!(highwater >= current, "highwater >= current", all, 0, highwater);
    ensure!(total >= current as u64, "total >= current", all, 0, total);

    // Per class: used pools = pools on usedpools[c] (walk bounded by the pool count).
    let max_pools = live * c.pools_per_arena();
    let mut on_used_lists = 0usize;
    for (class, list) in h.usedpools().iter().enumerate() {
        let mut p = list.head;
        let mut prev: *mut PoolHeader = core::ptr::null_mut();
        let mut n = 0;
        while !p.is_null() {
            n += 1;
            ensure!(n <= max_pools, "usedpools list has no cycle", all, p, class);
            ensure!(
                h.is_carved_pool(p),
                "pool on usedpools is a carved pool of a live arena",
                all,
                p,
                class
            );
            // SAFETY: p lies in a live arena and is on a list, so its header is initialised.
            let (count, szidx, back, next) =
                unsafe { ((*p).count as usize, (*p).szidx, (*p).prevpool, (*p).nextpool) };
            ensure!(szidx as usize == class, "pool on usedpools[c] has class c", all, p, szidx);
            let per = c.blocks_per_pool(SizeClass(class as u8));
            ensure!(count > 0 && count < per, "pool on usedpools is partly used", all, p, count);
            ensure!(back == prev, "usedpools prev link matches", all, p, class);
            // SAFETY: as above.
            ensure!(!unsafe { (*p).freeblock }.is_null(), "used pool has a free block", all, p, 0);
            prev = p;
            p = next;
        }
        on_used_lists += n;
    }

    // Per arena and per pool.
    let mut used_pools = 0usize;
    let mut bytes = 0usize;
    for (i, a) in objs.iter().enumerate() {
        if a.address == 0 {
            continue;
        }
        let first = a.first_pool(ps);
        let expect_total = (a.address + c.arena_size() - first) / ps;
        ensure!(
            a.ntotalpools as usize == expect_total,
            "ntotalpools fits the arena",
            i,
            0,
            a.ntotalpools
        );
        ensure!(
            a.pool_address >= first && a.pool_address <= first + expect_total * ps,
            "pool_address within the arena",
            i,
            a.pool_address,
            0
        );
        ensure!(h.owns(a.base), "arena start is owned", i, 0, a.address);
        ensure!(h.owns(a.ptr(a.address + c.arena_size() - 1)), "arena end is owned", i, 0, 0);
        ensure!(
            !h.owns(a.ptr(a.address + c.arena_size()))
                || objs.iter().any(|b| b.address == a.address + c.arena_size()),
            "byte after the arena is not owned unless another arena starts there",
            i,
            0,
            0
        );
        let carved = (a.pool_address - first) / ps;
        let mut empty = 0usize;
        for k in 0..carved {
            let pool = a.ptr(first + k * ps).cast::<PoolHeader>();
            // SAFETY: carved pools of a live arena have initialised headers.
            let (count, szidx, arenaindex) =
                unsafe { ((*pool).count as usize, (*pool).szidx, (*pool).arenaindex) };
            ensure!(arenaindex as usize == i, "pool knows its arena", i, pool, arenaindex);
            if count == 0 {
                empty += 1;
                continue;
            }
            ensure!(
                szidx != NO_CLASS && (szidx as usize) < c.num_classes(),
                "a used pool has a class",
                i,
                pool,
                szidx
            );
            let class = SizeClass(szidx as u8);
            let block = c.block_size(class);
            let per = c.blocks_per_pool(class);
            ensure!(count <= per, "count <= blocks per pool", i, pool, count);
            // SAFETY: header of a live classed pool.
            let (next_off, max_off) =
                unsafe { ((*pool).nextoffset as usize, (*pool).maxnextoffset as usize) };
            ensure!(
                max_off == ps - block,
                "maxnextoffset == pool size - block size",
                i,
                pool,
                max_off
            );
            ensure!(
                next_off >= c.pool_overhead() + 2 * block
                    && next_off <= ps
                    && (next_off - c.pool_overhead()).is_multiple_of(block),
                "nextoffset on a block boundary inside the pool",
                i,
                pool,
                next_off
            );
            // Free list: inside the pool, on block boundaries, below nextoffset, no cycle.
            // SAFETY: header of a live classed pool.
            let mut f = unsafe { (*pool).freeblock };
            let mut free = 0usize;
            // SAFETY: as above.
            let nextoffset = unsafe { (*pool).nextoffset } as usize;
            while !f.is_null() {
                free += 1;
                ensure!(free <= per, "free list has no cycle", i, pool, free);
                let off = (f as usize).wrapping_sub(pool as usize);
                ensure!(
                    off >= c.pool_overhead()
                        && off < nextoffset
                        && (off - c.pool_overhead()).is_multiple_of(block),
                    "free block on a carved block boundary",
                    i,
                    pool,
                    off
                );
                // SAFETY: f is a free block of this pool; its first word is the link.
                f = unsafe { *f.cast::<*mut u8>() };
            }
            // SAFETY: header of a live classed pool.
            let virgin = unsafe { PoolHeader::virgin_blocks(pool, block) };
            ensure!(
                count + free + virgin == per,
                "count + free + never carved == blocks per pool",
                i,
                pool,
                count + free + virgin
            );
            if count < per {
                used_pools += 1;
            } else {
                ensure!(free == 0 && virgin == 0, "a full pool has no free block", i, pool, free);
            }
            bytes += c.pool_overhead() + per * block + (ps - c.pool_overhead() - per * block);
        }
        // freepools: exactly the empty carved pools of this arena.
        let mut fp = a.freepools;
        let mut n = 0usize;
        while !fp.is_null() {
            n += 1;
            ensure!(n <= carved, "freepools has no cycle", i, fp, n);
            let off = (fp as usize).wrapping_sub(first);
            ensure!(
                off < carved * ps && off % ps == 0,
                "freepools holds this arena's pools",
                i,
                fp,
                off
            );
            // SAFETY: a carved pool of this arena.
            ensure!(unsafe { (*fp).count } == 0, "a pool on freepools is empty", i, fp, 0);
            // SAFETY: as above.
            fp = unsafe { (*fp).nextpool };
        }
        ensure!(n == empty, "freepools holds every empty pool", i, 0, n);
        let nfree = empty + (a.ntotalpools as usize - carved);
        ensure!(
            a.nfreepools as usize == nfree,
            "nfreepools == empty + never carved",
            i,
            0,
            a.nfreepools
        );
        bytes += nfree * ps;
        if a.ntotalpools as usize != c.pools_per_arena() {
            bytes += ps;
        }
    }
    ensure!(
        used_pools == on_used_lists,
        "usedpools holds exactly the partly used pools",
        all,
        0,
        used_pools
    );
    ensure!(
        bytes == current * c.arena_size(),
        "byte accounting sums to arenas x arena size",
        all,
        0,
        bytes
    );
    let s = h.stats();
    ensure!(
        s.accounted_bytes() == current * c.arena_size(),
        "stats byte accounting sums to arenas x arena size",
        all,
        0,
        s.accounted_bytes()
    );

    // Debug mode records every raw block it hands out (and forgets it when freed).
    if c.debug() {
        let recorded = h.debug_state().raw_live();
        ensure!(
            recorded == s.raw_blocks_current,
            "debug mode records every live raw block",
            all,
            0,
            recorded
        );
    }

    // usable_arenas: exactly the live arenas with a free pool, in policy order, links matching.
    let a = &h.arenas;
    let mut cur = a.usable;
    let mut prev = NONE;
    let mut n = 0usize;
    while cur != NONE {
        n += 1;
        ensure!(n <= live, "usable_arenas has no cycle", cur, 0, n);
        let o = a.get(cur);
        ensure!(
            o.address != 0 && o.nfreepools > 0,
            "usable arenas are live with a free pool",
            cur,
            0,
            o.nfreepools
        );
        ensure!(o.prev == prev, "usable_arenas prev link matches", cur, 0, o.prev);
        if prev != NONE {
            let p = a.get(prev);
            match a.policy {
                ArenaPolicy::MostUsedFirst => ensure!(
                    p.nfreepools <= o.nfreepools,
                    "usable_arenas sorted by free pools",
                    cur,
                    0,
                    o.nfreepools
                ),
                ArenaPolicy::NewestFirst => {
                    ensure!(p.seq > o.seq, "usable_arenas newest first", cur, 0, o.seq)
                }
            }
        }
        if a.policy == ArenaPolicy::MostUsedFirst {
            let k = o.nfreepools as usize;
            let last_with_k = o.next == NONE || a.get(o.next).nfreepools as usize != k;
            ensure!(
                (a.nfp2lasta.get(k) == Some(&cur)) == last_with_k,
                "nfp2lasta[k] is the last arena with k free pools",
                cur,
                0,
                k
            );
        }
        prev = cur;
        cur = o.next;
    }
    let with_free = objs.iter().filter(|o| o.address != 0 && o.nfreepools > 0).count();
    ensure!(n == with_free, "every arena with a free pool is usable", all, 0, with_free);
    ensure!(a.nfp2lasta[0] == NONE, "nfp2lasta[0] is none", all, 0, 0);
    for (k, &f) in a.nfp2lasta.iter().enumerate() {
        if f != NONE {
            ensure!(
                (f as usize) < objs.len()
                    && a.get(f).address != 0
                    && a.get(f).nfreepools as usize == k,
                "nfp2lasta[k] points at an arena with k free pools",
                f,
                0,
                k
            );
        }
    }
    // unused descriptors.
    let mut cur = a.unused;
    let mut n = 0usize;
    while cur != NONE {
        n += 1;
        ensure!(n <= objs.len(), "unused list has no cycle", cur, 0, n);
        ensure!(a.get(cur).address == 0, "unused descriptors have no arena", cur, 0, 0);
        cur = a.get(cur).next;
    }
    ensure!(n == objs.len() - live, "every unused descriptor is on the unused list", all, 0, n);
    Ok(())
}
