//! The contenders: every allocator a benchmark compares, behind one small trait.
//!
//! The four process-global allocators come from the [`lineup`] registry and are called through
//! `&'static dyn GlobalAlloc`; the model's [`pymalloc::Heap`] is called directly, with no lock
//! and no `Layout` (fresh, with an arena cache, and warm: [`WarmHeap`]); CPython's real
//! obmalloc ([`obmalloc::Heap`], see [`real_obmallocs`]) is called through `PyObject_Malloc` and
//! `PyObject_Free` function pointers. A benchmark is written once, generic over [`Contender`],
//! and run for each.

use core::alloc::{GlobalAlloc, Layout};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The alignment every benchmark asks the global allocators for: a machine word, what most Rust
/// small objects need. pymalloc's `Heap` always aligns to its own 16-byte granularity.
pub const ALIGN: usize = 8;

/// The benchmark-id name of the direct, unlocked pymalloc heap.
pub const HEAP_NAME: &str = "pymalloc-heap";

/// The benchmark-id name of the same heap with an arena cache (not CPython's behaviour).
pub const CACHED_HEAP_NAME: &str = "pymalloc-heap-cached";

/// The benchmark-id name of a heap that holds one live block per size class: warm, like an
/// initialised interpreter's, so a pair never empties a pool.
pub const WARM_HEAP_NAME: &str = "pymalloc-heap-warm";

/// The benchmark-id name of CPython's real obmalloc is this followed by `major.minor`:
/// `cpython-obmalloc-3.11` (the name `arenalab bench-report` looks for).
pub use arenalab::bench_report::OBMALLOC_PREFIX;

/// The environment variable that chooses the interpreters whose obmalloc is measured: unset,
/// the `python3` on `PATH`; `all`, every CPython 3.8+ found; `none`, no interpreter; otherwise
/// a list of interpreter paths separated by `:` (as in `PATH`).
pub const PYTHON_ENV: &str = "ARENALAB_BENCH_PYTHON";

/// Arenas the cached heap keeps mapped: 64 MiB of 1 MiB arenas, enough for every workload here
/// (the largest, `scaling` at a million 64 B blocks, needs 63).
pub const CACHED_ARENAS: usize = 64;

/// An allocator under test: allocate `size` bytes, free a block given its size.
pub trait Contender {
    /// Allocates `size` bytes (`size > 0`); never returns null (aborts on out-of-memory).
    fn alloc(&mut self, size: usize) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    /// `p` was returned by [`Contender::alloc`] on this same contender with this same `size`, and
    /// has not been freed since.
    unsafe fn free(&mut self, p: *mut u8, size: usize);
}

/// A process-global allocator from the registry: name and `GlobalAlloc`.
#[derive(Clone, Copy)]
pub struct Global {
    /// The registry entry.
    pub allocator: lineup::Allocator,
    inner: &'static dyn GlobalAlloc,
}

impl Global {
    /// The registry entry's allocator.
    pub fn new(allocator: lineup::Allocator) -> Global {
        Global { allocator, inner: allocator.global() }
    }

    /// Its benchmark-id name (`system`, `mimalloc`, `jemalloc`, `pymalloc`).
    pub fn name(&self) -> &'static str {
        self.allocator.name()
    }
}

#[inline(always)]
fn layout(size: usize) -> Layout {
    debug_assert!(size > 0, "GlobalAlloc needs a non-zero size");
    match Layout::from_size_align(size, ALIGN) {
        Ok(l) => l,
        Err(_) => panic!("benchmark size {size} is not a valid layout"),
    }
}

impl Contender for Global {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let layout = layout(size);
        // SAFETY: `layout` has a non-zero size (every benchmark size is at least 8 bytes).
        let p = unsafe { self.inner.alloc(layout) };
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: the caller guarantees `p` came from this allocator with this size, so the layout
        // is the one it was allocated with.
        unsafe { self.inner.dealloc(p, layout(size)) }
    }
}

impl<S: pymalloc::ArenaSource> Contender for pymalloc::Heap<S> {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let p = pymalloc::Heap::<S>::alloc(self, size);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout(size));
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, _size: usize) {
        // SAFETY: the caller guarantees `p` is a live block of this heap.
        unsafe { pymalloc::Heap::<S>::free(self, p) }
    }
}

/// A fresh pymalloc heap with CPython 3.10's parameters, as the fifth contender.
pub fn heap() -> pymalloc::Heap {
    pymalloc::Heap::new(pymalloc::Config::CPYTHON_3_10)
}

