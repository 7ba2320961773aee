//! What the user asks for on the command line, read into the same [`Request`] pods produce.
//!
//! A flake installable, `--store-paths`, `--packages` or `--annotations FILE` (pod annotations
//! as `key=value` lines or a JSON object), parsed by the same parsers as the annotations.
//!
//! Node policy: see [`crate::cli_policy`] (`--policy`, `--realise`, and the local refs the CLI
//! allows on top of the node's rules). A relative local ref is made absolute against the current
//! directory before the policy sees it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use containix_core::request::annotations::PodAnnotations;
use containix_core::request::container_request::{Entrypoint, PackageName, Request, Source};
use containix_core::request::duration::parse_duration;
use containix_core::request::flake_ref::{FlakeInstallable, FlakeSource};
use containix_core::store::store_path::StorePath;

use crate::cli_policy::PolicyArgs;
use crate::exit_status::UsageError;

/// The container name given to requests built from command-line arguments.
pub const CLI_CONTAINER: &str = "cli";

/// Where the closure comes from, and how long resolving it may take.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    #[command(flatten)]
    pub pick: SourcePick,
    /// With --annotations: the container whose request is used.
    #[arg(long, value_name = "NAME", requires = "annotations")]
    pub container: Option<String>,
    /// Resolution deadline, e.g. `90s`, `5m`; capped by the node policy's max-timeout.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Exactly one of a flake installable, store paths, packages or an annotations file.
#[derive(clap::Args, Debug, Clone)]
#[group(id = "source", required = false, multiple = false)]
pub struct SourcePick {
    /// A flake installable: `github:org/app#pkg`, `path:./dir`, `./dir#pkg`.
    #[arg(value_name = "FLAKE-REF")]
    pub reference: Option<String>,
    /// Pinned store paths instead of a flake (no evaluation).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub store_paths: Vec<String>,
    /// Package attribute names in the node policy's package set (`package-set`).
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub packages: Vec<String>,
    /// A file of pod annotations: `key=value` lines or a JSON object.
    #[arg(long, value_name = "FILE")]
    pub annotations: Option<PathBuf>,
}

impl SourceArgs {
    /// A usage error (status 2) unless a source was given.
    pub fn require(&self) -> Result<()> {
        let given = self.pick.reference.is_some()
            || !self.pick.store_paths.is_empty()
            || !self.pick.packages.is_empty()
            || self.pick.annotations.is_some();
        if !given {
            return Err(UsageError(
                "no source given; expected a FLAKE-REF, --store-paths, --packages or --annotations"
                    .to_owned(),
            )
            .into());
        }
        Ok(())
    }

    /// The request the arguments describe, with `entrypoint` (from `--entrypoint`) taking
    /// precedence over an annotation's.
    pub fn request(&self, entrypoint: Option<&str>) -> Result<Request> {
        let timeout = self
            .timeout
            .as_deref()
            .map(|text| parse_duration(text).map_err(|err| anyhow!("--timeout: {err}")))
            .transpose()?;
        let entrypoint = entrypoint
            .map(|text| Entrypoint::parse(text).map_err(|err| anyhow!("--entrypoint: {err}")))
            .transpose()?;
        let mut request = if let Some(file) = &self.pick.annotations {
            annotations_request(file, self.container.as_deref())?
        } else {
            Request {
                container: CLI_CONTAINER.into(),
                source: self.source()?,
                entrypoint: None,
                timeout: None,
                namespace: None,
            }
        };
        if let Source::Flake(installable) = &request.source {
            request.source = Source::Flake(absolute_local_ref(installable)?);
        }
        if entrypoint.is_some() {
            request.entrypoint = entrypoint;
        }
        if timeout.is_some() {
            request.timeout = timeout;
        }
        Ok(request)
    }

