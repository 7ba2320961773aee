//! `containix image`: images containix needs on a node.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, empty_image};

/// Write images containix uses (the empty image pods reference).
#[derive(clap::Args)]
#[command(after_help = format!(
    "Example:\n  containix image empty --out containix-empty.tar && ctr -n k8s.io images import containix-empty.tar\n\n{}",
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
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Image::Empty { out, json } = args.image;
    let image = empty_image(EMPTY_IMAGE_NAME)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&out)
        .with_context(|| format!("--out {}: creating a new file", out.display()))?;
    if let Err(err) = file.write_all(image.tar()).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&out);
        return Err(err).with_context(|| format!("writing {}", out.display()));
    }
    if json {
        let value = serde_json::json!({
            "name": image.reference().to_string(),
            "manifest_digest": image.manifest_digest(),
            "file": out,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        eprintln!("wrote {} ({EMPTY_IMAGE_NAME})", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
