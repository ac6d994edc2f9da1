//! `--preset LAYOUT` and `--python PATH`: which pymalloc layout the model runs with, for every
//! subcommand that runs it (`retention`, `tour`).
//!
//! The layouts are [`pymalloc::Layout`]s, named by geometry rather than by CPython version (a
//! distributor's 3.6 may carry a later layout). `--python PATH` asks that interpreter which
//! layout it has, with the same probe `arenalab trace` uses ([`crate::trace::python::Python`]).
//! Without either flag the model runs with [`lineup::DEFAULT_PYMALLOC_LAYOUT`] (CPython 3.10+).

use crate::error::{Error, Result};
use pymalloc::Layout;
use std::path::PathBuf;

/// The two flags, flattened into a subcommand's arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct PresetArgs {
    /// pymalloc layout of the model: 64c-4k-256k, 32c-4k-256k, 32c-4k-256k-keep or
    /// 32c-16k-1m-keep (the default, CPython 3.10+).
    #[arg(long, value_name = "LAYOUT", conflicts_with = "python",
        value_parser = crate::cli::choice("--preset", &Layout::ALL, Layout::name))]
    pub preset: Option<Layout>,
    /// Take the model's layout from this CPython interpreter (its version and the class count
    /// of `sys._debugmallocstats()`).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

impl PresetArgs {
    /// The layout these flags choose. A `--python` that is not a CPython 3, has no pymalloc
    /// or has a layout arenalab does not model is an [`Error::Usage`] (exit code 2).
    pub fn layout(&self) -> Result<Layout> {
        if let Some(layout) = self.preset {
            return Ok(layout);
        }
        let Some(path) = &self.python else {
            return Ok(lineup::DEFAULT_PYMALLOC_LAYOUT);
        };
        use crate::trace::python::Recordable;
        let python = crate::trace::python::Python::probe(path)?;
        let name = format!("{} ({})", python.executable.display(), python.version_string());
        if !python.pymalloc {
            return Err(Error::Usage(format!(
                "--python {}: {name} is built without pymalloc, so it has no layout to model",
                path.display()
            )));
        }
        python.layout().ok_or_else(|| {
            Error::Usage(format!(
                "--python {}: {name} reports {} size classes, a layout arenalab does not model \
                 (it models {})",
                path.display(),
                python.classes,
                names()
            ))
        })
    }
}

/// `64c-4k-256k, 32c-4k-256k, ...`: every layout's name, for messages and help.
pub fn names() -> String {
    Layout::ALL.map(Layout::name).join(", ")
}

/// The help paragraph both subcommands print: every layout, what it is, which CPythons have it,
/// and the default.
pub fn help() -> String {
    let mut out = String::from(
        "Layouts (--preset LAYOUT, or --python PATH to take the layout of that interpreter; \
         not both):\n",
    );
    for l in Layout::ALL {
        let default = if l == lineup::DEFAULT_PYMALLOC_LAYOUT { " (default)" } else { "" };
        out.push_str(&format!("  --preset {}{default}: {}\n", l.name(), describe(l)));
    }
    out
}

/// `32 size classes, 16 KiB pools, 1 MiB arenas, the last empty arena kept: CPython 3.10 and
/// later`: what a layout is, from its config.
pub fn describe(l: Layout) -> String {
    let c = l.config();
    let bytes = |b: usize| {
        if b >= 1 << 20 { format!("{} MiB", b >> 20) } else { format!("{} KiB", b >> 10) }
    };
    format!(
        "{} size classes, {} pools, {} arenas, the last empty arena {}: CPython {}",
        c.num_classes(),
        bytes(c.pool_size()),
        bytes(c.arena_size()),
        if c.keep_last_empty_arena() { "kept" } else { "released" },
        l.releases()
    )
}
