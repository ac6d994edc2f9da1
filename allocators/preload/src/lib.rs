//! # `libarenalab_preload.so`: any program's `malloc` on the pymalloc model
//!
//! Loaded with `LD_PRELOAD`, this library provides the whole malloc API (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`,
//! `valloc`, `pvalloc`, `malloc_usable_size`) and sends every request the model serves to one
//! process-wide [`pymalloc::PyMalloc`] heap:
//!
//! ```sh
//! cargo build --release
//! LD_PRELOAD=target/release/libarenalab_preload.so PYTHONMALLOC=malloc python3 -c 'print(1)'
//! ```
//!
//! ## Routing, as CPython routes
//!
//! A request of 1 to `threshold` bytes (512 in the 3.10 layout) with an alignment of at most the
//! granularity (16) gets a pool block; everything else (0 bytes, larger requests, larger
//! alignments, `valloc`, `pvalloc`) goes to the real allocator, found with
//! `dlsym(RTLD_NEXT, ...)`, exactly as CPython sends them to `PyMem_RawMalloc`. `free`,
//! `realloc` and `malloc_usable_size` route by ownership, through the model's O(1) ownership map
//! (the radix map of CPython 3.10), so any pointer, whoever allocated it, goes back where it came
//! from. `realloc` follows `pymalloc_realloc`: a pool block stays in the model while the new size
//! is small (kept in place when it still fits and fills more than 3/4 of the block), moves to
//! the real allocator when it grows past the threshold; a real block stays real.
//!
//! `ARENALAB_PRESET` chooses the layout: `3.10` (default), `3.8` or `3.7`. Any other value stops
//! the program with a message and exit code 2. With `ARENALAB_STATS=1`, the model's
//! `sys._debugmallocstats()`-style report is written to standard error when the program exits
//! (from the library's destructor, formatted in a stack buffer: no allocation). Reading the
//! statistics first drains every heap's stack of blocks freed by other threads, so the report
//! counts them as free; until then they count as in use, and they keep their pools used and
//! their arenas mapped for as long as the owning thread makes no further allocation (it drains
//! its stack only when it allocates, or exits). An RSS measured before the report therefore
//! includes them, one measured after may not.
//!
//! ## Mode `record`
//!
//! With `ARENALAB_TRACE=FILE`, nothing goes to the model: every call goes to the real allocator
//! and is written to FILE in the trace format of `arenalab trace` (version 1; calls in the MEM
//! domain, aligned requests as `malloc` of their size, a mark every 65,536 calls and at exit),
//! for `arenalab trace replay FILE --allocator system --allocator mimalloc ...`. The format has
//! no thread field: calls are recorded in the order they took one lock, and replayed in that
//! order on one thread (one interleaving of a multi-threaded program, the one that happened).
//! The header names the layout of `ARENALAB_PRESET`; the end record's status is 0 (a library
//! destructor cannot see the exit status). Only the process that opened FILE records: the
//! variable is removed from its environment, and a child of `fork` stops recording.
//!
//! ```sh
//! ARENALAB_TRACE=/tmp/git.trace LD_PRELOAD=target/release/libarenalab_preload.so git log
//! cargo run --release -- trace replay /tmp/git.trace --allocator system --allocator jemalloc
//! ```
//!
//! ## Where interposers fail, and what this one does
//!
//! * **Before `dlsym` answers.** The first call resolves the real functions; `dlsym` itself
//!   may call `calloc` (for its error buffer) and `pthread_atfork` may call `malloc`. Calls the
//!   initialising thread makes meanwhile are served from a static bootstrap area (256 KiB,
//!   bump-allocated, each block preceded by its size); freeing such a block does nothing, and
//!   `realloc` copies it out. Other threads wait until the initialisation is done.
//! * **Never through itself.** The heap's bookkeeping is mapped with `mmap`; the library hands
//!   the model only requests it serves from pools (its raw allocator, which calls `malloc`,
//!   would come back here), and uses `getenv` and `write(2)`, never Rust's allocating APIs.
//! * **Threads** each get their own heap of [`PyMalloc`] (as each interpreter with its own GIL
//!   has its own obmalloc state in CPython 3.12); a block freed by another thread goes back to
//!   its owner's heap, found through the model's shared arena map (`PyMalloc::owns`).
//! * **`fork` in a multi-threaded program.** [`PyMalloc`] registers `pthread_atfork` handlers
//!   on its first call (the initialisation makes that call): before the fork every heap is
//!   brought to a still point, and in the child the heaps of threads it lacks are abandoned,
//!   consistent, for its own threads to adopt.
//! * **Edge cases.** `free(NULL)` does nothing; `calloc` and `reallocarray` whose product
//!   overflows return null with `errno = ENOMEM`; `realloc(NULL, n)` is `malloc(n)`;
//!   `realloc(p, 0)` frees `p` and returns null (glibc's behaviour); an alignment that is not a
//!   power of two gets `EINVAL` (and for `posix_memalign`, one that is not a multiple of the
//!   pointer size too); `malloc_usable_size` answers for pool blocks (the block size), real
//!   blocks (the real allocator's answer) and bootstrap blocks (their recorded size).

