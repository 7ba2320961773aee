//! Deterministic OCI image layout tarballs.
//!
//! containix pods need an image name even though their root filesystem comes from the Nix store:
//! CRI resolves `image` before any runtime handler runs. With no registry on the node, that image
//! is imported from an OCI image layout tar (`ctr -n k8s.io images import`). This module writes
//! such tars with oci-spec's image types and the `tar` crate: `oci-layout`, `index.json` naming
//! the image, and `blobs/sha256/<digest>` for every gzip layer, the image config and the manifest.
//!
//! The bytes depend only on the input (fixed mtimes, owners and entry order, gzip headers
//! without mtime or file name, JSON fields in a fixed order), so the same image always has the same
//! digest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::OciSpecError;
use oci_spec::distribution::Reference;
use oci_spec::image::{
    Config, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, OciLayoutBuilder, Platform, RootFsBuilder, SCHEMA_VERSION,
};
use serde::Serialize;
use sha2::Sha256;

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
pub const ANNOTATION_OCI_REF_NAME: &str = oci_spec::image::ANNOTATION_REF_NAME;

/// A normalised image reference, as CRI resolves the `image` of a container spec:
/// `busybox` is `docker.io/library/busybox:latest` (see [`parse_reference`]).
pub type ImageReference = Reference;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciImageError {
    /// The image reference is not a `[domain/]path[:tag]` name.
    #[error("image reference {reference:?}: {problem}; expected [domain/]path[:tag]")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        problem: String,
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
    /// Writing a tar or gzip stream to memory failed (only on allocation-level failures).
    #[error("writing the {what}: {source}")]
    Write {
        /// Which part was being written.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The image metadata (index, manifest, config) could not be built or serialised.
    #[error("writing the image metadata: {0}")]
    Metadata(#[from] OciSpecError),
}

type Result<T, E = OciImageError> = std::result::Result<T, E>;

/// Parses and normalises `reference` the way containerd's CRI does: `containix/empty:0.1.0`
/// is `docker.io/containix/empty:0.1.0`, `localhost:5000/x` keeps its domain, no tag means
/// `latest`. Digests are refused: an imported layout is found by name.
pub fn parse_reference(reference: &str) -> Result<ImageReference> {
    let invalid = |problem: String| OciImageError::InvalidReference {
        reference: reference.to_owned(),
        problem,
    };
    let parsed = Reference::try_from(reference).map_err(|e| invalid(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(invalid("a digest names no image to import".into()));
    }
    // oci-spec reads `Upper/x` as domain `Upper`, then puts it back in the repository.
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase".into()));
    }
    Ok(parsed)
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
        let path = path.into();
        Self::Directory { path, mode }
    }

    /// A regular file entry.
    pub fn file(path: impl Into<String>, mode: u32, contents: impl Into<Vec<u8>>) -> Self {
        let (path, contents) = (path.into(), contents.into());
        Self::File {
            path,
            mode,
            contents,
        }
    }

    /// A symlink entry.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        let (path, target) = (path.into(), target.into());
        Self::Symlink { path, target }
    }

    /// Appends the entry (owner root, mtime 0) to `archive` under its normalised path.
    fn append(&self, archive: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
        let written = match self {
            Self::Directory { mode, .. } => {
                let header = &mut header(tar::EntryType::Directory, *mode, 0);
                archive.append_data(header, format!("{path}/"), std::io::empty())
            }
            Self::File { mode, contents, .. } => {
                let header = &mut header(tar::EntryType::Regular, *mode, contents.len());
                archive.append_data(header, path, contents.as_slice())
            }
            Self::Symlink { target, .. } if target.is_empty() => {
                let path = path.to_owned();
                return Err(OciImageError::EmptySymlinkTarget { path });
            }
            Self::Symlink { target, .. } => {
                let header = &mut header(tar::EntryType::Symlink, 0o777, 0);
                archive.append_link(header, path, target)
            }
        };
        written.map_err(|source| OciImageError::Write {
            what: "layer",
            source,
        })
    }

    /// The path without its leading `/`; refuses empty, `.` and `..` components and NUL bytes.
    fn normalized_path(&self) -> Result<String> {
        let (Self::Directory { path, .. } | Self::File { path, .. } | Self::Symlink { path, .. }) =
            self;
        let relative = path.trim_start_matches('/');
        let mut components = relative.split('/');
        if relative.contains('\0') || components.any(|c| matches!(c, "" | "." | "..")) {
            return Err(OciImageError::InvalidEntryPath {
                path: path.clone(),
                expected: "a non-empty path without empty, '.' or '..' components or NUL bytes",
            });
        }
        Ok(relative.to_owned())
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
        let mut seen = BTreeSet::new();
        let mut archive = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let path = entry.normalized_path()?;
            if !seen.insert(path.clone()) {
                return Err(OciImageError::DuplicateEntry { path });
            }
            entry.append(&mut archive, &path)?;
        }
        finish(archive, "layer")
    }
}

