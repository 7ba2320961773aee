//! `containix sbom`: the closure as a CycloneDX 1.6 SBOM.

use std::process::ExitCode;

use anyhow::Result;
use containix_core::image::sbom::cyclonedx;

use crate::source::SourceArgs;

/// Print the CycloneDX 1.6 SBOM (JSON) of the closure a ref resolves to.
///
/// The root store path is the document's subject and every other store path a component (name,
/// version, purl, NAR hash); references are the dependencies. The same closure always gives the
/// same bytes.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix sbom path:./examples/hello > hello.cdx.json\n  containix sbom --store-paths /nix/store/<hash>-hello-1.0\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let resolution = super::resolve::resolve_args(&args.source, args.progress)?;
    let sbom = cyclonedx(&resolution.resolved().closure, containix_core::VERSION);
    println!("{}", serde_json::to_string_pretty(&sbom)?);
    Ok(ExitCode::SUCCESS)
}
