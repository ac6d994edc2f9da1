//! The operating system's view of memory, read from `/proc`.
//!
//! An allocator's own counters say what it *thinks* it holds; the kernel says what is actually
//! resident. Every experiment records both, side by side, and this module is the kernel's half:
//!
//! | function | file | what it gives |
//! | --- | --- | --- |
//! | [`process`] / [`this_process`] | `/proc/<pid>/smaps_rollup` + `/proc/<pid>/status` | [`ProcessMemory`]: RSS, anonymous, file, shmem, LazyFree, VmHWM |
//! | [`system`] | `/proc/meminfo` + `/proc/zoneinfo` | [`SystemMemory`]: MemAvailable, MemFree, per-CPU free pages |
//!
//! Why two files per process: `smaps_rollup` walks the page tables, so its `Rss`, `Anonymous`
//! and `LazyFree` are exact at the moment of reading. The counters in `status` (`VmRSS`,
//! `RssAnon`, `RssFile`, `RssShmem`) are cheaper but kept per CPU and folded in lazily, so they
//! can lag by a few hundred KiB; `VmHWM` (the peak) exists only there. [`ProcessMemory::rss_bytes`]
//! is therefore the `smaps_rollup` figure, and the `status` ones are kept beside it, named as such.
//!
//! Why per-CPU pages: when a process frees memory, the kernel first puts the pages on per-CPU
//! free lists ("pagesets"); `MemFree` counts them, but a figure taken just after a big exit can
//! move by the size of those lists. [`SystemMemory::pcp_free_bytes`] sums the `count:` lines of
//! every pageset in `/proc/zoneinfo`, so an experiment can say how much of a change is that.
//!
//! Reading allocates only through the *process's* global allocator: arenalab's binary keeps
//! `System` as its global allocator and workloads call the allocator under test directly through
//! `lineup::Allocator::global()`, so a measurement never disturbs the allocator it measures.
//! All figures are bytes, as `u64`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Memory of one process, as the kernel sees it. All fields in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMemory {
    /// Resident set size: `Rss` of `smaps_rollup` (exact, from a page-table walk).
    pub rss_bytes: u64,
    /// Resident anonymous memory (heap, mmap'd arenas): `Anonymous` of `smaps_rollup`.
    pub anon_bytes: u64,
    /// Pages marked `MADV_FREE` the kernel has not yet taken back: `LazyFree` of `smaps_rollup`.
    /// They still count in RSS until memory pressure reclaims them.
    pub lazyfree_bytes: u64,
    /// Resident file-backed memory (the binary, shared libraries): `RssFile` of `status`.
    pub file_bytes: u64,
    /// Resident shared memory: `RssShmem` of `status`.
    pub shmem_bytes: u64,
    /// `VmRSS` of `status` (the kernel's cheaper, slightly lagging RSS counter).
    pub vm_rss_bytes: u64,
    /// `VmHWM` of `status`: the peak RSS over the process's life.
    pub vm_hwm_bytes: u64,
}

/// Memory of the whole machine. All fields in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMemory {
    /// `MemTotal` of `/proc/meminfo`.
    pub mem_total_bytes: u64,
    /// `MemAvailable`: the kernel's estimate of memory a new program can get without swapping.
    pub mem_available_bytes: u64,
    /// `MemFree`: pages on no use at all (includes the per-CPU free lists).
    pub mem_free_bytes: u64,
    /// Free pages sitting on per-CPU lists, summed over all zones and CPUs (`/proc/zoneinfo`).
    pub pcp_free_bytes: u64,
}

/// The memory of process `pid`.
///
/// Fails (as [`Error::Failed`]) when the process does not exist, has exited (a zombie has no
/// memory map) or cannot be read.
pub fn process(pid: i32) -> Result<ProcessMemory> {
    read_process(&format!("/proc/{pid}"))
}

/// The memory of the calling process.
pub fn this_process() -> Result<ProcessMemory> {
    read_process("/proc/self")
}

