//! Debug mode does not trust what an underrun can overwrite: the size and distance words in
//! front of a block are checked against the pool geometry (pool blocks) or the heap's own
//! record of raw blocks before they are used, and a corrupted header is reported as an error,
//! never freed, never followed into a wild read.

use pymalloc::{Config, Heap, HeapError, Preset};

fn debug_heap() -> Heap {
    Heap::new(Config::builder(Preset::Cpython310).debug(true).build().unwrap())
}

fn is_corrupted(r: &Result<(), HeapError>, p: *mut u8) -> bool {
    *r == Err(HeapError::HeaderCorrupted { address: p as usize })
}

/// Overwrites the 8-byte word that ends `back` bytes before `p` with `value`.
///
/// # Safety
/// `p - back .. p - back + 8` lies in the header of a live debug block.
unsafe fn poke(p: *mut u8, back: usize, value: u64) {
    // SAFETY: caller contract.
    unsafe { p.sub(back).cast::<u64>().write_unaligned(value) };
}

/// Reads the 8-byte word `back` bytes before `p`.
///
/// # Safety
/// As for [`poke`].
unsafe fn peek(p: *mut u8, back: usize) -> u64 {
    // SAFETY: caller contract.
    unsafe { p.sub(back).cast::<u64>().read_unaligned() }
}

#[test]
fn zeroing_the_tag_word_before_a_64_byte_block_is_a_corrupted_header() {
    let mut h = debug_heap();
    let before = h.alloc(64);
    let p = h.alloc(64);
    // SAFETY: the 8 bytes before p are its header's tag word (the underrun under test).
    unsafe { poke(p, 8, 0) };
    // SAFETY: p is a live block (with a broken header, which debug mode must catch).
    let r = unsafe { h.try_free(p) };
    assert!(is_corrupted(&r, p), "{r:?}");
    h.check_invariants().unwrap();
    let next = h.alloc(64);
    assert!(next as usize >= p as usize + 64 || next as usize + 64 <= p as usize - 16);
    // SAFETY: `before` and `next` are live and freed once.
    unsafe {
        h.try_free(before).unwrap();
        h.try_free(next).unwrap();
    }
    h.check_invariants().unwrap();
}

#[test]
fn zeroing_the_distance_before_a_64_byte_block_is_not_freed() {
    // The low half of the tag is the distance from the block's start: zeroed, the free would
    // hand the caller's pointer (16 bytes into the block) to the free list.
    let mut h = debug_heap();
    let p = h.alloc(64);
    // SAFETY: the tag word of a live block.
    unsafe { poke(p, 8, peek(p, 8) & !0xFFFF_FFFF) };
    // SAFETY: p is live, its header broken on purpose.
    let r = unsafe { h.try_free(p) };
    assert!(is_corrupted(&r, p), "{r:?}");
    h.check_invariants().unwrap();
    let live: Vec<*mut u8> = (0..300).map(|_| h.alloc(64)).collect();
    for &q in &live {
        assert!(q as usize >= p as usize + 64 || q as usize + 64 <= p as usize - 16, "overlap");
    }
    h.check_invariants().unwrap();
}

#[test]
fn zeroing_the_distance_before_a_4000_byte_block_is_reported_not_a_crash() {
    let mut h = debug_heap();
    let p = h.alloc(4000);
    // SAFETY: the tag word of a live raw block.
    let tag = unsafe { peek(p, 8) };
    // SAFETY: as above.
    unsafe { poke(p, 8, tag & !0xFFFF_FFFF) };
    // SAFETY: p is live, its header broken on purpose.
    let r = unsafe { h.try_free(p) };
    assert!(is_corrupted(&r, p), "{r:?}");
    assert_eq!(h.stats().raw_blocks_current, 1);
    // Mended, the block frees cleanly (and nothing leaks).
    // SAFETY: as above; p is then live and freed once.
    unsafe {
        poke(p, 8, tag);
        h.try_free(p).unwrap();
    }
    assert_eq!(h.stats().raw_blocks_current, 0);
}

#[test]
fn one_changed_byte_of_the_size_word_is_reported_not_a_wild_read() {
    for overhead in [24, 32] {
        let c = Config::builder(Preset::Cpython310).debug(true).debug_overhead(overhead);
        a_changed_size_word_is_reported(Heap::new(c.build().unwrap()));
    }
}

fn a_changed_size_word_is_reported(mut h: Heap) {
    for size in [64usize, 4000] {
        let p = h.alloc(size);
        // SAFETY: the size word of a live block; its top byte set makes it about 2^56.
        unsafe { poke(p, 16, peek(p, 16) | 1 << 56) };
        // SAFETY: p is live, its header broken on purpose.
        let r = unsafe { h.try_free(p) };
        assert!(is_corrupted(&r, p), "{size}: {r:?}");
        // A smaller lie about the size is caught too: half the size is a smaller class than
        // the block's (pool), or not the recorded size (raw).
        // SAFETY: as above.
        unsafe { poke(p, 16, size as u64 / 2) };
        // SAFETY: as above.
        let r = unsafe { h.try_free(p) };
        assert!(is_corrupted(&r, p), "{size}: {r:?}");
        // Mended, the block frees cleanly.
        // SAFETY: as above.
        unsafe { poke(p, 16, size as u64) };
        // SAFETY: p is live and freed once.
        unsafe { h.try_free(p) }.unwrap();
    }
    h.check_invariants().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "Miri cannot map PROT_NONE memory")]
fn a_pointer_into_a_prot_none_mapping_is_not_allocated() {
    let mut h = debug_heap();
    let keep = h.alloc(32);
    // SAFETY: an anonymous mapping nobody can read.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(m, libc::MAP_FAILED);
    let p = m.cast::<u8>().wrapping_add(4096 + 64);
    // SAFETY: the pointer is bogus on purpose; debug mode must not read it.
    let r = unsafe { h.try_free(p) };
    assert_eq!(r, Err(HeapError::NotAllocated { address: p as usize }));
    // SAFETY: unmapping the mapping made above; keep is live and freed once.
    unsafe {
        libc::munmap(m, 8192);
        h.try_free(keep).unwrap();
    }
}

#[test]
fn a_pointer_into_readable_foreign_memory_that_looks_like_a_header_is_not_allocated() {
    // A forged header (live tag, plausible size and guard) outside the heap must not be
    // believed: ownership comes from the heap's own records, not from the bytes.
    let mut h = debug_heap();
    let real = h.alloc(4000);
    let mut fake = vec![0u8; 256];
    // SAFETY: copying a real header (and its distance) in front of a fake block.
    let p = unsafe {
        let p = fake.as_mut_ptr().add(64);
        core::ptr::copy_nonoverlapping(real.sub(16), p.sub(16), 16);
        p.cast::<u64>().sub(2).write_unaligned(8);
        p.add(8).write_bytes(pymalloc::FORBIDDEN_BYTE, 8);
        p
    };
    // SAFETY: the fake pointer is bogus on purpose; only its header may be read.
    let r = unsafe { h.try_free(p) };
    assert_eq!(r, Err(HeapError::NotAllocated { address: p as usize }));
    // SAFETY: real is live and freed once.
    unsafe { h.try_free(real) }.unwrap();
}
