//! Run-time settings of the allocators: [`Knob`] and [`KnobError`].

use crate::Allocator;
use serde::Serialize;

/// A setting a user would turn to change when an allocator gives memory back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Knob {
    /// The allocator's own name for it, e.g. `M_TRIM_THRESHOLD` or `dirty_decay_ms`.
    pub name: &'static str,
    /// What it changes.
    pub description: &'static str,
    /// Unit of the value: `bytes` or `ms`.
    pub unit: &'static str,
    /// The allocator's built-in default, when it is a fixed number.
    pub default: Option<i64>,
    /// Smallest accepted value.
    pub min: i64,
    /// Largest accepted value.
    pub max: i64,
}

/// Why [`Allocator::set_knob`] changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KnobError {
    /// The allocator has no knob by that name.
    #[error("{allocator} has no knob named {name:?} (its knobs: {known})")]
    Unknown {
        /// The allocator asked.
        allocator: Allocator,
        /// The name asked for.
        name: String,
        /// Its knobs, comma-separated (`none` for pymalloc).
        known: String,
    },
    /// The value is out of range or the allocator refused it.
    #[error("{allocator} rejected {name} = {value}: {reason}")]
    Rejected {
        /// The allocator asked.
        allocator: Allocator,
        /// The knob.
        name: String,
        /// The value refused.
        value: i64,
        /// Why.
        reason: String,
    },
}
