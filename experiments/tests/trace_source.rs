//! The replay's arena source places each arena at the recorded offset modulo the pool size, and
//! every byte of the arena is mapped and its own (no Python needed).

use arenalab::trace::replay::ReplaySource;
use pymalloc::ArenaSource;

/// Whether every page of `[addr, addr + len)` is mapped (`msync` fails on an unmapped page).
fn mapped(addr: usize, len: usize) -> bool {
    // SAFETY: msync with MS_ASYNC only inspects the mappings of the range.
    unsafe { libc::msync(addr as *mut libc::c_void, len, libc::MS_ASYNC) == 0 }
}

#[test]
fn arenas_land_at_the_recorded_offset_and_are_wholly_mapped() {
    for (pool, arena) in [(16384usize, 1usize << 20), (4096, 256 << 10)] {
        let (mut source, queue) = ReplaySource::new(pool);
        let offsets: Vec<usize> = (0..pool / 4096).map(|k| k * 4096).collect();
        // Recorded addresses: any value with the wanted offset modulo the pool size.
        for &o in &offsets {
            queue.borrow_mut().push_back(0x7f00_0000_0000 + o);
        }
        let mut maps = Vec::new();
        for &o in &offsets {
            let p = source.map(arena, 4096).expect("mapped");
            let a = p.as_ptr() as usize;
            assert_eq!(a % pool, o, "pool {pool}");
            assert!(mapped(a, arena), "pool {pool}, offset {o}: part of the arena is unmapped");
            // The arena is writable from its first to its last byte.
            // SAFETY: the arena is a fresh mapping of `arena` bytes owned by this test.
            unsafe {
                p.as_ptr().write(1);
                p.as_ptr().add(arena - 1).write(1);
            }
            maps.push(p);
        }
        // No two arenas overlap (each mapping is exactly its arena, nothing spills over).
        let mut ranges: Vec<usize> = maps.iter().map(|p| p.as_ptr() as usize).collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(
                w[0] + arena <= w[1],
                "pool {pool}: arenas at {:#x} and {:#x} overlap",
                w[0],
                w[1]
            );
        }
        // With no offset queued, arenas are pool-aligned.
        let p = source.map(arena, 4096).unwrap();
        assert_eq!(p.as_ptr() as usize % pool, 0);
        maps.push(p);
        for p in maps {
            // SAFETY: each is one whole mapping from `map`, unused.
            unsafe { source.unmap(p, arena) };
        }
    }
}