fn read_process(dir: &str) -> Result<ProcessMemory> {
    let rollup = read(&format!("{dir}/smaps_rollup"))?;
    let status = read(&format!("{dir}/status"))?;
    let r = |key: &str| kib_field(&rollup, key);
    let s = |key: &str| kib_field(&status, key);
    let need = |v: Option<u64>, key: &str, file: &str| {
        v.ok_or_else(|| Error::Failed(format!("{dir}/{file}: no `{key}` line")))
    };
    Ok(ProcessMemory {
        rss_bytes: need(r("Rss:"), "Rss", "smaps_rollup")?,
        anon_bytes: need(r("Anonymous:"), "Anonymous", "smaps_rollup")?,
        lazyfree_bytes: r("LazyFree:").unwrap_or(0),
        file_bytes: s("RssFile:").unwrap_or(0),
        shmem_bytes: s("RssShmem:").unwrap_or(0),
        vm_rss_bytes: need(s("VmRSS:"), "VmRSS", "status")?,
        vm_hwm_bytes: need(s("VmHWM:"), "VmHWM", "status")?,
    })
}

/// The machine's memory now: `/proc/meminfo` and the per-CPU free lists of `/proc/zoneinfo`.
pub fn system() -> Result<SystemMemory> {
    let meminfo = read("/proc/meminfo")?;
    let need = |key: &str| {
        kib_field(&meminfo, key)
            .ok_or_else(|| Error::Failed(format!("/proc/meminfo: no `{key}` line")))
    };
    Ok(SystemMemory {
        mem_total_bytes: need("MemTotal:")?,
        mem_available_bytes: need("MemAvailable:")?,
        mem_free_bytes: need("MemFree:")?,
        pcp_free_bytes: pcp_free_pages()? * page_size(),
    })
}

/// Free pages on the per-CPU lists of every zone: the sum of the `count:` lines that follow a
/// `pagesets` line in `/proc/zoneinfo` (a zone's other `count` fields are not under `pagesets`).
pub fn pcp_free_pages() -> Result<u64> {
    Ok(sum_pageset_counts(&read("/proc/zoneinfo")?))
}

/// The sum of per-CPU `count:` lines in zoneinfo text; separated out so it can be tested on a
/// fixed sample.
pub fn sum_pageset_counts(zoneinfo: &str) -> u64 {
    let mut in_pagesets = false;
    let mut total = 0;
    for line in zoneinfo.lines() {
        let t = line.trim_start();
        if t.starts_with("Node ") {
            in_pagesets = false;
        } else if t == "pagesets" {
            in_pagesets = true;
        } else if in_pagesets && let Some(v) = t.strip_prefix("count:") {
            total += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// The kernel page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// Bytes → MiB as a float, for tables.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Signed difference `after − before` in MiB, for "above baseline" columns.
pub fn mib_above(after: u64, before: u64) -> f64 {
    (after as f64 - before as f64) / (1u64 << 20) as f64
}

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Failed(format!("reading {path}: {e}")))
}

/// The value of a `Key:   1234 kB` line, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|rest| {
        let v = rest.trim().trim_end_matches("kB").trim();
        v.parse::<u64>().ok().map(|kib| kib * 1024)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_are_read_in_bytes() {
        let text = "Rss:                1708 kB\nAnonymous:           116 kB\nLazyFree:     0 kB\n";
        assert_eq!(kib_field(text, "Rss:"), Some(1708 * 1024));
        assert_eq!(kib_field(text, "Anonymous:"), Some(116 * 1024));
        assert_eq!(kib_field(text, "Swap:"), None);
    }

    #[test]
    fn only_pageset_counts_are_summed() {
        let zi = "Node 0, zone   Normal\n  pages free     100\n        count:   7\n  pagesets\n    cpu: 0\n              count:    3690\n              high:     5083\n    cpu: 1\n              count:    4138\nNode 0, zone  Movable\n        count: 99\n";
        assert_eq!(sum_pageset_counts(zi), 3690 + 4138);
    }

    #[test]
    fn this_process_reads_plausible_figures() {
        let m = this_process().unwrap();
        assert!(m.rss_bytes > 0 && m.anon_bytes <= m.rss_bytes);
        assert!(m.vm_hwm_bytes >= m.vm_rss_bytes);
        let s = system().unwrap();
        assert!(s.mem_available_bytes <= s.mem_total_bytes && s.mem_free_bytes > 0);
    }
}
