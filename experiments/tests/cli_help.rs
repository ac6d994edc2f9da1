//! Every subcommand's `--help` teaches: it explains the experiment, names every workload, ending
//! or scenario and every allocator, gives the defaults and ranges from the code's constants,
//! says where the output goes, and ends with examples; `-h` stays short.

use arenalab::exit::{self, Ending};
use arenalab::pool::{self, Scenario};
use arenalab::retention::{self, workloads::Workload};
use clap::CommandFactory;
use lineup::Allocator;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_arenalab")).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The names of the visible subcommands, from the parser itself (a new one is checked too).
fn subcommands() -> Vec<String> {
    arenalab::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

fn assert_all_named(text: &str, names: impl IntoIterator<Item = &'static str>) {
    for n in names {
        assert!(text.contains(&format!("  {n} ")), "{n:?} is not listed in:\n{text}");
    }
}

#[test]
fn every_long_help_ends_with_examples_and_the_short_one_has_none() {
    let names = subcommands();
    assert!(names.len() >= 6, "{names:?}");
    for name in names.iter().map(String::as_str).chain([""]) {
        let args: Vec<&str> = [name].into_iter().filter(|n| !n.is_empty()).collect();
        let long = help(&[args.as_slice(), &["--help"]].concat());
        let short = help(&[args.as_slice(), &["-h"]].concat());
        let (_, examples) =
            long.rsplit_once("\nExamples:\n").unwrap_or_else(|| panic!("{name}: {long}"));
        let lines: Vec<&str> = examples.lines().collect();
        assert!(!lines.is_empty(), "{name}: no example");
        for l in lines {
            assert!(l.trim_start().starts_with("arenalab") || l.contains("cargo "), "{name}: {l}");
        }
        assert!(!short.contains("Examples:") && short.len() * 2 < long.len(), "{name}: {short}");
        // The explanations (before the usage line, after the options) fit a terminal.
        let about = long.split("\nUsage:").next().unwrap();
        let after = long.rsplit("Print help (see a summary with '-h')").next().unwrap();
        for l in about.lines().chain(after.lines()) {
            assert!(l.chars().count() <= 100, "{name}: {l}");
        }
    }
}

#[test]
fn retention_help_names_every_workload_and_allocator_and_its_defaults() {
    let text = help(&["retention", "--help"]);
    assert_all_named(&text, Workload::ALL.map(Workload::name));
    for w in Workload::ALL {
        let first_words: String = w
            .description()
            .replace('`', "")
            .split_whitespace()
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            text.replace('\n', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .contains(&first_words),
            "{first_words}"
        );
    }
    for a in Allocator::ALL {
        assert!(text.contains(a.name()), "{a}");
    }
    for figure in [
        format!("default {}", retention::DEFAULT_OBJECTS),
        format!("from 1 to {}", retention::MAX_OBJECTS),
        format!("default {} bytes", retention::DEFAULT_SIZE),
        format!("from 1 to {}", retention::MAX_SIZE),
        format!(
            "at least {} objects",
            retention::minimum_objects(Workload::Survivors, retention::DEFAULT_SIZE).unwrap()
        ),
    ] {
        assert!(text.contains(&figure), "{figure:?} missing");
    }
    assert!(text.contains("stdout") && text.contains("docs/results/retention.json"));
    for l in pymalloc::Layout::ALL {
        assert!(text.contains(&format!("--preset {}", l.name())), "{}", l.name());
    }
    let default = format!("--preset {} (default)", lineup::DEFAULT_PYMALLOC_LAYOUT.name());
    assert!(text.contains(&default), "{default:?} missing");
    assert!(text.contains("--python PATH"));
}

#[test]
fn exit_help_names_every_ending_and_its_defaults_and_floor() {
    let text = help(&["exit", "--help"]);
    assert_all_named(&text, Ending::ALL.map(Ending::name));
    for figure in [
        format!("default {}; at least {}", exit::DEFAULT_MIB, exit::MIN_MIB),
        format!("default {}; at least 1", exit::DEFAULT_REPEATS),
        format!("{} runs", Allocator::ALL.len() * Ending::ALL.len() * exit::DEFAULT_REPEATS),
        Allocator::ALL.map(Allocator::name).join(", "),
    ] {
        assert!(text.contains(&figure), "{figure:?} missing");
    }
    assert!(text.contains("SIGKILL from the parent"), "ending descriptions come from the enum");
}

#[test]
fn pool_help_names_every_scenario_and_its_defaults_and_range() {
    let text = help(&["pool", "--help"]);
    assert_all_named(&text, Scenario::ALL.map(Scenario::name));
    for s in Scenario::ALL {
        assert!(text.replace("\n ", " ").contains(&s.description()[..20]), "{s:?}");
    }
    for figure in [
        format!("default {}; from 1 to {}", pool::DEFAULT_WORKERS, pool::MAX_WORKERS),
        format!("--mib M        default {}", pool::DEFAULT_MIB),
        format!("default system; one of {}", Allocator::ALL.map(Allocator::name).join(", ")),
    ] {
        assert!(text.contains(&figure), "{figure:?} missing");
    }
}

#[test]
fn report_and_bench_report_help_follow_cargo_target_dir() {
    let dir = std::env::temp_dir().join("arenalab-elsewhere");
    for sub in ["report", "bench-report"] {
        let out = Command::new(env!("CARGO_BIN_EXE_arenalab"))
            .args([sub, "--help"])
            .env("CARGO_TARGET_DIR", &dir)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap().replace("\n ", " ");
        let want = dir.join("criterion").display().to_string();
        assert!(text.contains("$CARGO_TARGET_DIR/criterion"), "{sub}: {text}");
        assert!(text.contains(&format!("(here: {want})")), "{sub}: {text}");
        assert!(!text.contains("(default: target/criterion)"), "{sub}: {text}");
    }
    let text = help(&["report", "--help"]);
    assert!(text.contains("git checkout docs/"), "{text}");
}
