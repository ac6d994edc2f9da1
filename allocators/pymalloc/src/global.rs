//! [`PyMalloc`]: a [`Heap`] behind a lock, usable as `#[global_allocator]`.
//!
//! One heap serves every thread, as one interpreter's pymalloc serves every thread under the
//! GIL. Three things make that safe beyond mutual exclusion:
//!
//! * **The lock parks waiters.** Uncontended, a call costs one atomic compare-exchange to lock
//!   and a plain store plus a load to unlock: no read-modify-write and no system call on the way
//!   out, as cheap as the spin lock it replaces. A waiter first spins with exponential back-off
//!   (1, 2, 4, ... 64 pause instructions between looks, 127 in all), as the holder is usually a
//!   few hundred nanoseconds from releasing; then it registers as parked and sleeps in the
//!   kernel on the lock word (`FUTEX_WAIT`), and an unlock that sees a parked thread wakes one
//!   (`FUTEX_WAKE`), at most one at a time until the woken thread has run. A sleeper costs no
//!   CPU, so a preempted holder gets its core back, which a spin-then-`sched_yield` lock does
//!   not guarantee. Because the unlock does not read-modify-write, it can miss a waiter that
//!   registers in the same instant; every sleep is therefore bounded (1 ms), so a missed
//!   wake-up costs at most that, never a hang. There is no fairness: a running thread can take
//!   the lock ahead of a sleeping one (as with glibc's default mutex).
//! * **`fork()` is safe.** A child process has one thread, the one that forked. Had another
//!   thread held the lock at that instant, the child would inherit a lock that nobody will ever
//!   release, over a heap caught halfway through an update. So the first call on any `PyMalloc`
//!   registers `pthread_atfork` handlers (once per process): before the fork they take every
//!   `PyMalloc` lock (the heaps are then consistent), after it the parent releases them and the
//!   child resets them to unlocked. For the handlers to find every lock without allocating, the
//!   locks do not live inside the `PyMalloc` values (which may be moved or dropped) but in a
//!   process-wide table of [`SLOTS`] cache-line-sized slots; each `PyMalloc` claims one on its
//!   first call and gives it back when dropped.
//! * **Re-entry stops the process instead of deadlocking.** The lock records the thread that
//!   holds it. A panic inside the heap (a debug build's overflow check, a `debug_assert`) runs
//!   the panic hook *before* unwinding, and the hook allocates (its message, `RUST_BACKTRACE`):
//!   with this allocator global, that allocation comes back to the lock the same thread holds.
//!   A thread that finds itself the holder writes `pymalloc: fatal error: ...` to stderr with
//!   `write(2)` (no allocation) and calls `abort()`. A panic that unwinds out of the heap
//!   without allocating aborts the same way: the heap may be half-updated, so the lock is never
//!   simply released and the heap used again.
//!
//! [`PyMalloc::stats`] and [`PyMalloc::check_invariants`] walk every carved pool of every arena
//! (64 pool headers per 1 MiB arena in the 3.10 layout; `check_invariants` also every free
//! block) while holding the lock: their cost grows with the heap, and every other thread's
//! allocations wait for the walk. Call them from tests and reports, not from a hot path.

use crate::snapshot::ArenaSnapshot;
use crate::{Config, Heap, InvariantError, Snapshot, Stats};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

/// How many `PyMalloc` values may be alive at once in one process (each holds one lock slot).
/// Creating more aborts the process with a message; a dropped `PyMalloc` returns its slot.
pub const SLOTS: usize = 64;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;

/// How long a parked waiter sleeps before looking at the lock again even if nobody woke it: the
/// bound on the one wake-up the plain-store unlock can miss (see [`LockSlot::unlock`]).
const PARK_TIMEOUT_NS: i64 = 1_000_000;

