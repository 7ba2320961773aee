//! A resolved closure that the store keeps alive (by temporary roots of the resolving daemon
//! connection) until it is rooted for good or let go: what a store view is made from. A trait,
//! so that code taking a resolution can be exercised with a fake one.

use std::future::Future;

use super::resolved::Resolved;
use super::resolver::Resolution;
use crate::store::gc_roots::{GcRootError, GcRoots};

/// A resolution whose closure is protected until [`hold`](Self::hold) or
/// [`release`](Self::release).
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

    /// Lets the temporary protection go without rooting anything (something else holds the
    /// closure already).
    fn release(self) -> Resolved;
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

    fn release(self) -> Resolved {
        self.into_unrooted()
    }
}
