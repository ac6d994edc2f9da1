//! Finding CPython interpreters and what the recorder needs to know about one.
//!
//! The probe itself (run the interpreter once; read its version, `sysconfig` and the header of
//! `sys._debugmallocstats()`) is the `obmalloc` crate's [`Python::probe`], shared with the
//! benchmarks that load the real obmalloc. Here: the checks for recording and the [`Layout`].

use crate::error::{Error, Result};
use pymalloc::Layout;
use std::path::PathBuf;

pub use obmalloc::{Python, class_count};

impl From<obmalloc::Error> for Error {
    /// A program that cannot be run or asked about itself is bad input.
    fn from(e: obmalloc::Error) -> Error {
        Error::Usage(e.to_string())
    }
}

/// What the recorder adds to an interpreter's answers: its layout and whether it can be recorded.
pub trait Recordable {
    /// The layout detected from version and class count, if it is one arenalab models.
    fn layout(&self) -> Option<Layout>;
    /// Checks that this interpreter can be recorded: 3.8 or newer (the pre-initialisation API
    /// appeared in 3.8), a shared libpython, pymalloc, a known layout. Returns the layout and
    /// the library.
    fn recordable(&self) -> Result<(Layout, PathBuf)>;
}

impl Recordable for Python {
    fn layout(&self) -> Option<Layout> {
        Layout::detect((self.version[0], self.version[1]), self.classes)
    }

    fn recordable(&self) -> Result<(Layout, PathBuf)> {
        let name = format!("{} ({})", self.executable.display(), self.version_string());
        if self.version[0] != 3 || self.version[1] < 8 {
            return Err(Error::Usage(format!(
                "{name}: recording needs CPython 3.8 or newer (Py_PreInitialize appeared in 3.8)"
            )));
        }
        if !self.pymalloc || self.classes == 0 {
            return Err(Error::Usage(format!(
                "{name} is built without pymalloc (WITH_PYMALLOC unset, or \
                 sys._debugmallocstats() prints no size classes): there is nothing to record"
            )));
        }
        let Some(layout) = self.layout() else {
            return Err(Error::Usage(format!(
                "{name} reports {} size classes, a layout arenalab does not model",
                self.classes
            )));
        };
        let Some(lib) = self.libpython.clone() else {
            return Err(Error::Usage(format!(
                "{name} has no shared libpython (sysconfig LDLIBRARY is a static library): \
                 it cannot be embedded; use a build configured with --enable-shared"
            )));
        };
        Ok((layout, lib))
    }
}

/// Every CPython 3.8+ on this machine that can be recorded, one per version, oldest first
/// (the candidates are [`obmalloc::candidates`]: `PATH`, pyenv's installs, `/usr/bin`); and,
/// once per version, why each other CPython found cannot be recorded (e.g. no shared
/// libpython), named by its file name and version.
pub fn installed() -> (Vec<Python>, Vec<String>) {
    let mut found: Vec<Python> = Vec::new();
    let mut skipped = Vec::new();
    for p in obmalloc::installed() {
        if let Err(e) = p.recordable() {
            // The message names the executable; keep the file name only (no machine folders).
            let path = p.executable.display().to_string();
            let file = p
                .executable
                .file_name()
                .map_or_else(|| "python".to_string(), |f| f.to_string_lossy().into_owned());
            let why = e.to_string().replace(&path, &file);
            if !skipped.iter().any(|(v, _)| *v == p.version) {
                skipped.push((p.version, why));
            }
            continue;
        }
        if !found.iter().any(|f| f.version == p.version) {
            found.push(p);
        }
    }
    (found, skipped.into_iter().map(|(_, why)| why).collect())
}
