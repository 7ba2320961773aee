//! Stage 3, **resolve**: from a [`Request`](crate::request::container_request::Request) to a [`Resolved`]
//! closure that is valid in the local store. Flakes are locked ([`flake_lock`], locks cached in
//! [`lock_cache`]) and evaluated ([`flake_eval`]), through the `nix` CLI run by a
//! [`process_runner`], then realised over the daemon protocol (`realise`: substituted, or built
//! where policy allows); store paths are substituted. Evaluations are cached on disk per lock
//! ([`cache`]) behind node-wide file locks and evaluation slots ([`single_flight`]); one
//! deadline covers the whole resolution ([`step`]).

pub mod cache;
pub mod error;
pub mod flake_eval;
pub mod flake_lock;
pub mod held_closure;
pub mod inflight;
pub mod known_roots;
pub mod lock_cache;
pub mod process_runner;
pub mod progress;
mod realise;
pub mod resolved;
pub mod resolver;
mod run;
pub mod single_flight;
pub mod source_fingerprint;
pub mod step;

pub use cache::{CacheKey, CachedEvaluation, ResolutionCache};
pub use error::ResolveError;
pub use progress::ResolveProgress;
pub use resolved::Resolved;
pub use resolver::{Resolution, Resolver};
pub use single_flight::{KeyLock, LockDir, LockError};
pub use step::Step;
