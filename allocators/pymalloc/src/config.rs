//! Layout presets and their validation.
//!
//! A [`Config`] fixes the geometry of the allocator: the block granularity (`ALIGNMENT`), the
//! small-request threshold, the pool and arena sizes, whether the last empty arena is kept, which
//! arena the allocator takes pools from, whether debug mode is on and how many bytes it adds to
//! each block (24 from CPython 3.8 on, 32 before). Every config is validated when it is built
//! ([`ConfigBuilder::build`]), so a [`Heap`](crate::Heap) never meets an impossible geometry
//! later.

use thiserror::Error;

/// The size of the pool header, rounded up to the block granularity by [`Config::pool_overhead`].
///
/// CPython's `struct pool_header` is 48 bytes on 64-bit builds (count, free list, two links,
/// arena index, size class, `nextoffset`, `maxnextoffset`).
pub const POOL_HEADER_BYTES: usize = 48;

/// The largest arena size accepted (1 GiB): offsets inside an arena fit the ownership map's
/// 32-bit entries with room to spare.
pub const MAX_ARENA_SIZE: usize = 1 << 30;

/// The most size classes any valid config can have (8-byte granularity, 512-byte threshold).
pub const MAX_CLASSES: usize = 64;

/// Which CPython release's layout to model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// CPython 3.10 and later: 16-byte classes up to 512 B (32 classes), 16 KiB pools, 1 MiB
    /// arenas, the last empty arena kept (bpo-37448, bpo-37257).
    Cpython310,
    /// CPython 3.8: 16-byte classes, 4 KiB pools, 256 KiB arenas, an empty arena released at once.
    Cpython38,
    /// CPython 3.7 era: 8-byte classes up to 512 B (64 classes), 4 KiB pools, 256 KiB arenas,
    /// an empty arena released at once.
    Cpython37,
}

impl Preset {
    /// Every preset, newest first.
    pub const ALL: [Preset; 3] = [Preset::Cpython310, Preset::Cpython38, Preset::Cpython37];

    /// A short name: `3.10`, `3.8` or `3.7`.
    pub const fn name(self) -> &'static str {
        match self {
            Preset::Cpython310 => "3.10",
            Preset::Cpython38 => "3.8",
            Preset::Cpython37 => "3.7",
        }
    }
}

/// A CPython allocator layout, named by its geometry rather than by a version number.
///
/// The version number is a poor guide: the 16-byte granularity of 3.8 was back-ported to 3.7.4,
/// and distributors (pyenv among them) patch 3.6 too, so an interpreter is best matched by what
/// it reports (`sys._debugmallocstats()` names its class count) together with its version
/// (which fixes the pool and arena sizes and the keep-one rule). [`Layout::detect`] does that.
///
/// | layout | granularity, classes | pool | arena | last empty arena | debug overhead | CPython |
/// |---|---|---|---|---|---|---|
/// | [`Classes64Pools4k`](Layout::Classes64Pools4k) | 8 B, 64 | 4 KiB | 256 KiB | released | 32 B | upstream 3.6, 3.7.0–3.7.3 |
/// | [`Classes32Pools4k`](Layout::Classes32Pools4k) | 16 B, 32 | 4 KiB | 256 KiB | released | 24 B (32 B on 3.6, 3.7) | 3.7.4+, patched 3.6, 3.8 |
/// | [`Classes32Pools4kKeepOne`](Layout::Classes32Pools4kKeepOne) | 16 B, 32 | 4 KiB | 256 KiB | kept | 24 B | 3.9 |
/// | [`Classes32Pools16k`](Layout::Classes32Pools16k) | 16 B, 32 | 16 KiB | 1 MiB | kept | 24 B | 3.10 and later |
///
/// The debug overhead (the bytes `PYTHONMALLOC=pymalloc_debug` adds to each block) follows the
/// version, not the layout: [`Layout::config`] gives the 3.8 value for `Classes32Pools4k`, and
/// an interpreter of 3.6 or 3.7 with that layout takes
/// [`Layout::debug_overhead`] through [`ConfigBuilder::debug_overhead`].
///
/// ```
/// use pymalloc::Layout;
/// assert_eq!(Layout::detect((3, 9), 32), Some(Layout::Classes32Pools4kKeepOne));
/// assert_eq!(Layout::detect((3, 7), 32), Some(Layout::Classes32Pools4k));
/// assert_eq!(Layout::detect((3, 7), 64), Some(Layout::Classes64Pools4k));
/// assert_eq!(Layout::detect((3, 12), 64), None); // no such interpreter
/// let c = Layout::Classes32Pools4kKeepOne.config();
/// assert_eq!((c.pool_size(), c.arena_size(), c.keep_last_empty_arena()), (4096, 262144, true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// 8-byte granularity, 64 classes, 4 KiB pools, 256 KiB arenas, an empty arena released.
    Classes64Pools4k,
    /// 16-byte granularity, 32 classes, 4 KiB pools, 256 KiB arenas, an empty arena released.
    Classes32Pools4k,
    /// As [`Classes32Pools4k`](Layout::Classes32Pools4k) but the last empty arena is kept.
    Classes32Pools4kKeepOne,
    /// 16-byte granularity, 32 classes, 16 KiB pools, 1 MiB arenas, the last empty arena kept.
    Classes32Pools16k,
}

