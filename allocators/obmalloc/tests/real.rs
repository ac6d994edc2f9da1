//! The real obmalloc against real interpreters. Where this machine has no embeddable CPython,
//! the tests that need one print why and pass.

use obmalloc::{Error, Obmalloc, Python};
use std::path::{Path, PathBuf};

/// The default `python3`, loaded; `None` (with the reason printed) where there is none.
fn default_obmalloc() -> Option<&'static Obmalloc> {
    match Python::probe(Path::new("python3")).and_then(|p| Obmalloc::load(&p)) {
        Ok(o) => Some(o),
        Err(e) => {
            eprintln!("skipped: no embeddable python3: {e}");
            None
        }
    }
}

/// Allocates one block per size class and one above the threshold, writes every byte, checks
/// them, frees them.
fn round_trip(o: &'static Obmalloc) {
    let mut heap = o.heap().unwrap();
    let sizes: Vec<usize> = (1..=32).map(|i| i * 16).chain([513, 4096]).collect();
    let blocks: Vec<*mut u8> = sizes.iter().map(|&s| heap.alloc(s)).collect();
    for (&p, &s) in blocks.iter().zip(&sizes) {
        assert!(!p.is_null());
        assert_eq!(p as usize % 16, 0, "obmalloc aligns to 16 bytes");
        // SAFETY: `p` is a live block of `s` bytes.
        unsafe { p.write_bytes(s as u8, s) };
    }
    for (&p, &s) in blocks.iter().zip(&sizes) {
        // SAFETY: as above; the block was filled with `s as u8`.
        let bytes = unsafe { std::slice::from_raw_parts(p, s) };
        assert!(bytes.iter().all(|&b| b == s as u8), "block of {s} B overwritten");
        // SAFETY: `p` came from this heap and is freed once.
        unsafe { heap.free(p) };
    }
}

#[test]
fn alloc_and_free_round_trip_through_the_real_interpreter() {
    let Some(o) = default_obmalloc() else { return };
    assert_eq!(o.allocator_name(), "pymalloc");
    round_trip(o);
    // A pair at one size gets the block it just freed back: obmalloc's LIFO free list.
    let mut heap = o.heap().unwrap();
    let a = heap.alloc(32);
    // SAFETY: `a` is live and freed once.
    unsafe { heap.free(a) };
    let b = heap.alloc(32);
    assert_eq!(a, b);
    // SAFETY: as above.
    unsafe { heap.free(b) };
}

#[test]
fn loading_twice_gives_the_same_interpreter_and_threads_take_turns() {
    let Some(o) = default_obmalloc() else { return };
    let again = Python::probe(Path::new("python3")).and_then(|p| Obmalloc::load(&p)).unwrap();
    assert!(std::ptr::eq(o, again));
    // Each thread takes the GIL in turn; since 3.12 this also makes its thread state current.
    let threads: Vec<_> = (0..4).map(|_| std::thread::spawn(move || round_trip(o))).collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_second_heap_on_the_same_thread_is_refused() {
    let Some(o) = default_obmalloc() else { return };
    let first = o.heap().unwrap();
    assert!(matches!(o.heap(), Err(Error::Busy(_))));
    drop(first);
    assert!(o.heap().is_ok());
}

#[test]
fn several_libpythons_live_side_by_side() {
    // Every embeddable CPython found, one per libpython file (3.11.2 and 3.11.7 share a soname).
    let mut pythons: Vec<Python> = Vec::new();
    for p in obmalloc::installed() {
        if p.embeddable().is_ok() && !pythons.iter().any(|q| q.libpython == p.libpython) {
            pythons.push(p);
        }
    }
    if pythons.len() < 2 {
        eprintln!("skipped: {} embeddable CPython found, two are needed", pythons.len());
        return;
    }
    let loaded: Vec<&'static Obmalloc> =
        pythons.iter().map(|p| Obmalloc::load(p).unwrap()).collect();
    eprintln!(
        "loaded: {:?}",
        loaded.iter().map(|o| o.python().version_string()).collect::<Vec<_>>()
    );
    // Each library is its own copy: its own functions, and so its own state.
    for (i, a) in loaded.iter().enumerate() {
        for b in &loaded[i + 1..] {
            assert_ne!(a.malloc_fn() as usize, b.malloc_fn() as usize);
        }
    }
    // Blocks of all of them live at once, each freed by its own interpreter.
    let mut heaps: Vec<obmalloc::Heap> = loaded.iter().map(|o| o.heap().unwrap()).collect();
    let blocks: Vec<Vec<*mut u8>> =
        heaps.iter_mut().map(|h| (0..1000).map(|_| h.alloc(48)).collect()).collect();
    let mut all: Vec<*mut u8> = blocks.iter().flatten().copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000 * loaded.len(), "two interpreters handed out one block");
    for (h, bs) in heaps.iter_mut().zip(&blocks) {
        for &p in bs {
            // SAFETY: `p` came from this heap and is freed once.
            unsafe { h.free(p) };
        }
    }
    drop(heaps);
    for o in loaded {
        round_trip(o);
    }
}

