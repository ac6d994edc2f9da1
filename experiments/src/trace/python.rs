//! Finding CPython interpreters and what the recorder needs to know about one.
//!
//! An interpreter is asked, by running it once, for its version, its `sysconfig` (where its
//! shared libpython is: `LIBDIR` with `INSTSONAME` or `LDLIBRARY`; whether it has pymalloc:
//! `WITH_PYMALLOC`) and the header of `sys._debugmallocstats()`, which names its number of size
//! classes. Together these give its [`Layout`].

use crate::error::{Error, Result};
use pymalloc::Layout;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the recorder needs to know about one interpreter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Python {
    /// The interpreter's real path (`sys.executable`).
    pub executable: PathBuf,
    /// `sys.version_info[:3]`.
    pub version: [u32; 3],
    /// The shared libpython, if the build has one.
    pub libpython: Option<PathBuf>,
    /// Whether the build has pymalloc (`WITH_PYMALLOC`).
    pub pymalloc: bool,
    /// Size classes named in the `sys._debugmallocstats()` header (0 if none printed).
    pub classes: usize,
}

const PROBE: &str = r#"
import sys, sysconfig, json
v = sysconfig.get_config_var
lib = None
libdir = v("LIBDIR") or ""
for name in (v("INSTSONAME"), v("LDLIBRARY")):
    if name and ".so" in name:
        import os
        p = os.path.join(libdir, name)
        if os.path.exists(p):
            lib = p
            break
print(json.dumps({"executable": sys.executable, "version": list(sys.version_info[:3]),
    "lib": lib, "pymalloc": bool(v("WITH_PYMALLOC"))}))
sys.stdout.flush()
sys._debugmallocstats()
"#;

impl Python {
    /// Runs `program` once and reads what it says about itself. A program that cannot be run,
    /// or is not a CPython 3, is [`Error::Usage`].
    pub fn probe(program: &Path) -> Result<Python> {
        let out = Command::new(program)
            .args(["-c", PROBE])
            .env_remove("PYTHONMALLOC")
            .env_remove("PYTHONMALLOCSTATS")
            .output()
            .map_err(|e| Error::Usage(format!("cannot run {}: {e}", program.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with('{'));
        let parsed: Option<serde_json::Value> = line.and_then(|l| serde_json::from_str(l).ok());
        let Some(v) = parsed.filter(|_| out.status.success()) else {
            return Err(Error::Usage(format!(
                "{} is not a CPython 3 interpreter that arenalab can ask about itself ({}): {}",
                program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            )));
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let version: Vec<u32> = v["version"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)).collect())
            .unwrap_or_default();
        let [a, b, c] = version[..] else {
            return Err(Error::Usage(format!("{}: no version", program.display())));
        };
        Ok(Python {
            executable: PathBuf::from(v["executable"].as_str().unwrap_or_default()),
            version: [a, b, c],
            libpython: v["lib"].as_str().map(PathBuf::from),
            pymalloc: v["pymalloc"].as_bool().unwrap_or(false),
            classes: class_count(&stderr).unwrap_or(0),
        })
    }

    /// `3.11.7`.
    pub fn version_string(&self) -> String {
        format!("{}.{}.{}", self.version[0], self.version[1], self.version[2])
    }

    /// The layout detected from version and class count, if it is one arenalab models.
    pub fn layout(&self) -> Option<Layout> {
        Layout::detect((self.version[0], self.version[1]), self.classes)
    }

    /// Checks that this interpreter can be recorded: 3.8 or newer (the pre-initialisation API
    /// appeared in 3.8), a shared libpython, pymalloc, a known layout. Returns the layout and
    /// the library.
    pub fn recordable(&self) -> Result<(Layout, PathBuf)> {
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

/// The class count from the first line of `sys._debugmallocstats()`:
/// `Small block threshold = 512, in 32 size classes.`
pub fn class_count(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Small block threshold"))?;
    let after = line.split(", in ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Every CPython 3.8+ on this machine that can be recorded, one per version, oldest first:
/// `python3` and `python3.X` on `PATH`, and `~/.pyenv/versions/*/bin/python3.X` (pyenv's
/// shims fail for versions that are not selected, so the real binaries are looked up); and,
/// once per version, why each other CPython found cannot be recorded (e.g. no shared
/// libpython), named by its file name and version.
pub fn installed() -> (Vec<Python>, Vec<String>) {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("python3"));
            for minor in 8..=20 {
                candidates.push(dir.join(format!("python3.{minor}")));
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let versions = Path::new(&home).join(".pyenv/versions");
        if let Ok(rd) = std::fs::read_dir(&versions) {
            for e in rd.flatten() {
                for minor in 8..=20 {
                    candidates.push(e.path().join(format!("bin/python3.{minor}")));
                }
            }
        }
    }
    let mut found: Vec<Python> = Vec::new();
    let mut skipped = Vec::new();
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        let Ok(p) = Python::probe(&c) else { continue };
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
        if found.iter().any(|f| f.version == p.version) {
            continue;
        }
        found.push(p);
    }
    found.sort_by_key(|p| p.version);
    skipped.sort();
    (found, skipped.into_iter().map(|(_, why)| why).collect())
}
