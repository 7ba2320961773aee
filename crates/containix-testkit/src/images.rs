//! The images a test node needs, written as OCI layout tars and imported with `ctr`.
//!
//! No registry is reachable from a test node, so every image is built locally with
//! [`containix_core::image::oci_image`]: a pause image for pod sandboxes, a busybox image for ordinary
//! containers (both from the host's static `/bin/busybox`), and the empty image containix pod
//! specs name.

use std::path::{Path, PathBuf};

use containix_core::image::oci_image::{self, ImageLayer, LayerEntry, OciImage, OciImageBuilder};

/// The static busybox the test images are made of (Debian package `busybox-static`).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The pause image used as containerd's `sandbox_image`.
pub const PAUSE_IMAGE: &str = concat!("localhost/containix-test/pause:", env!("CARGO_PKG_VERSION"));

/// A busybox image for ordinary test containers (`PATH=/bin`, default command `sh`).
pub const BUSYBOX_IMAGE: &str = concat!(
    "localhost/containix-test/busybox:",
    env!("CARGO_PKG_VERSION")
);

/// The busybox applets linked into `/bin` of the test images.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "cat", "echo", "env", "false", "grep", "head", "id", "ls", "mkdir", "mount", "ps", "readlink",
    "rm", "sh", "sleep", "stat", "test", "touch", "true", "wc",
];

/// The containerd namespace CRI works in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Why a test image could not be built or imported.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The host busybox could not be read.
    #[error("reading the static busybox {path}: {source} (install the busybox-static package)")]
    ReadBusybox {
        /// Where it was expected.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The image could not be written.
    #[error("building image {name}: {source}")]
    Build {
        /// The image name.
        name: &'static str,
        /// The core error.
        #[source]
        source: oci_image::OciImageError,
    },
    /// Writing the layout tar to disk failed.
    #[error("writing {path}: {source}")]
    WriteTar {
        /// The tar path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `ctr` could not be run.
    #[error("running {program}: {source}")]
    SpawnCtr {
        /// The `ctr` binary.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `ctr images import` failed.
    #[error("ctr images import of {image} exited with {status}: {stderr}")]
    Import {
        /// The image's normalised name, or the archive that was imported.
        image: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// What ctr printed on stderr.
        stderr: String,
    },
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// A layer with `/bin/busybox`, applet symlinks next to it, and empty `/etc` and `/tmp`.
pub fn busybox_layer(busybox: &Path) -> Result<ImageLayer> {
    let contents = std::fs::read(busybox).map_err(|source| ImageError::ReadBusybox {
        path: busybox.to_owned(),
        source,
    })?;
    let mut layer = ImageLayer::new()
        .with(LayerEntry::directory("bin", 0o755))
        .with(LayerEntry::directory("etc", 0o755))
        .with(LayerEntry::directory("tmp", 0o1777))
        .with(LayerEntry::file("bin/busybox", 0o755, contents));
    for applet in BUSYBOX_APPLETS {
        layer.push(LayerEntry::symlink(format!("bin/{applet}"), "busybox"));
    }
    Ok(layer)
}

/// The pause image: busybox whose entrypoint sleeps until killed.
pub fn pause_image(busybox: &Path) -> Result<OciImage> {
    let layer = busybox_layer(busybox)?;
    let image = OciImageBuilder::new(PAUSE_IMAGE).and_then(|builder| {
        builder
            .layer(layer)
            .entrypoint(["/bin/sleep", "infinity"])
            .env("PATH", "/bin")
            .build()
    });
    image.map_err(|source| ImageError::Build {
        name: PAUSE_IMAGE,
        source,
    })
}

/// The busybox image for ordinary containers.
pub fn busybox_image(busybox: &Path) -> Result<OciImage> {
    let layer = busybox_layer(busybox)?;
    let image = OciImageBuilder::new(BUSYBOX_IMAGE).and_then(|builder| {
        builder
            .layer(layer)
            .cmd(["/bin/sh"])
            .env("PATH", "/bin")
            .build()
    });
    image.map_err(|source| ImageError::Build {
        name: BUSYBOX_IMAGE,
        source,
    })
}

/// The empty image containix pod specs name ([`oci_image::EMPTY_IMAGE_NAME`]).
pub fn empty_image() -> Result<OciImage> {
    oci_image::empty_image(oci_image::EMPTY_IMAGE_NAME).map_err(|source| ImageError::Build {
        name: oci_image::EMPTY_IMAGE_NAME,
        source,
    })
}

/// Imports `image` into the CRI namespace of the containerd at `address`, unpacked for the
/// overlayfs snapshotter, via `ctr images import` (the tar is staged in `scratch_dir`).
pub async fn import_image(
    ctr: &Path,
    address: &Path,
    image: &OciImage,
    scratch_dir: &Path,
) -> Result<()> {
    let tar_path = scratch_dir.join(format!(
        "{}.oci.tar",
        image.manifest_digest().trim_start_matches("sha256:")
    ));
    tokio::fs::write(&tar_path, image.tar())
        .await
        .map_err(|source| ImageError::WriteTar {
            path: tar_path.clone(),
            source,
        })?;
    let imported = import_archive(ctr, address, &tar_path).await;
    let _ = tokio::fs::remove_file(&tar_path).await;
    imported.map_err(|error| match error {
        ImageError::Import { status, stderr, .. } => ImageError::Import {
            image: image.reference().to_string(),
            status,
            stderr,
        },
        other => other,
    })
}

/// Imports the OCI archive at `archive` (an image layout tar, such as `scripts/build-images.sh`
/// writes) into the CRI namespace of the containerd at `address`, unpacked for overlayfs.
pub async fn import_archive(ctr: &Path, address: &Path, archive: &Path) -> Result<()> {
    let output = tokio::process::Command::new(ctr)
        .arg("--address")
        .arg(address)
        .args([
            "--namespace",
            CRI_NAMESPACE,
            "images",
            "import",
            "--snapshotter",
            "overlayfs",
        ])
        .arg(archive)
        .output()
        .await
        .map_err(|source| ImageError::SpawnCtr {
            program: ctr.to_owned(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ImageError::Import {
            image: archive.display().to_string(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_layer_links_every_applet_to_busybox() {
        let layer = busybox_layer(Path::new(HOST_BUSYBOX)).unwrap();
        for applet in BUSYBOX_APPLETS {
            let expected = LayerEntry::symlink(format!("bin/{applet}"), "busybox");
            assert!(layer.entries().contains(&expected), "{applet}");
        }
    }

    #[test]
    fn test_images_are_named_as_cri_resolves_them() {
        let busybox = Path::new(HOST_BUSYBOX);
        assert_eq!(
            pause_image(busybox).unwrap().reference().to_string(),
            PAUSE_IMAGE
        );
        assert_eq!(
            busybox_image(busybox).unwrap().reference().to_string(),
            BUSYBOX_IMAGE
        );
        let empty = empty_image().unwrap();
        assert!(
            empty
                .reference()
                .to_string()
                .starts_with("docker.io/containix/empty:")
        );
    }

    #[test]
    fn a_missing_busybox_is_reported_with_its_path() {
        let err = pause_image(Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(
            matches!(err, ImageError::ReadBusybox { ref path, .. } if path.ends_with("busybox"))
        );
    }
}
