//! [`PyMalloc`]: one [`Heap`] per thread, usable as `#[global_allocator]`.
//!
//! CPython 3.12 gives each interpreter that has its own GIL its own obmalloc state: threads of
//! different interpreters never share a pool or an arena, and never wait for each other to
//! allocate. `PyMalloc` is the analogue for a Rust process: every thread that allocates gets a
//! heap of its own, and its allocations and its frees of its own blocks take no lock and no
//! atomic read-modify-write. Single-threaded, this is exactly one heap: every figure is the
//! heap's own. Five mechanisms make the rest work.
//!
//! ## 1. Finding a block's owner: the shared arena map
//!
//! A thread may free a block another thread allocated. Each heap has its own ownership map,
//! which only its owner may read, so a `PyMalloc` keeps a second, lock-free one (`owners`): an
//! arena-granule radix map whose entries name, for each arena, the heap that owns it and the
//! arena's base pointer. A heap takes its arenas from an [`OwnedArenas`] source, which records
//! each new arena there before the heap hands out a block of it, and forgets it before
//! unmapping. A block that lives keeps its arena mapped, so a lookup for it cannot race an
//! unmap. A pointer in no arena is a raw block (libc), freed directly by whoever frees it.
//!
//! ## 2. Remote frees: a lock-free stack per heap
//!
//! ```text
//!   thread B frees a block of heap A:       heap A's remote stack (Treiber)
//!     block.link = head                       head -> b3 -> b2 -> b1 -> null
//!     CAS(head: link -> block)                (each link is the block's own first word)
//!   thread A, every 32nd allocation, or when a class has no used pool left (about to take
//!   a new pool):
//!     if head != null: swap(head, null) and free every block of the chain into its heap
//! ```
//!
//! Many threads push; only the heap's holder takes the whole chain at once (a swap), so the
//! stack has no ABA problem. The owner takes it back every 32nd allocation, when it is about
//! to take a new pool (the remote frees may have made one unnecessary), when its thread exits,
//! and when statistics are read. Measured both ways: drained on *every* allocation,
//! `threads/larson` spent a fifth of its allocation time pulling the pushers' cache line over
//! from the other core; drained only before a new pool, `threads/producer-consumer` let the
//! stack grow to thousands of blocks, the heap grew meanwhile, and walking the cold chain took
//! two thirds of its allocation time (10× mimalloc). Every 32nd keeps the chain short and the
//! line mostly with the pushers. Blocks waiting there still count as in use until drained;
//! [`PyMalloc::stats`] drains every stack first, so its figures are those of the frees done.
//! An owner that stops allocating never drains: blocks other threads freed keep its pools
//! used and its arenas mapped until it allocates again, exits, or statistics are read. So
//! reading the statistics changes what is retained: a resident size measured after
//! [`PyMalloc::stats`] may be lower than one measured just before.
//!
//! The owner's own calls never read another heap: an allocation goes to its heap; a free is
//! first looked up in its heap's own map (a hit is the plain heap free), and only a miss asks
//! the shared map, for another heap's block (pushed) or a raw block (libc).
//!
//! The fast paths find the thread's heap in one entry of the `PyMalloc`'s *fast table*,
//! indexed and tagged by the thread pointer (`fs:0` on x86-64, `tpidr_el0` on AArch64: one
//! instruction, no call; see `FastEntry` for its invariant). Everything else (the first call,
//! a full pool list, a drain, a reader about, a thread whose entry another live thread holds)
//! is a tail call out of line, so the fast paths make no call and save no register. The slow
//! paths find the heap in a thread-local table indexed by the `PyMalloc`'s slot and tagged
//! with its generation. Why not a thread-local on the fast path: compiled into a library crate
//! its address comes from a call to `__tls_get_addr` (turned into an offset by the linker only
//! later), and the registers live across that call cost a save and a restore on every call.
//!
//! ## 3. Threads that exit: abandoned heaps, adopted or drained
//!
//! A heap's `state` word is its owner's thread token (owned), 0 (abandoned), or a token with
//! the low bit set (held for a moment by that thread). A pthread-key destructor runs when a
//! thread exits: it drains the thread's heaps and marks them abandoned, allocating nothing.
//! Calls the thread makes after that (from another key's destructor: glibc runs them in
//! rounds, at most four, and none after the last) own no heap: each holds an abandoned heap
//! (or a new one) for the call only and lets it go, so no heap stays owned by a thread that
//! is gone. The same when the key cannot be set (the thread's heaps are abandoned at once).
//! A thread's first call on a `PyMalloc` adopts an abandoned heap (compare-exchange 0 → its
//! token; then it waits for the exiting thread's last call, which abandoned the heap, to
//! return) before it maps a new one, so threads that come and go reuse the same few heaps.
//! Blocks of an abandoned heap still live elsewhere: whoever frees one takes the heap
//! (compare-exchange 0 → held), frees into it directly, drains its stack and lets it go
//! again, so its pools empty and its arenas are unmapped as in any heap (the keep-one rule of
//! 3.9+ applies per heap: an abandoned heap keeps at most one empty arena, for its adopter).
//! A free that finds the heap held pushes on its stack instead; the holder, after letting go
//! (a sequentially consistent store), looks at the stack again, and the pusher, after pushing,
//! looks at the state again: one of the two sees the other and drains.
//!
//! ## 4. Reading every heap: an asymmetric handshake
//!
//! Statistics, snapshots, `check_invariants`, [`PyMalloc::with_heap`] and `fork()` need every
//! heap still. The owner's side costs two plain stores and two loads per call (its `busy`
//! flag, to catch re-entry, and one process-wide flag word):
//!
//! ```text
//!   owner (every call)                      reader (rare)
//!   busy = 1          (relaxed store)       lock READER; FLAGS |= REQUEST
//!   compiler fence                          membarrier(PRIVATE_EXPEDITED)
//!   if FLAGS: busy = 0, wait, retry         for each heap: owned -> wait until busy == 0
//!   ... the heap operation ...                              abandoned -> hold it (CAS)
//!   busy = 0          (release store)       ... read (and drain) every heap ...
//!                                           let go; FLAGS &= !REQUEST; unlock READER
//! ```
//!
//! `membarrier` makes every running thread of the process execute a full memory barrier
//! before it returns: an owner's `busy = 1` is then visible to the reader, or its later load
//! of `REQUEST` sees 1 (Dekker's pattern with the owner's fence moved to the reader). The
//! process registers for it once (`MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`, once
//! `MEMBARRIER_CMD_QUERY` lists the command: a seccomp filter may fake success for system
//! calls it does not know); where the kernel refuses, owners execute a real fence instead
//! (flag `FENCE`, in the same word as `REQUEST`, so that the owner's path tests one word). A
//! child of `fork` that cannot register again aborts with a message. A reader walks an owned
//! heap only after seeing `busy == 0` and the state still owned by the same thread; an owner
//! changes its heap's state (abandons it at thread exit) only inside a call, so it stays owned
//! and still until the reader lets go.
//! `REQUEST` is one flag for the whole process, so an owner waits for it whatever
//! `PyMalloc` the reader reads, except on the reader's own thread (whose token the reader
//! records): its calls go through, or a panic hook allocating inside
//! [`PyMalloc::with_heap`], or a call through the global allocator from inside it, would wait
//! for itself.
//! Readers are serialized by one flag; they cost a system call and a walk of every heap, so
//! they belong in tests and reports, not on a hot path.
//!
//! ## 5. `fork()`, re-entry and panics
//!
//! * The first call registers `pthread_atfork` handlers (once per process). Before a fork they
//!   take the registry and run the reader's handshake over every `PyMalloc` of the process,
//!   so no heap is halfway through an update when memory is copied; the parent then lets go.
//!   In the child only the forking thread exists: every heap owned or held by another thread
//!   is marked abandoned (it is consistent, so the child's threads may adopt it), and the
//!   flags are reset. The handlers find every `PyMalloc` through a process-wide table of
//!   [`SLOTS`] entries, claimed on a value's first call and given back when it is dropped; a
//!   thread's heaps are found through a thread-local table indexed by slot (with the slot's
//!   generation, so a heap of a dropped `PyMalloc` is never touched).
//! * **Re-entry stops the process instead of corrupting it.** A panic inside the heap runs the
//!   panic hook *before* unwinding, and the hook allocates: with this allocator global, that
//!   allocation comes back while the thread's `busy` is still 1. A thread that finds its own
//!   heap busy writes `pymalloc: fatal error: ...` to stderr with `write(2)` (no allocation)
//!   and calls `abort()`. A panic that unwinds out of a heap operation aborts the same way:
//!   the heap may be half-updated.
//! * A debug layout ([`Config::debug`]) keeps one heap for all threads, held by each call in
//!   turn (the compare-exchange of point 3, spinning while another thread holds it): its
//!   checks compare a free against one heap's records of raw blocks, so all blocks must be
//!   in one heap.
//!
//! Raw blocks (over the threshold, or over-aligned) go to libc whichever thread frees them;
//! their counters live in the `PyMalloc` (atomic, off the pool path) and are added to the
//! heaps' own.

use crate::config::{Config, MAX_CLASSES};
use crate::os::{self, ArenaSource, PAGE};
use crate::owners::OwnerMap;
use crate::pool::{NO_CLASS, PoolHeader};
use crate::snapshot::ArenaSnapshot;
use crate::{Heap, InvariantError, Snapshot, Stats};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::{Cell, UnsafeCell};
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence,
    fence,
};

/// How many `PyMalloc` values may be alive at once in one process (each holds one slot of the
/// table the fork handlers walk). Creating more aborts the process with a message; a dropped
/// `PyMalloc` returns its slot.
pub const SLOTS: usize = 64;

/// `state` of a heap nobody owns or holds.
const ABANDONED: usize = 0;
/// Low bit of `state`: held for a moment by the thread whose token is the rest.
const HELD: usize = 1;

