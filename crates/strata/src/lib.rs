//! The `strata` command. `strata up` runs storaged, queryd and compactord in one process on
//! one store (the embedded default); `strata storaged|queryd|compactord` run one daemon each
//! with the same code, for a deployment of separate processes.

pub mod client;
pub mod demo;
pub mod progress;
pub mod remote;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use strata_daemon::config::{Config, DatasetConfig, EnvOverrides, IndexPolicy, SourceFormat};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Serve changing Parquet datasets over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Where the client commands (and `demo`) find queryd, and their token.
    #[command(flatten)]
    pub remote: remote::Remote,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run storaged, queryd and compactord in one process.
    Up(UpArgs),
    /// Run storaged: the object store, catalog and commits.
    Storaged(DaemonArgs),
    /// Run queryd: the public HTTP API.
    Queryd(DaemonArgs),
    /// Run compactord: compaction and garbage collection.
    Compactord(DaemonArgs),
    /// Exit 0 if URL answers 2xx within the timeout, else 1 (a container healthcheck: no
    /// curl needed in the image).
    Health(client::HealthArgs),
    /// Create the demo dataset on a running queryd by uploading it (the compose `demo`
    /// profile); succeeds if it exists already.
    Demo(client::DemoArgs),
    /// Call a running Strata: datasets, schema, query, count, create, upsert, delete,
    /// export, compact, runs, versions, changes, pin, unpin, evict, cache.
    #[command(flatten)]
    Remote(remote::RemoteAction),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Cluster config file (TOML).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: the store becomes `file://DIR` (default ./strata-data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address queryd listens on (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Generate and serve a demo dataset named `demo`.
    #[arg(long)]
    pub demo: bool,
    /// Rows in the demo dataset.
    #[arg(long, default_value_t = 100_000)]
    pub demo_rows: usize,
    #[command(flatten)]
    pub env: EnvOverrides,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Cluster config file (TOML).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub env: EnvOverrides,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Storaged(args) => {
            let config = Config::load(args.config.as_deref(), &args.env)?;
            let listener = bind("storaged", config.storaged.listen).await?;
            let shutdown = strata_daemon::serve::shutdown_signal();
            Ok(strata_storaged::serve(config, listener, shutdown).await?)
        }
        Command::Queryd(args) => {
            let config = Config::load(args.config.as_deref(), &args.env)?;
            let listener = bind("queryd", config.queryd.listen).await?;
            let shutdown = strata_daemon::serve::shutdown_signal();
            Ok(strata_queryd::serve(config, listener, shutdown).await?)
        }
        Command::Compactord(args) => {
            let config = Config::load(args.config.as_deref(), &args.env)?;
            let listener = bind("compactord", config.compactord.listen).await?;
            let shutdown = strata_daemon::serve::shutdown_signal();
            Ok(strata_compactord::serve(config, listener, shutdown).await?)
        }
        Command::Health(args) => client::health(&args).await,
        Command::Demo(args) => client::demo(&cli.remote, &args).await,
        Command::Remote(action) => remote::run(&cli.remote, action).await,
    }
}

async fn bind(daemon: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{daemon} cannot listen on {addr}"))
}

/// Applies `up`'s flags over the config file.
fn up_config(args: &UpArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref(), &args.env)?;
    if let Some(data) = &args.data {
        let dir = std::path::absolute(data)?;
        config.store.url = format!("file://{}", dir.display());
    }
    if let Some(listen) = args.listen {
        config.queryd.listen = listen;
    }
    // The daemons of one process call each other's internal routes (queryd forwards deltas to
    // storaged, storaged notifies queryd): without a configured token they share a random one,
    // which nothing outside the process knows.
    if config
        .auth
        .internal_token
        .as_deref()
        .is_none_or(str::is_empty)
    {
        config.auth.internal_token = Some(uuid::Uuid::new_v4().to_string());
    }
    if args.demo && !config.datasets.iter().any(|d| d.name == demo::NAME) {
        let dir = match config.store.url.strip_prefix("file://") {
            Some(rest) => config.resolve_path(rest).join("sources"),
            None => std::env::temp_dir().join("strata-demo"),
        };
        let source = demo::ensure_file(&dir, args.demo_rows)?;
        config.datasets.push(DatasetConfig {
            name: demo::NAME.into(),
            source: source.display().to_string(),
            format: SourceFormat::Parquet,
            primary_key: vec!["id".into()],
            index: IndexPolicy::Auto,
            index_columns: vec![],
            pin: true,
            compact_schedule: None,
            delta_mirror: false,
        });
    }
    Ok(config)
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = up_config(&args)?;
    let store = strata_storaged::store::open(&config)?;
    let storaged_listener = bind("storaged", config.storaged.listen).await?;
    let queryd_listener = bind("queryd", config.queryd.listen).await?;
    let compactord_listener = bind("compactord", config.compactord.listen).await?;

    // One shutdown for all three: a signal, or any daemon stopping, stops the others.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let mut daemons = tokio::task::JoinSet::new();
    {
        let (config, store, shutdown) = (config.clone(), store.clone(), stopped());
        daemons.spawn(async move {
            strata_storaged::serve_with_store(config, store, storaged_listener, shutdown)
                .await
                .context("storaged")
        });
    }
    {
        let (config, store, shutdown) = (config.clone(), store.clone(), stopped());
        daemons.spawn(async move {
            strata_queryd::serve_with_store(config, store, queryd_listener, shutdown)
                .await
                .context("queryd")
        });
    }
    {
        let (config, store, shutdown) = (config.clone(), store, stopped());
        daemons.spawn(async move {
            strata_compactord::serve_with_store(config, store, compactord_listener, shutdown)
                .await
                .context("compactord")
        });
    }
    tracing::info!(
        queryd = %format!("http://{}", config.queryd.listen),
        storaged = %format!("http://{}", config.storaged.listen),
        compactord = %format!("http://{}", config.compactord.listen),
        store = %config.store.url,
        "strata is up"
    );

    let mut first_error = None;
    tokio::select! {
        _ = strata_daemon::serve::shutdown_signal() => {}
        Some(done) = daemons.join_next() => {
            first_error = flatten(done).err();
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = daemons.join_next().await {
        if let Err(e) = flatten(done) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn flatten(done: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    done.context("daemon task panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(env: EnvOverrides) -> UpArgs {
        UpArgs {
            config: None,
            data: Some(std::env::temp_dir().join("strata-up-config-test")),
            listen: None,
            demo: false,
            demo_rows: 0,
            env,
        }
    }

    #[test]
    fn up_gives_its_daemons_an_internal_token() {
        let random = up_config(&args(EnvOverrides::default())).unwrap();
        let token = random.auth.internal_token.unwrap();
        assert_eq!(token.len(), 36, "a uuid: {token}");
        let again = up_config(&args(EnvOverrides::default())).unwrap();
        assert_ne!(
            again.auth.internal_token.unwrap(),
            token,
            "random per process"
        );
        let given = up_config(&args(EnvOverrides {
            internal_token: Some("mine".into()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(given.auth.internal_token.as_deref(), Some("mine"));
    }
}
