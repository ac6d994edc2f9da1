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
use lineup::Allocator;
use serde::{Deserialize, Serialize};
use std::alloc::Layout as AllocLayout;
use std::path::{Path, PathBuf};

/// Arguments of the hidden `arenalab trace replay-child`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChildArgs {
    /// The compiled ops (written by the parent).
    #[arg(long)]
    pub ops: PathBuf,
    /// The allocator under test: system, mimalloc, jemalloc, or pymalloc:LAYOUT.
    #[arg(long)]
    pub allocator: String,
}

/// One mark on one allocator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatorMark {
    /// The mark's label.
    pub label: String,
    /// Resident set size of the child (`smaps_rollup` Rss), less the replayer's slot array.
    pub rss_bytes: u64,
    /// Resident anonymous memory of the child, less the replayer's slot array.
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
    /// Resident anonymous memory of the child before the first call.
    pub baseline_anon_bytes: u64,
    /// One entry per mark.
    pub marks: Vec<AllocatorMark>,
}

#[derive(Serialize, Deserialize)]
struct ChildReport {
    baseline_anon_bytes: u64,
    seconds: f64,
    marks: Vec<(u64, u64, Option<u64>, Option<u64>)>,
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

/// Replays `p` in a fresh child on `allocator`: `system`, `mimalloc`, `jemalloc`, or
/// `pymalloc:LAYOUT` (the model, with real memory, measured like the others).
pub fn replay_program(p: &Program, allocator: &str) -> Result<AllocatorReplay> {
    let ops = write_ops(p)?;
    let exe = std::env::current_exe().map_err(Error::failed("finding arenalab's binary"))?;
    let report: Result<ChildReport> = crate::procs::Spawn::program(exe)
        .args(["trace", "replay-child", "--allocator", allocator, "--ops"])
        .arg(&ops)
        .run_json();
    let _ = std::fs::remove_file(&ops);
    let report = report?;
    let marks = report
        .marks
        .into_iter()
        .zip(&p.marks)
        .map(|((rss, anon, in_use, held), m)| AllocatorMark {
            label: m.label.clone(),
            rss_bytes: rss,
            anon_bytes: anon,
            in_use_bytes: in_use,
            held_bytes: held,
        })
        .collect();
    Ok(AllocatorReplay {
        allocator: allocator.to_string(),
        seconds: report.seconds,
        baseline_anon_bytes: report.baseline_anon_bytes,
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

const PAGE: usize = 4096;

impl Mapping {
    /// Bytes of this mapping resident now (`mincore`); `vec` has one byte per page.
    fn resident(&self, vec: &mut [u8]) -> u64 {
        // SAFETY: the range is our own mapping and `vec` has one entry per page of it.
        let rc = unsafe { libc::mincore(self.ptr.cast(), self.len, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * PAGE as u64
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// What the replay child allocates through: one of the lineup's allocators, or the pymalloc
/// model with the trace's layout (its blocks and arenas real memory, like the others').
trait Target {
    fn alloc(&mut self, size: usize, zeroed: bool) -> *mut u8;
    /// # Safety
    /// `p` is null or a live block of this target allocated with `old` bytes.
    unsafe fn realloc(&mut self, p: *mut u8, old: usize, size: usize) -> *mut u8;
    /// # Safety
    /// `p` is a live block of this target allocated with `size` bytes.
    unsafe fn free(&mut self, p: *mut u8, size: usize);
    /// (in use, held) as the allocator reports them.
    fn stats(&self) -> (Option<u64>, Option<u64>);
}

fn layout(size: usize) -> AllocLayout {
    AllocLayout::from_size_align(size.max(1), 16).expect("a size below isize::MAX is valid")
}

struct Lineup(Allocator);

impl Target for Lineup {
    fn alloc(&mut self, size: usize, zeroed: bool) -> *mut u8 {
        let a = self.0.global();
        // SAFETY: a non-zero-size layout.
        unsafe { if zeroed { a.alloc_zeroed(layout(size)) } else { a.alloc(layout(size)) } }
    }
    unsafe fn realloc(&mut self, p: *mut u8, old: usize, size: usize) -> *mut u8 {
        if p.is_null() {
            return self.alloc(size, false);
        }
        // SAFETY: caller contract: `p` is live, allocated with `layout(old)`.
        unsafe { self.0.global().realloc(p, layout(old), size.max(1)) }
    }
    unsafe fn free(&mut self, p: *mut u8, size: usize) {
        // SAFETY: caller contract.
        unsafe { self.0.global().dealloc(p, layout(size)) }
    }
    fn stats(&self) -> (Option<u64>, Option<u64>) {
        let s = self.0.stats();
        (s.in_use_bytes, s.held_bytes)
    }
}

struct Model(pymalloc::Heap);

impl Target for Model {
    fn alloc(&mut self, size: usize, zeroed: bool) -> *mut u8 {
        let p = self.0.alloc(size);
        if zeroed && !p.is_null() {
            // SAFETY: a fresh block of at least `size` bytes.
            unsafe { p.write_bytes(0, size) };
        }
        p
    }
    unsafe fn realloc(&mut self, p: *mut u8, _old: usize, size: usize) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe { self.0.realloc(p, size) }
    }
    unsafe fn free(&mut self, p: *mut u8, _size: usize) {
        // SAFETY: caller contract.
        unsafe { self.0.free(p) }
    }
    fn stats(&self) -> (Option<u64>, Option<u64>) {
        let s = self.0.stats();
        let raw = s.raw_bytes_current as u64;
        (Some(s.bytes_in_allocated_blocks as u64 + raw), Some(s.arena_bytes() as u64 + raw))
    }
}

/// The replay child: runs the ops on one allocator and prints one JSON line.
pub fn run_child(args: &ChildArgs) -> Result<()> {
    crate::procs::die_with_parent();
    let mut target: Box<dyn Target> = match Allocator::from_name(&args.allocator) {
        Some(Allocator::Pymalloc) | None => {
            let l = args
                .allocator
                .strip_prefix("pymalloc:")
                .and_then(pymalloc::Layout::from_name)
                .ok_or_else(|| Error::Failed(format!("unknown allocator {:?}", args.allocator)))?;
            Box::new(Model(pymalloc::Heap::new(l.config())))
        }
        Some(a) => Box::new(Lineup(a)),
    };
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
    let mut residency = vec![0u8; slots_map.len.div_ceil(PAGE)];
    let baseline = crate::measure::this_process()?.anon_bytes;
    let started = std::time::Instant::now();
    let mut i = 0;
    while i < ops.len() {
        let w = ops[i];
        let s = (w >> 3) as usize;
        match w & 7 {
            op::ALLOC | op::CALLOC => {
                let size = ops[i + 1] as usize;
                let zeroed = w & 7 == op::CALLOC;
                let p = target.alloc(size, zeroed);
                if !p.is_null() && !zeroed {
                    // SAFETY: a fresh block of at least `size` bytes.
                    unsafe { p.write_bytes(0xA5, size) };
                }
                slots[s] = (p as usize, size);
                i += 3;
            }
            op::REALLOC => {
                let size = ops[i + 1] as usize;
                let (old, old_size) = slots[s];
                // SAFETY: the slot holds null or a live block of this target of `old_size`
                // bytes; the grown part of the new block is written within its size.
                let p = unsafe {
                    let p = target.realloc(old as *mut u8, old_size, size);
                    if !p.is_null() && size > old_size {
                        p.add(old_size).write_bytes(0xA5, size - old_size);
                    }
                    p
                };
                if !p.is_null() {
                    slots[s] = (p as usize, size);
                }
                i += 3;
            }
            op::FREE => {
                let (p, size) = core::mem::take(&mut slots[s]);
                if p != 0 {
                    // SAFETY: the slot's live block of `size` bytes, freed once.
                    unsafe { target.free(p as *mut u8, size) };
                }
                i += 1;
            }
            op::ARENA => i += 1,
            _ => {
                let m = crate::measure::this_process()?;
                let (in_use, held) = target.stats();
                // The slot array is this replayer's bookkeeping, not the allocator's memory.
                let own = slots_map.resident(&mut residency);
                marks.push((
                    m.rss_bytes.saturating_sub(own),
                    m.anon_bytes.saturating_sub(own),
                    in_use,
                    held,
                ));
                i += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = ChildReport { baseline_anon_bytes: baseline, seconds, marks };
    println!("{}", serde_json::to_string(&report).expect("serialises"));
    Ok(())
}
