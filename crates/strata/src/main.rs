use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_daemon::telemetry::init();
    strata::run(strata::Cli::parse()).await
}