/// One lock of the process-wide table, alone on its cache line so that two heaps' locks do not
/// slow each other down.
#[repr(align(64))]
struct LockSlot {
    /// `UNLOCKED` or `LOCKED`; the futex word that waiters sleep on.
    state: AtomicU32,
    /// Threads in the parking part of `lock_contended` (asleep or about to be): an unlock that
    /// sees 0 makes no system call.
    parked: AtomicU32,
    /// A wake-up was sent and the woken thread has not run yet: further unlocks send none (one
    /// thread at a time competes for the lock from the kernel's queue, and an unlock under
    /// contention makes at most one system call per waiter that actually wakes).
    waking: AtomicBool,
    /// `current_thread()` of the holder while the lock is held, 0 otherwise. Written only by the
    /// holder (after locking, before unlocking), so a thread reading its own id here holds the
    /// lock.
    owner: AtomicUsize,
    /// Whether a `PyMalloc` uses this slot. Changed only under the registry lock.
    claimed: AtomicBool,
}

/// The process's locks; slots `0..CLAIMED_HIGH` have been claimed at some time.
static LOCKS: [LockSlot; SLOTS] = [const { LockSlot::new() }; SLOTS];
/// One past the highest slot ever claimed; only grows; changed only under the registry lock.
static CLAIMED_HIGH: AtomicUsize = AtomicUsize::new(0);
/// Guards `claimed` and `CLAIMED_HIGH`; held by the fork handlers from before the fork to after
/// it, so that no slot is claimed while they lock the table.
static REGISTRY: AtomicBool = AtomicBool::new(false);

/// `ATFORK_DONE` once the fork handlers are registered, 0 before, and while a thread registers
/// them the pid of its process (so that a child forked at that instant can tell that the
/// registering thread is not in it, and register them itself).
static ATFORK: AtomicI32 = AtomicI32::new(0);
const ATFORK_DONE: i32 = -1;

const MSG_REENTERED: &str = "pymalloc: fatal error: a thread called the allocator while holding \
its lock (an allocation from inside a pymalloc call, or a panic hook allocating after a panic \
inside one); aborting instead of deadlocking\n";
const MSG_UNWOUND: &str = "pymalloc: fatal error: a panic unwound out of a pymalloc call, which \
may have left the heap half-updated; aborting\n";
const MSG_SLOTS: &str = "pymalloc: fatal error: more PyMalloc values alive at once than the 64 \
lock slots of pymalloc::global::SLOTS; aborting\n";
const MSG_ATFORK: &str = "pymalloc: fatal error: pthread_atfork failed to register the fork \
handlers; aborting\n";