use core::alloc::{GlobalAlloc, Layout as BlockLayout};
use core::cell::UnsafeCell;
use core::ffi::{CStr, c_int, c_void};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use pymalloc::{Config, Layout, PyMalloc, Stats};

mod record;

// ------------------------------------------------------------------------------- the real libc

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type PosixMemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type UsableFn = unsafe extern "C" fn(*mut c_void) -> usize;

/// The real allocator's entry points, as addresses (0 until resolved).
struct Real {
    malloc: AtomicUsize,
    free: AtomicUsize,
    calloc: AtomicUsize,
    realloc: AtomicUsize,
    posix_memalign: AtomicUsize,
    usable: AtomicUsize,
}

static REAL: Real = Real {
    malloc: AtomicUsize::new(0),
    free: AtomicUsize::new(0),
    calloc: AtomicUsize::new(0),
    realloc: AtomicUsize::new(0),
    posix_memalign: AtomicUsize::new(0),
    usable: AtomicUsize::new(0),
};

/// Looks `name` up in the libraries after this one.
fn next_symbol(name: &CStr) -> usize {
    // SAFETY: RTLD_NEXT with a NUL-terminated name; dlsym only reads it.
    unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
}

/// Turns a resolved address into a function pointer of type `F`, `None` when unresolved.
///
/// # Safety
/// `addr` is 0 or the address of a function whose C signature is `F`.
unsafe fn as_fn<F: Copy>(addr: usize) -> Option<F> {
    if addr == 0 {
        return None;
    }
    debug_assert_eq!(core::mem::size_of::<F>(), core::mem::size_of::<usize>());
    // SAFETY: F is a function pointer type of pointer size, and addr a function of that type
    // (caller contract).
    Some(unsafe { core::mem::transmute_copy::<usize, F>(&addr) })
}

fn real_malloc(size: usize) -> *mut c_void {
    // SAFETY: REAL.malloc holds 0 or libc's `malloc`.
    match unsafe { as_fn::<MallocFn>(REAL.malloc.load(Ordering::Relaxed)) } {
        // SAFETY: the real malloc takes any size.
        Some(f) => unsafe { f(size) },
        None => bootstrap_alloc(size, 16),
    }
}

/// # Safety
/// `p` is null or a live block of the real allocator.
unsafe fn real_free(p: *mut c_void) {
    // SAFETY: REAL.free holds 0 or libc's `free`.
    if let Some(f) = unsafe { as_fn::<FreeFn>(REAL.free.load(Ordering::Relaxed)) } {
        // SAFETY: caller contract.
        unsafe { f(p) }
    }
}

fn real_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: REAL.calloc holds 0 or libc's `calloc`.
    match unsafe { as_fn::<CallocFn>(REAL.calloc.load(Ordering::Relaxed)) } {
        // SAFETY: the real calloc takes any counts (it checks the product itself).
        Some(f) => unsafe { f(n, size) },
        // The product was checked by our calloc; the bootstrap area is zero and never reused.
        None => bootstrap_alloc(n * size, 16),
    }
}

/// # Safety
/// `p` is a live block of the real allocator.
unsafe fn real_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: REAL.realloc holds 0 or libc's `realloc`.
    match unsafe { as_fn::<ReallocFn>(REAL.realloc.load(Ordering::Relaxed)) } {
        // SAFETY: caller contract.
        Some(f) => unsafe { f(p, size) },
        None => core::ptr::null_mut(),
    }
}

