//! The resident-memory section of `docs/benchmarks.md`: what `mstress` and `mleak` leave
//! resident, per allocator.
//!
//! The `threads` benchmark group ends by running `RSS_ROUNDS` rounds (benches/src/threads.rs)
//! of each workload on each allocator in a forked child (the allocators all live in the
//! benchmark process, so only a child measures one of them apart) and writes
//! `threads-rss.json` in the criterion folder; `arenalab bench-report` reads it ([`read`]) into
//! `docs/results/benchmarks.json` (field `rss`), and the page is rendered from there
//! ([`section`]), so that it stays exactly what the committed results render to:
//!
//! ```json
//! {"version":1,"rows":[{"workload":"mleak","allocator":"pymalloc","rounds":20,
//!   "before_kib":9000,"rounds_kib":[9800,9800],"held_bytes":1048576}]}
//! ```
//!
//! `before_kib` is the child's RSS (`VmRSS`) before the workload, pages inherited from the
//! benchmark process included; `rounds_kib` its RSS after each round; `held_bytes` the
//! allocator's own figure (`lineup::AllocatorStats::held_bytes`) after the run. The section
//! shows the growth over the run (last round − before) and across rounds (last − first): for
//! `mleak` the second should be about zero, as short-lived threads must not leak.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file the benchmark writes, in the criterion folder.
pub const FILE: &str = "threads-rss.json";

/// One row of the file.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
pub struct RssRow {
    /// `mstress` or `mleak`.
    pub workload: String,
    /// The allocator's name.
    pub allocator: String,
    /// Rounds run.
    pub rounds: u64,
    /// The child's RSS before the workload, KiB.
    pub before_kib: u64,
    /// The child's RSS after each round, KiB.
    pub rounds_kib: Vec<u64>,
    /// The allocator's "held" figure after the run, bytes, when it reports one.
    pub held_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct RssFile {
    version: u32,
    rows: Vec<RssRow>,
}

/// Reads the rows of `threads-rss.json`; a message when the file is missing or malformed.
pub fn read(criterion_dir: &Path) -> Result<Vec<RssRow>, String> {
    let path = criterion_dir.join(FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{} could not be read ({e})", path.display()))?;
    let file: RssFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not the benchmark's RSS file ({e})", path.display()))?;
    if file.version != 1 {
        return Err(format!("{} has version {}, not 1", path.display(), file.version));
    }
    Ok(file.rows)
}

/// KiB difference, signed, as text ("+1,024", "-8", "0").
fn delta(kib: i64) -> String {
    let sign = if kib > 0 {
        "+"
    } else if kib < 0 {
        "-"
    } else {
        ""
    };
    format!("{sign}{}", group(kib.unsigned_abs()))
}

fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Markdown section (a heading, an explanation, a table) for `rows`; with no rows, the
/// heading and a note saying how they are recorded.
///
/// ```
/// let md = arenalab::bench_rss::section(&[]);
/// assert!(md.starts_with("## Resident memory after `mstress` and `mleak`"));
/// assert!(md.contains("Not recorded"));
/// ```
pub fn section(rows: &[RssRow]) -> String {
    let mut md = String::from("## Resident memory after `mstress` and `mleak`\n\n");
    if rows.is_empty() {
        md.push_str(
            "Not recorded in these results: the `threads` group of `cargo bench` writes \
             `threads-rss.json` in the criterion folder, and `arenalab bench-report` reads it.\n\n",
        );
        return md;
    }
    md.push_str(
        "Each workload ran again on each allocator in a forked child of the benchmark process \
         (the allocators share that process, so only a child measures one apart), and the \
         child's resident set (`VmRSS`) was read before the run and after every round. \
         *Growth over the run* is the last round's RSS minus the RSS before; *across rounds* is \
         the last round's minus the first's: for `mleak`, whose threads live one round, a \
         figure near zero means that exited threads leave nothing behind. *Held* is the \
         allocator's own figure after the run (see `lineup::AllocatorStats`).\n\n\
         | workload | allocator | rounds | RSS before (KiB) | growth over the run (KiB) | \
         across rounds (KiB) | held after (KiB) |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (Some(&first), Some(&last)) = (r.rounds_kib.first(), r.rounds_kib.last()) else {
            continue;
        };
        md.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.allocator,
            r.rounds,
            group(r.before_kib),
            delta(last as i64 - r.before_kib as i64),
            delta(last as i64 - first as i64),
            r.held_bytes.map_or("-".to_string(), |h| group(h / 1024)),
        ));
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_benchmark_becomes_a_table_with_the_growths_computed() {
        let dir = std::env::temp_dir().join(format!("bench-rss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(FILE),
            r#"{"version":1,"rows":[
{"workload":"mleak","allocator":"pymalloc","rounds":3,"before_kib":1000,"rounds_kib":[5000,5100,4900],"held_bytes":2097152},
{"workload":"mstress","allocator":"system","rounds":2,"before_kib":1000,"rounds_kib":[3000,3500],"held_bytes":null}
]}"#,
        )
        .unwrap();
        let md = section(&read(&dir).unwrap());
        assert!(
            md.contains("| `mleak` | `pymalloc` | 3 | 1,000 | +3,900 | -100 | 2,048 |"),
            "{md}"
        );
        assert!(md.contains("| `mstress` | `system` | 2 | 1,000 | +2,500 | +500 | - |"), "{md}");
        std::fs::write(dir.join(FILE), "{\"version\":2,\"rows\":[]}").unwrap();
        assert!(read(&dir).unwrap_err().contains("version 2, not 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
