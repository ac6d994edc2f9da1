//! The retention part: what a real interpreter keeps after `del`, phase by phase.
//!
//! One child per (interpreter, `PYTHONMALLOC`, kind, survivors) runs `python/retention.py
//! --barrier DIR`. At every phase the script writes `sys._debugmallocstats()` (raw text) to a
//! file in DIR, prints the phase name and blocks on stdin; meanwhile this side reads the child's
//! `/proc/PID/smaps_rollup` (measurement from outside the process under test) and the statistics
//! file, then lets it go on. The text is parsed here ([`parse_stats`]), never in the child.
//!
//! The model's prediction ([`model_phases`]) runs the same shape (N objects of the kind's
//! block size, the same deletions) on [`pymalloc::Heap`] with the preset matching the version.

use super::find::Interpreter;
use crate::error::{Error, Result};
use crate::procs::Spawn;
use pymalloc::{Config, Heap};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The object kinds of the script.
pub const KINDS: [&str; 5] = ["floats", "ints", "tuples", "bytes", "dict"];

/// The size a kind's object requests from pymalloc, in bytes (CPython 3.8+, 64-bit): a float
/// 24, an int below 2**30 28, a 2-tuple 40 plus a 16-byte GC header, 100 bytes in a `bytes` 133,
/// a dict's int keys 28.
pub fn object_bytes(kind: &str) -> usize {
    match kind {
        "floats" => 24,
        "tuples" => 56,
        "bytes" => 133,
        _ => 28,
    }
}

/// `sys._debugmallocstats()` figures (pymalloc's part; absent under `PYTHONMALLOC=malloc`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObStats {
    /// `# arenas allocated total`.
    pub arenas_allocated_total: u64,
    /// `# arenas reclaimed`.
    pub arenas_reclaimed: u64,
    /// `# arenas highwater mark`.
    pub arenas_highwater: u64,
    /// `# arenas allocated current`.
    pub arenas_current: u64,
    /// Bytes per arena (from `N arenas * B bytes/arena`).
    pub arena_bytes: u64,
    /// Pools in use, summed over the size-class table.
    pub pools_in_use: u64,
    /// Empty pools held in arenas (`N unused pools * B bytes`).
    pub pools_unused: u64,
    /// Bytes per pool.
    pub pool_bytes: u64,
    /// Blocks in use, summed over the size classes.
    pub blocks_in_use: u64,
    /// Blocks in use in the size class of the measured kind.
    pub kind_blocks_in_use: u64,
}

/// Parses the text `sys._debugmallocstats()` writes. `None` when it has no pymalloc section
/// (`PYTHONMALLOC=malloc`). `kind_block` is the block size whose blocks in use are picked out.
/// The report is read once, by [`crate::trace::counters::Counters::parse`] (the trace replay
/// compares the same counters); this adds the two sizes the page prints, bytes per arena and per
/// pool, from the `N arenas * B bytes/arena` and `N unused pools * B bytes` lines.
pub fn parse_stats(text: &str, kind_block: u64) -> Option<ObStats> {
    let c = crate::trace::counters::Counters::parse(text)?;
    let size_after = |marker: &str| {
        text.lines()
            .find_map(|l| l.split_once(marker))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|v| v.replace(',', "").parse().ok())
            .unwrap_or(0)
    };
    Some(ObStats {
        arenas_allocated_total: c.arenas_total,
        arenas_reclaimed: c.arenas_reclaimed,
        arenas_highwater: c.arenas_highwater,
        arenas_current: c.arenas_current,
        arena_bytes: size_after(" arenas * "),
        pools_in_use: c.classes.iter().map(|r| r.pools).sum(),
        pools_unused: c.unused_pools,
        pool_bytes: size_after(" unused pools * "),
        blocks_in_use: c.classes.iter().map(|r| r.blocks_in_use).sum(),
        kind_blocks_in_use: c
            .classes
            .iter()
            .find(|r| r.size as u64 == kind_block)
            .map_or(0, |r| r.blocks_in_use),
    })
}

