//! The pod annotation API: `containix.dev/*` annotations read into a typed [`Request`] per
//! container.
//!
//! | key | meaning |
//! |---|---|
//! | `containix.dev/flake` | flake ref with optional `#attr` (default `packages.<system>.default` as `nix build` does) |
//! | `containix.dev/store-paths` | pinned store paths (whitespace or comma separated); no evaluation on the node |
//! | `containix.dev/packages` | package attribute names resolved against the node's configured package set (Nixery style, e.g. `curl jq bash`) |
//! | `containix.dev/entrypoint` | program to run: an absolute path inside the root output (`/bin/app`) or a name found on the closure's PATH; default: the package's `meta.mainProgram`, else its name |
//! | `containix.dev/timeout` | resolution deadline, e.g. `90s`, `2m`, `1m30s`; capped by node policy |
//! | `containix.dev/passthrough` | comma-separated container names that run untouched (sidecars with normal images) |
//! | `containix.dev/<key>.<container>` | per-container override of `flake`, `store-paths`, `packages`, `entrypoint` |
//!
//! Rules:
//! - Each container gets exactly one source (`flake`, `store-paths` or `packages`). A
//!   per-container source replaces the pod-level source for that container; two sources at the
//!   same level are an error.
//! - Unknown `containix.dev/*` keys are an error that lists the valid keys, so a typo never
//!   silently runs the wrong thing. Annotations outside `containix.dev/` are ignored.
//! - A container listed in `passthrough` gets no request, and may not have per-container keys.
//!   A container without any source gets no request either: it runs untouched.
//! - A per-container `entrypoint` needs a source for that container (its own or the pod's).
//! - `timeout` is whole seconds written as `<integer><unit>` groups with units `h`, `m`, `s`
//!   in that order (`90s`, `2m`, `1h`, `1m30s`) and must be positive.
//! - Package names are Nix attribute names (`curl`, `python3Packages.numpy`); an entry point
//!   is an absolute path without `.`/`..` segments or a bare program name without `/`.
//! - Values are trimmed of surrounding whitespace (YAML block scalars end in a newline); lists
//!   are separated by whitespace or commas; duplicates are dropped, order is kept. A value longer
//!   than [`MAX_VALUE_BYTES`] is refused, as is a source whose canonical form would be.
//! - No annotation names the pod's Kubernetes namespace: the node policy's per-namespace
//!   settings follow the namespace the runtime reports (`containix.dev/namespace` is an
//!   unknown key like any other).
//!
//! Every [`AnnotationError`] names the annotation key and what was expected; its `Display` is
//! meant to follow `containix: ` in a pod event.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::request::clipped::{Clipped, Quoted};
use crate::request::container_request::{
    Entrypoint, EntrypointError, PackageName, PackageNameError, Request, Source,
};
use crate::request::duration::{DurationError, format_duration, parse_duration};
use crate::request::flake_ref::error::Shown;
use crate::request::flake_ref::{FlakeInstallable, InstallableError};
use crate::store::store_path::{StorePath, StorePathError};

/// The prefix of every annotation containix reads.
pub const PREFIX: &str = "containix.dev/";

/// The pod-level keys, without [`PREFIX`].
pub const POD_KEYS: [&str; 6] = [
    "flake",
    "store-paths",
    "packages",
    "entrypoint",
    "timeout",
    "passthrough",
];

/// The longest value of a `containix.dev/` annotation, in bytes (Kubernetes allows 256 KiB for
/// all of a pod's annotations together).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The keys that may be given per container as `<key>.<container>`.
pub const CONTAINER_KEYS: [&str; 4] = ["flake", "store-paths", "packages", "entrypoint"];

/// Why a pod's annotations were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    #[error(
        "unknown annotation `{}`; valid keys are containix.dev/flake, containix.dev/store-paths, \
         containix.dev/packages, containix.dev/entrypoint, containix.dev/timeout, \
         containix.dev/passthrough, and containix.dev/<key>.<container> for flake, store-paths, \
         packages and entrypoint",
        Shown(.key)
    )]
    UnknownKey { key: String },
    #[error(
        "annotation `{}`: invalid container name {}; expected a DNS label (lower-case \
         letters, digits and `-`, at most 63 characters)",
        Shown(.key),
        Quoted(.name)
    )]
    InvalidContainerName { key: String, name: String },
    #[error(
        "annotation `{}`: the value is {len} bytes long; at most {MAX_VALUE_BYTES} are accepted",
        Shown(.key)
    )]
    ValueTooLong { key: String, len: usize },
    #[error("annotation `{key}`: empty value; expected {expected}")]
    EmptyValue { key: String, expected: &'static str },
    #[error("annotation `{key}`: {}", Clipped(.source))]
    Flake {
        key: String,
        source: InstallableError,
    },
    #[error("annotation `{key}`: {}", Clipped(.source))]
    StorePath { key: String, source: StorePathError },
    #[error("annotation `{key}`: {}", Clipped(.source))]
    Package {
        key: String,
        source: PackageNameError,
    },
    #[error("annotation `{key}`: {}", Clipped(.source))]
    Entrypoint {
        key: String,
        source: EntrypointError,
    },
    #[error("annotation `{key}`: {}", Clipped(.source))]
    Timeout { key: String, source: DurationError },
    #[error(
        "annotations `{first}` and `{second}` both name a source; give exactly one of flake, \
         store-paths or packages{}",
        for_container(.container)
    )]
    ConflictingSources {
        first: String,
        second: String,
        container: Option<String>,
    },
    #[error(
        "annotation `{key}`: container `{container}` is listed in `containix.dev/passthrough`, \
         which runs it untouched; remove one of the two"
    )]
    PassthroughConflict { key: String, container: String },
    #[error(
        "annotation `{key}`: container `{container}` has no source; add \
         `containix.dev/flake.{container}` (or store-paths, packages) or a pod-level source"
    )]
    EntrypointWithoutSource { key: String, container: String },
}

