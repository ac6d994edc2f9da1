//! Mode `record` (`ARENALAB_TRACE=FILE`): every call goes to the real allocator and is written
//! to FILE in the trace format of `arenalab trace` (version 1), so that `arenalab trace replay`
//! can replay a native program's allocations on the model and the other allocators.
//!
//! ```text
//!  "ARENATRC" | version 1 (u32 LE) | header length (u32 LE) | header JSON | records ... | end
//! ```
//!
//! A record is a tag byte and LEB128 varints; addresses are zig-zag differences from the
//! previous address of any record (see `experiments/src/trace/format.rs`). What a native
//! program's trace holds, and how it differs from an interpreter's:
//!
//! * Every call is in the MEM domain (tags `0x01`-`0x04`): a C program has no OBJ domain.
//!   `posix_memalign`, `aligned_alloc`, `memalign`, `valloc` and `pvalloc` are recorded as
//!   `malloc` of their size (the format has no alignment), `reallocarray` as `realloc` of the
//!   product; `free(NULL)` is not recorded.
//! * The header says `"source":"native"` (a replay then has no interpreter counters to compare
//!   its marks with), names the layout of `ARENALAB_PRESET` (the replay models that one), Python
//!   version `[0, 0, 0]`, the program (`/proc/self/exe`) and its arguments; no arena records
//!   follow (the real allocator has no arenas), so every block's recorded place is "raw".
//! * **Threads.** The format has no thread field: calls are written in the order they took the
//!   recording lock (`pymalloc::PyMalloc::with_heap`, which stills every heap for the call and
//!   also makes `fork` safe), and
//!   a replay runs them in that order on one thread. A multi-threaded program's replay is thus
//!   one interleaving of its calls, the one that happened; per-thread caches of mimalloc or
//!   jemalloc, which would have served each thread apart, are not exercised.
//! * A mark (no report text: no interpreter) every 65,536 calls and at exit, so that the replay
//!   measures each allocator along the run; the peak is the largest of those.
//! * The end record's status is 0: a library destructor cannot see the exit status. A program
//!   that ends with `_exit` or a signal runs no destructor: its trace has no end (the last
//!   records may be missing too), and the replay refuses it as cut short.
//! * Only the process that opened FILE records: the variable is removed from its environment
//!   (programs it starts run in mode `pymalloc`), and a child of `fork` stops recording.
//!
//! Records are collected in a 1 MiB static buffer and written with `write(2)` when it fills and
//! at exit: the recorder never allocates.

use core::cell::UnsafeCell;
use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

const BUF_BYTES: usize = 1 << 20;
/// The most bytes one call record takes: a tag and three 10-byte varints.
const MAX_CALL: usize = 31;

const MALLOC: u8 = 0x01;
const CALLOC: u8 = 0x02;
const REALLOC: u8 = 0x03;
const FREE: u8 = 0x04;
const MARK: u8 = 0x07;
const END: u8 = 0x08;
/// A mark every this many calls (and one at exit), so that a replay measures the allocators
/// along the run, not only at its end.
const MARK_EVERY: u64 = 1 << 16;

/// Whether this process records.
static ON: AtomicBool = AtomicBool::new(false);
/// The trace file's descriptor.
static FD: AtomicI32 = AtomicI32::new(-1);

/// The record buffer; touched only under the heap's lock (see [`with`]).
struct Buffer {
    bytes: [u8; BUF_BYTES],
    len: usize,
    last: u64,
    /// Calls recorded so far.
    calls: u64,
}

struct Shared(UnsafeCell<Buffer>);

// SAFETY: the buffer is reached only through `with`, which holds the heap's lock.
unsafe impl Sync for Shared {}

static BUF: Shared =
    Shared(UnsafeCell::new(Buffer { bytes: [0; BUF_BYTES], len: 0, last: 0, calls: 0 }));