/// The owners' one flag word: [`REQUEST`] while a reader wants every heap still (point 4),
/// [`FENCE`] when `membarrier` is unavailable (owners then execute a full fence after
/// `busy = 1`). One load on the owner's path; non-zero sends it to the slow path.
static FLAGS: AtomicU32 = AtomicU32::new(0);
const REQUEST: u32 = 1;
const FENCE: u32 = 2;
/// The owner looks at its remote-free stack every this many allocations (point 2).
const DRAIN_TICKS: u32 = 32;
/// Serializes readers.
static READER: AtomicBool = AtomicBool::new(false);
/// The token of the thread running a reader's handshake, 0 when none: [`REQUEST`] is
/// process-wide, and the reader's own calls must not wait for it (point 4).
static READER_TOKEN: AtomicUsize = AtomicUsize::new(0);

/// Tag (generation) of the `PyMalloc` using each slot; 0 when free. Changed under `REGISTRY`.
static SLOT_TAG: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];
/// The shared state of the `PyMalloc` using each slot. Changed under `REGISTRY`.
static SLOT_SHARED: [AtomicPtr<Shared>; SLOTS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; SLOTS];
/// The next tag to hand out; only grows.
static NEXT_TAG: AtomicUsize = AtomicUsize::new(1);
/// Guards the slot table; held by the fork handlers across a fork and by thread exit.
static REGISTRY: AtomicBool = AtomicBool::new(false);

/// `ATFORK_DONE` once the process-wide setup (fork handlers, thread-exit key, membarrier) is
/// done, 0 before, and while a thread does it the pid of its process (so that a child forked
/// at that instant can tell that the thread doing it is not in it, and do it itself).
static ATFORK: AtomicI32 = AtomicI32::new(0);
const ATFORK_DONE: i32 = -1;
/// The pthread key whose destructor abandons an exiting thread's heaps.
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

const MSG_REENTERED: &str = "pymalloc: fatal error: a thread called the allocator while inside \
one of its calls (an allocation from inside a pymalloc call, or a panic hook allocating after a \
panic inside one); aborting instead of corrupting the heap\n";
const MSG_UNWOUND: &str = "pymalloc: fatal error: a panic unwound out of a pymalloc call, which \
may have left the heap half-updated; aborting\n";
const MSG_SLOTS: &str = "pymalloc: fatal error: more PyMalloc values alive at once than the 64 \
slots of pymalloc::global::SLOTS; aborting\n";
const MSG_ATFORK: &str = "pymalloc: fatal error: pthread_atfork or pthread_key_create failed; \
aborting\n";
const MSG_NOMEM: &str = "pymalloc: fatal error: the OS refused memory for a PyMalloc's own \
bookkeeping (its arena map or a thread's heap); aborting\n";
const MSG_MEMBARRIER: &str = "pymalloc: fatal error: membarrier failed after it had been \
registered; aborting\n";

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

/// Aligned to 8 so that a thread's token has its low bit free for [`HELD`].
#[repr(align(8))]
struct Token(#[allow(dead_code)] u8);

/// A thread's entry for one slot: the key ([`make_key`]) of the `PyMalloc` that used the slot
/// when the entry was made, and the heap; `(0, null)` when unused.
type Mine = Cell<(usize, *mut ThreadHeap)>;

std::thread_local! {
    /// Its address identifies the thread: distinct for every live thread, never 0, even, and
    /// taken without a call or an allocation (a `const`-initialised thread-local without
    /// destructor is a plain offset from the thread pointer).
    static THREAD_TOKEN: Token = const { Token(0) };
    /// This thread's heap of the `PyMalloc` in each slot.
    static MINE: [Mine; SLOTS] = const { [const { Cell::new((0, core::ptr::null_mut())) }; SLOTS] };
    /// Whether this thread has set [`EXIT_KEY`] (so its destructor will run).
    static KEY_SET: Cell<bool> = const { Cell::new(false) };
    /// Whether [`thread_exit`] has run on this thread: its later calls borrow a heap (point 3)
    /// and it enters no [`FastEntry`] (so none outlives it).
    static EXITED: Cell<bool> = const { Cell::new(false) };
}

/// The calling thread's thread pointer: the address of its thread control block, which the
/// x86-64 and AArch64 TLS ABIs keep in `fs:0` (a self-pointer) and `tpidr_el0`. Never 0 and
/// distinct for every live thread of the process, read in one instruction. (A Rust
/// thread-local's address would do as well, but compiled for a library its code is a call to
/// `__tls_get_addr`, which the linker turns into an offset only later, after the registers
/// live across it have been saved on the fast path.) Elsewhere, and under Miri: [`token`].
#[inline(always)]
fn thread_pointer() -> usize {
    #[cfg(all(not(miri), target_os = "linux", target_arch = "x86_64"))]
    {
        let tp: usize;
        // SAFETY: reads the first word of the thread's TCB through `fs`, which the x86-64
        // TLS ABI makes a pointer to the TCB itself; no memory is written.
        unsafe {
            core::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp,
                options(nostack, readonly, preserves_flags, pure))
        };
        tp
    }
    #[cfg(all(not(miri), target_os = "linux", target_arch = "aarch64"))]
    {
        let tp: usize;
        // SAFETY: reads the thread pointer register; no memory is touched.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el0", out(reg) tp,
                options(nostack, nomem, preserves_flags, pure))
        };
        tp
    }
    #[cfg(not(all(
        not(miri),
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        token()
    }
}

/// Entries of a `PyMalloc`'s fast table ([`Shared::fast`]).
const FAST_LEN: usize = 256;

/// One entry of the fast table: a live thread (its [`thread_pointer`]) and its heap of this
/// `PyMalloc`; `tp` 0 when free. The fast paths find the calling thread's heap here, from the
/// thread pointer alone: the entry at `(tp >> 8) & ((FAST_LEN - 1) * 16)` bytes (glibc puts
/// threads' control blocks one stack apart, so bits 12-19 differ). A thread whose entry is
/// taken by another live thread goes the slow way round ([`MINE`]).
///
/// Invariant: an entry with `tp` equal to a live thread's thread pointer was claimed by that
/// thread (`attach`), names its heap, and only that thread reads `th` or clears the entry
/// (at exit, before abandoning the heap); in a fork child, the handler clears every entry but
/// the forking thread's. Entries of other threads are only compared.
#[repr(C, align(16))]
pub(crate) struct FastEntry {
    tp: AtomicUsize,
    th: AtomicPtr<ThreadHeap>,
}

impl FastEntry {
    const fn empty() -> FastEntry {
        FastEntry { tp: AtomicUsize::new(0), th: AtomicPtr::new(core::ptr::null_mut()) }
    }
}

/// The fast table of every `PyMalloc` before its first call: empty, so every lookup misses.
static NO_FAST: [FastEntry; FAST_LEN] = [const { FastEntry::empty() }; FAST_LEN];

/// The byte offset of thread pointer `tp`'s entry in a fast table.
#[inline(always)]
fn fast_offset(tp: usize) -> usize {
    const _: () = assert!(core::mem::size_of::<FastEntry>() == 16 && FAST_LEN == 256);
    (tp >> 8) & ((FAST_LEN - 1) * 16)
}

/// An id for the calling thread: never 0, even, unique among the process's live threads.
#[inline(always)]
fn token() -> usize {
    THREAD_TOKEN.with(|t| t as *const Token as usize)
}

/// Where a [`PyMalloc`]'s heaps take their arenas: anonymous mappings, each recorded in the
/// `PyMalloc`'s shared arena map under the heap that maps it (see the [module docs](self)).
/// Made only by `PyMalloc`.
pub struct OwnedArenas {
    owners: *const OwnerMap,
    heap: *mut ThreadHeap,
}

// SAFETY: the pointers name the `PyMalloc`'s shared state and the heap that holds this source,
// both alive as long as the heap; the map is lock-free (`Sync`).
unsafe impl Send for OwnedArenas {}

// SAFETY: memory comes from `os::map_aligned` (fresh anonymous mappings of the requested size
// and alignment, no global allocation); the map records use only pre-mapped or freshly mapped
// leaves; `unmap` forgets the arena in the map, then releases exactly that mapping.
unsafe impl ArenaSource for OwnedArenas {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let mem = os::map_aligned(size, align)?;
        // SAFETY: `owners` points to the live map of the PyMalloc that owns this heap.
        if unsafe { &*self.owners }.insert(mem.as_ptr(), self.heap.cast()) {
            Some(mem)
        } else {
            // SAFETY: the mapping was just made and nothing points into it.
            unsafe { os::unmap(mem, size) };
            None
        }
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: as in `map`.
        unsafe { &*self.owners }.remove(ptr.as_ptr());
        // SAFETY: the caller passes back one whole mapping from `map`, no longer used.
        unsafe { os::unmap(ptr, size) };
    }
}

/// The owner's line: written by the owner on every call, read by readers only.
#[repr(C, align(64))]
struct OwnerLine {
    /// 1 while the owner is inside a call on this heap (relaxed stores, see point 4).
    busy: AtomicBool,
    /// Allocations since the owner last looked at its remote-free stack (owner-only, relaxed
    /// load and store, no read-modify-write).
    ticks: AtomicU32,
    /// The next heap of the same `PyMalloc` (immutable once the heap is published).
    next: *mut ThreadHeap,
}

/// What other threads touch, away from the owner's line: the remote-free stack, and the state
/// every remote free reads after pushing (written only when ownership changes).
#[repr(C, align(64))]
struct RemoteLine {
    /// Head of the stack of blocks freed by other threads (linked through their first word).
    head: AtomicPtr<u8>,
    /// [`ABANDONED`], an owner's token, or a holder's token | [`HELD`].
    state: AtomicUsize,
}

/// One thread's heap, in its own mapping (never in memory of the global allocator).
pub(crate) struct ThreadHeap {
    own: OwnerLine,
    remote: RemoteLine,
    heap: UnsafeCell<Heap<OwnedArenas>>,
}

