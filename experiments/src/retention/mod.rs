//! The `retention` experiment: what each allocator keeps after `free`.
//!
//! The question it answers is the one people ask about Python: *"I deleted my big list, so why
//! is my process still using the memory?"* Freeing a block makes it reusable **by the
//! allocator**; whether its pages also leave the process's resident set depends on where the
//! block sat (a single live block pins a whole pymalloc arena, the middle of glibc's heap is
//! only returned by `malloc_trim`) and on the allocator's policy (mimalloc purges after a delay,
//! jemalloc decays dirty pages over seconds).
//!
//! Each (allocator, workload) pair runs in a fresh child process, `arenalab worker retention`,
//! so nothing another run left behind is counted. The child maps its bookkeeping, warms the
//! allocator up, takes a baseline, then runs the workload ([`workloads`]) and after each phase
//! records the kernel's view ([`crate::measure`]: RSS, anonymous, LazyFree) beside the
//! allocator's own ([`lineup::Allocator::stats`], and for pymalloc its arena counters and an
//! occupancy map). The last phase calls the allocator's release function
//! ([`lineup::Allocator::release`]). The child prints one JSON document; the parent collects
//! them into [`RetentionResults`], prints a table per workload (MiB above the baseline), and
//! [`render()`] turns saved results into `docs/retention.md`.
//!
//! | function | does |
//! | --- | --- |
//! | [`measure()`] | validates [`RetentionArgs`], runs the matrix of workers, returns [`RetentionResults`] |
//! | [`run`] | `arenalab retention`: `measure`, then tables or `--json` on stdout |
//! | [`run_worker`] | `arenalab worker retention`: one run, one JSON document on stdout |
//! | [`render()`] | `docs/retention.md` with tables, charts and occupancy maps, from results only |

pub mod page;
pub mod workloads;

use crate::error::{Error, Result};
use crate::measure;
use crate::procs::Spawn;
use crate::render::occupancy::Occupancy;
use crate::results::Meta;
use lineup::{Allocator, AllocatorStats, Release};
use serde::{Deserialize, Serialize};
use std::io::Write;
use workloads::{Recorder, Target, Workload};

pub use page::render;

/// Default object count: a million small objects, a list of a million ints.
pub const DEFAULT_OBJECTS: u64 = 1_000_000;
/// Default object size in bytes (pymalloc's 32-byte class: 510 blocks per 16 KiB pool).
pub const DEFAULT_SIZE: u64 = 32;
/// Largest accepted object size: 64 MiB.
pub const MAX_SIZE: u64 = 64 << 20;
/// Largest accepted object count (the pointer bookkeeping alone is 12 bytes per object).
pub const MAX_OBJECTS: u64 = 100_000_000;

/// Environment variable that makes a worker misbehave on purpose, for the tests that check no
/// child is left behind: `exit` (fail after the first phase), `hang` (sleep after the first
/// phase), `garbage` (print something that is not JSON).
pub const FAULT_ENV: &str = "ARENALAB_RETENTION_FAULT";

/// Arguments of `arenalab retention`. `Default` equals the command-line defaults.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RetentionArgs {
    /// Allocator to run (repeatable): system, mimalloc, jemalloc, pymalloc. Default: all.
    #[arg(long = "allocator", value_name = "A",
        value_parser = crate::cli::choice("--allocator", &Allocator::ALL, Allocator::name))]
    pub allocators: Vec<Allocator>,
    /// Workload to run (repeatable): seed, every-other, survivors, fifo-half, mixed, large,
    /// policy. Default: all.
    #[arg(long = "workload", value_name = "W",
        value_parser = crate::cli::choice("--workload", &Workload::ALL, Workload::name))]
    pub workloads: Vec<Workload>,
    /// Objects per workload (`large` uses fixed 64 MiB rounds instead).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_OBJECTS, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<u64>("--objects", 1, Some(MAX_OBJECTS)))]
    pub objects: u64,
    /// Object size in bytes (`mixed` draws 8-512 instead; `large` uses fixed sizes).
    #[arg(long, value_name = "S", default_value_t = DEFAULT_SIZE, allow_negative_numbers = true,
        value_parser = crate::cli::whole::<u64>("--size", 1, Some(MAX_SIZE)))]
    pub size: u64,
    /// Print the runs as one JSON document (command, machine and date first) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The layout of pymalloc's runs: `--preset LAYOUT` or `--python PATH`.
    #[command(flatten)]
    pub preset: crate::preset::PresetArgs,
}

