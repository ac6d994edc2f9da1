//! One module per allocator: how to read its statistics, release its memory and set its knobs.
//! Every call into an allocator's C interface lives here.

pub(crate) mod glibc;
pub(crate) mod jemalloc;
pub(crate) mod mimalloc;
pub(crate) mod pymalloc;
