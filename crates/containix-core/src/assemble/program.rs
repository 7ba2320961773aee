//! Finding the program a container runs, inside its closure.
//!
//! A program is found when its path, and every symlink on the way to the final file, lies in a
//! member of the closure: only the closure is mounted, so anything else would not exist in the
//! container.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::assemble::store_facts::{Entry, Outcome, StoreFacts, resolve_within};
use crate::store::members::Members;
use crate::store::store_path::{STORE_DIR, StorePath};

/// Why no program could be found.
#[derive(Debug, Error)]
pub enum ProgramError {
    /// The program is in none of the places searched.
    #[error("{what} {program:?} was not found in the closure; looked in {}", Searched(.searched))]
    NotFound {
        /// Which input named the program (entrypoint annotation, command, main program).
        what: &'static str,
        /// The name or path looked for.
        program: String,
        /// The directories or paths searched, in order.
        searched: Vec<PathBuf>,
    },
    /// The path exists but is not an executable regular file.
    #[error("{what} {path:?} is {found}, not an executable file")]
    NotExecutable {
        /// Which input named the program.
        what: &'static str,
        /// The path found.
        path: PathBuf,
        /// What is there instead.
        found: &'static str,
    },
    /// The path, or a symlink on the way, leads outside the closure.
    #[error("{what} {path:?} leads to {outside:?}, which is not in the closure")]
    OutsideClosure {
        /// Which input named the program.
        what: &'static str,
        /// The path asked for.
        path: PathBuf,
        /// The first path on the way that no closure member holds.
        outside: PathBuf,
    },
    /// The entrypoint annotation is not a usable path or name.
    #[error("entrypoint {value:?} {reason}")]
    InvalidEntrypoint {
        /// The value given.
        value: String,
        /// What is wrong and what was expected.
        reason: &'static str,
    },
    /// Nothing says what to run.
    #[error(
        "nothing to run: the pod sets no command, there is no entrypoint annotation and the package has no main program (meta.mainProgram or pname)"
    )]
    NothingToRun,
    /// The store could not be read.
    #[error("reading {path:?} in the store: {source}")]
    Store {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

struct Searched<'a>(&'a [PathBuf]);

impl fmt::Display for Searched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nowhere (no root output has a bin directory)");
        }
        for (i, path) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", path.display())?;
        }
        Ok(())
    }
}

