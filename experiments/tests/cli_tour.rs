//! `arenalab tour`: the model's tour with the layout of `--preset` or `--python`, as text or
//! JSON; bad input is exit code 2.

use arenalab::tour::{MEDIUM_OBJECTS, SMALL_OBJECTS, TourResults};
use pymalloc::Layout;
use std::process::{Command, Output};

fn tour(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arenalab")).arg("tour").args(args).output().unwrap()
}

/// Pools of the tour's first step under `layout`: its 32-byte and 144-byte objects.
fn pools_after_alloc(layout: Layout) -> (usize, usize) {
    let c = layout.config();
    let pools = |n: usize, size: usize| n.div_ceil(c.blocks_per_pool(c.size_class(size).unwrap()));
    (pools(SMALL_OBJECTS, 32), pools(MEDIUM_OBJECTS, 144))
}

#[test]
fn a_preset_tours_the_model_with_4_kib_pools() {
    let out = tour(&["--preset", "32c-4k-256k"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Layout 32c-4k-256k") && text.contains("4 KiB pools"), "{text}");
    assert!(text.contains("256 KiB arenas"), "{text}");
    // (4096 - 48) / 32 = 126 blocks per pool, (4096 - 48) / 144 = 28.
    let (small, medium) = pools_after_alloc(Layout::Classes32Pools4k);
    assert_eq!((small, medium), (953, 715));
    let line = format!("pools per class: 32 B: {small}, 144 B: {medium}");
    assert!(text.contains(&line), "{line:?} missing from:\n{text}");
}

#[test]
fn json_gives_each_layouts_arena_count() {
    for layout in [Layout::Classes64Pools4k, Layout::Classes32Pools16k] {
        let out = tour(&["--preset", layout.name(), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: TourResults = serde_json::from_slice(&out.stdout).unwrap();
        let c = layout.config();
        let (small, medium) = pools_after_alloc(layout);
        let first = &r.steps[0];
        assert_eq!(
            first.class_pools,
            vec![(c.block_size(c.size_class(32).unwrap()), small), (144, medium)]
        );
        // Arenas of pools_per_arena() pools, one fewer in an arena that is not pool-aligned.
        let (aligned, misaligned) = (c.pools_per_arena(), c.pools_per_arena() - 1);
        let arenas = first.arenas_current;
        assert!(
            ((small + medium).div_ceil(aligned)..=(small + medium).div_ceil(misaligned))
                .contains(&arenas),
            "{}: {arenas} arenas for {} pools",
            layout.name(),
            small + medium
        );
        let last = r.steps.last().unwrap();
        let kept = usize::from(c.keep_last_empty_arena());
        assert_eq!(last.arenas_current, kept, "{}", layout.name());
    }
}

#[test]
fn an_unknown_preset_is_exit_2_naming_the_layouts() {
    let out = tour(&["--preset", "3.9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"3.9\""), "{err}");
    for l in Layout::ALL {
        assert!(err.contains(l.name()), "{err}");
    }
}

#[test]
fn a_python_that_is_not_python_is_exit_2() {
    let out = tour(&["--python", "/bin/true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/bin/true") && err.contains("not a CPython 3"), "{err}");
}
