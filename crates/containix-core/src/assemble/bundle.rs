//! The effectful layer: applying a plan to an OCI bundle on disk.
//!
//! [`prepare_bundle`] reads `config.json`, plans and applies the edits, writes the state
//! directory's files and replaces `config.json` atomically. Every file it creates is first
//! recorded in a manifest inside the state directory, so [`cleanup`] removes exactly what was
//! made, even after a crash half-way. Bad inputs fail before anything is written, and an error
//! while writing undoes what was written.
//!
//! Nothing here is synced to disk. The manifest's order of record-then-create protects against
//! a killed process, whose writes the page cache keeps; it cannot matter after a power loss,
//! which is a reboot: the container is gone then, and the next shim or CSI start sweeps state
//! directories of earlier boots ([`prepared_in_boot`], [`discard`]), whatever their files hold.
//! A container start thus costs no disk flush, which on a node busy writing costs milliseconds
//! each.
//!
//! Only the fields the plan edits (`mounts`, `process.args`, `process.env`) are replaced in
//! `config.json`; every other field is written back as it was read, including fields the
//! `oci-spec` crate does not know.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::assemble::plan::{PlanError, SpecPlan, apply, validate::check_state_dir};
use crate::assemble::view::record::boot_id;

/// The bundle's runtime spec.
pub const CONFIG_FILE: &str = "config.json";

/// Temporary file `config.json` is written to before being renamed over it.
pub const CONFIG_TEMP_FILE: &str = ".config.json.containix";

/// The manifest of host-side effects, inside the state directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The `config.json` containix first read, kept so a second run plans from the same input.
pub const ORIGINAL_CONFIG_FILE: &str = "config.orig.json";

const MANIFEST_TEMP_FILE: &str = ".manifest.json.tmp";

/// Mode of every file written into the state directory: the container's user must read them.
const STATE_FILE_MODE: u32 = 0o644;

/// What containix made on the host for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Whether containix created the state directory (cleanup then removes it).
    pub created_state_dir: bool,
    /// Files created, in order; each is recorded before it is created.
    pub files: Vec<PathBuf>,
    /// The boot the container was prepared in (absent in manifests of containix 0.1): after a
    /// reboot its container is gone, and nothing else would ever clean up after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// The result of [`prepare_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The plan that was applied.
    pub plan: SpecPlan,
    /// The spec now in `config.json`.
    pub spec: Spec,
}

