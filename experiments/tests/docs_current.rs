//! The committed docs/ are exactly what the renderer makes of the committed results JSON, so the
//! pages cannot drift from the code. Rendering only: nothing is measured here.
//!
//! When this fails after a change to a renderer, regenerate with `cargo run --release -- render`
//! (or measure anew with `cargo run --release`) and commit docs/.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        if rel.starts_with("results") {
            continue;
        }
        if path.is_dir() {
            files(root, &path, out);
        } else {
            out.insert(rel);
        }
    }
}

#[test]
fn committed_docs_match_what_the_committed_results_render_to() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs");
    let results = docs.join("results");
    assert!(
        results.is_dir(),
        "docs/results/ is missing: run `cargo run --release` and commit docs/"
    );
    let tmp = std::env::temp_dir().join(format!("arenalab-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("results")).unwrap();
    for entry in std::fs::read_dir(&results).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.join("results").join(path.file_name().unwrap())).unwrap();
    }
    arenalab::report::render_all(&tmp).unwrap();

    let (mut committed, mut rendered) = (BTreeSet::new(), BTreeSet::new());
    files(&docs, &docs, &mut committed);
    files(&tmp, &tmp, &mut rendered);
    let stale: Vec<_> = committed.difference(&rendered).collect();
    let missing: Vec<_> = rendered.difference(&committed).collect();
    let differ: Vec<_> = rendered
        .intersection(&committed)
        .filter(|p| std::fs::read(docs.join(p)).unwrap() != std::fs::read(tmp.join(p)).unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        stale.is_empty() && missing.is_empty() && differ.is_empty(),
        "docs/ is out of date with its results (run `cargo run --release -- render` and commit):\n\
         pages no renderer makes: {stale:?}\npages not committed: {missing:?}\npages that differ: {differ:?}"
    );
}
