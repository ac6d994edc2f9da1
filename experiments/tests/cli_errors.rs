//! Bad input has one shape for every subcommand and flag, whether clap or an experiment finds
//! it: one line `arenalab: --FLAG must be ..., got VALUE` naming the accepted range or values,
//! and exit code 2. Negative numbers are bad values, not unknown flags.

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arenalab")).args(args).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
    err.trim_end().strip_prefix("arenalab: ").unwrap_or_else(|| panic!("{args:?}: {err}")).into()
}

#[test]
fn numbers_out_of_range_name_the_flag_and_the_range() {
    let max_objects = arenalab::retention::MAX_OBJECTS;
    let max_size = arenalab::retention::MAX_SIZE;
    let max_workers = arenalab::pool::MAX_WORKERS;
    let min_mib = arenalab::exit::MIN_MIB;
    for (args, message) in [
        (
            &["pool", "--workers", "-1"][..],
            format!("--workers must be between 1 and {max_workers}, got -1"),
        ),
        (
            &["pool", "--workers", "0"],
            format!("--workers must be between 1 and {max_workers}, got 0"),
        ),
        (
            &["pool", "--workers", "65"],
            format!("--workers must be between 1 and {max_workers}, got 65"),
        ),
        (&["pool", "--mib", "-5"], "--mib must be at least 1, got -5".into()),
        (&["exit", "--mib", "-1"], format!("--mib must be at least {min_mib}, got -1")),
        (&["exit", "--repeats", "-2"], "--repeats must be at least 1, got -2".into()),
        (&["exit", "--repeats", "many"], "--repeats must be at least 1, got many".into()),
        (
            &["retention", "--objects", "-1"],
            format!("--objects must be between 1 and {max_objects}, got -1"),
        ),
        (
            &["retention", "--size", "-32"],
            format!("--size must be between 1 and {max_size}, got -32"),
        ),
        (
            &["retention", "--size", "lots"],
            format!("--size must be between 1 and {max_size}, got lots"),
        ),
    ] {
        assert_eq!(refused(args), message, "{args:?}");
    }
}

#[test]
fn unknown_names_list_the_accepted_ones() {
    let allocators = "system, mimalloc, jemalloc, pymalloc";
    for (args, message) in [
        (&["retention", "--allocator", "tcmalloc"][..], format!("--allocator must be one of {allocators}, got \"tcmalloc\"")),
        (&["exit", "--allocator", "tcmalloc"], format!("--allocator must be one of {allocators}, got \"tcmalloc\"")),
        (&["pool", "--allocator", "tcmalloc"], format!("--allocator must be one of {allocators}, got \"tcmalloc\"")),
        (&["retention", "--workload", "zigzag"], "--workload must be one of seed, every-other, survivors, fifo-half, mixed, large, policy, got \"zigzag\"".into()),
        (&["exit", "--ending", "vanish"], "--ending must be one of free-return, return, exit, abort, panic, sigkill, sigterm, got \"vanish\"".into()),
        (&["pool", "--scenario", "teleport"], "--scenario must be one of open-idle, shutdown-join, drop-naive, drop-correct, parent-killed-none, parent-killed-pdeathsig, parent-killed-pipe, got \"teleport\"".into()),
    ] {
        assert_eq!(refused(args), message, "{args:?}");
    }
}

#[test]
fn an_unknown_flag_is_one_line_pointing_at_the_help() {
    let err = refused(&["exit", "--frob"]);
    assert!(err.starts_with("unexpected argument '--frob' found"), "{err}");
    assert!(err.contains("`arenalab exit --help`"), "{err}");
}

#[test]
fn exit_sizes_below_what_system_figures_resolve_are_refused() {
    let min = arenalab::exit::MIN_MIB;
    for mib in ["8", "16", &(min - 1).to_string()] {
        assert_eq!(
            refused(&["exit", "--mib", mib]),
            format!("--mib must be at least {min}, got {mib}")
        );
    }
}

#[test]
fn retention_refuses_too_few_objects_for_a_workload_saying_why() {
    use arenalab::retention::{minimum_objects, workloads::Workload};
    let every_other = minimum_objects(Workload::EveryOther, 32).unwrap();
    assert_eq!(every_other, (256 << 10) / 32);
    let err = refused(&["retention", "--objects", "1"]);
    assert!(err.starts_with(&format!("--objects must be at least {every_other} for workload every-other at --size 32, got 1: ")), "{err}");
    // survivors keeps 1 in 1000 and needs 10 survivors.
    let survivors = minimum_objects(Workload::Survivors, 32).unwrap();
    assert_eq!(survivors, 10_000);
    let err = refused(&["retention", "--workload", "survivors", "--objects", "9999"]);
    assert!(err.starts_with("--objects must be at least 10000 for workload survivors"), "{err}");
    assert!(err.contains("1 object in 1000"), "{err}");
    // policy: 16 pools in each half; a 32-byte pool holds 510 blocks (16 KiB less its header).
    assert_eq!(minimum_objects(Workload::Policy, 32), Some(2 * 16 * 510));
    let err = refused(&[
        "retention",
        "--workload",
        "policy",
        "--allocator",
        "pymalloc",
        "--objects",
        "16319",
    ]);
    assert!(err.contains("at least 16320") && err.contains("16 pymalloc pools"), "{err}");
    // Workloads without a minimum run with one object.
    assert_eq!(minimum_objects(Workload::Seed, 32), None);
}

#[test]
fn cpython_refuses_exit_sizes_below_the_noise_floor_and_sizes_out_of_range() {
    let err = refused(&["cpython", "--exit-mib", "32"]);
    assert!(err.contains("--exit-mib must be between 64 and 65536, got 32"), "{err}");
    let err = refused(&["cpython", "--pool-mib", "0"]);
    assert!(err.contains("--pool-mib must be between 1 and 4096, got 0"), "{err}");
}