/// `posix_memalign` of the real allocator; `align` is a power of two multiple of the pointer
/// size. Null (errno set) on failure.
fn real_aligned(align: usize, size: usize) -> *mut c_void {
    // SAFETY: REAL.posix_memalign holds 0 or libc's `posix_memalign`.
    match unsafe { as_fn::<PosixMemalignFn>(REAL.posix_memalign.load(Ordering::Relaxed)) } {
        Some(f) => {
            let mut p = core::ptr::null_mut();
            // SAFETY: a valid out-pointer and an alignment the function accepts.
            let rc = unsafe { f(&mut p, align, size) };
            if rc == 0 {
                p
            } else {
                set_errno(rc);
                core::ptr::null_mut()
            }
        }
        None => bootstrap_alloc(size, align),
    }
}

/// # Safety
/// `p` is a live block of the real allocator.
unsafe fn real_usable(p: *mut c_void) -> usize {
    // SAFETY: REAL.usable holds 0 or libc's `malloc_usable_size`.
    match unsafe { as_fn::<UsableFn>(REAL.usable.load(Ordering::Relaxed)) } {
        // SAFETY: caller contract.
        Some(f) => unsafe { f(p) },
        None => 0,
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

// ------------------------------------------------------------------------------- bootstrap area

const BOOTSTRAP_BYTES: usize = 256 * 1024;
/// The size header in front of every bootstrap block (keeps blocks 16-byte aligned).
const BOOTSTRAP_HEADER: usize = 16;

#[repr(C, align(4096))]
struct Bootstrap(UnsafeCell<[u8; BOOTSTRAP_BYTES]>);

// SAFETY: bytes of the area are handed out once each (the bump offset only grows, by atomic
// compare-exchange), so no two threads ever write the same bytes through it.
unsafe impl Sync for Bootstrap {}

static BOOTSTRAP: Bootstrap = Bootstrap(UnsafeCell::new([0; BOOTSTRAP_BYTES]));
/// Bytes of the area handed out so far.
static BOOTSTRAP_USED: AtomicUsize = AtomicUsize::new(0);

fn bootstrap_base() -> *mut u8 {
    BOOTSTRAP.0.get().cast()
}

fn in_bootstrap(p: *const c_void) -> bool {
    p.addr().wrapping_sub(bootstrap_base().addr()) < BOOTSTRAP_BYTES
}

/// A block of the bootstrap area, never reused (so still zero), or null with ENOMEM when the
/// area is exhausted.
fn bootstrap_alloc(size: usize, align: usize) -> *mut c_void {
    let align = align.max(BOOTSTRAP_HEADER);
    let mut used = BOOTSTRAP_USED.load(Ordering::Relaxed);
    loop {
        let start = (used + BOOTSTRAP_HEADER).next_multiple_of(align);
        let end = match start.checked_add(size) {
            Some(e) if e <= BOOTSTRAP_BYTES => e,
            _ => {
                set_errno(libc::ENOMEM);
                return core::ptr::null_mut();
            }
        };
        match BOOTSTRAP_USED.compare_exchange(used, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {
                // SAFETY: start - 16 .. end lies inside the area and was just handed to this
                // call alone; the header word is aligned (start is a multiple of 16).
                unsafe {
                    let p = bootstrap_base().add(start);
                    p.sub(BOOTSTRAP_HEADER).cast::<usize>().write(size);
                    return p.cast();
                }
            }
            Err(now) => used = now,
        }
    }
}

/// The recorded size of the bootstrap block `p`.
///
/// # Safety
/// `p` was returned by [`bootstrap_alloc`].
unsafe fn bootstrap_size(p: *const c_void) -> usize {
    // SAFETY: the header written by bootstrap_alloc sits 16 bytes before the block.
    unsafe { p.cast::<u8>().sub(BOOTSTRAP_HEADER).cast::<usize>().read() }
}

// ------------------------------------------------------------------------------- the model

/// One heap per preset; the one `ARENALAB_PRESET` names is used, the others are never touched
/// (a `PyMalloc` maps nothing and claims no slot before its first call).
static HEAPS: [PyMalloc; 3] = [
    PyMalloc::with_config(Config::CPYTHON_3_10),
    PyMalloc::with_config(Config::CPYTHON_3_8),
    PyMalloc::with_config(Config::CPYTHON_3_7),
];
/// The layout of each of `HEAPS`, named in a trace's header.
const LAYOUTS: [Layout; 3] =
    [Layout::Classes32Pools16k, Layout::Classes32Pools4k, Layout::Classes64Pools4k];
/// Index into `HEAPS`.
static SELECTED: AtomicUsize = AtomicUsize::new(0);
/// Largest request served by pools, and the granularity, of the selected layout.
static THRESHOLD: AtomicUsize = AtomicUsize::new(0);
static GRANULARITY: AtomicUsize = AtomicUsize::new(0);
/// Requests sent to the real allocator, and those of them still live (for the report).
static RAW_TOTAL: AtomicUsize = AtomicUsize::new(0);
/// Whether `ARENALAB_STATS=1`.
static STATS_AT_EXIT: AtomicU8 = AtomicU8::new(0);

fn heap() -> &'static PyMalloc {
    &HEAPS[SELECTED.load(Ordering::Relaxed) % HEAPS.len()]
}

/// Whether the model serves a request of `size` bytes aligned to `align`.
#[inline]
fn served(size: usize, align: usize) -> bool {
    size.wrapping_sub(1) < THRESHOLD.load(Ordering::Relaxed)
        && align <= GRANULARITY.load(Ordering::Relaxed)
}

// ------------------------------------------------------------------------------- initialisation

const UNINIT: u8 = 0;
const INITIALISING: u8 = 1;
const READY: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// `pthread_self()` of the initialising thread.
static INIT_THREAD: AtomicUsize = AtomicUsize::new(0);

/// True when the library is ready; false when the caller is the initialising thread calling
/// back in (from `dlsym` or `pthread_atfork`) and must use the bootstrap area.
#[inline(always)]
fn ready() -> bool {
    STATE.load(Ordering::Acquire) == READY || init_slow()
}

#[cold]
fn init_slow() -> bool {
    // SAFETY: pthread_self has no preconditions and does not allocate.
    let me = unsafe { libc::pthread_self() } as usize;
    loop {
        match STATE.compare_exchange(UNINIT, INITIALISING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                INIT_THREAD.store(me, Ordering::Relaxed);
                initialise();
                STATE.store(READY, Ordering::Release);
                return true;
            }
            Err(READY) => return true,
            Err(_) if INIT_THREAD.load(Ordering::Relaxed) == me => return false,
            // SAFETY: sched_yield has no preconditions.
            Err(_) => unsafe {
                libc::sched_yield();
            },
        }
    }
}

