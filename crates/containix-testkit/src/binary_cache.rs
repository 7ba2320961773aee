//! A signed Nix binary cache in a temporary directory, served over loopback HTTP.
//!
//! The round trip tests need: push a closure ([`BinaryCache::push`]), serve it
//! ([`BinaryCache::serve`]), delete the paths from the store, and substitute them back through the
//! daemon with [`substitution_options`] on the command. Paths are signed as they are written to
//! the cache (`nix copy --to 'file://…?secret-key=…'`), which leaves the signatures recorded in
//! the local store untouched for other tests.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::http_server::StaticFileServer;
use crate::nix_cli::NixCommand;

/// A signing key pair made by `nix-store --generate-binary-cache-key`.
#[derive(Debug, Clone)]
pub struct SigningKey {
    /// The file holding the secret key.
    pub secret_key_file: PathBuf,
    /// The public key, `<name>:<base64>`, as `trusted-public-keys` wants it.
    pub public_key: String,
}

impl SigningKey {
    /// Generates a key pair called `name` (e.g. `containix-test-1`) into `dir`.
    pub fn generate(name: &str, dir: &Path) -> Result<SigningKey> {
        if name.is_empty() || name.contains([':', '/', ' ']) {
            return Err(Error::InvalidInput {
                field: "key name",
                expected: "a non-empty name without ':', '/' or spaces",
                got: name.into(),
            });
        }
        let secret_key_file = dir.join(format!("{name}.secret"));
        let public_key_file = dir.join(format!("{name}.public"));
        NixCommand::nix_store()
            .arg("--generate-binary-cache-key")
            .arg(name)
            .arg(&secret_key_file)
            .arg(&public_key_file)
            .run()?;
        let public_key = fs::read_to_string(&public_key_file)
            .map_err(|err| Error::io_at("reading", &public_key_file, err))?
            .trim()
            .to_string();
        Ok(SigningKey {
            secret_key_file,
            public_key,
        })
    }
}

/// A binary cache directory with its own signing key; removed on drop.
#[derive(Debug)]
pub struct BinaryCache {
    root: TempDir,
    key: SigningKey,
}

impl BinaryCache {
    /// Creates an empty cache and generates its signing key.
    pub fn create() -> Result<BinaryCache> {
        let root = tempfile::Builder::new()
            .prefix("containix-binary-cache-")
            .tempdir()
            .map_err(|err| Error::io("creating a temporary directory", err))?;
        let keys = root.path().join("keys");
        let cache = root.path().join("cache");
        for dir in [&keys, &cache] {
            fs::create_dir(dir).map_err(|err| Error::io_at("creating", dir, err))?;
        }
        let name = format!("containix-test-{}", std::process::id());
        let key = SigningKey::generate(&name, &keys)?;
        Ok(BinaryCache { root, key })
    }

    /// The directory holding the cache (`nix-cache-info`, `*.narinfo`, `nar/`).
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// The cache's public key, for `trusted-public-keys`.
    pub fn public_key(&self) -> &str {
        &self.key.public_key
    }

    /// A scratch directory next to the cache (not served), e.g. for other keys.
    pub fn scratch_dir(&self) -> PathBuf {
        self.root.path().join("keys")
    }

    /// Copies the closures of `paths` into the cache, signed with the cache's key.
    pub fn push<P: AsRef<Path>>(&self, paths: &[P]) -> Result<()> {
        self.push_with(paths, "")
    }

    /// [`push`](Self::push) with the NARs stored uncompressed (`compression=none`), so that a
    /// changed byte in one is a change of the path's contents.
    pub fn push_uncompressed<P: AsRef<Path>>(&self, paths: &[P]) -> Result<()> {
        self.push_with(paths, "&compression=none")
    }

    fn push_with<P: AsRef<Path>>(&self, paths: &[P], parameters: &str) -> Result<()> {
        if paths.is_empty() {
            return Err(Error::InvalidInput {
                field: "paths",
                expected: "at least one store path",
                got: String::new(),
            });
        }
        let to = format!(
            "file://{}?secret-key={}{parameters}",
            self.dir().display(),
            self.key.secret_key_file.display()
        );
        NixCommand::nix()
            .args(["copy", "--to"])
            .arg(to)
            .args(paths.iter().map(AsRef::as_ref))
            .run()?;
        Ok(())
    }

    /// Serves the cache over HTTP on a free loopback port until the server is dropped.
    pub fn serve(&self) -> Result<StaticFileServer> {
        StaticFileServer::serve(self.dir())
    }
}

/// The `--option` settings that make the daemon substitute from the cache at `url` and trust
/// paths signed by `public_key` (and only from there). Root is a trusted user, so the daemon
/// accepts them per command.
pub fn substitution_options(url: &str, public_key: &str) -> Vec<(String, String)> {
    vec![
        ("substituters".into(), url.into()),
        ("trusted-public-keys".into(), public_key.into()),
        ("require-sigs".into(), "true".into()),
        // Loopback ports are reused between tests: never answer from remembered lookups.
        ("narinfo-cache-negative-ttl".into(), "0".into()),
        ("narinfo-cache-positive-ttl".into(), "0".into()),
    ]
}
