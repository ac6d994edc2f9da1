//! Loading one interpreter's libpython and calling its obmalloc.

use crate::{Error, Python};
use core::ffi::{c_int, c_void};
use core::marker::PhantomData;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::cell::RefCell;
use std::path::Path;
use std::sync::Mutex;

/// `PyObject_Malloc`'s signature.
pub type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
/// `PyObject_Free`'s signature.
pub type FreeFn = unsafe extern "C" fn(*mut c_void);

/// One interpreter's libpython, loaded and initialised, for the life of the process.
///
/// Made by [`Obmalloc::load`]; never unloaded (`Py_FinalizeEx` and `dlclose` of a libpython are
/// not reliable), so it is handed out as `&'static`. Allocating needs a [`Heap`], which makes
/// the calling thread the interpreter's current one.
pub struct Obmalloc {
    python: Python,
    id: usize,
    malloc: MallocFn,
    free: FreeFn,
    gil_ensure: unsafe extern "C" fn() -> c_int,
    gil_release: unsafe extern "C" fn(c_int),
    allocator_name: String,
    /// Kept open for as long as the function pointers above are used: for ever.
    _library: Library,
}

impl core::fmt::Debug for Obmalloc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Obmalloc").field("python", &self.python).finish_non_exhaustive()
    }
}

/// Every libpython loaded so far, in loading order (the index is [`Obmalloc`]'s `id`).
static LOADED: Mutex<Vec<&'static Obmalloc>> = Mutex::new(Vec::new());

