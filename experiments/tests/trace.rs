//! `arenalab trace record` then `replay` with the machine's python3: every mark of the seed
//! workloads equal; negative controls reported different; bad input a clear message and exit 2.
//!
//! Tests that need a CPython print why they are skipped when `python3` is missing or cannot be
//! recorded (no shared libpython, older than 3.8).

use arenalab::trace::format::{self, Encoder, Header, Source};
use arenalab::trace::python::{Python, Recordable};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_arenalab");

fn seed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/trace_seed.py")
}

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("trace-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The machine's python3 when it can be recorded, else `None` after saying why.
fn python3(test: &str) -> Option<Python> {
    match Python::probe(Path::new("python3")) {
        Ok(p) => match p.recordable() {
            Ok(_) => Some(p),
            Err(e) => {
                eprintln!("SKIPPED {test}: python3 cannot be recorded: {e}");
                None
            }
        },
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable python3: {e}");
            None
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("arenalab runs")
}

fn record(workload: &str, n: usize, out: &Path) -> Output {
    let script = seed_script();
    run(&[
        "trace",
        "record",
        "-o",
        out.to_str().unwrap(),
        "--",
        script.to_str().unwrap(),
        workload,
        &n.to_string(),
    ])
}

fn replay_json(trace: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["trace", "replay", trace.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = run(&args);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("replay JSON: {e}; stderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap(), v)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn seed_workloads_replay_equal_at_every_mark() {
    let Some(_) = python3("seed_workloads_replay_equal_at_every_mark") else { return };
    // (workload, objects, marks the script writes)
    for (workload, n, marks) in [
        ("floats", 30_000, 6),
        ("ints", 30_000, 6),
        ("spread", 30_000, 5),
        ("packed", 30_000, 5),
        ("mixed", 8_000, 5),
    ] {
        let trace = tmp(&format!("{workload}.trace"));
        let out = record(workload, n, &trace);
        assert!(out.status.success(), "record {workload}: {}", stderr(&out));
        let (code, v) = replay_json(&trace, &[]);
        let m = v["marks"].as_array().unwrap();
        assert_eq!(m.len(), marks, "{workload}");
        for mark in m {
            assert_eq!(mark["equal"], true, "{workload}: {mark}");
            assert_eq!(mark["real"], mark["model"], "{workload}");
        }
        assert_eq!(code, 0, "{workload}");
        // Every block landed in the same arena (by order of mapping) at the same offset.
        assert!(v["placed"].as_u64().unwrap() >= n as u64, "{workload}");
        assert_eq!(v["misplaced"], 0, "{workload}: {}", v["first_misplaced"]);
        // The seed really exercises pymalloc: arenas were mapped and some given back.
        let last = &m[m.len() - 1]["real"];
        assert!(last["arenas_total"].as_u64().unwrap() > 1, "{workload}: {last}");
    }
}

#[test]
fn negative_controls_are_reported_different() {
    let Some(p) = python3("negative_controls_are_reported_different") else { return };
    let trace = tmp("control.trace");
    let out = record("packed", 30_000, &trace);
    assert!(out.status.success(), "{}", stderr(&out));
    let layout = pymalloc::Layout::detect((p.version[0], p.version[1]), p.classes).unwrap();
    let wrong = pymalloc::Layout::ALL.into_iter().find(|l| *l != layout).unwrap();
    let flip = if layout.config().keep_last_empty_arena() { "false" } else { "true" };
    for extra in
        [vec!["--preset", wrong.name()], vec!["--keep-one", flip], vec!["--policy", "newest-first"]]
    {
        let (code, v) = replay_json(&trace, &extra);
        let m = v["marks"].as_array().unwrap();
        let differ: Vec<_> = m.iter().filter(|x| x["equal"] == false).collect();
        assert!(!differ.is_empty(), "{extra:?} went undetected");
        assert!(!differ[0]["differences"].as_array().unwrap().is_empty());
        assert_eq!(code, 1, "{extra:?}");
        if extra[0] == "--preset" {
            // Another geometry puts blocks at other offsets from the first one on.
            assert!(v["misplaced"].as_u64().unwrap() > 0);
        }
    }
    // And the unchanged replay of the same trace is equal, so the controls are the cause.
    let (code, _) = replay_json(&trace, &[]);
    assert_eq!(code, 0);
}

#[test]
fn a_script_that_raises_keeps_its_trace_and_exits_2() {
    let Some(_) = python3("a_script_that_raises_keeps_its_trace_and_exits_2") else { return };
    let script = tmp("raises.py");
    std::fs::write(
        &script,
        "import arenalab_trace\nx = [float(i) for i in range(5000)]\n\
         arenalab_trace.mark('before the error')\nraise ValueError('on purpose')\n",
    )
    .unwrap();
    let trace = tmp("raises.trace");
    let out =
        run(&["trace", "record", "-o", trace.to_str().unwrap(), "--", script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ValueError: on purpose"), "{err}");
    assert!(err.contains("exited with status 1") && err.contains("up to that point"), "{err}");
    let (code, v) = replay_json(&trace, &[]);
    assert_eq!(v["status"], 1);
    assert_eq!(v["marks"][0]["label"], "before the error");
    assert_eq!(v["marks"][0]["equal"], true);
    assert_eq!(code, 0);
}

#[test]
fn a_truncated_trace_is_refused_with_exit_2() {
    let Some(_) = python3("a_truncated_trace_is_refused_with_exit_2") else { return };
    let trace = tmp("whole.trace");
    assert!(record("floats", 5_000, &trace).status.success());
    let data = std::fs::read(&trace).unwrap();
    for cut in [data.len() - 1, data.len() / 2, 20] {
        let t = tmp("cut.trace");
        std::fs::write(&t, &data[..cut]).unwrap();
        let out = run(&["trace", "replay", t.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "cut at {cut}");
        let err = stderr(&out);
        assert!(err.contains("truncated") || err.contains("cut short"), "cut at {cut}: {err}");
    }
}

#[test]
fn not_a_trace_is_refused_with_exit_2() {
    let t = tmp("not.trace");
    std::fs::write(&t, b"#!/usr/bin/env python3\nprint('hello')\n").unwrap();
    let out = run(&["trace", "replay", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not an arenalab trace"), "{}", stderr(&out));
    let out = run(&["trace", "replay", tmp("missing.trace").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn a_trace_of_an_unknown_layout_is_refused_with_exit_2() {
    let header = Header {
        source: Source::Cpython,
        python_version: [3, 99, 0],
        layout: "48c-32k-2m".into(),
        classes: 48,
        executable: "python3.99".into(),
        libpython: "libpython3.99.so".into(),
        script: "x.py".into(),
        args: vec![],
    };
    let mut data = format::write_header(&header);
    let mut buf = [0u8; 64];
    let mut e = Encoder::new(&mut buf);
    e.malloc(format::Domain::Obj, 24, 0x1000);
    e.end(0);
    let n = e.len();
    data.extend_from_slice(&buf[..n]);
    let t = tmp("unknown-layout.trace");
    std::fs::write(&t, data).unwrap();
    let out = run(&["trace", "replay", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("48c-32k-2m") && err.contains("does not model"), "{err}");
}

/// A fake interpreter that answers the probe like CPython 3.11 with pymalloc, but whose
/// "libpython" is `lib` (JSON null for none).
fn fake_python(name: &str, lib: &str) -> PathBuf {
    let path = tmp(name);
    let json = format!(
        r#"{{"executable": "{}", "version": [3, 11, 0], "lib": {lib}, "pymalloc": true, "home": ":"}}"#,
        path.display()
    );
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho '{json}'\necho 'Small block threshold = 512, in 32 size classes.' >&2\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_python_that_cannot_be_embedded_gets_a_clear_message_and_exit_2() {
    let script = seed_script();
    let out_file = tmp("never.trace");
    // No shared libpython at all.
    let py = fake_python("static-python", "null");
    let out = run(&[
        "trace",
        "record",
        "--python",
        py.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--",
        script.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no shared libpython"), "{}", stderr(&out));
    // A "libpython" that is not a library: the child cannot load it.
    let not_lib = tmp("libpython-not.so");
    std::fs::write(&not_lib, b"not an ELF file").unwrap();
    let py = fake_python("broken-python", &format!("\"{}\"", not_lib.display()));
    let out = run(&[
        "trace",
        "record",
        "--python",
        py.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--",
        script.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot load") && err.contains("could not be embedded"), "{err}");
    // Not a Python at all.
    let out = run(&["trace", "record", "--python", "/bin/false", "--", script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a CPython 3 interpreter"), "{}", stderr(&out));
}

#[test]
fn other_allocators_replay_in_children_and_report_every_mark() {
    let Some(_) = python3("other_allocators_replay_in_children_and_report_every_mark") else {
        return;
    };
    let trace = tmp("allocators.trace");
    assert!(record("floats", 20_000, &trace).status.success());
    let (code, v) = replay_json(
        &trace,
        &["--allocator", "system", "--allocator", "mimalloc", "--allocator", "jemalloc"],
    );
    assert_eq!(code, 0);
    let a = v["allocators"].as_array().unwrap();
    let names: Vec<_> = a.iter().map(|x| x["allocator"].as_str().unwrap()).collect();
    assert_eq!(names, ["system", "mimalloc", "jemalloc"]);
    for x in a {
        let marks = x["marks"].as_array().unwrap();
        assert_eq!(marks.len(), 6);
        assert_eq!(marks[1]["label"], "allocated");
        // 20,000 floats of 24 bytes are in use at "allocated", more than at "start".
        let use_at = |i: usize| marks[i]["in_use_bytes"].as_u64().unwrap();
        assert!(use_at(1) >= use_at(0) + 20_000 * 24, "{x}");
    }
    let out = run(&["trace", "replay", trace.to_str().unwrap(), "--allocator", "tcmalloc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown allocator"));
}

#[test]
fn a_forked_child_of_the_script_leaves_the_trace_alone() {
    let Some(_) = python3("a_forked_child_of_the_script_leaves_the_trace_alone") else { return };
    let script = tmp("forks.py");
    std::fs::write(
        &script,
        "import os, arenalab_trace\nx = [float(i) for i in range(20000)]\n\
         arenalab_trace.mark('before fork')\npid = os.fork()\nif pid == 0:\n\
         \x20   y = [str(i) for i in range(50000)]\n\x20   arenalab_trace.mark('in the child')\n\
         \x20   raise SystemExit(0)\nos.waitpid(pid, 0)\ndel x\narenalab_trace.mark('after')\n",
    )
    .unwrap();
    let trace = tmp("forks.trace");
    let out =
        run(&["trace", "record", "-o", trace.to_str().unwrap(), "--", script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, v) = replay_json(&trace, &[]);
    let labels: Vec<_> =
        v["marks"].as_array().unwrap().iter().map(|m| m["label"].clone()).collect();
    assert_eq!(labels, ["before fork", "after"]);
    assert_eq!(code, 0, "{v}");
}
