//! Instructions per alloc+free pair, counted under callgrind: the results format and its section
//! of docs/benchmarks.md.
//!
//! Times on a shared 2-core machine swing with the neighbours' load; the number of instructions
//! a pattern executes does not. The benches crate's driver
//! (`cargo run --release -p arenalab-benches --bin instructions`) re-runs itself under
//! `valgrind --tool=callgrind` once per (pattern, contender) with `N` repetitions of the
//! pattern and once with `2N`, counting only the loop that repeats it, and writes
//! `docs/results/instructions.json` ([`InstrResults`], [`RESULTS_NAME`]). The figure per pair is
//!
//! ```text
//! (Ir(2N) - Ir(N)) / (N × pairs per repetition)
//! ```
//!
//! so whatever happens once (the first arena's `mmap`, a lazily built table) cancels, and what
//! is left is the steady state. One contender, [`BASELINE`], is the harness alone: it hands out
//! one static buffer and frees nothing, so its count is the loop, the block's touch and the
//! bookkeeping of the pattern. A contender's **allocator share** is its count minus the
//! baseline's on the same pattern.
//!
//! [`section`] renders the results (or, when they are missing, how to produce them) as one
//! Markdown section; `arenalab bench-report` appends it to docs/benchmarks.md.
//!
//! ```
//! use arenalab::bench_instr::{section, InstrResults, InstrRow, Pattern};
//! use arenalab::results::Meta;
//! let row = |contender: &str, ir_n, ir_2n| InstrRow {
//!     pattern: "pair-warm".into(),
//!     contender: contender.into(),
//!     units: 1000,
//!     ir_n,
//!     ir_2n,
//! };
//! let r = InstrResults {
//!     meta: Meta::collect("instructions"),
//!     valgrind: "valgrind-3.19.0".into(),
//!     patterns: vec![Pattern { name: "pair-warm".into(), what: "one pair".into(), pairs_per_unit: 1 }],
//!     rows: vec![row("pymalloc-heap", 9_000, 91_000), row("baseline", 5_000, 25_000)],
//! };
//! assert_eq!(r.rows[0].per_pair(&r.patterns[0]), 82.0);
//! assert_eq!(r.allocator_share(&r.rows[0]), Some(62.0));
//! assert!(section(Some(&r)).contains("| pair-warm | 82.0 | 62.0 | 20.0 |"));
//! ```

use crate::render;
use crate::results::{Checked, Meta};
use serde::{Deserialize, Serialize};

/// The name of the results file: `docs/results/instructions.json`.
pub const RESULTS_NAME: &str = "instructions";

/// The harness-only contender every allocator share is taken against.
pub const BASELINE: &str = "baseline";

/// The command that measures the counts.
pub const COMMAND: &str = "cargo run --release -p arenalab-benches --bin instructions";

/// The section's heading.
pub const HEADING: &str = "## Instructions per alloc+free pair (callgrind)";

/// One pattern the driver counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Its name, e.g. `pair-fresh`.
    pub name: String,
    /// What one repetition does, in words.
    pub what: String,
    /// Alloc+free pairs per repetition (1 for a single pair, 1000 for a batch of 1000).
    pub pairs_per_unit: u64,
}

/// One (pattern, contender) count: callgrind's instruction totals for `N` and `2N` repetitions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstrRow {
    /// The pattern's name (one of [`InstrResults::patterns`]).
    pub pattern: String,
    /// The contender's name, as in the benchmark ids (`pymalloc-heap`, `mimalloc`, ...).
    pub contender: String,
    /// `N`: repetitions of the pattern in the smaller run.
    pub units: u64,
    /// Instructions executed in the counted loop with `N` repetitions.
    pub ir_n: u64,
    /// Instructions executed in the counted loop with `2N` repetitions.
    pub ir_2n: u64,
}

impl InstrRow {
    /// Instructions per alloc+free pair: `(ir_2n - ir_n) / (units × pairs per repetition)`.
    pub fn per_pair(&self, pattern: &Pattern) -> f64 {
        self.ir_2n.saturating_sub(self.ir_n) as f64
            / (self.units as f64 * pattern.pairs_per_unit as f64)
    }
}

/// What the driver writes to `docs/results/instructions.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstrResults {
    /// The command, this machine and the date.
    pub meta: Meta,
    /// `valgrind --version`, e.g. `valgrind-3.19.0`.
    pub valgrind: String,
    /// The patterns counted, in the order the table shows them.
    pub patterns: Vec<Pattern>,
    /// One row per (pattern, contender); contenders appear in the table in first-seen order.
    pub rows: Vec<InstrRow>,
}

impl InstrResults {
    /// The pattern named `name`.
    pub fn pattern(&self, name: &str) -> Option<&Pattern> {
        self.patterns.iter().find(|p| p.name == name)
    }

