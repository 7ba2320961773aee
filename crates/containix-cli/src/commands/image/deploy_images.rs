//! The images the manifests in `deploy/` name that this repository builds, by name: the CSI
//! plugin, the node installer and the empty image. The CSI sidecars (node-driver-registrar,
//! livenessprobe) are upstream images the manifests name at their own registry.
//!
//! Every image but the empty one is `ghcr.io/containix/<name>:<crate version>`; the empty image
//! is always `containix/empty:1.0.0`, the name pod specs use.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, OciImage, OciImageBuilder, empty_image};
use containix_core::node::containerd_config::SHIM_BINARY;

use super::binary_layer::binary_layer;

/// The registry namespace of the images this repository builds.
pub const IMAGE_NAMESPACE: &str = "ghcr.io/containix";

/// `PATH` inside the images. The last entry is where a multi-user Nix install keeps `nix`: the
/// CSI plugin runs it (flakeRef and packages volumes) from the host's `/nix`, which its
/// DaemonSet mounts.
pub const IMAGE_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/nix/var/nix/profiles/default/bin";

/// One image this repository builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployImage {
    /// `containix-csi`, the CSI node plugin (deploy/csi/daemonset.yaml).
    Csi,
    /// `containix` and `containerd-shim-containix-v1`, the node installer
    /// (deploy/installer/*.yaml).
    Installer,
    /// The empty image pods name.
    Empty,
}

impl DeployImage {
    /// Every image, in the order they are written.
    pub const ALL: [DeployImage; 3] = [Self::Csi, Self::Installer, Self::Empty];

    /// The name the manifests use.
    pub fn name(self) -> String {
        let version = containix_core::VERSION;
        match self {
            Self::Csi => format!("{IMAGE_NAMESPACE}/containix-csi:{version}"),
            Self::Installer => format!("{IMAGE_NAMESPACE}/containix:{version}"),
            Self::Empty => EMPTY_IMAGE_NAME.to_owned(),
        }
    }

    /// The archive's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Csi => "containix-csi.oci.tar",
            Self::Installer => "containix.oci.tar",
            Self::Empty => "containix-empty.oci.tar",
        }
    }

    /// The programs it carries: `(binary name in bin_dir, path in the image)`.
    fn programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Csi => &[("containix-csi", "/usr/local/bin/containix-csi")],
            // The installer copies the shim onto the host from beside itself.
            Self::Installer => &[
                ("containix", "/usr/local/bin/containix"),
                (SHIM_BINARY, "/usr/local/bin/containerd-shim-containix-v1"),
            ],
            Self::Empty => &[],
        }
    }

    /// Builds the image from the programs in `bin_dir`.
    pub fn build(self, bin_dir: &Path) -> Result<OciImage> {
        if self == Self::Empty {
            return Ok(empty_image(EMPTY_IMAGE_NAME)?);
        }
        let programs: Vec<(PathBuf, &str)> = self
            .programs()
            .iter()
            .map(|(binary, in_image)| (bin_dir.join(binary), *in_image))
            .collect();
        let layer = binary_layer(&programs)?;
        let entrypoint = programs[0].1;
        let image = OciImageBuilder::new(&self.name())?
            .layer(layer)
            .entrypoint([entrypoint])
            .cmd(["--help"])
            .env("PATH", IMAGE_PATH)
            .build()
            .with_context(|| format!("building {}", self.name()))?;
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_and_one_tag_except_the_empty_image() {
        assert_eq!(
            DeployImage::Csi.name(),
            format!(
                "ghcr.io/containix/containix-csi:{}",
                containix_core::VERSION
            )
        );
        assert_eq!(DeployImage::Empty.name(), "containix/empty:1.0.0");
        for image in DeployImage::ALL {
            if image != DeployImage::Empty {
                assert!(image.name().starts_with(IMAGE_NAMESPACE), "{image:?}");
                assert!(image.name().ends_with(containix_core::VERSION), "{image:?}");
            }
        }
    }
}
