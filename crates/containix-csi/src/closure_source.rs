//! Where a volume's closure comes from: the seam between publishing and closure resolution.
//!
//! The plugin serves with the core [`Resolver`] (flake refs, packages and store paths, under
//! the node policy, with its step-naming deadline). The seam exists so that publishing can be
//! exercised with a fake source in unit tests; resolution logic itself lives only in core.

use std::future::Future;

use containix_core::request::container_request::Request;
use containix_core::resolve::held_closure::HeldClosure;
use containix_core::resolve::{Resolution, ResolveError, Resolver};

/// Resolves a request to a closure valid in the local store, within the deadline the node
/// policy gives the request.
pub trait ClosureSource: Send + Sync + 'static {
    /// The resolved, temporarily protected closure.
    type Closure: HeldClosure;

    /// Resolves `request`.
    fn resolve(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Self::Closure, ResolveError>> + Send;
}

impl ClosureSource for Resolver {
    type Closure = Resolution;

    fn resolve(
        &self,
        request: &Request,
    ) -> impl Future<Output = Result<Resolution, ResolveError>> + Send {
        Resolver::resolve(self, request)
    }
}
