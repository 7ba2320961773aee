//! Integration and end-to-end tests of containix. Each test file is a `[[test]]` target in
//! `tests/Cargo.toml`; the real node they run against comes from `containix-testkit`.