/// A fresh pymalloc heap with CPython 3.10's parameters whose arena source keeps up to
/// [`CACHED_ARENAS`] released arenas mapped instead of unmapping them ([`pymalloc::os::Cached`]).
/// Not CPython's behaviour: it measures what giving arenas back to the OS costs.
pub fn cached_heap() -> pymalloc::Heap<pymalloc::os::Cached> {
    pymalloc::Heap::with_source(
        pymalloc::Config::CPYTHON_3_10,
        pymalloc::os::Cached::new(CACHED_ARENAS),
    )
}

/// A fresh pymalloc heap (CPython 3.10's parameters) holding one live block in every size
/// class, as an initialised interpreter's heap does: an alloc+free pair at any small size then
/// never empties its pool, so [`crate::size`] measures the fast path alone. (In a fresh heap the
/// pair's pool empties on every free and is taken back from the arena on the next alloc.)
pub struct WarmHeap {
    heap: pymalloc::Heap,
    held: Vec<*mut u8>,
}

impl WarmHeap {
    /// The heap, for its statistics.
    pub fn heap(&self) -> &pymalloc::Heap {
        &self.heap
    }
}

/// The benchmark-id name of the global `PyMalloc` made warm like [`WarmHeap`].
pub const WARM_GLOBAL_NAME: &str = "pymalloc-warm";

/// The global `pymalloc` of the registry holding one live block in every size class on the
/// calling thread's heap, as [`WarmHeap`] does for a bare heap: in `size` its pair is then the
/// fast path, not the empty-pool cycle (the benchmark binary's own allocations do not go to it,
/// so the global is otherwise as empty as a fresh heap). The blocks are freed on drop.
pub struct WarmGlobal {
    global: Global,
    held: Vec<(*mut u8, usize)>,
}

/// A [`WarmGlobal`] over the registry's `pymalloc`.
pub fn warm_global() -> WarmGlobal {
    let mut global = Global::new(lineup::Allocator::Pymalloc);
    let config = pymalloc::Config::CPYTHON_3_10;
    let held = (1..=config.num_classes())
        .map(|class| class * config.alignment())
        .map(|size| (Contender::alloc(&mut global, size), size))
        .collect();
    WarmGlobal { global, held }
}

impl Contender for WarmGlobal {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        Contender::alloc(&mut self.global, size)
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { Contender::free(&mut self.global, p, size) }
    }
}

impl Drop for WarmGlobal {
    fn drop(&mut self) {
        for (p, size) in self.held.drain(..) {
            // SAFETY: each held block was allocated by `warm_global` with this size and is
            // freed once, here.
            unsafe { Contender::free(&mut self.global, p, size) };
        }
    }
}

/// A [`WarmHeap`].
pub fn warm_heap() -> WarmHeap {
    let mut heap = heap();
    let config = *heap.config();
    let held = (1..=config.num_classes())
        .map(|class| Contender::alloc(&mut heap, class * config.alignment()))
        .collect();
    WarmHeap { heap, held }
}

impl Contender for WarmHeap {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        Contender::alloc(&mut self.heap, size)
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { Contender::free(&mut self.heap, p, size) }
    }
}

impl Drop for WarmHeap {
    fn drop(&mut self) {
        for p in self.held.drain(..) {
            // SAFETY: each held block was allocated by `warm_heap` and is freed once, here.
            unsafe { self.heap.free(p) };
        }
    }
}

impl Contender for obmalloc::Heap {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let p = obmalloc::Heap::alloc(self, size);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout(size));
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, _size: usize) {
        // SAFETY: the caller guarantees `p` is a live block of this heap's interpreter.
        unsafe { obmalloc::Heap::free(self, p) }
    }
}

impl Contender for obmalloc::FreshHeap {
    #[inline]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let p = obmalloc::FreshHeap::alloc(self, size);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout(size));
        }
        p
    }

    #[inline]
    unsafe fn free(&mut self, p: *mut u8, _size: usize) {
        // SAFETY: the caller guarantees `p` is a live block of this heap.
        unsafe { obmalloc::FreshHeap::free(self, p) }
    }
}

/// One loaded interpreter's obmalloc and its benchmark-id name.
#[derive(Clone, Copy, Debug)]
pub struct RealObmalloc {
    /// `cpython-obmalloc-3.11`.
    pub name: &'static str,
    /// The loaded, initialised libpython.
    pub obmalloc: &'static obmalloc::Obmalloc,
}

