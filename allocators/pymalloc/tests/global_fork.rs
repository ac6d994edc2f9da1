//! `fork()` while other threads allocate, with pymalloc as the process's `#[global_allocator]`.
//!
//! Three threads allocate and free without pause while the main thread forks 200 times. Each
//! child allocates boxes, strings and vectors on both sides of the 512-byte threshold (pool
//! blocks and raw blocks), checks them, frees them and leaves with `_exit(0)`. Without fork
//! handlers a child inherits the lock held by a thread that does not exist in it and waits
//! forever; with them every child exits at once. In the child, the heaps of the three threads
//! (which are not in it) are abandoned and only the forking thread's is owned.
//!
//! A child that has not exited after `PYMALLOC_FORK_TIMEOUT_MS` milliseconds (default 10,000)
//! is killed and counted as hung.

use pymalloc::PyMalloc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: PyMalloc = PyMalloc::new();

const CHILDREN: usize = 200;

/// What became of one child.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Signalled(i32),
    Hung,
}

/// Runs in the child: allocates across the threshold, checks, frees. Never panics (a panic
/// would print through a stderr lock another thread may have held at the fork): a wrong byte
/// is exit code 1.
fn child_body() -> ! {
    // The other threads are not in the child: their heaps are abandoned there
    // (consistent, for the child's own threads to adopt), and only this thread owns one.
    let heaps = GLOBAL.heap_count();
    let mut ok = heaps.abandoned + 1 == heaps.heaps;
    for &size in &[1usize, 8, 24, 100, 511, 512, 513, 1000, 4096, 70_000] {
        let v: Vec<u8> = (0..size).map(|i| i as u8).collect();
        let s = "x".repeat(size);
        let b = Box::new([size as u64; 8]);
        ok &= v.iter().enumerate().all(|(i, &x)| x == i as u8);
        ok &= s.len() == size && s.bytes().all(|c| c == b'x');
        ok &= b.iter().all(|&x| x == size as u64);
    }
    let mut grown = Vec::new();
    for i in 0..2_000u32 {
        grown.push(i); // reallocs from 16 bytes through the threshold to 8 KiB
    }
    ok &= grown.iter().enumerate().all(|(i, &x)| x == i as u32);
    drop(grown);
    // SAFETY: _exit ends the child without running the parent's atexit handlers or
    // destructors, which belong to the parent's threads.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Waits for `pid` up to `timeout`, polling; kills it if it has not exited by then.
fn wait_for(pid: libc::pid_t, timeout: Duration) -> Outcome {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            if libc::WIFEXITED(status) {
                return Outcome::Exited(libc::WEXITSTATUS(status));
            }
            return Outcome::Signalled(libc::WTERMSIG(status));
        }
        if start.elapsed() > timeout {
            // SAFETY: pid is our child, not yet reaped; the blocking wait reaps it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Outcome::Hung;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn children_forked_while_three_threads_allocate_all_exit() {
    let timeout = Duration::from_millis(
        std::env::var("PYMALLOC_FORK_TIMEOUT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000),
    );
    let stop = AtomicBool::new(false);
    let work = AtomicU64::new(0);
    let outcomes = std::thread::scope(|s| {
        for t in 0..3u64 {
            let (stop, work) = (&stop, &work);
            s.spawn(move || {
                let mut keep: Vec<Vec<u64>> = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let len = ((i * 7 + t * 13) % 120) as usize + 1; // 8..960 bytes
                    keep.push(vec![i; len]);
                    if keep.len() > 64 {
                        let v = keep.swap_remove((i % 64) as usize);
                        assert!(v.iter().all(|&x| x == v[0]));
                    }
                    i += 1;
                }
                work.fetch_add(i, Ordering::Relaxed);
            });
        }
        let mut outcomes = Vec::with_capacity(CHILDREN);
        for _ in 0..CHILDREN {
            // SAFETY: the child only allocates through the global allocator (made fork-safe by
            // its handlers) and leaves with _exit; it touches no lock of the parent's threads.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                child_body();
            }
            outcomes.push(wait_for(pid, timeout));
        }
        stop.store(true, Ordering::Relaxed);
        outcomes
    });
    let hung = outcomes.iter().filter(|o| **o == Outcome::Hung).count();
    let clean = outcomes.iter().filter(|o| **o == Outcome::Exited(0)).count();
    eprintln!(
        "{clean} of {CHILDREN} children exited 0, {hung} hung; the threads did {} allocations",
        work.load(Ordering::Relaxed)
    );
    assert!(work.load(Ordering::Relaxed) > 0);
    assert_eq!(clean, CHILDREN, "outcomes other than exit 0: {:?}", {
        let mut other: Vec<_> = outcomes.iter().filter(|o| **o != Outcome::Exited(0)).collect();
        other.dedup();
        other
    });
    GLOBAL.check_invariants().unwrap();
}
