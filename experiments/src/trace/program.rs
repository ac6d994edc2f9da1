//! A trace compiled into a replayable program: addresses replaced by slot numbers.
//!
//! The recorded addresses mean nothing to another allocator; what matters is which call's block
//! a later `free` or `realloc` names. Compiling resolves that once: every live block gets a
//! *slot* (a small integer, reused after the block is freed, so there are only as many slots as
//! blocks were ever live at once), and each call becomes a few `u64` words naming slots. A
//! replayer then needs only an array of slots, no hash table, which keeps its bookkeeping tiny
//! and lets it live outside the allocator under test.
//!
//! | op | words |
//! |---|---|
//! | alloc | `ALLOC | slot << 3`, size, place |
//! | calloc | `CALLOC | slot << 3`, size (nelem × elsize), place |
//! | realloc | `REALLOC | slot << 3`, size, place (the slot is empty when the call had no block) |
//! | free | `FREE | slot << 3` |
//! | arena mapped | `ARENA | (address mod 2^32) << 3` |
//! | mark | `MARK | index << 3` |
//!
//! *place* is where the interpreter put the block: `rank << 32 | offset`, the rank of its arena
//! in the order arenas were mapped and the offset inside it, or [`RAW`] for a block outside
//! every arena (the raw allocator). The model replay checks that its own blocks land at the
//! same places.

use super::format::{Event, FormatError, Header, Reader, Source, read_header};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Op kinds (low 3 bits of an op's first word).
pub mod op {
    /// Allocate `size` into the slot.
    pub const ALLOC: u64 = 0;
    /// Allocate zeroed memory.
    pub const CALLOC: u64 = 1;
    /// Resize the slot's block (or allocate when the slot is empty).
    pub const REALLOC: u64 = 2;
    /// Free the slot's block.
    pub const FREE: u64 = 3;
    /// The interpreter mapped an arena at this address (low 32 bits).
    pub const ARENA: u64 = 4;
    /// A mark.
    pub const MARK: u64 = 5;
}

/// The place of a block outside every arena.
pub const RAW: u64 = u64::MAX;

/// One mark of the trace: its label and the interpreter's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkText {
    /// The label.
    pub label: String,
    /// `_PyObject_DebugMallocStats` output.
    pub stats: String,
}

/// A compiled trace.
#[derive(Clone, Debug)]
pub struct Program {
    /// The trace header.
    pub header: Header,
    /// The ops.
    pub ops: Vec<u64>,
    /// Slots needed (the most blocks live at once).
    pub slots: usize,
    /// The marks, in order.
    pub marks: Vec<MarkText>,
    /// Calls into the MEM and OBJ domains.
    pub calls: u64,
    /// Arenas the interpreter mapped.
    pub arenas: u64,
    /// Frees and reallocs of blocks the recording never saw allocated (allocated before the
    /// wrappers were installed); they are left out.
    pub unknown: u64,
    /// The interpreter's exit status.
    pub status: i32,
}

/// A fast multiplicative hash for addresses (the default SipHash would dominate the compile).
#[derive(Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Live arenas by start address, with their rank in mapping order.
pub struct Arenas {
    /// Start → rank.
    pub live: BTreeMap<u64, u64>,
    /// Arena size.
    pub size: u64,
}

/// Where `addr` lies: `rank << 32 | offset` in its arena, or [`RAW`].
#[inline]
pub fn place(arenas: &Arenas, addr: u64) -> u64 {
    match arenas.live.range(..=addr).next_back() {
        Some((&start, &rank)) if addr - start < arenas.size => rank << 32 | (addr - start),
        _ => RAW,
    }
}

/// Why a trace cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The file is damaged or not a trace.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The records end without an end record.
    #[error(
        "the trace ends after {0} calls without an end record: the recording was cut short \
         (killed, or the disk filled up)"
    )]
    NoEnd(u64),
}

