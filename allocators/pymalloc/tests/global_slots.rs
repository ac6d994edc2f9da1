//! The locks of `PyMalloc` values live in a process-wide table of `SLOTS` slots, so that the fork
//! handlers can find them all: a value claims a slot on its first call and gives it back when
//! dropped; a value moved after its first call keeps its slot; more live values than slots stop
//! the process with a message.

use pymalloc::PyMalloc;
use pymalloc::global::SLOTS;
use std::alloc::{GlobalAlloc, Layout};
use std::os::unix::process::ExitStatusExt;

/// Allocates and frees one small and one large block through `heap`.
fn use_once(heap: &PyMalloc) {
    for size in [24, 4000] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: non-zero size; the block is freed once, with its layout.
        unsafe {
            let p = heap.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xA5, size);
            heap.dealloc(p, layout);
        }
    }
}

#[test]
fn dropped_heaps_give_their_lock_slot_back() {
    for _ in 0..4 * SLOTS {
        let heap = PyMalloc::new();
        use_once(&heap);
        assert_eq!(heap.stats().arenas_current, 1);
    }
    // As many alive at once as there are slots, minus the ones other tests of this binary may
    // hold at the same moment.
    let many: Vec<PyMalloc> = (0..SLOTS / 2).map(|_| PyMalloc::new()).collect();
    many.iter().for_each(use_once);
}

#[test]
fn a_heap_moved_after_its_first_call_keeps_working() {
    let heap = PyMalloc::new();
    let layout = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { heap.alloc(layout) };
    let moved = Box::new(heap); // the lock slot stays where it is; only its index moves
    assert_eq!(moved.stats().blocks_in_use(), 1);
    // SAFETY: p is a live block of this heap (moving a heap moves no block), freed once.
    unsafe { moved.dealloc(p, layout) };
    use_once(&moved);
    moved.check_invariants().unwrap();
}

#[test]
fn more_live_heaps_than_slots_abort_with_a_message() {
    if std::env::var_os("PYMALLOC_SLOTS_CHILD").is_some() {
        let heaps: Vec<PyMalloc> = (0..=SLOTS).map(|_| PyMalloc::new()).collect();
        heaps.iter().for_each(use_once);
        unreachable!("{} heaps alive with {SLOTS} lock slots", heaps.len());
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "more_live_heaps_than_slots_abort_with_a_message", "--nocapture"])
        .env("PYMALLOC_SLOTS_CHILD", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "status {:?}, stderr: {err}", out.status);
    assert!(
        err.contains("pymalloc: fatal error: more PyMalloc values alive at once"),
        "stderr: {err}"
    );
}
