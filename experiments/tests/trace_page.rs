//! docs/trace.md's sections on real programs through the preload library, rendered from the
//! committed results: figures computed from the JSON, a stated reason when a section was not
//! measured, older results without the sections still loading, and inconsistent ones refused.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A docs folder holding only a copy of the committed trace results, unique per test.
fn fixture(name: &str) -> (PathBuf, Value) {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results/trace.json");
    let docs = std::env::temp_dir().join(format!("arenalab-tpage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&docs);
    std::fs::create_dir_all(docs.join("results")).unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
    (docs, v)
}

fn render(docs: &Path, v: &Value) -> (Output, String) {
    std::fs::write(docs.join("results/trace.json"), serde_json::to_string(v).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arenalab"))
        .args(["render", "--docs"])
        .arg(docs)
        .output()
        .unwrap();
    let page = std::fs::read_to_string(docs.join("trace.md")).unwrap_or_default();
    (out, page)
}

fn mib(bytes: f64) -> String {
    let m = bytes / (1u64 << 20) as f64;
    format!("{:.1}", if m.abs() < 0.05 { 0.0 } else { m })
}

#[test]
fn the_native_section_shows_each_allocators_peak_and_end_from_the_results() {
    let (docs, v) = fixture("native");
    let n = &v["native"]["measured"];
    assert!(n.is_object(), "the committed results have a measured native trace: {}", v["native"]);
    let (out, page) = render(&docs, &v);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(page.contains("## A native program on four allocators"), "{page}");
    let labels: Vec<&str> =
        n["marks"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for a in n["allocators"].as_array().unwrap() {
        let base = a["baseline_anon_bytes"].as_u64().unwrap();
        let above: Vec<u64> = a["marks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["anon_bytes"].as_u64().unwrap().saturating_sub(base))
            .collect();
        let peak = *above.iter().max().unwrap();
        let peak_at = above.iter().rposition(|&x| x == peak).unwrap();
        let name = a["allocator"].as_str().unwrap().split(':').next().unwrap();
        let row = format!(
            "| {name} | {} | {} | {} |",
            mib(peak as f64),
            labels[peak_at],
            mib(*above.last().unwrap() as f64)
        );
        assert!(page.contains(&row), "{row} not in:\n{page}");
    }
}

#[test]
fn the_python3_section_says_how_closely_the_model_and_pymalloc_agree() {
    let (docs, v) = fixture("seed");
    let runs = v["preload_seed"]["measured"]["runs"].as_array().expect("measured runs");
    let rss = |r: &Value| -> Vec<f64> {
        r["phases"].as_array().unwrap().iter().map(|p| p["rss_bytes"].as_f64().unwrap()).collect()
    };
    let (py, pre) = (rss(&runs[0]), rss(&runs[1]));
    let worst = py.iter().zip(&pre).map(|(a, b)| (b - a).abs()).fold(0.0, f64::max);
    let (_, page) = render(&docs, &v);
    let want = format!("agree within {} MiB at every phase", mib(worst));
    assert!(page.contains(&want), "{want} not in:\n{page}");
}

#[test]
fn a_skipped_section_says_why_and_older_results_without_the_sections_still_render() {
    let (docs, mut v) = fixture("skipped");
    v["native"] = serde_json::json!({ "skipped": "neither sqlite3 nor git is installed" });
    let (out, page) = render(&docs, &v);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(page.contains("**Not measured:** neither sqlite3 nor git is installed."), "{page}");

    let obj = v.as_object_mut().unwrap();
    obj.remove("native");
    obj.remove("preload_seed");
    let (out, page) = render(&docs, &v);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!page.contains("## A native program") && page.contains("## Reproduce"), "{page}");
}

#[test]
fn a_native_replay_with_a_missing_mark_is_refused_with_exit_2() {
    let (docs, mut v) = fixture("refused");
    v["native"]["measured"]["allocators"][0]["marks"].as_array_mut().unwrap().pop();
    let (out, _) = render(&docs, &v);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the native trace's system replay has"), "{err}");
}

#[test]
fn interpreters_that_could_not_be_recorded_are_listed_with_their_reason() {
    let (docs, mut v) = fixture("notrec");
    v["not_recorded"] = serde_json::json!([
        "python3 (3.11.2): no shared libpython (Py_ENABLE_SHARED is 0): it cannot be embedded"
    ]);
    let (out, page) = render(&docs, &v);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(page.contains("Found but not recorded:\n\n- python3 (3.11.2): no shared libpython"));
    let _ = std::fs::remove_dir_all(&docs);
}
