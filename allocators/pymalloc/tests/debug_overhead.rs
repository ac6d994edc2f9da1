//! Debug mode adds CPython's per-block overhead, which depends on the release: 3 words
//! (24 bytes) from 3.8 on, 4 words (32 bytes, one of them a serial number) before. Pinned
//! through behaviour: the size class a request lands in, and the largest request still served
//! from a pool.

use pymalloc::{Config, ConfigBuilder, ConfigError, Heap, Layout, Preset};

/// Every preset in debug mode, with the overhead CPython's debug hooks add on its releases.
fn presets() -> [(&'static str, ConfigBuilder, usize); 4] {
    [
        ("3.10", Config::builder(Preset::Cpython310), 24),
        ("3.9", Config::builder(Preset::Cpython38).keep_last_empty_arena(true), 24),
        ("3.8", Config::builder(Preset::Cpython38), 24),
        ("3.7", Config::builder(Preset::Cpython37), 32),
    ]
}

/// The size classes holding live blocks, as (block size, blocks in use).
fn classes_in_use(h: &Heap) -> Vec<(usize, usize)> {
    let s = h.stats();
    s.classes[..h.config().num_classes()]
        .iter()
        .filter(|c| c.blocks_in_use > 0)
        .map(|c| (c.block_size, c.blocks_in_use))
        .collect()
}

#[test]
fn a_24_byte_float_takes_the_class_of_24_bytes_plus_the_presets_overhead() {
    // Measured with PYTHONMALLOC=pymalloc_debug: a float (24 bytes) is in the 48-byte class on
    // 3.8.18 and 3.11.7 (16-byte granularity). The 3.7 preset has 8-byte classes: 24 + 32 = 56.
    let expected = [("3.10", 48), ("3.9", 48), ("3.8", 48), ("3.7", 56)];
    for ((name, builder, overhead), (name2, block)) in presets().into_iter().zip(expected) {
        assert_eq!(name, name2);
        let c = builder.debug(true).build().unwrap();
        assert_eq!(c.block_size(c.size_class(24 + overhead).unwrap()), block, "{name}");
        let mut h = Heap::new(c);
        let p = h.alloc(24);
        assert_eq!(classes_in_use(&h), [(block, 1)], "{name}");
        // SAFETY: p is live and freed once.
        unsafe { h.try_free(p) }.unwrap();
        h.check_invariants().unwrap();
    }
}

#[test]
fn the_largest_pooled_request_is_the_threshold_less_the_overhead() {
    for (name, builder, overhead) in presets() {
        let c = builder.debug(true).build().unwrap();
        let largest = c.small_request_threshold() - overhead; // 488 from 3.8 on, 480 before
        let mut h = Heap::new(c);
        let p = h.alloc(largest);
        assert_eq!(classes_in_use(&h), [(512, 1)], "{name}");
        assert_eq!(h.stats().raw_blocks_current, 0, "{name}");
        let q = h.alloc(largest + 1);
        assert_eq!(classes_in_use(&h), [(512, 1)], "{name}");
        assert_eq!(h.stats().raw_blocks_current, 1, "{name}: one byte more goes to libc");
        // SAFETY: p and q are live and freed once.
        unsafe {
            h.try_free(p).unwrap();
            h.try_free(q).unwrap();
        }
        h.check_invariants().unwrap();
    }
}

#[test]
fn every_preset_and_layout_sets_its_overhead_and_the_builder_keeps_it() {
    assert_eq!(Config::CPYTHON_3_10.debug_overhead(), 24);
    assert_eq!(Config::CPYTHON_3_9.debug_overhead(), 24);
    assert_eq!(Config::CPYTHON_3_8.debug_overhead(), 24);
    assert_eq!(Config::CPYTHON_3_7.debug_overhead(), 32);
    for (name, builder, overhead) in presets() {
        assert_eq!(builder.build().unwrap().debug_overhead(), overhead, "{name}");
    }
    for layout in Layout::ALL {
        let expected = if layout == Layout::Classes64Pools4k { 32 } else { 24 };
        assert_eq!(layout.config().debug_overhead(), expected, "{layout:?}");
    }
}

#[test]
fn a_3_7_interpreter_with_16_byte_classes_puts_a_float_in_the_64_byte_class() {
    // Measured: under PYTHONMALLOC=pymalloc_debug, 3.7.16 (32 classes) puts a float in the
    // 64-byte class. Its layout is the 3.8 one, its debug overhead the 3.7 one.
    let layout = Layout::detect((3, 7), 32).unwrap();
    let overhead = Layout::debug_overhead((3, 7));
    let b = Config::builder(Preset::Cpython38).debug(true).debug_overhead(overhead);
    let c = b.build().unwrap();
    assert_eq!(layout.config(), Config::builder(Preset::Cpython38).build().unwrap());
    let mut h = Heap::new(c);
    let p = h.alloc(24);
    assert_eq!(classes_in_use(&h), [(64, 1)]);
    // SAFETY: p is live and freed once.
    unsafe { h.try_free(p) }.unwrap();
}

#[test]
fn a_debug_overhead_other_than_24_or_32_is_rejected() {
    for bytes in [0, 16, 25, 31, 40] {
        let e = Config::builder(Preset::Cpython310).debug_overhead(bytes).build();
        assert_eq!(e, Err(ConfigError::DebugOverhead(bytes)));
    }
    let e = ConfigError::DebugOverhead(16).to_string();
    assert!(e.contains("24") && e.contains("32") && e.contains("16"), "{e}");
}
