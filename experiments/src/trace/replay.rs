//! Replaying a compiled trace on the pymalloc model and comparing it with the interpreter.
//!
//! The model gets the layout of the trace header and every call in order. Where the interpreter
//! lost a pool to alignment depends on where `mmap` put each arena, so the model's arenas come
//! from [`ReplaySource`], which maps each arena at the same offset modulo the pool size as the
//! interpreter's arena of the same rank. At every mark the model's counters are compared with
//! the interpreter's own report. A native trace ([`Source::Native`]) has no report and no
//! arenas: its marks and blocks are replayed and shown, with nothing to compare.

use super::counters::Counters;
use super::format::Source;
use super::program::{Arenas, Program, RAW, op, place};
use pymalloc::{ArenaPolicy, ArenaSource, Config, ConfigBuilder, Heap, Layout, Preset};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::rc::Rc;

/// Arena memory placed like the recorded interpreter's: the k-th arena mapped starts at the
/// same offset modulo the pool size as the interpreter's k-th arena.
///
/// The offsets are queued by the replayer as it meets the trace's arena records (each comes
/// before the call that needed the arena); `map` takes the next one, or maps pool-aligned when
/// none is queued.
#[derive(Debug)]
pub struct ReplaySource {
    pool_size: usize,
    offsets: Rc<RefCell<VecDeque<usize>>>,
    log: Option<MapLog>,
}

/// A shared log of mappings: `(address, true)` when mapped, `(address, false)` when unmapped.
pub type MapLog = Rc<RefCell<Vec<(usize, bool)>>>;

impl ReplaySource {
    /// A source for pools of `pool_size` bytes and the queue it takes offsets from.
    pub fn new(pool_size: usize) -> (ReplaySource, Rc<RefCell<VecDeque<usize>>>) {
        let q = Rc::new(RefCell::new(VecDeque::new()));
        (ReplaySource { pool_size, offsets: q.clone(), log: None }, q)
    }

    /// Also log every mapping `(address, true)` and unmapping `(address, false)` into `log`,
    /// while it has spare capacity (a full log is not grown: `map` must not allocate).
    pub fn with_log(mut self, log: MapLog) -> ReplaySource {
        self.log = Some(log);
        self
    }

    fn note(&self, addr: usize, mapped: bool) {
        if let Some(log) = &self.log {
            let mut l = log.borrow_mut();
            if l.len() < l.capacity() {
                l.push((addr, mapped));
            }
        }
    }
}

// SAFETY: `map` returns a fresh anonymous mapping of exactly `size` bytes (the over-mapped head
// and tail, both inside the mapping since it is `span + offset` bytes longer, are unmapped) at an address that is a multiple of PAGE and hence of `align` whenever
// the heap asks for PAGE alignment; for larger `align` the offset is 0 (aligned). It never
// allocates: popping from a VecDeque frees nothing and allocates nothing, and the log is only
// pushed to within its capacity.
unsafe impl ArenaSource for ReplaySource {
    fn map(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let offset = self.offsets.borrow_mut().pop_front().unwrap_or(0) % self.pool_size;
        let offset = if align > pymalloc::os::PAGE { 0 } else { offset };
        let span = self.pool_size.max(align);
        // `base` is at most `span - PAGE` past the start and the arena starts `offset` after it.
        let total = size + span + offset;
        // SAFETY: an anonymous private mapping at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let start = p as usize;
        let base = (start + span - 1) & !(span - 1);
        let at = base + offset;
        let (head, tail) = (at - start, start + total - (at + size));
        // SAFETY: both trimmed ranges lie inside the mapping just made and are unused.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((at + size) as *mut libc::c_void, tail);
            }
        }
        self.note(at, true);
        NonNull::new(at as *mut u8)
    }

    unsafe fn unmap(&mut self, ptr: NonNull<u8>, size: usize) {
        self.note(ptr.as_ptr() as usize, false);
        // SAFETY: the caller passes back one whole mapping made by `map`.
        unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
    }
}

/// Changes to the layout of the trace header, for negative controls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// Another layout.
    pub layout: Option<Layout>,
    /// Keep-last-empty-arena rule forced on or off.
    pub keep_one: Option<bool>,
    /// Another arena policy.
    pub policy: Option<ArenaPolicy>,
}

fn builder(layout: Layout) -> ConfigBuilder {
    match layout {
        Layout::Classes64Pools4k => Config::builder(Preset::Cpython37),
        Layout::Classes32Pools4k => Config::builder(Preset::Cpython38),
        Layout::Classes32Pools4kKeepOne => {
            Config::builder(Preset::Cpython38).keep_last_empty_arena(true)
        }
        Layout::Classes32Pools16k => Config::builder(Preset::Cpython310),
    }
}

/// The model config for `layout` with `o` applied.
pub fn config(layout: Layout, o: &Overrides) -> Config {
    let mut b = builder(o.layout.unwrap_or(layout));
    if let Some(k) = o.keep_one {
        b = b.keep_last_empty_arena(k);
    }
    if let Some(p) = o.policy {
        b = b.policy(p);
    }
    b.build().expect("presets with a changed rule are valid")
}

