//! Recording: a real CPython, embedded in a child `arenalab` process, with its allocators wrapped.
//!
//! The parent ([`record`]) asks the interpreter about itself ([`Python::probe`]), then starts
//! `arenalab trace record-child` so that what is recorded is that interpreter alone. The child
//! ([`record_child`]):
//!
//! 1. loads the interpreter's shared libpython at run time (`libloading`; nothing is linked at
//!    build time, so arenalab builds and runs where no Python is installed);
//! 2. pre-initialises the runtime (`PyPreConfig_InitPythonConfig`, `Py_PreInitialize`), which
//!    installs pymalloc;
//! 3. reads the MEM and OBJ allocators (`PyMem_GetAllocator`) and the arena allocator
//!    (`PyObject_GetArenaAllocator`) and installs wrappers around them (PEP 445): each wrapper
//!    calls the original, then appends one record to a static buffer that is written to the
//!    trace file with `write(2)` when full, so the recorder itself never allocates;
//! 4. runs the interpreter's own main (`Py_BytesMain`), which keeps the pre-initialised runtime;
//!    its `argv[0]` is the interpreter's own path, from which it finds its standard library (and
//!    a virtual environment's `pyvenv.cfg`) as it would when started directly;
//! 5. writes an end record with the exit status.
//!
//! **Marks.** The child puts the address of [`mark`] in `ARENALAB_TRACE_MARK`; the Python helper
//! module `arenalab_trace` (written to a temporary folder put on `PYTHONPATH`) calls it through
//! `ctypes.PYFUNCTYPE` (the GIL stays held). `mark` puts the original allocators back (CPython's
//! `_PyObject_DebugMallocStats` prints nothing unless the OBJ allocator *is* pymalloc), prints
//! the report into a memfd, re-installs the wrappers and writes label and report as one record.

use super::format::{self, Domain, Encoder, Header, Source};
use super::python::{Python, Recordable};
use crate::error::{Error, Result};
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The Python helper module, written next to the trace run and put on `PYTHONPATH`.
pub const HELPER: &str = include_str!("../../python/arenalab_trace.py");

/// The environment variable holding the address of [`mark`].
pub const MARK_ENV: &str = "ARENALAB_TRACE_MARK";

/// What a recording produced.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The trace file.
    pub path: PathBuf,
    /// The interpreter's exit status.
    pub status: i32,
    /// Seconds from start to end of the child.
    pub seconds: f64,
    /// Size of the trace file.
    pub bytes: u64,
}

/// Records `script args` under `python` into `out`. The child's stdin, stdout and stderr are
/// this process's. An interpreter that cannot be embedded is [`Error::Usage`]; a script that
/// exits with a non-zero status still leaves its trace, and `Recorded::status` says how it ended.
pub fn record(python: &Path, out: &Path, script: &Path, args: &[String]) -> Result<Recorded> {
    let py = Python::probe(python)?;
    let (layout, lib) = py.recordable()?;
    if !script.is_file() {
        return Err(Error::Usage(format!("no such script: {}", script.display())));
    }
    let header = Header {
        source: Source::Cpython,
        python_version: py.version,
        layout: layout.name().to_string(),
        classes: py.classes,
        executable: py.executable.display().to_string(),
        libpython: lib.display().to_string(),
        script: script.display().to_string(),
        args: args.to_vec(),
    };
    let helper_dir = std::env::temp_dir().join(format!("arenalab-trace-{}", std::process::id()));
    std::fs::create_dir_all(&helper_dir).map_err(Error::failed(helper_dir.display()))?;
    let helper = helper_dir.join("arenalab_trace.py");
    std::fs::write(&helper, HELPER).map_err(Error::failed(helper.display()))?;
    let mut pythonpath = std::ffi::OsString::from(&helper_dir);
    if let Some(old) = std::env::var_os("PYTHONPATH") {
        pythonpath.push(":");
        pythonpath.push(old);
    }
    let exe = std::env::current_exe().map_err(Error::failed("finding arenalab's binary"))?;
    let started = std::time::Instant::now();
    let status = std::process::Command::new(exe)
        .args(["trace", "record-child", "--lib"])
        .arg(&lib)
        .arg("--out")
        .arg(out)
        .arg("--header")
        .arg(serde_json::to_string(&header).expect("header serialises"))
        .arg("--")
        .arg(&py.executable)
        .arg(script)
        .args(args)
        .env("PYTHONPATH", pythonpath)
        .env_remove("PYTHONMALLOC")
        .env_remove("PYTHONMALLOCSTATS")
        .env_remove("PYTHONDEVMODE")
        .status()
        .map_err(Error::failed("starting the recording child"));
    let _ = std::fs::remove_dir_all(&helper_dir);
    let status = status?;
    let seconds = started.elapsed().as_secs_f64();
    let code = match status.code() {
        Some(c) => c,
        None => {
            return Err(Error::Failed(format!(
                "the recording child was killed ({status}); the trace {} is incomplete",
                out.display()
            )));
        }
    };
    if code == EMBED_FAILED {
        return Err(Error::Usage(format!(
            "{} could not be embedded (see the message above); no trace was recorded",
            py.executable.display()
        )));
    }
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(Recorded { path: out.to_path_buf(), status: code, seconds, bytes })
}

