//! Debug mode reports a double free with the block's address and size, through the
//! non-aborting API, and `free` stops the program with the same message (checked in a child).

use pymalloc::{Config, Heap, HeapError, Preset};

fn debug_heap() -> Heap {
    Heap::new(Config::builder(Preset::Cpython310).debug(true).build().unwrap())
}

#[test]
fn double_free_of_a_small_block_is_reported() {
    let mut h = debug_heap();
    let p = h.alloc(40);
    // SAFETY: p is live; the second free is the bug under test, caught by the debug checks.
    unsafe {
        h.try_free(p).unwrap();
        let e = h.try_free(p).unwrap_err();
        assert!(matches!(e, HeapError::DoubleFree { address, .. } if address == p as usize), "{e}");
    }
    h.check_invariants().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "reads the freed libc chunk by design, which Miri rightly refuses")]
fn double_free_of_a_large_block_reports_its_size() {
    let mut h = debug_heap();
    let p = h.alloc(4000);
    let keep = h.alloc(4000); // keeps libc from handing the chunk straight back to the OS
    // SAFETY: as above; the freed raw block stays mapped inside glibc's heap.
    unsafe {
        h.try_free(p).unwrap();
        let e = h.try_free(p).unwrap_err();
        assert_eq!(e, HeapError::DoubleFree { address: p as usize, size: 4000 });
        h.try_free(keep).unwrap();
    }
}

#[test]
fn double_free_after_the_arena_was_released_is_reported_not_a_crash() {
    // 3.8 releases an emptied arena at once, so the second free points into unmapped memory.
    let mut h = Heap::new(Config::builder(Preset::Cpython38).debug(true).build().unwrap());
    let p = h.alloc(24);
    // SAFETY: p is live; the second free is the bug under test: the debug checks ask the
    // kernel whether the header is mapped before reading it.
    unsafe {
        h.try_free(p).unwrap();
        assert_eq!(h.stats().arenas_current, 0);
        let e = h.try_free(p).unwrap_err();
        assert_eq!(e, HeapError::FreeInReleasedArena { address: p as usize });
    }
}

#[test]
fn debug_blocks_use_the_class_of_the_request_plus_the_overhead_as_in_cpython() {
    // (overhead, class of 40 bytes after the in-place shrink): 40 + 24 = 64 -> the 64-byte
    // class (3.8+); 40 + 32 = 72 -> the 80-byte class (3.7 and earlier).
    for (overhead, shrunk) in [(24, 3), (32, 4)] {
        let c = Config::builder(Preset::Cpython310).debug(true).debug_overhead(overhead);
        let mut h = Heap::new(c.build().unwrap());
        let p = h.alloc(105); // 129 or 137 -> the 144-byte class
        assert_eq!(h.stats().classes[8].blocks_in_use, 1, "{overhead}");
        // SAFETY: p is live; realloc keeps it in place: 124 or 132 > 3/4 of 144.
        unsafe {
            let q = h.realloc(p, 100);
            assert_eq!(q, p, "{overhead}");
            let r = h.realloc(q, 40); // 64 or 72 <= 108: moves to a smaller class
            assert_ne!(r, q, "{overhead}");
            assert_eq!(h.stats().classes[shrunk].blocks_in_use, 1, "{overhead}");
            h.try_free(r).unwrap();
            // A double free of a pool block reports the most the block could hold.
            let e = h.try_free(r).unwrap_err();
            let size = (shrunk + 1) * 16 - overhead;
            assert_eq!(e, HeapError::DoubleFree { address: r as usize, size }, "{overhead}");
        }
        h.check_invariants().unwrap();
    }
}

#[test]
fn debug_blocks_keep_every_requested_alignment() {
    let mut h = debug_heap();
    for align in [8usize, 16, 32, 64, 4096] {
        for size in [1usize, 40, 600] {
            let p = h.alloc_aligned(size, align);
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: live block freed once.
            unsafe { h.try_free(p).unwrap() };
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "runs the test binary as a child process, which Miri cannot")]
fn free_aborts_with_a_clear_message_on_double_free() {
    if std::env::var_os("PYMALLOC_DEBUG_CHILD").is_some() {
        let mut h = debug_heap();
        let p = h.alloc(24);
        // SAFETY: the double free is the bug under test; debug mode must abort here.
        unsafe {
            h.free(p);
            h.free(p);
        }
        unreachable!("debug mode let a double free through");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "free_aborts_with_a_clear_message_on_double_free", "--nocapture"])
        .env("PYMALLOC_DEBUG_CHILD", "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "child status {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pymalloc debug: fatal error: double free of the"), "stderr: {err}");
}