impl Layout {
    /// Every layout, newest first.
    pub const ALL: [Layout; 4] = [
        Layout::Classes32Pools16k,
        Layout::Classes32Pools4kKeepOne,
        Layout::Classes32Pools4k,
        Layout::Classes64Pools4k,
    ];

    /// A short stable name, as written in trace headers and taken by `--preset`:
    /// `64c-4k-256k`, `32c-4k-256k`, `32c-4k-256k-keep`, `32c-16k-1m-keep`.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Classes64Pools4k => "64c-4k-256k",
            Layout::Classes32Pools4k => "32c-4k-256k",
            Layout::Classes32Pools4kKeepOne => "32c-4k-256k-keep",
            Layout::Classes32Pools16k => "32c-16k-1m-keep",
        }
    }

    /// The layout with this [`name`](Layout::name), if any.
    pub fn from_name(name: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The CPython releases that use this layout, for people.
    pub const fn releases(self) -> &'static str {
        match self {
            Layout::Classes64Pools4k => "3.6 and 3.7.0-3.7.3 upstream",
            Layout::Classes32Pools4k => "3.7.4+ (and patched 3.6), 3.8",
            Layout::Classes32Pools4kKeepOne => "3.9",
            Layout::Classes32Pools16k => "3.10 and later",
        }
    }

    /// The layout of an interpreter of version `(major, minor)` that reports `classes` size
    /// classes in the header of `sys._debugmallocstats()`; `None` for combinations no CPython
    /// has (such as 64 classes after 3.7, or anything before 3.6).
    pub const fn detect(version: (u32, u32), classes: usize) -> Option<Layout> {
        let (major, minor) = version;
        if major != 3 || minor < 6 {
            return None;
        }
        match (minor, classes) {
            (6 | 7, 64) => Some(Layout::Classes64Pools4k),
            (6..=8, 32) => Some(Layout::Classes32Pools4k),
            (9, 32) => Some(Layout::Classes32Pools4kKeepOne),
            (10.., 32) => Some(Layout::Classes32Pools16k),
            _ => None,
        }
    }

    /// The config modelling this layout.
    pub const fn config(self) -> Config {
        match self {
            Layout::Classes64Pools4k => Config::CPYTHON_3_7,
            Layout::Classes32Pools4k => Config::CPYTHON_3_8,
            Layout::Classes32Pools4kKeepOne => Config::CPYTHON_3_9,
            Layout::Classes32Pools16k => Config::CPYTHON_3_10,
        }
    }

    /// Extra bytes CPython's debug hooks (`PYTHONMALLOC=pymalloc_debug`) add to each block on
    /// interpreter `(major, minor)`: 3 words (24 B) from 3.8 on, 4 words (32 B, with a serial
    /// number) before. Give it to [`ConfigBuilder::debug_overhead`] to model that interpreter
    /// in debug mode.
    ///
    /// ```
    /// use pymalloc::{Config, Layout, Preset};
    /// let v = (3, 7); // a 3.7.16 that reports 32 classes: Classes32Pools4k
    /// let c = Config::builder(Preset::Cpython38).debug_overhead(Layout::debug_overhead(v));
    /// assert_eq!(c.build().unwrap().debug_overhead(), 32);
    /// ```
    pub const fn debug_overhead(version: (u32, u32)) -> usize {
        if version.0 > 3 || (version.0 == 3 && version.1 >= 8) { 24 } else { 32 }
    }
}