thread_local! {
    /// The ids of the interpreters whose [`Heap`] this thread holds.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Looks up `name` in `lib` as a value of type `T` (a function pointer, or a data address).
///
/// # Safety
/// `T` must be the symbol's real type: a function pointer with the C signature, or `*mut V` for
/// a variable of type `V`.
unsafe fn symbol<T: Copy>(lib: &Library, path: &Path, name: &str) -> Result<T, Error> {
    // SAFETY: the caller names the symbol's type.
    let found = unsafe { lib.get::<T>(name.as_bytes()) };
    found.map(|s| *s).map_err(|e| Error::Load {
        library: path.to_path_buf(),
        reason: format!("no symbol {name} ({e}): not a CPython 3.8+ libpython"),
    })
}

impl Obmalloc {
    /// Loads `python`'s shared libpython into this process and initialises it, once: a second
    /// call for the same library returns the first one's. Several different libpythons can be
    /// loaded side by side (each `RTLD_LOCAL`, each with its own state).
    ///
    /// An interpreter that is not [`Python::embeddable`], a library that cannot be opened or
    /// lacks a symbol, is an `Err`. A failure *inside* `Py_InitializeEx` (e.g. a broken
    /// standard library) is fatal in CPython (it aborts the process); the interpreter has been
    /// run once by [`Python::probe`] already, which rules out most of those.
    pub fn load(python: &Python) -> Result<&'static Obmalloc, Error> {
        let path = python.embeddable()?;
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        let canonical = path
            .canonicalize()
            .map_err(|e| Error::Load { library: path.to_path_buf(), reason: e.to_string() })?;
        if let Some(o) = loaded.iter().find(|o| {
            o.python.libpython.as_deref().and_then(|p| p.canonicalize().ok()).as_ref()
                == Some(&canonical)
        }) {
            return Ok(o);
        }
        if FRESH.lock().unwrap_or_else(|e| e.into_inner()).contains(&canonical) {
            return Err(Error::NotEmbeddable {
                python: format!("{} ({})", python.executable.display(), python.version_string()),
                reason: "this process uses that libpython uninitialised (a FreshHeap)".into(),
            });
        }
        // SAFETY: loading libpython runs its ELF constructors, which only set up static data
        // (CPython initialises itself in Py_InitializeEx, not in constructors). RTLD_LOCAL keeps
        // its symbols out of the global scope, so a second libpython resolves to its own.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| Error::Load { library: path.to_path_buf(), reason: e.to_string() })?;
        // The C API's types, unchanged from 3.8 to 3.13: `void *PyObject_Malloc(size_t)`,
        // `void PyObject_Free(void *)`, `int Py_IsInitialized(void)`,
        // `void Py_InitializeEx(int)`, `void Py_SetProgramName(const wchar_t *)`,
        // `int Py_NoSiteFlag`, `int Py_IgnoreEnvironmentFlag`,
        // `PyThreadState *PyEval_SaveThread(void)`, `PyGILState_STATE PyGILState_Ensure(void)`
        // (a C enum: an int), `void PyGILState_Release(PyGILState_STATE)`.
        let (malloc, free, is_initialized, initialize, set_program_name, no_site, ignore_env) =
            // SAFETY: each symbol is looked up with its C type, listed above.
            unsafe {
            (
                symbol::<MallocFn>(&lib, path, "PyObject_Malloc")?,
                symbol::<FreeFn>(&lib, path, "PyObject_Free")?,
                symbol::<unsafe extern "C" fn() -> c_int>(&lib, path, "Py_IsInitialized")?,
                symbol::<unsafe extern "C" fn(c_int)>(&lib, path, "Py_InitializeEx")?,
                symbol::<unsafe extern "C" fn(*const libc::wchar_t)>(
                    &lib,
                    path,
                    "Py_SetProgramName",
                )?,
                symbol::<*mut c_int>(&lib, path, "Py_NoSiteFlag")?,
                symbol::<*mut c_int>(&lib, path, "Py_IgnoreEnvironmentFlag")?,
            )
        };
        // SAFETY: each symbol is looked up with its C type, listed above.
        let (save_thread, gil_ensure, gil_release) = unsafe {
            (
                symbol::<unsafe extern "C" fn() -> *mut c_void>(&lib, path, "PyEval_SaveThread")?,
                symbol::<unsafe extern "C" fn() -> c_int>(&lib, path, "PyGILState_Ensure")?,
                symbol::<unsafe extern "C" fn(c_int)>(&lib, path, "PyGILState_Release")?,
            )
        };
        // SAFETY: `const char *_PyMem_GetCurrentAllocatorName(void)`, exported since 3.8.
        let current_allocator = unsafe {
            symbol::<unsafe extern "C" fn() -> *const libc::c_char>(
                &lib,
                path,
                "_PyMem_GetCurrentAllocatorName",
            )?
        };
        // SAFETY: a C API function without preconditions.
        if unsafe { is_initialized() } == 0 {
            // The program name is the interpreter's executable, from which CPython finds its
            // prefix and standard library (the benchmark binary's own path would find none).
            // CPython may keep the pointer: the string is leaked.
            let wide: Vec<libc::wchar_t> = python
                .executable
                .to_string_lossy()
                .chars()
                .map(|c| c as libc::wchar_t)
                .chain([0])
                .collect();
            let wide: &'static [libc::wchar_t] = Box::leak(wide.into_boxed_slice());
            // SAFETY: before initialisation, on the only thread touching this library (the
            // `LOADED` lock is held): the flags are plain ints CPython reads when it
            // initialises, `wide` is a NUL-terminated wide string that lives for ever.
            // `Py_InitializeEx(0)` installs no signal handlers; no `site` (no .pth files, no
            // user site) and no environment (PYTHONMALLOC would swap the allocator out).
            // `PyEval_SaveThread` then releases the GIL that initialisation left with this
            // thread, so that any thread can take it in `Obmalloc::heap`.
            unsafe {
                *no_site = 1;
                *ignore_env = 1;
                set_program_name(wide.as_ptr());
                initialize(0);
                save_thread();
            }
        }
        // SAFETY: reads the allocator tables set at initialisation; the result is NULL or a
        // static NUL-terminated name ("pymalloc", "malloc", "pymalloc_debug", ...).
        let name = unsafe {
            let p = current_allocator();
            (!p.is_null()).then(|| core::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        let allocator_name = name.unwrap_or_else(|| "custom".to_string());
        if allocator_name != "pymalloc" {
            return Err(Error::NotEmbeddable {
                python: format!("{} ({})", python.executable.display(), python.version_string()),
                reason: format!(
                    "its allocator is {allocator_name}, not pymalloc (set before this process \
                     loaded it, or a debug build)"
                ),
            });
        }
        let o: &'static Obmalloc = Box::leak(Box::new(Obmalloc {
            python: python.clone(),
            id: loaded.len(),
            malloc,
            free,
            gil_ensure,
            gil_release,
            allocator_name,
            _library: lib,
        }));
        loaded.push(o);
        Ok(o)
    }

    /// The interpreter this libpython belongs to.
    pub fn python(&self) -> &Python {
        &self.python
    }

    /// The interpreter's allocator as CPython names it (`_PyMem_GetCurrentAllocatorName`):
    /// always `pymalloc`, which [`Obmalloc::load`] checks.
    pub fn allocator_name(&self) -> &str {
        &self.allocator_name
    }

    /// `PyObject_Malloc` as a function pointer.
    ///
    /// Calling it is only sound on a thread that holds this interpreter's GIL with its thread
    /// state current, which a live [`Heap`] on that thread guarantees.
    pub fn malloc_fn(&self) -> MallocFn {
        self.malloc
    }

    /// `PyObject_Free` as a function pointer (same rule as [`Obmalloc::malloc_fn`]).
    pub fn free_fn(&self) -> FreeFn {
        self.free
    }

    /// Takes the interpreter's GIL on this thread (`PyGILState_Ensure`) and returns a handle
    /// that allocates from its obmalloc until dropped. Since 3.12 obmalloc's state belongs to
    /// the current thread's interpreter, so the thread state must be current, and the GIL keeps
    /// any other thread out: obmalloc itself has no lock. The GIL is taken once per [`Heap`],
    /// not per call. [`Error::Busy`] if this thread already holds one for this interpreter
    /// (two would release the GIL in the wrong order).
    pub fn heap(&'static self) -> Result<Heap, Error> {
        let busy = HELD.with(|h| {
            let mut h = h.borrow_mut();
            if h.contains(&self.id) {
                true
            } else {
                h.push(self.id);
                false
            }
        });
        if busy {
            return Err(Error::Busy(self.python.version_string()));
        }
        // SAFETY: the interpreter was initialised by `load` and its GIL released; Ensure
        // creates this thread's state if needed and blocks until the GIL is free.
        let state = unsafe { (self.gil_ensure)() };
        Ok(Heap { o: self, state, _one_thread: PhantomData })
    }
}