fn for_container(container: &Option<String>) -> String {
    container
        .as_ref()
        .map(|c| format!(" for container `{c}`"))
        .unwrap_or_default()
}

/// The settings given at one level: the pod, or one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Settings {
    /// The source and the annotation key it came from.
    source: Option<(String, Source)>,
    entrypoint: Option<Entrypoint>,
}

/// A pod's validated `containix.dev/*` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAnnotations {
    pod: Settings,
    containers: BTreeMap<String, Settings>,
    timeout: Option<Duration>,
    passthrough: BTreeSet<String>,
}

impl PodAnnotations {
    /// Validates every `containix.dev/*` annotation of a pod; other annotations are ignored.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, AnnotationError> {
        let mut parsed = PodAnnotations::default();
        for (key, value) in annotations {
            let Some(name) = key.strip_prefix(PREFIX) else {
                continue;
            };
            if value.len() > MAX_VALUE_BYTES {
                return Err(AnnotationError::ValueTooLong {
                    key: key.clone(),
                    len: value.len(),
                });
            }
            let value = value.trim();
            let (base, container) = match name.split_once('.') {
                Some((base, container)) if CONTAINER_KEYS.contains(&base) => {
                    if !is_dns_label(container) {
                        let name = container.to_owned();
                        return Err(AnnotationError::InvalidContainerName {
                            key: key.clone(),
                            name,
                        });
                    }
                    (base, Some(container))
                }
                None if POD_KEYS.contains(&name) => (name, None),
                _ => return Err(AnnotationError::UnknownKey { key: key.clone() }),
            };
            let settings = match container {
                Some(container) => parsed.containers.entry(container.to_owned()).or_default(),
                None => &mut parsed.pod,
            };
            match base {
                "flake" | "store-paths" | "packages" => {
                    let source = parse_source(key, base, value)?;
                    // The canonical form may be longer (percent-encoding); it must parse again.
                    let canonical = source_annotation(&source).1.len();
                    if canonical > MAX_VALUE_BYTES {
                        return Err(AnnotationError::ValueTooLong {
                            key: key.clone(),
                            len: canonical,
                        });
                    }
                    if let Some((first, _)) = &settings.source {
                        return Err(AnnotationError::ConflictingSources {
                            first: first.clone(),
                            second: key.clone(),
                            container: container.map(str::to_owned),
                        });
                    }
                    settings.source = Some((key.clone(), source));
                }
                "entrypoint" => {
                    let entrypoint =
                        Entrypoint::parse(value).map_err(|source| AnnotationError::Entrypoint {
                            key: key.clone(),
                            source,
                        })?;
                    settings.entrypoint = Some(entrypoint);
                }
                "timeout" => {
                    let timeout =
                        parse_duration(value).map_err(|source| AnnotationError::Timeout {
                            key: key.clone(),
                            source,
                        })?;
                    parsed.timeout = Some(timeout);
                }
                "passthrough" => parsed.passthrough = parse_passthrough(key, value)?,
                _ => unreachable!("key checked against POD_KEYS and CONTAINER_KEYS"),
            }
        }
        parsed.check_containers()?;
        Ok(parsed)
    }

    /// Cross-key rules: passthrough containers take no overrides; a per-container entry point
    /// needs a source.
    fn check_containers(&self) -> Result<(), AnnotationError> {
        for (container, settings) in &self.containers {
            let key = |base: &str| format!("{PREFIX}{base}.{container}");
            if self.passthrough.contains(container) {
                let key = match &settings.source {
                    Some((key, _)) => key.clone(),
                    None => key("entrypoint"),
                };
                let container = container.clone();
                return Err(AnnotationError::PassthroughConflict { key, container });
            }
            if settings.source.is_none() && self.pod.source.is_none() {
                let container = container.clone();
                let key = key("entrypoint");
                return Err(AnnotationError::EntrypointWithoutSource { key, container });
            }
        }
        Ok(())
    }

    /// The request for one container, or `None` when it runs untouched (passthrough, or no
    /// source at all).
    pub fn request_for(&self, container: &str) -> Result<Option<Request>, AnnotationError> {
        if !is_dns_label(container) {
            let key = format!("{PREFIX}<key>.{container}");
            let name = container.to_owned();
            return Err(AnnotationError::InvalidContainerName { key, name });
        }
        if self.passthrough.contains(container) {
            return Ok(None);
        }
        let own = self.containers.get(container);
        let Some((_, source)) = own
            .and_then(|s| s.source.as_ref())
            .or(self.pod.source.as_ref())
        else {
            return Ok(None);
        };
        let entrypoint = own
            .and_then(|s| s.entrypoint.as_ref())
            .or(self.pod.entrypoint.as_ref());
        Ok(Some(Request {
            container: container.to_owned(),
            source: source.clone(),
            entrypoint: entrypoint.cloned(),
            timeout: self.timeout,
            namespace: None,
        }))
    }

    /// Whether the pod asks containix for anything at all.
    pub fn is_empty(&self) -> bool {
        *self == PodAnnotations::default()
    }

    /// The containers listed in `containix.dev/passthrough`.
    pub fn passthrough(&self) -> &BTreeSet<String> {
        &self.passthrough
    }

    /// The requested resolution deadline.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The containers with per-container annotations.
    pub fn overridden_containers(&self) -> impl Iterator<Item = &str> {
        self.containers.keys().map(String::as_str)
    }

    /// The annotations in canonical form; parsing them gives back an equal value.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let levels = std::iter::once((None, &self.pod))
            .chain(self.containers.iter().map(|(c, s)| (Some(c.as_str()), s)));
        for (container, settings) in levels {
            let key = |base: &str| match container {
                Some(container) => format!("{PREFIX}{base}.{container}"),
                None => format!("{PREFIX}{base}"),
            };
            if let Some((_, source)) = &settings.source {
                let (base, value) = source_annotation(source);
                out.insert(key(base), value);
            }
            if let Some(entrypoint) = &settings.entrypoint {
                out.insert(key("entrypoint"), entrypoint.to_string());
            }
        }
        if let Some(timeout) = self.timeout {
            out.insert(
                format!("{PREFIX}timeout"),
                format_duration(timeout).to_string(),
            );
        }
        if !self.passthrough.is_empty() {
            let names: Vec<&str> = self.passthrough.iter().map(String::as_str).collect();
            out.insert(format!("{PREFIX}passthrough"), names.join(","));
        }
        out
    }
}

