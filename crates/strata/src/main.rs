use clap::Parser;

/// mimalloc gives freed memory back to the OS; with glibc's allocator the transient peak of
/// loading a dataset (file bytes, decoded batches, index build buffers) stays resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed memory before returning it to the OS, in milliseconds. Its
/// default, 1 000, is longer than the moments when Strata frees a lot and allocates as much
/// again right after: compactord streaming ~100 MB/s of batches, queryd rebuilding a dataset
/// after releasing the old state. With the default both peaks grew with the freed memory
/// still held; at 100 ms they stay flat, with no measured cost in throughput
/// (`benches/compact`, 2026-11-23; 0 made compaction slower).
const PURGE_DELAY_MS: std::ffi::c_long = 100;
/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h; 15 in v2 and v3). The Rust
/// bindings name the option functions but not this value.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Allocations above this size (KiB) come from the OS directly, and go back to it when freed,
/// whichever thread frees them. The large Arrow buffers of a dataset state (a 64 Ki-row chunk
/// of an 8-byte column is 512 KiB) are allocated on the blocking pool and freed by whichever
/// thread drops the state last; in mimalloc's arenas their pages stayed with the allocating
/// thread's heap after the free, neither returned nor reused, so an evicted or replaced state
/// kept most of its memory resident (`benches/compact`, 2026-12-03: evicting the 1M-row
/// benchmark table returned nothing; with this setting ~33 MiB at once, and queryd's peak
/// during the reload after a compaction fell from 1.25x to 1.02–1.19x its steady state).
const ARENA_MAX_OBJECT_KIB: std::ffi::c_long = 256;
/// `mi_option_arena_max_object_size` in mimalloc v3's `mi_option_e` (mimalloc.h; the
/// `libmimalloc-sys` default, v3; v2 has no such option).
const MI_OPTION_ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

fn main() -> anyhow::Result<()> {
    // SAFETY: `mi_option_set` only stores an option value; mimalloc documents it as not
    // thread safe, so it runs here, before the runtime or any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_MAX_OBJECT_SIZE, ARENA_MAX_OBJECT_KIB);
    }
    strata_daemon::telemetry::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(strata::run(strata::Cli::parse()))
}