/// Allocation from one interpreter's obmalloc on the current thread, with its GIL held.
///
/// Neither `Send` nor `Sync`: the GIL is released on the thread that took it.
pub struct Heap {
    o: &'static Obmalloc,
    state: c_int,
    _one_thread: PhantomData<*const ()>,
}

impl Heap {
    /// The interpreter.
    pub fn obmalloc(&self) -> &'static Obmalloc {
        self.o
    }

    /// `PyObject_Malloc(size)`: a block of `size` bytes, or null when out of memory. Sizes up
    /// to 512 come from obmalloc's pools, larger ones from `PyMem_RawMalloc` (libc).
    #[inline]
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        // SAFETY: this thread holds the interpreter's GIL with its thread state current (this
        // `Heap` is alive and cannot leave the thread); PyObject_Malloc takes any size.
        unsafe { (self.o.malloc)(size) }.cast()
    }

    /// `PyObject_Free(p)`.
    ///
    /// # Safety
    /// `p` was returned by [`Heap::alloc`] of a heap of the same [`Obmalloc`] and not freed
    /// since (or is null).
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: the GIL as in `alloc`; the caller guarantees `p` is a live block of this
        // interpreter.
        unsafe { (self.o.free)(p.cast()) }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: on the thread that called PyGILState_Ensure (a `Heap` is not `Send`), with
        // its result, once; `heap` allows one `Heap` per thread and interpreter, so there is no
        // nesting to release in the wrong order.
        unsafe { (self.o.gil_release)(self.state) };
        HELD.with(|h| h.borrow_mut().retain(|&id| id != self.o.id));
    }
}