/// Which usable arena a new pool is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArenaPolicy {
    /// CPython's rule: `usable_arenas` is sorted by ascending free-pool count and pools come from
    /// its head, the most-used arena, so nearly empty arenas can drain and be released.
    MostUsedFirst,
    /// The ablation: pools come from the arena created most recently. Arenas are not kept sorted,
    /// so old, nearly empty arenas keep receiving nothing but also keep their few survivors.
    NewestFirst,
}

impl ArenaPolicy {
    /// A short name: `most-used-first` or `newest-first`.
    pub const fn name(self) -> &'static str {
        match self {
            ArenaPolicy::MostUsedFirst => "most-used-first",
            ArenaPolicy::NewestFirst => "newest-first",
        }
    }
}

/// Why a config was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The block granularity must be 8 or 16 bytes, the values CPython used.
    #[error("alignment {0} must be 8 or 16 bytes")]
    Alignment(usize),
    /// The small-request threshold must be a positive multiple of the alignment, with at most
    /// [`MAX_CLASSES`] classes.
    #[error(
        "small request threshold {threshold} must be a positive multiple of the alignment {alignment} giving at most {MAX_CLASSES} size classes"
    )]
    Threshold {
        /// The threshold asked for.
        threshold: usize,
        /// The alignment in force.
        alignment: usize,
    },
    /// The pool size must be a power of two, at least one OS page.
    #[error("pool size {0} must be a power of two of at least 4096 bytes")]
    PoolSize(usize),
    /// The arena size must be a power of two holding at least two pools, at most 1 GiB.
    #[error(
        "arena size {arena} must be a power of two of at most 1 GiB holding at least 2 pools of {pool} bytes"
    )]
    ArenaSize {
        /// The arena size asked for.
        arena: usize,
        /// The pool size in force.
        pool: usize,
    },
    /// An arena may not have more than 255 pools (pool slots are counted in a byte-sized index).
    #[error("an arena of {arena} bytes would hold {pools} pools; at most 255 are supported")]
    TooManyPools {
        /// The arena size in force.
        arena: usize,
        /// Pools per arena it would give.
        pools: usize,
    },
    /// Debug mode adds 24 bytes per block (CPython 3.8+) or 32 (3.7 and earlier), nothing else.
    #[error("debug overhead {0} must be 24 (CPython 3.8+) or 32 (3.7 and earlier) bytes")]
    DebugOverhead(usize),
}

/// A validated allocator geometry. Build one with [`Config::builder`] or take a preset.
///
/// ```
/// use pymalloc::{Config, Preset};
/// let c = Config::preset(Preset::Cpython310);
/// assert_eq!((c.pool_size(), c.arena_size(), c.num_classes()), (16384, 1 << 20, 32));
/// assert_eq!(c.blocks_per_pool(c.size_class(32).unwrap()), 510);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) alignment_shift: u32,
    pub(crate) threshold: usize,
    pub(crate) pool_shift: u32,
    pub(crate) arena_shift: u32,
    pub(crate) keep_last_empty_arena: bool,
    pub(crate) policy: ArenaPolicy,
    pub(crate) aligned_arenas: bool,
    pub(crate) debug: bool,
    pub(crate) debug_overhead: usize,
}

