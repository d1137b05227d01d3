//! Commands that talk to a running Strata over HTTP: `strata health` (a container's
//! healthcheck: any URL, any daemon) and `strata demo` (uploads the demo dataset through
//! queryd's public API, with [`QuerydClient`]).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use strata_queryd_api::QuerydClient;

use crate::demo;
use crate::remote::Remote;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to GET, e.g. http://127.0.0.1:8080/health.
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// Succeeds iff `url` answers 2xx in time.
pub async fn health(args: &HealthArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let response = http
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("GET {}", args.url))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("GET {} answered {status}: {body}", args.url);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the demo dataset.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Seconds to wait for queryd to answer `/health` first.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

/// Uploads the demo table as Parquet (`POST /api/v1/datasets?name=demo&primary_key=id`).
pub async fn demo(remote: &Remote, args: &DemoArgs) -> anyhow::Result<()> {
    if remote.admin_token.is_none() {
        bail!("the demo is uploaded with the admin token: set STRATA_ADMIN_TOKEN or --admin-token");
    }
    let queryd = remote.client();
    wait_healthy(&queryd, Duration::from_secs(args.wait)).await?;
    let body = demo::encode(args.rows)?;
    let created = queryd
        .upload_dataset(
            demo::NAME,
            &["id".to_owned()],
            "application/vnd.apache.parquet",
            body,
        )
        .await;
    match created {
        Ok(_) => println!("created dataset {} ({} rows)", demo::NAME, args.rows),
        Err(e) if e.status() == Some(409) => println!("dataset {} exists already", demo::NAME),
        Err(e) => {
            return Err(e).with_context(|| format!("uploading the demo dataset to {}", remote.url));
        }
    }
    Ok(())
}

/// Waits until queryd answers `/health`, polling every half second.
async fn wait_healthy(queryd: &QuerydClient, wait: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let error = match tokio::time::timeout(Duration::from_secs(5), queryd.health()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{}/health is not healthy after {wait:?}: {error}",
                queryd.url()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