/// What a `PyMalloc` shares among its heaps, in its own mapping (so the `PyMalloc` value may
/// move after its first call).
struct Shared {
    /// The fast table (see [`FastEntry`]).
    fast: [FastEntry; FAST_LEN],
    slot: usize,
    /// [`make_key`]`(tag, slot)`: what a thread's [`MINE`] entry for `slot` holds when it names a
    /// heap of this state.
    key: usize,
    config: Config,
    granularity: usize,
    /// Debug layout: one heap for all threads, held by each call.
    locked: bool,
    owners: OwnerMap,
    /// Head of the list of heaps (pushed, never removed until the `PyMalloc` is dropped).
    heaps: AtomicPtr<ThreadHeap>,
    raw_total: AtomicU64,
    /// Wrapping counters: a raw block counted by a heap (a `realloc` that grew out of a pool)
    /// is uncounted here when freed; the sums with the heaps' counters are exact.
    raw_blocks: AtomicUsize,
    raw_bytes: AtomicUsize,
}

fn round_to_pages(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// Maps fresh, zeroed, page-aligned memory for one `T` (not yet initialised).
fn map_uninit<T>() -> *mut T {
    const { assert!(core::mem::align_of::<T>() <= PAGE) };
    let Some(mem) = os::map_zeroed(round_to_pages(core::mem::size_of::<T>())) else {
        fatal(MSG_NOMEM)
    };
    mem.as_ptr().cast::<T>()
}

/// Maps fresh memory for one `T` and moves `value` there.
fn map_one<T>(value: T) -> *mut T {
    let p = map_uninit::<T>();
    // SAFETY: a fresh page-aligned mapping large enough for a T.
    unsafe { p.write(value) };
    p
}

/// Drops the `T` at `p` and unmaps its memory.
///
/// # Safety
/// `p` came from [`map_one`] and nothing uses it any more.
unsafe fn unmap_one<T>(p: *mut T) {
    // SAFETY: caller contract.
    unsafe {
        core::ptr::drop_in_place(p);
        os::unmap(NonNull::new_unchecked(p.cast()), round_to_pages(core::mem::size_of::<T>()));
    }
}

/// Takes the registry lock. Held only for a scan of [`SLOTS`] entries, a thread's exit, or a
/// fork.
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

fn yield_now() {
    // SAFETY: sched_yield has no preconditions and does not allocate.
    unsafe { libc::sched_yield() };
}

/// Registers the fork handlers and the thread-exit key, and asks for `membarrier`; once per
/// process.
#[cold]
fn setup_process() {
    if cfg!(miri) {
        // Miri runs no fork, membarrier nor pthread keys with destructors we rely on.
        FLAGS.fetch_or(FENCE, Ordering::Relaxed);
        ATFORK.store(ATFORK_DONE, Ordering::Release);
        return;
    }
    loop {
        match ATFORK.load(Ordering::Acquire) {
            ATFORK_DONE => return,
            0 => {
                // SAFETY: getpid has no preconditions.
                let me = unsafe { libc::getpid() };
                if ATFORK.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    if !membarrier_registered() {
                        FLAGS.fetch_or(FENCE, Ordering::SeqCst);
                    }
                    let mut key: libc::pthread_key_t = 0;
                    // SAFETY: `key` is a valid out-pointer; `thread_exit` is an `extern "C"`
                    // function that neither unwinds nor allocates, run by pthread as its
                    // contract asks (by the exiting thread, outside its calls and the registry).
                    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } != 0 {
                        fatal(MSG_ATFORK);
                    }
                    // Stored before the fork handlers exist: once they do, a fork by another
                    // thread runs the child handler, which marks the setup done in the child,
                    // whose threads then set this key (and must not find 0: another library's
                    // key, perhaps). glibc's handler list lock orders this store before the
                    // forking thread's handlers.
                    EXIT_KEY.store(key, Ordering::Relaxed);
                    // SAFETY: the handlers are `extern "C"` functions that neither unwind nor
                    // allocate through this allocator. glibc may allocate its handler list
                    // with its own malloc, not this allocator.
                    let ok = unsafe {
                        libc::pthread_atfork(
                            Some(before_fork as unsafe extern "C" fn()),
                            Some(after_fork_in_parent as unsafe extern "C" fn()),
                            Some(after_fork_in_child as unsafe extern "C" fn()),
                        ) == 0
                    };
                    if !ok {
                        fatal(MSG_ATFORK);
                    }
                    ATFORK.store(ATFORK_DONE, Ordering::Release);
                    return;
                }
            }
            pid => {
                // SAFETY: getpid has no preconditions.
                if pid != unsafe { libc::getpid() } {
                    // Started in the parent and unfinished when it forked: the thread doing it
                    // is not in this process, so do it here.
                    let _ = ATFORK.compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed);
                } else {
                    yield_now();
                }
            }
        }
    }
}

