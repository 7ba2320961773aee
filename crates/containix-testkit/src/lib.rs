//! A real, isolated test node for containix tests and benchmarks.

pub mod containerd;
pub mod cri;
pub mod images;
