//! jemalloc: `stats.*` after an `epoch` advance, `thread.tcache.flush` + `arena.<all>.purge`,
//! and the decay times.

use crate::{Allocator, AllocatorStats, Knob, Release};
use core::ffi::c_char;
use tikv_jemalloc_ctl::{epoch, stats};

/// `MALLCTL_ARENAS_ALL`: the arena index that addresses every arena at once.
const MALLCTL_ARENAS_ALL: u32 = 4096;

pub(crate) const KNOBS: &[Knob] = &[
    Knob {
        name: "dirty_decay_ms",
        description: "freed (dirty) pages decay to muzzy over this time; 0 purges at once, -1 never \
                      (set for new arenas and every existing one)",
        unit: "ms",
        default: Some(10_000),
        min: -1,
        max: i32::MAX as i64,
    },
    Knob {
        name: "muzzy_decay_ms",
        description: "muzzy (MADV_FREE'd) pages are released over this time; 0 at once, -1 never \
                      (set for new arenas and every existing one)",
        unit: "ms",
        default: Some(0),
        min: -1,
        max: i32::MAX as i64,
    },
];

pub(crate) fn stats() -> AllocatorStats {
    // The stats are cached; advancing the epoch refreshes them. An error here would leave the
    // figures one epoch old, which the readings below still report faithfully.
    let _ = epoch::advance();
    let figures = [
        ("stats.allocated", stats::allocated::read()),
        ("stats.active", stats::active::read()),
        ("stats.metadata", stats::metadata::read()),
        ("stats.resident", stats::resident::read()),
        ("stats.mapped", stats::mapped::read()),
        ("stats.retained", stats::retained::read()),
    ];
    let counters = figures
        .iter()
        .filter_map(|(k, v)| v.as_ref().ok().map(|&v| (k.to_string(), v as u64)))
        .collect::<std::collections::BTreeMap<_, _>>();
    AllocatorStats {
        allocator: Allocator::Jemalloc,
        in_use_bytes: counters.get("stats.allocated").copied(),
        held_bytes: counters.get("stats.resident").copied(),
        counters,
    }
}

/// Calls a mallctl that takes and returns nothing (`thread.tcache.flush`, `arena.<i>.purge`).
fn void_ctl(name: &str) -> Result<(), String> {
    let cname = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: the name is NUL-terminated; a void mallctl takes null old/new pointers and zero size.
    let r = unsafe {
        tikv_jemalloc_sys::mallctl(
            cname.as_ptr() as *const c_char,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            0,
        )
    };
    if r == 0 { Ok(()) } else { Err(format!("{name}: error {r}")) }
}

pub(crate) fn release() -> Release {
    let call = "thread.tcache.flush + arena.<all>.purge".to_string();
    let purge = format!("arena.{MALLCTL_ARENAS_ALL}.purge");
    match void_ctl("thread.tcache.flush").and_then(|()| void_ctl(&purge)) {
        Ok(()) => Release::Called {
            call,
            outcome: "flushed this thread's cache and purged dirty and muzzy pages of every arena"
                .into(),
        },
        Err(error) => Release::Failed { call, error },
    }
}

/// Writes an `ssize_t` mallctl; returns jemalloc's error code (0 on success).
fn write_ssize(name: &str, mut value: isize) -> i32 {
    let Ok(cname) = std::ffi::CString::new(name) else { return libc::EINVAL };
    // SAFETY: the name is NUL-terminated; newp points to a live ssize_t of the size passed, and
    // no old value is asked for.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            cname.as_ptr() as *const c_char,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            (&mut value as *mut isize).cast(),
            core::mem::size_of::<isize>(),
        )
    }
}

/// Sets `arenas.<knob>` (the default of arenas created later) and `arena.<i>.<knob>` for every
/// existing arena, so the setting takes effect now and later.
pub(crate) fn set_knob(knob: &Knob, value: i64) -> Result<(), String> {
    let v = isize::try_from(value).map_err(|_| format!("{value} does not fit ssize_t"))?;
    let name = format!("arenas.{}", knob.name);
    match write_ssize(&name, v) {
        0 => {}
        e => return Err(format!("{name}: error {e}")),
    }
    let narenas = tikv_jemalloc_ctl::arenas::narenas::read().map_err(|e| e.to_string())?;
    for i in 0..narenas {
        let name = format!("arena.{i}.{}", knob.name);
        match write_ssize(&name, v) {
            // EFAULT: an arena index below narenas that was never initialised; nothing to set.
            0 | libc::EFAULT => {}
            e => return Err(format!("{name}: error {e}")),
        }
    }
    Ok(())
}
