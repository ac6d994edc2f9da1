//! Child processes: spawned, killed and reaped. (SKELETON)