/// Libraries opened for a [`FreshHeap`]: each may have at most one, ever, and is never
/// initialised by [`Obmalloc::load`] afterwards.
static FRESH: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// CPython's obmalloc in a libpython that was loaded but never initialised: the state a
/// process starts in, with no arena mapped, so that an alloc+free pair at one size empties its
/// pool on every free and takes it back on the next alloc (the empty-pool cycle), which an
/// initialised interpreter, holding blocks in every class, never shows.
///
/// Possible up to CPython 3.11, where obmalloc's state is static and `PyObject_Malloc` works
/// before `Py_Initialize` (it is how CPython itself allocates during start-up). From 3.12
/// obmalloc's state belongs to an interpreter and is found through the current thread state,
/// which does not exist before initialisation: [`FreshHeap::load`] refuses those.
///
/// One per library per process, never shared between threads (nothing but the caller's
/// exclusivity protects an uninitialised obmalloc); the library is then never initialised.
pub struct FreshHeap {
    malloc: MallocFn,
    free: FreeFn,
    _library: &'static Library,
    _one_thread: PhantomData<*const ()>,
}

impl FreshHeap {
    /// Opens `python`'s libpython (`RTLD_LOCAL`) without initialising it.
    ///
    /// [`Error::NotEmbeddable`] for CPython 3.12 and newer, or when this process has already
    /// loaded (and so initialised) that library through [`Obmalloc::load`]; [`Error::Busy`]
    /// when a `FreshHeap` of it was made before.
    pub fn load(python: &Python) -> Result<FreshHeap, Error> {
        let path = python.embeddable()?;
        let name = format!("{} ({})", python.executable.display(), python.version_string());
        if python.version >= [3, 12, 0] {
            return Err(Error::NotEmbeddable {
                python: name,
                reason: "from CPython 3.12 obmalloc's state belongs to an interpreter: it \
                         cannot allocate before initialisation"
                    .into(),
            });
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| Error::Load { library: path.to_path_buf(), reason: e.to_string() })?;
        let loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.iter().any(|o| {
            o.python.libpython.as_deref().and_then(|p| p.canonicalize().ok()).as_ref()
                == Some(&canonical)
        }) {
            return Err(Error::NotEmbeddable {
                python: name,
                reason: "this process has already initialised that libpython".into(),
            });
        }
        let mut fresh = FRESH.lock().unwrap_or_else(|e| e.into_inner());
        if fresh.contains(&canonical) {
            return Err(Error::Busy(python.version_string()));
        }
        // SAFETY: as in `Obmalloc::load`: the constructors only set up static data, and
        // RTLD_LOCAL keeps this copy's symbols to itself.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| Error::Load { library: path.to_path_buf(), reason: e.to_string() })?;
        let lib: &'static Library = Box::leak(Box::new(lib));
        // SAFETY: the C types of PyObject_Malloc and PyObject_Free, as in `Obmalloc::load`.
        let (malloc, free) = unsafe {
            (
                symbol::<MallocFn>(lib, path, "PyObject_Malloc")?,
                symbol::<FreeFn>(lib, path, "PyObject_Free")?,
            )
        };
        fresh.push(canonical);
        Ok(FreshHeap { malloc, free, _library: lib, _one_thread: PhantomData })
    }

    /// `PyObject_Malloc(size)` in the uninitialised library: a block, or null when out of
    /// memory.
    #[inline]
    pub fn alloc(&mut self, size: usize) -> *mut u8 {
        // SAFETY: up to 3.11 (checked in `load`) PyObject_Malloc needs no initialisation; this
        // `FreshHeap` is the library's only user (one per library, never initialised, not
        // `Send`), so no other thread is inside its obmalloc.
        unsafe { (self.malloc)(size) }.cast()
    }

    /// `PyObject_Free(p)` in the uninitialised library.
    ///
    /// # Safety
    /// `p` was returned by this heap's [`FreshHeap::alloc`] and not freed since (or is null).
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8) {
        // SAFETY: exclusive use as in `alloc`; the caller guarantees `p` is a live block.
        unsafe { (self.free)(p.cast()) }
    }
}