/// Compiles a whole trace file's bytes.
pub fn compile(data: &[u8]) -> Result<Program, CompileError> {
    let (header, start) = read_header(data)?;
    let arena_size =
        pymalloc::Layout::from_name(&header.layout).map(|l| l.config().arena_size() as u64);
    let mut real = Arenas { live: BTreeMap::new(), size: arena_size.unwrap_or(0) };
    let mut reader = Reader::with_base(&data[start..], start);
    let mut live: HashMap<u64, u64, BuildHasherDefault<AddrHasher>> = HashMap::default();
    let mut free_slots: Vec<u64> = Vec::new();
    let mut slots = 0u64;
    let mut ops = Vec::with_capacity(data.len() / 2);
    let mut marks = Vec::new();
    let (mut calls, mut arenas, mut unknown) = (0u64, 0u64, 0u64);
    let mut status = None;
    let mut take = |free_slots: &mut Vec<u64>| {
        free_slots.pop().unwrap_or_else(|| {
            slots += 1;
            slots - 1
        })
    };
    while let Some(ev) = reader.next()? {
        match ev {
            Event::Malloc { size, result, .. } => {
                calls += 1;
                if result != 0 {
                    let s = take(&mut free_slots);
                    if let Some(old) = live.insert(result, s) {
                        // Allocated twice without a free seen in between: keep the old block
                        // allocated (it was never freed as far as the trace says).
                        let _ = old;
                        unknown += 1;
                    }
                    ops.extend_from_slice(&[op::ALLOC | s << 3, size, place(&real, result)]);
                }
            }
            Event::Calloc { nelem, elsize, result, .. } => {
                calls += 1;
                if result != 0 {
                    let s = take(&mut free_slots);
                    if live.insert(result, s).is_some() {
                        unknown += 1;
                    }
                    ops.extend_from_slice(&[
                        op::CALLOC | s << 3,
                        nelem.saturating_mul(elsize),
                        place(&real, result),
                    ]);
                }
            }
            Event::Realloc { ptr, size, result, .. } => {
                calls += 1;
                if result == 0 && size == 0 && ptr != 0 && header.source == Source::Native {
                    // glibc's realloc(p, 0) frees p and returns NULL (pymalloc's never does).
                    if let Some(s) = live.remove(&ptr) {
                        ops.push(op::FREE | s << 3);
                        free_slots.push(s);
                    }
                    continue;
                }
                if result == 0 {
                    continue; // failed: the old block is untouched
                }
                let s = if ptr == 0 {
                    take(&mut free_slots)
                } else if let Some(s) = live.remove(&ptr) {
                    s
                } else {
                    unknown += 1;
                    take(&mut free_slots)
                };
                if live.insert(result, s).is_some() {
                    unknown += 1;
                }
                ops.extend_from_slice(&[op::REALLOC | s << 3, size, place(&real, result)]);
            }
            Event::Free { ptr, .. } => {
                calls += 1;
                match live.remove(&ptr) {
                    Some(s) => {
                        ops.push(op::FREE | s << 3);
                        free_slots.push(s);
                    }
                    None => unknown += 1,
                }
            }
            Event::ArenaAlloc { result, size } => {
                // CPython 3.11+ also takes its frame-stack chunks from the arena allocator
                // (`_PyObject_VirtualAlloc`); only mappings of the arena size are arenas.
                if result != 0 && arena_size.is_none_or(|a| a == size) {
                    real.live.insert(result, arenas);
                    arenas += 1;
                    ops.push(op::ARENA | (result & 0xffff_ffff) << 3);
                }
            }
            Event::ArenaFree { ptr, .. } => {
                real.live.remove(&ptr);
            }
            Event::Mark { label, stats } => {
                ops.push(op::MARK | (marks.len() as u64) << 3);
                marks.push(MarkText {
                    label: String::from_utf8_lossy(label).into_owned(),
                    stats: String::from_utf8_lossy(stats).into_owned(),
                });
            }
            Event::End { status: s } => {
                status = Some(s);
                break;
            }
        }
    }
    let Some(status) = status else { return Err(CompileError::NoEnd(calls)) };
    Ok(Program { header, ops, slots: slots as usize, marks, calls, arenas, unknown, status })
}
