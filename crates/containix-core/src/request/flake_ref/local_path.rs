//! Rewriting a local flake reference to the place the node policy checked, so that Nix reads
//! exactly that file or folder: the canonical path, written explicitly.

use super::encoding::encode;
use super::reference::FlakeRef;
use super::source::{FetchTransport, FlakeSource, GitTransport};

impl FlakeRef {
    /// The same reference with its local path replaced by the absolute `path`, written
    /// explicitly (`path:/x`, never a bare `/x`, which Nix might read as a Git checkout).
    /// `None` for a remote or indirect reference, or a relative `path`.
    pub fn with_local_path(&self, path: &str) -> Option<FlakeRef> {
        if !path.starts_with('/') {
            return None;
        }
        let file_url = || format!("file://{}", encode(path, b"/"));
        let source = match &self.source {
            FlakeSource::Path { .. } => FlakeSource::Path {
                path: path.to_owned(),
                bare: false,
            },
            FlakeSource::Git {
                transport: GitTransport::File,
                ..
            } => FlakeSource::Git {
                transport: GitTransport::File,
                url: file_url(),
            },
            FlakeSource::Tarball {
                transport: FetchTransport::File,
                ..
            } => FlakeSource::Tarball {
                transport: FetchTransport::File,
                url: file_url(),
            },
            FlakeSource::File {
                transport: FetchTransport::File,
                ..
            } => FlakeSource::File {
                transport: FetchTransport::File,
                url: file_url(),
            },
            _ => return None,
        };
        Some(FlakeRef {
            source,
            ..self.clone()
        })
    }

    /// A bare path inside a Git work tree, the way Nix reads it: the checkout at the absolute
    /// `root` (`git+file://<root>`) with `subdir` as its `dir`, and `shallow=1` when the
    /// checkout is shallow. The path's own attributes (`rev`, `narHash`, ...) are kept. `None`
    /// unless `self` is a bare path, or when it has a `dir` of its own and `subdir` is not
    /// empty (Nix refuses that as inconsistent).
    pub fn as_git_checkout(&self, root: &str, subdir: &str, shallow: bool) -> Option<FlakeRef> {
        if !matches!(self.source, FlakeSource::Path { bare: true, .. }) || !root.starts_with('/') {
            return None;
        }
        let dir = match (&self.dir, subdir) {
            (dir, "") => dir.clone(),
            (None, subdir) => Some(subdir.to_owned()),
            (Some(_), _) => return None,
        };
        let mut attrs = self.attrs.clone();
        if shallow {
            attrs.insert("shallow".to_owned(), "1".to_owned());
        }
        Some(FlakeRef {
            source: FlakeSource::Git {
                transport: GitTransport::File,
                url: format!("file://{}", encode(root, b"/")),
            },
            dir,
            attrs,
            ..self.clone()
        })
    }
}
