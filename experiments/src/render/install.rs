//! Writing a set of pages so that a failure leaves the previous set intact.
//!
//! The pages of docs/ refer to each other (README quotes the verdicts of claims.md, claims.md
//! links the experiment pages, each page links its pictures), so they must change together.
//! Rendering therefore never writes into docs/ directly: it writes the whole set into a
//! staging folder inside docs/ ([`Staging`]), and only when every page and picture is there
//! does [`Staging::install`] move each top-level entry (a page, or a page's picture folder)
//! into place with `rename`, keeping the entry it replaces until the end. If a move fails, the
//! moves already made are undone and the previous entries put back.
//!
//! The staging folder sits inside docs/ rather than beside it: that is the folder that must be
//! writable anyway, and it guarantees that every `rename` stays on one file system.
//!
//! ```
//! # let docs = std::env::temp_dir().join(format!("arenalab-install-doc-{}", std::process::id()));
//! use arenalab::render::install::Staging;
//! let staging = Staging::new(&docs).unwrap();
//! std::fs::write(staging.path().join("page.md"), "# A page\n").unwrap();
//! let installed = staging.install().unwrap();
//! assert_eq!(installed, vec![std::path::PathBuf::from("page.md")]);
//! assert_eq!(std::fs::read_to_string(docs.join("page.md")).unwrap(), "# A page\n");
//! # std::fs::remove_dir_all(&docs).unwrap();
//! ```

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Test hook: `ARENALAB_RENDER_FAULT=install` makes [`Staging::install`] fail after it has moved
/// its first entry into place, so a test can check that the previous pages come back.
pub const FAULT_ENV: &str = "ARENALAB_RENDER_FAULT";

/// Prefix of the staging folder's name (`.render-new-<pid>`), inside docs/.
const STAGING_PREFIX: &str = ".render-new-";
/// Prefix of a replaced entry's name while the new set is moved in (`.render-old-<pid>-<name>`).
const OLD_PREFIX: &str = ".render-old-";

/// Creates `dir` if needed and checks that a file can be created in it (by creating and
/// removing one). A folder that cannot be written is bad input: [`Error::Usage`], naming it.
pub fn check_writable(dir: &Path) -> Result<()> {
    let bad = |e: std::io::Error| {
        Error::Usage(format!(
            "{} is not writable ({e}): choose another folder with --docs, or fix its permissions",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    let probe = dir.join(format!(".arenalab-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(bad)?;
    std::fs::remove_file(&probe).map_err(bad)
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
}

/// A folder the pages are rendered into before they replace the previous ones. Dropping it
/// without [`install`](Staging::install) removes it and leaves docs/ as it was.
#[derive(Debug)]
pub struct Staging {
    docs: PathBuf,
    dir: PathBuf,
    retired: Vec<String>,
}

impl Staging {
    /// Checks that `docs` is writable and creates an empty staging folder in it.
    pub fn new(docs: &Path) -> Result<Staging> {
        check_writable(docs)?;
        let dir = docs.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if dir.exists() {
            remove(&dir).map_err(Error::failed(dir.display()))?;
        }
        std::fs::create_dir(&dir).map_err(Error::failed(dir.display()))?;
        Ok(Staging { docs: docs.to_path_buf(), dir, retired: Vec::new() })
    }

    /// Marks an entry of docs/ (e.g. the picture folder of a page that is no longer rendered)
    /// to be removed when the new set is installed, with the same all-or-nothing guarantee.
    pub fn retire(&mut self, name: &str) {
        self.retired.push(name.to_string());
    }

    /// Where to render the pages: a page `docs/x.md` is written as `path()/x.md`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Moves every top-level entry of the staging folder into docs/, replacing the entry of the
    /// same name (a picture folder is replaced as a whole, so no stale picture stays in it).
    /// Entries of docs/ the staging folder does not have (results/, anything else) are left
    /// alone. Returns the installed entries, relative to docs/, sorted. On failure, docs/ is
    /// put back as it was and the error names the entry that could not be moved.
    pub fn install(self) -> Result<Vec<PathBuf>> {
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&self.dir)
            .map_err(Error::failed(self.dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .map_err(Error::failed(self.dir.display()))?;
        names.sort();
        // Retired entries the new set does not replace: moved aside like a replaced entry, and
        // nothing moved in.
        let retired: Vec<std::ffi::OsString> = self
            .retired
            .iter()
            .map(std::ffi::OsString::from)
            .filter(|n| !names.contains(n) && self.docs.join(n).symlink_metadata().is_ok())
            .collect();
        let fault = std::env::var(FAULT_ENV).is_ok_and(|v| v == "install");
        // (final path, where the entry it replaced was moved, if any), in the order done.
        let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let mut outcome = Ok(());
        for name in names.iter().chain(&retired) {
            let retiring = retired.contains(name);
            if fault && !done.is_empty() {
                outcome = Err(format!("{FAULT_ENV}=install: failing on purpose"));
                break;
            }
            let target = self.docs.join(name);
            let old = target.symlink_metadata().is_ok().then(|| {
                let mut n =
                    std::ffi::OsString::from(format!("{OLD_PREFIX}{}-", std::process::id()));
                n.push(name);
                self.docs.join(n)
            });
            if let Some(old) = &old
                && let Err(e) = std::fs::rename(&target, old)
            {
                outcome = Err(format!("moving {} aside: {e}", target.display()));
                break;
            }
            if retiring {
                done.push((target, old));
                continue;
            }
            if let Err(e) = std::fs::rename(self.dir.join(name), &target) {
                if let Some(old) = &old {
                    let _ = std::fs::rename(old, &target);
                }
                outcome = Err(format!("moving the new {} into place: {e}", target.display()));
                break;
            }
            done.push((target, old));
        }
        if let Err(what) = outcome {
            for (target, old) in done.iter().rev() {
                if target.symlink_metadata().is_ok() {
                    let _ = remove(target);
                }
                if let Some(old) = old {
                    let _ = std::fs::rename(old, target);
                }
            }
            return Err(Error::Failed(format!(
                "{what}; the previous pages in {} are kept as they were",
                self.docs.display()
            )));
        }
        for (_, old) in &done {
            if let Some(old) = old
                && let Err(e) = remove(old)
            {
                eprintln!("arenalab: warning: could not remove {}: {e}", old.display());
            }
        }
        Ok(names.into_iter().map(PathBuf::from).collect())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
