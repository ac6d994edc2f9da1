//! `arenalab retention` on bad input: a message naming the bad value and exit code 2, each
//! failure mode on its own.

use std::process::Command;

fn retention(args: &[&str]) -> (i32, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_arenalab")).arg("retention").args(args).output().unwrap();
    let code = out.status.code().expect("exited, not killed");
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unknown_allocator_is_named() {
    let (code, err) = retention(&["--allocator", "tcmalloc"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"tcmalloc\"") && err.contains("pymalloc"), "{err}");
}

#[test]
fn an_unknown_workload_is_named() {
    let (code, err) = retention(&["--workload", "zigzag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"zigzag\"") && err.contains("every-other"), "{err}");
}

#[test]
fn zero_objects_is_refused() {
    let (code, err) = retention(&["--objects", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--objects must be between 1 and 100000000, got 0"), "{err}");
}

#[test]
fn zero_size_is_refused() {
    let (code, err) = retention(&["--size", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--size must be between 1 and 67108864, got 0"), "{err}");
}

#[test]
fn a_size_above_the_maximum_is_refused() {
    let (code, err) = retention(&["--size", "67108865"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--size must be between 1 and 67108864, got 67108865"), "{err}");
}

#[test]
fn more_than_mem_available_is_refused() {
    let (code, err) = retention(&["--objects", "100000000", "--size", "67108864"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("got 100000000") && err.contains("MemAvailable"), "{err}");
}

#[test]
fn a_non_number_is_refused_by_the_parser() {
    let (code, err) = retention(&["--objects", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("lots"), "{err}");
}

#[test]
fn policy_without_pymalloc_is_refused() {
    let (code, err) = retention(&["--workload", "policy", "--allocator", "system"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("policy") && err.contains("pymalloc"), "{err}");
}

#[test]
fn the_defaults_of_the_command_line_are_retention_args_default() {
    use clap::Parser;
    let cli = arenalab::cli::Cli::try_parse_from(["arenalab", "retention"]).unwrap();
    match cli.command {
        Some(arenalab::cli::Command::Retention(a)) => {
            assert_eq!(a, arenalab::retention::RetentionArgs::default())
        }
        other => panic!("parsed {other:?}"),
    }
}

#[test]
fn json_output_is_the_results_document_with_machine_and_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["retention", "--json", "--workload", "seed", "--objects", "20000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // The same shape as `exit --json`, `pool --json` and docs/results/retention.json.
    let doc: arenalab::retention::RetentionResults = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((doc.objects, doc.size), (20000, arenalab::retention::DEFAULT_SIZE));
    assert!(doc.meta.command.starts_with("arenalab retention --json"), "{:?}", doc.meta);
    assert!(doc.meta.cores > 0 && !doc.meta.date.is_empty(), "{:?}", doc.meta);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().expect("a list of runs");
    assert_eq!(runs.len(), 4);
    for r in runs {
        assert_eq!(r["workload"], "seed");
        let phases = r["phases"].as_array().unwrap();
        let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["baseline", "alloc", "full free", "release"]);
        assert!(phases.iter().all(|p| p["rss_bytes"].as_u64().unwrap() > 0));
        if r["allocator"] == "pymalloc" {
            for p in phases {
                for key in [
                    "arenas_allocated_total",
                    "arenas_reclaimed",
                    "arenas_highwater",
                    "arenas_current",
                ] {
                    assert!(p["pymalloc"][key].is_u64(), "{key} in {p}");
                }
            }
        }
    }
}

#[test]
fn mixed_sizes_beyond_mem_available_are_refused() {
    // 100 million objects of up to 512 bytes: 48 GiB, twice this machine's memory.
    let (code, err) = retention(&["--workload", "mixed", "--objects", "100000000", "--size", "8"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--objects must be at most") && err.contains("mixed"), "{err}");
}
