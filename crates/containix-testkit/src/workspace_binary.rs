//! Finding a binary the workspace built, for tests and benchmarks that run it.

use std::path::PathBuf;

/// The built binary `name`: the path in `$env_var` if set, else `name` in the cargo target dir
/// the running executable was built into (`target/<profile>/`, the parent of `deps/` for test
/// binaries), which holds it after `cargo build --workspace --bins`. `None` if neither exists.
pub fn find_workspace_binary(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
