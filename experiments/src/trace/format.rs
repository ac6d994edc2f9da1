//! The trace file format, version 1: a header, then one compact record per call.
//!
//! ```text
//!  offset  size  what
//!  0       8     magic "ARENATRC"
//!  8       4     format version, little-endian u32 (this module writes and reads 1)
//!  12      4     header length N, little-endian u32
//!  16      N     header: UTF-8 JSON (Header): source, interpreter version, layout, script, arguments
//!  16+N    ...   records until the end of the file, the last one an `End`
//! ```
//!
//! A record is a tag byte followed by unsigned LEB128 varints:
//!
//! | tag | record | fields |
//! |---|---|---|
//! | `0x01` / `0x11` | malloc (MEM / OBJ domain) | size, result |
//! | `0x02` / `0x12` | calloc | nelem, elsize, result |
//! | `0x03` / `0x13` | realloc | pointer, size, result |
//! | `0x04` / `0x14` | free | pointer |
//! | `0x05` | arena map (`PyObjectArenaAllocator.alloc`) | size, result |
//! | `0x06` | arena unmap | pointer, size |
//! | `0x07` | mark | label length, label bytes, stats length, stats text (`_PyObject_DebugMallocStats`) |
//! | `0x08` | end | exit status (zig-zag) |
//!
//! Addresses (pointer and result fields) are written as the zig-zag encoded difference from the
//! previous address field of any record, so a run of neighbouring blocks costs one or two bytes
//! per address; a null result is the address 0. Sizes are plain varints. A call costs 3–6 bytes.
//!
//! ```
//! use arenalab::trace::format::{Domain, Encoder, Event, Reader};
//! let mut buf = [0u8; 64];
//! let mut e = Encoder::new(&mut buf);
//! e.malloc(Domain::Obj, 24, 0x7f00_0000_1030);
//! e.free(Domain::Obj, 0x7f00_0000_1030);
//! let n = e.len();
//! let mut r = Reader::new(&buf[..n]);
//! assert_eq!(r.next().unwrap(), Some(Event::Malloc { domain: Domain::Obj, size: 24, result: 0x7f00_0000_1030 }));
//! assert_eq!(r.next().unwrap(), Some(Event::Free { domain: Domain::Obj, ptr: 0x7f00_0000_1030 }));
//! assert_eq!(r.next().unwrap(), None);
//! ```

use serde::{Deserialize, Serialize};

/// The first 8 bytes of every trace.
pub const MAGIC: &[u8; 8] = b"ARENATRC";
/// The format version this module writes and reads.
pub const VERSION: u32 = 1;

/// Record tags (the domain bit [`OBJ_BIT`] is or-ed into the four call tags).
pub mod tag {
    /// `malloc(size) -> result`.
    pub const MALLOC: u8 = 0x01;
    /// `calloc(nelem, elsize) -> result`.
    pub const CALLOC: u8 = 0x02;
    /// `realloc(ptr, size) -> result`.
    pub const REALLOC: u8 = 0x03;
    /// `free(ptr)`.
    pub const FREE: u8 = 0x04;
    /// An arena mapped.
    pub const ARENA_ALLOC: u8 = 0x05;
    /// An arena unmapped.
    pub const ARENA_FREE: u8 = 0x06;
    /// A mark with the interpreter's counters.
    pub const MARK: u8 = 0x07;
    /// The end of the run, with the exit status.
    pub const END: u8 = 0x08;
}

/// Or-ed into a call's tag when the call is in the OBJ domain.
pub const OBJ_BIT: u8 = 0x10;

/// What recorded a trace, and so what its marks hold.
///
/// Traces written before this field existed have none and are CPython traces:
///
/// ```
/// use arenalab::trace::format::{Header, Source};
/// let old = r#"{"python_version":[3,11,7],"layout":"32c-16k-1m-keep","classes":32,
///     "executable":"python3","libpython":"","script":"s.py","args":[]}"#;
/// let h: Header = serde_json::from_str(old).unwrap();
/// assert_eq!(h.source, Source::Cpython);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `arenalab trace record`: a CPython's MEM, OBJ and arena allocators; each mark holds the
    /// interpreter's own report, which the model replay compares with its counters.
    #[default]
    Cpython,
    /// The preload library's mode `record` (`libarenalab_preload.so`): a native program's whole
    /// malloc API in the MEM domain, no arenas, and marks with no report (no interpreter ran):
    /// a replay has nothing to compare them with and only shows the model's counters.
    Native,
}

impl Source {
    /// `cpython` or `native`, as in the header.
    pub const fn name(self) -> &'static str {
        match self {
            Source::Cpython => "cpython",
            Source::Native => "native",
        }
    }
}