/// A tar header whose every field but type, mode and size is fixed: owner root, mtime 0.
fn header(entry_type: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

fn finish(archive: tar::Builder<Vec<u8>>, what: &'static str) -> Result<Vec<u8>> {
    archive
        .into_inner()
        .map_err(|source| OciImageError::Write { what, source })
}

/// Gzip with a header that carries neither mtime nor file name.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    let written = encoder.write_all(data).and_then(|()| encoder.finish());
    written.map_err(|source| OciImageError::Write {
        what: "gzip layer",
        source,
    })
}

fn sha256(data: &[u8]) -> Digest {
    let hex = format!("sha256:{:x}", <Sha256 as sha2::Digest>::digest(data));
    hex.parse().expect("a hex SHA-256 is a valid digest")
}

/// `argv` as a list, `None` when empty (the config then leaves the field out).
fn non_empty<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Option<Vec<String>> {
    let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
    (!argv.is_empty()).then_some(argv)
}

/// Compact JSON in the field order of oci-spec's types. The config and manifest set no
/// `HashMap` field, so their bytes (and digests) are stable; `index.json` carries annotations
/// and goes through a `serde_json::Value` first, which sorts every object's keys.
fn json(value: &impl Serialize) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value).map_err(OciSpecError::from)?)
}

/// Builds an OCI image layout tar for one image.
#[derive(Debug, Clone)]
pub struct OciImageBuilder {
    reference: ImageReference,
    layers: Vec<ImageLayer>,
    config: Config,
}

impl OciImageBuilder {
    /// An image named `reference` (normalised like CRI does) with no layers and no command.
    pub fn new(reference: &str) -> Result<Self> {
        Ok(Self {
            reference: parse_reference(reference)?,
            layers: Vec::new(),
            config: Config::default(),
        })
    }

    /// Appends a layer on top of the previous ones.
    pub fn layer(mut self, layer: ImageLayer) -> Self {
        self.layers.push(layer);
        self
    }

