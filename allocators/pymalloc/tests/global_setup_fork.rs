//! A fork by another thread while the first `PyMalloc` call sets up the process, just after
//! the fork handlers are registered: the child must know the thread-exit key.
//!
//! Before the fix the key was stored only after `pthread_atfork` returned. A child forked in
//! between ran the child handler, which marks the setup done, and kept key 0: its threads'
//! first calls then set the value of pthread key 0, another library's key (here this test's).
//! The window is made certain, not likely: this binary defines `pthread_atfork` itself (glibc
//! links it statically from `libc_nonshared.a`, so the executable's own definition is the one
//! pymalloc calls), registers the handlers as glibc's does, and has another thread fork before
//! returning. Deterministic: failed in every run before the fix.
//!
//! No `PyMalloc` is the global allocator here: the first call must be this test's.

use pymalloc::PyMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static PY: PyMalloc = PyMalloc::new();

/// Set once the test is ready for the fork.
static ARMED: AtomicBool = AtomicBool::new(false);
/// Set by `pthread_atfork` (below) once the handlers are registered: the forking thread forks.
static FORK_NOW: AtomicBool = AtomicBool::new(false);
/// The child's pid once forked (in the parent).
static FORKED: AtomicI32 = AtomicI32::new(0);

type Handler = Option<unsafe extern "C" fn()>;

unsafe extern "C" {
    /// glibc's registration function behind `pthread_atfork`.
    fn __register_atfork(
        prepare: Handler,
        parent: Handler,
        child: Handler,
        dso: *mut libc::c_void,
    ) -> libc::c_int;
    /// The executable's DSO handle (from crtbegin), which glibc's `pthread_atfork` passes.
    static __dso_handle: *mut libc::c_void;
}

/// `pthread_atfork` as glibc's `libc_nonshared.a` defines it, then (once armed) a fork by
/// another thread before returning.
///
/// # Safety
/// As `pthread_atfork(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_atfork(
    prepare: Handler,
    parent: Handler,
    child: Handler,
) -> libc::c_int {
    // SAFETY: the caller's handlers, registered as glibc's own `pthread_atfork` does.
    let rc = unsafe { __register_atfork(prepare, parent, child, __dso_handle) };
    if ARMED.load(Ordering::Acquire) {
        FORK_NOW.store(true, Ordering::Release);
        while FORKED.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
    }
    rc
}

#[test]
fn a_fork_during_setup_leaves_the_child_the_exit_key() {
    // A key of this test, made before pymalloc's: key 0 when the process has made none yet.
    let mut mine: libc::pthread_key_t = 0;
    // SAFETY: a valid out-pointer; no destructor.
    assert_eq!(unsafe { libc::pthread_key_create(&mut mine, None) }, 0);
    ARMED.store(true, Ordering::Release);
    let forker = std::thread::spawn(move || {
        while !FORK_NOW.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: fork; the child calls only async-signal-safe functions and pymalloc (whose
        // fork handlers made it ready) before `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let l = Layout::from_size_align(16, 8).unwrap();
            // SAFETY: a non-zero size; the first call on PY in the child, from this thread.
            let p = unsafe { PY.alloc(l) };
            // SAFETY: a live key of this process.
            let clobbered = !unsafe { libc::pthread_getspecific(mine) }.is_null();
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(if p.is_null() { 3 } else { clobbered as i32 }) };
        }
        assert!(pid > 0, "fork failed");
        FORKED.store(pid, Ordering::Release);
        let mut status = 0;
        // SAFETY: a child of this process; a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    });
    let l = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: a non-zero size; freed once with the same layout. The process's first PyMalloc
    // call: it registers the fork handlers, and the thread above forks then.
    unsafe { PY.dealloc(PY.alloc(l), l) };
    let status = forker.join().unwrap();
    assert!(libc::WIFEXITED(status), "the child died: status {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's first call set the value of key {mine}, not pymalloc's exit key"
    );
}