/// Asks the kernel which `membarrier` commands it supports and registers the process for the
/// private expedited one; whether owners may rely on it (point 4). The query comes first: a
/// seccomp filter that answers 0 to system calls it does not know would make the registration
/// look successful and every later barrier a silent no-op, losing the owners' half of the
/// pairing. Such a filter answers the query with 0 too, which lists no command.
fn membarrier_registered() -> bool {
    let call = |cmd: libc::c_int| {
        // SAFETY: membarrier takes no pointers; a failure is an error code, handled by the
        // caller with the fence fallback.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
    };
    let need =
        i64::from(MEMBARRIER_CMD_PRIVATE_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
    let supported = call(MEMBARRIER_CMD_QUERY);
    supported > 0
        && supported & need == need
        && call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
}

/// The reader's side of the handshake: every running thread of the process executes a full
/// barrier before this returns. A child of `fork` may have to register again; one that cannot
/// (the kernel refusing it after the parent registered) aborts with a message, since the
/// owners of its threads do not execute the fence.
fn barrier() {
    if FLAGS.load(Ordering::Relaxed) & FENCE != 0 {
        fence(Ordering::SeqCst);
        return;
    }
    let call = |cmd: libc::c_int| {
        // SAFETY: membarrier takes no pointers.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
    };
    if call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 {
        // A child after fork may need to register again.
        if call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0
            || call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0
        {
            fatal(MSG_MEMBARRIER);
        }
    }
}

impl ThreadHeap {
    #[inline(always)]
    fn heap(&self) -> *mut Heap<OwnedArenas> {
        self.heap.get()
    }

    /// The owner's entry into a call (point 4): marks the heap busy; one load of [`FLAGS`]
    /// decides whether a reader (or the fence fallback) needs the slow path.
    #[inline(always)]
    fn enter(&self) {
        if self.own.busy.load(Ordering::Relaxed) {
            fatal(MSG_REENTERED);
        }
        self.own.busy.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        if FLAGS.load(Ordering::Acquire) != 0 {
            self.enter_slow();
        }
    }

    /// The fast paths' entry: marks the heap busy; `false` when [`FLAGS`] is set (a reader,
    /// or the fence fallback), and then the caller lets go (`leave`) and takes the full path,
    /// whose `enter` waits. Makes no call (re-entry is fatal and does not return).
    #[inline(always)]
    fn enter_fast(&self) -> bool {
        if self.own.busy.load(Ordering::Relaxed) {
            fatal(MSG_REENTERED);
        }
        self.own.busy.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        FLAGS.load(Ordering::Acquire) == 0
    }

    /// An allocation as the owner, entering (and waiting out a reader) first: the first call,
    /// and the fast path's retreat when a reader is about.
    ///
    /// # Safety
    /// The calling thread owns this heap.
    #[inline(never)]
    unsafe fn alloc_owned(&self, size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe {
            self.owner_op(|th, h| {
                let ticks = th.own.ticks.load(Ordering::Relaxed).wrapping_add(1);
                th.own.ticks.store(ticks, Ordering::Relaxed);
                let class = (size - 1) >> h.config().alignment_shift;
                if ticks % DRAIN_TICKS == 0
                    || h.usedpools()[class & (MAX_CLASSES - 1)].head.is_null()
                {
                    th.drain(h);
                }
                h.alloc(size)
            })
        }
    }

    /// The rest of an allocation whose fast path found a drain due or no used pool: drains
    /// the remote stack, allocates, and lets go.
    ///
    /// # Safety
    /// The calling thread owns this heap and has entered it (`enter_fast`).
    #[inline(never)]
    unsafe fn alloc_drain_entered(&self, size: usize) -> *mut u8 {
        // SAFETY: entered as the owner: the heap's only user.
        let p = unsafe { self.drain_and_alloc(size) };
        self.leave();
        p
    }

    /// Takes the remote stack back into the heap, then allocates `size` bytes; a panic in
    /// either aborts (the heap may be half-updated).
    ///
    /// # Safety
    /// The calling thread is the heap's only user: entered as its owner, or holding it.
    #[inline(always)]
    unsafe fn drain_and_alloc(&self, size: usize) -> *mut u8 {
        let unwinding = AbortOnUnwind;
        // SAFETY: caller contract.
        let p = unsafe {
            let h = &mut *self.heap();
            self.drain(h);
            h.alloc(size)
        };
        core::mem::forget(unwinding);
        p
    }

    /// The rest of a free whose fast path emptied a pool: the pool goes back to its arena
    /// (which may be released), then the owner lets go.
    ///
    /// # Safety
    /// The calling thread owns this heap and has entered it; `pool` is live, on its class
    /// list, and has just become empty.
    #[inline(never)]
    unsafe fn pool_emptied_entered(&self, pool: *mut PoolHeader) {
        let unwinding = AbortOnUnwind;
        // SAFETY: entered as the owner; `pool` as the caller says.
        unsafe { (*self.heap()).pool_now_empty(pool) };
        core::mem::forget(unwinding);
        self.leave();
    }

    #[cold]
    fn enter_slow(&self) {
        loop {
            if FLAGS.load(Ordering::Relaxed) & FENCE != 0 {
                fence(Ordering::SeqCst);
            }
            if FLAGS.load(Ordering::Acquire) & REQUEST == 0 {
                return;
            }
            // The reader itself (a call from inside `with_heap` of another `PyMalloc`, a
            // panic hook's, another library's fork handler's): waiting would be for itself.
            // Its heaps are its own to change; the one it hands to `f` is marked busy, so a
            // call on that `PyMalloc` aborts as re-entry instead. Only the reader's thread
            // finds its own token here, so a relaxed load suffices.
            if READER_TOKEN.load(Ordering::Relaxed) == token() {
                return;
            }
            self.own.busy.store(false, Ordering::Release);
            while FLAGS.load(Ordering::Acquire) & REQUEST != 0 {
                yield_now();
            }
            self.own.busy.store(true, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
        }
    }

    #[inline(always)]
    fn leave(&self) {
        self.own.busy.store(false, Ordering::Release);
    }

    /// Runs `f` as the owner: no lock, no read-modify-write.
    ///
    /// # Safety
    /// The calling thread owns this heap.
    #[inline(always)]
    unsafe fn owner_op<R>(&self, f: impl FnOnce(&Self, &mut Heap<OwnedArenas>) -> R) -> R {
        self.enter();
        let unwinding = AbortOnUnwind;
        // SAFETY: the owner is the heap's only user outside a reader's handshake, and `enter`
        // waited out any reader.
        let r = f(self, unsafe { &mut *self.heap() });
        core::mem::forget(unwinding);
        self.leave();
        r
    }

    /// Takes the abandoned heap for a moment (0 → token | HELD).
    #[inline]
    fn try_hold(&self) -> bool {
        self.remote
            .state
            .compare_exchange(ABANDONED, token() | HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Lets a held heap go, then drains whatever was pushed meanwhile (point 3).
    fn release(&self) {
        self.remote.state.store(ABANDONED, Ordering::SeqCst);
        self.settle();
    }

    /// If the heap is abandoned and has remote frees, takes it and drains them (repeatedly).
    fn settle(&self) {
        while !self.remote.head.load(Ordering::SeqCst).is_null()
            && self.remote.state.load(Ordering::SeqCst) == ABANDONED
            && self.try_hold()
        {
            let unwinding = AbortOnUnwind;
            // SAFETY: held: the only user of the heap.
            unsafe { self.drain(&mut *self.heap()) };
            core::mem::forget(unwinding);
            self.remote.state.store(ABANDONED, Ordering::SeqCst);
        }
    }

    /// Frees every block of the remote stack into `heap`.
    ///
    /// # Safety
    /// `heap` is this heap's, and the caller has exclusive use of it.
    #[inline]
    unsafe fn drain(&self, heap: &mut Heap<OwnedArenas>) {
        if self.remote.head.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut p = self.remote.head.swap(core::ptr::null_mut(), Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: every block on the stack is a live block of this heap whose first word
            // the pusher wrote (released by its compare-exchange, acquired by the swap).
            unsafe {
                let next = *p.cast::<*mut u8>();
                heap.free(p);
                p = next;
            }
        }
    }

    /// A free by a thread that does not own this heap: into the heap directly if it is
    /// abandoned and free to take, else onto its stack.
    ///
    /// # Safety
    /// `p` is a live block of this heap, with its arena's provenance, freed once.
    unsafe fn remote_free(&self, p: *mut u8) {
        if self.remote.state.load(Ordering::Relaxed) == ABANDONED && self.try_hold() {
            let unwinding = AbortOnUnwind;
            // SAFETY: held: the only user of the heap; `p` is its block (caller contract).
            unsafe {
                let heap = &mut *self.heap();
                heap.free(p);
                self.drain(heap);
            }
            core::mem::forget(unwinding);
            self.release();
            return;
        }
        let mut head = self.remote.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the block is ours to write since it is being freed (caller contract).
            unsafe { *p.cast::<*mut u8>() = head };
            match self.remote.head.compare_exchange_weak(
                head,
                p,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        if self.remote.state.load(Ordering::SeqCst) == ABANDONED {
            self.settle();
        }
    }

    /// A debug layout's call: holds the one heap (spinning while another thread holds it).
    fn locked_op<R>(&self, f: impl FnOnce(&mut Heap<OwnedArenas>) -> R) -> R {
        let me = token() | HELD;
        loop {
            match self.remote.state.compare_exchange_weak(
                ABANDONED,
                me,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(s) if s == me => fatal(MSG_REENTERED),
                Err(_) => core::hint::spin_loop(),
            }
        }
        let unwinding = AbortOnUnwind;
        // SAFETY: held: the only user of the heap.
        let r = f(unsafe { &mut *self.heap() });
        core::mem::forget(unwinding);
        self.remote.state.store(ABANDONED, Ordering::Release);
        r
    }

    /// A reader's wait for this heap to be still (point 4). Returns once the heap is owned
    /// and not busy, owned by the caller, or held by the caller.
    fn quiesce(&self) {
        let me = token();
        loop {
            let s = self.remote.state.load(Ordering::Acquire);
            if s == ABANDONED {
                if self.try_hold() {
                    return;
                }
            } else if s == me
                || s == me | HELD
                || (s & HELD == 0
                    && !self.own.busy.load(Ordering::Acquire)
                    && self.remote.state.load(Ordering::Acquire) == s)
            {
                return;
            }
            yield_now();
        }
    }

    /// The reader lets go of a heap it held.
    fn unquiesce(&self) {
        if self.remote.state.load(Ordering::Relaxed) == token() | HELD {
            self.remote.state.store(ABANDONED, Ordering::SeqCst);
        }
    }
}

/// Aborts if dropped: it is dropped only when a panic unwinds out of a heap operation.
struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        fatal(MSG_UNWOUND);
    }
}

impl Shared {
    fn heaps(&self) -> impl Iterator<Item = &ThreadHeap> {
        let mut h = self.heaps.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: heaps on the list stay mapped until the PyMalloc is dropped, which
            // needs exclusive access; `next` is immutable once published.
            let r = unsafe { h.as_ref() }?;
            h = r.own.next;
            Some(r)
        })
    }

    /// A new heap, owned by `state`, pushed on the list.
    fn new_heap(&self, state: usize) -> *mut ThreadHeap {
        let th = map_uninit::<ThreadHeap>();
        // SAFETY: a fresh mapping for one ThreadHeap, not yet shared; its source names it.
        unsafe {
            th.write(ThreadHeap {
                own: OwnerLine {
                    busy: AtomicBool::new(false),
                    ticks: AtomicU32::new(0),
                    next: core::ptr::null_mut(),
                },
                remote: RemoteLine {
                    head: AtomicPtr::new(core::ptr::null_mut()),
                    state: AtomicUsize::new(state),
                },
                heap: UnsafeCell::new(Heap::with_source(
                    self.config,
                    OwnedArenas { owners: &self.owners, heap: th },
                )),
            })
        };
        let mut head = self.heaps.load(Ordering::Relaxed);
        loop {
            // SAFETY: not yet published.
            unsafe { (*th).own.next = head };
            match self.heaps.compare_exchange_weak(head, th, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return th,
                Err(now) => head = now,
            }
        }
    }

    /// The heap the calling thread owns, adopting or making one on its first call; null when
    /// the thread may not own one (see [`attach`](Self::attach)): the caller then borrows one.
    #[inline(always)]
    fn mine(&self) -> *mut ThreadHeap {
        let (key, th) = MINE.with(|m| m[self.slot].get());
        if key == self.key { th } else { self.attach() }
    }

    /// The entry of thread pointer `tp` in the fast table.
    fn fast_entry(&self, tp: usize) -> &FastEntry {
        // SAFETY: the offset is a multiple of 16 below FAST_LEN * 16.
        unsafe { &*self.fast.as_ptr().byte_add(fast_offset(tp)) }
    }

    /// Frees the calling thread's entry in the fast table, if it has one.
    fn forget_fast(&self, tp: usize) {
        let e = self.fast_entry(tp);
        if e.tp.load(Ordering::Relaxed) == tp {
            e.th.store(core::ptr::null_mut(), Ordering::Relaxed);
            e.tp.store(0, Ordering::Release);
        }
    }

    /// The calling thread's heap if it has one (null otherwise); never makes one.
    #[inline(always)]
    fn mine_if_any(&self) -> *mut ThreadHeap {
        let (key, th) = MINE.with(|m| m[self.slot].get());
        if key == self.key { th } else { core::ptr::null_mut() }
    }

    /// The calling thread's first call: adopts an abandoned heap or makes one, and arms the
    /// thread-exit key. Null, owning nothing, when the thread's exit destructor has run
    /// already (a later key's destructor calling in glibc's last round of them would attach a
    /// heap that no round abandons: owned by a dead thread for ever) or the key cannot be set
    /// (`pthread_setspecific` failing for want of memory: same).
    #[cold]
    fn attach(&self) -> *mut ThreadHeap {
        if EXITED.with(Cell::get) {
            return core::ptr::null_mut();
        }
        let me = token();
        let adopted = self.heaps().find(|h| {
            h.remote.state.load(Ordering::Relaxed) == ABANDONED
                && h.remote
                    .state
                    .compare_exchange(ABANDONED, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        });
        let th = match adopted {
            Some(h) => {
                // The exiting thread marks its heap abandoned inside its last call, and clears
                // `busy` only when that call returns: wait for it, or this thread's first call
                // would find the heap busy and abort as if it had re-entered. (Storing
                // ABANDONED after `busy = 0` instead would change the state outside a call: a
                // reader that had found the heap owned and still could then see it adopted and
                // written while it reads.) The acquire load pairs with the exiting thread's
                // release store of `busy = 0`: its last writes to the heap are visible here.
                while h.own.busy.load(Ordering::Acquire) {
                    yield_now();
                }
                h as *const ThreadHeap as *mut ThreadHeap
            }
            None => self.new_heap(me),
        };
        MINE.with(|m| m[self.slot].set((self.key, th)));
        if !EXITED.with(Cell::get) {
            let tp = thread_pointer();
            let e = self.fast_entry(tp);
            if e.tp.load(Ordering::Relaxed) == tp
                || e.tp.compare_exchange(0, tp, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                e.th.store(th, Ordering::Relaxed);
            }
        }
        if !cfg!(miri) && !KEY_SET.with(|k| k.replace(true)) {
            // SAFETY: a key created by `setup_process`; a non-null value makes its destructor
            // run at thread exit. (glibc may allocate a second-level table for keys past 32
            // with its own calloc; under LD_PRELOAD that comes back here and finds this
            // thread's heap already recorded.)
            let rc = unsafe {
                libc::pthread_setspecific(
                    EXIT_KEY.load(Ordering::Relaxed),
                    core::ptr::dangling::<libc::c_void>(),
                )
            };
            if rc != 0 {
                // No destructor would abandon this thread's heaps: abandon them now, as at its
                // exit, and let its calls borrow heaps from now on.
                // SAFETY: called outside any call on this thread's heaps (a first call), and
                // outside the registry lock; the argument is unused.
                unsafe { thread_exit(core::ptr::null_mut()) };
                return core::ptr::null_mut();
            }
        }
        th
    }

    /// A heap held by the calling thread for one call, for a thread that may not own one (see
    /// [`attach`](Self::attach)): an abandoned heap, else a new one. Let go by
    /// [`ThreadHeap::release`], it is abandoned again, so its blocks are freed into it as any
    /// abandoned heap's.
    #[cold]
    fn borrow(&self) -> &ThreadHeap {
        if let Some(h) = self
            .heaps()
            .find(|h| h.remote.state.load(Ordering::Relaxed) == ABANDONED && h.try_hold())
        {
            return h;
        }
        // SAFETY: heaps live as long as this `Shared`.
        unsafe { &*self.new_heap(token() | HELD) }
    }

    /// An allocation on a borrowed heap (see [`borrow`](Self::borrow)).
    #[cold]
    #[inline(never)]
    fn alloc_borrowed(&self, size: usize) -> *mut u8 {
        let th = self.borrow();
        // SAFETY: held: the only user of the heap.
        let p = unsafe { th.drain_and_alloc(size) };
        th.release();
        p
    }

    /// Raw allocation (libc), counted here.
    fn raw_alloc(&self, size: usize, align: usize) -> *mut u8 {
        let p = if align <= self.granularity {
            // SAFETY: plain libc malloc; CPython's PyMem_RawMalloc(0) is malloc(1).
            unsafe { libc::malloc(size.max(1)) }.cast::<u8>()
        } else {
            let mut p = core::ptr::null_mut();
            let align = align.max(core::mem::size_of::<usize>());
            // SAFETY: align is a power of two multiple of the pointer size; p is an
            // out-pointer.
            let rc = unsafe { libc::posix_memalign(&mut p, align, size.max(1)) };
            if rc == 0 { p.cast::<u8>() } else { core::ptr::null_mut() }
        };
        if !p.is_null() {
            os::raw_made(p, size);
            self.raw_total.fetch_add(1, Ordering::Relaxed);
            self.raw_blocks.fetch_add(1, Ordering::Relaxed);
            // SAFETY: p is a live block just returned by libc.
            self.raw_bytes.fetch_add(unsafe { os::raw_usable_size(p) }, Ordering::Relaxed);
        }
        p
    }

    /// # Safety
    /// `p` is a live raw block of this `PyMalloc`.
    unsafe fn raw_free(&self, p: *mut u8) {
        // SAFETY: caller contract: a live libc block.
        let usable = unsafe { os::raw_usable_size(p) };
        self.raw_blocks.fetch_sub(1, Ordering::Relaxed);
        self.raw_bytes.fetch_sub(usable, Ordering::Relaxed);
        os::raw_gone(p);
        // SAFETY: caller contract.
        unsafe { libc::free(p.cast()) };
    }

    /// # Safety
    /// `p` is a live raw block of this `PyMalloc`.
    unsafe fn raw_realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: caller contract: a live libc block.
        let Some((new, old, now)) = (unsafe { os::raw_realloc(p, size) }) else {
            return core::ptr::null_mut();
        };
        self.raw_bytes.fetch_sub(old, Ordering::Relaxed);
        self.raw_bytes.fetch_add(now, Ordering::Relaxed);
        new
    }

    /// The first (in debug layouts: the only) heap.
    fn locked_heap(&self) -> &ThreadHeap {
        // SAFETY: a locked Shared is made with its heap, which lives as long as it.
        unsafe { &*self.heaps.load(Ordering::Acquire) }
    }

    /// Runs `f` with every heap of this `PyMalloc` still (point 4), the caller's own included.
    fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        quiesce_begin();
        for h in self.heaps() {
            h.quiesce();
        }
        let unwinding = AbortOnUnwind;
        let r = f();
        core::mem::forget(unwinding);
        for h in self.heaps() {
            h.unquiesce();
        }
        quiesce_end();
        for h in self.heaps() {
            h.settle();
        }
        r
    }

    /// Checks the remote stack of `th`: every entry is a block of a carved, classed pool of
    /// this heap, at a block boundary, and the chain is no longer than the blocks in use.
    ///
    /// # Safety
    /// Called inside [`quiesced`](Self::quiesced).
    unsafe fn check_remote(&self, th: &ThreadHeap) -> Result<(), InvariantError> {
        // SAFETY: quiesced: nobody writes the heap.
        let heap = unsafe { &*th.heap() };
        let in_use = heap.stats().blocks_in_use();
        let ps = self.config.pool_size();
        let overhead = self.config.pool_overhead();
        let err = |what, pool, value| Err(InvariantError { what, arena: usize::MAX, pool, value });
        let mut p = th.remote.head.load(Ordering::Acquire);
        let mut n = 0usize;
        while !p.is_null() {
            n += 1;
            if n > in_use {
                return err(
                    "the remote-free list is no longer than the heap's blocks in use (a longer \
                     one has a cycle: a block freed twice)",
                    0,
                    n,
                );
            }
            let a = p.addr();
            if self.owners.lookup(a).map(|(o, _)| o)
                != Some((th as *const ThreadHeap).cast_mut().cast())
            {
                return err("a remote-free block lies in an arena of its heap", 0, a);
            }
            let Some(pool) = heap.carved_pool(a & !(ps - 1)) else {
                return err("a remote-free block lies in a carved pool", a & !(ps - 1), a);
            };
            // SAFETY: a carved pool of a live arena has an initialised header.
            let (count, szidx) = unsafe { ((*pool).count, (*pool).szidx) };
            if count == 0 || szidx == NO_CLASS {
                return err(
                    "a remote-free block lies in a pool with blocks in use",
                    pool.addr(),
                    a,
                );
            }
            let block = (szidx as usize + 1) * self.granularity;
            let off = a - pool.addr();
            if off < overhead || !(off - overhead).is_multiple_of(block) || off + block > ps {
                return err("a remote-free block starts at a block boundary", pool.addr(), a);
            }
            // SAFETY: a block of a live pool of this heap (checked above), holding the link
            // its pusher wrote; `p` has the arena's provenance (pushed so).
            p = unsafe { *p.cast::<*mut u8>() };
        }
        Ok(())
    }
}

