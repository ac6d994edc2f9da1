//! `arenalab bench-report` without criterion results: a usage error (exit code 2) that says how
//! to produce them.

use arenalab::bench_report::{self, BenchReportArgs};
use std::path::PathBuf;

fn missing_dir() -> PathBuf {
    std::env::temp_dir().join(format!("arenalab-no-criterion-{}", std::process::id()))
}

#[test]
fn a_missing_criterion_folder_is_a_usage_error_naming_cargo_bench() {
    let dir = missing_dir();
    let args = BenchReportArgs { criterion_dir: Some(dir.clone()), ..Default::default() };
    let err = bench_report::collect(&args).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()) && msg.contains("`cargo bench`"), "{msg}");
}

#[test]
fn an_empty_criterion_folder_is_a_usage_error_too() {
    let dir = missing_dir().with_extension("empty");
    std::fs::create_dir_all(dir.join("report")).unwrap();
    let args = BenchReportArgs { criterion_dir: Some(dir.clone()), ..Default::default() };
    let err = bench_report::collect(&args).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("no benchmark.json"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_program_exits_2_and_says_how_to_produce_results() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["bench-report", "--criterion-dir"])
        .arg(missing_dir())
        .arg("--docs")
        .arg(missing_dir().with_extension("docs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cargo bench"), "{stderr}");
    assert!(!missing_dir().with_extension("docs").exists(), "nothing written on error");
}
