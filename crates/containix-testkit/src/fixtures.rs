//! The example flake and the fixture flakes, built offline through the test node's daemon.
//!
//! Every flake is copied to a temporary directory before it is built, together with a copy of
//! the static busybox at `bb/busybox` (its only tool, never committed). Building a copy keeps the
//! repository untouched (Nix never writes a lock file or reads a stale `bb/` there), makes
//! concurrent builds independent, and since Nix stores `path:` flakes by content, every copy of
//! the same flake evaluates to the same store paths.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::nix_cli::NixCommand;
use crate::nix_daemon::NixDaemon;
use crate::packages;

/// The exit status of the [`Fixture::ExitCode`] program.
pub const EXIT_CODE_FIXTURE_STATUS: i32 = 3;

/// A flake the tests build: the project's example or one of `tests/fixtures/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fixture {
    /// `examples/hello`: `bin/hello` prints a greeting read from a second store path.
    /// Closure: hello, its greeting, busybox.
    Hello,
    /// `tests/fixtures/diamond`: five levels with a diamond (top -> left, right -> base -> leaf).
    Diamond,
    /// `tests/fixtures/file-and-symlink`: the closure holds a store path that is a regular file
    /// and one that is a symlink to it.
    FileAndSymlink,
    /// `tests/fixtures/no-main-program`: two programs, no `meta.mainProgram`.
    NoMainProgram,
    /// `tests/fixtures/exit-code`: a program that exits with [`EXIT_CODE_FIXTURE_STATUS`].
    ExitCode,
    /// `tests/fixtures/build-log`: a build that prints [`BUILD_LOG_MARKER`] and the salt
    /// (package `default`), and one that prints two lines and fails (package `broken`). Meant
    /// for [`Fixture::unbuilt_isolated`], so that the build runs where a test watches it.
    BuildLog,
}

/// What the [`Fixture::BuildLog`] build prints, followed by the salt of its unbuilt copy.
pub const BUILD_LOG_MARKER: &str = "build-log marker";

/// The last line the [`Fixture::BuildLog`] `broken` build prints, followed by the salt.
pub const BUILD_LOG_LAST_WORDS: &str = "build-log broken: last words";

impl Fixture {
    /// Every fixture.
    pub const ALL: [Fixture; 6] = [
        Fixture::Hello,
        Fixture::Diamond,
        Fixture::FileAndSymlink,
        Fixture::NoMainProgram,
        Fixture::ExitCode,
        Fixture::BuildLog,
    ];

    /// The name of the flake's directory.
    pub fn name(self) -> &'static str {
        match self {
            Fixture::Hello => "hello",
            Fixture::Diamond => "diamond",
            Fixture::FileAndSymlink => "file-and-symlink",
            Fixture::NoMainProgram => "no-main-program",
            Fixture::ExitCode => "exit-code",
            Fixture::BuildLog => "build-log",
        }
    }

    /// The flake's directory in the repository.
    pub fn source_dir(self) -> PathBuf {
        match self {
            Fixture::Hello => repo_root().join("examples/hello"),
            other => repo_root().join("tests/fixtures").join(other.name()),
        }
    }

    /// The default package's `meta.mainProgram`, as the flake declares it.
    pub fn main_program(self) -> Option<&'static str> {
        match self {
            Fixture::Hello => Some("hello"),
            Fixture::Diamond => Some("diamond"),
            Fixture::FileAndSymlink => Some("show-data"),
            Fixture::NoMainProgram => None,
            Fixture::ExitCode => Some("fail"),
            Fixture::BuildLog => Some("marker"),
        }
    }

    /// Builds the default package for this machine's system.
    ///
    /// Its store paths are shared with every other build of this fixture, so do not delete
    /// them; use [`Fixture::build_isolated`] for that.
    pub fn build(self) -> Result<Built> {
        self.build_package("default")
    }

    /// Builds `packages.<system>.<package>` of the flake.
    pub fn build_package(self, package: &str) -> Result<Built> {
        build(self, package, None)
    }

    /// Builds the default package with every store path private to this build (busybox's store
    /// copy gets a unique name, which changes every derivation), so a test may delete them.
    /// Not available for [`Fixture::Hello`], whose example flake stays free of test plumbing.
    pub fn build_isolated(self) -> Result<Built> {
        if self == Fixture::Hello {
            return Err(Error::InvalidInput {
                field: "fixture",
                expected: "a fixture under tests/fixtures (the example flake cannot be isolated)",
                got: self.name().into(),
            });
        }
        build(self, "default", Some(unique_salt()))
    }

    /// A copy of the flake with a unique salt (as [`Fixture::build_isolated`]) whose source is
    /// in the store but whose packages are not built: the first one to ask for a package (a
    /// pod, `containix resolve`) runs its build. Not available for [`Fixture::Hello`].
    pub fn unbuilt_isolated(self) -> Result<Unbuilt> {
        if self == Fixture::Hello {
            return Err(Error::InvalidInput {
                field: "fixture",
                expected: "a fixture under tests/fixtures (the example flake cannot be isolated)",
                got: self.name().into(),
            });
        }
        NixDaemon::start_or_reuse()?;
        let salt = unique_salt();
        let work = copy_to_temp(self, Some(&salt))?;
        Ok(Unbuilt {
            flake_source: add_source_to_store(work.path())?,
            salt,
            system: current_system()?,
        })
    }
}

