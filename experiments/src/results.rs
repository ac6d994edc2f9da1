//! The results files: where they live and the machine-and-date header every one carries.
//!
//! Measuring writes `docs/results/<experiment>.json`; rendering reads only those files.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// Where a results file came from: the command, the machine and the date.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The command line that measured it, e.g. `arenalab report`.
    pub command: String,
    /// UTC date and time of the run, `YYYY-MM-DD HH:MM UTC`.
    pub date: String,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// MemTotal in bytes.
    pub mem_total_bytes: u64,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// glibc version the program runs against.
    pub glibc: String,
    /// arenalab's version.
    pub arenalab_version: String,
}

impl Meta {
    /// Describes this machine now.
    pub fn collect(command: &str) -> Meta {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Meta {
            command: command.to_string(),
            date: utc_now(),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_bytes,
            kernel,
            glibc: glibc_version(),
            arenalab_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// One line for a page header: "2026-11-24 11:30 UTC on Intel(R) ... (2 cores, 23.4 GiB), Linux 6.1".
    pub fn describe(&self) -> String {
        format!(
            "{} on {} ({} cores, {:.1} GiB RAM), Linux {}, glibc {}",
            self.date,
            self.cpu,
            self.cores,
            self.mem_total_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.glibc
        )
    }
}

fn utc_now() -> String {
    // SAFETY: time(NULL) only reads the clock.
    let t = unsafe { libc::time(core::ptr::null_mut()) };
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { core::mem::zeroed() };
    // SAFETY: both pointers are to live locals; gmtime_r is the re-entrant form.
    unsafe { libc::gmtime_r(&t, &mut tm) };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    let p = unsafe { gnu_get_libc_version() };
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null, static, NUL-terminated (glibc's contract).
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

unsafe extern "C" {
    fn gnu_get_libc_version() -> *const core::ffi::c_char;
}

/// The docs/ folder of the workspace this binary was built from.
pub fn default_docs_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("docs")
}

/// `docs/results/<name>.json`.
pub fn results_path(docs: &Path, name: &str) -> PathBuf {
    docs.join("results").join(format!("{name}.json"))
}

/// A results document as pretty JSON with a final newline: what `save` writes and `--json`
/// prints.
pub fn to_json<T: Serialize>(value: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Failed(format!("serialising results: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// Writes a results document as pretty JSON, creating docs/results/ if needed.
pub fn save<T: Serialize>(docs: &Path, name: &str, value: &T) -> Result<PathBuf> {
    let path = results_path(docs, name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::failed(dir.display()))?;
    }
    let text = to_json(value)?;
    std::fs::write(&path, text).map_err(Error::failed(path.display()))?;
    Ok(path)
}

/// What a reader whose results file cannot be used should do.
pub const REMEDY: &str = "re-measure with `arenalab report`, or restore the committed copy with `git checkout docs/results`";

/// A results document that can say whether it is fit to render.
///
/// `serde` checks the shape of a results file (the fields and their types); `check` checks
/// what the renderers rely on beyond that: names they turn into file names, phases they index,
/// counts they divide by. A document that passes renders without a panic.
pub trait Checked {
    /// `Err` with what is wrong, in a few words, when the document cannot be rendered.
    fn check(&self) -> std::result::Result<(), String>;
}

/// Checks that `name` is a plain slug (`a-z`, `0-9`, `-`, `_`): safe as a file name.
pub fn check_slug(what: &str, name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(format!("{what} {name:?} is not a plain name (a-z, 0-9, -, _)")) }
}

/// Reads and checks a results document; `Ok(None)` when the file does not exist.
///
/// A file that is not JSON, JSON of the wrong shape, or a document that fails its
/// [`Checked::check`] is bad input ([`Error::Usage`], exit code 2): the message names the file,
/// what is wrong and what to do ([`REMEDY`]).
pub fn load<T: DeserializeOwned + Checked>(docs: &Path, name: &str) -> Result<Option<T>> {
    let path = results_path(docs, name);
    let bad = |what: String| Error::Usage(format!("{}: {what}; {REMEDY}", path.display()));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(format!("cannot be read ({e})"))),
    };
    let value: T = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a {name} results document ({e})")))?;
    value.check().map_err(|what| bad(format!("cannot be rendered: {what}")))?;
    Ok(Some(value))
}
