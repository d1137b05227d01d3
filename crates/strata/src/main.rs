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

// Not set: `mi_option_arena_max_object_size` (v3), which sent allocations above 256 KiB
// straight to the OS so that an evicted state's large buffers went back at once. With it,
// every request that allocated such a buffer left memory behind for good: filter + order
// pages on the 1M-row benchmark table (a 500 KiB list of candidate rows each) grew queryd by
// ~10 KiB a request, 96 → 289 MiB in 48 s, without bound (2026-12-05). Without it the same
// load stays flat at ~106 MiB; an evicted state's pages stay with mimalloc until reused.

fn main() -> anyhow::Result<()> {
    // SAFETY: `mi_option_set` only stores an option value; mimalloc documents it as not
    // thread safe, so it runs here, before the runtime or any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
    strata_daemon::telemetry::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(strata::run(strata::Cli::parse()))
}
