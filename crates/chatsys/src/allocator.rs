//! glibc's allocator, set up at start so that memory freed is memory returned.
//!
//! Left alone, glibc raises its threshold for mapping an allocation on its own to the
//! largest one freed so far (up to 32 MiB, and its heap-trimming threshold to twice that):
//! after the search indexer's first commit frees its multi-megabyte buffers (a 5 MB
//! document channel, 1 MiB arena pages), every later one is carved from a heap and stays
//! there once freed. Through `bench/run.sh`'s create scenarios (256 connections, a fresh
//! server, 8 s each): peak RSS 77 MiB as glibc comes, 60 MiB with the threshold fixed.
//!
//! Fewer heaps (`M_ARENA_MAX` 2) saved another 3 MiB but cost 15–20 % of the create
//! throughput (threads waiting for a heap's lock), so glibc keeps its own count.

/// Allocations of this size or more are mapped on their own and unmapped when freed (and,
/// the threshold being fixed, heaps are trimmed once this much is free at their top, as
/// glibc does by default).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAPPED_FROM_BYTES: libc::c_int = 128 * 1024;

/// Applies the setting; called first thing in `main`, before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets the allocator's parameters, which glibc allows at any
        // time; no pointer is passed and nothing is allocated or freed by the call.
        #[expect(unsafe_code, reason = "mallopt has no safe wrapper; the one unsafe call of the workspace")]
        let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED_FROM_BYTES) };
        if applied == 0 {
            eprintln!("warning: glibc refused its mmap threshold; memory use may be higher than documented");
        }
    }
}
