//! Real programs on the model through `libarenalab_preload.so`, for `arenalab report`.
//!
//! 1. **A native trace.** `sqlite3` (or, without it, `git log` on a small generated repository)
//!    runs under the preload in mode `record`; its trace is replayed in a fresh child on glibc,
//!    mimalloc, jemalloc and the pymalloc model, measuring each child's anonymous resident
//!    memory at every mark (one every 65,536 calls and one at exit). The peak is the largest of
//!    those readings, not the true peak between them.
//! 2. **The seed workload in real python3 on the model.** `experiments/python/retention.py`
//!    (1,000,000 floats, its phases) runs three times: with CPython's own pymalloc, with
//!    `PYTHONMALLOC=malloc` under the preload (every small request of the process served by the
//!    model), and with `PYTHONMALLOC=malloc` on glibc; arenalab reads each child's memory from
//!    outside at every phase.
//!
//! The library is looked for next to the running arenalab binary (`target/release/`, where
//! `cargo build --release` puts both); without it both sections say so on the page.

use super::lineup::AllocatorReplay;
use crate::cpython::find::Interpreter;
use crate::cpython::retention::{self, Run};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The preload library's file name.
pub const LIBRARY: &str = "libarenalab_preload.so";

/// A measured section, or why it was not measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Section<T> {
    /// The figures.
    Measured(T),
    /// Why there are none (a missing tool or library).
    Skipped(String),
}

impl<T> Section<T> {
    /// The figures; or, when the section was skipped, `None` after writing its "Not measured"
    /// line into `md`.
    pub fn measured_or_note(&self, md: &mut String) -> Option<&T> {
        match self {
            Section::Measured(r) => Some(r),
            Section::Skipped(why) => {
                md.push_str(&format!("**Not measured:** {why}.\n\n"));
                None
            }
        }
    }
}

/// A native program recorded and replayed on the four allocators.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NativeRun {
    /// `sqlite3` or `git`.
    pub program: String,
    /// What ran, for people.
    pub command: String,
    /// Calls recorded.
    pub calls: u64,
    /// Frees and reallocs of blocks allocated before the recording started, left out.
    pub unknown: u64,
    /// Trace size.
    pub trace_bytes: u64,
    /// Seconds the recorded run took.
    pub record_seconds: f64,
    /// The model's layout (the preload's default).
    pub layout: String,
    /// Mark labels.
    pub marks: Vec<String>,
    /// One replay per allocator.
    pub allocators: Vec<AllocatorReplay>,
}

/// The seed workload in real python3: pymalloc, the model via the preload, glibc.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreloadSeed {
    /// `3.11.7`.
    pub python: String,
    /// `ARENALAB_PRESET` given to the preload (`3.10` or `3.8`).
    pub preset: String,
    /// Objects built.
    pub objects: u64,
    /// `PYTHONMALLOC=pymalloc`, then `PYTHONMALLOC=malloc` under the preload (its `allocator`
    /// is `preload`), then `PYTHONMALLOC=malloc` on glibc.
    pub runs: Vec<Run>,
}

