//! `containix image`: the images containix needs on a node and in a cluster.

mod binary_layer;
mod deploy_images;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, OciImage, empty_image};

use deploy_images::DeployImage;

/// Write images containix uses (the empty image pods reference, the images deploy/ names).
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix image empty --out containix-empty.tar && ctr -n k8s.io images import containix-empty.tar\n  containix image build --out-dir images/\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(subcommand)]
    pub image: Image,
}

#[derive(clap::Subcommand)]
pub enum Image {
    /// Write the empty OCI image (no layers' content) as an OCI archive (tar).
    #[command(after_help = format!(
        "Examples:\n  containix image empty --out containix-empty.tar\n  containix image empty --json --out containix-empty.tar\n\n{}",
        crate::exit_status::EXIT_CODES
    ))]
    Empty {
        /// The tar file to write; must not exist.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print the image's name, manifest digest and file as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write every image the manifests in deploy/ name that this repository builds, as OCI
    /// archives `ctr images import` takes, named as the manifests name them: the CSI plugin
    /// (containix-csi), the node installer (containix and the shim) and the empty image. Each
    /// holds the programs from --bin-dir and exactly the shared libraries they load.
    #[command(after_help = format!(
        "Examples:\n  containix image build --out-dir images/\n  containix image build --bin-dir target/release --out-dir images/ --json\n  ctr -n k8s.io images import images/containix-csi.oci.tar\n\n{}",
        crate::exit_status::EXIT_CODES
    ))]
    Build {
        /// The directory to write the archives into (created if missing); existing archives
        /// of the same names are replaced.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Where the built programs are (containix, containix-csi,
        /// containerd-shim-containix-v1) [default: the directory of this program].
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<PathBuf>,
        /// Print each image's name, manifest digest and file as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.image {
        Image::Empty { out, json } => write_empty(&out, json),
        Image::Build {
            out_dir,
            bin_dir,
            json,
        } => build(&out_dir, bin_dir, json),
    }
}

fn write_empty(out: &Path, json: bool) -> Result<ExitCode> {
    let image = empty_image(EMPTY_IMAGE_NAME)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("--out {}: creating a new file", out.display()))?;
    if let Err(err) = file.write_all(image.tar()).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(out);
        return Err(err).with_context(|| format!("writing {}", out.display()));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&describe(&image, out))?);
    } else {
        eprintln!("wrote {} ({EMPTY_IMAGE_NAME})", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn build(out_dir: &Path, bin_dir: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let bin_dir = match bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("finding this program to find the others beside it (pass --bin-dir)")?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    fs::create_dir_all(out_dir)
        .with_context(|| format!("--out-dir {}: creating it", out_dir.display()))?;
    let mut written = Vec::new();
    for image in DeployImage::ALL {
        let built = image.build(&bin_dir)?;
        let path = out_dir.join(image.file_name());
        write_replacing(&path, built.tar())?;
        if !json {
            eprintln!(
                "wrote {} ({}, {:.1} MB)",
                path.display(),
                image.name(),
                built.tar().len() as f64 / 1e6
            );
        }
        written.push(describe(&built, &path));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&written)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` through a temporary file beside it, so an archive is whole or absent.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            temp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .map_err(|err| err.error)
        .with_context(|| format!("renaming into place {}", path.display()))?;
    Ok(())
}

fn describe(image: &OciImage, file: &Path) -> serde_json::Value {
    serde_json::json!({
        "name": image.reference().to_string(),
        "manifestDigest": image.manifest_digest(),
        "file": file,
    })
}
