//! The arenalab program's library: experiments run in child processes, results JSON, rendering.
//!
//! (Front page to be written.)

pub mod bench_report;
pub mod cli;
pub mod error;
pub mod exit;
pub mod measure;
pub mod pool;
pub mod procs;
pub mod render;
pub mod report;
pub mod results;
pub mod retention;
pub mod site;
pub mod tour;
