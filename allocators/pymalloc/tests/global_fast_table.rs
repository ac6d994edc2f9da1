//! `PyMalloc`'s fast table: the fast paths find the calling thread's heap from its thread
//! pointer, in a table of 256 entries per `PyMalloc`. An exiting thread clears its entry, so a
//! thread that later gets the same thread control block (glibc reuses the stacks, and the
//! block at their top, of threads that exited) adopts a heap as any new thread does rather
//! than inheriting an abandoned one; threads that find their entry taken by another live
//! thread (more threads than entries) go the slow way round and stay exact.
//!
//! Each test uses its own `PyMalloc` (the process allocator stays the system's), 3.10 layout.

use pymalloc::global::HeapCount;
use pymalloc::{Config, PyMalloc};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Arc, Barrier};

/// 32-byte blocks: size class 1 of the 3.10 layout.
fn layout() -> Layout {
    Layout::from_size_align(32, 8).unwrap()
}

#[test]
fn a_thread_on_an_exited_threads_control_block_adopts_the_heap_it_uses() {
    static PY: PyMalloc = PyMalloc::with_config(Config::CPYTHON_3_10);
    let mut live = Vec::new();
    for round in 0..20 {
        let (p, seen) = std::thread::spawn(|| {
            // SAFETY: non-zero size.
            let p = unsafe { PY.alloc(layout()) };
            assert!(!p.is_null());
            (p as usize, PY.heap_count())
        })
        .join()
        .unwrap();
        // Each thread leaves its block alive, so that its pool stays on the class's list and
        // the next thread's allocation takes the fast path. One heap, made by the first
        // thread and adopted by each later one: while a thread allocates from it, it is owned.
        // (A stale entry of the previous thread would hand the heap to the next without
        // adopting it: abandoned 1.)
        assert_eq!(seen, HeapCount { heaps: 1, abandoned: 0 }, "round {round}");
        assert_eq!(PY.heap_count(), HeapCount { heaps: 1, abandoned: 1 }, "round {round}");
        live.push(p);
    }
    assert_eq!(PY.stats().blocks_in_use(), live.len());
    for p in live {
        // SAFETY: blocks of PY, each freed once, with their layout.
        unsafe { PY.dealloc(p as *mut u8, layout()) };
    }
    assert_eq!(PY.stats().blocks_in_use(), 0);
    PY.check_invariants().unwrap();
}

#[test]
fn more_threads_alive_than_table_entries_stay_exact() {
    static PY: PyMalloc = PyMalloc::with_config(Config::CPYTHON_3_10);
    // More than the table's 256 entries, all alive at once: some share an entry's index, and
    // every one but the first there takes the slow path.
    const THREADS: usize = 300;
    const BLOCKS: usize = 40;
    let all_in = Arc::new(Barrier::new(THREADS + 1));
    let checked = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (all_in, checked) = (Arc::clone(&all_in), Arc::clone(&checked));
            std::thread::spawn(move || {
                // SAFETY: non-zero size; every block is freed once, with its layout.
                let blocks: Vec<usize> =
                    (0..BLOCKS).map(|_| unsafe { PY.alloc(layout()) } as usize).collect();
                assert!(blocks.iter().all(|&p| p != 0));
                // Half freed by this thread (into its own heap), half handed back.
                for &p in &blocks[..BLOCKS / 2] {
                    // SAFETY: as above.
                    unsafe { PY.dealloc(p as *mut u8, layout()) };
                }
                all_in.wait();
                checked.wait();
                blocks[BLOCKS / 2..].to_vec()
            })
        })
        .collect();
    all_in.wait();
    // Every thread alive, each with its own heap, half its blocks still in use.
    assert_eq!(PY.heap_count(), HeapCount { heaps: THREADS, abandoned: 0 });
    assert_eq!(PY.stats().blocks_in_use(), THREADS * (BLOCKS - BLOCKS / 2));
    PY.check_invariants().unwrap();
    checked.wait();
    let rest: Vec<usize> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    for p in rest {
        // SAFETY: blocks of PY handed back by their threads, each freed once.
        unsafe { PY.dealloc(p as *mut u8, layout()) };
    }
    assert_eq!(PY.stats().blocks_in_use(), 0);
    assert_eq!(PY.heap_count(), HeapCount { heaps: THREADS, abandoned: THREADS });
    PY.check_invariants().unwrap();
}
