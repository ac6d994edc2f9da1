//! The fuzz target as a plain test: the driver of `fuzz/driver.rs` over a fixed corpus, each
//! input under every layout (preset × policy × debug × arena source), on stable Rust.
//!
//! The corpus is made here, deterministically: inputs of 1 to 400 bytes from a fixed-seed
//! generator, plus the files of `fuzz/seeds/` (inputs worth keeping, e.g. minimised from a
//! fuzzing run). `FUZZ_CORPUS=dir` replays a directory too (say, `fuzz/corpus/heap_ops` after a
//! run of `cargo +nightly fuzz run heap_ops`).

mod common;
#[path = "../fuzz/driver.rs"]
mod driver;

/// Generated inputs; each runs under every layout.
const GENERATED: usize = 24;

fn generated(i: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let len = 1 + (i * 37) % 400;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn generated_inputs_under_every_layout() {
    for i in 0..GENERATED {
        let input = generated(i);
        for combo in 0..driver::COMBOS {
            driver::run_combo(combo, &input);
        }
    }
}

#[test]
fn seed_and_given_corpus_files_under_every_layout() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut inputs = files(&seeds);
    if let Some(dir) = std::env::var_os("FUZZ_CORPUS") {
        inputs.extend(files(std::path::Path::new(&dir)));
    }
    for input in &inputs {
        driver::run(input); // as the fuzzer runs it: the first byte picks the layout
        for combo in 0..driver::COMBOS {
            driver::run_combo(combo, input.get(1..).unwrap_or_default());
        }
    }
}