impl fmt::Display for PodAnnotations {
    /// One `key: value` line per annotation, in canonical form and order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.to_annotations() {
            writeln!(f, "{key}: {value}")?;
        }
        Ok(())
    }
}

/// The annotation key (without prefix) and canonical value for a source.
fn source_annotation(source: &Source) -> (&'static str, String) {
    fn join<T: fmt::Display>(items: &[T]) -> String {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
    match source {
        Source::Flake(installable) => ("flake", installable.to_string()),
        Source::StorePaths(paths) => ("store-paths", join(paths)),
        Source::Packages(packages) => ("packages", join(packages)),
    }
}

fn parse_source(key: &str, base: &str, value: &str) -> Result<Source, AnnotationError> {
    let key = key.to_owned();
    match base {
        "flake" => {
            if value.is_empty() {
                let expected = "a flake reference such as `github:org/app#default`";
                return Err(AnnotationError::EmptyValue { key, expected });
            }
            FlakeInstallable::parse(value)
                .map(Source::Flake)
                .map_err(|source| AnnotationError::Flake { key, source })
        }
        "store-paths" => {
            let mut paths = Vec::new();
            for item in list_items(value) {
                let path = StorePath::parse(item).map_err(|source| AnnotationError::StorePath {
                    key: key.clone(),
                    source,
                })?;
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            if paths.is_empty() {
                let expected = "store paths such as `/nix/store/<hash>-app`";
                return Err(AnnotationError::EmptyValue { key, expected });
            }
            Ok(Source::StorePaths(paths))
        }
        _ => {
            let mut packages = Vec::new();
            for item in list_items(value) {
                let package =
                    PackageName::parse(item).map_err(|source| AnnotationError::Package {
                        key: key.clone(),
                        source,
                    })?;
                if !packages.contains(&package) {
                    packages.push(package);
                }
            }
            if packages.is_empty() {
                let expected = "package attribute names such as `curl jq bash`";
                return Err(AnnotationError::EmptyValue { key, expected });
            }
            Ok(Source::Packages(packages))
        }
    }
}

fn parse_passthrough(key: &str, value: &str) -> Result<BTreeSet<String>, AnnotationError> {
    let mut names = BTreeSet::new();
    for name in list_items(value) {
        if !is_dns_label(name) {
            let (key, name) = (key.to_owned(), name.to_owned());
            return Err(AnnotationError::InvalidContainerName { key, name });
        }
        names.insert(name.to_owned());
    }
    if names.is_empty() {
        let expected = "comma-separated container names";
        return Err(AnnotationError::EmptyValue {
            key: key.to_owned(),
            expected,
        });
    }
    Ok(names)
}

/// Items separated by whitespace or commas, empty items skipped.
fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
}

/// A Kubernetes container name: an RFC 1123 label.
fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests;