/// Whether this process records (mode `record`).
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Runs `f` on the buffer under the heap's lock (taken around `fork` by the model's handlers,
/// so a child never inherits a buffer halfway through a record).
fn with(f: impl FnOnce(&mut Buffer)) {
    crate::heap().with_heap(|_| {
        // SAFETY: the heap's lock is held: this is the only reference to the buffer.
        f(unsafe { &mut *BUF.0.get() })
    })
}

impl Buffer {
    fn byte(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }
    fn addr(&mut self, a: u64) {
        let d = a.wrapping_sub(self.last) as i64;
        self.last = a;
        self.varint(((d << 1) ^ (d >> 63)) as u64);
    }
    /// Writes the buffer out (all of it, or as much as the file takes) and empties it.
    fn flush(&mut self) {
        write_all(&self.bytes[..self.len]);
        self.len = 0;
    }
    fn room(&mut self) {
        if self.len + MAX_CALL > BUF_BYTES {
            self.flush();
        }
    }
    /// A mark labelled `call N` or `exit`, with no report text (no interpreter ran: a replay of
    /// a native trace shows the model's counters there and measures the allocators).
    fn mark(&mut self, exit: bool) {
        let mut label = [0u8; 32];
        let mut j = Json { out: &mut label, len: 0 };
        if exit {
            j.raw(b"exit");
        } else {
            j.raw(b"call ");
            j.number(self.calls as usize);
        }
        let n = j.len;
        if self.len + n + 2 * MAX_CALL > BUF_BYTES {
            self.flush();
        }
        self.byte(MARK);
        self.varint(n as u64);
        self.bytes[self.len..self.len + n].copy_from_slice(&label[..n]);
        self.len += n;
        self.varint(0);
    }
}

fn write_all(mut bytes: &[u8]) {
    let fd = FD.load(Ordering::Relaxed);
    while !bytes.is_empty() {
        // SAFETY: write(2) reads bytes.len() bytes of a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            if n < 0 && crate::errno() == libc::EINTR {
                continue;
            }
            return; // disk full or closed: the trace will lack its end, which the reader reports
        }
        bytes = &bytes[n as usize..];
    }
}

fn addr(p: *const c_void) -> u64 {
    p.addr() as u64
}

/// Runs `call` (a real allocator call) under the recording lock and records its result with
/// `rec`: the trace's order is the order the real allocator saw, so an address freed by one
/// thread and returned to another is never recorded as allocated twice.
fn locked(call: impl FnOnce() -> *mut c_void, rec: impl FnOnce(&mut Buffer, u64)) -> *mut c_void {
    let mut result = core::ptr::null_mut();
    with(|b| {
        result = call();
        b.room();
        rec(b, addr(result));
        b.calls += 1;
        if b.calls.is_multiple_of(MARK_EVERY) {
            b.mark(false);
        }
    });
    result
}

/// `malloc(size)` by `call`, recorded.
pub(crate) fn malloc(size: usize, call: impl FnOnce() -> *mut c_void) -> *mut c_void {
    locked(call, |b, r| {
        b.byte(MALLOC);
        b.varint(size as u64);
        b.addr(r);
    })
}

/// `calloc(n, size)` by `call`, recorded.
pub(crate) fn calloc(n: usize, size: usize, call: impl FnOnce() -> *mut c_void) -> *mut c_void {
    locked(call, |b, r| {
        b.byte(CALLOC);
        b.varint(n as u64);
        b.varint(size as u64);
        b.addr(r);
    })
}

/// `realloc(p, size)` by `call`, recorded.
pub(crate) fn realloc(
    p: *const c_void,
    size: usize,
    call: impl FnOnce() -> *mut c_void,
) -> *mut c_void {
    locked(call, |b, r| {
        b.byte(REALLOC);
        b.addr(addr(p));
        b.varint(size as u64);
        b.addr(r);
    })
}

/// `free(p)` by `call`, recorded.
pub(crate) fn free(p: *const c_void, call: impl FnOnce()) {
    locked(
        || {
            call();
            core::ptr::null_mut()
        },
        |b, _| {
            b.byte(FREE);
            b.addr(addr(p));
        },
    );
}

