//! Deterministic OCI image layout tarballs.
//!
//! containix pods need an image name even though their root filesystem comes from the Nix store:
//! CRI resolves `image` before any runtime handler runs. With no registry on the node, that image
//! is imported from an OCI image layout tar (`ctr -n k8s.io images import`). This module writes
//! such tars: `oci-layout`, `index.json` naming the image, and `blobs/sha256/<digest>` for every
//! gzip layer, the image config and the manifest.
//!
//! The bytes depend only on the input (fixed mtimes, owners and entry order, gzip headers
//! without mtime or file name), so the same image always has the same digest.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The image every containix pod spec names: one empty layer, no entrypoint.
///
/// CRI normalises it to `docker.io/containix/empty:1.0.0`, the name [`empty_image`] stores. It
/// holds nothing that changes between releases, so its name stays put and pod specs stay valid.
pub const EMPTY_IMAGE_NAME: &str = "containix/empty:1.0.0";

/// The empty image's entrypoint: a placeholder containix replaces with the package's main
/// program. CRI refuses a container with no command at all, so a pod spec that names only the
/// image (and maybe `args`) needs the image to provide one; nothing exists at this path.
pub const EMPTY_IMAGE_ENTRYPOINT: &str = "/.containix/main-program";

/// Annotation in `index.json` that `ctr images import` uses as the image name.
pub const ANNOTATION_CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// Standard OCI annotation for a manifest's reference name (the tag).
pub const ANNOTATION_OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciImageError {
    /// The image reference is not a `[domain/]path[:tag]` name.
    #[error("image reference {reference:?}: expected {expected}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What a valid reference looks like at the offending part.
        expected: &'static str,
    },
    /// A layer entry path is not a relative path without `.`/`..` components.
    #[error("layer entry path {path:?}: expected {expected}")]
    InvalidEntryPath {
        /// The path as given.
        path: String,
        /// What a valid path looks like.
        expected: &'static str,
    },
    /// Two entries of one layer have the same path.
    #[error("layer entry path {path:?} appears more than once in the layer")]
    DuplicateEntry {
        /// The normalised path that repeats.
        path: String,
    },
    /// A symlink entry has an empty target.
    #[error("symlink {path:?}: expected a non-empty target")]
    EmptySymlinkTarget {
        /// The symlink's path.
        path: String,
    },
    /// Writing to the in-memory archive failed (only on allocation-level failures).
    #[error("writing the {what}: {source}")]
    Write {
        /// Which part was being written.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = OciImageError> = std::result::Result<T, E>;

/// A normalised image reference, as CRI resolves the `image` of a container spec.
///
/// `busybox` becomes `docker.io/library/busybox:latest`, `containix/empty:0.1.0` becomes
/// `docker.io/containix/empty:0.1.0`, `localhost:5000/x` keeps its domain. Digests are not
/// accepted: an imported layout is found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    domain: String,
    path: String,
    tag: String,
}

impl ImageReference {
    /// Parses and normalises `reference` the way containerd's CRI does.
    pub fn parse(reference: &str) -> Result<Self> {
        let invalid = |expected| OciImageError::InvalidReference {
            reference: reference.to_owned(),
            expected,
        };
        if reference.contains('@') {
            return Err(invalid("a name with an optional tag, not a digest"));
        }
        let (name, tag) = match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => (reference, DEFAULT_TAG),
        };
        if !is_valid_tag(tag) {
            return Err(invalid(
                "a tag of at most 128 characters from [A-Za-z0-9_.-], not starting with '.' or '-'",
            ));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            Some(_) => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
            None => (
                DEFAULT_DOMAIN.to_owned(),
                format!("{OFFICIAL_REPOSITORY_PREFIX}{name}"),
            ),
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_owned()
        } else {
            domain
        };
        if !is_valid_domain(&domain) {
            return Err(invalid(
                "a domain from [A-Za-z0-9.-] with an optional :port",
            ));
        }
        if !path.split('/').all(is_valid_path_component) {
            return Err(invalid(
                "path components from [a-z0-9._-] that start and end with a letter or digit",
            ));
        }
        Ok(Self {
            domain,
            path,
            tag: tag.to_owned(),
        })
    }

    /// The tag, e.g. `0.1.0`.
    pub fn tag(&self) -> &str {
        &self.tag
    }
}

/// The full normalised name, e.g. `docker.io/containix/empty:0.1.0`.
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.domain, self.path, self.tag)
    }
}