/// A salted copy of a fixture flake, in the store but not built ([`Fixture::unbuilt_isolated`]).
#[derive(Debug, Clone)]
pub struct Unbuilt {
    /// The store path of the flake's source.
    pub flake_source: PathBuf,
    /// The copy's salt: part of its busybox's store name and of what its builds print.
    pub salt: String,
    system: &'static str,
}

impl Unbuilt {
    /// A flake reference to `packages.<system>.<package>` of this copy.
    pub fn flake_ref(&self, package: &str) -> String {
        format!(
            "path:{}#packages.{}.{package}",
            self.flake_source.display(),
            self.system
        )
    }

    /// Deletes from the store this copy's source, its busybox and everything that refers to
    /// that busybox (derivations and outputs built from it), as far as they are present.
    pub fn delete_from_store(&self) -> Result<()> {
        let suffix = format!("-busybox{}", self.salt);
        let store = Path::new("/nix/store");
        let entries = fs::read_dir(store).map_err(|err| Error::io_at("reading", store, err))?;
        let busybox: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.to_string_lossy().ends_with(&suffix))
            .collect();
        let mut doomed: Vec<PathBuf> = Vec::new();
        if !busybox.is_empty() {
            doomed = NixCommand::nix_store()
                .args(["--query", "--referrers-closure"])
                .args(&busybox)
                .run_lines()?
                .into_iter()
                .map(PathBuf::from)
                .collect();
        }
        if is_valid_path(&self.flake_source)? {
            doomed.push(self.flake_source.clone());
        }
        if !doomed.is_empty() {
            release_roots_of(&doomed)?;
            NixCommand::nix_store().arg("--delete").args(doomed).run()?;
        }
        Ok(())
    }
}

/// The example flake's default package, built.
pub fn example_hello() -> Result<Built> {
    Fixture::Hello.build()
}

/// A built flake package and its closure.
#[derive(Debug, Clone)]
pub struct Built {
    /// Which flake was built.
    pub fixture: Fixture,
    /// The store path of the flake's source (a `path:` flake ref to it works offline).
    pub flake_source: PathBuf,
    /// The attribute that was built, e.g. `packages.x86_64-linux.default`.
    pub attr: String,
    /// The derivation.
    pub drv_path: PathBuf,
    /// The `out` output.
    pub out_path: PathBuf,
    /// Every store path `out_path` needs at run time (`nix-store -qR`), sorted.
    pub closure: Vec<PathBuf>,
    /// For isolated builds, every store path the build created (see
    /// [`Built::created_store_paths`]).
    created: Option<Vec<PathBuf>>,
}

impl Built {
    /// A flake reference to the built package that works offline while the flake source stays
    /// in the store: `path:/nix/store/...-source#packages.<system>.<name>`.
    pub fn flake_ref(&self) -> String {
        format!("path:{}#{}", self.flake_source.display(), self.attr)
    }

    /// The closure member whose name (after the hash) is `name`, e.g. `hello-1.0`.
    pub fn closure_member(&self, name: &str) -> Option<&Path> {
        self.closure
            .iter()
            .find(|path| store_path_name(path) == Some(name))
            .map(PathBuf::as_path)
    }

    /// The path to the package's main program, if it declares one.
    pub fn main_program_path(&self) -> Option<PathBuf> {
        self.fixture
            .main_program()
            .map(|program| self.out_path.join("bin").join(program))
    }

    /// Whether this came from [`Fixture::build_isolated`].
    pub fn is_isolated(&self) -> bool {
        self.created.is_some()
    }