    /// The row of `contender` on `pattern`.
    pub fn get(&self, pattern: &str, contender: &str) -> Option<&InstrRow> {
        self.rows.iter().find(|r| r.pattern == pattern && r.contender == contender)
    }

    /// Instructions per pair of `contender` on `pattern`.
    pub fn per_pair(&self, pattern: &str, contender: &str) -> Option<f64> {
        Some(self.get(pattern, contender)?.per_pair(self.pattern(pattern)?))
    }

    /// The row's count minus the [`BASELINE`]'s on the same pattern: the allocator's own part.
    /// `None` for the baseline itself or when it was not counted.
    pub fn allocator_share(&self, row: &InstrRow) -> Option<f64> {
        if row.contender == BASELINE {
            return None;
        }
        Some(self.per_pair(&row.pattern, &row.contender)? - self.per_pair(&row.pattern, BASELINE)?)
    }

    /// The contenders, in first-seen order.
    pub fn contenders(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !out.contains(&r.contender.as_str()) {
                out.push(&r.contender);
            }
        }
        out
    }
}

impl Checked for InstrResults {
    /// At least one row; every row's pattern is listed, counts more than none, and the `2N` run
    /// executed at least as many instructions as the `N` run.
    fn check(&self) -> std::result::Result<(), String> {
        if self.rows.is_empty() {
            return Err("no rows".into());
        }
        for p in &self.patterns {
            if p.pairs_per_unit == 0 {
                return Err(format!("pattern {:?} has no pairs per repetition", p.name));
            }
        }
        for r in &self.rows {
            let at = format!("{}/{}", r.pattern, r.contender);
            if self.pattern(&r.pattern).is_none() {
                return Err(format!("row {at}: pattern {:?} is not listed", r.pattern));
            }
            if r.units == 0 {
                return Err(format!("row {at}: zero repetitions"));
            }
            if r.ir_2n < r.ir_n {
                return Err(format!("row {at}: fewer instructions for 2N than for N"));
            }
        }
        Ok(())
    }
}

/// Formats an instruction count per pair: whole numbers from 100 up, one decimal below.
fn fmt_ir(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

/// The table: a row per pattern, and per contender two columns, instructions per pair and the
/// allocator share (the baseline has only the first).
pub fn table(r: &InstrResults) -> String {
    let contenders = r.contenders();
    let mut header = vec!["pattern".to_string()];
    for c in &contenders {
        header.push(format!("`{c}`"));
        if *c != BASELINE {
            header.push(format!("`{c}` alloc"));
        }
    }
    let rows: Vec<Vec<String>> = r
        .patterns
        .iter()
        .filter(|p| r.rows.iter().any(|row| row.pattern == p.name))
        .map(|p| {
            let mut row = vec![p.name.clone()];
            for c in &contenders {
                let cell = r.get(&p.name, c);
                row.push(cell.map_or("–".into(), |x| fmt_ir(x.per_pair(p))));
                if *c != BASELINE {
                    row.push(cell.and_then(|x| r.allocator_share(x)).map_or("–".into(), fmt_ir));
                }
            }
            row
        })
        .collect();
    render::markdown_table(&header, &rows)
}

/// The docs/benchmarks.md section: the counts and how they were made, or, without results,
/// how to make them.
pub fn section(results: Option<&InstrResults>) -> String {
    let mut md = format!("{HEADING}\n\n");
    let Some(r) = results else {
        md.push_str(&format!(
            "_Not measured: `results/{RESULTS_NAME}.json` is missing. Count with `{COMMAND}` \
             (needs valgrind; about a minute), then re-render with \
             `cargo run --release -- bench-report --render-only`._\n"
        ));
        return md;
    };
    md.push_str(&format!(
        "Instructions executed per alloc+free pair, counted by `valgrind --tool=callgrind` \
         ({}): unlike times on this shared machine, they come out the same on every run. Each \
         pattern ran `N` and `2N` times in a fresh process per contender, only the repeating \
         loop counted; the figure is the difference over `N` pairs, so one-time costs (the \
         first arena, lazy setup) cancel. \
         \"alloc\" is the **allocator's share**: the count minus `{BASELINE}`'s, a \
         harness-only contender that hands out one static buffer, so the loop and the writes \
         to each block are taken out. Counted {} by `{}`.\n\n",
        r.valgrind,
        r.meta.describe(),
        r.meta.command
    ));
    md.push_str(&table(r));
    md.push('\n');
    for p in r.patterns.iter().filter(|p| r.rows.iter().any(|row| row.pattern == p.name)) {
        md.push_str(&format!("- `{}`: {}.\n", p.name, p.what));
    }
    md
}
