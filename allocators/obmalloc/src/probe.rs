//! Finding CPython interpreters and asking one about itself.
//!
//! An interpreter is *run* once (never linked) and asked for its version, its `sysconfig` (where
//! its shared libpython is: `LIBDIR` joined with `INSTSONAME` or `LDLIBRARY`; whether it has
//! pymalloc: `WITH_PYMALLOC`) and the header of `sys._debugmallocstats()`, which names its number
//! of size classes. The candidates are `python3` and every `python3.X` on `PATH`, every
//! `$(pyenv root)/versions/*/bin/python3.X` (pyenv's shims fail for versions that are installed
//! but not selected, so the installs are looked up directly), and `/usr/bin`'s and
//! `/usr/local/bin`'s `python3*`.

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one interpreter says about itself.
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
    /// or is not a CPython 3, is [`Error::Probe`].
    pub fn probe(program: &Path) -> Result<Python, Error> {
        let out = Command::new(program)
            .args(["-c", PROBE])
            .env_remove("PYTHONMALLOC")
            .env_remove("PYTHONMALLOCSTATS")
            .output()
            .map_err(|e| Error::Probe(format!("cannot run {}: {e}", program.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with('{'));
        let parsed: Option<serde_json::Value> = line.and_then(|l| serde_json::from_str(l).ok());
        let Some(v) = parsed.filter(|_| out.status.success()) else {
            return Err(Error::Probe(format!(
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
            return Err(Error::Probe(format!("{}: no version", program.display())));
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

    /// `3.11`: what a benchmark id names.
    pub fn major_minor(&self) -> String {
        format!("{}.{}", self.version[0], self.version[1])
    }

    /// Checks that this interpreter's obmalloc can be loaded into this process: CPython 3.8 or
    /// newer, built with pymalloc, with a shared libpython. Returns the library's path.
    pub fn embeddable(&self) -> Result<&Path, Error> {
        let not = |reason: String| Error::NotEmbeddable {
            python: format!("{} ({})", self.executable.display(), self.version_string()),
            reason,
        };
        if self.version[0] != 3 || self.version[1] < 8 {
            return Err(not(
                "CPython 3.8 or newer is needed (Py_PreInitialize appeared in 3.8)".into()
            ));
        }
        if !self.pymalloc {
            return Err(not(
                "built without pymalloc (WITH_PYMALLOC unset): PyObject_Malloc is libc malloc"
                    .into(),
            ));
        }
        match &self.libpython {
            Some(lib) => Ok(lib),
            None => Err(not("no shared libpython (sysconfig LDLIBRARY is a static library): \
                 it cannot be loaded; use a build configured with --enable-shared"
                .into())),
        }
    }
}

/// The class count from the first line of `sys._debugmallocstats()`:
/// `Small block threshold = 512, in 32 size classes.`
///
/// ```
/// let text = "Small block threshold = 512, in 32 size classes.\n";
/// assert_eq!(obmalloc::class_count(text), Some(32));
/// assert_eq!(obmalloc::class_count("no header"), None);
/// ```
pub fn class_count(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Small block threshold"))?;
    let after = line.split(", in ").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}

/// Whether a file name is `python3` or `python3.X` (X digits only).
fn is_python_name(name: &str) -> bool {
    name == "python3"
        || name
            .strip_prefix("python3.")
            .is_some_and(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
}

fn names_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_str().is_some_and(is_python_name))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pyenv_root() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os("PYENV_ROOT") {
        return Some(PathBuf::from(r));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv"))
}

/// The candidate paths, in search order, each once (two paths may still be one executable).
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            out.extend(names_in(&dir));
        }
    }
    if let Some(root) = pyenv_root()
        && let Ok(rd) = std::fs::read_dir(root.join("versions"))
    {
        let mut vs: Vec<PathBuf> = rd.flatten().map(|e| e.path().join("bin")).collect();
        vs.sort();
        for bin in vs {
            out.extend(names_in(&bin).into_iter().filter(|p| !p.ends_with("python3")));
        }
    }
    out.extend(names_in(Path::new("/usr/bin")));
    out.extend(names_in(Path::new("/usr/local/bin")));
    let mut seen = Vec::new();
    out.retain(|p| {
        let new = !seen.contains(p);
        seen.push(p.clone());
        new
    });
    out
}

/// Every candidate that answers [`Python::probe`], each executable once, oldest version first
/// (search order within a version). Candidates that do not answer are left out.
pub fn installed() -> Vec<Python> {
    let mut found: Vec<Python> = Vec::new();
    for c in candidates() {
        let Ok(p) = Python::probe(&c) else { continue };
        if !found.iter().any(|f| f.executable == p.executable) {
            found.push(p);
        }
    }
    found.sort_by_key(|p| p.version);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_python3_and_python3_dot_digits_are_candidates() {
        assert!(is_python_name("python3"));
        assert!(is_python_name("python3.13"));
        assert!(!is_python_name("python3.13-config"));
        assert!(!is_python_name("python3-config"));
        assert!(!is_python_name("python3."));
        assert!(!is_python_name("python2.7"));
    }

    fn python(version: [u32; 3], lib: Option<&str>, pymalloc: bool) -> Python {
        Python {
            executable: PathBuf::from("/x/python3"),
            version,
            libpython: lib.map(PathBuf::from),
            pymalloc,
            classes: 32,
        }
    }

    #[test]
    fn embeddable_needs_3_8_pymalloc_and_a_shared_library() {
        assert_eq!(
            python([3, 11, 2], Some("/l/libpython3.11.so"), true).embeddable().unwrap(),
            Path::new("/l/libpython3.11.so")
        );
        let old = python([3, 7, 16], Some("/l/x.so"), true).embeddable().unwrap_err();
        assert!(old.to_string().contains("3.8 or newer"), "{old}");
        let plain = python([3, 11, 2], Some("/l/x.so"), false).embeddable().unwrap_err();
        assert!(plain.to_string().contains("without pymalloc"), "{plain}");
        let st = python([3, 11, 2], None, true).embeddable().unwrap_err();
        assert!(st.to_string().contains("no shared libpython"), "{st}");
    }
}