impl Default for RetentionArgs {
    fn default() -> Self {
        RetentionArgs {
            allocators: Vec::new(),
            workloads: Vec::new(),
            objects: DEFAULT_OBJECTS,
            size: DEFAULT_SIZE,
            json: false,
            preset: crate::preset::PresetArgs::default(),
        }
    }
}

/// Arguments of the hidden `arenalab worker retention`: one run.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// The allocator under test.
    #[arg(long)]
    pub allocator: String,
    /// The workload.
    #[arg(long)]
    pub workload: String,
    /// The workload's variant (survivors: spread/packed; policy: most-used-first/newest-first).
    #[arg(long)]
    pub variant: Option<String>,
    /// Objects.
    #[arg(long, default_value_t = DEFAULT_OBJECTS)]
    pub objects: u64,
    /// Object size in bytes.
    #[arg(long, default_value_t = DEFAULT_SIZE)]
    pub size: u64,
    /// pymalloc's layout ([`pymalloc::Layout::name`]); selected before the first allocation.
    #[arg(long, default_value = lineup::DEFAULT_PYMALLOC_LAYOUT.name())]
    pub preset: String,
}

/// One (allocator, workload, variant) run as the worker reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The allocator under test.
    pub allocator: Allocator,
    /// The workload's name.
    pub workload: String,
    /// The variant, for workloads that have them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Objects asked for.
    pub objects: u64,
    /// Object size asked for.
    pub size: u64,
    /// The pymalloc layout ([`pymalloc::Layout::name`]) of a run under pymalloc; absent for the
    /// other allocators and in results saved before layouts could be chosen (those ran with
    /// [`lineup::DEFAULT_PYMALLOC_LAYOUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pymalloc_layout: Option<String>,
    /// The phases in order, `baseline` first.
    pub phases: Vec<Phase>,
    /// The worker's peak RSS over its whole life (`ru_maxrss` from `wait4`); set by the parent.
    #[serde(default)]
    pub peak_rss_bytes: u64,
}

impl Run {
    /// "pymalloc" or "pymalloc (newest-first)": the row label in tables and charts.
    pub fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{} ({v})", self.allocator),
            None => self.allocator.to_string(),
        }
    }

    /// RSS of each phase above the baseline, in bytes (signed).
    pub fn rss_above_baseline(&self) -> Vec<i64> {
        let base = self.phases.first().map_or(0, |p| p.rss_bytes);
        self.phases.iter().map(|p| p.rss_bytes as i64 - base as i64).collect()
    }
}

