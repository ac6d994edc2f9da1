//! pymalloc as the process's `#[global_allocator]`: std collections from four threads.

use pymalloc::PyMalloc;
use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static GLOBAL: PyMalloc = PyMalloc::new();

#[test]
fn std_collections_from_four_threads() {
    let before = GLOBAL.stats();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut hash = HashMap::new();
                let mut tree = BTreeMap::new();
                let mut strings = Vec::new();
                for i in 0..20_000u64 {
                    let k = t * 1_000_000 + i;
                    hash.insert(k, format!("value {k}"));
                    tree.insert(k, vec![k; (i % 7) as usize]);
                    strings.push(k.to_string().repeat((i % 5) as usize + 1));
                    if i % 3 == 0 {
                        hash.remove(&(k - i / 2));
                        tree.remove(&(k - i / 3));
                    }
                }
                for (k, v) in &hash {
                    assert_eq!(v, &format!("value {k}"));
                }
                for (k, v) in &tree {
                    assert!(v.iter().all(|x| x == k));
                }
                strings.iter().map(|s| s.len()).sum::<usize>()
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    GLOBAL.check_invariants().unwrap();
    let after = GLOBAL.stats();
    assert!(after.arenas_allocated_total > before.arenas_allocated_total);
    assert_eq!(after.accounted_bytes(), after.arenas_current * after.arena_size);
    // Snapshot and the report allocate while pymalloc is the global allocator.
    let snap = GLOBAL.snapshot();
    assert_eq!(snap.arenas.len(), GLOBAL.stats().arenas_current);
    assert!(after.to_string().contains("# arenas allocated total"));
}
