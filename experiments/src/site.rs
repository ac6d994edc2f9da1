//! The pages that gather the experiments: docs/README.md (the index), docs/claims.md and
//! docs/allocators.md. Every figure comes from the results files.

use crate::error::Result;
use std::path::{Path, PathBuf};

/// Every results file that exists.
#[derive(Debug, Default)]
pub struct Results {
    /// docs/results/retention.json.
    pub retention: Option<crate::retention::RetentionResults>,
    /// docs/results/exit.json.
    pub exit: Option<crate::exit::ExitResults>,
    /// docs/results/pymalloc.json.
    pub tour: Option<crate::tour::TourResults>,
    /// docs/results/benchmarks.json.
    pub bench: Option<crate::bench_report::BenchResults>,
}

/// Writes the gathering pages. (Being written.)
pub fn render(_r: &Results, _docs: &Path) -> Result<Vec<PathBuf>> {
    Ok(Vec::new())
}