fn is_valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn is_valid_path_component(component: &str) -> bool {
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(is_alnum)
        && component.ends_with(is_alnum)
        && component
            .chars()
            .all(|c| is_alnum(c) || matches!(c, '.' | '_' | '-'))
}

/// One entry of a layer. Paths are inside the image (`/bin/sh` or `bin/sh`); owners are root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A directory with permission bits `mode`.
    Directory {
        /// Path inside the image.
        path: String,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A regular file with permission bits `mode`.
    File {
        /// Path inside the image.
        path: String,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
        /// The file's bytes.
        contents: Vec<u8>,
    },
    /// A symbolic link to `target` (stored as given).
    Symlink {
        /// Path inside the image.
        path: String,
        /// Where the link points.
        target: String,
    },
}

impl LayerEntry {
    /// A directory entry.
    pub fn directory(path: impl Into<String>, mode: u32) -> Self {
        Self::Directory {
            path: path.into(),
            mode,
        }
    }

    /// A regular file entry.
    pub fn file(path: impl Into<String>, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        Self::File {
            path: path.into(),
            mode,
            contents: contents.into(),
        }
    }

    /// A symlink entry.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    fn path(&self) -> &str {
        match self {
            Self::Directory { path, .. } | Self::File { path, .. } | Self::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// A filesystem layer: entries written in the given order (parents before children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageLayer {
    entries: Vec<LayerEntry>,
}

impl ImageLayer {
    /// A layer with no entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry after the ones already present.
    pub fn with(mut self, entry: LayerEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds an entry after the ones already present.
    pub fn push(&mut self, entry: LayerEntry) {
        self.entries.push(entry);
    }

    /// The entries in archive order.
    pub fn entries(&self) -> &[LayerEntry] {
        &self.entries
    }

    /// The uncompressed layer tar, deterministic for the same entries.
    fn to_tar(&self) -> Result<Vec<u8>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let path = normalize_entry_path(entry.path())?;
            if !seen.insert(path.clone()) {
                return Err(OciImageError::DuplicateEntry { path });
            }
            let write_error = |source| OciImageError::Write {
                what: "layer",
                source,
            };
            match entry {
                LayerEntry::Directory { mode, .. } => {
                    let mut header = fixed_header(tar::EntryType::Directory, *mode, 0);
                    builder
                        .append_data(&mut header, format!("{path}/"), std::io::empty())
                        .map_err(write_error)?;
                }
                LayerEntry::File { mode, contents, .. } => {
                    let mut header =
                        fixed_header(tar::EntryType::Regular, *mode, contents.len() as u64);
                    builder
                        .append_data(&mut header, &path, contents.as_slice())
                        .map_err(write_error)?;
                }
                LayerEntry::Symlink { target, .. } => {
                    if target.is_empty() {
                        return Err(OciImageError::EmptySymlinkTarget { path });
                    }
                    let mut header = fixed_header(tar::EntryType::Symlink, 0o777, 0);
                    builder
                        .append_link(&mut header, &path, target)
                        .map_err(write_error)?;
                }
            }
        }
        builder.into_inner().map_err(|source| OciImageError::Write {
            what: "layer",
            source,
        })
    }
}

/// Strips a leading `/` and rejects empty, `.` and `..` components and NUL bytes.
fn normalize_entry_path(path: &str) -> Result<String> {
    let relative = path.trim_start_matches('/');
    let valid = !relative.is_empty()
        && !relative.contains('\0')
        && relative
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if valid {
        Ok(relative.to_owned())
    } else {
        Err(OciImageError::InvalidEntryPath {
            path: path.to_owned(),
            expected: "a non-empty path without empty, '.' or '..' components or NUL bytes",
        })
    }
}

/// A tar header whose every field but type, mode and size is fixed: owner root, mtime 0.
fn fixed_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Gzip with a header that carries neither mtime nor file name.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let write_error = |source| OciImageError::Write {
        what: "gzip layer",
        source,
    };
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    encoder.write_all(data).map_err(write_error)?;
    GzEncoder::finish(encoder).map_err(write_error)
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The OCI name of the architecture this crate was compiled for (`amd64`, `arm64`, ...).
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    }
}

/// Builds an OCI image layout tar for one image.
#[derive(Debug, Clone)]
pub struct OciImageBuilder {
    reference: ImageReference,
    layers: Vec<ImageLayer>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    working_dir: Option<String>,
}