/// Reads an environment variable without allocating.
fn env(name: &CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads a NUL-terminated name; the result is null or a NUL-terminated string
    // in the environment, which this library never modifies.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
    }
}

/// Writes `msg` to standard error without allocating.
fn say(msg: &[u8]) {
    // SAFETY: write(2) reads msg.len() bytes of a live slice.
    unsafe { libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len()) };
}

fn initialise() {
    REAL.malloc.store(next_symbol(c"malloc"), Ordering::Relaxed);
    REAL.free.store(next_symbol(c"free"), Ordering::Relaxed);
    REAL.calloc.store(next_symbol(c"calloc"), Ordering::Relaxed);
    REAL.realloc.store(next_symbol(c"realloc"), Ordering::Relaxed);
    REAL.posix_memalign.store(next_symbol(c"posix_memalign"), Ordering::Relaxed);
    REAL.usable.store(next_symbol(c"malloc_usable_size"), Ordering::Relaxed);

    let selected = match env(c"ARENALAB_PRESET") {
        None | Some(b"" | b"3.10" | b"3.10+") => 0,
        Some(b"3.8") => 1,
        Some(b"3.7") => 2,
        Some(other) => {
            say(b"arenalab preload: ARENALAB_PRESET=");
            say(other);
            say(b" is not a layout; use 3.10 (the default), 3.8 or 3.7\n");
            // SAFETY: _exit has no preconditions; it runs no handler that could allocate.
            unsafe { libc::_exit(2) }
        }
    };
    SELECTED.store(selected, Ordering::Relaxed);
    if env(c"ARENALAB_STATS").is_some_and(|v| v == b"1") {
        STATS_AT_EXIT.store(1, Ordering::Relaxed);
    }
    // The model's first call, made here and not on the first allocation: it registers the fork
    // handlers and the thread-exit key (pthread_atfork and pthread_key_create may allocate:
    // such an allocation comes back here and is served from the bootstrap area; made after the
    // initialisation, it would re-enter that unfinished first call and wait for itself).
    // `config()` alone would not do: it only reads a field.
    let _ = heap().owns(core::ptr::null());
    let config = heap().config();
    THRESHOLD.store(config.small_request_threshold(), Ordering::Relaxed);
    GRANULARITY.store(config.alignment(), Ordering::Relaxed);
    // SAFETY: getenv as in `env`; the string lives in the environment until the unsetenv in
    // record::start, which is done with it by then.
    let trace = unsafe { libc::getenv(c"ARENALAB_TRACE".as_ptr()) };
    if !trace.is_null() {
        // SAFETY: a non-null getenv result is NUL-terminated.
        let path = unsafe { CStr::from_ptr(trace) };
        if !path.is_empty() {
            record::start(path, LAYOUTS[selected].name(), config.num_classes());
            // SAFETY: an `extern "C"` handler that only stores an atomic; glibc may allocate its
            // handler list, which comes back here (the bootstrap area serves it).
            unsafe { libc::pthread_atfork(None, None, Some(record::stop_in_child)) };
        }
    }
}

