//! The callgrind section of docs/benchmarks.md (`arenalab::bench_instr`): figures computed from
//! the counts, a missing results file, and files that cannot be rendered (exit code 2).

use arenalab::bench_instr::{self, InstrResults, InstrRow, Pattern};
use arenalab::results::Meta;
use std::path::{Path, PathBuf};
use std::process::Command;

fn row(pattern: &str, contender: &str, units: u64, ir_n: u64, ir_2n: u64) -> InstrRow {
    InstrRow { pattern: pattern.into(), contender: contender.into(), units, ir_n, ir_2n }
}

/// Two patterns, two contenders and the baseline; per pair: heap 241 and 62, mimalloc 98.5 on
/// the fresh pair only, baseline 15 and 9.4.
fn synthetic() -> InstrResults {
    let pattern = |name: &str, pairs| Pattern {
        name: name.into(),
        what: format!("what {name} does"),
        pairs_per_unit: pairs,
    };
    InstrResults {
        meta: Meta::collect("cargo run --release -p arenalab-benches --bin instructions"),
        valgrind: "valgrind-3.19.0".into(),
        patterns: vec![pattern("pair-fresh", 1), pattern("lifo-1000", 1000)],
        rows: vec![
            row("pair-fresh", "pymalloc-heap", 2000, 1_000_000, 1_482_000),
            row("pair-fresh", "mimalloc", 2000, 500_000, 697_000),
            row("pair-fresh", "baseline", 2000, 40_000, 70_000),
            row("lifo-1000", "pymalloc-heap", 4, 900_000, 1_148_000),
            row("lifo-1000", "baseline", 4, 10_000, 47_600),
        ],
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("arenalab-bench-instr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("results")).unwrap();
    dir
}

#[test]
fn per_pair_is_the_difference_of_the_two_runs_over_the_pairs() {
    let r = synthetic();
    assert_eq!(r.per_pair("pair-fresh", "pymalloc-heap"), Some(241.0));
    assert_eq!(r.per_pair("pair-fresh", "mimalloc"), Some(98.5));
    assert_eq!(r.per_pair("lifo-1000", "pymalloc-heap"), Some(62.0));
    assert_eq!(r.per_pair("lifo-1000", "baseline"), Some(9.4));
    assert_eq!(r.per_pair("lifo-1000", "mimalloc"), None);
    assert_eq!(r.allocator_share(&r.rows[0]), Some(226.0));
    assert_eq!(r.allocator_share(&r.rows[2]), None, "the baseline has no share");
}

#[test]
fn the_section_has_a_row_per_pattern_and_two_columns_per_contender() {
    let md = bench_instr::section(Some(&synthetic()));
    assert!(md.starts_with(bench_instr::HEADING));
    assert!(md.contains(
        "| pattern | `pymalloc-heap` | `pymalloc-heap` alloc | `mimalloc` | `mimalloc` alloc | `baseline` |"
    ));
    assert!(md.contains("| pair-fresh | 241 | 226 | 98.5 | 83.5 | 15.0 |"), "{md}");
    assert!(md.contains("| lifo-1000 | 62.0 | 52.6 | – | – | 9.4 |"), "{md}");
    assert!(md.contains("- `lifo-1000`: what lifo-1000 does.\n"));
    assert!(md.contains("valgrind-3.19.0") && md.contains("--bin instructions"));
}

#[test]
fn without_results_the_section_says_how_to_count() {
    let md = bench_instr::section(None);
    assert!(md.contains("Not measured") && md.contains(bench_instr::COMMAND), "{md}");
}

/// `arenalab bench-report --render-only` on `docs`, with the committed benchmark results.
fn render_only(docs: &Path) -> std::process::Output {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results/benchmarks.json");
    std::fs::copy(committed, docs.join("results/benchmarks.json")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["bench-report", "--render-only", "--docs"])
        .arg(docs)
        .output()
        .unwrap()
}

#[test]
fn bench_report_shows_the_counts_when_present_and_says_not_measured_when_not() {
    let docs = scratch("page");
    let out = render_only(&docs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap();
    assert!(md.contains(bench_instr::HEADING) && md.contains("Not measured"), "{md}");

    arenalab::results::save(&docs, bench_instr::RESULTS_NAME, &synthetic()).unwrap();
    let out = render_only(&docs);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap();
    assert!(md.contains("| pair-fresh | 241 | 226 | 98.5 | 83.5 | 15.0 |"), "{md}");
    assert!(!md.contains("Not measured"));
    std::fs::remove_dir_all(docs).unwrap();
}

/// Writes `text` as the instructions results and expects exit code 2 naming the file and
/// `needle`, with the previous page untouched.
fn unusable(name: &str, text: &str, needle: &str) {
    let docs = scratch(name);
    std::fs::write(docs.join("benchmarks.md"), "previous page\n").unwrap();
    std::fs::write(docs.join("results/instructions.json"), text).unwrap();
    let out = render_only(&docs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("instructions.json") && stderr.contains(needle), "{stderr}");
    assert_eq!(std::fs::read_to_string(docs.join("benchmarks.md")).unwrap(), "previous page\n");
    std::fs::remove_dir_all(docs).unwrap();
}

#[test]
fn an_instructions_file_that_is_not_json_is_exit_2() {
    unusable("notjson", "callgrind said no", "not a instructions results document");
}

#[test]
fn a_count_that_shrank_from_n_to_2n_is_exit_2() {
    let mut r = synthetic();
    r.rows[1].ir_2n = r.rows[1].ir_n - 1;
    let text = arenalab::results::to_json(&r).unwrap();
    unusable("shrank", &text, "row pair-fresh/mimalloc: fewer instructions for 2N than for N");
}

#[test]
fn a_row_of_an_unlisted_pattern_is_exit_2() {
    let mut r = synthetic();
    r.rows[0].pattern = "fifo".into();
    let text = arenalab::results::to_json(&r).unwrap();
    unusable("unlisted", &text, "pattern \"fifo\" is not listed");
}

#[test]
fn the_instruction_target_compares_allocator_shares_with_the_real_obmalloc() {
    let mut i = synthetic();
    // Per pair 176 and 80.0, so shares 161 and 70.6 against the heap's 226 and 52.6.
    i.rows.push(row("pair-fresh", "cpython-obmalloc-3.11", 2000, 1_000_000, 1_352_000));
    i.rows.push(row("lifo-1000", "cpython-obmalloc-3.11", 4, 900_000, 1_220_000));
    let mut r = arenalab::bench_report::BenchResults {
        meta: Meta::collect("test"),
        criterion_dir: String::new(),
        benchmarks: Vec::new(),
        instructions: Some(i),
        rss: Vec::new(),
    };
    let t = arenalab::bench_report::obmalloc_targets(&r).pop().unwrap();
    assert!(t.goal.contains("instructions per pair") && t.goal.contains("cpython-obmalloc-3.11"));
    assert_eq!(t.rows, 2);
    assert!((t.worst.unwrap() - 226.0 / 161.0).abs() < 1e-9, "{t:?}");
    assert_eq!(t.worst_at, "callgrind pair-fresh");
    assert_eq!(t.met(), Some(false));
    // Without the real obmalloc among the counts: no rows, no verdict.
    r.instructions = Some(synthetic());
    let t = arenalab::bench_report::obmalloc_targets(&r).pop().unwrap();
    assert_eq!((t.rows, t.met()), (0, None));
}
