//! Native traces: a C program recorded by `libarenalab_preload.so` (mode `record`) replays on the
//! model and the other allocators with exit 0, its marks shown with nothing to compare; a CPython
//! trace whose report cannot be read still counts as a difference.

use arenalab::trace::format::{self, Domain, Encoder, Header, Source};
use arenalab::trace::program::compile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_arenalab");

/// The preload library next to the arenalab binary, brought up to date first with
/// `cargo build -p preload` in the same profile (`cargo test` does not build the `cdylib`).
fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(BIN).parent().expect("target/<profile>");
        let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("release");
        let profile = if profile == "debug" { "dev" } else { profile };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", profile, "-p", "preload"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p preload failed");
        let lib = dir.join("libarenalab_preload.so");
        assert!(lib.exists(), "{} not built", lib.display());
        lib
    })
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arenalab-trace-native-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Blocks the C program allocates, and the size of block `i` (the same formula as in C).
const BLOCKS: u64 = 50_000;
fn size(i: u64) -> u64 {
    64 + (i * 37) % 960
}

/// Allocates BLOCKS blocks (each written), frees the odd ones, then the even ones: more than
/// 65,536 calls, so the trace has a mark inside the run and one at exit.
const PROGRAM: &str = r#"
#include <stdlib.h>
#include <string.h>
#define BLOCKS 50000
static char *b[BLOCKS];
int main(void) {
    for (unsigned long i = 0; i < BLOCKS; i++) {
        size_t n = 64 + (i * 37) % 960;
        b[i] = malloc(n);
        if (!b[i]) return 1;
        memset(b[i], 1, n);
    }
    for (int i = 1; i < BLOCKS; i += 2) free(b[i]);
    for (int i = 0; i < BLOCKS; i += 2) free(b[i]);
    return 0;
}
"#;

/// Compiles and runs PROGRAM under the preload in mode `record`; the trace's path, or None
/// (with the reason printed) when there is no C compiler.
fn record_program() -> Option<PathBuf> {
    let has_cc =
        Command::new("sh").args(["-c", "command -v cc"]).output().is_ok_and(|o| o.status.success());
    if !has_cc {
        println!("skipped: `cc` is not installed");
        return None;
    }
    let c = tmp("native.c");
    std::fs::write(&c, PROGRAM).unwrap();
    let exe = tmp("native");
    let out = Command::new("cc").args(["-O1", "-o"]).arg(&exe).arg(&c).output().unwrap();
    assert!(out.status.success(), "cc: {}", show(&out));
    let trace = tmp("native.trace");
    let out = Command::new(&exe)
        .env("LD_PRELOAD", library())
        .env("ARENALAB_TRACE", &trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    Some(trace)
}

#[test]
fn a_native_trace_replays_on_the_model_and_three_allocators_with_exit_0() {
    let Some(trace) = record_program() else { return };
    let p = compile(&std::fs::read(&trace).unwrap()).unwrap();
    assert_eq!(p.header.source, Source::Native);
    // A mark every 65,536 recorded calls and one at exit.
    let mut labels: Vec<String> =
        (1..=p.calls / 65_536).map(|k| format!("call {}", k * 65_536)).collect();
    labels.push("exit".into());
    assert!(labels.len() >= 2, "{} calls: the program makes more than 65,536", p.calls);

    // The model alone: tables, every mark shown with nothing to compare, exit 0.
    let out = Command::new(BIN).args(["trace", "replay"]).arg(&trace).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("native trace of "), "{text}");
    for l in &labels {
        assert!(
            text.lines()
                .any(|line| line.starts_with(l.as_str()) && line.ends_with("nothing to compare")),
            "mark {l}: {text}"
        );
    }
    assert!(!text.contains("unreadable"), "{text}");

    // And the other allocators, as JSON.
    let out = Command::new(BIN)
        .args(["trace", "replay", "--json"])
        .arg(&trace)
        .args(["--allocator", "system", "--allocator", "mimalloc", "--allocator", "jemalloc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trace"]["source"], "native");
    let marks = v["marks"].as_array().unwrap();
    let got: Vec<&str> = marks.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(got, labels);
    for m in marks {
        assert_eq!((m["equal"].as_bool(), m["compared"].as_bool()), (Some(true), Some(false)));
        assert!(m["real"].is_null() && m["differences"].as_array().unwrap().is_empty());
    }
    // At the first mark the program has freed at most its odd blocks: at least the even ones
    // are live and written, so every allocator holds at least their bytes resident.
    let even: u64 = (0..BLOCKS).step_by(2).map(size).sum();
    let allocators = v["allocators"].as_array().unwrap();
    let names: Vec<&str> = allocators.iter().map(|a| a["allocator"].as_str().unwrap()).collect();
    assert_eq!(names, ["system", "mimalloc", "jemalloc"]);
    for a in allocators {
        let am = a["marks"].as_array().unwrap();
        assert_eq!(am.len(), labels.len(), "{a}");
        let base = a["baseline_anon_bytes"].as_u64().unwrap();
        let first = am[0]["anon_bytes"].as_u64().unwrap() - base;
        assert!(first >= even, "{}: {first} B resident < {even} B live", a["allocator"]);
    }
}

/// A one-mark trace whose mark has no report, recorded by `source`.
fn empty_report_trace(source: Source, name: &str) -> PathBuf {
    let header = Header {
        source,
        python_version: if source == Source::Native { [0, 0, 0] } else { [3, 11, 7] },
        layout: pymalloc::Layout::Classes32Pools16k.name().into(),
        classes: 32,
        executable: "prog".into(),
        libpython: String::new(),
        script: "prog".into(),
        args: vec![],
    };
    let mut bytes = format::write_header(&header);
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(&mut buf);
    e.malloc(Domain::Mem, 100, 0x1000);
    e.mark(b"here", b"");
    e.free(Domain::Mem, 0x1000);
    e.end(0);
    let n = e.len();
    bytes.extend_from_slice(&buf[..n]);
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn an_unreadable_report_differs_in_a_cpython_trace_and_is_nothing_to_compare_in_a_native_one() {
    let cpython = empty_report_trace(Source::Cpython, "cpython-empty.trace");
    let out = Command::new(BIN).args(["trace", "replay"]).arg(&cpython).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("interpreter report unreadable"));

    let native = empty_report_trace(Source::Native, "native-empty.trace");
    let out = Command::new(BIN).args(["trace", "replay"]).arg(&native).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 marks, nothing to compare"), "{text}");
}

#[test]
fn glibc_realloc_to_zero_frees_the_block_in_a_native_trace() {
    // realloc(p, 0) frees p and returns NULL; the next malloc may get p back.
    let header = Header {
        source: Source::Native,
        python_version: [0, 0, 0],
        layout: pymalloc::Layout::Classes32Pools16k.name().into(),
        classes: 32,
        executable: "prog".into(),
        libpython: String::new(),
        script: "prog".into(),
        args: vec![],
    };
    let mut bytes = format::write_header(&header);
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(&mut buf);
    e.malloc(Domain::Mem, 100, 0x1000);
    e.realloc(Domain::Mem, 0x1000, 0, 0);
    e.malloc(Domain::Mem, 50, 0x1000);
    e.free(Domain::Mem, 0x1000);
    e.end(0);
    let n = e.len();
    bytes.extend_from_slice(&buf[..n]);
    let p = compile(&bytes).unwrap();
    assert_eq!(p.unknown, 0, "every call names a block the trace saw allocated");
    assert_eq!(p.slots, 1, "the first block was freed before the second was allocated");
}