/// Why a bundle could not be prepared or cleaned up.
#[derive(Debug, Error)]
pub enum BundleError {
    /// A file could not be read.
    #[error("reading {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `config.json` (or the saved original) is not a runtime spec.
    #[error("{path:?} is not a valid OCI runtime spec: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// The manifest is not readable JSON.
    #[error("manifest {path:?} is not valid: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A file or directory could not be written or removed.
    #[error("{action} {path:?}: {source}")]
    Write {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The plan was made for another state directory.
    #[error("the plan writes to state directory {planned:?}, but the bundle uses {given:?}")]
    StateDirMismatch {
        /// The plan's state directory.
        planned: PathBuf,
        /// The one given to [`prepare_bundle`].
        given: PathBuf,
    },
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Plans and applies the edits to the bundle at `bundle`: `make_plan` receives the bundle's
/// spec as first read (also on a second run, so edits never stack) and returns the plan.
pub fn prepare_bundle(
    bundle: &Path,
    state_dir: &Path,
    make_plan: impl FnOnce(&Spec) -> Result<SpecPlan, PlanError>,
) -> Result<Prepared, BundleError> {
    check_state_dir(state_dir)?;
    let manifest_path = state_dir.join(MANIFEST_FILE);
    let existing = read_manifest(&manifest_path)?;
    let original_path = state_dir.join(ORIGINAL_CONFIG_FILE);
    let config_path = bundle.join(CONFIG_FILE);
    let rerun = existing.is_some() && original_path.exists();
    let source = if rerun { &original_path } else { &config_path };
    let original_text = fs::read(source).map_err(|source_err| BundleError::Read {
        path: source.clone(),
        source: source_err,
    })?;
    let parse_error = |err| BundleError::Parse {
        path: source.clone(),
        source: err,
    };
    let original: Value = serde_json::from_slice(&original_text).map_err(parse_error)?;
    // Parsed from the text again rather than from `original`: the shim parses specs from bytes
    // too, so the binary holds one copy of the spec types' deserialiser instead of two.
    let base: Spec = serde_json::from_slice(&original_text).map_err(parse_error)?;

    let plan = make_plan(&base)?;
    if plan.state_dir != state_dir {
        return Err(BundleError::StateDirMismatch {
            planned: plan.state_dir,
            given: state_dir.into(),
        });
    }
    let spec = apply(&plan, base);
    let edited = merge_edits(original, &spec);
    let edited_text = serde_json::to_vec_pretty(&edited).expect("a JSON value always serialises");

    let mut effects = Effects {
        state_dir,
        manifest: existing.clone().unwrap_or_else(|| Manifest {
            boot_id: Some(boot_id()),
            ..Manifest::default()
        }),
    };
    let result = effects.perform(
        existing.is_none(),
        (!rerun).then_some(&original_text[..]),
        &plan,
        bundle,
        &edited_text,
    );
    if let Err(err) = result {
        // Undo what this run made; the error that stopped it matters more than a failed undo.
        let _ = cleanup(state_dir);
        return Err(err);
    }
    Ok(Prepared { plan, spec })
}

/// Removes the state directory of a container of an earlier boot whose manifest cannot be
/// read (a power loss can leave it torn, as nothing is synced): everything in it is containix's
/// own, and what the manifest may have recorded outside it (the bundle's temporary
/// `config.json`) went with containerd's bundle at the reboot. Never follows a symlink.
pub fn discard(state_dir: &Path) -> Result<(), BundleError> {
    match fs::remove_dir_all(state_dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(write_error("removing", state_dir)(err))
        }
        _ => Ok(()),
    }
}

/// The boot the container of `state_dir` was prepared in, as its manifest records it; `None`
/// when there is no manifest or it records no boot.
pub fn prepared_in_boot(state_dir: &Path) -> Result<Option<String>, BundleError> {
    Ok(read_manifest(&state_dir.join(MANIFEST_FILE))?.and_then(|manifest| manifest.boot_id))
}

/// Removes everything the manifest in `state_dir` records, then the manifest, then the state
/// directory when containix created it. Safe to call again, and after a crash at any point.
/// `config.json` keeps its edits: the bundle belongs to containerd.
pub fn cleanup(state_dir: &Path) -> Result<(), BundleError> {
    let manifest_path = state_dir.join(MANIFEST_FILE);
    let manifest = read_manifest(&manifest_path)?;
    let Some(manifest) = manifest else {
        // A crash between creating the directory and writing the manifest leaves it empty.
        remove_file(&state_dir.join(MANIFEST_TEMP_FILE))?;
        if fs::read_dir(state_dir).is_ok_and(|mut entries| entries.next().is_none()) {
            remove_dir(state_dir)?;
        }
        return Ok(());
    };
    // Remove as much as possible, then report the first failure.
    let mut first_error = None;
    for file in manifest.files.iter().rev() {
        if let Err(err) = remove_file(file) {
            first_error.get_or_insert(err);
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    remove_file(&state_dir.join(MANIFEST_TEMP_FILE))?;
    remove_file(&manifest_path)?;
    if manifest.created_state_dir {
        remove_dir(state_dir)?;
    }
    Ok(())
}

/// Replaces the fields `apply` edits in the original JSON, keeping all others verbatim.
fn merge_edits(mut original: Value, spec: &Spec) -> Value {
    let edited = serde_json::to_value(spec).expect("a spec always serialises");
    let Value::Object(fields) = &mut original else {
        return edited;
    };
    if let Some(mounts) = edited.get("mounts") {
        fields.insert("mounts".into(), mounts.clone());
    }
    if let (Some(Value::Object(root)), Some(readonly)) = (
        fields.get_mut("root"),
        edited
            .pointer("/root/readonly")
            .filter(|v| v.as_bool() == Some(true)),
    ) {
        root.insert("readonly".into(), readonly.clone());
    }
    if let (Some(Value::Object(process)), Some(edited_process)) =
        (fields.get_mut("process"), edited.get("process"))
    {
        for key in ["args", "env"] {
            if let Some(value) = edited_process.get(key) {
                process.insert(key.into(), value.clone());
            }
        }
    }
    original
}

/// Host-side effects of one run, each recorded in the manifest before it happens.
struct Effects<'a> {
    state_dir: &'a Path,
    manifest: Manifest,
}

impl Effects<'_> {
    fn perform(
        &mut self,
        first_run: bool,
        save_original: Option<&[u8]>,
        plan: &SpecPlan,
        bundle: &Path,
        edited_text: &[u8],
    ) -> Result<(), BundleError> {
        if first_run {
            self.create_state_dir()?;
            self.write_manifest()?;
        }
        if let Some(original_text) = save_original {
            self.create_file(&self.state_dir.join(ORIGINAL_CONFIG_FILE), original_text)?;
        }
        for file in &plan.files {
            self.create_file(&file.host_path(self.state_dir), file.contents.as_bytes())?;
        }
        let temp = bundle.join(CONFIG_TEMP_FILE);
        self.create_file(&temp, edited_text)?;
        let config = bundle.join(CONFIG_FILE);
        fs::rename(&temp, &config).map_err(write_error("replacing", &config))?;
        self.manifest.files.retain(|file| *file != temp);
        self.write_manifest()
    }

    fn create_state_dir(&mut self) -> Result<(), BundleError> {
        if let Some(parent) = self.state_dir.parent() {
            fs::create_dir_all(parent).map_err(write_error("creating", parent))?;
        }
        match fs::create_dir(self.state_dir) {
            Ok(()) => self.manifest.created_state_dir = true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(write_error("creating", self.state_dir)(err)),
        }
        Ok(())
    }

    /// Records `path` in the manifest, then creates it with `contents`, synced to disk. When the
    /// file cannot even be opened, nothing was made and the record is taken back.
    fn create_file(&mut self, path: &Path, contents: &[u8]) -> Result<(), BundleError> {
        let newly_recorded = !self.manifest.files.iter().any(|file| file == path);
        if newly_recorded {
            self.manifest.files.push(path.into());
            self.write_manifest()?;
        }
        let opened = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(STATE_FILE_MODE)
            .open(path);
        let mut file = match opened {
            Ok(file) => file,
            Err(err) => {
                if newly_recorded {
                    self.manifest.files.retain(|file| file != path);
                    self.write_manifest()?;
                }
                return Err(write_error("creating", path)(err));
            }
        };
        file.write_all(contents)
            .map_err(write_error("writing", path))
    }

    /// Writes the manifest atomically (temp file, then rename).
    fn write_manifest(&self) -> Result<(), BundleError> {
        let text = serde_json::to_vec_pretty(&self.manifest).expect("a manifest always serialises");
        let temp = self.state_dir.join(MANIFEST_TEMP_FILE);
        write_new(&temp, &text)?;
        let path = self.state_dir.join(MANIFEST_FILE);
        fs::rename(&temp, &path).map_err(write_error("replacing", &path))
    }
}

fn read_manifest(path: &Path) -> Result<Option<Manifest>, BundleError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(BundleError::Read {
                path: path.into(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| BundleError::Manifest {
            path: path.into(),
            source,
        })
}

fn write_new(path: &Path, contents: &[u8]) -> Result<(), BundleError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(STATE_FILE_MODE)
        .open(path)
        .map_err(write_error("creating", path))?;
    file.write_all(contents)
        .map_err(write_error("writing", path))
}

fn remove_file(path: &Path) -> Result<(), BundleError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(write_error("removing", path)(err))
        }
        _ => Ok(()),
    }
}

