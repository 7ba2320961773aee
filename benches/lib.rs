//! Benchmarks of containix. Each benchmark is a `[[bench]]` target in `benches/Cargo.toml` and
//! reports its figures next to a baseline measured in the same run.
