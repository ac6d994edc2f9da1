//! The workloads behind arenalab's criterion benchmarks, one module per benchmark group.
//!
//! Each benchmark compares these contenders in one run of one binary:
//!
//! | id name         | what is called                                                       |
//! |-----------------|----------------------------------------------------------------------|
//! | `system`        | glibc `malloc`/`free` through Rust's `System` (`&dyn GlobalAlloc`)   |
//! | `mimalloc`      | mimalloc's `GlobalAlloc`                                             |
//! | `jemalloc`      | tikv-jemallocator's `GlobalAlloc`                                    |
//! | `pymalloc`      | `pymalloc::PyMalloc`: one pymalloc heap per thread, no lock          |
//! | `pymalloc-heap` | `pymalloc::Heap` called directly: no lock, no `Layout`, one thread   |
//! | `pymalloc-heap-cached` | the same heap, but emptied arenas stay mapped in a cache (`pymalloc::os::Cached`, not CPython's behaviour) |
//! | `cpython-obmalloc-3.11` | CPython's real `PyObject_Malloc`/`PyObject_Free`, from the interpreter's libpython loaded at run time ([`contender::real_obmallocs`]; one per interpreter chosen) |
//! | `pymalloc-heap-warm` | `size` only: a `pymalloc::Heap` holding one live block per size class, warm like an initialised interpreter ([`contender::WarmHeap`]) |
//!
//! The first four come from the [`lineup`] registry; the others are added here through the small
//! [`Contender`] trait, so each workload is written once, generic over the allocator, and
//! monomorphised per contender. The cached heap is there to measure what pymalloc pays for
//! giving emptied arenas back to the OS (`munmap`, then `mmap` and a page fault per page when
//! the memory is needed again). Benchmark ids read `group/pattern/allocator/size`.
//!
//! Rules every workload keeps, so that the comparison is about the allocator:
//! * every block is written to after allocation, one byte per cache line plus the last byte
//!   ([`contender::touch`]), so no allocator wins by handing out pages nobody touches;
//! * random inputs (free orders, sizes, slots) are drawn from seeded generators before timing;
//! * pointer arrays belong to the harness: they are allocated before timing by the benchmark
//!   binary's own global allocator (`System`), never by the allocator under test.
//!
//! The criterion wiring is in `benches/allocators.rs`, timed with the clock
//! `ARENALAB_BENCH_CLOCK` selects ([`clock`]: wall or thread CPU time); `benches/README.md` has
//! the commands and the caveats. The `instructions` binary (`src/bin/instructions.rs`) counts
//! instructions per alloc+free pair under callgrind on the same workloads and contenders.
//!
//! [`Contender`]: contender::Contender

pub mod churn;
pub mod clock;
pub mod contender;
pub mod order;
pub mod ports;
pub mod scaling;
pub mod size;
pub mod threads;

use contender::{
    CACHED_HEAP_NAME, Contender, HEAP_NAME, WARM_HEAP_NAME, cached_heap, globals, heap,
    real_obmallocs, warm_heap,
};

/// Something run once per contender: a benchmark body generic over the allocator.
pub trait Visit {
    /// Runs for one contender named `name` (the allocator field of the benchmark id).
    fn visit<C: Contender>(&mut self, name: &str, contender: &mut C);
}

/// Runs `v` for the four registry allocators, then for a fresh pymalloc [`pymalloc::Heap`] and
/// a fresh cached one (each dropped afterwards, so its arenas go back), then for each real
/// obmalloc loaded ([`real_obmallocs`]; its GIL is held on this thread during the visit).
pub fn each_contender<V: Visit>(v: &mut V) {
    for mut g in globals() {
        v.visit(g.name(), &mut g);
    }
    let mut h = heap();
    v.visit(HEAP_NAME, &mut h);
    drop(h);
    let mut h = cached_heap();
    v.visit(CACHED_HEAP_NAME, &mut h);
    drop(h);
    for real in real_obmallocs() {
        match real.obmalloc.heap() {
            Ok(mut h) => v.visit(real.name, &mut h),
            // Only when a caller already holds this interpreter's heap on this thread.
            Err(e) => eprintln!("benches: {} left out here: {e}", real.name),
        }
    }
}

