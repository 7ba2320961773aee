//! Flake references: a typed, strictly parsed form of what `nix` accepts as a flake location.
//!
//! The syntax follows the Nix manual's "Flake references" section:
//!
//! | form | example |
//! |---|---|
//! | forge | `github:NixOS/nixpkgs/nixos-24.05?dir=lib`, `gitlab:group%2Fsub/repo`, `sourcehut:~user/repo` |
//! | Git | `git+https://host/repo?ref=main&rev=<40 hex>`, `git+ssh://git@host/repo`, `git+file:///src/repo` |
//! | path | `path:/abs`, `path:./rel`, or bare `./rel`, `../rel`, `/abs` |
//! | tarball | `https://host/x.tar.gz`, `tarball+https://host/x`, `file:///x.zip` |
//! | file | `file+https://host/x`, `file:///x` |
//! | indirect | `nixpkgs`, `nixpkgs/nixos-24.05`, `nixpkgs/<40 hex>`, `flake:nixpkgs` |
//!
//! Parsing is strict: whitespace, control and non-ASCII characters, a leading `-`, unknown
//! schemes and attributes, duplicate query keys, malformed names, revs and percent-encoding
//! are refused. [`FlakeRef`]'s `Display` prints a canonical form that parses back to an equal
//! value; query attributes are printed in sorted order. Only the URL-like syntax of the manual
//! is accepted (no `git://`, `hg+*` or scp-like `host:path`), and tarball/file URLs cannot
//! carry query parameters of their own.

mod attr_path;
mod encoding;
pub(crate) mod error;
mod installable;
mod local_path;
pub(crate) mod location;
mod parse;
mod reference;
mod source;
pub(crate) mod syntax;
#[cfg(test)]
mod tests;

pub use attr_path::AttrPath;
pub use error::{
    AttrPathError, AttrPathErrorKind, FlakeRefError, FlakeRefErrorKind, InstallableError,
};
pub use installable::FlakeInstallable;
pub use location::{FetchLocation, LocationError};
pub use reference::FlakeRef;
pub use source::{FetchTransport, FlakeSource, Forge, GitTransport};
