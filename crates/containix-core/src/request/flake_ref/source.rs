//! Where a flake comes from: the kinds of source a flake reference names, and their
//! transports.

/// A code forge with a dedicated, tarball-based flake type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forge {
    GitHub,
    GitLab,
    SourceHut,
}

impl Forge {
    /// The scheme (and Nix input type) of this forge: `github`, `gitlab` or `sourcehut`.
    pub fn scheme(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::SourceHut => "sourcehut",
        }
    }

    /// The host Nix fetches from when a ref has no `?host=`: `github.com`, `gitlab.com` or
    /// `git.sr.ht`.
    pub fn default_host(self) -> &'static str {
        match self {
            Forge::GitHub => "github.com",
            Forge::GitLab => "gitlab.com",
            Forge::SourceHut => "git.sr.ht",
        }
    }
}

/// How a Git repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GitTransport {
    Https,
    Http,
    Ssh,
    File,
}

/// How a tarball or file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchTransport {
    Https,
    Http,
    File,
}

/// Where a flake comes from. Built only by the parser, so every value prints and re-parses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlakeSource {
    /// `github:`, `gitlab:`, `sourcehut:`. A GitLab owner may contain `/` (subgroups).
    Forge {
        forge: Forge,
        owner: String,
        repo: String,
    },
    /// `git+<transport>:`; `url` is the repository URL without `git+` and without the query,
    /// e.g. `https://example.org/repo` or `file:///src/repo` (escapes kept, upper-case hex).
    Git {
        transport: GitTransport,
        url: String,
    },
    /// `path:<path>` (`bare == false`) or a bare `./x`, `../x`, `/abs` (`bare == true`).
    /// Nix treats a bare path inside a Git work tree as that Git repository, so the two forms
    /// are kept apart. `path` is percent-decoded.
    Path { path: String, bare: bool },
    /// An archive fetched and unpacked; `url` is the full URL without the query.
    Tarball {
        transport: FetchTransport,
        url: String,
    },
    /// A single file fetched as is; `url` is the full URL without the query.
    File {
        transport: FetchTransport,
        url: String,
    },
    /// A flake registry id such as `nixpkgs`.
    Indirect { id: String },
}