impl OciImageBuilder {
    /// An image named `reference` (normalised like CRI does) with no layers and no command.
    pub fn new(reference: &str) -> Result<Self> {
        Ok(Self {
            reference: ImageReference::parse(reference)?,
            layers: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
        })
    }

    /// Appends a layer on top of the previous ones.
    pub fn layer(mut self, layer: ImageLayer) -> Self {
        self.layers.push(layer);
        self
    }

    /// The image's entrypoint (`ENTRYPOINT`).
    pub fn entrypoint<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The image's default arguments (`CMD`).
    pub fn cmd<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.cmd = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable `name=value` to the image config.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push(format!("{name}={value}"));
        self
    }

    /// The working directory of the image's processes.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Writes the layout tar.
    pub fn build(&self) -> Result<OciImage> {
        let mut blobs = BTreeMap::new();
        let mut layer_descriptors = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &self.layers {
            let tar = layer.to_tar()?;
            diff_ids.push(sha256_digest(&tar));
            let compressed = gzip(&tar)?;
            layer_descriptors.push(Descriptor::new(MEDIA_TYPE_LAYER_GZIP, &compressed));
            blobs.insert(sha256_digest(&compressed), compressed);
        }

        let config = ImageConfigJson {
            architecture: oci_architecture(),
            os: "linux",
            config: ContainerConfigJson {
                entrypoint: &self.entrypoint,
                cmd: &self.cmd,
                env: &self.env,
                working_dir: self.working_dir.as_deref(),
            },
            rootfs: RootFsJson {
                kind: "layers",
                diff_ids,
            },
        };
        let config = to_json(&config)?;
        let config_descriptor = Descriptor::new(MEDIA_TYPE_CONFIG, &config);
        blobs.insert(sha256_digest(&config), config);

        let manifest = to_json(&ManifestJson {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: config_descriptor,
            layers: layer_descriptors,
        })?;
        let mut manifest_descriptor = Descriptor::new(MEDIA_TYPE_MANIFEST, &manifest);
        let manifest_digest = manifest_descriptor.digest.clone();
        blobs.insert(manifest_digest.clone(), manifest);
        manifest_descriptor.platform = Some(PlatformJson {
            architecture: oci_architecture(),
            os: "linux",
        });
        manifest_descriptor.annotations = BTreeMap::from([
            (ANNOTATION_CONTAINERD_IMAGE_NAME, self.reference.to_string()),
            (ANNOTATION_OCI_REF_NAME, self.reference.tag().to_owned()),
        ]);

        let index = to_json(&IndexJson {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX,
            manifests: vec![manifest_descriptor],
        })?;
        let layout = to_json(&LayoutJson {
            image_layout_version: "1.0.0",
        })?;

        let write_error = |source| OciImageError::Write {
            what: "image layout",
            source,
        };
        let mut archive = tar::Builder::new(Vec::new());
        let mut append_file = |path: &str, data: &[u8]| {
            let mut header = fixed_header(tar::EntryType::Regular, 0o644, data.len() as u64);
            archive.append_data(&mut header, path, data)
        };
        append_file("oci-layout", &layout).map_err(write_error)?;
        append_file("index.json", &index).map_err(write_error)?;
        for (digest, data) in &blobs {
            let hex = digest.trim_start_matches("sha256:");
            append_file(&format!("blobs/sha256/{hex}"), data).map_err(write_error)?;
        }
        let tar = archive.into_inner().map_err(write_error)?;
        Ok(OciImage {
            reference: self.reference.clone(),
            manifest_digest,
            tar,
        })
    }
}

/// A written image layout tar and what identifies the image inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    reference: ImageReference,
    manifest_digest: String,
    tar: Vec<u8>,
}

impl OciImage {
    /// The normalised name stored in `index.json`, the name CRI lists.
    pub fn reference(&self) -> &ImageReference {
        &self.reference
    }

    /// `sha256:<hex>` of the manifest.
    pub fn manifest_digest(&self) -> &str {
        &self.manifest_digest
    }

    /// The layout tar's bytes.
    pub fn tar(&self) -> &[u8] {
        &self.tar
    }

    /// The layout tar's bytes, by value.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar
    }
}

