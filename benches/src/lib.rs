//! Shared benchmark helpers. (SKELETON)
