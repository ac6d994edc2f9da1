//! The same calls on glibc, mimalloc and jemalloc, each in a fresh child.
//!
//! This answers "what would this Python program keep under `PYTHONMALLOC=malloc`, or with
//! jemalloc or mimalloc preloaded": every MEM and OBJ call of the trace goes to the allocator
//! under test, in order, with the sizes the interpreter asked for. Each block is written when
//! allocated (as the interpreter writes its objects), `calloc` gets zeroed memory.
//!
//! The parent compiles the trace ([`super::program`]) and writes the ops to a file; the child
//! maps that file and keeps its slot array in its own anonymous mapping, so the only bookkeeping
//! inside the allocator under test is a few small strings when it reads its memory at a mark.

use super::program::{Program, op};
use crate::error::{Error, Result};
use lineup::{Allocator, AllocatorStats};
use serde::{Deserialize, Serialize};
use std::alloc::Layout as AllocLayout;
use std::path::{Path, PathBuf};

/// Arguments of the hidden `arenalab trace replay-child`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChildArgs {
    /// The compiled ops (written by the parent).
    #[arg(long)]
    pub ops: PathBuf,
    /// The allocator under test.
    #[arg(long)]
    pub allocator: String,
}

/// One mark on one allocator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorMark {
    /// The mark's label.
    pub label: String,
    /// Resident set size of the child (`smaps_rollup` Rss).
    pub rss_bytes: u64,
    /// Resident anonymous memory of the child.
    pub anon_bytes: u64,
    /// What the allocator says it hands out.
    pub in_use_bytes: Option<u64>,
    /// What the allocator says it holds from the OS.
    pub held_bytes: Option<u64>,
}

/// One allocator's replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocatorReplay {
    /// The allocator.
    pub allocator: String,
    /// Seconds the child took.
    pub seconds: f64,
    /// Resident memory of the child before the first call.
    pub baseline_rss_bytes: u64,
    /// One entry per mark.
    pub marks: Vec<AllocatorMark>,
}

#[derive(Serialize, Deserialize)]
struct ChildReport {
    baseline_rss_bytes: u64,
    seconds: f64,
    marks: Vec<(u64, u64, AllocatorStats)>,
}

