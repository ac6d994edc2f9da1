//! `arenalab bench-report` on a small fake criterion tree: parsing, ratios, targets, the page.

use arenalab::bench_report::{self, BenchReportArgs, BenchResults};
use std::path::{Path, PathBuf};

/// A fresh, empty folder under the system temp dir, unique to this test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("arenalab-bench-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes one benchmark the way criterion 0.8 lays it out, with `median_ns_per_iter` as the
/// median (and mean twice that, to tell them apart) under `<kind>/` (`new` or `base`).
fn write_bench(root: &Path, kind: &str, id: (&str, &str, &str, &str), elements: u64, median: f64) {
    let (group, pattern, allocator, size) = id;
    let dir = root.join(group).join(format!("{pattern}_{allocator}")).join(size).join(kind);
    std::fs::create_dir_all(&dir).unwrap();
    let function = format!("{pattern}/{allocator}");
    let benchmark = format!(
        r#"{{"group_id":"{group}","function_id":"{function}","value_str":"{size}","throughput":{{"Elements":{elements}}},"full_id":"{group}/{function}/{size}","directory_name":"{group}/{pattern}_{allocator}/{size}","title":"{group}/{function}/{size}"}}"#
    );
    std::fs::write(dir.join("benchmark.json"), benchmark).unwrap();
    let est = |p: f64| {
        format!(
            r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}},"point_estimate":{p},"standard_error":1.0}}"#,
            p * 0.9,
            p * 1.1
        )
    };
    let estimates = format!(
        r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":null,"std_dev":{}}}"#,
        est(median * 2.0),
        est(median),
        est(1.0),
        est(1.0)
    );
    std::fs::write(dir.join("estimates.json"), estimates).unwrap();
}

const ALLOCATORS: [&str; 5] = ["system", "mimalloc", "jemalloc", "pymalloc", "pymalloc-heap"];

/// A tree whose figures make some targets pass and some fail, with known worst rows.
fn fake_tree(root: &Path) {
    // ns per op for system, mimalloc, jemalloc, pymalloc, pymalloc-heap.
    let rows: [(&str, &str, &str, u64, [f64; 5]); 5] = [
        ("order", "shuffled", "1000", 1000, [100.0, 20.0, 25.0, 30.0, 15.0]),
        ("order", "lifo", "1000", 1000, [50.0, 10.0, 8.0, 16.0, 7.0]),
        ("churn", "random", "1000", 10_000, [60.0, 30.0, 40.0, 25.0, 20.0]),
        ("scaling", "alloc-all-free-all", "1000", 1000, [30.0, 9.0, 12.0, 20.0, 10.0]),
        ("scaling", "alloc-all-free-all", "1000000", 1_000_000, [40.0, 9.0, 12.0, 30.0, 11.0]),
    ];
    for (group, pattern, size, elements, ns) in rows {
        for (a, ns) in ALLOCATORS.iter().zip(ns) {
            write_bench(root, "new", (group, pattern, a, size), elements, ns * elements as f64);
            // An older run's copy, which must be ignored.
            write_bench(root, "base", (group, pattern, a, size), elements, 1e9);
        }
    }
    // Another crate's benchmark whose id is not group/pattern/allocator/size: skipped.
    let foreign = root.join("parse").join("json").join("new");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(
        foreign.join("benchmark.json"),
        r#"{"group_id":"parse","function_id":"json","value_str":null,"throughput":null,"full_id":"parse/json","directory_name":"parse/json","title":"parse/json"}"#,
    )
    .unwrap();
    std::fs::create_dir_all(root.join("report")).unwrap();
}

fn args(criterion: &Path, docs: &Path) -> BenchReportArgs {
    BenchReportArgs {
        criterion_dir: Some(criterion.to_path_buf()),
        docs: Some(docs.to_path_buf()),
        render_only: false,
    }
}