/// One mark: the interpreter's counters, the model's, and what differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkResult {
    /// The label.
    pub label: String,
    /// Whether every counter is equal (true too when there was nothing to compare).
    pub equal: bool,
    /// Whether the mark had counters to compare with: false for a native trace's marks, which
    /// carry no interpreter report.
    #[serde(default = "compared_default")]
    pub compared: bool,
    /// The interpreter's counters (`None` when its report could not be read).
    pub real: Option<Counters>,
    /// The model's.
    pub model: Counters,
    /// Every counter that differs: name, real, model.
    pub differences: Vec<(String, u64, u64)>,
}

fn compared_default() -> bool {
    true
}

/// The outcome of a model replay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelReplay {
    /// The layout the model used (name).
    pub layout: String,
    /// The arena policy.
    pub policy: String,
    /// Whether the last empty arena was kept.
    pub keep_one: bool,
    /// Calls replayed.
    pub calls: u64,
    /// Seconds the replay took.
    pub seconds: f64,
    /// One entry per mark.
    pub marks: Vec<MarkResult>,
    /// Blocks whose place was compared: same arena (by rank of mapping) and same offset as
    /// the interpreter's, or outside every arena on both sides.
    #[serde(default)]
    pub placed: u64,
    /// Of those, blocks the model put elsewhere.
    #[serde(default)]
    pub misplaced: u64,
    /// The first of them, described.
    #[serde(default)]
    pub first_misplaced: Option<String>,
}

impl ModelReplay {
    /// Whether every mark is equal.
    pub fn all_equal(&self) -> bool {
        self.marks.iter().all(|m| m.equal)
    }
}

/// Replays `p` on the model with `config`.
pub fn replay_model(p: &Program, layout_name: &str, config: Config) -> ModelReplay {
    let started = std::time::Instant::now();
    // A native trace's blocks all lie outside arenas (the real allocator has none): their
    // places say nothing about the model's, so they are not compared.
    let native = p.header.source == Source::Native;
    let (source, queue) = ReplaySource::new(config.pool_size());
    let log = Rc::new(RefCell::new(Vec::with_capacity(2 * p.arenas as usize + 64)));
    let mut heap = Heap::with_source(config, source.with_log(log.clone()));
    // The model's arenas by start, with their rank in mapping order, from the source's log.
    let mut model = Arenas { live: BTreeMap::new(), size: config.arena_size() as u64 };
    let (mut logged, mut rank) = (0usize, 0u64);
    let (mut placed, mut misplaced) = (0u64, 0u64);
    let mut first_misplaced = None;
    let mut check = |m: *mut u8, want: u64, model: &mut Arenas, i: usize| {
        let l = log.borrow();
        for &(a, mapped) in &l[logged..] {
            if mapped {
                model.live.insert(a as u64, rank);
                rank += 1;
            } else {
                model.live.remove(&(a as u64));
            }
        }
        logged = l.len();
        let got = place(model, m as u64);
        placed += 1;
        if got != want {
            misplaced += 1;
            if first_misplaced.is_none() {
                first_misplaced = Some(format!(
                    "op {i}: the interpreter's block at {}, the model's at {}",
                    describe(want),
                    describe(got)
                ));
            }
        }
    };
    let mut slots: Vec<*mut u8> = vec![core::ptr::null_mut(); p.slots];
    let mut marks = Vec::with_capacity(p.marks.len());
    let ops = &p.ops;
    let mut i = 0;
    while i < ops.len() {
        let w = ops[i];
        let arg = (w >> 3) as usize;
        match w & 7 {
            op::ALLOC | op::CALLOC => {
                let b = heap.alloc(ops[i + 1] as usize);
                slots[arg] = b;
                if !native {
                    check(b, ops[i + 2], &mut model, i);
                }
                i += 3;
            }
            op::REALLOC => {
                let old = slots[arg];
                // SAFETY: a slot holds null or a live block of this heap (compile gives each
                // live block its own slot and empties it when the block is freed).
                let new = unsafe { heap.realloc(old, ops[i + 1] as usize) };
                if !new.is_null() {
                    slots[arg] = new;
                }
                if !native {
                    check(new, ops[i + 2], &mut model, i);
                }
                i += 3;
            }
            op::FREE => {
                let b = core::mem::replace(&mut slots[arg], core::ptr::null_mut());
                // SAFETY: as above: the slot's block is live and freed once.
                unsafe { heap.free(b) };
                i += 1;
            }
            op::ARENA => {
                queue.borrow_mut().push_back(arg);
                i += 1;
            }
            _ => {
                let m = &p.marks[arg];
                let counters = Counters::from_model(&heap.stats());
                let real = Counters::parse(&m.stats);
                let differences = match &real {
                    Some(r) => r.differences(&counters),
                    // A native program's marks carry no report: nothing to compare.
                    None if native => vec![],
                    None => vec![("interpreter report unreadable".into(), 0, 0)],
                };
                marks.push(MarkResult {
                    label: m.label.clone(),
                    equal: differences.is_empty(),
                    compared: real.is_some(),
                    real,
                    model: counters,
                    differences,
                });
                i += 1;
            }
        }
    }
    ModelReplay {
        layout: layout_name.to_string(),
        policy: config.policy().name().to_string(),
        keep_one: config.keep_last_empty_arena(),
        calls: p.calls,
        seconds: started.elapsed().as_secs_f64(),
        marks,
        placed,
        misplaced,
        first_misplaced,
    }
}

fn describe(place: u64) -> String {
    if place == RAW {
        "outside every arena".into()
    } else {
        format!("arena #{} offset {}", place >> 32, place & 0xffff_ffff)
    }
}