    /// Every store path this build created, as recorded right after it: the closure, the
    /// derivations and their sources, and the flake source. Only for isolated builds (other
    /// builds share their paths).
    pub fn created_store_paths(&self) -> Result<&[PathBuf]> {
        self.created.as_deref().ok_or_else(|| Error::InvalidInput {
            field: "built",
            expected: "an isolated build (Fixture::build_isolated)",
            got: self.attr.clone(),
        })
    }

    /// Deletes from the store whatever an isolated build created and is still there
    /// (`nix-store --delete`).
    pub fn delete_from_store(&self) -> Result<()> {
        let mut present = Vec::new();
        for path in self.created_store_paths()? {
            if is_valid_path(path)? {
                present.push(path);
            }
        }
        if !present.is_empty() {
            let owned: Vec<PathBuf> = present.iter().map(|p| (*p).clone()).collect();
            release_roots_of(&owned)?;
            NixCommand::nix_store()
                .arg("--delete")
                .args(present)
                .run()?;
        }
        Ok(())
    }
}

/// Removes the GC root symlinks outside the Nix state directory that point at `paths` (a test
/// node's evaluation cache keeps the derivations it evaluated as roots while its state
/// directory exists). Only for paths private to one test, which no one else roots.
pub fn release_roots_of(paths: &[PathBuf]) -> Result<()> {
    let roots = NixCommand::nix_store()
        .args(["--gc", "--print-roots"])
        .run_lines()?;
    for line in roots {
        let Some((link, target)) = line.split_once(" -> ") else {
            continue;
        };
        let link = Path::new(link);
        if paths.iter().any(|p| p.as_os_str() == target)
            && !link.starts_with("/nix/var")
            && !link.starts_with("/proc")
            && fs::symlink_metadata(link).is_ok_and(|meta| meta.file_type().is_symlink())
        {
            fs::remove_file(link).map_err(|err| Error::io_at("removing", link, err))?;
        }
    }
    Ok(())
}

/// References of a store path (`nix-store -q --references`), sorted.
pub fn query_references(path: &Path) -> Result<Vec<PathBuf>> {
    let mut refs: Vec<PathBuf> = NixCommand::nix_store()
        .args(["--query", "--references"])
        .arg(path)
        .run_lines()?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    refs.sort();
    Ok(refs)
}

/// The closure of store paths (`nix-store -qR`), sorted.
pub fn query_requisites(paths: &[&Path]) -> Result<Vec<PathBuf>> {
    let mut closure: Vec<PathBuf> = NixCommand::nix_store()
        .args(["--query", "--requisites"])
        .args(paths)
        .run_lines()?
        .into_iter()
        .map(PathBuf::from)
        .collect();
    closure.sort();
    Ok(closure)
}