/// A `fmt::Write`-like JSON string writer into a fixed buffer (what does not fit is dropped).
struct Json<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Json<'_> {
    fn raw(&mut self, s: &[u8]) {
        let n = s.len().min(self.out.len() - self.len);
        self.out[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }
    /// A JSON string: quotes, escapes; bytes outside ASCII become `?` (the header is UTF-8).
    fn string(&mut self, s: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.raw(b"\"");
        for &c in s {
            match c {
                b'"' => self.raw(b"\\\""),
                b'\\' => self.raw(b"\\\\"),
                0..0x20 => self.raw(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 15) as usize],
                ]),
                0x80.. => self.raw(b"?"),
                _ => self.raw(&[c]),
            }
        }
        self.raw(b"\"");
    }
    fn number(&mut self, mut v: usize) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&d[i..]);
    }
}

/// Reads a whole small file (`/proc/self/cmdline`) into `buf`; the bytes read.
fn read_file(path: &CStr, buf: &mut [u8]) -> usize {
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: read(2) into the unfilled tail of a live buffer.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    len
}

/// Starts recording to `path`: opens it, writes the header. Called once, from the
/// initialisation, with the layout's name and class count. On failure prints why and exits 2.
pub(crate) fn start(path: &CStr, layout: &str, classes: usize) {
    // SAFETY: open with a NUL-terminated path; O_CLOEXEC keeps it from programs it runs.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        crate::say(b"arenalab preload: cannot create the trace file ARENALAB_TRACE=");
        crate::say(path.to_bytes());
        crate::say(b"\n");
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(2) }
    }
    FD.store(fd, Ordering::Relaxed);
    // Programs this one starts do not write the same file.
    // SAFETY: a NUL-terminated name; unsetenv edits the environment in place.
    unsafe { libc::unsetenv(c"ARENALAB_TRACE".as_ptr()) };

    let mut exe = [0u8; 4096];
    // SAFETY: readlink writes at most exe.len() bytes into the buffer.
    let n =
        unsafe { libc::readlink(c"/proc/self/exe".as_ptr(), exe.as_mut_ptr().cast(), exe.len()) };
    let exe = &exe[..n.max(0) as usize];
    let mut cmdline = [0u8; 16384];
    let n = read_file(c"/proc/self/cmdline", &mut cmdline);
    let mut args = cmdline[..n].split(|&b| b == 0);
    let script = args.next().unwrap_or(b"");

    let mut header = [0u8; 24576];
    let mut j = Json { out: &mut header, len: 0 };
    j.raw(b"{\"source\":\"native\",\"python_version\":[0,0,0],\"layout\":");
    j.string(layout.as_bytes());
    j.raw(b",\"classes\":");
    j.number(classes);
    j.raw(b",\"executable\":");
    j.string(exe);
    j.raw(b",\"libpython\":\"\",\"script\":");
    j.string(script);
    j.raw(b",\"args\":[");
    let mut first = true;
    // The last piece after the final NUL is empty.
    for a in args.filter(|a| !a.is_empty()) {
        if !first {
            j.raw(b",");
        }
        first = false;
        j.string(a);
    }
    j.raw(b"]}");
    let len = j.len;
    let mut prefix = [0u8; 16];
    prefix[..8].copy_from_slice(b"ARENATRC");
    prefix[8..12].copy_from_slice(&1u32.to_le_bytes());
    prefix[12..].copy_from_slice(&(len as u32).to_le_bytes());
    write_all(&prefix);
    write_all(&header[..len]);
    ON.store(true, Ordering::Release);
}

/// `pthread_atfork` child handler: a child of `fork` does not write the parent's file (its copy
/// of the buffer holds records the parent will write itself).
pub(crate) extern "C" fn stop_in_child() {
    ON.store(false, Ordering::Relaxed);
}

/// The end of the run: the end record, then everything still buffered.
pub(crate) fn finish() {
    if !on() {
        return;
    }
    with(|b| {
        b.mark(true);
        b.room();
        b.byte(END);
        b.varint(0);
        b.flush();
    });
    ON.store(false, Ordering::Relaxed);
}
