//! Where a volume's closure comes from: the seam between publishing and closure resolution.
//!
//! The plugin serves with the core [`Resolver`] (flake refs, packages and store paths, under
//! the node policy, with its step-naming deadline). The seam exists so that publishing can be
//! exercised with a fake source in unit tests; resolution logic itself lives only in core.

use std::future::Future;

use containix_core::request::container_request::Request;
use containix_core::resolve::resolved::Resolved;
use containix_core::resolve::{Resolution, ResolveError, Resolver};
use containix_core::store::gc_roots::{GcRootError, GcRoots};

/// A resolved closure that the store keeps alive (by a temp root on the resolving daemon
/// connection) until it is rooted with [`HeldClosure::hold`] or dropped.
pub trait HeldClosure: Send {
    /// What the request resolved to.
    fn resolved(&self) -> &Resolved;

    /// Roots the closure for `consumer` in `gc_roots` before the temporary protection lapses,
    /// so the garbage collector never has a window to collect it.
    fn hold(
        self,
        gc_roots: &GcRoots,
        consumer: &str,
    ) -> impl Future<Output = Result<Resolved, GcRootError>> + Send;
}

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

impl HeldClosure for Resolution {
    fn resolved(&self) -> &Resolved {
        Resolution::resolved(self)
    }

    fn hold(
        self,
        gc_roots: &GcRoots,
        consumer: &str,
    ) -> impl Future<Output = Result<Resolved, GcRootError>> + Send {
        Resolution::hold(self, gc_roots, consumer)
    }
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