/// Writes `msg` to stderr without allocating and aborts the process.
#[cold]
fn fatal(msg: &str) -> ! {
    // SAFETY: write(2) reads `msg.len()` bytes of a live string; abort has no preconditions.
    // A short or failed write loses part of the message, nothing else.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

std::thread_local! {
    /// Its address identifies the thread: distinct for every live thread, never 0, and taken
    /// without a call or an allocation (a `const`-initialised thread-local without destructor
    /// is a plain offset from the thread pointer).
    static THREAD_TOKEN: u8 = const { 0 };
}

/// An id for the calling thread, never 0, unique among the process's live threads.
#[inline(always)]
fn current_thread() -> usize {
    THREAD_TOKEN.with(|t| t as *const u8 as usize)
}

impl LockSlot {
    const fn new() -> LockSlot {
        LockSlot {
            state: AtomicU32::new(UNLOCKED),
            parked: AtomicU32::new(0),
            waking: AtomicBool::new(false),
            owner: AtomicUsize::new(0),
            claimed: AtomicBool::new(false),
        }
    }

    /// One compare-exchange when the lock is free.
    #[inline(always)]
    fn lock(&self) {
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.owner.store(current_thread(), Ordering::Relaxed);
    }

    /// A plain store and a load: no read-modify-write. The load of `parked` may be ordered
    /// before the store becomes visible (x86 lets a load pass an earlier store), so a waiter
    /// that registers in that instant, finds the lock still held and goes to sleep is not woken
    /// by this unlock; it wakes by itself after [`PARK_TIMEOUT_NS`] at the latest, or earlier
    /// from the next unlock. A fence or a swap here would close the window but would cost an
    /// atomic read-modify-write on every call, contended or not.
    #[inline(always)]
    fn unlock(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.state.store(UNLOCKED, Ordering::Release);
        if self.parked.load(Ordering::Relaxed) != 0 && !self.waking.swap(true, Ordering::Relaxed) {
            self.wake_one();
        }
    }

    #[cold]
    fn try_lock(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UNLOCKED
            && self
                .state
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[cold]
    fn lock_contended(&self) {
        if self.owner.load(Ordering::Relaxed) == current_thread() {
            fatal(MSG_REENTERED);
        }
        // Spin with exponential back-off: the holder is usually a few hundred nanoseconds from
        // releasing.
        let mut pauses = 1;
        while pauses <= 64 {
            for _ in 0..pauses {
                core::hint::spin_loop();
            }
            if self.try_lock() {
                return;
            }
            pauses *= 2;
        }
        // Park. Registered before the last look at the lock, so an unlock after that look sees
        // `parked` (but for the window described at `unlock`, which the timeout covers).
        self.parked.fetch_add(1, Ordering::SeqCst);
        while !self.try_lock() {
            let timeout = libc::timespec { tv_sec: 0, tv_nsec: PARK_TIMEOUT_NS };
            // SAFETY: FUTEX_WAIT on a live, aligned u32 in static memory, with a valid relative
            // timeout; the kernel sleeps only while the word is still LOCKED, and the loop looks
            // at the lock again after every return (wake-up, timeout, signal or mismatch).
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.state.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    LOCKED,
                    &timeout as *const libc::timespec,
                );
            }
            self.waking.store(false, Ordering::Relaxed);
        }
        // Also when the lock was taken without sleeping: a wake-up sent meanwhile found no
        // sleeper, and must not keep the next unlocks from waking one.
        self.waking.store(false, Ordering::Relaxed);
        self.parked.fetch_sub(1, Ordering::Relaxed);
    }

    #[cold]
    fn wake_one(&self) {
        // SAFETY: FUTEX_WAKE on a live, aligned u32 in static memory; it only wakes sleepers.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.state.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }
}

/// Takes the registry lock. Held only for a scan of [`SLOTS`] flags, or across a fork.
fn registry_lock() {
    while REGISTRY.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
    {
        // SAFETY: sched_yield has no preconditions and does not allocate.
        unsafe { libc::sched_yield() };
    }
}

fn registry_unlock() {
    REGISTRY.store(false, Ordering::Release);
}

/// Registers the fork handlers once per process.
#[cold]
fn register_fork_handlers() {
    if cfg!(miri) {
        // Miri runs no `fork` (nor `pthread_atfork`): nothing to guard against.
        return;
    }
    loop {
        match ATFORK.load(Ordering::Acquire) {
            ATFORK_DONE => return,
            0 => {
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                if ATFORK.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    // SAFETY: the handlers are `extern "C"` functions that neither unwind nor
                    // allocate through this allocator. glibc may allocate its handler list with
                    // its own malloc, which is not this allocator.
                    let rc = unsafe {
                        libc::pthread_atfork(
                            Some(before_fork as unsafe extern "C" fn()),
                            Some(after_fork_in_parent as unsafe extern "C" fn()),
                            Some(after_fork_in_child as unsafe extern "C" fn()),
                        )
                    };
                    if rc != 0 {
                        fatal(MSG_ATFORK);
                    }
                    ATFORK.store(ATFORK_DONE, Ordering::Release);
                    return;
                }
            }
            pid => {
                // SAFETY: getpid has no preconditions.
                if pid != unsafe { libc::getpid() } {
                    // Registration started in the parent and had not finished when it forked
                    // (glibc runs no handler registered after the fork began): the thread
                    // doing it is not in this process, so register them here.
                    let _ = ATFORK.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed);
                } else {
                    // SAFETY: sched_yield has no preconditions and does not allocate.
                    unsafe { libc::sched_yield() };
                }
            }
        }
    }
}

/// `pthread_atfork` prepare handler: takes the registry and every lock of the table, so that
/// no heap is halfway through an update when the process is copied. Locks are taken in slot
/// order; no pymalloc call takes a second lock (the heap never allocates through the global
/// allocator), so this cannot deadlock with one.
extern "C" fn before_fork() {
    registry_lock();
    for slot in &LOCKS[..CLAIMED_HIGH.load(Ordering::Relaxed)] {
        slot.lock();
    }
}