/// One phase as measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    /// `baseline`, `build`, `del-half`, ...
    pub name: String,
    /// `Rss` of the child's smaps_rollup, read by arenalab while the child waited, bytes.
    pub rss_bytes: u64,
    /// `Anonymous` of the same read, bytes.
    pub anon_bytes: u64,
    /// The interpreter's pymalloc figures (`None` under `PYTHONMALLOC=malloc`).
    pub stats: Option<ObStats>,
    /// The model's arenas at this phase (pymalloc runs only).
    pub model_arenas: Option<u64>,
}

/// One child's run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    /// `3.11.2`.
    pub version: String,
    /// `pymalloc` or `malloc` (the `PYTHONMALLOC` value).
    pub allocator: String,
    /// The object kind.
    pub kind: String,
    /// `none`, `spread` or `packed`.
    pub survivors: String,
    /// Objects built.
    pub n: u64,
    /// The phases in order.
    pub phases: Vec<Phase>,
}

impl Run {
    /// The phase called `name`.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The model preset matching a CPython version: 3.10+ (1 MiB arenas, 16 KiB pools) or 3.8
/// (256 KiB arenas, 4 KiB pools; 3.9 has the same geometry).
pub fn preset_for(major_minor: (u32, u32)) -> Config {
    if major_minor >= (3, 10) { Config::CPYTHON_3_10 } else { Config::CPYTHON_3_8 }
}

/// The model's arenas after each phase of the script's shape, starting from an empty heap:
/// the same number of objects of the kind's size, freed in the same order.
pub fn model_phases(config: Config, kind: &str, survivors: &str, n: usize) -> Vec<(String, u64)> {
    let size = object_bytes(kind);
    let mut heap = Heap::new(config);
    let mut out = Vec::new();
    let mut note = |name: &str, heap: &Heap| {
        out.push((name.to_string(), heap.stats().arenas_current as u64));
    };
    note("baseline", &heap);
    let mut live: Vec<*mut u8> = (0..n).map(|_| heap.alloc(size)).collect();
    note("build", &heap);
    let free_all = |heap: &mut Heap, v: Vec<*mut u8>| {
        for p in v {
            // SAFETY: every pointer in the vector is a live block of this heap, freed once
            // (it is moved out of the live set here).
            unsafe { heap.free(p) };
        }
    };
    if survivors == "none" {
        let (even, odd): (Vec<_>, Vec<_>) = live.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        free_all(&mut heap, even.into_iter().map(|(_, p)| *p).collect());
        live = odd.into_iter().map(|(_, p)| *p).collect();
        note("del-half", &heap);
        live.extend((0..n / 2).map(|_| heap.alloc(size)));
        note("refill", &heap);
        free_all(&mut heap, std::mem::take(&mut live));
        note("del-all", &heap);
    } else {
        let keep_every = |i: usize| {
            if survivors == "spread" { i.is_multiple_of(1000) } else { i < (n / 1000).max(1) }
        };
        let (keep, gone): (Vec<_>, Vec<_>) =
            live.iter().enumerate().partition(|(i, _)| keep_every(*i));
        free_all(&mut heap, gone.into_iter().map(|(_, p)| *p).collect());
        live = keep.into_iter().map(|(_, p)| *p).collect();
        note("keep-1-in-1000", &heap);
    }
    note("gc-collect", &heap);
    note("malloc-trim", &heap);
    free_all(&mut heap, live);
    out
}

/// Runs one child through its phases.
pub fn run_one(
    py: &Interpreter,
    script: &Path,
    allocator: &str,
    kind: &str,
    survivors: &str,
    n: u64,
    scratch: &Path,
) -> Result<Run> {
    run_one_with(py, script, allocator, kind, survivors, n, scratch, &[])
}

/// [`run_one`] with more environment variables for the child (e.g. `LD_PRELOAD`).
#[allow(clippy::too_many_arguments)]
pub fn run_one_with(
    py: &Interpreter,
    script: &Path,
    allocator: &str,
    kind: &str,
    survivors: &str,
    n: u64,
    scratch: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<Run> {
    let dir = scratch.join(format!("{}-{allocator}-{kind}-{survivors}-{}", py.version, env.len()));
    std::fs::create_dir_all(&dir).map_err(Error::failed(dir.display()))?;
    let mut spawn = Spawn::program(&py.executable)
        .arg(script)
        .args(["--kind", kind, "--n", &n.to_string(), "--survivors", survivors, "--barrier"])
        .arg(&dir)
        .env("PYTHONMALLOC", allocator)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in env {
        spawn = spawn.env(k, v);
    }
    let mut child = spawn.spawn()?;
    let block = config_block(py, kind);
    let mut phases = Vec::new();
    while let Some(line) = child.read_line()? {
        let mut it = line.splitn(3, ' ');
        let (Some("phase"), Some(name), Some(path)) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Failed(format!(
                "{} retention.py printed {line:?}; stderr: {}",
                py.version,
                child.stderr_tail()
            )));
        };
        let mem = crate::measure::process(child.pid())?;
        let text = std::fs::read_to_string(path).map_err(Error::failed(path))?;
        let _ = std::fs::remove_file(path);
        phases.push(Phase {
            name: name.to_string(),
            rss_bytes: mem.rss_bytes,
            anon_bytes: mem.anon_bytes,
            stats: parse_stats(&text, block),
            model_arenas: None,
        });
        child.send_line("go")?;
    }
    child.finish()?;
    let _ = std::fs::remove_dir(&dir);
    if allocator == "pymalloc" {
        let model = model_phases(preset_for(py.major_minor), kind, survivors, n as usize);
        for p in &mut phases {
            p.model_arenas = model.iter().find(|(m, _)| *m == p.name).map(|(_, a)| *a);
        }
    }
    Ok(Run {
        version: py.version.clone(),
        allocator: allocator.to_string(),
        kind: kind.to_string(),
        survivors: survivors.to_string(),
        n,
        phases,
    })
}