impl Config {
    /// CPython 3.10+ (the default); debug mode adds 24 bytes per block.
    pub const CPYTHON_3_10: Config = Config {
        alignment_shift: 4,
        threshold: 512,
        pool_shift: 14,
        arena_shift: 20,
        keep_last_empty_arena: true,
        policy: ArenaPolicy::MostUsedFirst,
        aligned_arenas: false,
        debug: false,
        debug_overhead: 24,
    };
    /// CPython 3.8; debug mode adds 24 bytes per block.
    pub const CPYTHON_3_8: Config = Config {
        alignment_shift: 4,
        threshold: 512,
        pool_shift: 12,
        arena_shift: 18,
        keep_last_empty_arena: false,
        policy: ArenaPolicy::MostUsedFirst,
        aligned_arenas: false,
        debug: false,
        debug_overhead: 24,
    };
    /// CPython 3.9: the 3.8 geometry (4 KiB pools, 256 KiB arenas) with the keep-last-empty-arena
    /// rule of bpo-37257; debug mode adds 24 bytes per block.
    pub const CPYTHON_3_9: Config = Config {
        alignment_shift: 4,
        threshold: 512,
        pool_shift: 12,
        arena_shift: 18,
        keep_last_empty_arena: true,
        policy: ArenaPolicy::MostUsedFirst,
        aligned_arenas: false,
        debug: false,
        debug_overhead: 24,
    };
    /// CPython 3.7 era (8-byte classes); debug mode adds 32 bytes per block.
    pub const CPYTHON_3_7: Config = Config {
        alignment_shift: 3,
        threshold: 512,
        pool_shift: 12,
        arena_shift: 18,
        keep_last_empty_arena: false,
        policy: ArenaPolicy::MostUsedFirst,
        aligned_arenas: false,
        debug: false,
        debug_overhead: 32,
    };

    /// The layout of a CPython release, validated by construction.
    pub const fn preset(p: Preset) -> Config {
        match p {
            Preset::Cpython310 => Config::CPYTHON_3_10,
            Preset::Cpython38 => Config::CPYTHON_3_8,
            Preset::Cpython37 => Config::CPYTHON_3_7,
        }
    }

    /// A builder starting from a preset; change what you need and [`build`](ConfigBuilder::build).
    pub const fn builder(p: Preset) -> ConfigBuilder {
        let c = Config::preset(p);
        ConfigBuilder {
            alignment: 1 << c.alignment_shift,
            threshold: c.threshold,
            pool_size: 1 << c.pool_shift,
            arena_size: 1 << c.arena_shift,
            keep_last_empty_arena: c.keep_last_empty_arena,
            policy: c.policy,
            aligned_arenas: c.aligned_arenas,
            debug: c.debug,
            debug_overhead: c.debug_overhead,
        }
    }

