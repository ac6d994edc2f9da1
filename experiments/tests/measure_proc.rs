//! The /proc probes against memory this test maps and touches itself: what RSS, anonymous and
//! LazyFree report must match what was done, within a small tolerance.

use arenalab::measure::{self, mib_above};

const MIB: usize = 1 << 20;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Mapping {
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Mapping { ptr: ptr.cast(), len }
    }
    fn touch(&self) {
        for off in (0..self.len).step_by(4096) {
            // SAFETY: off < len, inside the mapping.
            unsafe { self.ptr.add(off).write_volatile(1) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// One test function, so no other test of this binary allocates while it measures.
#[test]
fn rss_anonymous_and_lazyfree_follow_what_the_process_does() {
    let before = measure::this_process().unwrap();
    let m = Mapping::new(64 * MIB);
    let mapped = measure::this_process().unwrap();
    assert!(
        mib_above(mapped.rss_bytes, before.rss_bytes).abs() < 1.0,
        "mapping alone is not resident"
    );

    m.touch();
    let touched = measure::this_process().unwrap();
    let rss = mib_above(touched.rss_bytes, before.rss_bytes);
    let anon = mib_above(touched.anon_bytes, before.anon_bytes);
    assert!((rss - 64.0).abs() <= 3.0, "touching 64 MiB raised RSS by {rss:.2} MiB");
    assert!((anon - 64.0).abs() <= 3.0, "touching 64 MiB raised Anonymous by {anon:.2} MiB");
    assert!(touched.vm_hwm_bytes >= touched.rss_bytes - 4 * MIB as u64);

    // MADV_FREE: still resident, now counted as LazyFree until the kernel needs the pages.
    // SAFETY: the range is exactly our mapping.
    let r = unsafe { libc::madvise(m.ptr.cast(), m.len, libc::MADV_FREE) };
    assert_eq!(r, 0);
    let lazy = measure::this_process().unwrap();
    let lf = mib_above(lazy.lazyfree_bytes, before.lazyfree_bytes);
    assert!((lf - 64.0).abs() <= 3.0, "MADV_FREE of 64 MiB shows LazyFree {lf:.2} MiB");

    // MADV_DONTNEED: gone from RSS at once.
    // SAFETY: as above.
    let r = unsafe { libc::madvise(m.ptr.cast(), m.len, libc::MADV_DONTNEED) };
    assert_eq!(r, 0);
    let dropped = measure::this_process().unwrap();
    let rss = mib_above(dropped.rss_bytes, before.rss_bytes);
    assert!(rss.abs() <= 3.0, "after MADV_DONTNEED RSS is {rss:.2} MiB above the start");
    drop(m);
}

#[test]
fn another_process_can_be_read_by_pid_and_a_missing_one_is_an_error() {
    let me = std::process::id() as i32;
    assert!(measure::process(me).unwrap().rss_bytes > 0);
    // pid_max is at most 2^22 on Linux, so this pid cannot exist.
    let err = measure::process(1 << 23).unwrap_err();
    assert!(err.to_string().contains("/proc/8388608"), "{err}");
}

#[test]
fn system_figures_are_consistent() {
    let s = measure::system().unwrap();
    assert!(s.mem_free_bytes <= s.mem_total_bytes);
    assert!(s.mem_available_bytes <= s.mem_total_bytes);
    assert!(s.pcp_free_bytes <= s.mem_free_bytes);
}
