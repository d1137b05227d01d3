use clap::Parser;

/// mimalloc gives freed memory back to the OS; with glibc's allocator the transient peak of
/// loading a dataset (file bytes, decoded batches, index build buffers) stays resident.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_daemon::telemetry::init();
    strata::run(strata::Cli::parse()).await
}