/// Starts a reader's handshake: one reader at a time; owners see `REQUEST` from their next
/// call on.
fn quiesce_begin() {
    while READER.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        yield_now();
    }
    READER_TOKEN.store(token(), Ordering::Relaxed);
    FLAGS.fetch_or(REQUEST, Ordering::SeqCst);
    barrier();
}

fn quiesce_end() {
    FLAGS.fetch_and(!REQUEST, Ordering::Release);
    READER_TOKEN.store(0, Ordering::Relaxed);
    READER.store(false, Ordering::Release);
}

/// Runs `f` on the shared state of every live `PyMalloc` of the process.
fn each_shared(mut f: impl FnMut(&Shared)) {
    for s in &SLOT_SHARED {
        // SAFETY: a published Shared stays mapped while its slot is claimed; callers hold
        // the registry lock, which dropping a PyMalloc takes before unmapping.
        if let Some(sh) = unsafe { s.load(Ordering::Acquire).as_ref() } {
            f(sh);
        }
    }
}

/// Thread-exit destructor (the pthread key's): abandons the thread's heaps, allocating nothing;
/// the thread's later calls borrow heaps (point 3). Also called when the key cannot be set.
///
/// # Safety
/// Called by the calling thread outside any of its calls on a heap and outside the registry
/// lock (as pthread runs key destructors); the argument is unused.
unsafe extern "C" fn thread_exit(_: *mut libc::c_void) {
    registry_lock();
    KEY_SET.with(|k| k.set(false));
    EXITED.with(|e| e.set(true));
    let tp = thread_pointer();
    MINE.with(|m| {
        for (slot, e) in m.iter().enumerate() {
            let (key, th) = e.replace((0, core::ptr::null_mut()));
            if key == 0 || SLOT_TAG[slot].load(Ordering::Relaxed) != key >> KEY_TAG_SHIFT {
                continue; // never used, or its PyMalloc was dropped
            }
            // SAFETY: the slot still has this tag, so its PyMalloc (and heap) lives, and the
            // registry lock keeps it alive; this thread owns the heap.
            let th = unsafe { &*th };
            // SAFETY: as above: the slot's shared state is published and alive.
            unsafe { (*SLOT_SHARED[slot].load(Ordering::Acquire)).forget_fast(tp) };
            // SAFETY: this thread owns the heap.
            unsafe {
                th.owner_op(|th, heap| {
                    th.drain(heap);
                    th.remote.state.store(ABANDONED, Ordering::SeqCst);
                })
            };
            th.settle();
        }
    });
    registry_unlock();
}

/// `pthread_atfork` prepare handler: takes the registry, then the reader's handshake over
/// every heap of every `PyMalloc`, so that none is halfway through an update.
extern "C" fn before_fork() {
    registry_lock();
    quiesce_begin();
    each_shared(|sh| sh.heaps().for_each(ThreadHeap::quiesce));
}

/// `pthread_atfork` parent handler: lets go of what [`before_fork`] took.
extern "C" fn after_fork_in_parent() {
    each_shared(|sh| sh.heaps().for_each(ThreadHeap::unquiesce));
    quiesce_end();
    each_shared(|sh| sh.heaps().for_each(ThreadHeap::settle));
    registry_unlock();
}