/// The trace header: what was recorded, and by which interpreter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// What recorded the trace (absent in older traces: CPython).
    #[serde(default)]
    pub source: Source,
    /// `sys.version_info[:3]`, e.g. `[3, 11, 7]` (`[0, 0, 0]` in a native trace).
    pub python_version: [u32; 3],
    /// The detected layout's name ([`pymalloc::Layout::name`]).
    pub layout: String,
    /// Size classes the interpreter reported (`sys._debugmallocstats()` header).
    pub classes: usize,
    /// The interpreter (`sys.executable`).
    pub executable: String,
    /// The shared libpython that was embedded.
    pub libpython: String,
    /// The script recorded.
    pub script: String,
    /// Its arguments.
    pub args: Vec<String>,
}

/// The allocator domain of a call (PEP 445's `PYMEM_DOMAIN_MEM` and `PYMEM_DOMAIN_OBJ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// `PyMem_Malloc` and friends.
    Mem,
    /// `PyObject_Malloc` and friends.
    Obj,
}

impl Domain {
    fn bit(self) -> u8 {
        match self {
            Domain::Mem => 0,
            Domain::Obj => OBJ_BIT,
        }
    }
}

/// One decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// `malloc(size) -> result` (0 when it failed).
    Malloc {
        /// Domain.
        domain: Domain,
        /// Bytes asked for.
        size: u64,
        /// Address returned.
        result: u64,
    },
    /// `calloc(nelem, elsize) -> result`.
    Calloc {
        /// Domain.
        domain: Domain,
        /// Number of elements.
        nelem: u64,
        /// Size of each.
        elsize: u64,
        /// Address returned.
        result: u64,
    },
    /// `realloc(ptr, size) -> result`.
    Realloc {
        /// Domain.
        domain: Domain,
        /// The block resized (0 for none).
        ptr: u64,
        /// The new size.
        size: u64,
        /// Address returned.
        result: u64,
    },
    /// `free(ptr)`.
    Free {
        /// Domain.
        domain: Domain,
        /// The block freed.
        ptr: u64,
    },
    /// An arena mapped (`result` 0 when the mapping failed).
    ArenaAlloc {
        /// Bytes.
        size: u64,
        /// Address.
        result: u64,
    },
    /// An arena unmapped.
    ArenaFree {
        /// Address.
        ptr: u64,
        /// Bytes.
        size: u64,
    },
    /// `arenalab_trace.mark(label)`, with the interpreter's own report at that moment.
    Mark {
        /// The label, as given.
        label: &'a [u8],
        /// `_PyObject_DebugMallocStats` output.
        stats: &'a [u8],
    },
    /// The interpreter's main returned with this status.
    End {
        /// Exit status.
        status: i32,
    },
}

/// Why a trace cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with [`MAGIC`].
    #[error("not an arenalab trace (no ARENATRC magic at the start)")]
    NotATrace,
    /// A format version this build does not read.
    #[error("trace format version {0}; this arenalab reads version {VERSION}")]
    Version(u32),
    /// The header is not valid JSON of the expected shape.
    #[error("the trace header is damaged: {0}")]
    Header(String),
    /// The file ends inside a record or header.
    #[error("the trace is truncated at byte {0} (inside a record)")]
    Truncated(usize),
    /// An unknown record tag.
    #[error("unknown record tag 0x{tag:02x} at byte {at}: the trace is damaged")]
    BadTag {
        /// The tag.
        tag: u8,
        /// Its offset.
        at: usize,
    },
}