    /// Block granularity in bytes (CPython's `ALIGNMENT`).
    pub const fn alignment(&self) -> usize {
        1 << self.alignment_shift
    }
    /// Requests above this many bytes go to the raw allocator (`SMALL_REQUEST_THRESHOLD`).
    pub const fn small_request_threshold(&self) -> usize {
        self.threshold
    }
    /// Number of size classes: threshold / alignment.
    pub const fn num_classes(&self) -> usize {
        self.threshold >> self.alignment_shift
    }
    /// Pool size in bytes.
    pub const fn pool_size(&self) -> usize {
        1 << self.pool_shift
    }
    /// Arena size in bytes.
    pub const fn arena_size(&self) -> usize {
        1 << self.arena_shift
    }
    /// Pools in an arena whose start is pool-aligned. One fewer fits in a misaligned arena.
    pub const fn pools_per_arena(&self) -> usize {
        1 << (self.arena_shift - self.pool_shift)
    }
    /// The pool header rounded up to the block granularity (CPython's `POOL_OVERHEAD`).
    pub const fn pool_overhead(&self) -> usize {
        let a = self.alignment();
        POOL_HEADER_BYTES.div_ceil(a) * a
    }
    /// Whether an emptied arena that is the last of `usable_arenas` is kept (3.9+).
    pub const fn keep_last_empty_arena(&self) -> bool {
        self.keep_last_empty_arena
    }
    /// The arena selection policy.
    pub const fn policy(&self) -> ArenaPolicy {
        self.policy
    }
    /// Whether arenas are requested pool-aligned from the OS, so no pool is lost to alignment.
    pub const fn aligned_arenas(&self) -> bool {
        self.aligned_arenas
    }
    /// Whether debug mode (poisoning, guard bytes, checked frees) is on.
    pub const fn debug(&self) -> bool {
        self.debug
    }
    /// Bytes debug mode adds to each block: 24 (3 words, CPython 3.8 and later) or 32
    /// (4 words, 3.7 and earlier). A request of `n` bytes in debug mode takes the class of
    /// `n + debug_overhead()`. Set whether debug mode is on or not; used only when it is.
    ///
    /// ```
    /// use pymalloc::{Config, Preset};
    /// assert_eq!(Config::CPYTHON_3_10.debug_overhead(), 24);
    /// assert_eq!(Config::CPYTHON_3_7.debug_overhead(), 32);
    /// // A 3.7.4+ interpreter: the 16-byte classes of 3.8 with 3.7's four debug words.
    /// let c = Config::builder(Preset::Cpython38).debug(true).debug_overhead(32).build().unwrap();
    /// assert_eq!(c.block_size(c.size_class(24 + c.debug_overhead()).unwrap()), 64);
    /// ```
    pub const fn debug_overhead(&self) -> usize {
        self.debug_overhead
    }
    /// The size class serving a request of `size` bytes, or `None` when the request goes to the
    /// raw allocator (0 bytes or above the threshold).
    pub const fn size_class(&self, size: usize) -> Option<SizeClass> {
        if size == 0 || size > self.threshold {
            None
        } else {
            Some(SizeClass(((size - 1) >> self.alignment_shift) as u8))
        }
    }
    /// Block size of a class: (index + 1) × alignment.
    pub const fn block_size(&self, class: SizeClass) -> usize {
        (class.0 as usize + 1) << self.alignment_shift
    }
    /// Blocks that fit in one pool of this class after the header.
    pub const fn blocks_per_pool(&self, class: SizeClass) -> usize {
        (self.pool_size() - self.pool_overhead()) / self.block_size(class)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::CPYTHON_3_10
    }
}

/// A size class index: class `i` holds blocks of `(i + 1) × alignment` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SizeClass(pub u8);