    /// The image's entrypoint (`ENTRYPOINT`).
    pub fn entrypoint<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.set_entrypoint(non_empty(argv));
        self
    }

    /// The image's default arguments (`CMD`).
    pub fn cmd<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.set_cmd(non_empty(argv));
        self
    }

    /// Adds an environment variable `name=value` to the image config.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        let mut env = self.config.env().clone().unwrap_or_default();
        env.push(format!("{name}={value}"));
        self.config.set_env(Some(env));
        self
    }

    /// The working directory of the image's processes.
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.config.set_working_dir(Some(dir.into()));
        self
    }

    /// Writes the layout tar.
    pub fn build(&self) -> Result<OciImage> {
        let mut blobs = BTreeMap::new();
        let mut blob = |media_type, data: Vec<u8>| {
            let descriptor = Descriptor::new(media_type, data.len() as u64, sha256(&data));
            blobs.insert(descriptor.digest().digest().to_owned(), data);
            descriptor
        };
        let (mut layers, mut diff_ids) = (Vec::new(), Vec::new());
        for layer in &self.layers {
            let tar = layer.to_tar()?;
            diff_ids.push(sha256(&tar).to_string());
            layers.push(blob(MediaType::ImageLayerGzip, gzip(&tar)?));
        }
        let config = ImageConfigurationBuilder::default()
            .config(self.config.clone())
            .rootfs(RootFsBuilder::default().diff_ids(diff_ids).build()?)
            .build()?;
        let config = blob(MediaType::ImageConfig, json(&config)?);
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(layers)
            .build()?;
        let mut manifest = blob(MediaType::ImageManifest, json(&manifest)?);
        let tag = self.reference.tag().unwrap_or_default().to_owned();
        manifest.set_platform(Some(Platform::default()));
        manifest.set_annotations(Some(HashMap::from([
            (
                ANNOTATION_CONTAINERD_IMAGE_NAME.into(),
                self.reference.whole(),
            ),
            (ANNOTATION_OCI_REF_NAME.into(), tag),
        ])));
        let manifest_digest = manifest.digest().to_string();
        let index = ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageIndex)
            .manifests([manifest])
            .build()?;
        let layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()?;

        // The annotations are a `HashMap`: a `Value` sorts them.
        let index = serde_json::to_value(&index).map_err(OciSpecError::from)?;
        let files = [
            ("oci-layout".to_owned(), json(&layout)?),
            ("index.json".to_owned(), json(&index)?),
        ];
        let mut archive = tar::Builder::new(Vec::new());
        let blobs = blobs
            .into_iter()
            .map(|(hex, data)| (format!("blobs/sha256/{hex}"), data));
        for (path, data) in files.into_iter().chain(blobs) {
            let header = &mut header(tar::EntryType::Regular, 0o644, data.len());
            archive
                .append_data(header, path, data.as_slice())
                .map_err(|source| OciImageError::Write {
                    what: "image layout",
                    source,
                })?;
        }
        Ok(OciImage {
            reference: self.reference.clone(),
            manifest_digest,
            tar: finish(archive, "image layout")?,
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
                assert_eq!(sha256(data).to_string(), format!("sha256:{hex}"), "{path}");
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
            assert_eq!(&sha256(&gunzip(compressed)).to_string(), diff_id);
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
                parse_reference(input).unwrap().to_string(),
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
            "a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "a:",
            "a:-x",
            "a//b",
            "-a",
            "host:x/a",
        ] {
            let err = parse_reference(bad).unwrap_err();
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

    #[test]
    fn the_config_carries_the_command_environment_and_platform() {
        let image = OciImageBuilder::new("x")
            .unwrap()
            .cmd(["/bin/sh"])
            .env("PATH", "/bin")
            .env("HOME", "/root")
            .working_dir("/srv")
            .build()
            .unwrap();
        let files = unpack(image.tar());
        let manifest = ImageManifest::from_reader(blob(&files, image.manifest_digest())).unwrap();
        assert_eq!(manifest.media_type(), &Some(MediaType::ImageManifest));
        assert_eq!(manifest.config().media_type(), &MediaType::ImageConfig);
        assert!(manifest.layers().is_empty());
        let config =
            ImageConfiguration::from_reader(blob(&files, manifest.config().digest().as_ref()))
                .unwrap();
        assert_eq!(config.architecture(), &oci_spec::image::Arch::default());
        assert_eq!(config.os(), &oci_spec::image::Os::Linux);
        let container = config.config().clone().unwrap();
        assert_eq!(container.cmd(), &Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(container.entrypoint(), &None);
        assert_eq!(
            container.env(),
            &Some(vec!["PATH=/bin".to_owned(), "HOME=/root".to_owned()])
        );
        assert_eq!(container.working_dir(), &Some("/srv".to_owned()));
    }

    /// The empty image's manifest, and so the image id CRI shows, is byte for byte the one the
    /// hand-written writer made before the metadata came from oci-spec.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_empty_image_keeps_its_manifest_digest() {
        assert_eq!(
            empty_image("some/name:1").unwrap().manifest_digest(),
            "sha256:9c67590ced1145d6e93b8056c6579c85802adacc87bc2e4ddf31d5cb00fb6ee0"
        );
    }

    #[test]
    fn metadata_json_has_sorted_keys_whatever_the_hash_seed() {
        // Each build hashes its annotations with a fresh random seed.
        let first = unpack(sample_builder().build().unwrap().tar())["index.json"].clone();
        for _ in 0..16 {
            let again = unpack(sample_builder().build().unwrap().tar());
            assert_eq!(again["index.json"], first);
        }
        let text = String::from_utf8(first).unwrap();
        let name = text.find(ANNOTATION_CONTAINERD_IMAGE_NAME).unwrap();
        let tag = text.find(ANNOTATION_OCI_REF_NAME).unwrap();
        assert!(name < tag, "{text}");
    }

    #[test]
    fn the_layout_tar_holds_the_layout_the_index_then_the_blobs() {
        let image = empty_image(EMPTY_IMAGE_NAME).unwrap();
        let mut archive = tar::Archive::new(image.tar());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(paths[..2], ["oci-layout", "index.json"]);
        assert_eq!(paths.len(), 5, "{paths:?}");
        assert!(paths[2..].iter().all(|p| p.starts_with("blobs/sha256/")));
        assert!(paths[2..].is_sorted());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        #[test]
        fn any_layer_builds_the_same_bytes_twice_and_keeps_its_entries(
            files in proptest::collection::btree_map(
                "[a-z]{1,8}",
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
                0..8,
            ),
            mode in 0u32..0o1000,
        ) {
            let mut layer = ImageLayer::new().with(LayerEntry::directory("d", 0o755));
            for (name, contents) in &files {
                layer.push(LayerEntry::file(format!("/d/{name}"), mode, contents.clone()));
            }
            let build = || OciImageBuilder::new("p/q:r").unwrap().layer(layer.clone()).build();
            let image = build().unwrap();
            proptest::prop_assert_eq!(&image, &build().unwrap());

            let files_in_layout = unpack(image.tar());
            let manifest =
                ImageManifest::from_reader(blob(&files_in_layout, image.manifest_digest())).unwrap();
            let tar = gunzip(blob(&files_in_layout, manifest.layers()[0].digest().as_ref()));
            let unpacked = unpack(&tar);
            proptest::prop_assert_eq!(unpacked.len(), files.len() + 1);
            for (name, contents) in &files {
                proptest::prop_assert_eq!(&unpacked[&format!("d/{name}")], contents);
            }
        }
    }
}