/// One measurement point of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `baseline`, `alloc`, `partial free`, `refill`, `full free`, `release`, ...
    pub name: String,
    /// RSS (`smaps_rollup`), bytes.
    pub rss_bytes: u64,
    /// Anonymous resident memory, bytes.
    pub anon_bytes: u64,
    /// Resident pages marked `MADV_FREE` (counted in RSS until reclaimed), bytes.
    pub lazyfree_bytes: u64,
    /// Objects the workload holds at this point.
    pub live_objects: u64,
    /// Bytes those objects requested.
    pub live_bytes: u64,
    /// The allocator's own statistics (absent for `policy`'s private pymalloc instances,
    /// whose figures are in `pymalloc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocator_stats: Option<AllocatorStats>,
    /// pymalloc's arena counters, for pymalloc runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pymalloc: Option<PymallocCounters>,
    /// pymalloc's occupancy map, for pymalloc runs of every-other, survivors and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupancy: Option<Occupancy>,
    /// What the release call did (the `release` phase only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// pymalloc's own counters after a phase (a subset of `pymalloc::Stats`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PymallocCounters {
    /// Arenas ever mapped.
    pub arenas_allocated_total: u64,
    /// Arenas given back to the OS.
    pub arenas_reclaimed: u64,
    /// Most arenas mapped at once.
    pub arenas_highwater: u64,
    /// Arenas mapped now.
    pub arenas_current: u64,
    /// Pools with some blocks in use.
    pub pools_used: u64,
    /// Pools with every block in use.
    pub pools_full: u64,
    /// Carved pools with no block in use (still resident).
    pub pools_empty: u64,
    /// Pools of live arenas never carved.
    pub pools_never_carved: u64,
    /// Blocks allocated now.
    pub blocks_in_use: u64,
    /// Bytes in allocated blocks.
    pub bytes_in_allocated_blocks: u64,
    /// One pool per arena whose start is not pool-aligned.
    pub bytes_lost_to_arena_alignment: u64,
    /// Arena size in bytes.
    pub arena_size: u64,
    /// Pool size in bytes.
    pub pool_size: u64,
}

impl PymallocCounters {
    /// The counters of a `pymalloc::Stats`.
    pub fn from_stats(s: &pymalloc::Stats) -> PymallocCounters {
        PymallocCounters {
            arenas_allocated_total: s.arenas_allocated_total,
            arenas_reclaimed: s.arenas_reclaimed,
            arenas_highwater: s.arenas_highwater as u64,
            arenas_current: s.arenas_current as u64,
            pools_used: s.pools_used as u64,
            pools_full: s.pools_full as u64,
            pools_empty: s.pools_empty as u64,
            pools_never_carved: s.pools_never_carved as u64,
            blocks_in_use: s.blocks_in_use() as u64,
            bytes_in_allocated_blocks: s.bytes_in_allocated_blocks as u64,
            bytes_lost_to_arena_alignment: s.bytes_lost_to_arena_alignment as u64,
            arena_size: s.arena_size as u64,
            pool_size: s.pool_size as u64,
        }
    }
}

/// Everything `arenalab retention` measured: saved as `docs/results/retention.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionResults {
    /// Command, machine and date.
    pub meta: Meta,
    /// Objects per workload.
    pub objects: u64,
    /// Object size.
    pub size: u64,
    /// The layout of the pymalloc runs ([`pymalloc::Layout::name`]); results saved before
    /// layouts could be chosen ran with, and load as, [`lineup::DEFAULT_PYMALLOC_LAYOUT`].
    #[serde(default = "default_layout_name")]
    pub pymalloc_layout: String,
    /// Every run, grouped by workload in [`Workload::ALL`] order.
    pub runs: Vec<Run>,
    /// Wall-clock time of the whole matrix, milliseconds.
    pub elapsed_ms: u64,
}

fn default_layout_name() -> String {
    lineup::DEFAULT_PYMALLOC_LAYOUT.name().to_string()
}

/// A validated plan: the runs to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// (allocator, workload, variant) in run order.
    pub runs: Vec<(Allocator, Workload, Option<&'static str>)>,
    /// Objects per workload.
    pub objects: u64,
    /// Object size.
    pub size: u64,
    /// The layout of the pymalloc runs.
    pub layout: pymalloc::Layout,
}

/// Checks the arguments and expands them into runs, against this machine's MemAvailable.
/// Every bad value is an [`Error::Usage`] naming it.
pub fn plan(args: &RetentionArgs) -> Result<Plan> {
    plan_with(args, measure::system()?.mem_available_bytes)
}

