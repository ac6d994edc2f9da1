//! The "give memory back" call: [`Release`].

use serde::{Deserialize, Serialize};

/// What [`Allocator::release`](crate::Allocator::release) did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Release {
    /// The allocator's release call was made.
    Called {
        /// The call, e.g. `malloc_trim(0)` or `mi_collect(true)`.
        call: String,
        /// What it answered, e.g. `returned 1 (memory was released)`.
        outcome: String,
    },
    /// The call was made and reported an error.
    Failed {
        /// The call that failed.
        call: String,
        /// The error it reported.
        error: String,
    },
    /// The allocator has no such call.
    NotAvailable {
        /// Why, and what it does instead.
        reason: String,
    },
}

impl Release {
    /// The call's name, or `None` when there is none.
    pub fn call(&self) -> Option<&str> {
        match self {
            Release::Called { call, .. } | Release::Failed { call, .. } => Some(call),
            Release::NotAvailable { .. } => None,
        }
    }

    /// Whether the call was made and succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self, Release::Called { .. })
    }
}

impl core::fmt::Display for Release {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Release::Called { call, outcome } => write!(f, "{call}: {outcome}"),
            Release::Failed { call, error } => write!(f, "{call} failed: {error}"),
            Release::NotAvailable { reason } => write!(f, "no release call: {reason}"),
        }
    }
}