/// `pthread_atfork` parent handler: releases what [`before_fork`] took.
extern "C" fn after_fork_in_parent() {
    for slot in &LOCKS[..CLAIMED_HIGH.load(Ordering::Relaxed)] {
        slot.unlock();
    }
    registry_unlock();
}

/// `pthread_atfork` child handler: the only thread of the child is the one that took every
/// lock in [`before_fork`]; no other thread exists to wait on them, so they are reset rather
/// than released (no wake-ups for sleepers that are not here).
extern "C" fn after_fork_in_child() {
    for slot in &LOCKS[..CLAIMED_HIGH.load(Ordering::Relaxed)] {
        slot.owner.store(0, Ordering::Relaxed);
        slot.parked.store(0, Ordering::Relaxed);
        slot.waking.store(false, Ordering::Relaxed);
        slot.state.store(UNLOCKED, Ordering::Relaxed);
    }
    REGISTRY.store(false, Ordering::Relaxed);
    ATFORK.store(ATFORK_DONE, Ordering::Relaxed);
}

/// pymalloc as a thread-safe allocator.
///
/// ```
/// use pymalloc::PyMalloc;
/// use std::alloc::{GlobalAlloc, Layout};
/// static PY: PyMalloc = PyMalloc::new();
/// let layout = Layout::from_size_align(32, 8).unwrap();
/// // SAFETY: the layout has non-zero size; the block is freed once with the same layout.
/// unsafe {
///     let p = PY.alloc(layout);
///     assert!(!p.is_null());
///     assert_eq!(PY.stats().classes[1].blocks_in_use, 1);
///     PY.dealloc(p, layout);
/// }
/// ```
///
/// As the process allocator: `#[global_allocator] static GLOBAL: PyMalloc = PyMalloc::new();`
///
/// At most [`SLOTS`] values may be alive at once (see the [module docs](self) for why the lock
/// lives in a process-wide table).
pub struct PyMalloc {
    /// 1 + the index of this heap's lock in `LOCKS`; 0 until the first call claims one. Set
    /// once (0 to n), so a thread that read n != 0 may keep using slot n - 1.
    slot: AtomicUsize,
    /// Only touched while the lock of `slot` is held.
    heap: UnsafeCell<Heap>,
}

// SAFETY: every access to `heap` happens inside `with`, which holds the lock of the one slot
// this value uses; the heap itself is `Send`.
unsafe impl Sync for PyMalloc {}

/// Aborts if dropped: it is dropped only when a panic unwinds out of the critical section.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        fatal(MSG_UNWOUND);
    }
}

impl PyMalloc {
    /// pymalloc with the CPython 3.10+ layout.
    pub const fn new() -> Self {
        Self::with_config(Config::CPYTHON_3_10)
    }

    /// pymalloc with another (validated) layout.
    pub const fn with_config(config: Config) -> Self {
        PyMalloc { slot: AtomicUsize::new(0), heap: UnsafeCell::new(Heap::new(config)) }
    }