/// [`plan`] with `available` bytes of memory to fit in.
pub fn plan_with(args: &RetentionArgs, available: u64) -> Result<Plan> {
    let mut allocators = Vec::new();
    for &a in &args.allocators {
        if !allocators.contains(&a) {
            allocators.push(a);
        }
    }
    if allocators.is_empty() {
        allocators = Allocator::ALL.to_vec();
    }
    let mut chosen = Vec::new();
    for &w in &args.workloads {
        if !chosen.contains(&w) {
            chosen.push(w);
        }
    }
    if chosen.is_empty() {
        chosen = Workload::ALL.to_vec();
    }
    crate::cli::check_range("--objects", args.objects, 1, Some(MAX_OBJECTS))?;
    crate::cli::check_range("--size", args.size, 1, Some(MAX_SIZE))?;
    for &w in &chosen {
        if let Some(min) = minimum_objects(w, args.size)
            && args.objects < min
        {
            return Err(Error::Usage(format!(
                "--objects must be at least {min} for workload {} at --size {}, got {}: {}; \
                 choose other workloads with --workload",
                w.name(),
                args.size,
                args.objects,
                minimum_why(w).unwrap_or_default()
            )));
        }
    }
    let mut runs = Vec::new();
    for &w in &chosen {
        for &a in &allocators {
            if w.pymalloc_only() && a != Allocator::Pymalloc {
                continue;
            }
            if w.variants().is_empty() {
                runs.push((a, w, None));
            } else {
                runs.extend(w.variants().iter().map(|&v| (a, w, Some(v))));
            }
        }
    }
    if runs.is_empty() {
        return Err(Error::Usage(
            "--workload policy runs only under pymalloc; add --allocator pymalloc".into(),
        ));
    }
    // Runs are made one after the other: the largest must fit.
    let need = |n: u64| {
        runs.iter().map(|&(a, w, _)| (peak_bytes(a, w, n, args.size), a, w)).max_by_key(|t| t.0)
    };
    if let Some((peak, a, w)) = need(args.objects).filter(|t| t.0 > available) {
        // The most objects that fit, for the message (the estimate grows with the count).
        let (mut lo, mut hi) = (0, args.objects);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if need(mid).is_some_and(|t| t.0 <= available) { lo = mid } else { hi = mid }
        }
        return Err(Error::Usage(format!(
            "--objects must be at most {lo} at --size {} on this machine, got {}: workload {} \
             under {a} needs about {:.1} MiB ({} bytes per block with the allocator's rounding \
             and header, plus the bookkeeping arrays), more than MemAvailable ({:.1} MiB)",
            args.size,
            args.objects,
            w.name(),
            measure::mib(peak),
            block_bytes(
                a,
                if w == Workload::Mixed { workloads::MIXED_SIZES.1 as u64 } else { args.size }
            ),
            measure::mib(available)
        )));
    }
    let layout = args.preset.layout()?;
    Ok(Plan { runs, objects: args.objects, size: args.size, layout })
}

/// Why workload `w` has a minimum object count ([`minimum_objects`]), or `None`.
pub const fn minimum_why(w: Workload) -> Option<&'static str> {
    match w {
        Workload::EveryOther => Some(
            "it shows pages kept resident by the live neighbours of freed objects, so its \
             objects must cover at least 256 KiB (64 pages of 4 KiB): a few pages move between \
             phases with the allocator's own metadata",
        ),
        Workload::Survivors => Some(
            "it keeps 1 object in 1000 and needs 10 survivors or more, and 256 KiB of objects \
             like every-other, to show whether spread or packed survivors pin memory",
        ),
        Workload::Policy => Some(
            "its keep pattern repeats every 16 pymalloc pools in each half of memory, so it \
             needs 32 pools' worth of objects",
        ),
        _ => None,
    }
}

