//! The fuzz driver, shared by the cargo-fuzz target (`fuzz_targets/heap_ops.rs`) and the plain
//! test that replays a fixed corpus (`tests/fuzz_corpus.rs`).
//!
//! An input's first byte picks one of the [`COMBOS`] layouts: preset × arena policy × debug
//! on/off × arena source. The rest is a sequence of operations, each a tag byte and its
//! arguments (a missing byte reads as 0): allocate, free, realloc, allocate aligned, a burst of
//! allocations, a sweep of frees. Every block is filled with a pattern of its own; a block's
//! pattern is checked before it is freed or resized (the bytes kept by a realloc after it),
//! and every [`CHECK_EVERY`] operations the heap's invariants hold, no two live blocks overlap,
//! every block is aligned and holds its pattern. At the end every block is freed and the heap
//! must be empty: no block in use, no raw block, and no arena left without the keep-one rule.

use crate::common::{Placed, Placement, fill, holds};
use pymalloc::os::Cached;
use pymalloc::{ArenaPolicy, ArenaSource, Config, Heap, Mmap, Preset};

/// Operations between full checks.
pub const CHECK_EVERY: usize = 8;
/// Live blocks at most (a burst stops there), to bound the work per input.
const MAX_LIVE: usize = 4096;
/// Arena sources.
const SOURCES: usize = 4;
/// Layouts: presets × policies × debug × sources.
pub const COMBOS: usize = Preset::ALL.len() * 2 * 2 * SOURCES;

/// Runs one fuzz input: the first byte picks the layout.
pub fn run(data: &[u8]) {
    let Some((&first, ops)) = data.split_first() else { return };
    run_combo(first as usize % COMBOS, ops);
}

/// Runs the operations `ops` under layout number `combo` (below [`COMBOS`]).
pub fn run_combo(combo: usize, ops: &[u8]) {
    let preset = Preset::ALL[combo % Preset::ALL.len()];
    let rest = combo / Preset::ALL.len();
    let policy = [ArenaPolicy::MostUsedFirst, ArenaPolicy::NewestFirst][rest % 2];
    let debug = (rest / 2) % 2 == 1;
    let config = Config::builder(preset).policy(policy).debug(debug).build().unwrap();
    let pool = config.pool_size();
    match rest / 4 {
        0 => drive(Heap::with_source(config, Mmap), ops),
        1 => drive(Heap::with_source(config, Cached::new(4)), ops),
        2 => drive(Heap::with_source(config, Placed::new(Placement::Misaligned, pool)), ops),
        _ => drive(Heap::with_source(config, Placed::new(Placement::PoolAligned, pool)), ops),
    }
}

struct Live {
    ptr: *mut u8,
    size: usize,
    align: usize,
    seed: u64,
}

/// A reader of argument bytes: 0 past the end.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> usize {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b as usize
    }
    fn u16(&mut self) -> usize {
        self.u8() | self.u8() << 8
    }
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

fn drive<S: ArenaSource>(mut h: Heap<S>, ops: &[u8]) {
    let config = *h.config();
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 1u64;
    let mut b = Bytes { data: ops, at: 0 };
    let mut n = 0usize;
    while !b.done() {
        match b.u8() % 6 {
            0 => {
                let size = b.u16() % 1100; // 0, pool sizes, raw sizes
                alloc(&mut h, &mut live, &mut seed, size, 0);
            }
            1 => {
                if !live.is_empty() {
                    let i = b.u8() % live.len();
                    free(&mut h, live.swap_remove(i));
                }
            }
            2 => {
                if !live.is_empty() {
                    let i = b.u8() % live.len();
                    let size = b.u16() % 5000;
                    realloc(&mut h, &mut live[i], &mut seed, size);
                }
            }
            3 => {
                let size = b.u16() % 3000;
                let align = 1usize << (b.u8() % 13); // up to 4096
                alloc(&mut h, &mut live, &mut seed, size, align);
            }
            4 => {
                let size = 1 + b.u16() % 600;
                let k = 1 + b.u8() * 4;
                for _ in 0..k {
                    if live.len() >= MAX_LIVE {
                        break;
                    }
                    alloc(&mut h, &mut live, &mut seed, size, 0);
                }
            }
            _ => {
                let from = b.u8();
                let step = 1 + b.u8() % 4;
                let mut i = from % live.len().max(1);
                while i < live.len() {
                    free(&mut h, live.swap_remove(i));
                    i += step - 1;
                }
            }
        }
        n += 1;
        if n.is_multiple_of(CHECK_EVERY) {
            check(&h, &live, config.alignment());
        }
    }
    check(&h, &live, config.alignment());
    for blk in live.drain(..) {
        free(&mut h, blk);
    }
    h.check_invariants().unwrap();
    let s = h.stats();
    assert_eq!((s.blocks_in_use(), s.raw_blocks_current, s.raw_bytes_current), (0, 0, 0));
    if !config.keep_last_empty_arena() {
        assert_eq!(s.arenas_current, 0, "every emptied arena is released");
    }
}

