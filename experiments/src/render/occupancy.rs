//! pymalloc's occupancy: which pools of which arenas hold live blocks.
//!
//! A single live block keeps its pool in use, and a single used pool keeps its whole 1 MiB
//! arena mapped. The map shows that directly: one row per arena, one cell per pool slot,
//! coloured by state and shaded by how full a used pool is.
//!
//! In results files a snapshot is stored compactly ([`Occupancy`]): one character per pool.
//!
//! | char | pool state |
//! | --- | --- |
//! | `.` | never carved (beyond the arena's high-water mark: never touched) |
//! | `e` | empty: carved, no block in use, still resident |
//! | `1`..`9` | used; the digit is the fill in ninths, rounded up (`1` = under 1/9 full) |
//! | `f` | full: every block in use |

use pymalloc::{PoolState, Snapshot};
use serde::{Deserialize, Serialize};

/// A compact occupancy snapshot (see the module docs for the encoding).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    /// Pool slots an aligned arena holds (64 with the 3.10 layout).
    pub pools_per_arena: usize,
    /// Live arenas, lowest address first: one string per arena, one char per pool slot.
    pub arenas: Vec<String>,
}

/// The character of one pool.
pub fn pool_char(state: PoolState, in_use: usize, per_pool: usize) -> char {
    match state {
        PoolState::NeverCarved => '.',
        PoolState::Empty => 'e',
        PoolState::Full => 'f',
        PoolState::Used => {
            let ninths = (in_use * 9).div_ceil(per_pool.max(1)).clamp(1, 9);
            char::from(b'0' + ninths as u8)
        }
    }
}

impl Occupancy {
    /// The compact form of a `pymalloc::Snapshot`.
    pub fn from_snapshot(s: &Snapshot) -> Occupancy {
        Occupancy {
            pools_per_arena: s.pools_per_arena,
            arenas: s
                .arenas
                .iter()
                .map(|a| {
                    a.pools
                        .iter()
                        .map(|p| pool_char(p.state, p.blocks_in_use, p.blocks_per_pool))
                        .collect()
                })
                .collect(),
        }
    }

    /// Pools with this character, over all arenas.
    pub fn count(&self, pred: impl Fn(char) -> bool) -> usize {
        self.arenas.iter().flat_map(|a| a.chars()).filter(|&c| pred(c)).count()
    }

    /// Pools in use (used or full).
    pub fn pools_in_use(&self) -> usize {
        self.count(|c| c == 'f' || c.is_ascii_digit())
    }

    /// Whether a snapshot read back from a file can be drawn: at most [`MAX_POOLS_PER_ARENA`]
    /// pool slots and [`MAX_ARENAS`] arenas, each arena no longer than its slots, and only the
    /// characters of the encoding.
    pub fn check(&self) -> Result<(), String> {
        if self.pools_per_arena == 0 || self.pools_per_arena > MAX_POOLS_PER_ARENA {
            return Err(format!(
                "an occupancy map has {} pools per arena (1 to {MAX_POOLS_PER_ARENA} can be drawn)",
                self.pools_per_arena
            ));
        }
        if self.arenas.len() > MAX_ARENAS {
            return Err(format!(
                "an occupancy map has {} arenas (at most {MAX_ARENAS} can be drawn)",
                self.arenas.len()
            ));
        }
        for a in &self.arenas {
            if a.chars().count() > self.pools_per_arena {
                return Err(format!(
                    "an occupancy map's arena has {} pools, more than its {} slots",
                    a.chars().count(),
                    self.pools_per_arena
                ));
            }
            if let Some(c) = a.chars().find(|&c| !matches!(c, '.' | 'e' | 'f' | '1'..='9')) {
                return Err(format!("an occupancy map holds {c:?}, not a pool state"));
            }
        }
        Ok(())
    }
}

/// The most pool slots per arena a map is drawn with (a 1 MiB arena of 256 B pools).
pub const MAX_POOLS_PER_ARENA: usize = 4096;
/// The most arenas a map is drawn with (16 GiB of 1 MiB arenas).
pub const MAX_ARENAS: usize = 16384;

/// Fill colour of a pool character.
fn color(c: char) -> String {
    match c {
        '.' => "#f2f2f2".into(),
        'e' => "#cfe3f5".into(),
        'f' => "#8b1a1a".into(),
        d if d.is_ascii_digit() => {
            // Light orange (1/9) to deep red-orange (9/9).
            let t = (d as u8 - b'0') as f64 / 9.0;
            let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
            format!("#{:02x}{:02x}{:02x}", lerp(255.0, 217.0), lerp(214.0, 72.0), lerp(153.0, 1.0))
        }
        _ => "#ffffff".into(),
    }
}

const CELL: usize = 7;
const GAP: usize = 1;
const PANEL_GAP: usize = 24;
const TOP: usize = 40;
const LEGEND: usize = 40;