/// The bytes every-other and survivors must cover to show their effect (see [`minimum_why`]).
pub const EFFECT_BYTES: u64 = 256 << 10;
/// The fewest survivors that can show whether spread or packed survivors pin memory.
pub const MIN_SURVIVORS: u64 = 10;

/// The fewest objects with which workload `w` can show its effect at `size` bytes, or `None`
/// when any count will do. See [`minimum_why`].
pub fn minimum_objects(w: Workload, size: u64) -> Option<u64> {
    let covering = EFFECT_BYTES.div_ceil(size.max(1)).max(2);
    match w {
        Workload::EveryOther => Some(covering),
        Workload::Survivors => Some(covering.max(MIN_SURVIVORS * workloads::SURVIVOR_EVERY as u64)),
        Workload::Policy => {
            let cfg = pymalloc::Config::CPYTHON_3_10;
            let per_pool = usize::try_from(size)
                .ok()
                .and_then(|s| cfg.size_class(s))
                .map_or(1, |c| cfg.blocks_per_pool(c));
            Some(2 * (workloads::POLICY_PERIOD * per_pool) as u64)
        }
        _ => None,
    }
}

/// glibc's mmap threshold at start-up: larger requests get their own mapping.
const GLIBC_MMAP_THRESHOLD: u64 = 128 << 10;

/// Bytes one block of `size` takes in `allocator`: the size class (or chunk) the request is
/// rounded up to, with its header. For pymalloc, the block inside its pool (pool headers and
/// arenas are counted by [`footprint`]); requests above its 512-byte limit go to glibc.
///
/// * glibc: an 8-byte header, 16-byte granularity, 32 bytes at least; from its mmap threshold
///   (128 KiB) on, a mapping of its own with a 16-byte header, in whole 4 KiB pages.
/// * mimalloc, as the lineup calls it (`mi_malloc_aligned` with the workloads' 8-byte
///   alignment): a power of two from 8 up is served as it is; any other size goes through
///   mimalloc's aligned path, which asks for 7 bytes more, rounded to its classes (even word
///   counts up to 64 bytes, then four per doubling); below 8 bytes, 32 (measured: RSS grew by
///   31.5 bytes per 1-byte object). No per-block header.
/// * jemalloc: 8, then multiples of 16 up to 128 bytes, then four size classes per doubling; no
///   per-block header.
///
/// ```
/// use arenalab::retention::block_bytes;
/// use lineup::Allocator;
/// assert_eq!(block_bytes(Allocator::System, 1), 32);
/// assert_eq!(block_bytes(Allocator::System, 40), 48);
/// assert_eq!(block_bytes(Allocator::Mimalloc, 65), 80);
/// assert_eq!(block_bytes(Allocator::Jemalloc, 129), 160);
/// assert_eq!(block_bytes(Allocator::Pymalloc, 1), 16);
/// ```
pub fn block_bytes(allocator: Allocator, size: u64) -> u64 {
    let size = size.max(1);
    // Four classes per doubling: round up to a multiple of a quarter of the power of two below.
    let quarter_classes = |s: u64| {
        let step = 1u64 << ((63 - (s - 1).leading_zeros()).saturating_sub(2));
        s.div_ceil(step) * step
    };
    match allocator {
        Allocator::System if size >= GLIBC_MMAP_THRESHOLD => (size + 16).div_ceil(4096) * 4096,
        Allocator::System => (size + 8).div_ceil(16).max(2) * 16,
        Allocator::Mimalloc if size < 8 => 32,
        Allocator::Mimalloc if size.is_power_of_two() => size,
        Allocator::Mimalloc => match (size + 7).div_ceil(8) {
            words if words <= 8 => words.next_multiple_of(2) * 8,
            words => quarter_classes(words) * 8,
        },
        Allocator::Jemalloc if size <= 8 => 8,
        Allocator::Jemalloc if size <= 128 => size.div_ceil(16) * 16,
        Allocator::Jemalloc => quarter_classes(size),
        Allocator::Pymalloc => {
            let cfg = pymalloc::Config::CPYTHON_3_10;
            match usize::try_from(size).ok().and_then(|s| cfg.size_class(s)) {
                Some(c) => cfg.block_size(c) as u64,
                None => block_bytes(Allocator::System, size),
            }
        }
    }
}