fn alloc<S: ArenaSource>(
    h: &mut Heap<S>,
    live: &mut Vec<Live>,
    seed: &mut u64,
    size: usize,
    align: usize,
) {
    if live.len() >= MAX_LIVE {
        return;
    }
    let ptr = if align == 0 { h.alloc(size) } else { h.alloc_aligned(size, align) };
    assert!(!ptr.is_null(), "allocation of {size} bytes failed");
    let align = align.max(h.config().alignment());
    assert_eq!(ptr as usize % align, 0, "{size} bytes not aligned to {align}");
    *seed += 1;
    // SAFETY: a fresh block of at least `size` bytes.
    unsafe { fill(ptr, size, *seed) };
    live.push(Live { ptr, size, align, seed: *seed });
}

fn free<S: ArenaSource>(h: &mut Heap<S>, blk: Live) {
    // SAFETY: a live block of at least `size` bytes.
    assert!(unsafe { holds(blk.ptr, blk.size, blk.seed) }, "block {:p} lost its bytes", blk.ptr);
    // SAFETY: the block is live and freed once.
    unsafe { h.try_free(blk.ptr) }.unwrap();
}

fn realloc<S: ArenaSource>(h: &mut Heap<S>, blk: &mut Live, seed: &mut u64, size: usize) {
    // SAFETY: a live block of at least `size` bytes.
    assert!(unsafe { holds(blk.ptr, blk.size, blk.seed) }, "block {:p} lost its bytes", blk.ptr);
    // SAFETY: the block is live, allocated with `align`, and resized once.
    let new = unsafe {
        if blk.align > h.config().alignment() {
            h.realloc_aligned(blk.ptr, size, blk.align)
        } else {
            h.realloc(blk.ptr, size)
        }
    };
    assert!(!new.is_null(), "realloc to {size} bytes failed");
    assert_eq!(new as usize % blk.align, 0, "realloc lost the alignment {}", blk.align);
    let kept = blk.size.min(size);
    // SAFETY: the new block holds the first `kept` bytes of the old one.
    assert!(unsafe { holds(new, kept, blk.seed) }, "realloc lost bytes");
    *seed += 1;
    // SAFETY: the new block has at least `size` bytes.
    unsafe { fill(new, size, *seed) };
    *blk = Live { ptr: new, size, align: blk.align, seed: *seed };
}

fn check<S: ArenaSource>(h: &Heap<S>, live: &[Live], align: usize) {
    h.check_invariants().unwrap();
    let mut spans: Vec<(usize, usize)> =
        live.iter().map(|b| (b.ptr as usize, b.size.max(1))).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:x?}");
    }
    for b in live {
        assert_eq!(b.ptr as usize % align.max(b.align), 0);
        // SAFETY: a live block of at least `size` bytes.
        assert!(unsafe { holds(b.ptr, b.size, b.seed) }, "block {:p} lost its bytes", b.ptr);
    }
    let s = h.stats();
    assert_eq!(s.blocks_in_use() + s.raw_blocks_current, live.len());
}
