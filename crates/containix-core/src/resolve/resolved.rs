//! The outcome of resolving a request: root outputs, their closure and the program to run.

use serde::{Deserialize, Serialize};

use crate::store::closure::Closure;
use crate::store::store_path::StorePath;

/// A request resolved to store paths that are valid in the local store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Root outputs in the order the request named them; the first is the main package.
    pub roots: Vec<StorePath>,
    /// The closure of the roots.
    pub closure: Closure,
    /// The program a container runs when neither the pod nor an entrypoint annotation says:
    /// the package's `meta.mainProgram`, else its `pname`, else its name.
    pub main_program: Option<String>,
    /// The package's name (`pname` or `name`), for logs and the SBOM.
    pub package_name: Option<String>,
    /// The package's version, when the evaluation gave one.
    pub package_version: Option<String>,
}
