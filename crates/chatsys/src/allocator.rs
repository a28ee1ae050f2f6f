//! The process's allocator: jemalloc instead of glibc's malloc, for every allocation, the
//! C libraries' (SQLite's page caches) included.
//!
//! Under create load glibc's `malloc` and `free` took nearly a fifth of the server's CPU
//! (`docs/benchmarks.md`). Measured on 2026-12-06, in turns with glibc's malloc (its mmap
//! threshold fixed at 128 KiB, as this module set it before):
//! - `bench/cpu.sh 8 256`, CPU per request, three runs each: create_chat 36–42 µs against
//!   46–50, spread 74–80 against 84–105, hot 47–54 against 57–63, `/healthz` 20–21 against
//!   22–26;
//! - `bench/run.sh 10 256`, medians of three runs: create_chat 35.3k req/s against 30.1k,
//!   hot 25.4k against 21.9k, spread 14.7k against 13.9k, list 15.8k against 11.6k, get
//!   38.1k against 39.3k; peak RSS 61–78 MiB against 73–77.
//!
//! Its settings are compiled in (`.cargo/config.toml`, `JEMALLOC_SYS_WITH_MALLOC_CONF`):
//! one arena (`narenas:1`; the threads' own caches spare it most of its lock), thread caches
//! for small sizes only (`tcache_max:4096`), and freed pages given back to the system
//! after 200 ms (`dirty_decay_ms`, `muzzy_decay_ms`). With jemalloc's defaults (an arena
//! per core, freed pages kept for seconds) the bench's peak RSS was 78 MiB in one run.

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