/// The child's exit status when the interpreter could not be loaded or initialised (the
/// interpreter itself uses 0, 1, 2 and 120; 125 is what `env` and others use for "failed to
/// run").
pub const EMBED_FAILED: i32 = 125;

// ------------------------------------------------------------------------- the C API we use

/// `PyMemAllocatorEx` (PEP 445).
#[repr(C)]
#[derive(Clone, Copy)]
struct MemAllocator {
    ctx: *mut c_void,
    malloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    calloc: Option<unsafe extern "C" fn(*mut c_void, usize, usize) -> *mut c_void>,
    realloc: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize) -> *mut c_void>,
    free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void)>,
}

/// `PyObjectArenaAllocator`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ArenaAllocator {
    ctx: *mut c_void,
    alloc: Option<unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void>,
    free: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, usize)>,
}

/// `PyStatus`, returned by value from `Py_PreInitialize`.
#[repr(C)]
struct PyStatus {
    kind: c_int,
    func: *const c_char,
    err_msg: *const c_char,
    exitcode: c_int,
}

const PYMEM_DOMAIN_MEM: c_int = 1;
const PYMEM_DOMAIN_OBJ: c_int = 2;

type GetAllocator = unsafe extern "C" fn(c_int, *mut MemAllocator);
type SetAllocator = unsafe extern "C" fn(c_int, *mut MemAllocator);
type GetArena = unsafe extern "C" fn(*mut ArenaAllocator);
type DebugStats = unsafe extern "C" fn(*mut libc::FILE) -> c_int;

/// The libpython functions the hooks and [`mark`] call, resolved once.
#[derive(Clone, Copy)]
struct Api {
    set_allocator: SetAllocator,
    debug_stats: DebugStats,
}

static API: OnceLock<Api> = OnceLock::new();

/// A domain's original allocator and our wrapper around it, at a fixed address (the wrapper's
/// `ctx` points here).
struct DomainHooks {
    domain: Domain,
    orig: UnsafeCell<MemAllocator>,
    wrapped: UnsafeCell<MemAllocator>,
}

// SAFETY: `orig` and `wrapped` are written once, before the wrappers are installed and before
// the interpreter starts any thread, and only read afterwards.
unsafe impl Sync for DomainHooks {}

