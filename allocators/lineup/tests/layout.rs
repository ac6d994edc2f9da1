//! The process-wide pymalloc layout: chosen before first use, followed by every entry point,
//! fixed once pymalloc has been handed out. One test, because the choice is per process.

use core::alloc::Layout as MemLayout;
use lineup::{Allocator, DEFAULT_PYMALLOC_LAYOUT, pymalloc_layout, select_pymalloc_layout};
use pymalloc::Layout;

#[test]
fn the_chosen_layout_is_followed_and_then_fixed() {
    assert_eq!(pymalloc_layout(), DEFAULT_PYMALLOC_LAYOUT);
    assert_eq!(DEFAULT_PYMALLOC_LAYOUT, Layout::Classes32Pools16k);
    // Before first use the choice may change freely.
    select_pymalloc_layout(Layout::Classes64Pools4k).unwrap();
    select_pymalloc_layout(Layout::Classes32Pools4k).unwrap();
    assert_eq!(pymalloc_layout(), Layout::Classes32Pools4k);

    let want = Layout::Classes32Pools4k.config();
    let layout = MemLayout::from_size_align(32, 8).unwrap();
    // SAFETY: the layout has a non-zero size; the block is freed once below with it.
    let p = unsafe { Allocator::Pymalloc.global().alloc(layout) };
    assert!(!p.is_null());
    let stats = Allocator::Pymalloc.stats();
    assert_eq!(stats.counters["pool_size"], want.pool_size() as u64);
    assert_eq!(stats.counters["arena_size"], want.arena_size() as u64);
    assert_eq!(stats.counters["arenas_current"], 1);
    assert_eq!(Allocator::pymalloc().config(), want);
    // One 32-byte block in use, in class 32 / 16 - 1 = 1 of the 16-byte granularity.
    assert_eq!(Allocator::pymalloc().stats().classes[1].blocks_in_use, 1);
    assert!(Allocator::Pymalloc.release().call().is_none());

    // Now fixed: the same layout is accepted, another is refused and nothing changes.
    assert_eq!(select_pymalloc_layout(Layout::Classes32Pools4k), Ok(()));
    let err = select_pymalloc_layout(Layout::Classes32Pools16k).unwrap_err();
    assert_eq!(err.in_use, Layout::Classes32Pools4k);
    assert_eq!(err.requested, Layout::Classes32Pools16k);
    assert!(err.to_string().contains("32c-4k-256k"), "{err}");
    assert_eq!(pymalloc_layout(), Layout::Classes32Pools4k);
    assert_eq!(Allocator::pymalloc().config(), want);
    // SAFETY: `p` came from this allocator with this layout and is freed once.
    unsafe { Allocator::Pymalloc.global().dealloc(p, layout) };
}
