//! A panic inside a `PyMalloc` call stops the process with a message instead of deadlocking.
//!
//! The panic hook allocates (its message, `RUST_BACKTRACE`, the thread's name) while the panicking
//! thread still holds the allocator's lock. The lock records its owner, so that re-entry is
//! detected: the process writes `pymalloc: fatal error: ...` to stderr and aborts. Each case runs
//! in a child process (this test binary again) that must end by `SIGABRT` within
//! `PYMALLOC_CHILD_TIMEOUT_MS` milliseconds (default 10,000); before the fix it hung.
//!
//! The panic comes from [`PyMalloc::panic_while_locked`], a hook for this test, so the test
//! does not depend on any one panic site of the heap (a debug build's overflow checks, a
//! `debug_assert`): the mechanism must hold for every one of them.

mod common;

use common::child::Ended;
use pymalloc::PyMalloc;

#[global_allocator]
static GLOBAL: PyMalloc = PyMalloc::new();

/// Runs test `name` of this binary in a child with `PYMALLOC_PANIC_CHILD` set (see [`common::child`]).
fn run_child(name: &str) -> Option<Ended> {
    common::child::run_child(name, "PYMALLOC_PANIC_CHILD", 0)
}

fn in_child() -> bool {
    common::child::in_child("PYMALLOC_PANIC_CHILD")
}

#[test]
fn a_panic_while_the_lock_is_held_aborts_with_a_message() {
    if in_child() {
        GLOBAL.panic_while_locked();
    }
    let ended = run_child("a_panic_while_the_lock_is_held_aborts_with_a_message")
        .expect("the child hung: the panic hook waited for the lock its own thread holds");
    ended.assert_fatal_abort();
    assert!(ended.stderr.contains("aborting"), "stderr: {}", ended.stderr);
}