/// `pthread_atfork` child handler: the forking thread is the only one. Heaps it held become
/// abandoned again; heaps owned by threads that are not in the child are consistent (they were
/// still at the fork) and become abandoned, for the child's threads to adopt or drain.
extern "C" fn after_fork_in_child() {
    let me = token();
    let tp = thread_pointer();
    each_shared(|sh| {
        for e in &sh.fast {
            if e.tp.load(Ordering::Relaxed) != tp {
                e.th.store(core::ptr::null_mut(), Ordering::Relaxed);
                e.tp.store(0, Ordering::Relaxed);
            }
        }
        for h in sh.heaps() {
            let s = h.remote.state.load(Ordering::Relaxed);
            if s != me {
                h.remote.state.store(ABANDONED, Ordering::Relaxed);
                h.own.busy.store(false, Ordering::Relaxed);
            }
        }
    });
    FLAGS.fetch_and(!REQUEST, Ordering::Relaxed);
    READER_TOKEN.store(0, Ordering::Relaxed);
    READER.store(false, Ordering::Relaxed);
    REGISTRY.store(false, Ordering::Relaxed);
    ATFORK.store(ATFORK_DONE, Ordering::Relaxed);
}

/// How many heaps a [`PyMalloc`] has, and how many of them no thread owns now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapCount {
    /// Heaps made so far (one per thread that allocated, minus adoptions).
    pub heaps: usize,
    /// Heaps whose thread exited and that no thread has adopted yet.
    pub abandoned: usize,
}

/// pymalloc as a thread-safe allocator: one heap per thread (see the [module docs](self)).
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
///     // Freed by another thread: it goes back to this thread's heap.
///     let p = p as usize;
///     std::thread::spawn(move || PY.dealloc(p as *mut u8, layout)).join().unwrap();
/// }
/// assert_eq!(PY.stats().classes[1].blocks_in_use, 0);
/// ```
///
/// As the process allocator: `#[global_allocator] static GLOBAL: PyMalloc = PyMalloc::new();`
///
/// At most [`SLOTS`] values may be alive at once (see the [module docs](self) for why each
/// takes a slot of a process-wide table).
pub struct PyMalloc {
    /// `threshold`, or 0 for a debug layout: with `fast_align`, the two comparisons by which
    /// `alloc` picks its fast path (a debug layout never takes it).
    fast_threshold: usize,
    /// The block granularity: the largest alignment a pool block has.
    fast_align: usize,
    /// The fast table of the shared state once published, [`NO_FAST`] before: the fast path
    /// finds the calling thread's heap there from its thread pointer, without reading `shared`
    /// or a thread-local.
    fast: AtomicPtr<FastEntry>,
    config: Config,
    /// The shared state, mapped by the first call; null before.
    shared: AtomicPtr<Shared>,
}

/// A key's low bits are its slot, the rest its tag (never 0).
const KEY_TAG_SHIFT: u32 = SLOTS.trailing_zeros();

/// The key of the `PyMalloc` with `tag` in `slot`.
const fn make_key(tag: usize, slot: usize) -> usize {
    (tag << KEY_TAG_SHIFT) | slot
}

// SAFETY: all shared state is reached through atomics or through the heap protocol of the
// module docs: a heap is used by its owner, by one holder, or by a reader while still.
unsafe impl Sync for PyMalloc {}
// SAFETY: the value holds a pointer to its own mapped state, which moves with it.
unsafe impl Send for PyMalloc {}

impl PyMalloc {
    /// pymalloc with the CPython 3.10+ layout.
    pub const fn new() -> Self {
        Self::with_config(Config::CPYTHON_3_10)
    }

    /// pymalloc with another (validated) layout.
    pub const fn with_config(config: Config) -> Self {
        PyMalloc {
            fast_threshold: if config.debug { 0 } else { config.threshold },
            fast_align: 1 << config.alignment_shift,
            fast: AtomicPtr::new(NO_FAST.as_ptr().cast_mut()),
            config,
            shared: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The calling thread's heap, or `None` when the fast table has none for it (before the
    /// first call, before the thread's first call, when another thread took its entry, after
    /// its exit began, and always for a debug layout, whose threads have no heap of their
    /// own). One load of the table, one entry, one comparison, no call.
    #[inline(always)]
    fn mine_fast(&self) -> Option<&ThreadHeap> {
        let tp = thread_pointer();
        let table = self.fast.load(Ordering::Acquire);
        // SAFETY: `table` is NO_FAST or the fast table of the published shared state, alive
        // while `self` is; the offset is an entry's, within the table.
        let e = unsafe { &*table.byte_add(fast_offset(tp)) };
        if e.tp.load(Ordering::Relaxed) != tp {
            return None;
        }
        let th = e.th.load(Ordering::Relaxed);
        // SAFETY: an entry with the calling thread's pointer was claimed by this thread and
        // names its heap of this value (FastEntry invariant: `attach` stores `th` before the
        // thread's next call, and only the thread itself clears it), alive while `self` is.
        unsafe {
            core::hint::assert_unchecked(!th.is_null());
            Some(&*th)
        }
    }

    #[inline(always)]
    fn shared(&self) -> &Shared {
        let p = self.shared.load(Ordering::Acquire);
        if p.is_null() {
            return self.init();
        }
        // SAFETY: a published Shared lives until this value is dropped.
        unsafe { &*p }
    }

    /// The first call's path: process setup, a slot, the shared state.
    #[cold]
    fn init(&self) -> &Shared {
        setup_process();
        let owners = OwnerMap::new(self.config.arena_shift).unwrap_or_else(|| fatal(MSG_NOMEM));
        registry_lock();
        let Some(slot) = SLOT_TAG.iter().position(|t| t.load(Ordering::Relaxed) == 0) else {
            registry_unlock();
            fatal(MSG_SLOTS);
        };
        let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        let sh = map_one(Shared {
            fast: [const { FastEntry::empty() }; FAST_LEN],
            slot,
            key: make_key(tag, slot),
            config: self.config,
            granularity: self.config.alignment(),
            locked: self.config.debug(),
            owners,
            heaps: AtomicPtr::new(core::ptr::null_mut()),
            raw_total: AtomicU64::new(0),
            raw_blocks: AtomicUsize::new(0),
            raw_bytes: AtomicUsize::new(0),
        });
        // SAFETY: fresh and not yet shared.
        if unsafe { (*sh).locked } {
            // SAFETY: as above.
            unsafe { (*sh).new_heap(ABANDONED) };
        }
        SLOT_TAG[slot].store(tag, Ordering::Relaxed);
        SLOT_SHARED[slot].store(sh, Ordering::Release);
        registry_unlock();
        match self.shared.compare_exchange(
            core::ptr::null_mut(),
            sh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                // SAFETY: published; lives until this value is dropped.
                self.fast.store(unsafe { (*sh).fast.as_ptr().cast_mut() }, Ordering::Release);
                // SAFETY: published; lives until this value is dropped.
                unsafe { &*sh }
            }
            Err(theirs) => {
                // Another thread's first call won: give this slot and state back.
                // SAFETY: `sh` was never published through `self`, and no heap was used.
                unsafe { release_shared(sh) };
                // SAFETY: as in `Ok`.
                unsafe { &*theirs }
            }
        }
    }

    /// Runs `f` on the calling thread's heap while every other heap of this `PyMalloc` is
    /// still: no other thread allocates from it or frees into it meanwhile (remote frees pile
    /// up on the stacks). The mutual exclusion the old single-heap `PyMalloc` gave, at the
    /// price of a reader's handshake (a `membarrier` system call): for callers that need a
    /// moment when nothing moves, not for the hot path. `f` should be short, and:
    ///
    /// * must not call this `PyMalloc` (that aborts: re-entry);
    /// * may allocate and free through another `PyMalloc` that has had its first call (the
    ///   global allocator, typically), but must not make the first call on one, nor drop
    ///   one, nor `fork()`: those wait for a lock that a thread exiting meanwhile holds while
    ///   it waits for this handshake to end (or, for `fork`, for the handshake's own lock): a
    ///   deadlock.
    pub fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<OwnedArenas>) -> R) -> R {
        let sh = self.shared();
        if sh.locked {
            return sh.locked_heap().locked_op(f);
        }
        let mine = sh.mine();
        if mine.is_null() {
            // A thread that may not own a heap: one of the abandoned heaps the handshake holds
            // (or a new one, held), let go with them at its end.
            return sh.quiesced(|| {
                let held = token() | HELD;
                let th = match sh.heaps().find(|h| h.remote.state.load(Ordering::Relaxed) == held) {
                    Some(h) => h,
                    // SAFETY: heaps live as long as this `Shared`.
                    None => unsafe { &*sh.new_heap(held) },
                };
                // SAFETY: held by this thread, and every other heap is still.
                f(unsafe { &mut *th.heap() })
            });
        }
        // SAFETY: `mine` returns the calling thread's heap, alive while `self` is.
        let th = unsafe { &*mine };
        sh.quiesced(|| {
            if th.own.busy.load(Ordering::Relaxed) {
                fatal(MSG_REENTERED);
            }
            th.own.busy.store(true, Ordering::Relaxed);
            // SAFETY: the caller owns `th`, and every other heap is still.
            let r = f(unsafe { &mut *th.heap() });
            th.own.busy.store(false, Ordering::Release);
            r
        })
    }

    /// The statistics now, summed over every heap: remote frees pending on the heaps' stacks
    /// are done first, so blocks other threads have freed count as free. Counters and gauges
    /// are sums (`arenas_highwater` is the sum of each heap's peak, at least the process's).
    ///
    /// Runs the reader's handshake and walks every carved pool of every heap: call it from
    /// tests and reports, not from a hot path. The drain frees blocks into their heaps, which
    /// may empty pools and unmap arenas: measure retention (resident size, mapped arenas)
    /// before reading the statistics, or after, knowingly (see the [module docs](self)).
    pub fn stats(&self) -> Stats {
        let sh = self.shared();
        let mut total = Stats::empty(&sh.config);
        let drain = !sh.locked;
        sh.quiesced(|| {
            for th in sh.heaps() {
                // SAFETY: quiesced: the caller has exclusive use of every heap.
                let heap = unsafe { &mut *th.heap() };
                if drain {
                    // SAFETY: as above.
                    unsafe { th.drain(heap) };
                }
                add_stats(&mut total, &heap.stats());
            }
        });
        total.raw_allocations_total += sh.raw_total.load(Ordering::Relaxed);
        total.raw_blocks_current =
            total.raw_blocks_current.wrapping_add(sh.raw_blocks.load(Ordering::Relaxed));
        total.raw_bytes_current =
            total.raw_bytes_current.wrapping_add(sh.raw_bytes.load(Ordering::Relaxed));
        total
    }

    /// Checks every invariant of every heap and of its remote-free stack now.
    ///
    /// Runs the reader's handshake and walks every pool and free list: tests, not hot paths.
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let sh = self.shared();
        sh.quiesced(|| {
            for th in sh.heaps() {
                // SAFETY: quiesced.
                unsafe { sh.check_remote(th)? };
                // SAFETY: quiesced.
                unsafe { &*th.heap() }.check_invariants()?;
            }
            Ok(())
        })
    }

    /// How many heaps there are and how many are abandoned (a racy but harmless count).
    pub fn heap_count(&self) -> HeapCount {
        let sh = self.shared();
        let mut c = HeapCount { heaps: 0, abandoned: 0 };
        for h in sh.heaps() {
            c.heaps += 1;
            c.abandoned += (h.remote.state.load(Ordering::Relaxed) == ABANDONED) as usize;
        }
        c
    }

    /// The layout in force.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Whether `p` lies in an arena of one of this value's heaps (the raw blocks of libc are
    /// not). Lock-free, any thread.
    pub fn owns(&self, p: *const u8) -> bool {
        self.shared().owners.lookup(p.addr()).is_some()
    }

    /// The size of the pool block `p` lies in, or `None` when `p` is in no arena of this
    /// value (a raw block of libc).
    ///
    /// Any thread may ask, without the handshake: the answer is read from the block's pool
    /// header, which only a live block keeps meaningful (and its arena mapped), so the call is
    /// `unsafe`. A safe version cannot exist without a lock: for a pointer that is not a live
    /// block, the arena may be unmapped by its owner between the lookup and the read.
    ///
    /// ```
    /// use pymalloc::PyMalloc;
    /// use std::alloc::{GlobalAlloc, Layout};
    /// static PY: PyMalloc = PyMalloc::new();
    /// let layout = Layout::from_size_align(20, 8).unwrap();
    /// // SAFETY: a non-zero size; `p` is live while asked about, then freed once.
    /// unsafe {
    ///     let p = PY.alloc(layout);
    ///     assert_eq!(PY.block_size(p), Some(32)); // 20 bytes round up to the 32-byte class
    ///     PY.dealloc(p, layout);
    /// }
    /// ```
    ///
    /// Safe code cannot ask (a pointer that is not a live block would read freed memory):
    ///
    /// ```compile_fail,E0133
    /// static PY: pymalloc::PyMalloc = pymalloc::PyMalloc::new();
    /// let _ = PY.block_size(core::ptr::null());
    /// ```
    ///
    /// # Safety
    /// `p` is a live block of this `PyMalloc` (a pool block or a raw block), not freed before
    /// the call returns.
    pub unsafe fn block_size(&self, p: *const u8) -> Option<usize> {
        let sh = self.shared();
        let (_, base) = sh.owners.lookup(p.addr())?;
        let pool = PoolHeader::of(base.with_addr(p.addr()), sh.config.pool_size());
        // SAFETY: `p` is a live pool block (caller contract; the lookup found its arena), so
        // its arena stays mapped and its pool is carved and classed; the pool's `szidx` does
        // not change while the block lives (the owner wrote it before handing the block out,
        // and the hand-over to this thread ordered that write before this read).
        Some(unsafe { ((*pool).szidx as usize + 1) * sh.granularity })
    }

    /// The occupancy of every arena of every heap now. The buffers are allocated before the
    /// handshake (they may come from this very allocator), then filled without allocating.
    pub fn snapshot(&self) -> Snapshot {
        let sh = self.shared();
        let per_arena = self.config.pools_per_arena();
        loop {
            let want = sh.quiesced(|| {
                // SAFETY: quiesced.
                sh.heaps().map(|th| unsafe { &*th.heap() }.arenas_current()).sum::<usize>()
            }) + 2;
            let mut arenas: Vec<ArenaSnapshot> = (0..want)
                .map(|_| ArenaSnapshot { address: 0, pools: Vec::with_capacity(per_arena) })
                .collect();
            let used = sh.quiesced(|| {
                let mut k = 0;
                for th in sh.heaps() {
                    // SAFETY: quiesced.
                    k += unsafe { &*th.heap() }.fill_snapshot(&mut arenas[k..])?;
                }
                Some(k)
            });
            if let Some(used) = used {
                arenas.truncate(used);
                arenas.sort_unstable_by_key(|a| a.address);
                return Snapshot { pools_per_arena: per_arena, arenas };
            }
        }
    }

    /// Whether the owners rely on `membarrier` (rather than a fence of their own each call):
    /// a hook for `tests/global_membarrier.rs`. Meaningful after the process's first call on
    /// any `PyMalloc`. Not API.
    #[doc(hidden)]
    pub fn uses_membarrier() -> bool {
        FLAGS.load(Ordering::Relaxed) & FENCE == 0
    }

    /// Panics inside a heap operation: a hook for `tests/global_panic.rs`, which checks that
    /// this stops the process with a message rather than corrupting or hanging. Not API.
    #[doc(hidden)]
    pub fn panic_while_locked(&self) {
        self.with_heap(|_| panic!("a panic inside a heap operation, on purpose"))
    }
}