#[test]
fn a_program_that_is_not_python_is_an_error() {
    for program in ["/nonexistent/python3", "/bin/true", "/bin/false"] {
        let e = Python::probe(Path::new(program)).unwrap_err();
        assert!(matches!(e, Error::Probe(_)), "{program}: {e}");
        assert!(e.to_string().contains(program), "{e}");
    }
}

fn fake(libpython: Option<&str>) -> Python {
    Python {
        executable: PathBuf::from("/opt/python3"),
        version: [3, 11, 0],
        libpython: libpython.map(PathBuf::from),
        pymalloc: true,
        classes: 32,
    }
}

#[test]
fn a_python_without_a_shared_libpython_is_an_error() {
    let e = Obmalloc::load(&fake(None)).unwrap_err();
    assert!(matches!(e, Error::NotEmbeddable { .. }), "{e}");
    assert!(e.to_string().contains("no shared libpython"), "{e}");
}

#[test]
fn a_library_that_is_missing_or_not_libpython_is_an_error() {
    let e = Obmalloc::load(&fake(Some("/nonexistent/libpython3.11.so"))).unwrap_err();
    assert!(matches!(e, Error::Load { .. }), "{e}");
    // A real shared library without CPython's symbols: libc's math library.
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(libm) = libm else {
        eprintln!("skipped the libm case: no libm.so.6 at the Debian paths");
        return;
    };
    let e = Obmalloc::load(&fake(Some(libm))).unwrap_err();
    assert!(e.to_string().contains("no symbol PyObject_Malloc"), "{e}");
}

/// Run by [`pythonmalloc_in_the_environment_does_not_replace_pymalloc`] in a child process whose
/// environment sets `PYTHONMALLOC=malloc`.
#[test]
#[ignore = "run as a child by pythonmalloc_in_the_environment_does_not_replace_pymalloc"]
fn child_loads_with_pythonmalloc_set() {
    assert_eq!(std::env::var("PYTHONMALLOC").as_deref(), Ok("malloc"));
    // The parent checked that python3 loads: here it must, with pymalloc.
    let o = Python::probe(Path::new("python3")).and_then(|p| Obmalloc::load(&p)).unwrap();
    assert_eq!(o.allocator_name(), "pymalloc");
    round_trip(o);
}

#[test]
fn pythonmalloc_in_the_environment_does_not_replace_pymalloc() {
    if default_obmalloc().is_none() {
        return;
    }
    passes_in_a_child("child_loads_with_pythonmalloc_set", &[("PYTHONMALLOC", "malloc")]);
}

/// Runs the ignored test `name` of this binary in a child process with `env` set, and asserts
/// that it passed.
fn passes_in_a_child(name: &str, env: &[(&str, &str)]) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first embeddable CPython older than 3.12 on this machine (a fresh obmalloc needs one).
fn before_3_12() -> Option<Python> {
    obmalloc::installed().into_iter().find(|p| p.version < [3, 12, 0] && p.embeddable().is_ok())
}

/// Run by [`a_fresh_obmalloc_starts_with_no_arena_and_hands_out_a_pool_s_first_block`] in a
/// child process, where no libpython has been initialised.
#[test]
#[ignore = "run as a child by a_fresh_obmalloc_starts_with_no_arena_and_hands_out_a_pool_s_first_block"]
fn child_fresh_obmalloc() {
    let python = before_3_12().unwrap();
    let mut heap = obmalloc::FreshHeap::load(&python).unwrap();
    // Nothing is allocated yet: the first 32-byte block is the first block of the first pool
    // of the first arena, right after the pool header (48 bytes), and pools are aligned to
    // their size (4 KiB up to 3.9, 16 KiB from 3.10).
    let pool = if python.version >= [3, 10, 0] { 16 << 10 } else { 4 << 10 };
    let p = heap.alloc(32);
    assert_eq!(p as usize % pool, 48, "not a fresh pool's first block");
    // SAFETY: `p` is a live block of 32 bytes, freed once.
    unsafe {
        p.write_bytes(7, 32);
        heap.free(p);
    }
    // The emptied pool is taken again: the same block.
    let q = heap.alloc(32);
    assert_eq!(q, p);
    // SAFETY: `q` is live and freed once.
    unsafe { heap.free(q) };
    assert!(matches!(obmalloc::FreshHeap::load(&python), Err(Error::Busy(_))));
    let e = Obmalloc::load(&python).unwrap_err();
    assert!(e.to_string().contains("uninitialised"), "{e}");
}

#[test]
fn a_fresh_obmalloc_starts_with_no_arena_and_hands_out_a_pool_s_first_block() {
    for p in obmalloc::installed().into_iter().filter(|p| p.version >= [3, 12, 0]) {
        let e = obmalloc::FreshHeap::load(&p).err().expect("3.12+ cannot be fresh");
        assert!(e.to_string().contains("cannot allocate before initialisation"), "{e}");
    }
    if before_3_12().is_none() {
        eprintln!("skipped: no embeddable CPython before 3.12");
        return;
    }
    passes_in_a_child("child_fresh_obmalloc", &[]);
}
