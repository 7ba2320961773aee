//! A synthetic store graph of many paths with a realistic reference shape, imported into the
//! store in one `nix-store --import` stream (no builds), for benchmarks that need big closures.
//!
//! The shape: a few "hub" paths (think libc, a shell) that most paths reference, chains of
//! dependencies on recent paths, and one root that reaches everything, so the closure of the root
//! is the whole graph. Planning ([`SyntheticGraph::plan`]) is pure; [`SyntheticGraph::import`]
//! is the only effect.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::nix_cli::NixCommand;
use crate::nix_daemon::NixDaemon;

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX_BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
/// The export format's marker after each path's NAR.
const EXPORT_MAGIC: u64 = 0x4558_494e;
/// How many low-numbered paths act as widely shared dependencies.
const HUBS: usize = 5;

/// One planned store path: a directory holding a `data` file that names its references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticPath {
    /// `/nix/store/<hash>-synthetic-<seed>-<index>`.
    pub path: PathBuf,
    /// Indices (all smaller than this path's) of the paths it references.
    pub references: Vec<usize>,
}

/// A planned graph in topological order: every path references only earlier ones, and the last
/// path (the root) reaches all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticGraph {
    /// The paths, dependencies first.
    pub paths: Vec<SyntheticPath>,
}

impl SyntheticGraph {
    /// Plans `count` paths from `seed` (the same seed gives the same store paths).
    pub fn plan(count: usize, seed: u64) -> Result<SyntheticGraph> {
        if count == 0 {
            return Err(Error::InvalidInput {
                field: "count",
                expected: "at least one path",
                got: count.to_string(),
            });
        }
        let mut random = SplitMix64(seed);
        let mut referenced = vec![false; count];
        let mut paths = Vec::with_capacity(count);
        for index in 0..count {
            let mut references = Vec::new();
            if index == count - 1 {
                // The root keeps everything nothing else references alive.
                references.extend((0..index).filter(|&i| !referenced[i]));
            } else if index > 0 {
                let hubs = index.min(HUBS);
                // Most paths link against one or two hubs...
                for _ in 0..1 + random.below(2) {
                    references.push(random.below(hubs));
                }
                // ...and depend on a few recent paths (libraries built just before them).
                for _ in 0..random.below(4) {
                    let window = index.min(64);
                    references.push(index - 1 - random.below(window));
                }
            }
            references.sort_unstable();
            references.dedup();
            for &reference in &references {
                referenced[reference] = true;
            }
            let name = format!("synthetic-{seed:x}-{index}");
            let path = PathBuf::from(format!("/nix/store/{}-{name}", random.hash_part()));
            paths.push(SyntheticPath { path, references });
        }
        Ok(SyntheticGraph { paths })
    }

    /// The root, whose closure is every path of the graph.
    pub fn root(&self) -> &Path {
        &self
            .paths
            .last()
            .expect("a graph has at least one path")
            .path
    }

    /// The graph in the format `nix-store --import` reads (what `nix-store --export` writes).
    pub fn export_stream(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.paths.len() * 512);
        for entry in &self.paths {
            let references: Vec<&Path> = entry
                .references
                .iter()
                .map(|&i| self.paths[i].path.as_path())
                .collect();
            write_u64(&mut out, 1);
            write_nar(&mut out, &data_file(entry, &references));
            write_u64(&mut out, EXPORT_MAGIC);
            write_str(&mut out, entry.path.as_os_str().as_encoded_bytes());
            write_u64(&mut out, references.len() as u64);
            for reference in &references {
                write_str(&mut out, reference.as_os_str().as_encoded_bytes());
            }
            write_str(&mut out, b""); // no deriver
            write_u64(&mut out, 0); // no legacy signature
        }
        write_u64(&mut out, 0);
        out
    }

    /// Imports the graph into the store through the daemon (root is trusted, so the unsigned
    /// paths are accepted); paths already valid are kept.
    pub fn import(&self) -> Result<()> {
        NixDaemon::start_or_reuse()?;
        NixCommand::nix_store()
            .arg("--import")
            .stdin(self.export_stream())
            .run()?;
        Ok(())
    }

    /// Deletes the graph's paths from the store (`nix-store --delete`).
    pub fn delete_from_store(&self) -> Result<()> {
        NixCommand::nix_store()
            .arg("--delete")
            .args(self.paths.iter().map(|entry| &entry.path))
            .run()?;
        Ok(())
    }
}

/// The text of a path's `data` file: its index and the store paths it references (so a scan of
/// its contents would find the same references the import declares).
fn data_file(entry: &SyntheticPath, references: &[&Path]) -> Vec<u8> {
    let mut text = format!("synthetic store path {}\n", entry.path.display());
    for reference in references {
        text.push_str(&format!("needs {}\n", reference.display()));
    }
    text.into_bytes()
}

/// A NAR of a directory holding one regular file, `data`.
fn write_nar(out: &mut Vec<u8>, data: &[u8]) {
    for token in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"directory",
        b"entry",
        b"(",
        b"name",
        b"data",
        b"node",
        b"(",
        b"type",
        b"regular",
        b"contents",
    ] {
        write_str(out, token);
    }
    write_str(out, data);
    for token in [b")", b")", b")"] {
        write_str(out, token);
    }
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A Nix wire string: length, bytes, zero padding to a multiple of 8.
fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    write_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out.resize(out.len() + (8 - bytes.len() % 8) % 8, 0);
}

/// A small deterministic generator (SplitMix64), enough to shape a graph.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    /// 32 base-32 characters: a valid store path hash part.
    fn hash_part(&mut self) -> String {
        (0..32)
            .map(|_| NIX_BASE32[(self.next() % 32) as usize] as char)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_topological_and_the_root_reaches_every_path() {
        let graph = SyntheticGraph::plan(500, 7).unwrap();
        let mut reached = vec![false; graph.paths.len()];
        let mut stack = vec![graph.paths.len() - 1];
        while let Some(index) = stack.pop() {
            if !std::mem::replace(&mut reached[index], true) {
                let refs = &graph.paths[index].references;
                assert!(
                    refs.iter().all(|&r| r < index),
                    "path {index} references a later one"
                );
                stack.extend(refs);
            }
        }
        assert!(reached.iter().all(|&r| r));
    }

    #[test]
    fn plan_is_deterministic_per_seed() {
        assert_eq!(
            SyntheticGraph::plan(50, 1).unwrap(),
            SyntheticGraph::plan(50, 1).unwrap()
        );
        assert_ne!(
            SyntheticGraph::plan(50, 1).unwrap(),
            SyntheticGraph::plan(50, 2).unwrap()
        );
    }

    #[test]
    fn wire_strings_are_padded_to_eight_bytes() {
        let mut out = Vec::new();
        write_str(&mut out, b"type");
        assert_eq!(
            out,
            [4, 0, 0, 0, 0, 0, 0, 0, b't', b'y', b'p', b'e', 0, 0, 0, 0]
        );
    }
}
