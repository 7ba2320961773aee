//! An image layer holding programs built on this machine and exactly the shared libraries they
//! load, so that the image runs them without a distribution underneath.
//!
//! The libraries are the ones the dynamic loader resolves for each program, as `ldd` lists them
//! (run with an argument vector, never a shell line); each goes into the layer at the path the
//! loader found it at, the loader itself included, with its contents (a symlinked library
//! becomes a regular file).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use containix_core::image::oci_image::{ImageLayer, LayerEntry};

/// One line of `ldd` output, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LddLine {
    /// A library the loader resolved (or the loader itself), at this path.
    Resolved(PathBuf),
    /// A library the kernel provides (`linux-vdso.so.1`): nothing to copy.
    Virtual,
    /// A library the loader could not find.
    NotFound(String),
}

/// Reads one line of `ldd` output; `None` for lines that name no library (`statically linked`).
pub fn parse_ldd_line(line: &str) -> Option<LddLine> {
    let line = line.trim();
    let (name, target) = match line.split_once(" => ") {
        Some((name, target)) => (name.trim(), target.trim()),
        None => ("", line),
    };
    if target.starts_with("not found") {
        return Some(LddLine::NotFound(name.to_owned()));
    }
    // `<path> (0x...)`, or `(0x...)` alone for a virtual library.
    let path = target.split(" (0x").next().unwrap_or_default().trim();
    if path.starts_with('/') {
        Some(LddLine::Resolved(PathBuf::from(path)))
    } else if target.contains("(0x") {
        Some(LddLine::Virtual)
    } else {
        None
    }
}

/// The shared libraries `program` loads (the loader included), as `ldd` resolves them; empty for
/// a static program.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd (Debian package libc-bin) to find the shared libraries to copy")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed ({}): {}",
            program.display(),
            output.status,
            stderr.trim()
        );
    }
    let mut libraries = Vec::new();
    for line in stdout.lines() {
        match parse_ldd_line(line) {
            Some(LddLine::Resolved(path)) => libraries.push(path),
            Some(LddLine::NotFound(name)) => bail!(
                "{} needs {name}, which the dynamic loader cannot find on this machine",
                program.display()
            ),
            Some(LddLine::Virtual) | None => {}
        }
    }
    Ok(libraries)
}

/// A layer with each `(program on this machine, path in the image)` as an executable file and
/// the shared libraries they load, plus the directories above them and an empty `/tmp`.
pub fn binary_layer(programs: &[(PathBuf, &str)]) -> Result<ImageLayer> {
    let mut files: Vec<(String, u32, PathBuf)> = Vec::new();
    let mut libraries = BTreeSet::new();
    for (program, in_image) in programs {
        if !program.is_file() {
            bail!(
                "{}: no such program; build the workspace first (`cargo build --workspace --bins`)",
                program.display()
            );
        }
        files.push(((*in_image).to_owned(), 0o755, program.clone()));
        libraries.extend(shared_libraries(program)?);
    }
    for library in libraries {
        let in_image = library.display().to_string();
        files.push((in_image, 0o755, library));
    }
    let mut directories = BTreeSet::from(["tmp".to_owned()]);
    for (in_image, _, _) in &files {
        let mut parent = Path::new(in_image.trim_start_matches('/')).parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            directories.insert(dir.display().to_string());
            parent = dir.parent();
        }
    }
    let mut layer = ImageLayer::new();
    // BTreeSet order puts every directory after its parent.
    for dir in directories {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        layer.push(LayerEntry::directory(dir, mode));
    }
    for (in_image, mode, source) in files {
        let contents =
            std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        layer.push(LayerEntry::file(in_image, mode, contents));
    }
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_are_read() {
        assert_eq!(
            parse_ldd_line("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f6d41e000)"),
            Some(LddLine::Resolved("/lib/x86_64-linux-gnu/libc.so.6".into()))
        );
        assert_eq!(
            parse_ldd_line("\t/lib64/ld-linux-x86-64.so.2 (0x00007f0f6ea78000)"),
            Some(LddLine::Resolved("/lib64/ld-linux-x86-64.so.2".into()))
        );
        assert_eq!(
            parse_ldd_line("\tlinux-vdso.so.1 (0x00007ffc4a5f3000)"),
            Some(LddLine::Virtual)
        );
        assert_eq!(
            parse_ldd_line("\tlibmissing.so.2 => not found"),
            Some(LddLine::NotFound("libmissing.so.2".into()))
        );
        assert_eq!(parse_ldd_line("\tstatically linked"), None);
    }

    #[test]
    fn a_program_comes_with_its_loader_and_libraries() {
        // This test binary is a dynamically linked program like the ones images carry.
        let me = std::env::current_exe().unwrap();
        let libraries = shared_libraries(&me).unwrap();
        assert!(
            libraries.iter().any(|l| l
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libc.so")),
            "{libraries:?}"
        );
        assert!(
            libraries.iter().any(|l| l
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ld-linux")),
            "{libraries:?}"
        );
        let layer = binary_layer(&[(me, "/usr/local/bin/program")]).unwrap();
        let paths: Vec<String> = layer
            .entries()
            .iter()
            .map(|entry| match entry {
                LayerEntry::Directory { path, .. }
                | LayerEntry::File { path, .. }
                | LayerEntry::Symlink { path, .. } => path.clone(),
            })
            .collect();
        for expected in [
            "tmp",
            "usr",
            "usr/local",
            "usr/local/bin",
            "/usr/local/bin/program",
        ] {
            assert!(
                paths.contains(&expected.to_owned()),
                "{expected}: {paths:?}"
            );
        }
        let missing = binary_layer(&[(PathBuf::from("/nonexistent/program"), "/bin/x")]);
        assert!(missing.unwrap_err().to_string().contains("cargo build"));
    }
}
