//! `PyMalloc`'s heaps per thread: a heap whose thread exits while its blocks live is
//! abandoned, the blocks freed by another thread go back into it and its arenas are released;
//! threads that come and go adopt abandoned heaps instead of making new ones; a remote-free
//! list is checked by `check_invariants`.
//!
//! Each test uses its own `PyMalloc` (the process allocator stays the system's), with the 3.10
//! layout and arenas aligned to the pool size, so that an arena holds exactly
//! `pools_per_arena()` pools and every count below follows from the layout.

use pymalloc::global::HeapCount;
use pymalloc::{Config, Preset, PyMalloc, SizeClass};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc::channel;

const CONFIG: Config = match Config::builder(Preset::Cpython310).aligned_arenas(true).build() {
    Ok(c) => c,
    Err(_) => panic!("the 3.10 layout with aligned arenas is valid"),
};

/// 32-byte blocks: size class 1.
const SIZE: usize = 32;

fn layout() -> Layout {
    Layout::from_size_align(SIZE, 8).unwrap()
}

/// Blocks of `SIZE` bytes per pool, and per arena.
fn per_pool_and_arena() -> (usize, usize) {
    let per_pool = CONFIG.blocks_per_pool(SizeClass(1));
    (per_pool, per_pool * CONFIG.pools_per_arena())
}

/// Allocates `n` blocks of `SIZE` bytes from `py` on a new thread, which then exits (after
/// `wait` returns, if given); returns the blocks' addresses.
fn blocks_from_a_thread(py: &'static PyMalloc, n: usize) -> Vec<usize> {
    std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                // SAFETY: non-zero size.
                let p = unsafe { py.alloc(layout()) };
                assert!(!p.is_null());
                p as usize
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[test]
fn a_thread_exits_while_its_blocks_live_and_another_frees_them_then_its_arenas_go() {
    static PY: PyMalloc = PyMalloc::with_config(CONFIG);
    let (per_pool, per_arena) = per_pool_and_arena();
    // The main thread's heap: one block, one arena.
    // SAFETY: non-zero size.
    let mine = unsafe { PY.alloc(layout()) };
    // The other thread's heap: two arenas, the second with exactly one pool (its last block).
    // In one shared heap the main thread's pool would take the first blocks, and the whole
    // would fit in two arenas.
    let n = 2 * per_arena - per_pool + 1;
    let blocks = blocks_from_a_thread(&PY, n);
    let s = PY.stats();
    assert_eq!(s.arenas_current, 1 + n.div_ceil(per_arena));
    assert_eq!(s.arenas_current, 3);
    assert_eq!(s.blocks_in_use(), n + 1);
    assert_eq!(PY.heap_count(), HeapCount { heaps: 2, abandoned: 1 });
    PY.check_invariants().unwrap();

    // Freed by the main thread into the abandoned heap: its first arena empties and goes back
    // to the OS; the last one is kept (3.9+'s rule, per heap), for the heap's next adopter.
    for &p in &blocks {
        // SAFETY: each block is live and freed once.
        unsafe { PY.dealloc(p as *mut u8, layout()) };
    }
    let s = PY.stats();
    assert_eq!((s.arenas_current, s.arenas_reclaimed, s.blocks_in_use()), (2, 1, 1));
    PY.check_invariants().unwrap();

    // A new thread adopts the abandoned heap: no new heap, no new arena.
    let again = blocks_from_a_thread(&PY, 1);
    assert_eq!(PY.heap_count(), HeapCount { heaps: 2, abandoned: 1 });
    let s = PY.stats();
    assert_eq!((s.arenas_allocated_total, s.arenas_current, s.blocks_in_use()), (3, 2, 2));
    // SAFETY: live blocks, each freed once.
    unsafe {
        PY.dealloc(again[0] as *mut u8, layout());
        PY.dealloc(mine, layout());
    }
    assert_eq!(PY.stats().blocks_in_use(), 0);
}

#[test]
fn blocks_freed_while_their_thread_lives_wait_on_its_stack_then_its_exit_drains_them() {
    static PY: PyMalloc = PyMalloc::with_config(CONFIG);
    let (per_pool, per_arena) = per_pool_and_arena();
    let n = 2 * per_arena - per_pool + 1;
    let (to_main, from_thread) = channel::<Vec<usize>>();
    let (to_thread, from_main) = channel::<()>();
    let t = std::thread::spawn(move || {
        let blocks = (0..n)
            .map(|_| {
                // SAFETY: non-zero size.
                unsafe { PY.alloc(layout()) as usize }
            })
            .collect();
        to_main.send(blocks).unwrap();
        from_main.recv().unwrap(); // alive (its heap owned) until the main thread says so
    });
    let blocks = from_thread.recv().unwrap();
    for &p in &blocks {
        // SAFETY: each block is live and freed once (onto the owner's remote-free stack).
        unsafe { PY.dealloc(p as *mut u8, layout()) };
    }
    // The stack is checked while the owner lives; then the owner exits and drains it.
    PY.check_invariants().unwrap();
    to_thread.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(PY.heap_count(), HeapCount { heaps: 1, abandoned: 1 });
    let s = PY.stats();
    assert_eq!((s.arenas_allocated_total, s.arenas_current, s.blocks_in_use()), (2, 1, 0));
}

/// Resident set size of this process in bytes (`/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
}

