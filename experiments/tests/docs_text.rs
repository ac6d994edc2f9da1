//! The prose of the generated pages says what the code and the measurements say: figures and
//! defaults come from the code (`lineup`'s knob table), verdicts agree with the table under
//! them, and no page carries a machine path or a file the reader does not have. Rendering
//! only, from the committed results.

use lineup::Allocator;
use std::path::{Path, PathBuf};

/// The committed results rendered into a fresh folder.
fn rendered(name: &str) -> PathBuf {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results");
    let docs = std::env::temp_dir().join(format!("arenalab-text-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&docs);
    std::fs::create_dir_all(docs.join("results")).unwrap();
    for entry in std::fs::read_dir(&committed).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, docs.join("results").join(path.file_name().unwrap())).unwrap();
    }
    arenalab::report::render_all(&docs).unwrap();
    docs
}

fn page(docs: &Path, name: &str) -> String {
    std::fs::read_to_string(docs.join(name)).unwrap()
}

#[test]
fn knob_defaults_in_prose_come_from_the_knob_table() {
    let docs = rendered("knobs");
    let md = page(&docs, "allocators.md");
    let ms = Allocator::Mimalloc
        .knobs()
        .iter()
        .find(|k| k.name == "purge_delay")
        .and_then(|k| k.default)
        .unwrap();
    let prose = if ms % 1000 == 0 { format!("{} s", ms / 1000) } else { format!("{ms} ms") };
    assert!(md.contains(&format!("`purge_delay` ({prose} by default)")), "prose: {prose}");
    assert!(md.contains(&format!("`purge_delay` (default {ms} ms)")), "knob line");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn no_page_carries_a_machine_path_or_a_missing_file() {
    let docs = rendered("paths");
    let bench: serde_json::Value =
        serde_json::from_str(&page(&docs, "results/benchmarks.json")).unwrap();
    let criterion_dir = bench["criterion_dir"].as_str().unwrap();
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(criterion_dir), "{} names {criterion_dir}", path.display());
            assert!(!text.contains("seed-question.html"), "{}", path.display());
            for home in ["/root/", "/home/", "/work/", "/tmp/"] {
                assert!(!text.contains(home), "{} names a machine folder {home}", path.display());
            }
        }
    }
    let claims = page(&docs, "claims.md");
    assert!(claims.contains("> When a python session/terminal is closed or killed forcefully"));
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn claim_b_names_every_allocator_its_table_shows_keeping_memory() {
    let docs = rendered("claimb");
    let claims = page(&docs, "claims.md");
    let b = &claims[claims.find("## (b)").unwrap()..claims.find("## (c)").unwrap()];
    let verdict = b.lines().find(|l| l.starts_with("**Verdict:")).unwrap();
    assert!(!verdict.contains("True only when some objects"), "{verdict}");
    assert!(!b.contains("pointer array among them), kept"), "glibc's array is mmapped");
    // Table rows: allocator | after alloc | after freeing all | ...
    for row in b.lines().filter(|l| l.starts_with("| ") && l.contains(" MiB |")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let mib = |s: &str| s.trim_end_matches(" MiB").parse::<f64>().unwrap();
        let (name, alloc, freed) = (cells[1], mib(cells[2]), mib(cells[3]));
        if name != "pymalloc" && freed >= 0.1 * alloc {
            assert!(verdict.contains(&format!("{name} ({freed:.1} MiB)")), "{name}: {verdict}");
        }
    }
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn the_exit_page_says_when_panic_frees() {
    let docs = rendered("panic");
    let md = page(&docs, "process-exit.md");
    assert!(!md.contains("For `free-return` and `panic` the time before 0 is the child freeing"));
    assert!(md.contains("for `panic` the freeing comes after 0"));
    let claims = page(&docs, "claims.md");
    assert!(!claims.contains("The slowest return measured"), "claim (a) says what it measures");
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn the_pymalloc_tour_is_one_readable_map_per_step() {
    let docs = rendered("tour");
    let md = page(&docs, "pymalloc.md");
    assert!(!docs.join("pymalloc-tour.svg").exists());
    let maps: Vec<_> = std::fs::read_dir(docs.join("pymalloc")).unwrap().collect();
    let steps = md.matches("\n### ").count();
    assert_eq!(maps.len(), steps, "one map per step");
    for m in maps {
        let svg = std::fs::read_to_string(m.unwrap().path()).unwrap();
        let w: usize =
            svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(w <= 800, "{w} px wide: readable at page width");
    }
    std::fs::remove_dir_all(&docs).unwrap();
}

#[test]
fn every_table_row_has_as_many_cells_as_its_header() {
    let docs = rendered("tables");
    for entry in std::fs::read_dir(&docs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut header: Option<usize> = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                header = None;
                continue;
            }
            // Cells are separated by " | "; an escaped pipe inside a cell would be `\|`.
            let cells = line.replace("\\|", "").matches('|').count();
            match header {
                None => header = Some(cells),
                Some(h) => assert_eq!(cells, h, "{}: {line}", path.display()),
            }
        }
    }
    std::fs::remove_dir_all(&docs).unwrap();
}
