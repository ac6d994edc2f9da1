//! A guided tour of the pymalloc model for docs/pymalloc.md: the model run in this process,
//! with its occupancy map and its `sys._debugmallocstats()`-style report after each step.
//!
//! These are the model's own figures (which pools and arenas hold what), not the kernel's;
//! the OS view of the same behaviour is in the retention experiment, measured in child
//! processes. Measuring ([`measure`]) writes `docs/results/pymalloc.json`; [`render`] reads it.

use crate::error::Result;
use crate::render::occupancy::{self, Occupancy};
use crate::render::{markdown_table, page_header, write_file};
use crate::results::Meta;
use pymalloc::{Heap, Layout, Stats};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// 32-byte objects in the tour: 120,000 fill 236 pools, four arenas.
pub const SMALL_OBJECTS: usize = 120_000;
/// 144-byte objects (a 100-byte `bytes` in CPython 3.11) allocated beside them.
pub const MEDIUM_OBJECTS: usize = 20_000;

/// One step of the tour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Short name, e.g. `after every-other free`.
    pub name: String,
    /// What the step did.
    pub did: String,
    /// The occupancy map after the step.
    pub occupancy: Occupancy,
    /// The `sys._debugmallocstats()`-style report after the step.
    pub report: String,
    /// Arenas mapped after the step.
    pub arenas_current: usize,
    /// Arenas given back to the OS so far.
    pub arenas_reclaimed: u64,
    /// Pools by state after the step: used, full, empty, never carved.
    pub pools: [usize; 4],
    /// Blocks in use after the step.
    pub blocks_in_use: usize,
    /// Bytes in allocated blocks after the step.
    pub bytes_in_allocated_blocks: usize,
    /// (block size, pools) of every size class with pools after the step (absent from results
    /// saved before it was recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_pools: Vec<(usize, usize)>,
}

/// The tour's results: `docs/results/pymalloc.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TourResults {
    /// Command, machine and date.
    pub meta: Meta,
    /// Arena, pool and class geometry of the model run.
    pub layout: String,
    /// The steps in order.
    pub steps: Vec<Step>,
}

fn step(heap: &Heap, name: &str, did: &str) -> Step {
    let s: Stats = heap.stats();
    Step {
        name: name.into(),
        did: did.into(),
        occupancy: Occupancy::from_snapshot(&heap.snapshot()),
        report: s.to_string(),
        arenas_current: s.arenas_current,
        arenas_reclaimed: s.arenas_reclaimed,
        pools: [s.pools_used, s.pools_full, s.pools_empty, s.pools_never_carved],
        blocks_in_use: s.blocks_in_use(),
        bytes_in_allocated_blocks: s.bytes_in_allocated_blocks,
        class_pools: s
            .classes
            .iter()
            .filter(|c| c.pools > 0)
            .map(|c| (c.block_size, c.pools))
            .collect(),
    }
}

