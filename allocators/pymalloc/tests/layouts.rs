//! Each CPython layout pinned: class count, pool and arena size, keep-one rule, debug overhead,
//! and detection from what an interpreter reports (version, class count).

use pymalloc::{Config, Heap, Layout};

#[test]
fn every_layout_has_the_geometry_of_its_releases() {
    // (layout, classes, pool, arena, pools per aligned arena, keep last empty arena)
    let table = [
        (Layout::Classes64Pools4k, 64, 4096, 256 << 10, 64, false),
        (Layout::Classes32Pools4k, 32, 4096, 256 << 10, 64, false),
        (Layout::Classes32Pools4kKeepOne, 32, 4096, 256 << 10, 64, true),
        (Layout::Classes32Pools16k, 32, 16384, 1 << 20, 64, true),
    ];
    assert_eq!(table.len(), Layout::ALL.len());
    for (layout, classes, pool, arena, pools, keep) in table {
        let c = layout.config();
        assert_eq!(c.num_classes(), classes, "{layout:?}");
        assert_eq!(c.alignment(), 512 / classes, "{layout:?}");
        assert_eq!((c.pool_size(), c.arena_size()), (pool, arena), "{layout:?}");
        assert_eq!(c.pools_per_arena(), pools, "{layout:?}");
        assert_eq!(c.keep_last_empty_arena(), keep, "{layout:?}");
        assert_eq!(Layout::from_name(layout.name()), Some(layout));
    }
}

#[test]
fn the_3_9_preset_keeps_the_last_empty_arena_with_small_pools() {
    let c = Config::CPYTHON_3_9;
    assert_eq!((c.pool_size(), c.arena_size(), c.num_classes()), (4096, 262144, 32));
    // One 32-byte block maps one arena; freeing it empties the arena, which is the last usable
    // one: 3.9 keeps it, 3.8 gives it back.
    for (config, kept) in [(Config::CPYTHON_3_9, 1), (Config::CPYTHON_3_8, 0)] {
        let mut heap = Heap::new(config);
        let p = heap.alloc(32);
        // SAFETY: p is a live block of this heap, freed once.
        unsafe { heap.free(p) };
        assert_eq!(heap.stats().arenas_current, kept);
    }
}

#[test]
fn layouts_are_detected_from_version_and_class_count() {
    // Measured on this machine's pyenv builds: 3.6.15 and 3.7.16 report 32 classes.
    assert_eq!(Layout::detect((3, 6), 32), Some(Layout::Classes32Pools4k));
    assert_eq!(Layout::detect((3, 7), 32), Some(Layout::Classes32Pools4k));
    assert_eq!(Layout::detect((3, 7), 64), Some(Layout::Classes64Pools4k));
    assert_eq!(Layout::detect((3, 8), 32), Some(Layout::Classes32Pools4k));
    assert_eq!(Layout::detect((3, 9), 32), Some(Layout::Classes32Pools4kKeepOne));
    for minor in 10..=14 {
        assert_eq!(Layout::detect((3, minor), 32), Some(Layout::Classes32Pools16k));
    }
    assert_eq!(Layout::detect((3, 8), 64), None);
    assert_eq!(Layout::detect((3, 11), 64), None);
    assert_eq!(Layout::detect((3, 5), 32), None);
    assert_eq!(Layout::detect((2, 7), 64), None);
}

#[test]
fn debug_hooks_add_three_words_from_3_8_and_four_before() {
    assert_eq!(Layout::debug_overhead((3, 7)), 32);
    assert_eq!(Layout::debug_overhead((3, 6)), 32);
    for minor in 8..=13 {
        assert_eq!(Layout::debug_overhead((3, minor)), 24);
    }
    // A 24-byte float under the debug hooks: the 48-byte class on 3.8+, 64 on 3.7.
    let c = Config::CPYTHON_3_8;
    let block = |v| c.block_size(c.size_class(24 + Layout::debug_overhead(v)).unwrap());
    assert_eq!((block((3, 8)), block((3, 7))), (48, 64));
}