impl PyMalloc {
    /// A pool allocation the fast path did not do: the thread has no heap of this value yet
    /// (or this is the value's first call), and then one is made or adopted; or the fast table
    /// has no entry for the thread (another live thread holds it, or the thread is exiting);
    /// or a reader is about (then `owner_op` waits). Allocates as the owner. Takes the fast
    /// path's arguments unchanged, so that its call is a plain jump.
    #[cold]
    #[inline(never)]
    fn alloc_first(&self, layout: Layout) -> *mut u8 {
        let sh = self.shared();
        let th = sh.mine();
        if th.is_null() {
            // The thread's exit destructor has run (or its key could not be set): it owns no
            // heap, and borrows one for this call.
            return sh.alloc_borrowed(layout.size());
        }
        // SAFETY: `mine` returned the calling thread's heap, alive while `self` is.
        unsafe { (*th).alloc_owned(layout.size()) }
    }

    /// The rest of an allocation whose fast path found a drain due or no used pool: drains
    /// the thread's remote stack, allocates, and lets go. Takes the fast path's arguments
    /// unchanged (and finds the heap again), so that its call is a plain jump.
    ///
    /// # Safety
    /// The calling thread has a heap of this value and has entered it (`enter_fast`).
    #[inline(never)]
    unsafe fn alloc_drain_entered(&self, layout: Layout) -> *mut u8 {
        // SAFETY: caller contract: the thread's heap exists and is entered.
        unsafe { (*self.shared().mine()).alloc_drain_entered(layout.size()) }
    }

    /// A free the fast path did not do because the fast table has no entry for the thread: a
    /// debug layout's, or any block of a thread without a heap, or (the thread's entry held by
    /// another live thread, or the thread exiting) possibly a block of its own heap, then
    /// freed as the owner.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator.
    #[inline(never)]
    unsafe fn dealloc_unlisted(&self, ptr: *mut u8) {
        // SAFETY: caller contract.
        unsafe { self.dealloc_foreign_or_mine(ptr, true) }
    }

    /// A free of a block the calling thread's own heap does not hold: another heap's block
    /// (pushed, or freed into the heap if abandoned) or a raw block (libc).
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator, not of the calling thread's heap.
    #[inline(never)]
    unsafe fn dealloc_foreign(&self, ptr: *mut u8) {
        // SAFETY: caller contract.
        unsafe { self.dealloc_foreign_or_mine(ptr, false) }
    }

    /// The frees of [`dealloc_unlisted`](Self::dealloc_unlisted) (`maybe_mine`) and
    /// [`dealloc_foreign`](Self::dealloc_foreign).
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator, and of another heap than the calling thread's
    /// unless `maybe_mine`.
    #[inline(always)]
    unsafe fn dealloc_foreign_or_mine(&self, ptr: *mut u8, maybe_mine: bool) {
        let sh = self.shared();
        if sh.locked {
            // SAFETY: caller contract: ptr is a live block of this allocator.
            return sh.locked_heap().locked_op(|h| unsafe { h.free(ptr) });
        }
        match sh.owners.lookup(ptr.addr()) {
            // SAFETY: caller contract; in no arena, so a raw block.
            None => unsafe { sh.raw_free(ptr) },
            Some((owner, base)) => {
                let owner = owner.cast::<ThreadHeap>();
                if maybe_mine && owner == sh.mine_if_any() {
                    // SAFETY: the calling thread owns the heap; ptr is its live block.
                    return unsafe { (*owner).owner_op(|_, h| h.free(ptr)) };
                }
                // SAFETY: a live block of another thread's heap, which lives as long as
                // `self`, re-derived from its arena's base.
                unsafe { (*owner).remote_free(base.with_addr(ptr.addr())) }
            }
        }
    }

    /// `dealloc` when a reader's request (or the fence fallback) sent the fast path away: the
    /// whole free as the owner, waiting out the reader first.
    ///
    /// # Safety
    /// `ptr` is a live block of this allocator; the calling thread owns `th`.
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_owned(&self, th: &ThreadHeap, ptr: *mut u8) {
        // SAFETY: caller contract: the calling thread owns `th`; freed only if its heap owns
        // ptr.
        let freed = unsafe {
            th.owner_op(|_, h| {
                let own = h.owns(ptr);
                if own {
                    h.free(ptr);
                }
                own
            })
        };
        if !freed {
            // SAFETY: caller contract; not in this thread's heap.
            unsafe { self.dealloc_foreign(ptr) };
        }
    }