/// Writes `p`'s ops to a temporary file: slot count, op count, ops (little-endian `u64`).
fn write_ops(p: &Program) -> Result<PathBuf> {
    let path = std::env::temp_dir().join(format!(
        "arenalab-ops-{}-{}.bin",
        std::process::id(),
        p.ops.len()
    ));
    let mut bytes = Vec::with_capacity(16 + 8 * p.ops.len());
    bytes.extend_from_slice(&(p.slots as u64).to_le_bytes());
    bytes.extend_from_slice(&(p.ops.len() as u64).to_le_bytes());
    for w in &p.ops {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    std::fs::write(&path, bytes).map_err(Error::failed(path.display()))?;
    Ok(path)
}

/// Replays `p` on `allocator` in a fresh child.
pub fn replay_program(p: &Program, allocator: Allocator) -> Result<AllocatorReplay> {
    let ops = write_ops(p)?;
    let exe = std::env::current_exe().map_err(Error::failed("finding arenalab's binary"))?;
    let report: Result<ChildReport> = crate::procs::Spawn::program(exe)
        .args(["trace", "replay-child", "--allocator", allocator.name(), "--ops"])
        .arg(&ops)
        .run_json();
    let _ = std::fs::remove_file(&ops);
    let report = report?;
    let marks = report
        .marks
        .into_iter()
        .zip(&p.marks)
        .map(|((rss, anon, s), m)| AllocatorMark {
            label: m.label.clone(),
            rss_bytes: rss,
            anon_bytes: anon,
            in_use_bytes: s.in_use_bytes,
            held_bytes: s.held_bytes,
        })
        .collect();
    Ok(AllocatorReplay {
        allocator: allocator.name().to_string(),
        seconds: report.seconds,
        baseline_rss_bytes: report.baseline_rss_bytes,
        marks,
    })
}

/// A read-only mapping of the ops file, or an anonymous zeroed mapping.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn anon(len: usize) -> Result<Mapping> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous private mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Failed("mapping the slot array failed".into()));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    fn file(path: &Path) -> Result<Mapping> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path).map_err(Error::failed(path.display()))?;
        let len = f.metadata().map_err(Error::failed(path.display()))?.len() as usize;
        if len < 16 {
            return Err(Error::Failed(format!("{}: too short", path.display())));
        }
        // SAFETY: a private read-only mapping of a file we opened; the parent does not change it
        // while the child runs.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::Failed(format!("{}: cannot map", path.display())));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The replay child: runs the ops on one allocator and prints one JSON line.
pub fn run_child(args: &ChildArgs) -> Result<()> {
    crate::procs::die_with_parent();
    let allocator = Allocator::from_name(&args.allocator)
        .ok_or_else(|| Error::Failed(format!("unknown allocator {:?}", args.allocator)))?;
    let file = Mapping::file(&args.ops)?;
    // SAFETY: the mapping is at least 16 bytes, page-aligned, and holds u64 words.
    let words: &[u64] =
        unsafe { core::slice::from_raw_parts(file.ptr.cast::<u64>(), file.len / 8) };
    let (slots_n, n) = (words[0] as usize, words[1] as usize);
    let ops = words.get(2..2 + n).ok_or_else(|| Error::Failed("ops file truncated".into()))?;
    let slots_map = Mapping::anon(slots_n * 16)?;
    // SAFETY: the anonymous mapping holds `slots_n` zeroed (ptr, size) pairs.
    let slots: &mut [(usize, usize)] =
        unsafe { core::slice::from_raw_parts_mut(slots_map.ptr.cast(), slots_n) };
    let marks_n = ops.iter().filter(|w| *w & 7 == op::MARK).count();
    let mut marks = Vec::with_capacity(marks_n);
    let a = allocator.global();
    let baseline = crate::measure::this_process()?.rss_bytes;
    let started = std::time::Instant::now();
    let layout = |size: usize| AllocLayout::from_size_align(size.max(1), 16).expect("valid");
    let mut i = 0;
    while i < ops.len() {
        let w = ops[i];
        let s = (w >> 3) as usize;
        match w & 7 {
            op::ALLOC | op::CALLOC => {
                let size = ops[i + 1] as usize;
                // SAFETY: a non-zero-size layout; the block is written within its size.
                let p = unsafe {
                    if w & 7 == op::CALLOC {
                        a.alloc_zeroed(layout(size))
                    } else {
                        let p = a.alloc(layout(size));
                        if !p.is_null() {
                            p.write_bytes(0xA5, size);
                        }
                        p
                    }
                };
                slots[s] = (p as usize, size);
                i += 2;
            }
            op::REALLOC => {
                let size = ops[i + 1] as usize;
                let (old, old_size) = slots[s];
                // SAFETY: the slot holds null or a live block of this allocator allocated with
                // `layout(old_size)`; the new part of the block is written within its size.
                let p = unsafe {
                    let p = if old == 0 {
                        a.alloc(layout(size))
                    } else {
                        a.realloc(old as *mut u8, layout(old_size), size.max(1))
                    };
                    if !p.is_null() && size > old_size {
                        p.add(old_size).write_bytes(0xA5, size - old_size);
                    }
                    p
                };
                if !p.is_null() {
                    slots[s] = (p as usize, size);
                }
                i += 2;
            }
            op::FREE => {
                let (p, size) = core::mem::take(&mut slots[s]);
                if p != 0 {
                    // SAFETY: the slot's live block, allocated with `layout(size)`, freed once.
                    unsafe { a.dealloc(p as *mut u8, layout(size)) };
                }
                i += 1;
            }
            op::ARENA => i += 1,
            _ => {
                let m = crate::measure::this_process()?;
                marks.push((m.rss_bytes, m.anon_bytes, allocator.stats()));
                i += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = ChildReport { baseline_rss_bytes: baseline, seconds, marks };
    println!("{}", serde_json::to_string(&report).expect("serialises"));
    Ok(())
}
