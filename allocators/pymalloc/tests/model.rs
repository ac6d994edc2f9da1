//! Model-based property tests: random alloc / free / realloc sequences with sizes 0..=600 under
//! every preset and both arena policies. After every step the heap's own invariants hold, no two
//! live blocks overlap, every block is aligned, and every live block still holds its bytes.
//!
//! 3 presets (3.8 in debug mode) × 2 policies × 1,707 cases = 10,242 sequences per run by
//! default; under Miri 1 case (6 sequences), shorter and with smaller bursts.
//! `PROPTEST_CASES=N` sets the number of cases (under Miri, forward it with
//! `MIRIFLAGS=-Zmiri-env-forward=PROPTEST_CASES`):
//!
//! ```text
//! PROPTEST_CASES=20000 cargo test --release -p pymalloc --test model
//! ```

mod common;
use common::{Placed, Placement, fill, holds};
use proptest::prelude::*;
use pymalloc::{ArenaPolicy, Config, Heap, Preset};

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    /// Free the live block at this index (modulo the number of live blocks).
    Free(usize),
    /// Resize the live block at this index to this size.
    Realloc(usize, usize),
    /// Allocate this many blocks of one size: enough to cross pool and arena boundaries.
    Burst(usize, usize),
    /// Free every live block from this index on, every `step`-th.
    Sweep(usize, usize),
}

/// The longest burst: 400 blocks, enough to fill pools and arenas of every preset; under Miri
/// (an interpreter) 40.
const MAX_BURST: usize = if cfg!(miri) { 40 } else { 400 };
/// Operations per sequence: up to 60, under Miri up to 12.
const MAX_OPS: usize = if cfg!(miri) { 12 } else { 60 };

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..=600).prop_map(Op::Alloc),
        3 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 0usize..=600).prop_map(|(i, n)| Op::Realloc(i, n)),
        1 => (1usize..=600, 1usize..=MAX_BURST).prop_map(|(n, k)| Op::Burst(n, k)),
        1 => (any::<usize>(), 1usize..=4).prop_map(|(i, s)| Op::Sweep(i, s)),
    ]
}

struct Live {
    ptr: *mut u8,
    size: usize,
    seed: u64,
}

fn check(h: &Heap<Placed>, live: &[Live], align: usize) {
    h.check_invariants().unwrap();
    let mut spans: Vec<(usize, usize)> =
        live.iter().map(|b| (b.ptr as usize, b.size.max(1))).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {:x?}", w);
    }
    for b in live {
        assert_eq!(b.ptr as usize % align, 0, "block {:p} not aligned to {align}", b.ptr);
        // SAFETY: a live block of at least `size` bytes.
        assert!(unsafe { holds(b.ptr, b.size, b.seed) }, "block {:p} lost its bytes", b.ptr);
    }
}

fn run(config: Config, placement: Placement, ops: Vec<Op>) {
    let align = config.alignment();
    let mut h = Heap::with_source(config, Placed::new(placement, config.pool_size()));
    let mut live: Vec<Live> = Vec::new();
    let mut seed = 1u64;
    let alloc = |h: &mut Heap<Placed>, live: &mut Vec<Live>, size: usize, seed: &mut u64| {
        let p = h.alloc(size);
        assert!(!p.is_null());
        *seed += 1;
        let seed = *seed;
        // SAFETY: a fresh block of `size` bytes.
        unsafe { fill(p, size, seed) };
        live.push(Live { ptr: p, size, seed });
    };
    for op in ops {
        match op {
            Op::Alloc(n) => alloc(&mut h, &mut live, n, &mut seed),
            Op::Burst(n, k) => (0..k).for_each(|_| alloc(&mut h, &mut live, n, &mut seed)),
            Op::Free(i) if !live.is_empty() => {
                let b = live.swap_remove(i % live.len());
                // SAFETY: a live block freed once.
                unsafe { h.free(b.ptr) };
            }
            Op::Sweep(i, step) if !live.is_empty() => {
                let from = i % live.len();
                let mut k = live.len();
                while k > from {
                    k -= 1;
                    if (k - from).is_multiple_of(step) {
                        let b = live.swap_remove(k);
                        // SAFETY: a live block freed once.
                        unsafe { h.free(b.ptr) };
                    }
                }
            }
            Op::Realloc(i, n) if !live.is_empty() => {
                let k = i % live.len();
                // SAFETY: a live block; on success the old pointer is dead.
                let p = unsafe { h.realloc(live[k].ptr, n) };
                assert!(!p.is_null());
                let keep = live[k].size.min(n);
                // SAFETY: the first min(old, new) bytes were carried over.
                assert!(unsafe { holds(p, keep, live[k].seed) }, "realloc lost bytes");
                seed += 1;
                // SAFETY: p holds n bytes.
                unsafe { fill(p, n, seed) };
                live[k] = Live { ptr: p, size: n, seed };
            }
            _ => {}
        }
        check(&h, &live, align);
    }
    for b in live.drain(..) {
        // SAFETY: each live block freed once.
        unsafe { h.free(b.ptr) };
    }
    h.check_invariants().unwrap();
    let s = h.stats();
    assert_eq!(s.blocks_in_use(), 0);
    assert_eq!(s.raw_blocks_current, 0);
    assert!(s.arenas_current <= 1 || config.keep_last_empty_arena());
}

fn configs() -> Vec<(Config, Placement)> {
    let mut v = Vec::new();
    for (i, p) in Preset::ALL.into_iter().enumerate() {
        for (j, policy) in
            [ArenaPolicy::MostUsedFirst, ArenaPolicy::NewestFirst].into_iter().enumerate()
        {
            // Debug mode (header, guard, checked frees) under the 3.8 layout, both policies.
            let c = Config::builder(p).policy(policy).debug(i == 1).build().unwrap();
            let placement =
                if (i + j) % 2 == 0 { Placement::Misaligned } else { Placement::PoolAligned };
            v.push((c, placement));
        }
    }
    v
}

/// Set in the child of [`proptest_cases_sets_the_number_of_cases`]: each case says so on stderr.
const COUNT_CASES: &str = "PYMALLOC_MODEL_COUNT_CASES";

/// Cases per run: 1,707, or 1 under Miri (an interpreter), unless `PROPTEST_CASES` says.
fn cases() -> u32 {
    let default = if cfg!(miri) { 1 } else { 1707 };
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(ops in proptest::collection::vec(op(), 1..MAX_OPS)) {
        if std::env::var_os(COUNT_CASES).is_some() {
            eprintln!("model case");
        }
        for (config, placement) in configs() {
            run(config, placement, ops.clone());
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "runs the test binary as a child process, which Miri cannot")]
fn proptest_cases_sets_the_number_of_cases() {
    if std::env::var_os(COUNT_CASES).is_some() {
        return; // the child runs only the property
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["random_sequences_keep_every_invariant", "--exact", "--nocapture"])
        .env("PROPTEST_CASES", "7")
        .env(COUNT_CASES, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran = String::from_utf8_lossy(&out.stderr).lines().filter(|l| *l == "model case").count();
    assert_eq!(ran, 7);
}
