//! Stage 2, **store**: the Nix store as containix sees it. Typed store paths ([`store_path`],
//! [`nix32`]), a client for the Nix daemon's worker protocol ([`daemon`]), what the store
//! knows about a path ([`path_info`]), closures and how to query them ([`closure`],
//! [`closure_query`]), the membership question planning asks of one ([`members`]), and the
//! per-consumer GC roots that keep them alive ([`gc_roots`]).

pub mod closure;
pub mod closure_query;
pub mod daemon;
pub mod drv_name;
pub mod gc_roots;
pub mod members;
pub mod nix32;
pub mod path_info;
pub mod store_path;

pub use closure::Closure;
pub use daemon::DaemonClient;
pub use gc_roots::GcRoots;
pub use members::Members;
pub use path_info::PathInfo;
pub use store_path::StorePath;
