//! CPython's real obmalloc, loaded at run time.
//!
//! arenalab models pymalloc (`pymalloc` crate); this crate gives the original beside it, taken
//! from an installed interpreter, so that benchmarks can measure the model against the real
//! thing in one process. Nothing is linked at build time and no Python headers are needed:
//!
//! 1. **Probe** ([`Python::probe`]): the interpreter is run once and prints its version, whether
//!    it has pymalloc, the path of its shared libpython (`sysconfig`'s `LIBDIR` joined with
//!    `INSTSONAME` or `LDLIBRARY`) and its size-class count (`sys._debugmallocstats()`).
//!    [`installed`] does this for every interpreter found on the machine.
//! 2. **Load** ([`Obmalloc::load`]): that libpython is opened with `dlopen(RTLD_NOW |
//!    RTLD_LOCAL)` through `libloading` and initialised once with the pre-3.8-style global
//!    flags, which every version from 3.8 to 3.13 still reads: `Py_NoSiteFlag = 1` (no `site`
//!    import: no `.pth` files, no user site), `Py_IgnoreEnvironmentFlag = 1` (a `PYTHONMALLOC`
//!    in the environment would replace pymalloc), `Py_SetProgramName(executable)` (so it finds
//!    its standard library from the interpreter's path, not the host binary's), then
//!    `Py_InitializeEx(0)` (no signal handlers) and `PyEval_SaveThread()` (the GIL is let go).
//!    The `PyConfig` API would report errors instead of aborting, but its struct layout changes
//!    with every version and cannot be used without headers. The library is never unloaded.
//! 3. **Allocate** ([`Obmalloc::heap`]): a [`Heap`] takes the GIL once (`PyGILState_Ensure`),
//!    which also makes the thread's state current: since 3.12 `PyObject_Malloc` finds its
//!    state through the current interpreter. Its [`Heap::alloc`] and [`Heap::free`] call
//!    `PyObject_Malloc` and `PyObject_Free` through function pointers, with nothing else per
//!    call.
//!
//! **Several libpythons in one process.** Each is opened `RTLD_LOCAL`: its symbols stay out of
//! the global scope, so each library's internal references resolve to itself and each keeps
//! its own runtime, GIL and obmalloc arenas. (`RTLD_GLOBAL` would make the second library's
//! references bind to the first's `_PyRuntime`.) Two builds of one minor version share a
//! soname; opened by full path, glibc still maps both. The catch is extension modules: CPython
//! loads them expecting libpython's symbols in the global scope, so an interpreter whose
//! start-up imports a shared extension (rather than a built-in one) would fail to import it.
//! Start-up without `site` imports only built-in and frozen modules in the builds tried here.
//!
//! An initialised interpreter is *warm*: its pools already hold the objects made at start-up,
//! so a single alloc+free at a size does not empty a pool.
//!
//! ```
//! use std::path::Path;
//! let loaded = obmalloc::Python::probe(Path::new("python3"))
//!     .and_then(|python| obmalloc::Obmalloc::load(&python));
//! match loaded {
//!     Ok(o) => {
//!         let mut heap = o.heap().expect("no other heap on this thread");
//!         let p = heap.alloc(32);
//!         assert!(!p.is_null());
//!         // SAFETY: `p` came from this heap's alloc and is freed once.
//!         unsafe { heap.free(p) };
//!     }
//!     Err(e) => eprintln!("skipped, no embeddable CPython: {e}"),
//! }
//! ```

mod load;
mod probe;

pub use load::{FreeFn, FreshHeap, Heap, MallocFn, Obmalloc};
pub use probe::{Python, candidates, class_count, installed};

/// Why an interpreter cannot be asked about itself or loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be run, or is not a CPython 3 that answers the probe.
    #[error("{0}")]
    Probe(String),
    /// A CPython whose obmalloc cannot be loaded into this process.
    #[error("{python}: {reason}")]
    NotEmbeddable {
        /// The executable and version.
        python: String,
        /// Why not.
        reason: String,
    },
    /// The library could not be opened, or is not a libpython.
    #[error("cannot load {}: {reason}", library.display())]
    Load {
        /// The shared library.
        library: std::path::PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// This thread already holds a [`Heap`] of this interpreter (CPython `major.minor.micro`).
    #[error("this thread already holds a heap of CPython {0}")]
    Busy(String),
}
