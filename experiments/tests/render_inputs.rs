//! `arenalab render` and `report` on bad, missing or empty results, and into folders that
//! cannot be written: a clear message and exit code 2, never a panic; pages that say when there
//! is nothing to judge; a failure that leaves the previous pages intact. Rendering only: nothing
//! is measured here.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh docs folder holding a copy of the committed results, unique per test.
fn fixture(name: &str) -> PathBuf {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results");
    let docs = std::env::temp_dir().join(format!("arenalab-inputs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&docs);
    std::fs::create_dir_all(docs.join("results")).unwrap();
    for entry in std::fs::read_dir(&committed).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, docs.join("results").join(path.file_name().unwrap())).unwrap();
    }
    docs
}

fn read(docs: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(docs.join("results").join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn write(docs: &Path, name: &str, v: &Value) {
    let path = docs.join("results").join(format!("{name}.json"));
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

fn arenalab(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arenalab"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn render(docs: &Path) -> Output {
    arenalab(&["render", "--docs", docs.to_str().unwrap()], &[])
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` (results included) and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().into(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Bad input: exit code 2, the file named, the remedy given, no panic.
fn assert_bad_results(out: &Output, file: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(file), "names {file}: {err}");
    assert!(err.contains("arenalab report") && err.contains("git checkout docs/results"), "{err}");
}

#[test]
fn a_run_without_phases_is_refused_not_a_panic() {
    let docs = fixture("nophases");
    let mut v = read(&docs, "retention");
    v["runs"][0]["phases"] = Value::Array(vec![]);
    write(&docs, "retention", &v);
    let out = render(&docs);
    assert_bad_results(&out, "retention.json");
    assert!(stderr(&out).contains("phases"), "{}", stderr(&out));
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn invalid_json_and_the_wrong_shape_are_exit_2() {
    let docs = fixture("badjson");
    std::fs::write(docs.join("results/exit.json"), "{ this is not json").unwrap();
    assert_bad_results(&render(&docs), "exit.json");
    std::fs::write(docs.join("results/exit.json"), "[1, 2, 3]").unwrap();
    assert_bad_results(&render(&docs), "exit.json");
    let mut v = read(&docs, "pool");
    v["workers"] = Value::from("four");
    write(&docs, "pool", &v);
    std::fs::remove_file(docs.join("results/exit.json")).unwrap();
    assert_bad_results(&render(&docs), "pool.json");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn names_that_would_become_paths_are_refused() {
    let docs = fixture("slug");
    let mut v = read(&docs, "retention");
    let i = v["runs"].as_array().unwrap().iter().position(|r| r["variant"].is_string()).unwrap();
    v["runs"][i]["variant"] = Value::from("../../escape");
    write(&docs, "retention", &v);
    assert_bad_results(&render(&docs), "retention.json");
    let docs2 = fixture("slug-bench");
    let mut b = read(&docs2, "benchmarks");
    b["benchmarks"][0]["group"] = Value::from("../x");
    write(&docs2, "benchmarks", &b);
    assert_bad_results(&render(&docs2), "benchmarks.json");
    for d in [docs, docs2] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn an_exit_cell_with_fewer_runs_than_promised_is_refused() {
    let docs = fixture("runs");
    let mut v = read(&docs, "exit");
    v["cells"][0]["runs"].as_array_mut().unwrap().pop();
    write(&docs, "exit", &v);
    assert_bad_results(&render(&docs), "exit.json");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn a_missing_results_file_says_which_page_and_replaces_the_stale_one() {
    let docs = fixture("missing");
    assert_eq!(render(&docs).status.code(), Some(0));
    assert!(docs.join("process-exit/panic.svg").exists());
    std::fs::remove_file(docs.join("results/exit.json")).unwrap();
    let out = render(&docs);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("process-exit.md") && err.contains("exit.json"), "{err}");
    let page = std::fs::read_to_string(docs.join("process-exit.md")).unwrap();
    assert!(page.contains("Not measured yet") && page.contains("results/exit.json"), "{page}");
    assert!(!page.contains("| system |"), "the stale table is gone");
    assert!(!docs.join("process-exit").exists(), "the stale timelines are gone");
    let claims = std::fs::read_to_string(docs.join("claims.md")).unwrap();
    assert!(claims.contains("Not measured yet"));
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn no_results_at_all_is_exit_2() {
    let docs = fixture("none");
    std::fs::remove_dir_all(docs.join("results")).unwrap();
    std::fs::create_dir(docs.join("results")).unwrap();
    let out = render(&docs);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no results file"), "{}", stderr(&out));
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn verdicts_need_data() {
    let docs = fixture("empty");
    let mut e = read(&docs, "exit");
    e["cells"] = Value::Array(vec![]);
    write(&docs, "exit", &e);
    let mut p = read(&docs, "pool");
    p["scenarios"] = Value::Array(vec![]);
    write(&docs, "pool", &p);
    let out = render(&docs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let claims = std::fs::read_to_string(docs.join("claims.md")).unwrap();
    assert!(!claims.contains("0 of 0"), "{claims}");
    assert!(!claims.contains("True, for every ending"), "{claims}");
    assert!(!claims.contains("no worker"), "{claims}");
    assert_eq!(claims.matches("_No verdict:").count(), 2, "{claims}");
    let index = std::fs::read_to_string(docs.join("README.md")).unwrap();
    assert_eq!(index.matches("_No verdict:").count(), 2, "{index}");
    for page in ["process-exit.md", "process-pool.md"] {
        let text = std::fs::read_to_string(docs.join(page)).unwrap();
        assert!(text.contains("_No data:"), "{page} says there is no data");
    }
    // The retention verdict is still computed.
    assert_eq!(claims.matches("**Verdict:").count(), 1, "{claims}");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn a_pool_without_the_unclosed_scenarios_gives_no_verdict() {
    let docs = fixture("closedonly");
    let mut p = read(&docs, "pool");
    p["scenarios"].as_array_mut().unwrap().retain(|s| s["scenario"] == "shutdown-join");
    write(&docs, "pool", &p);
    assert_eq!(render(&docs).status.code(), Some(0));
    let claims = std::fs::read_to_string(docs.join("claims.md")).unwrap();
    assert!(!claims.contains("False in these measurements"), "{claims}");
    assert!(claims.contains("_No verdict: neither scenario"), "{claims}");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn report_checks_that_docs_is_writable_before_measuring() {
    // /proc/sys is a folder nobody, not even root, can create files in.
    let started = std::time::Instant::now();
    let out = arenalab(&["report", "--docs", "/proc/sys"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/proc/sys") && err.contains("not writable"), "{err}");
    assert!(!err.contains("[1/"), "nothing was measured: {err}");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn a_failure_while_installing_leaves_the_previous_pages_intact() {
    let docs = fixture("atomic");
    assert_eq!(render(&docs).status.code(), Some(0));
    // New results that change every page's header...
    for name in ["retention", "exit", "pool", "pymalloc", "benchmarks"] {
        let mut v = read(&docs, name);
        v["meta"]["date"] = Value::from("2000-01-01 00:00 UTC");
        write(&docs, name, &v);
    }
    let before = snapshot(&docs);
    // ...and a render that fails after moving its first page into place.
    let out = arenalab(
        &["render", "--docs", docs.to_str().unwrap()],
        &[("ARENALAB_RENDER_FAULT", "install")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("previous pages"), "{}", stderr(&out));
    let after = snapshot(&docs);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "no file added or removed, no staging folder left"
    );
    assert!(before == after, "every page as it was");
    // Without the fault, every page moves to the new date together.
    assert_eq!(render(&docs).status.code(), Some(0));
    for page in ["retention.md", "process-exit.md", "claims.md", "benchmarks.md"] {
        let text = std::fs::read_to_string(docs.join(page)).unwrap();
        assert!(text.contains("2000-01-01"), "{page}");
    }
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn exit_cells_mark_runs_that_failed_the_rule_and_counts_add_up() {
    let docs = fixture("marks");
    let mut v = read(&docs, "exit");
    let runs_per_cell = v["repeats"].as_u64().unwrap();
    let cells = v["cells"].as_array().unwrap().len() as u64;
    // One run of the first cell never met the release rule.
    v["cells"][0]["runs"][1]["release_accounted_ms"] = Value::Null;
    v["cells"][0]["summary"]["release_accounted_ms"]["n"] = Value::from(runs_per_cell - 1);
    // One run of the second cell: the machine's memory moved by half the child's meanwhile.
    let anon = v["cells"][1]["runs"][0]["alive"]["anon_bytes"].as_u64().unwrap();
    let before = v["cells"][1]["runs"][0]["system_before"]["mem_available_bytes"].as_u64().unwrap();
    v["cells"][1]["runs"][0]["system_after"]["mem_available_bytes"] =
        Value::from(before + anon / 2);
    write(&docs, "exit", &v);
    let out = render(&docs);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(docs.join("process-exit.md")).unwrap();
    let row = |i: usize| page.lines().filter(|l| l.starts_with("| system |")).nth(i).unwrap();
    let n = runs_per_cell;
    assert!(row(0).contains(&format!("[{} of {n}]", n - 1)), "{}", row(0));
    assert!(row(0).contains(&format!("† rule unmet in 1 of {n}")), "{}", row(0));
    assert!(row(1).contains(&format!("≈ noisy in 1 of {n}")), "{}", row(1));
    let total = cells * runs_per_cell;
    assert!(page.contains(&format!("Of the {total} runs, ")), "counts cover every run");
    assert!(page.contains("1 never met the rule"), "the failed run is counted");
    std::fs::remove_dir_all(&docs).unwrap();
}
