//! glibc `malloc`: `mallinfo2`, `malloc_trim`, `mallopt`.

use crate::{Allocator, AllocatorStats, Knob, Release};
use std::collections::BTreeMap;

/// glibc's knobs (`mallopt` parameters). Setting either turns off glibc's dynamic adjustment of
/// both thresholds (which otherwise follows the largest freed mmapped chunk).
pub(crate) const KNOBS: &[Knob] = &[
    Knob {
        name: "M_MMAP_THRESHOLD",
        description: "requests at least this large get their own mmap and are unmapped at free",
        unit: "bytes",
        default: Some(128 * 1024),
        min: 0,
        // HEAP_MAX_SIZE / 2 on 64-bit: glibc's mallopt refuses more.
        max: 32 * 1024 * 1024,
    },
    Knob {
        name: "M_TRIM_THRESHOLD",
        description: "free space at the top of the heap beyond this is returned to the OS at free",
        unit: "bytes",
        default: Some(128 * 1024),
        min: 0,
        max: i32::MAX as i64,
    },
];

pub(crate) fn stats() -> AllocatorStats {
    // SAFETY: mallinfo2 takes no arguments and only reads malloc's state under its locks.
    let mi = unsafe { libc::mallinfo2() };
    let fields = [
        ("arena", mi.arena),
        ("ordblks", mi.ordblks),
        ("smblks", mi.smblks),
        ("hblks", mi.hblks),
        ("hblkhd", mi.hblkhd),
        ("usmblks", mi.usmblks),
        ("fsmblks", mi.fsmblks),
        ("uordblks", mi.uordblks),
        ("fordblks", mi.fordblks),
        ("keepcost", mi.keepcost),
    ];
    let counters: BTreeMap<String, u64> =
        fields.iter().map(|&(k, v)| (k.to_string(), v as u64)).collect();
    AllocatorStats {
        allocator: Allocator::System,
        // uordblks: bytes in chunks handed out from the arenas; hblkhd: bytes in mmapped chunks.
        in_use_bytes: Some(mi.uordblks as u64 + mi.hblkhd as u64),
        // arena: bytes obtained with brk/mmap for all arenas; hblkhd: the mmapped chunks.
        held_bytes: Some(mi.arena as u64 + mi.hblkhd as u64),
        counters,
    }
}

pub(crate) fn release() -> Release {
    // SAFETY: malloc_trim only takes malloc's locks and madvises free pages; no pointer is passed.
    let r = unsafe { libc::malloc_trim(0) };
    let outcome = if r == 1 {
        "returned 1 (memory was released)"
    } else {
        "returned 0 (nothing could be released)"
    };
    Release::Called { call: "malloc_trim(0)".into(), outcome: outcome.into() }
}

pub(crate) fn set_knob(knob: &Knob, value: i64) -> Result<(), String> {
    let param = match knob.name {
        "M_MMAP_THRESHOLD" => libc::M_MMAP_THRESHOLD,
        "M_TRIM_THRESHOLD" => libc::M_TRIM_THRESHOLD,
        other => return Err(format!("no mallopt parameter for {other}")),
    };
    let v = i32::try_from(value).map_err(|_| format!("{value} does not fit mallopt's int"))?;
    // SAFETY: mallopt takes two ints and validates them itself.
    match unsafe { libc::mallopt(param, v) } {
        1 => Ok(()),
        r => Err(format!("mallopt returned {r}")),
    }
}