/// Whether the daemon considers `path` valid (present and registered).
pub fn is_valid_path(path: &Path) -> Result<bool> {
    match NixCommand::nix_store()
        .arg("--check-validity")
        .arg(path)
        .run()
    {
        Ok(_) => Ok(true),
        Err(Error::CommandFailed { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The name part of a store path (`/nix/store/<hash>-<name>` gives `<name>`).
pub fn store_path_name(path: &Path) -> Option<&str> {
    let base = path.file_name()?.to_str()?;
    base.split_once('-').map(|(_, name)| name)
}

/// The Nix system of this machine: `x86_64-linux` or `aarch64-linux`.
pub fn current_system() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("x86_64-linux"),
        "aarch64" => Ok("aarch64-linux"),
        other => Err(Error::InvalidInput {
            field: "machine architecture",
            expected: "x86_64 or aarch64 (the systems the flakes support)",
            got: other.into(),
        }),
    }
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/containix-testkit is two levels below the repository root")
        .to_path_buf()
}

/// Puts a copy of the static busybox at `<flake_dir>/bb/busybox` unless an identical one is
/// there (what `scripts/setup-node.sh` does for `examples/hello`).
pub fn install_busybox(flake_dir: &Path) -> Result<PathBuf> {
    let busybox = packages::busybox()?;
    let target = flake_dir.join("bb").join("busybox");
    let source_bytes = fs::read(&busybox).map_err(|err| Error::io_at("reading", &busybox, err))?;
    if fs::read(&target).is_ok_and(|current| current == source_bytes) {
        return Ok(target);
    }
    let dir = flake_dir.join("bb");
    fs::create_dir_all(&dir).map_err(|err| Error::io_at("creating", &dir, err))?;
    fs::copy(&busybox, &target).map_err(|err| Error::io_at("copying busybox to", &target, err))?;
    Ok(target)
}

/// A temporary copy of `fixture`'s flake with busybox and, if given, the salt.
fn copy_to_temp(fixture: Fixture, salt: Option<&str>) -> Result<tempfile::TempDir> {
    let work = tempfile::Builder::new()
        .prefix(&format!("containix-flake-{}-", fixture.name()))
        .tempdir()
        .map_err(|err| Error::io("creating a temporary directory", err))?;
    let flake_dir = work.path();
    copy_flake(&fixture.source_dir(), flake_dir)?;
    install_busybox(flake_dir)?;
    if let Some(salt) = salt {
        let salt_path = flake_dir.join("salt");
        fs::write(&salt_path, salt).map_err(|err| Error::io_at("writing", &salt_path, err))?;
    }
    Ok(work)
}

/// Adds the flake in `flake_dir` to the store (`nix flake metadata`): its source's store path.
fn add_source_to_store(flake_dir: &Path) -> Result<PathBuf> {
    let metadata = NixCommand::nix()
        .args(["flake", "metadata", "--json"])
        .arg(format!("path:{}", flake_dir.display()))
        .run()?;
    Ok(PathBuf::from(json_string(
        &metadata,
        &["path"],
        "nix flake metadata",
    )?))
}

fn build(fixture: Fixture, package: &str, salt: Option<String>) -> Result<Built> {
    NixDaemon::start_or_reuse()?;
    let attr = format!("packages.{}.{package}", current_system()?);
    let work = copy_to_temp(fixture, salt.as_deref())?;
    let flake_source = add_source_to_store(work.path())?;

    let built = NixCommand::nix()
        .args(["build", "--no-link", "--json"])
        .arg(format!("path:{}#{attr}", flake_source.display()))
        .run()?;
    let drv_path = PathBuf::from(json_string(&built, &["0", "drvPath"], "nix build")?);
    let out_path = PathBuf::from(json_string(&built, &["0", "outputs", "out"], "nix build")?);
    let closure = query_requisites(&[out_path.as_path()])?;
    let created = match salt {
        Some(_) => {
            let mut created = closure.clone();
            created.extend(query_requisites(&[drv_path.as_path()])?);
            created.push(flake_source.clone());
            created.sort();
            created.dedup();
            Some(created)
        }
        None => None,
    };
    Ok(Built {
        fixture,
        flake_source,
        attr,
        drv_path,
        out_path,
        closure,
        created,
    })
}

/// Copies the flake's files, leaving out what the harness provides (`bb/`, `salt`) and build
/// results.
fn copy_flake(from: &Path, to: &Path) -> Result<()> {
    let entries = fs::read_dir(from).map_err(|err| Error::io_at("reading", from, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io_at("reading", from, err))?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == "bb" || name_str == "salt" || name_str.starts_with("result") {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        let kind = entry
            .file_type()
            .map_err(|err| Error::io_at("inspecting", &source, err))?;
        if kind.is_dir() {
            fs::create_dir(&target).map_err(|err| Error::io_at("creating", &target, err))?;
            copy_flake(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(|err| Error::io_at("copying", &source, err))?;
        }
    }
    Ok(())
}

/// The string at `path` (object keys, or array indices written as numbers) in JSON `text`.
fn json_string(text: &str, path: &[&str], program: &str) -> Result<String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| Error::UnexpectedOutput {
            program: program.into(),
            detail: format!("not JSON ({err}): {text}"),
        })?;
    let found = path
        .iter()
        .try_fold(&value, |value, key| match key.parse::<usize>() {
            Ok(index) => value.get(index),
            Err(_) => value.get(key),
        });
    found
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::UnexpectedOutput {
            program: program.into(),
            detail: format!("no string at {} in {text}", path.join(".")),
        })
}

/// A suffix no other build uses: `-<pid>x<time>x<counter>` in hex (valid in store path names).
fn unique_salt() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "-{:x}x{nanos:x}x{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_has_a_flake_in_the_repository() {
        for fixture in Fixture::ALL {
            let flake = fixture.source_dir().join("flake.nix");
            assert!(flake.is_file(), "{} is missing", flake.display());
        }
    }

    #[test]
    fn store_path_name_drops_the_hash() {
        let path = Path::new("/nix/store/aw19g83cy5n29va7x1kjbk2058bjpi40-hello-1.0");
        assert_eq!(store_path_name(path), Some("hello-1.0"));
    }

    #[test]
    fn json_string_walks_arrays_and_objects() {
        let text = r#"[{"outputs":{"out":"/nix/store/x-y"}}]"#;
        assert_eq!(
            json_string(text, &["0", "outputs", "out"], "t").unwrap(),
            "/nix/store/x-y"
        );
        assert!(json_string(text, &["1"], "t").is_err());
    }
}
