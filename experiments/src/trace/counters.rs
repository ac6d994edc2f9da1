//! The counters compared at each mark: read from CPython's `_PyObject_DebugMallocStats` text, or
//! taken from the model's [`pymalloc::Stats`].
//!
//! ```
//! use arenalab::trace::counters::Counters;
//! let text = [
//!     "Small block threshold = 512, in 32 size classes.",
//!     "",
//!     "class   size   num pools   blocks in use  avail blocks",
//!     "-----   ----   ---------   -------------  ------------",
//!     "    1     32           1             300           210",
//!     "",
//!     "# arenas allocated total           =                    2",
//!     "# arenas reclaimed                 =                    1",
//!     "# arenas highwater mark            =                    2",
//!     "# arenas allocated current         =                    1",
//!     "63 unused pools * 16384 bytes      =            1,032,192",
//!     "# bytes lost to arena alignment    =                    0",
//! ]
//! .join("\n");
//! let c = Counters::parse(&text).unwrap();
//! assert_eq!((c.arenas_total, c.arenas_current, c.unused_pools), (2, 1, 63));
//! assert_eq!(c.classes[0].blocks_in_use, 300);
//! ```

use serde::{Deserialize, Serialize};

/// One row of the size-class table (classes with at least one used or full pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRow {
    /// Class index.
    pub class: usize,
    /// Block size.
    pub size: usize,
    /// Used and full pools.
    pub pools: u64,
    /// Blocks in use.
    pub blocks_in_use: u64,
    /// Free blocks in those pools.
    pub avail_blocks: u64,
}

/// The counters of one report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Size classes the report names.
    pub num_classes: usize,
    /// The classes with pools, by index.
    pub classes: Vec<ClassRow>,
    /// `# arenas allocated total`.
    pub arenas_total: u64,
    /// `# arenas reclaimed`.
    pub arenas_reclaimed: u64,
    /// `# arenas highwater mark`.
    pub arenas_highwater: u64,
    /// `# arenas allocated current`.
    pub arenas_current: u64,
    /// `N unused pools * S bytes`: empty and never-carved pools.
    pub unused_pools: u64,
    /// `# bytes in allocated blocks`.
    pub bytes_in_allocated_blocks: u64,
    /// `# bytes in available blocks`.
    pub bytes_in_available_blocks: u64,
    /// `# bytes lost to pool headers`.
    pub bytes_lost_to_pool_headers: u64,
    /// `# bytes lost to quantization`.
    pub bytes_lost_to_quantization: u64,
    /// `# bytes lost to arena alignment`.
    pub bytes_lost_to_arena_alignment: u64,
}

fn number(s: &str) -> Option<u64> {
    s.trim().replace(',', "").parse().ok()
}

impl Counters {
    /// Parses CPython's report. `None` when it has no pymalloc section at all (the interpreter
    /// was not using pymalloc).
    pub fn parse(text: &str) -> Option<Counters> {
        let mut c =
            Counters { num_classes: super::python::class_count(text)?, ..Counters::default() };
        let mut in_table = false;
        for line in text.lines() {
            if line.starts_with("-----") {
                in_table = true;
                continue;
            }
            if in_table {
                let f: Vec<u64> = line.split_whitespace().filter_map(number).collect();
                if f.len() == 5 && line.split_whitespace().count() == 5 {
                    c.classes.push(ClassRow {
                        class: f[0] as usize,
                        size: f[1] as usize,
                        pools: f[2],
                        blocks_in_use: f[3],
                        avail_blocks: f[4],
                    });
                    continue;
                }
                in_table = false;
            }
            let Some((name, value)) = line.split_once('=') else { continue };
            let Some(v) = number(value) else { continue };
            let name = name.trim();
            match name {
                "# arenas allocated total" => c.arenas_total = v,
                "# arenas reclaimed" => c.arenas_reclaimed = v,
                "# arenas highwater mark" => c.arenas_highwater = v,
                "# arenas allocated current" => c.arenas_current = v,
                "# bytes in allocated blocks" => c.bytes_in_allocated_blocks = v,
                "# bytes in available blocks" => c.bytes_in_available_blocks = v,
                "# bytes lost to pool headers" => c.bytes_lost_to_pool_headers = v,
                "# bytes lost to quantization" => c.bytes_lost_to_quantization = v,
                "# bytes lost to arena alignment" => c.bytes_lost_to_arena_alignment = v,
                _ if name.contains("unused pools *") => {
                    c.unused_pools = name.split_whitespace().next().and_then(number).unwrap_or(0)
                }
                _ => {}
            }
        }
        Some(c)
    }

