//! glibc's allocator, set up at start so that memory freed is memory returned.
//!
//! Left alone, glibc raises its threshold for mapping an allocation on its own to the
//! largest one freed so far (up to 32 MiB): after the search indexer's first commit frees
//! its multi-megabyte buffers, every later one is carved from a heap and stays there once
//! freed. It also keeps up to eight heaps per core, one per thread that allocates. Measured
//! with `bench/run.sh`'s scenarios (256 connections): peak RSS 77 MiB as glibc comes, 59 MiB
//! with the settings below.

/// Allocations of this size or more are mapped on their own and unmapped when freed; a heap
/// is trimmed when this much is free at its top.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const RETURNED_FROM_BYTES: libc::c_int = 128 * 1024;

/// Heaps shared by all threads (one per core here; each thread still has its own cache of
/// small blocks in front of them).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAPS: libc::c_int = 2;

/// Applies the settings; called first thing in `main`, before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets the allocator's parameters, which glibc allows at any
        // time; no pointer is passed and nothing is allocated or freed by the call.
        #[expect(unsafe_code, reason = "mallopt has no safe wrapper; the one unsafe call of the workspace")]
        let applied = unsafe {
            [
                libc::mallopt(libc::M_MMAP_THRESHOLD, RETURNED_FROM_BYTES),
                libc::mallopt(libc::M_TRIM_THRESHOLD, RETURNED_FROM_BYTES),
                libc::mallopt(libc::M_ARENA_MAX, HEAPS),
            ]
        };
        if applied.contains(&0) {
            eprintln!("warning: glibc refused an allocator setting; memory use may be higher than documented");
        }
    }
}
