//! The shim's heap between Task calls. A shim lives as long as its pod and is idle nearly all
//! that time, so what its heap keeps after a call is what it costs the node, once per pod.
//!
//! glibc's allocator gives each thread that allocates an arena of its own and keeps the pages
//! it freed; a Task.Create that parsed a spec and a closure leaves them resident. The shim uses
//! one arena (it serves one pod, and its threads rarely allocate at once) and hands freed pages
//! back to the kernel after the calls that allocate most. Elsewhere than glibc, both are no-ops.

/// Makes every thread allocate from the main arena. Call before any thread starts.
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
