//! Commands that talk to a running Strata over HTTP: `strata health` (a container's
//! healthcheck) and `strata demo` (uploads the demo dataset through queryd's public API).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::demo;

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
    /// queryd's base URL.
    #[arg(long, env = "STRATA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token (queryd's `[auth] admin_token`).
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Rows in the demo dataset.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Seconds to wait for queryd to answer `/health` first.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

/// Uploads the demo table as Parquet (`POST /api/v1/datasets?name=demo&primary_key=id`).
pub async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::new();
    wait_healthy(
        &http,
        &format!("{base}/health"),
        Duration::from_secs(args.wait),
    )
    .await?;
    let body = demo::encode(args.rows)?;
    let response = http
        .post(format!("{base}/api/v1/datasets"))
        .query(&[("name", demo::NAME), ("primary_key", "id")])
        .header("x-admin-token", &args.admin_token)
        .header("content-type", "application/vnd.apache.parquet")
        .body(body)
        .send()
        .await
        .with_context(|| format!("uploading the demo dataset to {base}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    match status.as_u16() {
        201 => println!("created dataset {} ({} rows)", demo::NAME, args.rows),
        409 => println!("dataset {} exists already", demo::NAME),
        _ => bail!("creating the demo dataset answered {status}: {answer}"),
    }
    Ok(())
}

async fn wait_healthy(http: &reqwest::Client, url: &str, wait: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let error = match http.get(url).timeout(Duration::from_secs(5)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{url} is not healthy after {wait:?}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