fn remove_dir(path: &Path) -> Result<(), BundleError> {
    match fs::remove_dir(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(write_error("removing", path)(err))
        }
        _ => Ok(()),
    }
}

fn write_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BundleError {
    let path = path.to_path_buf();
    move |source| BundleError::Write {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::plan::fixtures::{containerd_spec, example};
    use crate::assemble::plan::{ImageKind, PlanInput, plan};

    struct Dirs {
        _root: tempfile::TempDir,
        bundle: PathBuf,
        state_dir: PathBuf,
    }

    fn dirs(config: &Spec) -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let bundle = root.path().join("bundle");
        fs::create_dir(&bundle).unwrap();
        fs::write(
            bundle.join(CONFIG_FILE),
            serde_json::to_vec(config).unwrap(),
        )
        .unwrap();
        let state_dir = root.path().join("state").join("c1");
        Dirs {
            _root: root,
            bundle,
            state_dir,
        }
    }

    fn planner<'a>(
        entrypoint: Option<&'a str>,
        state_dir: &'a Path,
    ) -> impl FnOnce(&Spec) -> Result<SpecPlan, PlanError> + 'a {
        move |base| {
            let ex = example();
            plan(
                &PlanInput::for_resolved(
                    &ex.resolved,
                    base,
                    entrypoint,
                    ImageKind::Empty,
                    state_dir,
                ),
                &ex.store,
            )
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn prepares_reruns_and_cleans_up() {
        let base = containerd_spec(&["--port", "80"], &[], 1000, true);
        let dirs = dirs(&base);
        let prepared = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(Some("/bin/app"), &dirs.state_dir),
        )
        .unwrap();
        let written: Spec = Spec::load(dirs.bundle.join(CONFIG_FILE)).unwrap();
        assert_eq!(written, prepared.spec);
        let args = written.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(args.len(), 3);
        assert_eq!(listing(&dirs.bundle), [CONFIG_FILE]);
        assert_eq!(
            listing(&dirs.state_dir),
            [ORIGINAL_CONFIG_FILE, "group", MANIFEST_FILE, "passwd"]
        );
        let passwd = fs::read_to_string(dirs.state_dir.join("passwd")).unwrap();
        assert!(passwd.contains(":1000:1000:"));
        let manifest = read_manifest(&dirs.state_dir.join(MANIFEST_FILE))
            .unwrap()
            .unwrap();
        assert!(manifest.created_state_dir);
        assert_eq!(manifest.files.len(), 3);

        // A second run plans from the original spec: the entrypoint is not prepended twice.
        let again = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(Some("/bin/app"), &dirs.state_dir),
        )
        .unwrap();
        assert_eq!(again, prepared);
        assert_eq!(Spec::load(dirs.bundle.join(CONFIG_FILE)).unwrap(), written);

        cleanup(&dirs.state_dir).unwrap();
        assert!(!dirs.state_dir.exists());
        assert!(dirs.state_dir.parent().unwrap().exists());
        cleanup(&dirs.state_dir).unwrap();
        assert_eq!(listing(&dirs.bundle), [CONFIG_FILE]);
    }

    #[test]
    fn bad_inputs_leave_nothing_behind() {
        let base = containerd_spec(&[], &[], 0, false);
        let dirs = dirs(&base);
        let before = fs::read(dirs.bundle.join(CONFIG_FILE)).unwrap();
        for entrypoint in ["/bin/missing", "../app"] {
            let err = prepare_bundle(
                &dirs.bundle,
                &dirs.state_dir,
                planner(Some(entrypoint), &dirs.state_dir),
            )
            .unwrap_err();
            assert!(err.to_string().contains("entrypoint"), "{err}");
        }
        let mut rootless = base.clone();
        rootless.set_root(None);
        fs::write(
            dirs.bundle.join(CONFIG_FILE),
            serde_json::to_vec(&rootless).unwrap(),
        )
        .unwrap();
        let err = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(None, &dirs.state_dir),
        )
        .unwrap_err();
        assert!(err.to_string().contains("has no `root`"), "{err}");
        fs::write(dirs.bundle.join(CONFIG_FILE), b"{not json").unwrap();
        let err = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(None, &dirs.state_dir),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("is not a valid OCI runtime spec"),
            "{err}"
        );
        fs::remove_file(dirs.bundle.join(CONFIG_FILE)).unwrap();
        let err = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(None, &dirs.state_dir),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("reading"), "{err}");
        assert!(!dirs.state_dir.exists());
        assert!(!dirs.state_dir.parent().unwrap().exists());
        assert!(listing(&dirs.bundle).is_empty());

        fs::write(dirs.bundle.join(CONFIG_FILE), &before).unwrap();
        let other = Path::new("/run/elsewhere");
        let err = prepare_bundle(&dirs.bundle, &dirs.state_dir, planner(None, other)).unwrap_err();
        assert!(matches!(err, BundleError::StateDirMismatch { .. }), "{err}");
        assert!(!dirs.state_dir.exists());
        assert_eq!(fs::read(dirs.bundle.join(CONFIG_FILE)).unwrap(), before);
    }

    #[test]
    fn a_failed_write_undoes_exactly_what_was_made() {
        let base = containerd_spec(&[], &[], 0, false);
        let dirs = dirs(&base);
        // The state directory exists already, with someone else's file and a directory where
        // the plan wants to write `group`.
        fs::create_dir_all(dirs.state_dir.join("group")).unwrap();
        fs::write(dirs.state_dir.join("theirs"), "keep").unwrap();
        let before = fs::read(dirs.bundle.join(CONFIG_FILE)).unwrap();
        let err = prepare_bundle(
            &dirs.bundle,
            &dirs.state_dir,
            planner(None, &dirs.state_dir),
        )
        .unwrap_err();
        assert!(err.to_string().contains("group"), "{err}");
        assert_eq!(listing(&dirs.state_dir), ["group", "theirs"]);
        assert_eq!(fs::read(dirs.bundle.join(CONFIG_FILE)).unwrap(), before);
        assert_eq!(listing(&dirs.bundle), [CONFIG_FILE]);
    }

    #[test]
    fn cleanup_after_a_crash_removes_recorded_files_only() {
        let root = tempfile::tempdir().unwrap();
        let state_dir = root.path().join("c1");
        fs::create_dir(&state_dir).unwrap();
        let bundle_temp = root.path().join(CONFIG_TEMP_FILE);
        fs::write(state_dir.join("passwd"), "partial").unwrap();
        fs::write(&bundle_temp, "partial").unwrap();
        let manifest = Manifest {
            created_state_dir: true,
            // `group` was recorded but the crash came before it was created.
            files: vec![
                state_dir.join("passwd"),
                state_dir.join("group"),
                bundle_temp.clone(),
            ],
            boot_id: None,
        };
        fs::write(
            state_dir.join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        fs::write(state_dir.join(MANIFEST_TEMP_FILE), "partial").unwrap();
        cleanup(&state_dir).unwrap();
        assert!(!state_dir.exists());
        assert!(!bundle_temp.exists());

        // A crash right after creating the directory leaves it empty and without a manifest.
        fs::create_dir(&state_dir).unwrap();
        cleanup(&state_dir).unwrap();
        assert!(!state_dir.exists());

        // Files nobody recorded stop the directory's removal, with an error naming it.
        fs::create_dir(&state_dir).unwrap();
        fs::write(state_dir.join("stray"), "x").unwrap();
        let manifest = Manifest {
            created_state_dir: true,
            files: vec![],
            boot_id: None,
        };
        fs::write(
            state_dir.join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        let err = cleanup(&state_dir).unwrap_err();
        assert!(err.to_string().starts_with("removing"), "{err}");
        assert_eq!(listing(&state_dir), ["stray"]);
    }

    #[test]
    fn runc_spec_keeps_every_field_it_does_not_edit() {
        let root = tempfile::tempdir().unwrap();
        let bundle = root.path().join("bundle");
        fs::create_dir(&bundle).unwrap();
        let status = std::process::Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .status();
        let Ok(status) = status else {
            eprintln!("runc is not installed; skipping");
            return;
        };
        assert!(status.success());
        let mut original: Value =
            serde_json::from_slice(&fs::read(bundle.join(CONFIG_FILE)).unwrap()).unwrap();
        // A field oci-spec does not model must survive the edit.
        original["linux"]["containixTestField"] = Value::from("kept");
        fs::write(
            bundle.join(CONFIG_FILE),
            serde_json::to_vec(&original).unwrap(),
        )
        .unwrap();
        let state_dir = root.path().join("state");
        let prepared =
            prepare_bundle(&bundle, &state_dir, planner(Some("/bin/app"), &state_dir)).unwrap();
        let mut edited: Value =
            serde_json::from_slice(&fs::read(bundle.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(
            edited["mounts"].as_array().unwrap().len(),
            original["mounts"].as_array().unwrap().len() + prepared.plan.mounts.len()
        );
        assert_eq!(edited["linux"]["containixTestField"], "kept");
        for value in [&mut original, &mut edited] {
            let fields = value.as_object_mut().unwrap();
            fields.remove("mounts");
            let process = fields["process"].as_object_mut().unwrap();
            process.remove("args");
            process.remove("env");
        }
        assert_eq!(edited, original);
        cleanup(&state_dir).unwrap();
        assert!(!state_dir.exists());
    }
}