    /// The same counters from the model.
    pub fn from_model(s: &pymalloc::Stats) -> Counters {
        let classes = s
            .classes
            .iter()
            .enumerate()
            .take(s.num_classes)
            .filter(|(_, c)| c.pools > 0)
            .map(|(i, c)| ClassRow {
                class: i,
                size: c.block_size,
                pools: c.pools as u64,
                blocks_in_use: c.blocks_in_use as u64,
                avail_blocks: c.blocks_available as u64,
            })
            .collect();
        Counters {
            num_classes: s.num_classes,
            classes,
            arenas_total: s.arenas_allocated_total,
            arenas_reclaimed: s.arenas_reclaimed,
            arenas_highwater: s.arenas_highwater as u64,
            arenas_current: s.arenas_current as u64,
            unused_pools: (s.pools_empty + s.pools_never_carved) as u64,
            bytes_in_allocated_blocks: s.bytes_in_allocated_blocks as u64,
            bytes_in_available_blocks: s.bytes_in_available_blocks as u64,
            bytes_lost_to_pool_headers: s.bytes_lost_to_pool_headers as u64,
            bytes_lost_to_quantization: s.bytes_lost_to_quantization as u64,
            bytes_lost_to_arena_alignment: s.bytes_lost_to_arena_alignment as u64,
        }
    }

    /// Every counter that differs, as `(name, real, model)` with `self` the real side.
    pub fn differences(&self, model: &Counters) -> Vec<(String, u64, u64)> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: u64, b: u64| {
            if a != b {
                d.push((name.to_string(), a, b));
            }
        };
        cmp("size classes", self.num_classes as u64, model.num_classes as u64);
        cmp("arenas allocated total", self.arenas_total, model.arenas_total);
        cmp("arenas reclaimed", self.arenas_reclaimed, model.arenas_reclaimed);
        cmp("arenas highwater mark", self.arenas_highwater, model.arenas_highwater);
        cmp("arenas allocated current", self.arenas_current, model.arenas_current);
        cmp("unused pools", self.unused_pools, model.unused_pools);
        cmp(
            "bytes in allocated blocks",
            self.bytes_in_allocated_blocks,
            model.bytes_in_allocated_blocks,
        );
        cmp(
            "bytes in available blocks",
            self.bytes_in_available_blocks,
            model.bytes_in_available_blocks,
        );
        cmp(
            "bytes lost to pool headers",
            self.bytes_lost_to_pool_headers,
            model.bytes_lost_to_pool_headers,
        );
        cmp(
            "bytes lost to quantization",
            self.bytes_lost_to_quantization,
            model.bytes_lost_to_quantization,
        );
        cmp(
            "bytes lost to arena alignment",
            self.bytes_lost_to_arena_alignment,
            model.bytes_lost_to_arena_alignment,
        );
        let n = self.num_classes.max(model.num_classes);
        let row = |rows: &[ClassRow], i: usize| {
            rows.iter()
                .find(|r| r.class == i)
                .map_or((0, 0, 0), |r| (r.pools, r.blocks_in_use, r.avail_blocks))
        };
        for i in 0..n {
            let (a, b) = (row(&self.classes, i), row(&model.classes, i));
            cmp(&format!("class {i} pools"), a.0, b.0);
            cmp(&format!("class {i} blocks in use"), a.1, b.1);
            cmp(&format!("class {i} avail blocks"), a.2, b.2);
        }
        d
    }
}