/// Bytes `n` live blocks of `size` take in `allocator`: `n` × [`block_bytes`], and for
/// pymalloc's small requests whole pools (with their headers) in whole arenas.
pub fn footprint(allocator: Allocator, n: u64, size: u64) -> u64 {
    let cfg = pymalloc::Config::CPYTHON_3_10;
    let class = usize::try_from(size).ok().and_then(|s| cfg.size_class(s));
    match (allocator, class) {
        (Allocator::Pymalloc, Some(c)) => {
            let pools = n.div_ceil(cfg.blocks_per_pool(c) as u64);
            pools.div_ceil(cfg.pools_per_arena() as u64) * cfg.arena_size() as u64
        }
        _ => n.saturating_mul(block_bytes(allocator, size)),
    }
}

/// Bytes of bookkeeping a worker maps for `slots` objects: a pointer and a 4-byte size each,
/// in page-rounded mappings.
fn bookkeeping(slots: u64, bytes_per_slot: u64) -> u64 {
    slots.saturating_mul(bytes_per_slot).div_ceil(4096) * 4096
}

/// An estimate of the most memory one run holds at once: the workload's live blocks at their
/// peak ([`footprint`]) plus its bookkeeping arrays (12 bytes per object; `mixed` adds its
/// sizes and free order, 8 more; `policy` its churn objects). The worker process itself adds a
/// few MiB more.
pub fn peak_bytes(allocator: Allocator, w: Workload, n: u64, size: u64) -> u64 {
    let slot = (size_of::<usize>() + size_of::<u32>()) as u64;
    match w {
        Workload::Large => {
            let (total, big, mid) = (
                workloads::LARGE_TOTAL as u64,
                workloads::LARGE_BLOCK as u64,
                workloads::MID_BLOCK as u64,
            );
            let blocks =
                footprint(allocator, total / big, big).max(footprint(allocator, total / mid, mid));
            blocks + bookkeeping(total / mid + 1, slot)
        }
        Workload::Mixed => {
            let largest = workloads::MIXED_SIZES.1 as u64;
            footprint(allocator, n, largest).saturating_add(bookkeeping(n, slot + 8))
        }
        Workload::Policy => {
            let churn = (workloads::churn_per_round(n as usize) * workloads::CHURN_ROUNDS) as u64;
            let churn_size =
                (size * 2).clamp(workloads::MIXED_SIZES.0 as u64, workloads::MIXED_SIZES.1 as u64);
            footprint(allocator, n, size)
                .saturating_add(footprint(allocator, churn, churn_size))
                .saturating_add(bookkeeping(n, slot))
                .saturating_add(bookkeeping(churn, slot))
        }
        _ => footprint(allocator, n, size).saturating_add(bookkeeping(n, slot)),
    }
}

