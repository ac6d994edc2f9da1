//! /proc probes. (SKELETON)