#[test]
fn short_lived_threads_in_rounds_adopt_heaps_and_do_not_grow_arenas() {
    static PY: PyMalloc = PyMalloc::with_config(CONFIG);
    const THREADS: usize = 4;
    const ROUNDS: usize = 30;
    const BLOCKS: usize = 20_000;
    let mut first = None;
    let mut rss_first = 0;
    for round in 0..ROUNDS {
        // Each thread allocates, frees half itself, and leaves the other half to the main
        // thread (freed after the thread exits: into its abandoned heap).
        let all_started = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let all_started = all_started.clone();
                std::thread::spawn(move || {
                    let mut keep = Vec::new();
                    for i in 0..BLOCKS {
                        if i == 1 {
                            // All four own a heap at once: four heaps, whichever thread adopts
                            // which.
                            all_started.wait();
                        }
                        let l = Layout::from_size_align(16 + (i * 7 + t) % 497, 8).unwrap();
                        // SAFETY: non-zero size.
                        let p = unsafe { PY.alloc(l) };
                        if i % 2 == 0 {
                            // SAFETY: live, freed once.
                            unsafe { PY.dealloc(p, l) };
                        } else {
                            keep.push((p as usize, l));
                        }
                    }
                    keep
                })
            })
            .collect();
        for h in handles {
            for (p, l) in h.join().unwrap() {
                // SAFETY: live blocks, each freed once.
                unsafe { PY.dealloc(p as *mut u8, l) };
            }
        }
        let s = PY.stats();
        let count = PY.heap_count();
        assert_eq!(s.blocks_in_use(), 0, "round {round}");
        // Every heap is abandoned, and keeps exactly its last (empty) arena.
        assert_eq!(count, HeapCount { heaps: THREADS, abandoned: THREADS }, "round {round}");
        assert_eq!(s.arenas_current, THREADS, "round {round}");
        if first.is_none() {
            first = Some(s.arenas_allocated_total);
            rss_first = rss();
        }
        PY.check_invariants().unwrap();
    }
    eprintln!(
        "{ROUNDS} rounds of {THREADS} threads: {} arenas mapped in the first round, {} in all; \
         RSS {} KiB after the first round, {} KiB after the last (other tests of this binary \
         run meanwhile)",
        first.unwrap(),
        PY.stats().arenas_allocated_total,
        rss_first / 1024,
        rss() / 1024
    );
}

#[test]
fn a_block_freed_twice_by_another_thread_is_found_on_the_remote_free_list() {
    static PY: PyMalloc = PyMalloc::with_config(CONFIG);
    let (to_main, from_thread) = channel::<usize>();
    let (keep_alive, wait) = channel::<()>();
    std::thread::spawn(move || {
        // SAFETY: non-zero size.
        let p = unsafe { PY.alloc(layout()) };
        to_main.send(p as usize).unwrap();
        // Owns its heap and never allocates again: the corrupt list is never drained.
        let _ = wait.recv();
    });
    let p = from_thread.recv().unwrap() as *mut u8;
    PY.check_invariants().unwrap();
    // SAFETY: NOT sound on purpose: a double free from another thread puts the block on its
    // owner's remote-free stack twice (a cycle). Nothing drains that stack afterwards: its
    // owner waits forever and this PyMalloc is used by no other test.
    unsafe {
        PY.dealloc(p, layout());
        PY.dealloc(p, layout());
    }
    let err = PY.check_invariants().unwrap_err();
    assert!(err.what.contains("remote-free list"), "{err}");
    std::mem::forget(keep_alive);
}

#[test]
fn a_debug_layout_keeps_one_heap_that_every_thread_takes_in_turn() {
    const DEBUG: Config = match Config::builder(Preset::Cpython310).debug(true).build() {
        Ok(c) => c,
        Err(_) => panic!("the 3.10 layout in debug mode is valid"),
    };
    static PY: PyMalloc = PyMalloc::with_config(DEBUG);
    // Each thread allocates, frees half, and hands the rest to the next thread to free: every
    // free of a debug layout is checked against the one heap's records.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                for i in 0..5_000usize {
                    let l = Layout::from_size_align(8 + (i * 13 + t) % 700, 8).unwrap();
                    // SAFETY: non-zero size.
                    let p = unsafe { PY.alloc(l) };
                    // SAFETY: a live block of at least `l.size()` bytes.
                    unsafe { p.write_bytes(0x5A, l.size()) };
                    if i % 2 == 0 {
                        // SAFETY: live, freed once.
                        unsafe { PY.dealloc(p, l) };
                    } else {
                        keep.push((p as usize, l));
                    }
                }
                keep
            })
        })
        .collect();
    let kept: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    std::thread::scope(|s| {
        for blocks in &kept {
            s.spawn(move || {
                for &(p, l) in blocks {
                    // SAFETY: live blocks, each freed once (by another thread than its own).
                    unsafe { PY.dealloc(p as *mut u8, l) };
                }
            });
        }
    });
    PY.check_invariants().unwrap();
    let s = PY.stats();
    assert_eq!((s.blocks_in_use(), s.raw_blocks_current), (0, 0));
    assert_eq!(PY.heap_count(), HeapCount { heaps: 1, abandoned: 1 });
}