/// [`each_contender`], then a [`contender::WarmHeap`] and a [`contender::WarmGlobal`]: the contenders of the `size` group, where
/// a fresh heap's pair empties its pool every time and the warm heap's never does (the real
/// obmalloc, initialised, is warm). The other groups hold hundreds to a million blocks per
/// round, so one more live block per class changes little there, and they run without it.
pub fn each_size_contender<V: Visit>(v: &mut V) {
    each_contender(v);
    let mut h = warm_heap();
    v.visit(WARM_HEAP_NAME, &mut h);
    drop(h);
    let mut g = contender::warm_global();
    v.visit(contender::WARM_GLOBAL_NAME, &mut g);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks a heap still holds, small (in pools) and large (handed to libc).
    fn live_blocks(h: &pymalloc::Heap) -> usize {
        live_blocks_generic(h)
    }

    fn live_blocks_generic<S: pymalloc::ArenaSource>(h: &pymalloc::Heap<S>) -> usize {
        let s = h.stats();
        s.classes.iter().map(|c| c.blocks_in_use).sum::<usize>() + s.raw_blocks_current
    }

    struct Names(Vec<String>);
    impl Visit for Names {
        fn visit<C: Contender>(&mut self, name: &str, _: &mut C) {
            self.0.push(name.to_string());
        }
    }

    #[test]
    fn contenders_in_registry_order_then_the_heaps_then_the_real_obmallocs() {
        let mut names = Names(Vec::new());
        each_contender(&mut names);
        let mut expected: Vec<String> =
            ["system", "mimalloc", "jemalloc", "pymalloc", "pymalloc-heap", "pymalloc-heap-cached"]
                .map(String::from)
                .into();
        expected.extend(real_obmallocs().iter().map(|r| r.name.to_string()));
        assert_eq!(names.0, expected);
        let mut sized = Names(Vec::new());
        each_size_contender(&mut sized);
        expected.push(WARM_HEAP_NAME.to_string());
        expected.push(contender::WARM_GLOBAL_NAME.to_string());
        assert_eq!(sized.0, expected);
    }

    #[test]
    fn the_default_python3_is_a_contender_named_by_its_version() {
        let Ok(p) = obmalloc::Python::probe("python3".as_ref()) else {
            eprintln!("skipped: no python3 to load");
            return;
        };
        if std::env::var_os(contender::PYTHON_ENV).is_some() || p.embeddable().is_err() {
            eprintln!("skipped: {} set, or python3 not embeddable", contender::PYTHON_ENV);
            return;
        }
        let names: Vec<&str> = real_obmallocs().iter().map(|r| r.name).collect();
        assert_eq!(names, [format!("cpython-obmalloc-{}.{}", p.version[0], p.version[1])]);
    }

    #[test]
    fn the_interpreters_are_chosen_by_the_environment_one_per_version() {
        let (none, notes) = contender::chosen("none");
        assert!(none.is_empty() && notes.len() == 1, "{notes:?}");
        let (bad, notes) = contender::chosen("/bin/true:/nonexistent/python3");
        assert!(bad.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("/bin/true") && notes[1].contains("/nonexistent/python3"));
        if obmalloc::Python::probe("python3".as_ref()).is_err() {
            eprintln!("skipped the python3 cases: no python3");
            return;
        }
        let (twice, notes) = contender::chosen("python3:python3");
        assert_eq!(twice.len(), 1);
        assert!(notes[0].contains("is already chosen"), "{notes:?}");
        let (default, _) = contender::chosen("");
        assert_eq!(default, twice);
    }

    #[test]
    fn workloads_run_on_the_real_obmalloc_and_give_back_what_they_take() {
        let Some(real) = real_obmallocs().first() else {
            eprintln!("skipped: no real obmalloc loaded");
            return;
        };
        let mut h = real.obmalloc.heap().unwrap();
        let mut seen = std::collections::HashSet::new();
        for &size in &size::SIZES {
            size::pair(&mut h, size);
        }
        order::Batch::new(order::Order::Shuffled, 3000, 1).run(&mut h);
        let plan = churn::Plan::new(500, 4000, 2);
        churn::WorkingSet::fill(&mut h, &plan).churn(&plan.steps);
        let mut a = vec![core::ptr::null_mut(); ports::SIMPLE_SLOTS];
        ports::glibc_simple(&mut h, 64, &mut a);
        // Blocks freed by the workloads are handed out again: 100 live blocks are distinct.
        let live: Vec<*mut u8> = (0..100).map(|_| contender::alloc_touched(&mut h, 64)).collect();
        assert!(live.iter().all(|p| seen.insert(*p)));
        for p in live {
            // SAFETY: each block was allocated above with 64 bytes and is freed once.
            unsafe { Contender::free(&mut h, p, 64) };
        }
    }

    #[test]
    fn the_warm_heap_keeps_one_block_per_class_so_a_pair_never_empties_a_pool() {
        let mut w = warm_heap();
        let classes = w.heap().config().num_classes();
        assert_eq!(live_blocks(w.heap()), classes);
        for &size in &size::SIZES {
            size::pair(&mut w, size);
            // Every class's pool stays in use: none went back to its arena.
            let s = w.heap().stats();
            assert_eq!((s.pools_used, s.pools_empty), (classes, 0), "after a pair at {size} B");
        }
        let mut fresh = heap();
        size::pair(&mut fresh, 32);
        let s = fresh.stats();
        assert_eq!((s.pools_used, s.pools_empty), (0, 1), "a fresh heap's pair empties its pool");
    }

    #[test]
    fn orders_are_permutations_and_lifo_fifo_are_exact() {
        assert_eq!(order::Order::Lifo.permutation(4, 1), [3, 2, 1, 0]);
        assert_eq!(order::Order::Fifo.permutation(4, 1), [0, 1, 2, 3]);
        let s = order::Order::Shuffled.permutation(1000, 7);
        assert!(order::is_permutation(&s));
        assert_ne!(s, order::Order::Fifo.permutation(1000, 7), "a shuffle that moved nothing");
        assert_eq!(s, order::Order::Shuffled.permutation(1000, 7), "seeded: same every run");
        assert!(!order::is_permutation(&[0, 0, 1]));
        assert!(!order::is_permutation(&[0, 3]));
    }

    #[test]
    fn churn_plan_stays_in_range() {
        let plan = churn::Plan::new(100, 5000, 3);
        assert_eq!(plan.initial.len(), 100);
        assert_eq!(plan.steps.len(), 5000);
        assert!(
            plan.steps.iter().all(|s| s.slot < 100
                && (churn::MIN_SIZE..=churn::MAX_SIZE).contains(&(s.size as usize)))
        );
    }

    #[test]
    fn op_counts_match_the_described_workloads() {
        assert_eq!(ports::SIMPLE_OPS, ports::SIMPLE_BATCHES.iter().sum::<usize>());
        assert_eq!(ports::SH6_OPS, 128 * 50);
    }

    #[test]
    fn every_workload_gives_back_all_it_takes_from_the_heap() {
        let mut h = heap();
        for &size in &size::SIZES {
            size::pair(&mut h, size);
        }
        for o in order::Order::ALL {
            order::Batch::new(o, 3000, 1).run(&mut h);
        }
        let plan = churn::Plan::new(500, 4000, 2);
        churn::WorkingSet::fill(&mut h, &plan).churn(&plan.steps);
        scaling::run(&mut h, &mut vec![core::ptr::null_mut(); 20_000]);
        let mut a = vec![core::ptr::null_mut(); ports::SIMPLE_SLOTS];
        ports::glibc_simple(&mut h, 64, &mut a);
        let mut b = vec![core::ptr::null_mut(); ports::SH6_BATCH];
        ports::sh6bench(&mut h, &mut a, &mut b);
        assert_eq!(live_blocks(&h), 0);
        h.check_invariants().unwrap();
    }

    /// Serialises the tests that use the process-wide `pymalloc` global, whose block counts one
    /// of them compares before and after.
    static GLOBAL_PYMALLOC: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_cached_heap_keeps_emptied_arenas_mapped_for_the_next_round() {
        let mut h = cached_heap();
        let mut ptrs = vec![core::ptr::null_mut(); 100_000];
        scaling::run(&mut h, &mut ptrs);
        // 100000 blocks of 64 B need 6.4 MB of pools: more than one 1 MiB arena. All but the
        // one CPython keeps went back, into the cache rather than to the OS.
        let stats = h.stats();
        assert!(stats.arenas_highwater > 1);
        assert_eq!(h.source().cached(), stats.arenas_highwater - stats.arenas_current);
        scaling::run(&mut h, &mut ptrs);
        assert_eq!(h.stats().arenas_allocated_total, h.stats().arenas_highwater as u64 * 2 - 1);
        assert_eq!(live_blocks_generic(&h), 0);
    }

    #[test]
    fn workloads_run_on_every_global_allocator() {
        let _serial = GLOBAL_PYMALLOC.lock().unwrap_or_else(|e| e.into_inner());
        for mut g in globals() {
            order::Batch::new(order::Order::Shuffled, 500, 1).run(&mut g);
            let plan = churn::Plan::new(50, 500, 2);
            churn::WorkingSet::fill(&mut g, &plan).churn(&plan.steps);
            let mut a = vec![core::ptr::null_mut(); ports::SIMPLE_SLOTS];
            ports::glibc_simple(&mut g, 16, &mut a);
        }
    }

    #[test]
    fn threaded_workloads_free_across_threads_on_the_locked_pymalloc() {
        let _serial = GLOBAL_PYMALLOC.lock().unwrap_or_else(|e| e.into_inner());
        let a = lineup::Allocator::Pymalloc;
        let before = live_blocks_global();
        let sizes = threads::random_sizes(threads::PC_OBJECTS, 4);
        threads::producer_consumer(a, &sizes, 2);
        let (s0, s1) = (threads::larson_steps(5), threads::larson_steps(6));
        threads::larson(a, [&s0, &s1], 3);
        assert_eq!(live_blocks_global(), before);
    }

    fn live_blocks_global() -> usize {
        let s = lineup::Allocator::pymalloc().stats();
        s.classes.iter().map(|c| c.blocks_in_use).sum::<usize>() + s.raw_blocks_current
    }
}
