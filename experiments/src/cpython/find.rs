//! Finding the CPython interpreters to measure.
//!
//! Without `--python`, the candidates are `python3` and every `python3.X` on `PATH`, every
//! `$(pyenv root)/versions/*/bin/python3.X` (pyenv's shims on `PATH` fail for versions that are
//! installed but not selected, so the installs are looked up directly), and `/usr/bin`'s and
//! `/usr/local/bin`'s `python3*`. Each candidate is *run* (never linked): it prints its version,
//! implementation and real executable. Candidates that are the same executable are kept once;
//! CPython 3.8 or newer is kept, anything else is listed as skipped with the reason.

use crate::error::{Error, Result};
use crate::procs::Spawn;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The oldest CPython measured.
pub const MIN_VERSION: (u32, u32) = (3, 8);

/// One interpreter that will be measured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interpreter {
    /// The path it was found at (what is run).
    pub path: PathBuf,
    /// Its real executable (`sys.executable`, symlinks resolved).
    pub executable: PathBuf,
    /// `major.minor.micro`, e.g. `3.11.2`.
    pub version: String,
    /// (major, minor).
    pub major_minor: (u32, u32),
    /// Whether this is what `python3` on `PATH` runs.
    pub is_default: bool,
}

impl Interpreter {
    /// `3.11` for tables and chart legends.
    pub fn short(&self) -> String {
        format!("{}.{}", self.major_minor.0, self.major_minor.1)
    }
}

/// A candidate that was not kept, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The path tried.
    pub path: PathBuf,
    /// Why it is not measured.
    pub reason: String,
}

/// What the search found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Found {
    /// Interpreters to measure, oldest first.
    pub interpreters: Vec<Interpreter>,
    /// Candidates not kept.
    pub skipped: Vec<Skipped>,
}

const PROBE: &str = "import os, platform, sys; print(platform.python_implementation(), \
    '%d.%d.%d' % sys.version_info[:3], os.path.realpath(sys.executable))";

/// Runs `path` and asks it what it is: `Ok((implementation, version, executable))`, or why not.
fn probe(path: &Path) -> std::result::Result<(String, String, PathBuf), String> {
    let mut child = Spawn::program(path)
        .args(["-I", "-S", "-c", PROBE])
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    child.close_stdin();
    let exit = match child.wait_timeout(Duration::from_secs(10)) {
        Ok(Some(exit)) => exit,
        _ => return Err("did not answer within 10 s".into()),
    };
    let line = child.read_line().ok().flatten().unwrap_or_default();
    if !exit.status.success() {
        let tail = child.stderr_tail();
        let first = tail.lines().next().unwrap_or("").trim();
        return Err(format!("{} ({first})", exit.status));
    }
    let mut it = line.splitn(3, ' ');
    match (it.next(), it.next(), it.next()) {
        (Some(imp), Some(ver), Some(exe)) if !exe.is_empty() => {
            Ok((imp.to_string(), ver.to_string(), PathBuf::from(exe)))
        }
        _ => Err(format!("not a Python: printed {line:?}")),
    }
}

fn parse_major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
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

/// The candidate paths, in search order (duplicates removed later by executable).
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

/// Finds the interpreters: those given (`explicit`, each of which must be usable, or
/// [`Error::Usage`]), or every candidate. `Ok` with no interpreters when none is usable.
pub fn find(explicit: &[PathBuf]) -> Result<Found> {
    let default_exe = probe(Path::new("python3")).ok().map(|(_, _, exe)| exe);
    let list = if explicit.is_empty() { candidates() } else { explicit.to_vec() };
    let mut found = Found::default();
    for path in list {
        let verdict = probe(&path).and_then(|(imp, version, executable)| {
            let mm = parse_major_minor(&version)
                .ok_or_else(|| format!("unreadable version {version:?}"))?;
            if imp != "CPython" {
                Err(format!("{imp} {version}, not CPython"))
            } else if mm < MIN_VERSION {
                Err(format!("CPython {version} is older than 3.8"))
            } else {
                Ok(Interpreter {
                    is_default: default_exe.as_ref() == Some(&executable),
                    path: path.clone(),
                    executable,
                    version,
                    major_minor: mm,
                })
            }
        });
        match verdict {
            Ok(i) => {
                if !found.interpreters.iter().any(|x| x.executable == i.executable) {
                    found.interpreters.push(i);
                }
            }
            Err(reason) if !explicit.is_empty() => {
                return Err(Error::Usage(format!(
                    "--python {}: {reason}; give a CPython 3.8 or newer",
                    path.display()
                )));
            }
            Err(reason) => found.skipped.push(Skipped { path, reason }),
        }
    }
    found.interpreters.sort_by(|a, b| {
        let v = |i: &Interpreter| {
            i.version.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>()
        };
        v(a).cmp(&v(b)).then_with(|| a.executable.cmp(&b.executable))
    });
    Ok(found)
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

    #[test]
    fn versions_read_as_major_minor() {
        assert_eq!(parse_major_minor("3.11.2"), Some((3, 11)));
        assert_eq!(parse_major_minor("x"), None);
    }
}