    #[inline(always)]
    fn lock_slot(&self) -> &'static LockSlot {
        match self.slot.load(Ordering::Relaxed) {
            0 => self.claim_slot(),
            n => &LOCKS[n - 1],
        }
    }

    /// The first call's path: registers the fork handlers and claims a free slot.
    #[cold]
    fn claim_slot(&self) -> &'static LockSlot {
        register_fork_handlers();
        registry_lock();
        let Some(i) = LOCKS.iter().position(|s| !s.claimed.load(Ordering::Relaxed)) else {
            registry_unlock();
            fatal(MSG_SLOTS);
        };
        LOCKS[i].claimed.store(true, Ordering::Relaxed);
        CLAIMED_HIGH.fetch_max(i + 1, Ordering::Relaxed);
        registry_unlock();
        match self.slot.compare_exchange(0, i + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => &LOCKS[i],
            Err(n) => {
                // Another thread's first call on this heap claimed a slot first: use its slot,
                // give this one back.
                registry_lock();
                LOCKS[i].claimed.store(false, Ordering::Relaxed);
                registry_unlock();
                &LOCKS[n - 1]
            }
        }
    }

    /// Runs `f` on the heap under the lock.
    ///
    /// A panic in `f` does not release the lock: if the panic hook allocates through this
    /// allocator, the re-entry is detected and the process aborts with a message; if the panic
    /// unwinds to here, the process aborts too (the heap may be half-updated). Either way the
    /// process stops with a message on stderr instead of hanging.
    ///
    /// Public for callers that need several heap operations in one critical section (the
    /// `LD_PRELOAD` library asks "is this pointer ours?" and frees it under one lock). `f` must
    /// not call this `PyMalloc` again (that aborts, as described above) and should be short:
    /// every other thread's allocations wait for it.
    #[inline(always)]
    pub fn with_heap<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        let lock = self.lock_slot();
        lock.lock();
        let unwinding = AbortOnUnwind;
        // SAFETY: the lock is held, so this is the only reference to the heap until release.
        let r = f(unsafe { &mut *self.heap.get() });
        core::mem::forget(unwinding);
        lock.unlock();
        r
    }

    /// The heap's statistics now.
    ///
    /// Walks every carved pool of every arena under the lock: the cost grows with the heap, and
    /// other threads' allocations wait for it.
    pub fn stats(&self) -> Stats {
        self.with_heap(|h| h.stats())
    }

    /// Checks every invariant of the heap now.
    ///
    /// Walks every carved pool of every arena and every free list under the lock: the cost grows
    /// with the heap, and other threads' allocations wait for it.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.with_heap(|h| h.check_invariants())
    }

    /// The layout in force.
    pub fn config(&self) -> Config {
        self.with_heap(|h| *h.config())
    }

    /// The occupancy of every arena now. The buffers are allocated before the lock is taken
    /// (they may come from this very allocator), then filled under the lock without allocating.
    pub fn snapshot(&self) -> Snapshot {
        let per_arena = self.config().pools_per_arena();
        loop {
            let want = self.with_heap(|h| h.arenas_current()) + 2;
            let mut arenas: Vec<ArenaSnapshot> = (0..want)
                .map(|_| ArenaSnapshot { address: 0, pools: Vec::with_capacity(per_arena) })
                .collect();
            if let Some(used) = self.with_heap(|h| h.fill_snapshot(&mut arenas)) {
                arenas.truncate(used);
                arenas.sort_unstable_by_key(|a| a.address);
                return Snapshot { pools_per_arena: per_arena, arenas };
            }
        }
    }

    /// Panics while holding the lock: a hook for `tests/global_panic.rs`, which checks that
    /// this stops the process with a message rather than deadlocking. Not part of the API.
    #[doc(hidden)]
    pub fn panic_while_locked(&self) {
        self.with_heap(|_| panic!("a panic inside the critical section, on purpose"))
    }
}

impl Drop for PyMalloc {
    /// Gives the lock slot back. (A `static` is never dropped; its slot stays claimed.)
    fn drop(&mut self) {
        let n = *self.slot.get_mut();
        if n != 0 {
            registry_lock();
            LOCKS[n - 1].claimed.store(false, Ordering::Relaxed);
            registry_unlock();
        }
    }
}

impl Default for PyMalloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks come from the heap, aligned to at least the layout's alignment: pool blocks and
// libc blocks are aligned to the granularity (8 or 16, within malloc's guarantee), debug headers
// keep that alignment, and larger alignments go to posix_memalign; every block is at least
// `layout.size()` long; dealloc and realloc pass back blocks of this allocator.
unsafe impl GlobalAlloc for PyMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|h| h.alloc_aligned(layout.size(), layout.align()))
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: GlobalAlloc contract: ptr is a live block of this allocator.
        self.with_heap(|h| unsafe { h.free(ptr) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.with_heap(|h| {
            if layout.align() <= h.config().alignment() {
                // SAFETY: GlobalAlloc contract: ptr is a live block of this allocator.
                unsafe { h.realloc(ptr, new_size) }
            } else {
                let new = h.alloc_aligned(new_size, layout.align());
                if !new.is_null() {
                    // SAFETY: both blocks live and distinct; the copy fits in both.
                    unsafe {
                        core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        h.free(ptr);
                    }
                }
                new
            }
        })
    }
}