    /// Allocations off the pool path: raw blocks, and every call of a debug layout.
    #[inline(never)]
    fn alloc_other(&self, layout: Layout) -> *mut u8 {
        let sh = self.shared();
        if sh.locked {
            return sh.locked_heap().locked_op(|h| h.alloc_aligned(layout.size(), layout.align()));
        }
        sh.raw_alloc(layout.size(), layout.align())
    }
}

/// The end of a `realloc` that could not stay in place: unless `new` is null (then nothing
/// happens and null is returned), copies the first `n` bytes of `old` to `new`, gives `old` to
/// `free`, and returns `new`.
///
/// # Safety
/// `new` is null or a live block of at least `n` bytes distinct from `old`; `old` is a live block
/// of at least `n` bytes that `free` may free (and nothing uses it afterwards).
unsafe fn moved(old: *mut u8, new: *mut u8, n: usize, free: impl FnOnce(*mut u8)) -> *mut u8 {
    if !new.is_null() {
        // SAFETY: caller contract: both blocks live, distinct, at least `n` bytes.
        unsafe { core::ptr::copy_nonoverlapping(old, new, n) };
        free(old);
    }
    new
}

/// Adds one heap's statistics into `t`.
fn add_stats(t: &mut Stats, s: &Stats) {
    t.arenas_allocated_total += s.arenas_allocated_total;
    t.arenas_reclaimed += s.arenas_reclaimed;
    t.raw_allocations_total += s.raw_allocations_total;
    t.arenas_current += s.arenas_current;
    t.arenas_highwater += s.arenas_highwater;
    t.pools_used += s.pools_used;
    t.pools_full += s.pools_full;
    t.pools_empty += s.pools_empty;
    t.pools_never_carved += s.pools_never_carved;
    for (a, b) in t.classes.iter_mut().zip(&s.classes) {
        a.pools += b.pools;
        a.blocks_in_use += b.blocks_in_use;
        a.blocks_available += b.blocks_available;
    }
    t.bytes_in_allocated_blocks += s.bytes_in_allocated_blocks;
    t.bytes_in_available_blocks += s.bytes_in_available_blocks;
    t.bytes_in_unused_pools += s.bytes_in_unused_pools;
    t.bytes_lost_to_pool_headers += s.bytes_lost_to_pool_headers;
    t.bytes_lost_to_quantization += s.bytes_lost_to_quantization;
    t.bytes_lost_to_arena_alignment += s.bytes_lost_to_arena_alignment;
    t.raw_blocks_current = t.raw_blocks_current.wrapping_add(s.raw_blocks_current);
    t.raw_bytes_current = t.raw_bytes_current.wrapping_add(s.raw_bytes_current);
    t.arena_map_bytes += s.arena_map_bytes;
}

/// Gives a `Shared`'s slot back and unmaps it with every heap (and their arenas).
///
/// # Safety
/// Nothing uses `sh` or its heaps any more.
unsafe fn release_shared(sh: *mut Shared) {
    registry_lock();
    // SAFETY: caller contract.
    let slot = unsafe { (*sh).slot };
    SLOT_TAG[slot].store(0, Ordering::Relaxed);
    SLOT_SHARED[slot].store(core::ptr::null_mut(), Ordering::Relaxed);
    registry_unlock();
    // SAFETY: caller contract: no heap is in use; each was made by `map_one`. Dropping a heap
    // unmaps its arenas through its source, which forgets them in the still-live map.
    unsafe {
        let mut h = (*sh).heaps.load(Ordering::Relaxed);
        while !h.is_null() {
            let next = (*h).own.next;
            unmap_one(h);
            h = next;
        }
        unmap_one(sh);
    }
}

impl Drop for PyMalloc {
    /// Unmaps every heap and gives the slot back. (A `static` is never dropped.) Threads that
    /// used this value keep a stale entry in their table, which the slot's tag tells apart.
    fn drop(&mut self) {
        let sh = *self.shared.get_mut();
        if !sh.is_null() {
            // SAFETY: `&mut self`: no call on this value runs or will run.
            unsafe { release_shared(sh) };
        }
    }
}

impl Default for PyMalloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks come from a heap, aligned to at least the layout's alignment: pool blocks and
// libc blocks are aligned to the granularity (8 or 16, within malloc's guarantee), debug headers
// keep that alignment, and larger alignments go to posix_memalign; every block is at least
// `layout.size()` long; dealloc and realloc pass back blocks of this allocator, found by the
// shared arena map (pool blocks, any heap) or not (raw blocks).
unsafe impl GlobalAlloc for PyMalloc {
    /// The fast path: the calling thread's heap, marked busy, has a used pool for the class
    /// and no drain is due; everything else is a tail call out of line, so that this path
    /// makes no call and saves no register.
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size();
        if size.wrapping_sub(1) >= self.fast_threshold || layout.align() > self.fast_align {
            return self.alloc_other(layout);
        }
        let Some(th) = self.mine_fast() else {
            return self.alloc_first(layout);
        };
        if !th.enter_fast() {
            th.leave();
            return self.alloc_first(layout);
        }
        // Remote frees are taken back every `DRAIN_TICKS` allocations, and before the heap
        // would take a new pool for a class (and at thread exit, and by `stats`): the owner
        // reads the line pushers write once in a while only.
        let ticks = th.own.ticks.load(Ordering::Relaxed).wrapping_add(1);
        th.own.ticks.store(ticks, Ordering::Relaxed);
        let class = (size - 1) >> self.config.alignment_shift;
        // SAFETY: entered as the owner: the heap's only user (see `owner_op`).
        let h = unsafe { &mut *th.heap() };
        let pool = h.usedpools()[class & (MAX_CLASSES - 1)].head;
        if ticks % DRAIN_TICKS == 0 || pool.is_null() {
            // SAFETY: the calling thread has entered its heap as the owner.
            return unsafe { self.alloc_drain_entered(layout) };
        }
        // SAFETY: `pool` is the non-null head of `usedpools[class]`; this path cannot unwind.
        let p = unsafe { h.alloc_from_used(class, pool) };
        th.leave();
        p
    }

    /// The fast path: a block of the calling thread's own heap, found by that heap's own map,
    /// goes back on its pool's free list; everything else is a tail call out of line.
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        let Some(th) = self.mine_fast() else {
            // SAFETY: GlobalAlloc contract.
            return unsafe { self.dealloc_unlisted(ptr) };
        };
        if !th.enter_fast() {
            th.leave();
            // SAFETY: GlobalAlloc contract; the calling thread owns `th`.
            return unsafe { self.dealloc_owned(th, ptr) };
        }
        // SAFETY: entered as the owner: the heap's only user (see `owner_op`).
        let h = unsafe { &mut *th.heap() };
        let Some(p) = h.in_arena(ptr) else {
            th.leave();
            // SAFETY: GlobalAlloc contract; not in this thread's heap.
            return unsafe { self.dealloc_foreign(ptr) };
        };
        // SAFETY: ptr is a live block of this heap (GlobalAlloc contract, found in its map),
        // `p` re-derived from its arena; this path cannot unwind.
        let emptied = unsafe { h.free_to_pool(p) };
        if !emptied.is_null() {
            // SAFETY: entered as the owner; `emptied` just became empty.
            return unsafe { th.pool_emptied_entered(emptied) };
        }
        th.leave();
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let sh = self.shared();
        let align = layout.align();
        let in_heap = |h: &mut Heap<OwnedArenas>| {
            if align <= h.config().alignment() {
                // SAFETY: GlobalAlloc contract: ptr is a live block of this heap.
                unsafe { h.realloc(ptr, new_size) }
            } else {
                let new = h.alloc_aligned(new_size, align);
                // SAFETY: `new` is null or a fresh block of `new_size`; `ptr` is live
                // (GlobalAlloc contract) with `layout.size()` bytes, a block of this heap.
                unsafe { moved(ptr, new, layout.size().min(new_size), |p| h.free(p)) }
            }
        };
        if sh.locked {
            return sh.locked_heap().locked_op(in_heap);
        }
        match sh.owners.lookup(ptr.addr()) {
            None if align <= sh.granularity => {
                // SAFETY: GlobalAlloc contract; in no arena, so a raw block: it stays raw.
                unsafe { sh.raw_realloc(ptr, new_size) }
            }
            None => {
                let new = sh.raw_alloc(new_size, align);
                // SAFETY: `new` is null or a fresh block of `new_size`; `ptr` is a live raw
                // block (GlobalAlloc contract; in no arena) with `layout.size()` bytes.
                unsafe { moved(ptr, new, layout.size().min(new_size), |p| sh.raw_free(p)) }
            }
            Some((owner, base)) => {
                let owner = owner.cast::<ThreadHeap>();
                if owner == sh.mine_if_any() {
                    // SAFETY: the calling thread owns the heap; ptr is its live block.
                    return unsafe { (*owner).owner_op(|_, h| in_heap(h)) };
                }
                // Another heap's block: CPython's rule (keep it when the new size still fits
                // and is over 3/4 of the block), else a new block here and a remote free.
                let p = base.with_addr(ptr.addr());
                // SAFETY: `p` is a live block of this value (GlobalAlloc contract).
                let block = unsafe { self.block_size(p) }.unwrap_or(0);
                if align <= sh.granularity && new_size <= block && 4 * new_size > 3 * block {
                    return ptr;
                }
                // SAFETY: new_size > 0 and align a power of two (GlobalAlloc contract).
                let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, align)) };
                if !new.is_null() {
                    // SAFETY: both blocks live and distinct; the copy fits in both; `p` is a
                    // live block of `owner`'s heap with its arena's provenance, freed once.
                    unsafe {
                        core::ptr::copy_nonoverlapping(p, new, block.min(new_size));
                        (*owner).remote_free(p);
                    }
                }
                new
            }
        }
    }
}