/// Runs every (allocator, workload, variant) of the arguments, each in a fresh worker, with a
/// progress bar on stderr.
pub fn measure(args: &RetentionArgs) -> Result<RetentionResults> {
    let plan = plan(args)?;
    let start = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(plan.runs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("retention {bar:30} {pos}/{len} {msg}")
            .expect("static template"),
    );
    let mut runs = Vec::with_capacity(plan.runs.len());
    for &(a, w, v) in &plan.runs {
        bar.set_message(format!(
            "{} {}{}",
            w.name(),
            a,
            v.map(|v| format!(" {v}")).unwrap_or_default()
        ));
        let mut spawn = Spawn::worker("retention")
            .args(["--allocator", a.name(), "--workload", w.name()])
            .args(["--objects", &plan.objects.to_string(), "--size", &plan.size.to_string()])
            .args(["--preset", plan.layout.name()]);
        if let Some(v) = v {
            spawn = spawn.args(["--variant", v]);
        }
        let context = |e: Error| match e {
            Error::Failed(m) => Error::Failed(format!(
                "retention run {}{} under {a}: {m}",
                w.name(),
                v.map(|v| format!(" ({v})")).unwrap_or_default()
            )),
            other => other,
        };
        let mut child = spawn.spawn()?;
        let mut run: Run = child.read_json().map_err(context)?;
        let exit = child.finish().map_err(context)?;
        run.peak_rss_bytes = exit.maxrss_bytes;
        workloads::check_phases(w, &run.phases)?;
        runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(RetentionResults {
        meta: Meta::collect(&command_line()),
        objects: plan.objects,
        size: plan.size,
        pymalloc_layout: plan.layout.name().to_string(),
        runs,
        elapsed_ms: start.elapsed().as_millis() as u64,
    })
}

/// `arenalab` and this process's arguments: the command a results document records.
pub(crate) fn command_line() -> String {
    let mut args = std::env::args();
    let _exe = args.next();
    std::iter::once("arenalab".to_string()).chain(args).collect::<Vec<_>>().join(" ")
}

/// Runs `arenalab retention`: measures, then prints tables (or `--json`: the results document,
/// the shape of `docs/results/retention.json`).
pub fn run(args: &RetentionArgs) -> Result<()> {
    let results = measure(args)?;
    let mut out = std::io::stdout().lock();
    let text = if args.json { crate::results::to_json(&results)? } else { tables(&results) };
    out.write_all(text.as_bytes()).map_err(Error::failed("writing to stdout"))
}

/// The text tables: one per workload, rows allocators, columns phases, MiB above baseline.
pub fn tables(results: &RetentionResults) -> String {
    let mut out = format!(
        "RSS above baseline, MiB ({} × {} B; measured in {:.1} s)\n",
        crate::render::plural(results.objects, "object"),
        results.size,
        results.elapsed_ms as f64 / 1000.0
    );
    for w in Workload::ALL {
        let runs: Vec<&Run> = results.runs.iter().filter(|r| r.workload == w.name()).collect();
        if runs.is_empty() {
            continue;
        }
        let (header, rows) = table_rows(w, &runs);
        out.push_str(&format!("\n{}\n", w.name()));
        out.push_str(&crate::render::text_table(&header, &rows));
        for r in runs.iter().filter(|r| r.phases.iter().all(|p| p.pymalloc.is_some())) {
            let arenas: Vec<String> = r.phases[1..]
                .iter()
                .filter_map(|p| p.pymalloc.map(|c| c.arenas_current.to_string()))
                .collect();
            out.push_str(&format!("{} arenas by phase: {}\n", r.label(), arenas.join(", ")));
        }
    }
    out
}

/// Header and rows of a workload's table (shared by the terminal and the Markdown page).
pub fn table_rows(w: Workload, runs: &[&Run]) -> (Vec<String>, Vec<Vec<String>>) {
    let phases = &workloads::phase_names(w)[1..];
    let header = std::iter::once("allocator".to_string())
        .chain(phases.iter().map(|p| p.to_string()))
        .collect();
    let rows = runs
        .iter()
        .map(|r| {
            std::iter::once(r.label())
                .chain(r.rss_above_baseline()[1..].iter().map(|&b| page::fmt_mib(b)))
                .collect()
        })
        .collect();
    (header, rows)
}

/// Runs `arenalab worker retention`: one workload under one allocator, one JSON document.
pub fn run_worker(args: &WorkerArgs) -> Result<()> {
    crate::procs::die_with_parent();
    let run = execute(args)?;
    let mut text = serde_json::to_string(&run)
        .map_err(|e| Error::Failed(format!("serialising the run: {e}")))?;
    text.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::failed("writing the report"))
}