/// The preload library next to the running binary.
pub fn library() -> std::result::Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find arenalab's binary: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let lib = dir.join(LIBRARY);
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!(
            "the preload library {LIBRARY} is not in {} (next to the arenalab binary); \
             `cargo build --release` builds it there",
            dir.display()
        ))
    }
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The SQL given to `sqlite3 :memory:`: a 100,000-row table with an index, two queries, half
/// the rows deleted.
pub const SQL: &str = "\
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO t SELECT i, printf('name-%d-%s', i, hex(randomblob(16))), i * 0.5 FROM n;
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(score) FROM t WHERE name LIKE 'name-1%';
SELECT substr(name, 1, 7) AS k, count(*) FROM t GROUP BY k ORDER BY 2 DESC LIMIT 3;
DELETE FROM t WHERE id % 2 = 0;
SELECT count(*) FROM t;
";

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdout(Stdio::null()).output().map_err(Error::failed(what))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "{what}: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Records sqlite3 (or git log) under the preload and replays the trace on the four
/// allocators. `dir` is a scratch folder.
pub fn measure_native(dir: &Path) -> Result<Section<NativeRun>> {
    let lib = match library() {
        Ok(l) => l,
        Err(why) => return Ok(Section::Skipped(why)),
    };
    let trace = dir.join("native.trace");
    let (program, command, mut cmd) = if installed("sqlite3") {
        let sql = dir.join("generate.sql");
        std::fs::write(&sql, SQL).map_err(Error::failed(sql.display()))?;
        let mut c = Command::new("sqlite3");
        c.arg(":memory:").stdin(std::fs::File::open(&sql).map_err(Error::failed(sql.display()))?);
        ("sqlite3", "sqlite3 :memory: < generate.sql (the SQL below)", c)
    } else if installed("git") {
        let repo = dir.join("repo");
        std::fs::create_dir_all(&repo).map_err(Error::failed(repo.display()))?;
        let git = |args: &[&str]| {
            let mut c = Command::new("git");
            c.args(["-c", "user.name=arenalab", "-c", "user.email=arenalab@localhost"])
                .args(args)
                .current_dir(&repo);
            c
        };
        run(&mut git(&["init", "-q"]), "git init")?;
        for round in 0..20 {
            for f in 0..50 {
                let text: String =
                    (0..=round).map(|l| format!("file {f} line {l} of round {round}\n")).collect();
                std::fs::write(repo.join(format!("f{f}.txt")), text)
                    .map_err(Error::failed(repo.display()))?;
            }
            run(&mut git(&["add", "."]), "git add")?;
            run(&mut git(&["commit", "-qm", &format!("round {round}")]), "git commit")?;
        }
        let mut c = git(&["log", "--stat", "-p"]);
        c.env("GIT_PAGER", "cat");
        ("git", "git log --stat -p (a generated repository: 20 commits of 50 files)", c)
    } else {
        return Ok(Section::Skipped(
            "neither sqlite3 nor git is installed: there is no native program to record".into(),
        ));
    };
    let started = Instant::now();
    run(
        cmd.env("LD_PRELOAD", &lib).env("ARENALAB_TRACE", &trace).env_remove("ARENALAB_PRESET"),
        &format!("{program} under the preload in mode record"),
    )?;
    let record_seconds = started.elapsed().as_secs_f64();
    let trace_bytes = std::fs::metadata(&trace).map_err(Error::failed(trace.display()))?.len();
    let (p, layout) = super::load(&trace)?;
    let _ = std::fs::remove_file(&trace);
    let mut allocators = Vec::new();
    for a in ["system", "mimalloc", "jemalloc"] {
        allocators.push(super::lineup::replay_program(&p, a)?);
    }
    allocators.push(super::lineup::replay_program(&p, &format!("pymalloc:{}", layout.name()))?);
    eprintln!(
        "      native trace: {program}, {} calls, {} marks, replayed on {} allocators",
        p.calls,
        p.marks.len(),
        allocators.len()
    );
    Ok(Section::Measured(NativeRun {
        program: program.into(),
        command: command.into(),
        calls: p.calls,
        unknown: p.unknown,
        trace_bytes,
        record_seconds,
        layout: layout.name().into(),
        marks: p.marks.iter().map(|m| m.label.clone()).collect(),
        allocators,
    }))
}

/// Runs the seed workload (retention.py, floats) under python3 three ways: pymalloc, the model
/// via the preload, glibc.
pub fn measure_seed(dir: &Path) -> Result<Section<PreloadSeed>> {
    let lib = match library() {
        Ok(l) => l,
        Err(why) => return Ok(Section::Skipped(why)),
    };
    let found = crate::cpython::find::find(&[PathBuf::from("python3")]);
    let Some(py): Option<Interpreter> = found.ok().and_then(|f| f.interpreters.into_iter().next())
    else {
        return Ok(Section::Skipped("no CPython 3.8 or newer runs as python3".into()));
    };
    let preset = if py.major_minor >= (3, 10) { "3.10" } else { "3.8" };
    let script = crate::cpython::scripts_dir()?.join("retention.py");
    let n = crate::cpython::DEFAULT_OBJECTS;
    let pymalloc = retention::run_one(&py, &script, "pymalloc", "floats", "none", n, dir)?;
    let env = [("LD_PRELOAD", lib.as_os_str()), ("ARENALAB_PRESET", preset.as_ref())];
    let mut preload =
        retention::run_one_with(&py, &script, "malloc", "floats", "none", n, dir, &env)?;
    preload.allocator = "preload".into();
    let malloc = retention::run_one(&py, &script, "malloc", "floats", "none", n, dir)?;
    Ok(Section::Measured(PreloadSeed {
        python: py.version.clone(),
        preset: preset.into(),
        objects: n,
        runs: vec![pymalloc, preload, malloc],
    }))
}