/// Runs the model through the tour with `layout` (`arenalab report` uses
/// [`lineup::DEFAULT_PYMALLOC_LAYOUT`]): allocate, free every other small object, refill with
/// another size, free everything.
pub fn measure(command: &str, layout: Layout) -> Result<TourResults> {
    let config = layout.config();
    let mut heap = Heap::new(config);
    let mut small = Vec::with_capacity(SMALL_OBJECTS);
    let mut medium = Vec::with_capacity(MEDIUM_OBJECTS);
    let alloc = |heap: &mut Heap, size: usize| -> Result<*mut u8> {
        let p = heap.alloc(size);
        if p.is_null() {
            return Err(crate::error::Error::Failed("the model ran out of memory".into()));
        }
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { p.write_bytes(0x5A, size) };
        Ok(p)
    };
    for i in 0..SMALL_OBJECTS {
        small.push(alloc(&mut heap, 32)?);
        if i % (SMALL_OBJECTS / MEDIUM_OBJECTS) == 0 {
            medium.push(alloc(&mut heap, 144)?);
        }
    }
    let mut steps = vec![step(
        &heap,
        "after alloc",
        "120,000 objects of 32 B (a float, an int) and, interleaved, 20,000 of 144 B (a 100-byte bytes).",
    )];
    for p in small.iter().step_by(2) {
        // SAFETY: each block is live and freed once.
        unsafe { heap.free(*p) };
    }
    steps.push(step(
        &heap,
        "after every-other free",
        "Every second 32-byte object freed: half the blocks are free, yet every pool still holds live ones.",
    ));
    for p in medium.drain(..) {
        // SAFETY: each block is live and freed once.
        unsafe { heap.free(p) };
    }
    steps.push(step(
        &heap,
        "after the 144-byte objects die",
        "All 144-byte objects freed: their pools are now empty, resident, and free for any size class.",
    ));
    let mut refill = Vec::with_capacity(SMALL_OBJECTS / 2);
    for _ in 0..SMALL_OBJECTS / 2 {
        refill.push(alloc(&mut heap, 64)?);
    }
    steps.push(step(
        &heap,
        "after a 64-byte refill",
        "60,000 objects of 64 B: they take the empty pools first (from the most-used arena), then new ones.",
    ));
    for p in small.iter().skip(1).step_by(2).chain(refill.iter()) {
        // SAFETY: each remaining block is live and freed once.
        unsafe { heap.free(*p) };
    }
    steps.push(step(
        &heap,
        "after full free",
        if config.keep_last_empty_arena() {
            "Everything freed: each arena whose pools are all empty is unmapped, except the last usable one (3.9+)."
        } else {
            "Everything freed: each arena whose pools are all empty is unmapped; this layout keeps none (before 3.9)."
        },
    ));
    heap.check_invariants().map_err(|e| crate::error::Error::Failed(e.to_string()))?;
    Ok(TourResults {
        meta: Meta::collect(command),
        layout: format!(
            "{}: {} size classes of {} B steps up to {} B, {} KiB pools, {} KiB arenas ({} pools when pool-aligned)",
            layout_title(layout),
            config.num_classes(),
            config.alignment(),
            config.small_request_threshold(),
            config.pool_size() / 1024,
            config.arena_size() / 1024,
            config.pools_per_arena()
        ),
        steps,
    })
}

/// `CPython 3.10+ layout` for the default (the words `docs/pymalloc.md` has always used),
/// `Layout 32c-4k-256k, that of CPython 3.7.4+ ...` for the others.
fn layout_title(layout: Layout) -> String {
    if layout == lineup::DEFAULT_PYMALLOC_LAYOUT {
        "CPython 3.10+ layout".into()
    } else {
        format!("Layout {}, that of CPython {}", layout.name(), layout.releases())
    }
}

/// Arguments of `arenalab tour`.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct TourArgs {
    /// The model's layout: `--preset LAYOUT` or `--python PATH`.
    #[command(flatten)]
    pub preset: crate::preset::PresetArgs,
    /// Print the tour as one JSON document (the shape of docs/results/pymalloc.json) instead
    /// of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `arenalab tour`: the tour with the chosen layout, as text or `--json` on stdout.
pub fn run(args: &TourArgs) -> Result<()> {
    use std::io::Write;
    let layout = args.preset.layout()?;
    let results = measure(&crate::retention::command_line(), layout)?;
    let text = if args.json { crate::results::to_json(&results)? } else { text(&results) };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(crate::error::Error::failed("writing to stdout"))
}

/// The tour for the terminal: the layout, a table of the steps, then each step's caption and
/// its pools per size class.
pub fn text(r: &TourResults) -> String {
    let (header, rows) = step_table(r);
    let mut out = format!("The pymalloc model, step by step. {}.\n\n", r.layout);
    out.push_str(&crate::render::text_table(&header, &rows));
    for (i, s) in r.steps.iter().enumerate() {
        let pools: Vec<String> =
            s.class_pools.iter().map(|&(size, pools)| format!("{size} B: {pools}")).collect();
        out.push_str(&format!(
            "\n{}. {}: {}\n   pools per class: {}\n",
            i + 1,
            s.name,
            s.did,
            if pools.is_empty() { "none".to_string() } else { pools.join(", ") }
        ));
    }
    out
}