impl SizeClass {
    /// The index as a `usize`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Builds a [`Config`]; [`build`](ConfigBuilder::build) validates the combination.
///
/// ```
/// use pymalloc::{Config, ConfigError, Preset};
/// let err = Config::builder(Preset::Cpython310).pool_size(3000).build().unwrap_err();
/// assert_eq!(err, ConfigError::PoolSize(3000));
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct ConfigBuilder {
    alignment: usize,
    threshold: usize,
    pool_size: usize,
    arena_size: usize,
    keep_last_empty_arena: bool,
    policy: ArenaPolicy,
    aligned_arenas: bool,
    debug: bool,
    debug_overhead: usize,
}

impl ConfigBuilder {
    /// Block granularity.
    pub const fn alignment(mut self, bytes: usize) -> Self {
        self.alignment = bytes;
        self
    }
    /// Small-request threshold.
    pub const fn small_request_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }
    /// Pool size.
    pub const fn pool_size(mut self, bytes: usize) -> Self {
        self.pool_size = bytes;
        self
    }
    /// Arena size.
    pub const fn arena_size(mut self, bytes: usize) -> Self {
        self.arena_size = bytes;
        self
    }
    /// Keep the last empty arena (3.9+ anti-thrashing rule).
    pub const fn keep_last_empty_arena(mut self, keep: bool) -> Self {
        self.keep_last_empty_arena = keep;
        self
    }
    /// Arena selection policy.
    pub const fn policy(mut self, policy: ArenaPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Ask the OS for pool-aligned arenas (no pool lost to alignment).
    pub const fn aligned_arenas(mut self, aligned: bool) -> Self {
        self.aligned_arenas = aligned;
        self
    }
    /// Debug mode, like `PYTHONMALLOC=debug`.
    pub const fn debug(mut self, on: bool) -> Self {
        self.debug = on;
        self
    }
    /// Bytes debug mode adds to each block: 24 (CPython 3.8+) or 32 (3.7 and earlier); any
    /// other value is rejected by [`build`](ConfigBuilder::build).
    /// [`Layout::debug_overhead`] gives the value for an interpreter's version.
    pub const fn debug_overhead(mut self, bytes: usize) -> Self {
        self.debug_overhead = bytes;
        self
    }

    /// Checks the combination and returns the config, or says what is wrong with it.
    ///
    /// `const`, so a custom layout can back a `#[global_allocator]` static:
    ///
    /// ```
    /// use pymalloc::{Config, Preset, PyMalloc};
    /// const DEBUG: Config = match Config::builder(Preset::Cpython310).debug(true).build() {
    ///     Ok(c) => c,
    ///     Err(_) => panic!("invalid layout"),
    /// };
    /// static GLOBAL: PyMalloc = PyMalloc::with_config(DEBUG);
    /// assert!(GLOBAL.config().debug());
    /// ```
    pub const fn build(self) -> Result<Config, ConfigError> {
        let a = self.alignment;
        // CPython only ever used 8 (before 3.8) and 16; both are within what libc malloc
        // guarantees, so raw-allocator blocks are aligned like pool blocks.
        if a != 8 && a != 16 {
            return Err(ConfigError::Alignment(a));
        }
        let t = self.threshold;
        if t == 0 || !t.is_multiple_of(a) || t / a > MAX_CLASSES {
            return Err(ConfigError::Threshold { threshold: t, alignment: a });
        }
        let p = self.pool_size;
        if !p.is_power_of_two() || p < 4096 {
            return Err(ConfigError::PoolSize(p));
        }
        let ar = self.arena_size;
        if !ar.is_power_of_two() || ar < 2 * p || ar > MAX_ARENA_SIZE {
            return Err(ConfigError::ArenaSize { arena: ar, pool: p });
        }
        if ar / p > 255 {
            return Err(ConfigError::TooManyPools { arena: ar, pools: ar / p });
        }
        if self.debug_overhead != 24 && self.debug_overhead != 32 {
            return Err(ConfigError::DebugOverhead(self.debug_overhead));
        }
        // Two blocks of the largest class always fit in a pool (a pool hands out its first block
        // and carves the second as its free list): the largest class is at most 64 x 16 =
        // 1024 bytes and the smallest pool 4096, so 48 + 2 x 1024 < 4096 needs no check.
        Ok(Config {
            alignment_shift: a.trailing_zeros(),
            threshold: t,
            pool_shift: p.trailing_zeros(),
            arena_shift: ar.trailing_zeros(),
            keep_last_empty_arena: self.keep_last_empty_arena,
            policy: self.policy,
            aligned_arenas: self.aligned_arenas,
            debug: self.debug,
            debug_overhead: self.debug_overhead,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_reference_parameters() {
        let c = Config::CPYTHON_3_10;
        assert_eq!(c.num_classes(), 32);
        assert_eq!(c.pools_per_arena(), 64);
        assert_eq!(c.pool_overhead(), 48);
        let c = Config::CPYTHON_3_8;
        assert_eq!((c.pool_size(), c.arena_size(), c.num_classes()), (4096, 262144, 32));
        let c = Config::CPYTHON_3_7;
        assert_eq!((c.alignment(), c.num_classes()), (8, 64));
        for p in Preset::ALL {
            let built = Config::builder(p).build().unwrap();
            assert_eq!(built, Config::preset(p));
        }
    }

    #[test]
    fn size_class_table_matches_the_reference() {
        // (block size, blocks per 16 KiB pool, blocks per 4 KiB pool) from size-classes.md.
        let table = [(16, 1021, 253), (32, 510, 126), (64, 255, 63), (144, 113, 28), (512, 31, 7)];
        for (size, per16, per4) in table {
            let c = Config::CPYTHON_3_10.size_class(size).unwrap();
            assert_eq!(Config::CPYTHON_3_10.block_size(c), size);
            assert_eq!(Config::CPYTHON_3_10.blocks_per_pool(c), per16);
            assert_eq!(Config::CPYTHON_3_8.blocks_per_pool(c), per4);
        }
        assert_eq!(Config::CPYTHON_3_10.size_class(0), None);
        assert_eq!(Config::CPYTHON_3_10.size_class(513), None);
        assert_eq!(Config::CPYTHON_3_10.size_class(17), Some(SizeClass(1)));
        assert_eq!(Config::CPYTHON_3_7.size_class(17), Some(SizeClass(2)));
    }

    #[test]
    fn alignment_not_a_power_of_two_is_rejected() {
        let e = Config::builder(Preset::Cpython310).alignment(24).build();
        assert_eq!(e, Err(ConfigError::Alignment(24)));
        let e = Config::builder(Preset::Cpython310).alignment(4).build();
        assert_eq!(e, Err(ConfigError::Alignment(4)));
        let e = Config::builder(Preset::Cpython310).alignment(32).build();
        assert_eq!(e, Err(ConfigError::Alignment(32)));
    }

    #[test]
    fn threshold_not_a_multiple_of_alignment_is_rejected() {
        let e = Config::builder(Preset::Cpython310).small_request_threshold(500).build();
        assert!(matches!(e, Err(ConfigError::Threshold { threshold: 500, .. })));
        let e = Config::builder(Preset::Cpython37).small_request_threshold(1024).build();
        assert!(matches!(e, Err(ConfigError::Threshold { threshold: 1024, .. })));
        let e = Config::builder(Preset::Cpython310).small_request_threshold(0).build();
        assert!(matches!(e, Err(ConfigError::Threshold { threshold: 0, .. })));
    }

    #[test]
    fn pool_size_below_a_page_is_rejected() {
        let e = Config::builder(Preset::Cpython310).pool_size(2048).build();
        assert_eq!(e, Err(ConfigError::PoolSize(2048)));
    }

    #[test]
    fn arena_smaller_than_two_pools_is_rejected() {
        let e = Config::builder(Preset::Cpython310).arena_size(16384).build();
        assert_eq!(e, Err(ConfigError::ArenaSize { arena: 16384, pool: 16384 }));
        let e = Config::builder(Preset::Cpython310).arena_size(3 << 20).build();
        assert!(matches!(e, Err(ConfigError::ArenaSize { .. })));
        let e = Config::builder(Preset::Cpython310).pool_size(1 << 24).arena_size(1 << 31).build();
        assert!(matches!(e, Err(ConfigError::ArenaSize { .. })));
    }

    #[test]
    fn arena_with_too_many_pools_is_rejected() {
        let e = Config::builder(Preset::Cpython38).arena_size(4 << 20).build();
        assert_eq!(e, Err(ConfigError::TooManyPools { arena: 4 << 20, pools: 1024 }));
    }

    #[test]
    fn the_largest_class_always_fits_two_blocks_in_the_smallest_pool() {
        let c = Config::builder(Preset::Cpython38).small_request_threshold(1024).build().unwrap();
        let largest = c.size_class(1024).unwrap();
        assert_eq!(c.blocks_per_pool(largest), 3);
    }
}