fn collected(name: &str) -> (PathBuf, BenchResults) {
    let dir = scratch(name);
    fake_tree(&dir.join("criterion"));
    let r = bench_report::collect(&args(&dir.join("criterion"), &dir.join("docs"))).unwrap();
    (dir, r)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn medians_are_divided_by_elements_and_old_runs_and_foreign_ids_are_skipped() {
    let (dir, r) = collected("parse");
    assert_eq!(r.benchmarks.len(), 25);
    let b = r.get("churn", "random", "pymalloc-heap", "1000").unwrap();
    assert_eq!(b.elements, 10_000);
    assert!(close(b.ns_per_op, 20.0), "{}", b.ns_per_op);
    assert!(close(b.ns_low, 18.0) && close(b.ns_high, 22.0));
    assert!(close(b.mean_ns_per_op, 40.0));
    assert_eq!(b.id(), "churn/random/pymalloc-heap/1000");
    assert_eq!(r.groups(), ["order", "churn", "scaling"]);
    assert_eq!(r.rows("order")[0].0, "lifo", "page order, not file-system order");
    assert_eq!(r.allocators("order"), ALLOCATORS);
    assert!(r.meta.command.contains("--criterion-dir"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn ratios_are_against_mimalloc_on_the_same_row() {
    let (dir, r) = collected("ratios");
    let ratio = |g, p, a, s| r.ratio_to_baseline(r.get(g, p, a, s).unwrap()).unwrap();
    assert!(close(ratio("order", "shuffled", "system", "1000"), 5.0));
    assert!(close(ratio("order", "shuffled", "pymalloc-heap", "1000"), 0.75));
    assert!(close(ratio("order", "lifo", "jemalloc", "1000"), 0.8));
    assert!(close(ratio("scaling", "alloc-all-free-all", "pymalloc", "1000000"), 30.0 / 9.0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn targets_are_computed_from_the_figures() {
    let (dir, r) = collected("targets");
    let t = bench_report::targets(&r);
    let figures: Vec<(Option<f64>, Option<bool>, &str)> =
        t.iter().map(|t| (t.worst, t.met(), t.worst_at.as_str())).collect();
    // Heap vs the better of mimalloc/jemalloc: 7/8 on lifo is worse than 15/20 and 20/30.
    assert!(close(figures[0].0.unwrap(), 0.875));
    assert_eq!((figures[0].1, figures[0].2), (Some(false), "order/lifo/1000"));
    assert_eq!(t[0].rows, 3);
    // The locked global: 16/8 on lifo.
    assert!(close(figures[1].0.unwrap(), 2.0));
    assert_eq!(figures[1].1, Some(false));
    // Speed-up over glibc on shuffled: 100/15 and 100/30.
    assert!(close(figures[2].0.unwrap(), 100.0 / 15.0));
    assert_eq!(figures[2].1, Some(true));
    assert!(close(figures[3].0.unwrap(), 100.0 / 30.0));
    assert_eq!(figures[3].1, Some(true));
    // Scaling spread: 11/10 for the heap, 30/20 for the global.
    assert!(close(figures[4].0.unwrap(), 1.1));
    assert_eq!((figures[4].1, figures[4].2), (Some(true), "N=1000000 vs N=1000"));
    assert!(close(figures[5].0.unwrap(), 1.5));
    assert_eq!(figures[5].1, Some(false));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_page_has_a_table_and_chart_per_group_and_says_where_it_came_from() {
    let (dir, r) = collected("page");
    let docs = dir.join("docs");
    bench_report::render(&r, &docs).unwrap();
    let md = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap();
    assert!(md.starts_with("# Benchmarks"));
    assert!(md.contains("Generated by `cargo bench && arenalab bench-report --criterion-dir"));
    assert!(md.contains(&r.meta.describe()));
    assert!(md.contains(
        "| shuffled | 1000 | 100 (5.00×) | 20.0 (1.00×) | 25.0 (1.25×) | 30.0 (1.50×) | 15.0 (0.75×) |"
    ));
    assert!(md.contains("| random | 1000 | 60.0 (2.00×) | 30.0 (1.00×)"));
    assert!(md.contains("| 0.88 | order/lifo/1000 | 3 | **not met** |"));
    assert!(md.contains("| 6.67 | order/shuffled/1000 | 1 | met |"));
    for group in ["order", "churn", "scaling"] {
        assert!(md.contains(&format!("## `{group}`")));
        assert!(md.contains(&format!("![{group}](benchmarks/{group}.svg)")));
        let svg = std::fs::read_to_string(docs.join(format!("benchmarks/{group}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("pymalloc-heap"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_saves_the_figures_and_render_only_reads_them_back() {
    let dir = scratch("run");
    fake_tree(&dir.join("criterion"));
    let docs = dir.join("docs");
    let a = args(&dir.join("criterion"), &docs);
    bench_report::run(&a).unwrap();
    let saved: BenchResults =
        arenalab::results::load(&docs, bench_report::RESULTS_NAME).unwrap().unwrap();
    let fresh = bench_report::collect(&a).unwrap().benchmarks;
    assert_eq!(saved.benchmarks.len(), fresh.len());
    for (s, f) in saved.benchmarks.iter().zip(&fresh) {
        // JSON keeps the ids exactly and the floats to within serde_json's parsing precision.
        assert_eq!((s.id(), s.elements), (f.id(), f.elements));
        assert!(close(s.ns_per_op, f.ns_per_op) && close(s.ns_high, f.ns_high), "{}", s.id());
    }
    // With the criterion tree gone, --render-only still renders from the JSON.
    std::fs::remove_dir_all(dir.join("criterion")).unwrap();
    std::fs::remove_file(docs.join("benchmarks.md")).unwrap();
    bench_report::run(&BenchReportArgs { render_only: true, ..a }).unwrap();
    assert!(docs.join("benchmarks.md").is_file());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_cached_heap_gets_its_own_target_rows_only_when_measured() {
    let (dir, r) = collected("cached");
    assert!(bench_report::cached_targets(&r).is_empty());
    let root = dir.join("criterion");
    write_bench(
        &root,
        "new",
        ("order", "shuffled", "pymalloc-heap-cached", "1000"),
        1000,
        10_000.0,
    );
    let r = bench_report::collect(&args(&root, &dir.join("docs"))).unwrap();
    assert_eq!(r.allocators("order").last().unwrap(), "pymalloc-heap-cached");
    let t = bench_report::cached_targets(&r);
    assert_eq!(t.len(), 3);
    // 10 ns against the better of 20 (mimalloc) and 25 (jemalloc); glibc's 100 is 10x slower.
    assert!(close(t[0].worst.unwrap(), 0.5) && t[0].met() == Some(true));
    assert!(close(t[1].worst.unwrap(), 10.0) && t[1].met() == Some(true));
    assert_eq!((t[2].rows, t[2].met()), (0, None));
    bench_report::render(&r, &dir.join("docs")).unwrap();
    let md = std::fs::read_to_string(dir.join("docs").join("benchmarks.md")).unwrap();
    assert!(md.contains("| 0.50 | order/shuffled/1000 | 1 | met |"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn without_the_real_obmalloc_its_targets_are_not_measured_and_carry_no_verdict() {
    let (dir, r) = collected("no-obmalloc");
    assert_eq!(r.reference_obmalloc(), None);
    let t = bench_report::obmalloc_targets(&r);
    assert_eq!(t.len(), 4);
    assert!(t.iter().all(|t| t.rows == 0 && t.met().is_none()), "{t:?}");
    bench_report::render(&r, &dir.join("docs")).unwrap();
    let md = std::fs::read_to_string(dir.join("docs").join("benchmarks.md")).unwrap();
    let section = md.split("## Targets").nth(1).unwrap().split("## Appendix").next().unwrap();
    assert!(section.contains("was not measured in this run"));
    assert_eq!(section.matches("| not measured |").count(), 4, "{section}");
    assert!(!section.contains("| met |") && !section.contains("not met**"));
    assert!(!md.contains("against the real obmalloc: ns per operation"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// The fake tree plus the real obmalloc (3.11, and 3.8 and 3.13 on one row), the warm heap
/// and a `size` and a `threads` row.
fn with_obmalloc(name: &str) -> (PathBuf, BenchResults) {
    let dir = scratch(name);
    let root = dir.join("criterion");
    fake_tree(&root);
    let ob = "cpython-obmalloc-3.11";
    let rows: [(&str, &str, &str, u64, f64); 5] = [
        ("order", "shuffled", "1000", 1000, 20.0),
        ("order", "lifo", "1000", 1000, 6.0),
        ("churn", "random", "1000", 10_000, 25.0),
        ("scaling", "alloc-all-free-all", "1000", 1000, 10.0),
        ("scaling", "alloc-all-free-all", "1000000", 1_000_000, 11.0),
    ];
    for (group, pattern, size, elements, ns) in rows {
        write_bench(&root, "new", (group, pattern, ob, size), elements, ns * elements as f64);
    }
    // Other versions, far faster: the reference is still 3.11 (the oldest 3.10 or newer).
    for other in ["cpython-obmalloc-3.8", "cpython-obmalloc-3.13"] {
        write_bench(&root, "new", ("order", "lifo", other, "1000"), 1000, 1000.0);
    }
    // size: the fresh heap's empty-pool cycle (20 ns) is not what the target compares.
    for (a, ns) in [("mimalloc", 9.5), (ob, 9.0), ("pymalloc", 12.0), ("pymalloc-heap", 20.0)] {
        write_bench(&root, "new", ("size", "pair", a, "32"), 1, ns);
    }
    write_bench(&root, "new", ("size", "pair", "pymalloc-heap-warm", "32"), 1, 8.0);
    write_bench(&root, "new", ("size", "pair", "pymalloc-warm", "32"), 1, 10.0);
    write_bench(&root, "new", ("threads", "larson", "mimalloc", "1000"), 100, 4000.0);
    write_bench(&root, "new", ("threads", "larson", "pymalloc", "1000"), 100, 5000.0);
    let r = bench_report::collect(&args(&root, &dir.join("docs"))).unwrap();
    (dir, r)
}

#[test]
fn the_model_is_held_against_the_real_obmalloc_like_against_like() {
    let (dir, r) = with_obmalloc("obmalloc-targets");
    assert_eq!(r.reference_obmalloc().as_deref(), Some("cpython-obmalloc-3.11"));
    assert_eq!(
        r.allocators("order")[5..],
        ["cpython-obmalloc-3.8", "cpython-obmalloc-3.11", "cpython-obmalloc-3.13"]
    );
    assert_eq!(
        r.allocators("size"),
        [
            "mimalloc",
            "pymalloc",
            "pymalloc-warm",
            "pymalloc-heap",
            "pymalloc-heap-warm",
            "cpython-obmalloc-3.11"
        ]
    );
    let t = bench_report::obmalloc_targets(&r);
    // The heap: warm 8/9 in size, then 15/20, 7/6, 20/25, 10/10, 11/11: lifo is the worst.
    assert_eq!(t[0].rows, 6);
    assert!(close(t[0].worst.unwrap(), 7.0 / 6.0));
    assert_eq!((t[0].worst_at.as_str(), t[0].met()), ("order/lifo/1000", Some(false)));
    // The global on the same rows, warm in size: 10/9, 30/20, 16/6, 25/25, 20/10, 30/11.
    assert_eq!(t[1].rows, 6);
    assert!(close(t[1].worst.unwrap(), 30.0 / 11.0));
    assert_eq!(t[1].worst_at, "scaling/alloc-all-free-all/1000000");
    assert_eq!(t[1].met(), Some(false));
    // threads: 50 against mimalloc's 40.
    assert_eq!(t[2].rows, 1);
    assert!(close(t[2].worst.unwrap(), 1.25) && t[2].met() == Some(false));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_target_within_its_limit_is_met_and_the_page_shows_the_obmalloc_ratios() {
    let (dir, r) = with_obmalloc("obmalloc-page");
    // A heap as fast as obmalloc on its worst row meets the target at exactly 1.0.
    let root = dir.join("criterion");
    write_bench(&root, "new", ("order", "lifo", "pymalloc-heap", "1000"), 1000, 6000.0);
    let r2 = bench_report::collect(&args(&root, &dir.join("docs"))).unwrap();
    let t = bench_report::obmalloc_targets(&r2);
    assert!(close(t[0].worst.unwrap(), 1.0) && t[0].met() == Some(true), "{:?}", t[0]);
    bench_report::render(&r, &dir.join("docs")).unwrap();
    let md = std::fs::read_to_string(dir.join("docs").join("benchmarks.md")).unwrap();
    let section = md.split("## Targets").nth(1).unwrap().split("## Appendix").next().unwrap();
    assert!(section.contains("The real obmalloc is `cpython-obmalloc-3.11`"));
    assert!(section.contains("| 1.17 | order/lifo/1000 | 6 | **not met** |"), "{section}");
    assert!(section.contains("| 2.73 | scaling/alloc-all-free-all/1000000 | 6 | **not met** |"));
    assert!(section.contains("| 1.25 | threads/larson/1000 | 1 | **not met** |"));
    // Per group, the pymalloc contenders over the reference: pymalloc 16/6, the heap 7/6.
    assert!(md.contains("| lifo | 1000 | 6.0 | 2.67× | 1.17× |"), "{md}");
    // size: pymalloc 12/9, the warm global 10/9, the fresh heap 20/9, the warm heap 8/9.
    assert!(md.contains("| pair | 32 | 9.0 | 1.33× | 1.11× | 2.22× | 0.89× |"), "{md}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes criterion's folder's clock log, as the benchmark binary does at the start of a run.
fn write_clock_log(root: &Path, lines: &str) {
    std::fs::write(root.join(bench_report::CLOCK_LOG), lines).unwrap();
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn each_benchmark_gets_the_clock_of_the_last_run_started_before_it_was_written() {
    let dir = scratch("clock");
    let root = dir.join("criterion");
    fake_tree(&root);
    // An older wall-time run, then the thread-cpu run that wrote the tree, then one that has
    // written nothing yet (started in the future of the estimates).
    let t = now_secs();
    write_clock_log(
        &root,
        &format!(
            "{} wall wall\n{} thread-cpu process-cpu\n{} wall wall\n",
            t - 100,
            t - 10,
            t + 3600
        ),
    );
    let r = bench_report::collect(&args(&root, &dir.join("docs"))).unwrap();
    assert!(r.benchmarks.iter().all(|b| b.clock.as_deref() == Some("thread-cpu")));
    let note = bench_report::clock_note(&r);
    assert!(note.starts_with("**Clock**: thread CPU time (`CLOCK_THREAD_CPUTIME_ID`"), "{note}");
    assert!(note.contains("for 25 benchmarks (`order`, `churn`, `scaling`)"), "{note}");
    bench_report::render(&r, &dir.join("docs")).unwrap();
    let md = std::fs::read_to_string(dir.join("docs").join("benchmarks.md")).unwrap();
    assert!(md.contains(&note));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_threads_group_takes_the_runs_threads_clock() {
    let runs = [bench_report::ClockRun {
        started: 100,
        clock: "thread-cpu".into(),
        threads_clock: "process-cpu".into(),
    }];
    assert_eq!(bench_report::clock_at(&runs, 100, "threads").as_deref(), Some("process-cpu"));
    assert_eq!(bench_report::clock_at(&runs, 200, "order").as_deref(), Some("thread-cpu"));
    assert_eq!(bench_report::clock_at(&runs, 99, "order"), None, "written before any run");
}

#[test]
fn without_a_clock_log_the_page_says_the_clock_is_not_recorded() {
    let (dir, r) = collected("noclock");
    assert!(r.benchmarks.iter().all(|b| b.clock.is_none()));
    assert!(bench_report::clock_note(&r).contains("a clock not recorded"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_malformed_clock_log_is_exit_2_naming_the_line() {
    let dir = scratch("badclock");
    let root = dir.join("criterion");
    fake_tree(&root);
    write_clock_log(&root, "1764100000 wall wall\nyesterday thread-cpu\n");
    let err = bench_report::collect(&args(&root, &dir.join("docs"))).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("arenalab-clock.log:2: \"yesterday thread-cpu\""), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
