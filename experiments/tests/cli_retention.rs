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

/// `arenalab retention ... --json` that must succeed: the results document.
fn retention_json(args: &[&str]) -> arenalab::retention::RetentionResults {
    let out = Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .arg("retention")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_preset_runs_pymalloc_with_that_layout() {
    let layout = pymalloc::Layout::Classes32Pools4k;
    let cfg = layout.config();
    // Enough 32-byte objects to fill one arena of this layout and start a second, while the
    // default layout's 1 MiB arena would hold them all.
    let per_pool = cfg.blocks_per_pool(cfg.size_class(32).unwrap()) as u64;
    assert_eq!(per_pool, (4096 - 48) / 32); // 126
    let objects = per_pool * cfg.pools_per_arena() as u64 + 1;
    let pools = objects.div_ceil(per_pool);
    // 4 KiB pools in page-aligned arenas: no pool is lost to alignment.
    let arenas = pools.div_ceil(cfg.pools_per_arena() as u64);
    assert_eq!(arenas, 2);
    let n = objects.to_string();
    let args = [
        "--workload",
        "seed",
        "--allocator",
        "pymalloc",
        "--preset",
        layout.name(),
        "--objects",
        &n,
    ];
    let results = retention_json(&args);
    assert_eq!(results.pymalloc_layout, "32c-4k-256k");
    let run = &results.runs[0];
    assert_eq!(run.pymalloc_layout.as_deref(), Some("32c-4k-256k"));
    let alloc = run.phases.iter().find(|p| p.name == "alloc").unwrap().pymalloc.unwrap();
    assert_eq!((alloc.arena_size, alloc.pool_size), (256 << 10, 4 << 10));
    assert_eq!(alloc.bytes_lost_to_arena_alignment, 0);
    assert_eq!(alloc.arenas_current, arenas);
    // Every pool full but the last, which holds the one object past the first arena.
    assert_eq!((alloc.pools_full, alloc.pools_used), (pools - 1, 1));
    assert_eq!(alloc.blocks_in_use, objects);
}

#[test]
fn an_unknown_preset_is_named_with_the_accepted_ones() {
    let (code, err) = retention(&["--preset", "3.10"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--preset must be one of") && err.contains("\"3.10\""), "{err}");
    for l in pymalloc::Layout::ALL {
        assert!(err.contains(l.name()), "{err}");
    }
}

#[test]
fn preset_and_python_together_are_refused() {
    let (code, err) = retention(&["--preset", "32c-4k-256k", "--python", "python3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--preset") && err.contains("cannot be used with"), "{err}");
}

#[test]
fn a_python_that_is_not_python_is_refused() {
    let (code, err) = retention(&["--python", "/bin/true", "--workload", "seed"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/bin/true") && err.contains("not a CPython 3"), "{err}");
}

#[test]
fn python_takes_the_layout_of_that_interpreter() {
    use arenalab::trace::python::Recordable;
    let Ok(python) = arenalab::trace::python::Python::probe("python3".as_ref()) else {
        eprintln!("skipped: no python3 on PATH");
        return;
    };
    let Some(layout) = python.layout().filter(|_| python.pymalloc) else {
        eprintln!("skipped: python3 has no layout arenalab models");
        return;
    };
    let args = [
        "--workload",
        "seed",
        "--allocator",
        "pymalloc",
        "--python",
        "python3",
        "--objects",
        "100",
    ];
    let results = retention_json(&args);
    assert_eq!(results.pymalloc_layout, layout.name());
    let alloc = results.runs[0].phases.iter().find(|p| p.name == "alloc").unwrap();
    let counters = alloc.pymalloc.unwrap();
    assert_eq!(counters.pool_size, layout.config().pool_size() as u64);
    assert_eq!(counters.arena_size, layout.config().arena_size() as u64);
}

#[test]
fn the_policy_workloads_private_heaps_follow_the_preset() {
    let layout = pymalloc::Layout::Classes64Pools4k;
    let n =
        arenalab::retention::minimum_objects(arenalab::retention::workloads::Workload::Policy, 32)
            .unwrap()
            .to_string();
    let args = [
        "--workload",
        "policy",
        "--allocator",
        "pymalloc",
        "--preset",
        layout.name(),
        "--objects",
        &n,
    ];
    let results = retention_json(&args);
    assert_eq!(results.runs.len(), 2);
    for run in &results.runs {
        assert_eq!(run.pymalloc_layout.as_deref(), Some(layout.name()));
        let c = run.phases[1].pymalloc.unwrap();
        assert_eq!((c.pool_size, c.arena_size), (4 << 10, 256 << 10));
    }
}
