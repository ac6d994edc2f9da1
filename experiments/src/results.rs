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

/// Reads a results document; `Ok(None)` when the file does not exist.
pub fn load<T: DeserializeOwned>(docs: &Path, name: &str) -> Result<Option<T>> {
    let path = results_path(docs, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Failed(format!("{}: {e}", path.display()))),
    }
}