// ------------------------------------------------------------------------------- the API

/// Allocates from the model (`size` served) or the real allocator.
fn alloc(size: usize, align: usize) -> *mut c_void {
    if !ready() {
        return bootstrap_alloc(size, align);
    }
    if record::on() {
        let real = || if align <= 16 { real_malloc(size) } else { real_aligned(align, size) };
        return record::malloc(size, real);
    }
    if served(size, align) {
        // SAFETY: `served` sizes are non-zero, with the granularity as alignment.
        let p = unsafe { heap().alloc(BlockLayout::from_size_align_unchecked(size, 1)) };
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        return p.cast();
    }
    RAW_TOTAL.fetch_add(1, Ordering::Relaxed);
    if align <= 16 { real_malloc(size) } else { real_aligned(align, size) }
}

/// Frees `p` in the model if it owns it; returns whether it did.
///
/// # Safety
/// `p` is a live block of this library.
unsafe fn model_free(p: *mut c_void) -> bool {
    // One heap per thread: the model's shared arena map finds the owner of a block from any
    // thread, lock-free.
    if heap().owns(p.cast()) {
        // SAFETY: a live block inside the model's arenas (caller contract); the layout is not
        // read by pymalloc's dealloc.
        unsafe { heap().dealloc(p.cast(), BlockLayout::from_size_align_unchecked(1, 1)) };
        true
    } else {
        false
    }
}

/// `malloc(3)` on the model.
///
/// # Safety
/// None beyond C's: the result is null or a block of `size` bytes to be freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc(size, 1)
}

/// `free(3)`: routes `p` by ownership (model, bootstrap area, real allocator).
///
/// # Safety
/// `p` is null or a live block from this API, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if p.is_null() || in_bootstrap(p) {
        return;
    }
    if !ready() {
        // The initialising thread freeing a block allocated elsewhere before the heap existed:
        // it cannot be the model's.
        // SAFETY: caller contract; not ours, so the real allocator's.
        return unsafe { real_free(p) };
    }
    if record::on() {
        // SAFETY: caller contract; in mode record every block after the bootstrap is real.
        return record::free(p, || unsafe { real_free(p) });
    }
    // SAFETY: caller contract.
    if !unsafe { model_free(p) } {
        // SAFETY: caller contract; not the model's, not the bootstrap area's.
        unsafe { real_free(p) }
    }
}

/// `calloc(3)`: null with ENOMEM when `n * size` overflows.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(bytes) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return core::ptr::null_mut();
    };
    if !ready() {
        return bootstrap_alloc(bytes, 16);
    }
    if record::on() {
        return record::calloc(n, size, || real_calloc(n, size));
    }
    if served(bytes, 1) {
        let p = alloc(bytes, 1);
        if !p.is_null() {
            // SAFETY: a fresh block of at least `bytes` bytes.
            unsafe { p.cast::<u8>().write_bytes(0, bytes) };
        }
        return p;
    }
    RAW_TOTAL.fetch_add(1, Ordering::Relaxed);
    real_calloc(n, size)
}