/// Runs one workload in this process and returns its phases.
pub fn execute(args: &WorkerArgs) -> Result<Run> {
    let allocator = Allocator::from_name(&args.allocator)
        .ok_or_else(|| Error::Failed(format!("unknown allocator {:?}", args.allocator)))?;
    let workload = Workload::from_name(&args.workload)
        .ok_or_else(|| Error::Failed(format!("unknown workload {:?}", args.workload)))?;
    let layout = pymalloc::Layout::from_name(&args.preset)
        .ok_or_else(|| Error::Failed(format!("unknown pymalloc layout {:?}", args.preset)))?;
    // Before anything allocates through pymalloc (the worker itself allocates from `System`).
    lineup::select_pymalloc_layout(layout).map_err(|e| Error::Failed(e.to_string()))?;
    let variant = args.variant.clone().unwrap_or_default();
    let target = Target::for_run(allocator, workload, &variant, layout)?;
    let mut prepared = workloads::prepare(args, &target)?;
    let mut rec = WorkerRecorder {
        target: &target,
        occupancy: workload.records_occupancy(),
        phases: Vec::with_capacity(8),
        fault: std::env::var(FAULT_ENV).ok(),
    };
    rec.phase("baseline", 0, 0)?;
    workloads::run(&mut prepared, &mut rec)?;
    drop(prepared);
    Ok(Run {
        allocator,
        workload: workload.name().to_string(),
        variant: args.variant.clone(),
        objects: args.objects,
        size: args.size,
        pymalloc_layout: (allocator == Allocator::Pymalloc).then(|| layout.name().to_string()),
        phases: rec.phases,
        peak_rss_bytes: 0,
    })
}

/// Measures the process and the allocator after each phase.
struct WorkerRecorder<'a> {
    target: &'a Target,
    occupancy: bool,
    phases: Vec<Phase>,
    fault: Option<String>,
}

impl WorkerRecorder<'_> {
    fn record(
        &mut self,
        name: &str,
        live: u64,
        live_bytes: u64,
        release: Option<Release>,
    ) -> Result<()> {
        // The kernel's view first: reading the allocator's statistics and snapshot allocates
        // (from `System`), which must not land in this phase's RSS.
        let mem = measure::this_process()?;
        let allocator_stats = self.target.is_lineup.then(|| self.target.allocator.stats());
        let (pymalloc, occupancy) = match self.target.pymalloc {
            Some(pm) => (
                Some(PymallocCounters::from_stats(&pm.stats())),
                self.occupancy.then(|| Occupancy::from_snapshot(&pm.snapshot())),
            ),
            None => (None, None),
        };
        self.phases.push(Phase {
            name: name.to_string(),
            rss_bytes: mem.rss_bytes,
            anon_bytes: mem.anon_bytes,
            lazyfree_bytes: mem.lazyfree_bytes,
            live_objects: live,
            live_bytes,
            allocator_stats,
            pymalloc,
            occupancy,
            release,
        });
        if self.phases.len() == 2 {
            self.inject_fault()?;
        }
        Ok(())
    }

    /// The test hook of [`FAULT_ENV`], after the first phase past the baseline.
    fn inject_fault(&self) -> Result<()> {
        match self.fault.as_deref() {
            Some("exit") => Err(Error::Failed(format!("{FAULT_ENV}=exit: failing on purpose"))),
            Some("hang") => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Some("garbage") => {
                println!("this is not JSON");
                std::process::exit(0);
            }
            _ => Ok(()),
        }
    }
}

impl Recorder for WorkerRecorder<'_> {
    fn phase(&mut self, name: &str, live: u64, live_bytes: u64) -> Result<()> {
        self.record(name, live, live_bytes, None)
    }

    fn release(&mut self, live: u64, live_bytes: u64) -> Result<()> {
        let release = self.target.allocator.release();
        self.record("release", live, live_bytes, Some(release))
    }
}
