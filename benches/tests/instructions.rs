//! The `instructions` driver: its argument errors (exit code 2 and a message), and one real
//! count under callgrind read back in arenalab's results format (skipped without valgrind).

use arenalab::bench_instr::{self, InstrResults};
use std::path::PathBuf;
use std::process::{Command, Output};

fn driver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_instructions")).args(args).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arenalab-instr-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Exit code 2, a message on stderr containing `needle`, nothing on stdout.
fn usage_error(args: &[&str], needle: &str) {
    let out = driver(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
}

#[test]
fn an_unknown_argument_is_exit_2() {
    usage_error(&["--fast"], "unknown argument \"--fast\"");
}

#[test]
fn an_unknown_pattern_is_exit_2_listing_the_patterns() {
    usage_error(&["--pattern", "fifo"], "pair-fresh, pair-warm, pair-1024, lifo-1000, churn-1000");
}

#[test]
fn an_unknown_contender_is_exit_2_listing_the_contenders() {
    usage_error(&["--contender", "tcmalloc"], "pymalloc-heap, pymalloc, mimalloc");
}

#[test]
fn a_bad_repetition_count_is_exit_2() {
    usage_error(&["--units", "0"], "--units \"0\"");
    usage_error(&["--units=ten"], "--units \"ten\"");
}

#[test]
fn a_flag_without_its_value_is_exit_2() {
    usage_error(&["--out"], "--out needs a value");
}

#[test]
fn no_valgrind_is_exit_2_saying_how_to_get_it() {
    let out = scratch("novalgrind").join("i.json");
    let out = out.to_str().unwrap();
    usage_error(&["--valgrind", "/nonexistent/valgrind", "--out", out], "apt-get install valgrind");
    assert!(!std::path::Path::new(out).exists());
}

#[test]
fn help_explains_and_ends_with_examples() {
    let out = driver(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(Ir(2N) - Ir(N))") && text.contains("baseline"));
    let examples = text.rfind("Examples:").unwrap();
    assert!(text[examples..].lines().skip(1).all(|l| l.trim().is_empty() || l.contains("cargo")));
}

#[test]
fn one_count_under_callgrind_round_trips_through_the_results_file() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skipped: valgrind is not installed, so nothing can be counted");
        return;
    }
    let docs = scratch("roundtrip");
    let path = docs.join("results").join("instructions.json");
    let out = driver(&[
        "--pattern",
        "pair-warm",
        "--contender",
        "pymalloc-heap,baseline",
        "--units",
        "50",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: InstrResults =
        arenalab::results::load(&docs, bench_instr::RESULTS_NAME).unwrap().expect("written");
    assert!(r.valgrind.starts_with("valgrind-"));
    assert!(r.meta.command.contains("--bin instructions -- --pattern pair-warm"));
    assert_eq!(r.patterns.len(), 1);
    assert_eq!(r.contenders(), ["pymalloc-heap", "baseline"]);
    for row in &r.rows {
        assert_eq!((row.pattern.as_str(), row.units), ("pair-warm", 50));
        // Every pair on the warm fast path runs the same instructions: the difference between
        // 100 and 50 pairs is 50 times one pair's count, exactly.
        assert_eq!((row.ir_2n - row.ir_n) % 50, 0, "{row:?}");
    }
    let heap = r.per_pair("pair-warm", "pymalloc-heap").unwrap();
    let base = r.per_pair("pair-warm", "baseline").unwrap();
    assert!(base > 0.0 && heap > base, "heap {heap}, baseline {base}");
    assert_eq!(r.allocator_share(&r.rows[0]), Some(heap - base));
    // What was printed is what was saved.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{heap:.1}")), "{stdout}");
    let md = bench_instr::section(Some(&r));
    assert!(md.contains(&format!("| pair-warm | {heap:.1} | {:.1} | {base:.1} |", heap - base)));
    std::fs::remove_dir_all(docs).unwrap();
}