/// The block size of the kind's size class under the version's geometry.
fn config_block(py: &Interpreter, kind: &str) -> u64 {
    let c = preset_for(py.major_minor);
    c.size_class(object_bytes(kind)).map_or(0, |k| c.block_size(k) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    0     16           1             106           915
    1     32          20           9,973           227

# arenas allocated total           =                   27
# arenas reclaimed                 =                   18
# arenas highwater mark            =                    9
# arenas allocated current         =                    9
9 arenas * 1048576 bytes/arena     =            9,437,184

# bytes in allocated blocks        =            8,932,416
26 unused pools * 16384 bytes      =              425,984
";

    #[test]
    fn debugmallocstats_text_is_parsed() {
        let s = parse_stats(SAMPLE, 32).unwrap();
        assert_eq!(
            (s.arenas_allocated_total, s.arenas_reclaimed, s.arenas_highwater, s.arenas_current),
            (27, 18, 9, 9)
        );
        assert_eq!((s.arena_bytes, s.pools_unused, s.pool_bytes), (1 << 20, 26, 16384));
        assert_eq!((s.pools_in_use, s.blocks_in_use, s.kind_blocks_in_use), (21, 10_079, 9_973));
        assert_eq!(parse_stats("no pymalloc here", 32), None);
    }

    #[test]
    fn the_model_keeps_every_arena_after_deleting_every_other_object() {
        let p = model_phases(Config::CPYTHON_3_10, "floats", "none", 100_000);
        let at = |n: &str| p.iter().find(|(m, _)| m == n).unwrap().1;
        assert_eq!(at("del-half"), at("build"));
        assert_eq!(at("refill"), at("build"));
        assert_eq!(at("del-all"), 1);
    }
}