/// The usable size of a live block of any origin.
///
/// # Safety
/// `p` is a live block from this API.
unsafe fn usable(p: *mut c_void) -> usize {
    if in_bootstrap(p) {
        // SAFETY: a bootstrap block (caller contract).
        return unsafe { bootstrap_size(p) };
    }
    if ready() {
        // SAFETY: a live block (caller contract), of the model when it lies in one of its
        // arenas.
        if let Some(n) = unsafe { heap().block_size(p.cast()) } {
            return n;
        }
    }
    // SAFETY: not the model's nor the bootstrap area's, so the real allocator's.
    unsafe { real_usable(p) }
}

/// `realloc(3)`, CPython's way (see the crate docs): `realloc(NULL, n)` is `malloc(n)`,
/// `realloc(p, 0)` frees `p` and returns null.
///
/// # Safety
/// `p` is null or a live block from this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc(size, 1);
    }
    if size == 0 {
        // SAFETY: caller contract.
        unsafe { free(p) };
        return core::ptr::null_mut();
    }
    // SAFETY (of the block below): caller contract.
    if in_bootstrap(p) || !ready() {
        // SAFETY: caller contract.
        return unsafe { move_block(p, size) };
    }
    if record::on() {
        // SAFETY: caller contract; in mode record every block after the bootstrap is real.
        return record::realloc(p, size, || unsafe { real_realloc(p, size) });
    }
    if served(size, 1) {
        // A pool block stays in the model.
        let r = if heap().owns(p.cast()) {
            // SAFETY: a live block of the model (caller contract); `size` is served, so the
            // heap's realloc takes a pool block and never calls its raw allocator.
            Some(unsafe {
                heap().realloc(p.cast(), BlockLayout::from_size_align_unchecked(1, 1), size)
            })
        } else {
            None
        };
        match r {
            Some(q) if q.is_null() => {
                set_errno(libc::ENOMEM);
                return core::ptr::null_mut();
            }
            Some(q) => return q.cast(),
            None => {}
        }
    } else if heap().owns(p.cast()) {
        // Grows past the threshold: to the real allocator.
        // SAFETY: caller contract.
        return unsafe { move_block(p, size) };
    }
    // A real block stays real, as CPython's raw blocks do.
    // SAFETY: neither the model's nor the bootstrap area's: the real allocator's.
    unsafe { real_realloc(p, size) }
}

/// Moves `p` to a new block of `size` bytes (allocated by the rules of `malloc`), copying what
/// fits, and frees `p`.
///
/// # Safety
/// `p` is a live block from this API.
unsafe fn move_block(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: caller contract.
    let old = unsafe { usable(p) };
    let q = alloc(size, 1);
    if !q.is_null() {
        // SAFETY: both blocks are live and distinct, each at least min(old, size) long.
        unsafe {
            core::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), old.min(size));
            free(p);
        }
    }
    q
}

/// `reallocarray(3)`: null with ENOMEM (and `p` untouched) when `n * size` overflows.
///
/// # Safety
/// As for [`realloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: caller contract.
        Some(bytes) => unsafe { realloc(p, bytes) },
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// `posix_memalign(3)`: EINVAL unless `align` is a power of two multiple of the pointer size.
///
/// # Safety
/// `out` is valid for a pointer write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<usize>()) {
        return libc::EINVAL;
    }
    let p = alloc(size, align);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: caller contract.
    unsafe { out.write(p) };
    0
}

/// `aligned_alloc(3)`: null with EINVAL unless `align` is a power of two.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: no contract.
    unsafe { memalign(align, size) }
}

/// `memalign(3)`: null with EINVAL unless `align` is a power of two.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return core::ptr::null_mut();
    }
    alloc(size, align.max(1))
}

/// `valloc(3)`: page-aligned, from the real allocator.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc(size, page())
}

/// `pvalloc(3)`: page-aligned, rounded up to whole pages (one page for 0), from the real
/// allocator; null with ENOMEM when the rounding overflows.
///
/// # Safety
/// None beyond C's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page();
    match size.max(1).checked_next_multiple_of(page) {
        Some(bytes) => alloc(bytes, page),
        None => {
            set_errno(libc::ENOMEM);
            core::ptr::null_mut()
        }
    }
}

/// `malloc_usable_size(3)` on a block of any origin; 0 for null.
///
/// # Safety
/// `p` is null or a live block from this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: caller contract.
    unsafe { usable(p) }
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

// ------------------------------------------------------------------------------- the report