    fn source(&self) -> Result<Source> {
        if let Some(reference) = &self.pick.reference {
            let installable =
                FlakeInstallable::parse(reference).map_err(|err| anyhow!("FLAKE-REF: {err}"))?;
            return Ok(Source::Flake(installable));
        }
        if !self.pick.store_paths.is_empty() {
            let mut paths = Vec::new();
            for text in &self.pick.store_paths {
                let path = StorePath::parse(text).map_err(|err| anyhow!("--store-paths: {err}"))?;
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            return Ok(Source::StorePaths(paths));
        }
        if !self.pick.packages.is_empty() {
            let mut packages = Vec::new();
            for text in &self.pick.packages {
                let package =
                    PackageName::parse(text).map_err(|err| anyhow!("--packages: {err}"))?;
                if !packages.contains(&package) {
                    packages.push(package);
                }
            }
            return Ok(Source::Packages(packages));
        }
        bail!("no source; give a FLAKE-REF, --store-paths, --packages or --annotations")
    }
}

/// Reads an annotations file and picks one container's request.
fn annotations_request(file: &Path, container: Option<&str>) -> Result<Request> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--annotations: reading {}", file.display()))?;
    let map = parse_annotations_file(&text)
        .map_err(|err| anyhow!("--annotations {}: {err}", file.display()))?;
    let annotations = PodAnnotations::parse(&map)?;
    let container = match container {
        Some(name) => name.to_owned(),
        None => {
            let overridden: Vec<&str> = annotations.overridden_containers().collect();
            match overridden.as_slice() {
                [] => CLI_CONTAINER.to_owned(),
                [one] => (*one).to_owned(),
                many => bail!(
                    "--annotations: the annotations name several containers ({}); choose one \
                     with --container",
                    many.join(", ")
                ),
            }
        }
    };
    annotations.request_for(&container)?.ok_or_else(|| {
        anyhow!(
            "--annotations: container `{container}` has no containix source (it is passthrough \
             or nothing names a flake, store-paths or packages)"
        )
    })
}

/// `key=value` lines (blank lines and `#` comments skipped) or a JSON object of strings.
pub fn parse_annotations_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text)
            .map_err(|err| format!("expected a JSON object of string values: {err}"));
    }
    let mut map = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected `key=value`, e.g. `containix.dev/flake=github:org/app`",
                number + 1
            ));
        };
        map.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(map)
}

/// A local ref with a relative path, made absolute against the current directory.
pub fn absolute_local_ref(installable: &FlakeInstallable) -> Result<FlakeInstallable> {
    let FlakeSource::Path { path, bare } = installable.flake.source() else {
        return Ok(installable.clone());
    };
    if Path::new(path).is_absolute() {
        return Ok(installable.clone());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let absolute = cwd.join(path);
    let absolute = absolute
        .canonicalize()
        .with_context(|| format!("flake path {}", absolute.display()))?;
    let absolute = absolute
        .to_str()
        .ok_or_else(|| anyhow!("flake path {} is not UTF-8", absolute.display()))?;
    // Rebuild the canonical text with the absolute path in place of the relative one.
    let canonical = installable.to_string();
    let prefix = if *bare { "" } else { "path:" };
    let rest = canonical
        .strip_prefix(prefix)
        .and_then(|tail| tail.find(['?', '#']).map(|at| &tail[at..]).or(Some("")))
        .unwrap_or("");
    let text = format!("{prefix}{}{rest}", percent_encode_path(absolute));
    FlakeInstallable::parse(&text).map_err(|err| anyhow!("FLAKE-REF: {err}"))
}

/// Percent-encodes what a flake ref path cannot hold literally.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/._~+-=@,:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_files_are_lines_or_json() {
        let lines = "# pod\ncontainix.dev/flake = github:org/app#x\n\ncontainix.dev/timeout=90s\n";
        let map = parse_annotations_file(lines).unwrap();
        assert_eq!(map["containix.dev/flake"], "github:org/app#x");
        assert_eq!(map["containix.dev/timeout"], "90s");
        let json = r#"{"containix.dev/store-paths": "/nix/store/x"}"#;
        assert_eq!(parse_annotations_file(json).unwrap().len(), 1);
        assert!(
            parse_annotations_file("no equals sign")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(parse_annotations_file("{\"a\": 1}").is_err());
    }

    #[test]
    fn relative_refs_become_absolute_and_keep_their_fragment() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let relative = FlakeInstallable::parse("path:.?dir=src#packages.x.default").unwrap();
        let absolute = absolute_local_ref(&relative).unwrap();
        assert_eq!(
            absolute.to_string(),
            format!("path:{}?dir=src#packages.x.default", cwd.display())
        );
        let bare = FlakeInstallable::parse("./").unwrap();
        let absolute = absolute_local_ref(&bare).unwrap();
        assert_eq!(absolute.to_string(), cwd.display().to_string());
        let remote = FlakeInstallable::parse("github:org/app").unwrap();
        assert_eq!(absolute_local_ref(&remote).unwrap(), remote);
    }
}