/// Header and rows of the steps' table (shared by the terminal and the page).
fn step_table(r: &TourResults) -> (Vec<String>, Vec<Vec<String>>) {
    let header: Vec<String> = [
        "step",
        "arenas",
        "reclaimed",
        "used pools",
        "full",
        "empty",
        "never carved",
        "blocks in use",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.arenas_current.to_string(),
                s.arenas_reclaimed.to_string(),
                s.pools[0].to_string(),
                s.pools[1].to_string(),
                s.pools[2].to_string(),
                s.pools[3].to_string(),
                s.blocks_in_use.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

/// The page's title.
pub const TITLE: &str = "How pymalloc works";

impl crate::results::Checked for TourResults {
    /// At least one step, and every step's occupancy map can be drawn.
    fn check(&self) -> std::result::Result<(), String> {
        if self.steps.is_empty() {
            return Err("the tour has no steps".into());
        }
        for s in &self.steps {
            s.occupancy.check().map_err(|e| format!("step {:?}: {e}", s.name))?;
        }
        Ok(())
    }
}

/// Folder (under docs/) of the page's pictures: one occupancy map per step.
pub const IMG_DIR: &str = "pymalloc";

/// A step's picture: `pymalloc/<n>-<name as a slug>.svg`.
fn step_file(i: usize, s: &Step) -> String {
    let mut slug = String::new();
    for c in s.name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    format!("{IMG_DIR}/{}-{}.svg", i + 1, slug.trim_matches('-'))
}

/// Writes docs/pymalloc.md and one occupancy map per step under docs/pymalloc/ from the
/// tour's results. (One map per step, each at its own step, so every map is drawn at a size
/// that stays readable at page width.)
pub fn render(r: &TourResults, docs: &Path) -> Result<()> {
    for (i, s) in r.steps.iter().enumerate() {
        write_file(
            &docs.join(step_file(i, s)),
            &occupancy::svg(
                &format!("The pymalloc model, step {}", i + 1),
                &[(s.name.clone(), &s.occupancy)],
            ),
        )?;
    }
    let mut md = page_header(TITLE, &r.meta);
    md.push_str(
        "CPython allocates every object of at most 512 bytes from its own allocator, **pymalloc**. \
         This page walks through arenalab's model of it (the `pymalloc` crate), with pictures of \
         real snapshots of the model and the report it prints, shaped like CPython's \
         `sys._debugmallocstats()`.\n\n",
    );
    md.push_str(&format!("Layout: {}.\n\n", r.layout));
    md.push_str(TEACHING);
    md.push_str("\n## The tour\n\n");
    md.push_str(
        "After each step below, a map of the model's memory: a row per arena, ordered by \
         address, the highest on top (the kernel places each new mapping below the previous \
         one, so the first arena allocated is usually the top row); a cell per pool, in address \
         order. Grey: never carved (never touched, not resident). Light blue: empty but \
         resident. Orange to red: used, darker when fuller. Dark red: full.\n\n",
    );
    let (header, rows) = step_table(r);
    md.push_str(&markdown_table(&header, &rows));
    for (i, s) in r.steps.iter().enumerate() {
        md.push_str(&format!(
            "\n### {}\n\n{}\n\n![occupancy {}]({})\n\n```text\n{}\n```\n",
            s.name,
            s.did,
            s.name,
            step_file(i, s),
            s.report.trim_end()
        ));
    }
    write_file(&docs.join("pymalloc.md"), &md)
}

const TEACHING: &str = "\
## Blocks, pools and arenas

* A **block** is what one object gets: its size rounded up to a multiple of 16 bytes. Requests \
  of 1-16 bytes share class 0, 17-32 bytes class 1, and so on up to 512 bytes (32 classes). \
  Larger requests, and 0-byte ones, go to the C library's `malloc`.
* A **pool** (16 KiB) holds blocks of one class only, after a 48-byte header: 510 blocks of \
  32 bytes, 31 of 512. A pool is *used* (some blocks free), *full*, or *empty*. Blocks are carved \
  lazily, so a pool's untouched pages are never made resident.
* An **arena** (1 MiB) is one `mmap` from the kernel, cut into 64 pools (63 when the mapping \
  does not start on a 16 KiB boundary: one pool is lost to alignment).

## Why freed memory stays

Freeing an object puts its block on the pool's free list: the memory stays in the process, \
ready for the next object of that size. A pool whose blocks are all free goes back to its \
arena's list of empty pools, still resident, ready for **any** size class. Only an arena whose \
pools are **all** empty is returned to the kernel with `munmap`, and since CPython 3.9 not even \
then when it is the last usable arena, so that a loop freeing and allocating around an arena's \
worth of objects does not map and unmap memory on every turn.

So one live 32-byte object keeps a whole 1 MiB arena mapped. Freeing every other object of a \
big list gives back nothing at all.

## Why the arena order matters

When a class needs a new pool, pymalloc takes it from the usable arena with the **fewest** free \
pools. The list of usable arenas is kept sorted by free-pool count (re-positioned in O(1) with \
the `nfp2lasta` fingers, CPython 3.8+). Nearly empty arenas therefore get no new objects and \
have a chance to drain completely and be released. The retention experiment's `policy` \
workload measures this against the alternative, taking pools from the newest arena.
";