/// A `fmt::Write` into a fixed buffer; what does not fit is dropped.
struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> core::fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// `v` with thousands separators, as CPython prints its figures, without allocating.
struct Grouped(usize);

impl core::fmt::Display for Grouped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut digits = [0u8; 40];
        let mut v = self.0;
        let mut n = 0;
        loop {
            if n > 0 && n % 4 == 3 {
                digits[n] = b',';
                n += 1;
            }
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        // Digits and commas are ASCII.
        f.pad(core::str::from_utf8(&digits[..n]).unwrap_or("?"))
    }
}

/// Writes the `sys._debugmallocstats()`-style report of `s` into `out`.
fn report(s: &Stats, raw_total: usize, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    writeln!(
        out,
        "Small block threshold = {}, in {} size classes.\n",
        s.small_request_threshold, s.num_classes
    )?;
    writeln!(out, "class   size   num pools   blocks in use  avail blocks")?;
    writeln!(out, "-----   ----   ---------   -------------  ------------")?;
    for (i, c) in s.classes.iter().enumerate().take(s.num_classes) {
        if c.pools != 0 {
            writeln!(
                out,
                "{:5} {:6} {:11} {:15} {:13}",
                i, c.block_size, c.pools, c.blocks_in_use, c.blocks_available
            )?;
        }
    }
    writeln!(out)?;
    row(out, format_args!("# arenas allocated total"), s.arenas_allocated_total as usize)?;
    row(out, format_args!("# arenas reclaimed"), s.arenas_reclaimed as usize)?;
    row(out, format_args!("# arenas highwater mark"), s.arenas_highwater)?;
    row(out, format_args!("# arenas allocated current"), s.arenas_current)?;
    let arenas = format_args!("{} arenas * {} bytes/arena", s.arenas_current, s.arena_size);
    row(out, arenas, s.arena_bytes())?;
    writeln!(out)?;
    row(out, format_args!("# bytes in allocated blocks"), s.bytes_in_allocated_blocks)?;
    row(out, format_args!("# bytes in available blocks"), s.bytes_in_available_blocks)?;
    let unused = s.pools_empty + s.pools_never_carved;
    let pools = format_args!("{} unused pools * {} bytes", unused, s.pool_size);
    row(out, pools, s.bytes_in_unused_pools)?;
    row(out, format_args!("# bytes lost to pool headers"), s.bytes_lost_to_pool_headers)?;
    row(out, format_args!("# bytes lost to quantization"), s.bytes_lost_to_quantization)?;
    row(out, format_args!("# bytes lost to arena alignment"), s.bytes_lost_to_arena_alignment)?;
    row(out, format_args!("Total"), s.accounted_bytes())?;
    writeln!(out)?;
    row(out, format_args!("# real allocator requests (total)"), raw_total)?;
    row(out, format_args!("# bytes in the ownership map"), s.arena_map_bytes)
}

/// One `label = value` line, the label padded to 40 columns, the value grouped.
fn row(
    out: &mut impl core::fmt::Write,
    label: core::fmt::Arguments<'_>,
    v: usize,
) -> core::fmt::Result {
    let mut l = StackBuf::<64> { buf: [0; 64], len: 0 };
    let _ = l.write_fmt(label);
    let label = core::str::from_utf8(&l.buf[..l.len]).unwrap_or("?");
    writeln!(out, "{label:<40}= {:>15}", Grouped(v))
}

/// The library's destructor: the end of the trace and the report, when asked for.
extern "C" fn at_exit() {
    record::finish();
    if STATS_AT_EXIT.load(Ordering::Relaxed) == 0 || STATE.load(Ordering::Acquire) != READY {
        return;
    }
    let stats = heap().stats();
    let mut out = StackBuf::<8192> { buf: [0; 8192], len: 0 };
    let _ = report(&stats, RAW_TOTAL.load(Ordering::Relaxed), &mut out);
    say(&out.buf[..out.len]);
}

/// The library's constructor: initialises at load time (a program that never allocates still
/// gets its `ARENALAB_PRESET` checked and its report); the first call initialises otherwise.
extern "C" fn at_load() {
    ready();
}

#[used]
#[unsafe(link_section = ".init_array")]
static AT_LOAD: extern "C" fn() = at_load;

#[used]
#[unsafe(link_section = ".fini_array")]
static AT_EXIT: extern "C" fn() = at_exit;
