//! The heap of containix's long-lived node processes between requests. A shim lives as long as
//! its pod and the CSI plugin as long as the node, both idle nearly all that time, so what
//! their heaps keep after a request is what they cost the node.
//!
//! glibc's allocator gives each thread that allocates an arena of its own and keeps the pages
//! it freed; a Task.Create or a volume publish that parsed a spec and a closure leaves them
//! resident. These processes use one arena (their requests are few and rarely overlap) and hand
//! freed pages back to the kernel after the requests that allocate most. Elsewhere than glibc,
//! both are no-ops.

/// Makes every thread allocate from the main arena. Call first in `main`, before any thread
/// starts.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the heap's free pages to the kernel.
pub fn give_back_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own lock and touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