/// The `bin` directories of the given roots that exist in the store, in order.
pub fn bin_dirs(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    roots: &[StorePath],
) -> Result<Vec<PathBuf>, ProgramError> {
    let mut dirs = Vec::new();
    for root in roots {
        let dir = root.as_path().join("bin");
        let outcome = resolve_within(view, &dir, &within_closure(closure)).map_err(|source| {
            ProgramError::Store {
                path: dir.clone(),
                source,
            }
        })?;
        if matches!(outcome, Outcome::Found(found) if found.entry == Entry::Directory) {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

/// The entries of a `PATH` value that lie inside closure members: the only ones that exist in
/// a container whose rootfs holds nothing but the closure.
pub fn closure_path_dirs(closure: &dyn Members, path_value: &str) -> Vec<PathBuf> {
    path_value
        .split(':')
        .filter(|dir| {
            StorePath::parse_prefix(dir).is_ok_and(|(member, _)| closure.contains(&member))
        })
        .map(PathBuf::from)
        .collect()
}

/// Looks `name` (no `/`) up in `dirs`, like a shell does, and returns the first executable found.
pub fn find_on_path(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    what: &'static str,
    name: &str,
    dirs: &[PathBuf],
) -> Result<PathBuf, ProgramError> {
    for dir in dirs {
        let candidate = dir.join(name);
        if check_program(view, closure, what, &candidate)? {
            return Ok(candidate);
        }
    }
    Err(ProgramError::NotFound {
        what,
        program: name.into(),
        searched: dirs.to_vec(),
    })
}

/// Finds the entrypoint annotation's program: an absolute path inside a root output such as
/// `/bin/app` (roots tried in order), a full store path inside the closure, or a bare program name
/// looked up in `dirs`.
pub fn find_entrypoint(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    roots: &[StorePath],
    value: &str,
    dirs: &[PathBuf],
) -> Result<PathBuf, ProgramError> {
    const WHAT: &str = "entrypoint";
    let invalid = |reason| ProgramError::InvalidEntrypoint {
        value: value.into(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid(
            "is empty; expected a path inside the package such as /bin/app or a program name",
        ));
    }
    if value.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let path = Path::new(value);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(
            "contains '..'; expected a path inside the package such as /bin/app",
        ));
    }
    if !value.contains('/') {
        return find_on_path(view, closure, WHAT, value, dirs);
    }
    if !path.is_absolute() {
        return Err(invalid(
            "is a relative path; expected an absolute path inside the package such as /bin/app, or a bare program name",
        ));
    }
    if value.starts_with(&format!("{STORE_DIR}/")) {
        if check_program(view, closure, WHAT, path)? {
            return Ok(path.to_path_buf());
        }
        return Err(ProgramError::NotFound {
            what: WHAT,
            program: value.into(),
            searched: vec![path.to_path_buf()],
        });
    }
    let inside = value.trim_start_matches('/');
    let mut searched = Vec::new();
    for root in roots {
        let candidate = root.as_path().join(inside);
        if check_program(view, closure, WHAT, &candidate)? {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(ProgramError::NotFound {
        what: WHAT,
        program: value.into(),
        searched,
    })
}

/// Whether `path` is an executable file reached only through closure members. `Ok(false)` when
/// nothing is there; an error when something is there but cannot be run in the container.
pub fn check_program(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    what: &'static str,
    path: &Path,
) -> Result<bool, ProgramError> {
    let outcome = resolve_within(view, path, &within_closure(closure)).map_err(|source| {
        ProgramError::Store {
            path: path.into(),
            source,
        }
    })?;
    let found = match outcome {
        Outcome::Missing => return Ok(false),
        Outcome::Outside(outside) => {
            return Err(ProgramError::OutsideClosure {
                what,
                path: path.into(),
                outside,
            });
        }
        Outcome::Found(found) => found,
    };
    match found.entry {
        Entry::File { executable: true } => Ok(true),
        Entry::File { executable: false } => Err(ProgramError::NotExecutable {
            what,
            path: path.into(),
            found: "a file without execute permission",
        }),
        Entry::Directory => Err(ProgramError::NotExecutable {
            what,
            path: path.into(),
            found: "a directory",
        }),
        Entry::Symlink { .. } => unreachable!("resolution follows every symlink"),
    }
}

/// The paths a container running only `closure` can see under the store: the store directory,
/// its parents, and everything inside closure members.
pub fn within_closure(closure: &dyn Members) -> impl Fn(&Path) -> bool + '_ {
    |path| {
        Path::new(STORE_DIR).starts_with(path)
            || path
                .to_str()
                .and_then(|text| StorePath::parse_prefix(text).ok())
                .is_some_and(|(member, _)| closure.contains(&member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::plan::fixtures::{example, store_path};

    #[test]
    fn bin_dirs_are_the_roots_that_have_one() {
        let ex = example();
        let roots = [ex.app.clone(), ex.data.clone(), ex.cacert.clone()];
        let dirs = bin_dirs(&ex.store, &ex.resolved.closure, &roots).unwrap();
        assert_eq!(dirs, [ex.app.as_path().join("bin")]);
    }

    #[test]
    fn only_closure_dirs_of_a_path_are_searched() {
        let ex = example();
        let value = format!(
            "/usr/bin:{}/bin:{}/bin::relative:{}/sbin",
            ex.lib,
            store_path("elsewhere"),
            ex.app
        );
        assert_eq!(
            closure_path_dirs(&ex.resolved.closure, &value),
            [ex.lib.as_path().join("bin"), ex.app.as_path().join("sbin")]
        );
    }

    #[test]
    fn shell_lookup_takes_the_first_match() {
        let ex = example();
        let store = ex.store.clone().file(format!("{}/bin/app", ex.lib), true);
        let dirs = [ex.lib.as_path().join("bin"), ex.app.as_path().join("bin")];
        let found = find_on_path(&store, &ex.resolved.closure, "command", "app", &dirs).unwrap();
        assert_eq!(found, ex.lib.as_path().join("bin/app"));
        let err = find_on_path(&store, &ex.resolved.closure, "command", "nope", &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "command \"nope\" was not found in the closure; looked in nowhere (no root output has a bin directory)"
        );
    }
}
