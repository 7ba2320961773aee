//! A real, isolated test node for containix tests and benchmarks.