/// Writes the file prefix (magic, version, header) into a vector.
pub fn write_header(header: &Header) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a header always serialises");
    let mut out = Vec::with_capacity(16 + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// Reads the file prefix; returns the header and the offset where the records start.
pub fn read_header(data: &[u8]) -> Result<(Header, usize), FormatError> {
    if data.len() < 8 || &data[..8] != MAGIC {
        return Err(FormatError::NotATrace);
    }
    if data.len() < 16 {
        return Err(FormatError::Truncated(data.len()));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let n = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes")) as usize;
    let end = 16usize.checked_add(n).ok_or(FormatError::Truncated(data.len()))?;
    if data.len() < end {
        return Err(FormatError::Truncated(data.len()));
    }
    let header: Header =
        serde_json::from_slice(&data[16..end]).map_err(|e| FormatError::Header(e.to_string()))?;
    Ok((header, end))
}

/// Encodes records into a caller's fixed buffer, never allocating (the recorder's hooks use it
/// inside the interpreter's allocator). The caller makes room first: a call record needs at most
/// [`Encoder::MAX_CALL`] bytes.
pub struct Encoder<'a> {
    buf: &'a mut [u8],
    len: usize,
    last: u64,
}

impl<'a> Encoder<'a> {
    /// The most bytes one call or arena record takes (tag + three 10-byte varints).
    pub const MAX_CALL: usize = 31;

    /// An encoder writing from the start of `buf`, with no previous address.
    pub fn new(buf: &'a mut [u8]) -> Encoder<'a> {
        Encoder { buf, len: 0, last: 0 }
    }

    /// An encoder continuing at `len` in `buf` after address `last`.
    pub fn resume(buf: &'a mut [u8], len: usize, last: u64) -> Encoder<'a> {
        Encoder { buf, len, last }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last address written (to [`resume`](Self::resume) later).
    pub fn last_address(&self) -> u64 {
        self.last
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline(always)]
    fn addr(&mut self, a: u64) {
        let d = a.wrapping_sub(self.last) as i64;
        self.last = a;
        self.varint(((d << 1) ^ (d >> 63)) as u64);
    }

    /// A malloc record.
    #[inline]
    pub fn malloc(&mut self, d: Domain, size: u64, result: u64) {
        self.byte(tag::MALLOC | d.bit());
        self.varint(size);
        self.addr(result);
    }
    /// A calloc record.
    #[inline]
    pub fn calloc(&mut self, d: Domain, nelem: u64, elsize: u64, result: u64) {
        self.byte(tag::CALLOC | d.bit());
        self.varint(nelem);
        self.varint(elsize);
        self.addr(result);
    }
    /// A realloc record.
    #[inline]
    pub fn realloc(&mut self, d: Domain, ptr: u64, size: u64, result: u64) {
        self.byte(tag::REALLOC | d.bit());
        self.addr(ptr);
        self.varint(size);
        self.addr(result);
    }
    /// A free record.
    #[inline]
    pub fn free(&mut self, d: Domain, ptr: u64) {
        self.byte(tag::FREE | d.bit());
        self.addr(ptr);
    }
    /// An arena-map record.
    pub fn arena_alloc(&mut self, size: u64, result: u64) {
        self.byte(tag::ARENA_ALLOC);
        self.varint(size);
        self.addr(result);
    }
    /// An arena-unmap record.
    pub fn arena_free(&mut self, ptr: u64, size: u64) {
        self.byte(tag::ARENA_FREE);
        self.addr(ptr);
        self.varint(size);
    }
    /// The start of a mark record: tag, label length, label, stats length. The caller writes
    /// the `stats_len` bytes of the stats text right after.
    pub fn mark_start(&mut self, label: &[u8], stats_len: usize) {
        self.byte(tag::MARK);
        self.varint(label.len() as u64);
        self.buf[self.len..self.len + label.len()].copy_from_slice(label);
        self.len += label.len();
        self.varint(stats_len as u64);
    }
    /// A whole mark record.
    pub fn mark(&mut self, label: &[u8], stats: &[u8]) {
        self.mark_start(label, stats.len());
        self.buf[self.len..self.len + stats.len()].copy_from_slice(stats);
        self.len += stats.len();
    }
    /// The end record.
    pub fn end(&mut self, status: i32) {
        self.byte(tag::END);
        let s = status as i64;
        self.varint(((s << 1) ^ (s >> 63)) as u64);
    }
}

/// Decodes records from a byte slice (the part after the header).
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    last: u64,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`, which starts at the first record.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0, last: 0, base: 0 }
    }

    /// A reader over a whole file's records, `base` being their offset in the file (for
    /// error messages).
    pub fn with_base(data: &'a [u8], base: usize) -> Reader<'a> {
        Reader { data, pos: 0, last: 0, base }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, FormatError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(FormatError::Truncated(self.base + self.pos));
            };
            self.pos += 1;
            if shift < 64 {
                v |= ((b & 0x7f) as u64) << shift;
            }
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    #[inline(always)]
    fn addr(&mut self) -> Result<u64, FormatError> {
        let z = self.varint()?;
        let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
        self.last = self.last.wrapping_add(d as u64);
        Ok(self.last)
    }

    fn bytes(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(FormatError::Truncated(self.base + self.data.len()));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next record, `None` at the end of the data.
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> Result<Option<Event<'a>>, FormatError> {
        let Some(&t) = self.data.get(self.pos) else { return Ok(None) };
        let at = self.base + self.pos;
        self.pos += 1;
        let domain = if t & OBJ_BIT != 0 { Domain::Obj } else { Domain::Mem };
        let ev = match t {
            0x01 | 0x11 => Event::Malloc { domain, size: self.varint()?, result: self.addr()? },
            0x02 | 0x12 => Event::Calloc {
                domain,
                nelem: self.varint()?,
                elsize: self.varint()?,
                result: self.addr()?,
            },
            0x03 | 0x13 => Event::Realloc {
                domain,
                ptr: self.addr()?,
                size: self.varint()?,
                result: self.addr()?,
            },
            0x04 | 0x14 => Event::Free { domain, ptr: self.addr()? },
            tag::ARENA_ALLOC => Event::ArenaAlloc { size: self.varint()?, result: self.addr()? },
            tag::ARENA_FREE => Event::ArenaFree { ptr: self.addr()?, size: self.varint()? },
            tag::MARK => Event::Mark { label: self.bytes()?, stats: self.bytes()? },
            tag::END => {
                let z = self.varint()?;
                Event::End { status: (((z >> 1) as i64) ^ -((z & 1) as i64)) as i32 }
            }
            _ => return Err(FormatError::BadTag { tag: t, at }),
        };
        Ok(Some(ev))
    }
}