/// Panels per row of a map.
const PER_ROW: usize = 3;

/// Draws occupancy maps, one panel per `(caption, snapshot)`, three panels to a row, as one SVG
/// document. In a panel, rows are arenas ordered by address, the **highest on top** (the kernel
/// places each new mapping below the previous one, so the first arena allocated is usually the
/// top row and the map reads in allocation order), and columns are pool slots in address order.
pub fn svg(title: &str, panels: &[(String, &Occupancy)]) -> String {
    let cols = panels.iter().map(|(_, o)| o.pools_per_arena.max(1)).max().unwrap_or(64);
    let rows = panels.iter().map(|(_, o)| o.arenas.len()).max().unwrap_or(0).max(1);
    let panel_w = cols * (CELL + GAP);
    let panel_h = 18 + rows * (CELL + GAP) + PANEL_GAP;
    let across = panels.len().clamp(1, PER_ROW);
    let down = panels.len().div_ceil(PER_ROW).max(1);
    let width = across * (panel_w + PANEL_GAP) + PANEL_GAP;
    let height = TOP + down * panel_h + LEGEND;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n",
        PANEL_GAP,
        super::escape(title)
    );
    for (k, (caption, occ)) in panels.iter().enumerate() {
        let x0 = PANEL_GAP + (k % PER_ROW) * (panel_w + PANEL_GAP);
        let y0 = TOP + (k / PER_ROW) * panel_h;
        let in_use = occ.pools_in_use();
        s.push_str(&format!(
            "<text x=\"{x0}\" y=\"{}\" font-size=\"11\">{} ({}, {} in use)</text>\n",
            y0 + 8,
            super::escape(caption),
            super::plural(occ.arenas.len() as u64, "arena"),
            super::plural(in_use as u64, "pool")
        ));
        for (r, arena) in occ.arenas.iter().rev().enumerate() {
            let y = y0 + 18 + r * (CELL + GAP);
            for (c, ch) in arena.chars().enumerate() {
                let x = x0 + c * (CELL + GAP);
                s.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{CELL}\" height=\"{CELL}\" fill=\"{}\"/>",
                    color(ch)
                ));
            }
            s.push('\n');
        }
    }
    let ly = height - LEGEND + 14;
    let legend = [
        ('.', "never carved"),
        ('e', "empty (resident)"),
        ('2', "used, sparse"),
        ('8', "used, dense"),
        ('f', "full"),
    ];
    let mut x = PANEL_GAP;
    for (ch, label) in legend {
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\" stroke=\"#999\" stroke-width=\"0.5\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{label}</text>\n",
            ly,
            color(ch),
            x + 14,
            ly + 9
        ));
        x += 14 + 7 * label.len() + 16;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_characters_encode_state_and_fill() {
        assert_eq!(pool_char(PoolState::NeverCarved, 0, 0), '.');
        assert_eq!(pool_char(PoolState::Empty, 0, 510), 'e');
        assert_eq!(pool_char(PoolState::Full, 510, 510), 'f');
        assert_eq!(pool_char(PoolState::Used, 1, 510), '1');
        assert_eq!(pool_char(PoolState::Used, 255, 510), '5');
        assert_eq!(pool_char(PoolState::Used, 509, 510), '9');
    }

    #[test]
    fn the_highest_address_is_the_top_row() {
        // Lowest address first in the results: the full arena is the highest.
        let o = Occupancy { pools_per_arena: 2, arenas: vec!["ee".into(), "ff".into()] };
        let map = svg("t", &[("after".into(), &o)]);
        let first_cell = map.find("<rect x=\"24\" y=").unwrap();
        assert!(map[first_cell..].starts_with(&format!("<rect x=\"24\" y=\"{}\"", TOP + 18)));
        assert!(map[first_cell..].contains(&format!("fill=\"{}\"", color('f'))));
        let row = |c: char| map.find(&format!("fill=\"{}\"", color(c))).unwrap();
        assert!(row('f') < row('e'), "the full (highest) arena is drawn first, on top");
        assert!(map.contains("(2 arenas, 2 pools in use)"));
        let one = Occupancy { pools_per_arena: 2, arenas: vec!["f.".into()] };
        assert!(svg("t", &[("x".into(), &one)]).contains("(1 arena, 1 pool in use)"));
    }

    #[test]
    fn the_map_has_one_cell_per_pool() {
        let o = Occupancy { pools_per_arena: 4, arenas: vec!["ff5e".into(), "1...".into()] };
        assert_eq!(o.pools_in_use(), 4);
        let svg = svg("t", &[("after".into(), &o)]);
        // 8 cells + 5 legend swatches + background.
        assert_eq!(svg.matches("<rect").count(), 8 + 5 + 1);
    }
}