const NO_ALLOC: MemAllocator = MemAllocator {
    ctx: core::ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

static MEM: DomainHooks = DomainHooks {
    domain: Domain::Mem,
    orig: UnsafeCell::new(NO_ALLOC),
    wrapped: UnsafeCell::new(NO_ALLOC),
};
static OBJ: DomainHooks = DomainHooks {
    domain: Domain::Obj,
    orig: UnsafeCell::new(NO_ALLOC),
    wrapped: UnsafeCell::new(NO_ALLOC),
};

struct ArenaHooks(UnsafeCell<ArenaAllocator>);
// SAFETY: written once before the wrapper is installed, read-only afterwards.
unsafe impl Sync for ArenaHooks {}
static ARENA_ORIG: ArenaHooks = ArenaHooks(UnsafeCell::new(ArenaAllocator {
    ctx: core::ptr::null_mut(),
    alloc: None,
    free: None,
}));

// ------------------------------------------------------------------------- the trace writer

const BUF: usize = 1 << 20;

struct Writer {
    lock: AtomicBool,
    inner: UnsafeCell<WriterState>,
}

struct WriterState {
    fd: c_int,
    len: usize,
    last: u64,
    failed: bool,
    buf: [u8; BUF],
}

// SAFETY: `inner` is only reached through `Writer::with`, which holds `lock`.
unsafe impl Sync for Writer {}

static WRITER: Writer = Writer {
    lock: AtomicBool::new(false),
    inner: UnsafeCell::new(WriterState { fd: -1, len: 0, last: 0, failed: false, buf: [0; BUF] }),
};

/// Whether calls are being recorded (off before the wrappers are in place, during a mark's
/// report and after the interpreter's main returned).
static RECORDING: AtomicBool = AtomicBool::new(false);

/// Set in a child forked by the script (`os.fork`, `multiprocessing`): it records nothing and
/// never writes to the parent's trace, whose unflushed buffer it inherited.
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn after_fork_in_child() {
    FORKED.store(true, Ordering::Relaxed);
    RECORDING.store(false, Ordering::Relaxed);
}

impl Writer {
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut WriterState) -> R) -> R {
        while self.lock.swap(true, Ordering::Acquire) {
            core::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference to the state.
        let r = f(unsafe { &mut *self.inner.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl WriterState {
    /// Writes `bytes` to the file, retrying short writes; on error remembers it and drops data.
    fn write_all(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.failed {
            // SAFETY: writing from a valid slice to our own file descriptor.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.failed = true;
            } else {
                bytes = &bytes[n as usize..];
            }
        }
    }

    fn flush(&mut self) {
        let len = self.len;
        self.len = 0;
        let ptr = self.buf.as_ptr();
        // SAFETY: the first `len` bytes of the buffer are initialised and stay untouched while
        // written (the lock is held).
        let slice = unsafe { core::slice::from_raw_parts(ptr, len) };
        self.write_all(slice);
    }

    /// Makes room for `n` bytes and gives an encoder at the end of the buffer.
    #[inline(always)]
    fn encoder(&mut self, n: usize) -> Encoder<'_> {
        if self.len + n > BUF {
            self.flush();
        }
        Encoder::resume(&mut self.buf, self.len, self.last)
    }
}

#[inline(always)]
fn put(f: impl FnOnce(&mut Encoder<'_>)) {
    WRITER.with(|w| {
        let mut e = w.encoder(Encoder::MAX_CALL);
        f(&mut e);
        let (len, last) = (e.len(), e.last_address());
        w.len = len;
        w.last = last;
    });
}

// ------------------------------------------------------------------------- the wrappers

/// # Safety
/// `ctx` is the address of `MEM` or `OBJ`, whose `orig` is the interpreter's allocator.
unsafe extern "C" fn hook_malloc(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: ctx is one of the two static DomainHooks (set in `install`).
    let d = unsafe { &*(ctx as *const DomainHooks) };
    // SAFETY: `orig` was filled from PyMem_GetAllocator before this wrapper was installed.
    let o = unsafe { *d.orig.get() };
    // SAFETY: calling the interpreter's own allocator with its own context.
    let r = unsafe { (o.malloc.unwrap_unchecked())(o.ctx, size) };
    if RECORDING.load(Ordering::Relaxed) {
        put(|e| e.malloc(d.domain, size as u64, r as u64));
    }
    r
}

/// # Safety
/// As [`hook_malloc`].
unsafe extern "C" fn hook_calloc(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    // SAFETY: as in hook_malloc.
    let d = unsafe { &*(ctx as *const DomainHooks) };
    // SAFETY: as in hook_malloc.
    let o = unsafe { *d.orig.get() };
    // SAFETY: as in hook_malloc.
    let r = unsafe { (o.calloc.unwrap_unchecked())(o.ctx, nelem, elsize) };
    if RECORDING.load(Ordering::Relaxed) {
        put(|e| e.calloc(d.domain, nelem as u64, elsize as u64, r as u64));
    }
    r
}

/// # Safety
/// As [`hook_malloc`]; `p` is what the interpreter passes to its allocator.
unsafe extern "C" fn hook_realloc(ctx: *mut c_void, p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: as in hook_malloc.
    let d = unsafe { &*(ctx as *const DomainHooks) };
    // SAFETY: as in hook_malloc.
    let o = unsafe { *d.orig.get() };
    // SAFETY: as in hook_malloc; `p` is forwarded unchanged.
    let r = unsafe { (o.realloc.unwrap_unchecked())(o.ctx, p, size) };
    if RECORDING.load(Ordering::Relaxed) {
        put(|e| e.realloc(d.domain, p as u64, size as u64, r as u64));
    }
    r
}

/// # Safety
/// As [`hook_realloc`].
unsafe extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    // SAFETY: as in hook_malloc.
    let d = unsafe { &*(ctx as *const DomainHooks) };
    // SAFETY: as in hook_malloc.
    let o = unsafe { *d.orig.get() };
    // SAFETY: as in hook_malloc; `p` is forwarded unchanged.
    unsafe { (o.free.unwrap_unchecked())(o.ctx, p) };
    if RECORDING.load(Ordering::Relaxed) && !p.is_null() {
        put(|e| e.free(d.domain, p as u64));
    }
}

/// # Safety
/// Installed as the arena allocator after `ARENA_ORIG` was filled.
unsafe extern "C" fn hook_arena_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: filled from PyObject_GetArenaAllocator before this wrapper was installed.
    let o = unsafe { *ARENA_ORIG.0.get() };
    // SAFETY: the interpreter's own arena allocator with its own context.
    let r = unsafe { (o.alloc.unwrap_unchecked())(o.ctx, size) };
    if RECORDING.load(Ordering::Relaxed) {
        put(|e| e.arena_alloc(size as u64, r as u64));
    }
    r
}

/// # Safety
/// As [`hook_arena_alloc`].
unsafe extern "C" fn hook_arena_free(_ctx: *mut c_void, p: *mut c_void, size: usize) {
    // SAFETY: as in hook_arena_alloc.
    let o = unsafe { *ARENA_ORIG.0.get() };
    // SAFETY: as in hook_arena_alloc; arguments forwarded unchanged.
    unsafe { (o.free.unwrap_unchecked())(o.ctx, p, size) };
    if RECORDING.load(Ordering::Relaxed) {
        put(|e| e.arena_free(p as u64, size as u64));
    }
}

/// Most bytes of one mark's report kept (CPython's report is about 3 KiB).
const STATS_MAX: usize = 256 * 1024;

struct StatsBuf(UnsafeCell<[u8; STATS_MAX]>);
// SAFETY: only used by `mark`, which runs with the GIL held, one call at a time.
unsafe impl Sync for StatsBuf {}
static STATS: StatsBuf = StatsBuf(UnsafeCell::new([0; STATS_MAX]));

/// Writes a mark: `label` (a NUL-terminated string) and the interpreter's own pymalloc report at
/// this moment. Called by the Python helper through ctypes, with the GIL held.
///
/// # Safety
/// `label` is null or a valid NUL-terminated string; the caller holds the GIL of the interpreter
/// the recorder embedded.
pub unsafe extern "C" fn mark(label: *const c_char) {
    let Some(api) = API.get() else { return };
    if FORKED.load(Ordering::Relaxed) {
        return;
    }
    let label: &[u8] = if label.is_null() {
        b""
    } else {
        // SAFETY: caller contract: a valid NUL-terminated string.
        unsafe { core::ffi::CStr::from_ptr(label) }.to_bytes()
    };
    RECORDING.store(false, Ordering::Relaxed);
    // SAFETY: putting back the interpreter's own allocators (read from it at start-up) while no
    // allocation is in progress (we hold the GIL); the wrappers only forward to these, so blocks
    // stay valid across the switch.
    unsafe {
        (api.set_allocator)(PYMEM_DOMAIN_MEM, MEM.orig.get());
        (api.set_allocator)(PYMEM_DOMAIN_OBJ, OBJ.orig.get());
    }
    let mut len = 0usize;
    // SAFETY: a memfd is our own anonymous file; `fdopen` takes it over and `fclose` closes it.
    // The report is read back into the static buffer, whose single user we are (GIL held).
    unsafe {
        let fd = libc::memfd_create(c"arenalab-mark".as_ptr(), 0);
        if fd >= 0 {
            let fp = libc::fdopen(fd, c"w+".as_ptr());
            if fp.is_null() {
                libc::close(fd);
            } else {
                (api.debug_stats)(fp);
                libc::fflush(fp);
                let buf = &mut *STATS.0.get();
                while len < STATS_MAX {
                    let n = libc::pread(
                        fd,
                        buf[len..].as_mut_ptr().cast(),
                        STATS_MAX - len,
                        len as libc::off_t,
                    );
                    if n <= 0 {
                        break;
                    }
                    len += n as usize;
                }
                libc::fclose(fp);
            }
        }
    }
    // SAFETY: re-installing our wrappers, as in `install`.
    unsafe {
        (api.set_allocator)(PYMEM_DOMAIN_MEM, MEM.wrapped.get());
        (api.set_allocator)(PYMEM_DOMAIN_OBJ, OBJ.wrapped.get());
    }
    // SAFETY: the first `len` bytes were written above; we are the buffer's only user.
    let text = unsafe { &(&*STATS.0.get())[..len] };
    let label = &label[..label.len().min(4096)];
    WRITER.with(|w| {
        let mut e = w.encoder(4096 + 32);
        e.mark_start(label, text.len());
        w.len = e.len();
        w.flush();
        w.write_all(text);
    });
    RECORDING.store(!FORKED.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Arguments of the hidden `arenalab trace record-child`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChildArgs {
    /// The shared libpython to load.
    #[arg(long)]
    pub lib: PathBuf,
    /// The trace file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The trace header, JSON.
    #[arg(long)]
    pub header: String,
    /// The interpreter's argv: executable, script, arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

fn embed_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("arenalab trace: {msg}");
    EMBED_FAILED
}

/// The recording child: embeds the interpreter and runs the script. Returns the process exit
/// status (the interpreter's, or [`EMBED_FAILED`]).
pub fn record_child(args: &ChildArgs) -> i32 {
    let header: Header = match serde_json::from_str(&args.header) {
        Ok(h) => h,
        Err(e) => return embed_error(format!("bad header: {e}")),
    };
    // SAFETY: loading the interpreter's own shared library runs its initialisers, which is what
    // embedding it means; RTLD_GLOBAL lets its extension modules find its symbols.
    let lib = match unsafe {
        libloading::os::unix::Library::open(
            Some(&args.lib),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
        )
    } {
        Ok(l) => l,
        Err(e) => return embed_error(format!("cannot load {}: {e}", args.lib.display())),
    };
    macro_rules! sym {
        ($name:literal, $ty:ty) => {
            // SAFETY: the symbol has this C signature in every CPython 3.8+ (documented API,
            // or `_PyObject_DebugMallocStats` from cpython/objimpl.h).
            match unsafe { lib.get::<$ty>($name) } {
                Ok(s) => *s,
                Err(e) => {
                    return embed_error(format!(
                        "{} has no {}: {e}",
                        args.lib.display(),
                        String::from_utf8_lossy(&$name[..$name.len() - 1])
                    ));
                }
            }
        };
    }
    let init_preconfig = sym!(b"PyPreConfig_InitPythonConfig\0", unsafe extern "C" fn(*mut u8));
    let pre_initialize = sym!(b"Py_PreInitialize\0", unsafe extern "C" fn(*const u8) -> PyStatus);
    let get_allocator = sym!(b"PyMem_GetAllocator\0", GetAllocator);
    let set_allocator = sym!(b"PyMem_SetAllocator\0", SetAllocator);
    let get_arena = sym!(b"PyObject_GetArenaAllocator\0", GetArena);
    let set_arena = sym!(b"PyObject_SetArenaAllocator\0", GetArena);
    let debug_stats = sym!(b"_PyObject_DebugMallocStats\0", DebugStats);
    let bytes_main =
        sym!(b"Py_BytesMain\0", unsafe extern "C" fn(c_int, *mut *mut c_char) -> c_int);
    let _ = API.set(Api { set_allocator, debug_stats });

    let fd = {
        let Ok(path) = std::ffi::CString::new(args.out.as_os_str().as_encoded_bytes()) else {
            return embed_error("bad output path");
        };
        // SAFETY: opening a file by a valid C path.
        unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        }
    };
    if fd < 0 {
        return embed_error(format!(
            "cannot write {}: {}",
            args.out.display(),
            std::io::Error::last_os_error()
        ));
    }
    let prefix = format::write_header(&header);
    WRITER.with(|w| {
        w.fd = fd;
        w.write_all(&prefix);
    });

    // Pre-initialise. PyPreConfig's layout differs between versions; it is about 40 bytes, so
    // 512 aligned bytes hold any of them and the init function fills in every field.
    let mut preconfig = [0u64; 64];
    // SAFETY: the buffer is larger than any PyPreConfig and suitably aligned.
    let status = unsafe {
        init_preconfig(preconfig.as_mut_ptr().cast());
        pre_initialize(preconfig.as_ptr().cast())
    };
    if status.kind != 0 {
        let msg = if status.err_msg.is_null() {
            "unknown error".into()
        } else {
            // SAFETY: CPython's error messages are static NUL-terminated strings.
            unsafe { core::ffi::CStr::from_ptr(status.err_msg) }.to_string_lossy().into_owned()
        };
        return embed_error(format!("Py_PreInitialize failed: {msg}"));
    }

    // SAFETY: the runtime is pre-initialised and no thread runs Python yet; the statics are
    // written once here, before the wrappers pointing at them are installed.
    unsafe {
        get_allocator(PYMEM_DOMAIN_MEM, MEM.orig.get());
        get_allocator(PYMEM_DOMAIN_OBJ, OBJ.orig.get());
        get_arena(ARENA_ORIG.0.get());
        for d in [&MEM, &OBJ] {
            *d.wrapped.get() = MemAllocator {
                ctx: d as *const DomainHooks as *mut c_void,
                malloc: Some(hook_malloc),
                calloc: Some(hook_calloc),
                realloc: Some(hook_realloc),
                free: Some(hook_free),
            };
        }
        let mut arena = ArenaAllocator {
            ctx: core::ptr::null_mut(),
            alloc: Some(hook_arena_alloc),
            free: Some(hook_arena_free),
        };
        if (*MEM.orig.get()).malloc.is_none() || (*ARENA_ORIG.0.get()).alloc.is_none() {
            return embed_error("the interpreter reports no allocator to wrap");
        }
        // The address is set while this process has one thread.
        let address = mark as unsafe extern "C" fn(*const c_char) as usize;
        std::env::set_var(MARK_ENV, address.to_string());
        set_arena(&mut arena);
        set_allocator(PYMEM_DOMAIN_MEM, MEM.wrapped.get());
        set_allocator(PYMEM_DOMAIN_OBJ, OBJ.wrapped.get());
    }
    // SAFETY: registering a handler that only stores two atomics, safe in a forked child.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    RECORDING.store(true, Ordering::Relaxed);

    let cargs: Vec<std::ffi::CString> = args
        .argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
    argv.push(core::ptr::null_mut());
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
    let status = unsafe { bytes_main(cargs.len() as c_int, argv.as_mut_ptr()) };
    RECORDING.store(false, Ordering::Relaxed);
    if FORKED.load(Ordering::Relaxed) {
        // A forked child of the script that returned through main: the trace is the parent's.
        return status;
    }
    let failed = WRITER.with(|w| {
        let mut e = w.encoder(16);
        e.end(status);
        w.len = e.len();
        w.flush();
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(w.fd) };
        w.failed
    });
    if failed {
        eprintln!("arenalab trace: writing {} failed; the trace is incomplete", args.out.display());
        return EMBED_FAILED;
    }
    // The library stays loaded: the interpreter may have left exit handlers pointing into it.
    std::mem::forget(lib);
    status
}
