//! libFuzzer target: byte-driven alloc / free / realloc / alloc_aligned sequences over every
//! preset × policy × debug × arena source (see `driver.rs`).
//!
//! `cargo +nightly fuzz run heap_ops -- -max_total_time=60` from `allocators/pymalloc`.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../driver.rs"]
mod driver;

libfuzzer_sys::fuzz_target!(|data: &[u8]| driver::run(data));
