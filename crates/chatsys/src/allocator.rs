//! The allocator of Rust's allocations: jemalloc instead of glibc's malloc. C libraries
//! (SQLite) keep glibc's `malloc`: a jemalloc that takes over `malloc` itself deadlocks at
//! start under a preloaded library that allocates while jemalloc initialises (libfaketime,
//! which the clock-skew tests run the server under).
//!
//! Under create load glibc's `malloc` and `free` took nearly a fifth of the server's CPU
//! (`docs/benchmarks.md`). CPU per request with jemalloc, measured with `bench/cpu.sh 8 256`
//! on 2026-12-06, three runs in turns with glibc's malloc (its mmap threshold fixed at
//! 128 KiB, as this module set it before), µs: create_chat 40–63 against 50–78, spread
//! 88–110 against 117–121, hot 52–58 against 75–87, get 31–38 against 36–46, list 115–125
//! against 125–159, `/healthz` 22–27 against 22–36 (a noisy machine: compare within a
//! run).
//!
//! Its settings are compiled in (`.cargo/config.toml`, `JEMALLOC_SYS_WITH_MALLOC_CONF`):
//! one arena (`narenas:1`; the threads' own caches spare it most of its lock), thread caches
//! for small sizes only (`tcache_max:4096`), and freed pages given back to the system
//! after 200 ms (`dirty_decay_ms`, `muzzy_decay_ms`). With jemalloc's defaults (an arena
//! per core, freed pages kept for seconds) the bench's peak RSS was 78 MiB in one run.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
