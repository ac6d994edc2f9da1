//! # arenalab: the program
//!
//! `arenalab` measures where freed memory goes and writes what it finds into `docs/`. It is the
//! binary `cargo run --release` runs; this library is everything behind it.
//!
//! ## How a measurement is made
//!
//! An allocator is process-global: whatever one workload leaves in it would be counted against
//! the next. So every run happens in a **fresh child process**: the parent re-runs its own
//! executable as `arenalab worker <experiment> ...` ([`procs`]), one child per allocator and
//! workload. The child allocates through the allocator under test directly
//! ([`lineup::Allocator::global`]), keeps its bookkeeping (pointer arrays) in memory mapped
//! apart from that allocator, reads its own memory from the kernel after each phase
//! ([`measure`]: `/proc/self/smaps_rollup`) beside the allocator's own counters
//! ([`lineup::Allocator::stats`]), and prints one JSON document. The parent kills and reaps
//! every process it creates, at any depth, on success, on error and on SIGINT (Ctrl-C), SIGTERM
//! or SIGHUP; if it is itself SIGKILLed, they die by themselves ([`procs`]: the lifeline).
//!
//! ## Measuring and rendering are separate
//!
//! ```text
//!  arenalab report ──measure──> docs/results/<experiment>.json ──render──> docs/*.md, docs/**/*.svg
//!                                 (machine and date inside)       (arenalab render: this half only)
//! ```
//!
//! Each experiment module has a `measure` function that returns serialisable results and a
//! `render` function that reads only those results. A test renders the committed results and
//! compares them with the committed pages, so docs/ cannot drift from the code.
//!
//! ## Modules
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | command-line parsing and dispatch; bad input is exit code 2 ([`error`]) |
//! | [`measure`] | the kernel's view: `/proc/PID/smaps_rollup`, `status`, `/proc/meminfo`, `/proc/zoneinfo` |
//! | [`fit`] | whether children of a given size fit in `MemAvailable`, checked before starting them |
//! | [`procs`] | worker children: spawned, signalled, waited for, always killed and reaped; no process outlives `arenalab` |
//! | [`worker`] | what the children share: bookkeeping outside the allocator, objects filling a process, JSON report lines |
//! | [`preset`] | `--preset LAYOUT` / `--python PATH`: the pymalloc layout the model runs with |
//! | [`retention`] | what each allocator keeps after free: seven workloads, phase by phase |
//! | [`exit`] | memory given back when a process ends, seven ways of ending |
//! | [`pool`] | memory held by worker-process pools, closed or not |
//! | [`cpython`] | the three questions answered by the real CPython interpreters on the machine |
//! | [`tour`] | the pymalloc model step by step, for docs/pymalloc.md |
//! | [`trace`] | record a real CPython's calls into pymalloc; replay them on the model (proof of faithfulness) and the other allocators |
//! | [`bench_report`] | criterion's results to docs/benchmarks.md |
//! | [`bench_instr`] | instructions per alloc+free pair (callgrind): results format and benchmarks.md section |
//! | [`results`] | the results files and the machine-and-date header they carry |
//! | [`render`] | page headers, tables, SVG charts, occupancy maps |
//! | [`site`] | docs/README.md, docs/claims.md (verdicts computed from results), docs/allocators.md |
//! | [`report`] | `arenalab report` (everything) and `arenalab render` (pages only) |

pub mod bench_instr;
pub mod bench_report;
pub mod bench_rss;
pub mod cli;
pub mod cpython;
pub mod error;
pub mod exit;
pub mod fit;
pub mod measure;
pub mod pool;
pub mod preset;
pub mod procs;
pub mod render;
pub mod report;
pub mod results;
pub mod retention;
pub mod site;
pub mod tour;
pub mod trace;
pub mod worker;
