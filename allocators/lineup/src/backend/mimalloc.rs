//! mimalloc (bundled v3): `mi_process_info`, a visit of the main heap's pages, `mi_collect`,
//! `mi_option_set`.
//!
//! The bundled build has `MI_STAT=0`, so mimalloc does not count allocated bytes on its fast
//! path (`malloc_normal` stays 0). The in-use figure is therefore computed by visiting every page
//! area of the main heap (`mi_heap_visit_blocks` without visiting blocks) and summing
//! `used blocks × block size`. That walk is exact when no other thread allocates from mimalloc
//! meanwhile, which holds for arenalab's single-threaded workers.
//!
//! The held figure is mimalloc's commit count. On Linux mimalloc purges free memory with
//! `madvise(MADV_DONTNEED)` and does not count that as a decommit (the pages need no explicit
//! recommit), so after a purge the commit figure stays where it was while the resident set falls:
//! read the OS's RSS beside it.

use crate::{Allocator, AllocatorStats, Knob, Release};
use core::ffi::c_void;
use libmimalloc_sys as mi;

/// `mi_option_purge_delay` in the bundled v3 `mimalloc.h` (enum position 15; the Rust bindings do
/// not name it for v3).
const MI_OPTION_PURGE_DELAY: mi::mi_option_t = 15;

pub(crate) const KNOBS: &[Knob] = &[Knob {
    name: "purge_delay",
    description: "freed pages are decommitted this long after they become free; 0 at once, -1 never",
    unit: "ms",
    // options.c of the bundled v3: `{ 1000, ..., purge_delay }`.
    default: Some(1000),
    min: -1,
    max: i32::MAX as i64,
}];

/// Bytes and blocks in use, summed over the heap's page areas.
#[derive(Default)]
struct Usage {
    areas: u64,
    used_blocks: u64,
    used_bytes: u64,
    committed_bytes: u64,
    reserved_bytes: u64,
}

/// Called once per page area (block is null because we do not ask for blocks).
unsafe extern "C" fn visit_area(
    _heap: *const mi::mi_heap_t,
    area: *const mi::mi_heap_area_t,
    _block: *mut c_void,
    _block_size: usize,
    arg: *mut c_void,
) -> bool {
    // SAFETY: mimalloc passes a valid area for the duration of the call, and `arg` is the
    // `&mut Usage` that `stats` passed to `mi_heap_visit_blocks`, alive and not otherwise borrowed.
    let (area, usage) = unsafe { (&*area, &mut *(arg as *mut Usage)) };
    usage.areas += 1;
    usage.used_blocks += area.used as u64;
    usage.used_bytes += (area.used * area.block_size) as u64;
    usage.committed_bytes += area.committed as u64;
    usage.reserved_bytes += area.reserved as u64;
    true
}

pub(crate) fn stats() -> AllocatorStats {
    let mut f = [0usize; 8];
    let [elapsed, user, system, rss, peak_rss, commit, peak_commit, faults] = &mut f;
    // SAFETY: every pointer is to a distinct live local `usize`, as mi_process_info expects.
    unsafe {
        mi::mi_process_info(elapsed, user, system, rss, peak_rss, commit, peak_commit, faults)
    };
    let mut usage = Usage::default();
    // SAFETY: a null heap means the main heap; the visitor matches mimalloc's signature and `arg`
    // points to `usage`, which outlives the call.
    let complete = unsafe {
        mi::mi_heap_visit_blocks(
            core::ptr::null_mut(),
            false,
            Some(visit_area),
            (&mut usage as *mut Usage).cast(),
        )
    };
    let counters = [
        ("process.rss_current", f[3] as u64),
        ("process.rss_peak", f[4] as u64),
        ("process.commit_current", f[5] as u64),
        ("process.commit_peak", f[6] as u64),
        ("process.page_faults", f[7] as u64),
        ("heap.areas", usage.areas),
        ("heap.used_blocks", usage.used_blocks),
        ("heap.used_bytes", usage.used_bytes),
        ("heap.committed_bytes", usage.committed_bytes),
        ("heap.reserved_bytes", usage.reserved_bytes),
        ("heap.visit_complete", complete as u64),
    ];
    AllocatorStats {
        allocator: Allocator::Mimalloc,
        in_use_bytes: Some(usage.used_bytes),
        held_bytes: Some(f[5] as u64),
        counters: counters.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
    }
}

pub(crate) fn release() -> Release {
    // SAFETY: mi_collect only walks mimalloc's own structures; it takes no pointer.
    unsafe { mi::mi_collect(true) };
    Release::Called {
        call: "mi_collect(true)".into(),
        outcome: "collected this thread's free pages and purged free memory".into(),
    }
}

pub(crate) fn set_knob(knob: &Knob, value: i64) -> Result<(), String> {
    let option = match knob.name {
        "purge_delay" => MI_OPTION_PURGE_DELAY,
        other => return Err(format!("no mimalloc option for {other}")),
    };
    let v =
        core::ffi::c_long::try_from(value).map_err(|_| format!("{value} does not fit a long"))?;
    // SAFETY: mi_option_set stores a value for a valid option index; it takes no pointer.
    unsafe { mi::mi_option_set(option, v) };
    // SAFETY: as above, a read of the same option.
    let now = unsafe { mi::mi_option_get(option) };
    if now == v { Ok(()) } else { Err(format!("mimalloc kept {now}")) }
}
