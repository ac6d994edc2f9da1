//! The seed workloads recorded by `arenalab report`, and docs/trace.md.
