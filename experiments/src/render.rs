//! Shared rendering helpers. (SKELETON)