/// The image containix pod specs name: one empty layer, no entrypoint.
///
/// Pass [`EMPTY_IMAGE_NAME`] unless a test needs another name.
pub fn empty_image(name: &str) -> Result<OciImage> {
    OciImageBuilder::new(name)?
        .layer(ImageLayer::new())
        .entrypoint([EMPTY_IMAGE_ENTRYPOINT])
        .build()
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| OciImageError::Write {
        what: "image metadata",
        source: std::io::Error::other(e),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<PlatformJson>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl Descriptor {
    fn new(media_type: &'static str, data: &[u8]) -> Self {
        Self {
            media_type,
            digest: sha256_digest(data),
            size: data.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
struct PlatformJson {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutJson {
    image_layout_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexJson {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
struct ImageConfigJson<'a> {
    architecture: &'static str,
    os: &'static str,
    config: ContainerConfigJson<'a>,
    rootfs: RootFsJson,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfigJson<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
}

#[derive(Serialize)]
struct RootFsJson {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

    use super::*;

    /// Every file of the layout tar by path.
    fn unpack(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(path, data);
        }
        files
    }

    fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
        let hex = digest.strip_prefix("sha256:").unwrap();
        &files[&format!("blobs/sha256/{hex}")]
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn sample_builder() -> OciImageBuilder {
        let layer = ImageLayer::new()
            .with(LayerEntry::directory("/bin", 0o755))
            .with(LayerEntry::file("/bin/tool", 0o755, b"#!tool".to_vec()))
            .with(LayerEntry::symlink("/bin/alias", "tool"));
        OciImageBuilder::new("example/tool:1.2")
            .unwrap()
            .layer(layer)
            .layer(ImageLayer::new().with(LayerEntry::file("etc-file", 0o644, "x")))
            .entrypoint(["/bin/tool", "run"])
            .env("PATH", "/bin")
    }

    #[test]
    fn two_builds_of_the_same_image_are_byte_identical() {
        let first = sample_builder().build().unwrap();
        let second = sample_builder().build().unwrap();
        assert_eq!(first, second);
        assert_eq!(
            empty_image(EMPTY_IMAGE_NAME).unwrap(),
            empty_image(EMPTY_IMAGE_NAME).unwrap()
        );
    }

    #[test]
    fn every_blob_is_named_by_its_digest_and_the_manifest_references_match() {
        let image = sample_builder().build().unwrap();
        let files = unpack(image.tar());
        for (path, data) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256_digest(data), format!("sha256:{hex}"), "{path}");
            }
        }

        let index = ImageIndex::from_reader(files["index.json"].as_slice()).unwrap();
        let [manifest_descriptor] = index.manifests().as_slice() else {
            panic!("expected one manifest in {index:?}");
        };
        assert_eq!(
            manifest_descriptor.digest().to_string(),
            image.manifest_digest()
        );
        let manifest_bytes = blob(&files, image.manifest_digest());
        assert_eq!(manifest_descriptor.size(), manifest_bytes.len() as u64);

        let manifest = ImageManifest::from_reader(manifest_bytes).unwrap();
        let config_bytes = blob(&files, manifest.config().digest().as_ref());
        assert_eq!(manifest.config().size(), config_bytes.len() as u64);
        let config = ImageConfiguration::from_reader(config_bytes).unwrap();

        assert_eq!(manifest.layers().len(), 2);
        let diff_ids = config.rootfs().diff_ids();
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let compressed = blob(&files, layer.digest().as_ref());
            assert_eq!(layer.size(), compressed.len() as u64);
            assert_eq!(&sha256_digest(&gunzip(compressed)), diff_id);
        }
        let entrypoint = config.config().as_ref().unwrap().entrypoint().clone();
        assert_eq!(
            entrypoint,
            Some(vec!["/bin/tool".to_owned(), "run".to_owned()])
        );
    }

    #[test]
    fn layout_files_and_image_name_annotations_are_present() {
        let image = sample_builder().build().unwrap();
        let files = unpack(image.tar());
        let layout: serde_json::Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");

        let index = ImageIndex::from_reader(files["index.json"].as_slice()).unwrap();
        let annotations = index.manifests()[0].annotations().clone().unwrap();
        assert_eq!(
            annotations[ANNOTATION_CONTAINERD_IMAGE_NAME],
            "docker.io/example/tool:1.2"
        );
        assert_eq!(annotations[ANNOTATION_OCI_REF_NAME], "1.2");
        let platform = index.manifests()[0].platform().clone().unwrap();
        assert_eq!(platform.os().to_string(), "linux");
    }

    #[test]
    fn layer_entries_keep_order_modes_owners_and_link_targets() {
        let image = sample_builder().build().unwrap();
        let files = unpack(image.tar());
        let manifest = ImageManifest::from_reader(blob(&files, image.manifest_digest())).unwrap();
        let layer = gunzip(blob(&files, manifest.layers()[0].digest().as_ref()));
        let mut archive = tar::Archive::new(layer.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let header = e.header().clone();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned());
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    header,
                    link,
                )
            })
            .collect();
        let paths: Vec<_> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(paths, ["bin/", "bin/tool", "bin/alias"]);
        assert_eq!(entries[1].1.mode().unwrap(), 0o755);
        assert_eq!(entries[2].1.entry_type(), tar::EntryType::Symlink);
        assert_eq!(entries[2].2.as_deref(), Some("tool"));
        for (_, header, _) in &entries {
            assert_eq!(header.mtime().unwrap(), 0);
            assert_eq!(header.uid().unwrap(), 0);
        }
    }

    #[test]
    fn empty_image_has_one_empty_layer_and_the_placeholder_entrypoint() {
        let image = empty_image(EMPTY_IMAGE_NAME).unwrap();
        assert_eq!(
            image.reference().to_string(),
            format!("docker.io/{EMPTY_IMAGE_NAME}")
        );
        let files = unpack(image.tar());
        let manifest = ImageManifest::from_reader(blob(&files, image.manifest_digest())).unwrap();
        let [layer] = manifest.layers().as_slice() else {
            panic!("expected one layer in {manifest:?}");
        };
        let layer = gunzip(blob(&files, layer.digest().as_ref()));
        assert_eq!(
            tar::Archive::new(layer.as_slice())
                .entries()
                .unwrap()
                .count(),
            0
        );
        let config =
            ImageConfiguration::from_reader(blob(&files, manifest.config().digest().as_ref()))
                .unwrap();
        let container = config.config().clone().unwrap_or_default();
        assert_eq!(
            container.entrypoint(),
            &Some(vec![EMPTY_IMAGE_ENTRYPOINT.to_owned()])
        );
        assert_eq!(container.cmd(), &None);
    }

    #[test]
    fn gzip_header_has_no_mtime_and_no_name() {
        let compressed = gzip(b"data").unwrap();
        assert_eq!(&compressed[..4], &[0x1f, 0x8b, 8, 0], "flags: no FNAME");
        assert_eq!(&compressed[4..8], &[0, 0, 0, 0], "mtime");
    }

    #[test]
    fn references_are_normalised_like_cri() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("containix/empty:0.1.0", "docker.io/containix/empty:0.1.0"),
            (
                "docker.io/containix/empty:0.1.0",
                "docker.io/containix/empty:0.1.0",
            ),
            ("index.docker.io/a/b", "docker.io/a/b:latest"),
            ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
            ("localhost/pause", "localhost/pause:latest"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ImageReference::parse(input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_references_name_what_was_expected() {
        for bad in [
            "",
            "Upper/case",
            "a/b@sha256:00",
            "a:",
            "a:-x",
            "a//b",
            "-a",
            "host:x/a",
        ] {
            let err = ImageReference::parse(bad).unwrap_err();
            assert!(
                matches!(&err, OciImageError::InvalidReference { reference, .. } if reference == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn invalid_or_duplicate_entry_paths_are_rejected() {
        for bad in ["", "/", "a/../b", "./a", "a//b", "a\0b"] {
            let layer = ImageLayer::new().with(LayerEntry::directory(bad, 0o755));
            let err = OciImageBuilder::new("x")
                .unwrap()
                .layer(layer)
                .build()
                .unwrap_err();
            assert!(
                matches!(err, OciImageError::InvalidEntryPath { .. }),
                "{bad:?}: {err}"
            );
        }
        let layer = ImageLayer::new()
            .with(LayerEntry::directory("/a", 0o755))
            .with(LayerEntry::file("a", 0o644, ""));
        let err = OciImageBuilder::new("x")
            .unwrap()
            .layer(layer)
            .build()
            .unwrap_err();
        assert!(matches!(err, OciImageError::DuplicateEntry { ref path } if path == "a"));
        let layer = ImageLayer::new().with(LayerEntry::symlink("a", ""));
        let err = OciImageBuilder::new("x")
            .unwrap()
            .layer(layer)
            .build()
            .unwrap_err();
        assert!(matches!(err, OciImageError::EmptySymlinkTarget { .. }));
    }
}
