//! Finding the CPython interpreters to measure.
//!
//! Without `--python`, the candidates are [`obmalloc::candidates`] (`python3` and every
//! `python3.X` on `PATH`, pyenv's installs, `/usr/bin` and `/usr/local/bin`). Each candidate is
//! *run* (never linked): it prints its version, implementation and real executable. Candidates that are the same executable are kept once;
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

/// Finds the interpreters: those given (`explicit`, each of which must be usable, or
/// [`Error::Usage`]), or every candidate. `Ok` with no interpreters when none is usable.
pub fn find(explicit: &[PathBuf]) -> Result<Found> {
    let default_exe = probe(Path::new("python3")).ok().map(|(_, _, exe)| exe);
    let list = if explicit.is_empty() { obmalloc::candidates() } else { explicit.to_vec() };
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
    fn versions_read_as_major_minor() {
        assert_eq!(parse_major_minor("3.11.2"), Some((3, 11)));
        assert_eq!(parse_major_minor("x"), None);
    }
}