/// The interpreters named by `setting`, the value of [`PYTHON_ENV`] (empty: `python3`), at most
/// one per `major.minor` (the ids name only those); each one either kept or listed with why it
/// is left out.
pub fn chosen(setting: &str) -> (Vec<obmalloc::Python>, Vec<String>) {
    let mut pythons = Vec::new();
    let mut notes = Vec::new();
    match setting.trim() {
        "none" => notes.push(format!("{PYTHON_ENV}=none")),
        "all" => {
            // Oldest first; a later micro of the same minor replaces an earlier one.
            for p in obmalloc::installed() {
                if p.embeddable().is_ok() {
                    pythons.retain(|q: &obmalloc::Python| q.major_minor() != p.major_minor());
                    pythons.push(p);
                }
            }
            if pythons.is_empty() {
                notes.push("no embeddable CPython 3.8+ found".to_string());
            }
        }
        list => {
            let paths: Vec<PathBuf> = if list.is_empty() {
                vec![PathBuf::from("python3")]
            } else {
                std::env::split_paths(list).collect()
            };
            for path in paths {
                match obmalloc::Python::probe(Path::new(&path)) {
                    Ok(p) if pythons.iter().any(|q| q.major_minor() == p.major_minor()) => notes
                        .push(format!(
                            "{}: a CPython {} is already chosen",
                            path.display(),
                            p.major_minor()
                        )),
                    Ok(p) => pythons.push(p),
                    Err(e) => notes.push(e.to_string()),
                }
            }
        }
    }
    (pythons, notes)
}

/// CPython's real obmalloc, one per interpreter chosen by [`PYTHON_ENV`], loaded once per
/// process. Where none can be loaded the benchmarks run without it and one line on stderr says
/// why; every interpreter left out is named with its reason.
pub fn real_obmallocs() -> &'static [RealObmalloc] {
    static LOADED: OnceLock<Vec<RealObmalloc>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let (pythons, mut notes) = chosen(&std::env::var(PYTHON_ENV).unwrap_or_default());
        let mut loaded = Vec::new();
        for p in pythons {
            match obmalloc::Obmalloc::load(&p) {
                Ok(o) => {
                    let name = format!("{OBMALLOC_PREFIX}{}", p.major_minor());
                    loaded
                        .push(RealObmalloc { name: Box::leak(name.into_boxed_str()), obmalloc: o });
                }
                Err(e) => notes.push(e.to_string()),
            }
        }
        if loaded.is_empty() {
            eprintln!("benches: running without CPython's real obmalloc: {}", notes.join("; "));
        } else {
            let names: Vec<String> = loaded
                .iter()
                .map(|r| format!("{} ({})", r.name, r.obmalloc.python().executable.display()))
                .collect();
            let skipped = if notes.is_empty() {
                String::new()
            } else {
                format!("; left out: {}", notes.join("; "))
            };
            eprintln!("benches: CPython's real obmalloc: {}{skipped}", names.join(", "));
        }
        loaded
    })
}

/// The four process-global allocators of the registry, in registry order.
pub fn globals() -> Vec<Global> {
    lineup::Allocator::ALL.into_iter().map(Global::new).collect()
}

/// The cache-line stride [`touch`] writes with.
pub const CACHE_LINE: usize = 64;

/// Writes one byte per cache line and the last byte of a fresh block, so that no allocator wins
/// by handing out pages nobody touches.
///
/// # Safety
/// `p` points to a live block of at least `size > 0` writable bytes.
#[inline]
pub unsafe fn touch(p: *mut u8, size: usize, value: u8) {
    let mut offset = 0;
    while offset < size {
        // SAFETY: `offset < size` and the block has `size` writable bytes.
        unsafe { p.add(offset).write_volatile(value) };
        offset += CACHE_LINE;
    }
    // SAFETY: `size > 0`, so `size - 1` is the block's last byte.
    unsafe { p.add(size - 1).write_volatile(value) };
}

/// Allocates a block on `c` and touches it: the unit every workload is made of.
#[inline]
pub fn alloc_touched<C: Contender + ?Sized>(c: &mut C, size: usize) -> *mut u8 {
    let p = c.alloc(size);
    // SAFETY: `alloc` returned a live, non-null block of `size` bytes.
    unsafe { touch(p, size, size as u8) };
    p
}
