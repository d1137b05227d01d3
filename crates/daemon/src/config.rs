//! The cluster config: one TOML file describes the whole cluster, so every daemon knows where
//! the others are. Parsed once, at start-up, into these typed structs; environment variables
//! enter only through [`EnvOverrides`] (clap), never deeper in the code.
//!
//! Relative paths (a `file://` store URL without a leading `/`, dataset sources) are resolved
//! against the directory of the config file, or the working directory without one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_shared::layout::DatasetName;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub store: StoreConfig,
    pub storaged: StoragedConfig,
    pub queryd: QuerydConfig,
    pub compactord: CompactordConfig,
    pub auth: AuthConfig,
    pub datasets: Vec<DatasetConfig>,
    /// Directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `file:///abs/dir`, `file://rel/dir`, `memory://`, or `s3://bucket/prefix`.
    pub url: String,
    pub s3: S3Config,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "file://strata-data".into(),
            s3: S3Config::default(),
        }
    }
}

/// S3 settings; each falls back to the standard `AWS_*` variable (see [`EnvOverrides`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (local S3-compatible servers).
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style requests; the default is path-style, which S3-compatible servers take.
    pub virtual_hosted_style: bool,
}

/// The least `storaged.import_memory_bytes`: an import's batches and runs need room to move.
pub const MIN_IMPORT_MEMORY: usize = 1 << 20;

/// storaged: the object store, catalog and commits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoragedConfig {
    /// Address the daemon binds.
    pub listen: SocketAddr,
    /// URL the other daemons use to reach it; default `http://{listen}`.
    pub url: Option<String>,
    /// Largest accepted delta body (default 64 MiB; larger is 413).
    pub max_delta_bytes: usize,
    /// queryd URLs told about every new version (`POST {url}/internal/v1/datasets/{name}/notify`).
    /// Default: `[queryd.url]`; an empty list notifies nobody (queryd then relies on polling).
    /// Read it through [`Config::notify_urls`], which applies the default.
    pub notify_urls: Option<Vec<String>>,
    /// Memory for decoding client bodies at once (deltas, uploads), in bytes (default 1 GiB).
    /// Each request reserves its body's size times its format's expansion (JSON 16x, Parquet
    /// 8x, Arrow 3x); when none is left it waits up to 2 s, then answers 503 + Retry-After.
    pub decode_budget_bytes: usize,
    /// Memory for creating a dataset (its source read, sorted and written as base files), in
    /// bytes (default 1 GiB): a source larger than this is sorted in runs spilled to
    /// `spill_dir` and merged. One import runs at a time; others wait their turn. Reader and
    /// writer buffers come on top (README, "Creating a dataset").
    pub import_memory_bytes: usize,
    /// Directory for the sorted runs an import spills (default: the OS temp directory). Each
    /// import uses a fresh subdirectory and removes it when it ends, however it ends.
    pub spill_dir: Option<PathBuf>,
    /// Where a relative `file` source of a dataset creation is looked for (the catalog's JSON
    /// create and `[[datasets]]` entries); relative itself to the config file's directory.
    /// Default: that directory (the working directory without a config file).
    pub source_root: Option<PathBuf>,
    /// Largest body of an upload that creates a dataset (default 64 GiB; larger is 413). The
    /// body is spooled to `spill_dir` as it arrives, not held in memory, so this bounds disk.
    pub max_upload_bytes: u64,
}

impl Default for StoragedConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7001)),
            url: None,
            max_delta_bytes: 64 << 20,
            notify_urls: None,
            decode_budget_bytes: 1 << 30,
            import_memory_bytes: 1 << 30,
            spill_dir: None,
            source_root: None,
            max_upload_bytes: 64 << 30,
        }
    }
}

impl StoragedConfig {
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}
/// queryd: the public API, its memcache and its limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuerydConfig {
    /// Address the daemon binds.
    pub listen: SocketAddr,
    /// URL the other daemons use to reach it; default `http://{listen}`.
    pub url: Option<String>,
    /// Memcache capacity in bytes (default 4 GiB).
    pub cache_bytes: u64,
    /// Largest accepted request body (default 1 MiB; larger is 413).
    pub max_body_bytes: usize,
    /// Largest page (default 100 000; larger requests are clamped and the clamp is echoed).
    pub max_page_size: u64,
    /// Per-request time limit (default `"30s"`; then 504). Also `request_timeout_ms`.
    #[serde(alias = "request_timeout_ms", deserialize_with = "duration::millis")]
    pub request_timeout: Duration,
    /// Query worker threads (default: the number of cores).
    pub query_threads: Option<usize>,
    /// Requests executing at once; more wait their turn (default: 4 × query threads).
    pub max_concurrent_queries: Option<usize>,
    /// Answer from indexes without planning where possible (default true). Off, every query
    /// runs in DataFusion: for tests that compare paths, and to measure what the hot paths buy.
    pub hot_paths: bool,
    /// How often to look for new manifest versions (default `"2s"`; `"0s"` never). Also
    /// `poll_interval_ms`. Notifications from storaged usually arrive first; the poll makes
    /// every queryd converge even when one is lost.
    #[serde(alias = "poll_interval_ms", deserialize_with = "duration::millis")]
    pub poll_interval: Duration,
    /// Largest accepted delta body, forwarded to storaged (default 64 MiB; larger is 413).
    pub max_delta_bytes: usize,
    /// How a dataset in memory moves to a version with new base files (after a compaction).
    pub rebuild: Rebuild,
    /// Decoded delta files kept for the cold path, builds and catch-ups, in bytes (default
    /// 256 MiB; 0 keeps none). A delta file never changes, so each is read once.
    pub delta_cache_bytes: u64,
    /// Names this queryd in its answers (`X-Strata-Instance`, cache stats): with replicas
    /// behind a load balancer, the cache a pin or evict acted on. Default: the host name.
    pub instance: Option<String>,
    /// Parquet exports kept on local disk, in bytes (default 1 GiB; 0 keeps none): a spooled
    /// export is answered with its `Content-Length` and serves HTTP range requests (readers
    /// such as DuckDB and Polars read a remote Parquet file in ranges). Least recently used
    /// go first.
    pub export_spool_bytes: u64,
    /// Where spooled exports are written (default: the OS temp directory); the engine's
    /// spill files go there too.
    pub spool_dir: Option<PathBuf>,
    /// Memory the query engine may hold for all requests at once, outside the memcache
    /// (default 1 GiB): sorts and aggregations past their share spill to `spool_dir`; an
    /// operator that cannot spill and needs more fails its request (503
    /// `resources_exhausted`) rather than grow queryd past its budget.
    pub query_memory_bytes: u64,
}

/// How queryd moves a dataset in memory to a version whose base files changed, which it must
/// rebuild from those files (new deltas alone are applied incrementally either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rebuild {
    /// Drop the old state first: the new version is answered from its Parquet files at once
    /// (the cold path: same answers, slower) while the state is rebuilt in the background.
    /// Peak memory about 1x the dataset.
    #[default]
    ReleaseFirst,
    /// Keep answering from the old state until the new one is built. Peak memory about 2x.
    Beside,
}

impl Default for QuerydConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            url: None,
            cache_bytes: 4 << 30,
            max_body_bytes: 1 << 20,
            max_page_size: 100_000,
            request_timeout: Duration::from_secs(30),
            query_threads: None,
            max_concurrent_queries: None,
            hot_paths: true,
            poll_interval: Duration::from_secs(2),
            max_delta_bytes: 64 << 20,
            rebuild: Rebuild::default(),
            delta_cache_bytes: 256 << 20,
            instance: None,
            export_spool_bytes: 1 << 30,
            spool_dir: None,
            query_memory_bytes: 1 << 30,
        }
    }
}

impl QuerydConfig {
    /// [`Self::instance`], or the host name (a container's id under Docker).
    pub fn instance(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "queryd".into())
        })
    }

    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}
/// compactord: compaction, its triggers and its run history.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactordConfig {
    /// Address the daemon binds.
    pub listen: SocketAddr,
    /// URL the other daemons use to reach it; default `http://{listen}`.
    pub url: Option<String>,
    /// A compaction starts a new base file once the current one reaches this size
    /// (default 16 MiB: files are encoded in memory and put whole, so this bounds compaction's
    /// memory).
    pub target_file_bytes: u64,
    /// Rows per batch of the streaming merge: the unit of its memory (default 8 192).
    pub batch_rows: usize,
    /// Cron schedule (with seconds: `sec min hour day month weekday`, UTC) compacting every
    /// dataset that has deltas, except those with their own `compact_schedule`. Default none.
    pub schedule: Option<String>,
    /// How often the thresholds below are checked (default `"10s"`; `"0s"` never). Also
    /// `check_interval_ms`.
    #[serde(alias = "check_interval_ms", deserialize_with = "duration::millis")]
    pub check_interval: Duration,
    /// Compact a dataset once it has this many deltas (default 64).
    pub max_deltas: usize,
    /// Compact once the deltas' bytes exceed this fraction of the base's bytes (default 0.1).
    pub max_delta_ratio: f64,
    /// Compact once the oldest delta is this old (default `"10m"`). Also
    /// `max_delta_age_secs`.
    #[serde(alias = "max_delta_age_secs", deserialize_with = "duration::secs")]
    pub max_delta_age: Duration,
    /// Cron schedule of garbage collection over every dataset (default every 10 minutes;
    /// `""` turns it off; `POST /api/v1/gc` runs it on demand).
    pub gc_schedule: Option<String>,
    /// Files and manifests younger than this are never collected (default `"1h"`). Also
    /// `gc_grace_secs`.
    #[serde(alias = "gc_grace_secs", deserialize_with = "duration::secs")]
    pub gc_grace: Duration,
    /// The newest manifests always kept (default 10; at least the latest).
    pub gc_keep_manifests: usize,
}

impl Default for CompactordConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7002)),
            url: None,
            target_file_bytes: 16 << 20,
            batch_rows: 8 * 1024,
            schedule: None,
            check_interval: Duration::from_secs(10),
            max_deltas: 64,
            max_delta_ratio: 0.1,
            max_delta_age: Duration::from_secs(600),
            gc_schedule: Some("0 */10 * * * *".into()),
            gc_grace: Duration::from_secs(3600),
            gc_keep_manifests: 10,
        }
    }
}

impl CompactordConfig {
    pub fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Token for admin and write calls (`X-Admin-Token`). None: such calls are refused.
    pub admin_token: Option<String>,
    /// Token for write calls only (posting deltas), sent as `X-Admin-Token` too: a writer
    /// needs no admin rights. None: only the admin token writes.
    pub write_token: Option<String>,
    /// Token daemons present to each other (`X-Internal-Token`). None: internal APIs are
    /// closed, except under `strata up`, which sets a random one for its process (its daemons
    /// call each other's internal routes, e.g. queryd forwarding deltas to storaged).
    pub internal_token: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: String,
    /// A file, directory or glob (Parquet, CSV, NDJSON, Arrow IPC streams, a Delta table, as
    /// `format` says); a local path or an `s3://` URL.
    pub source: String,
    #[serde(default)]
    pub format: SourceFormat,
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub index: IndexPolicy,
    #[serde(default)]
    pub index_columns: Vec<String>,
    #[serde(default)]
    pub pin: bool,
    /// Cron schedule compacting this dataset (see `compactord.schedule`); replaces the global
    /// schedule for it. Default none.
    #[serde(default)]
    pub compact_schedule: Option<String>,
    /// Keep a Delta Lake transaction log beside the table (README, "Delta Lake view"); set
    /// when storaged creates the dataset. Default false.
    #[serde(default)]
    pub delta_mirror: bool,
}

/// What a dataset's source files are (README, "Creating a dataset").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Told by the source: a directory holding `_delta_log/` is a Delta table; otherwise each
    /// file's extension (`.parquet`, `.csv`, `.ndjson`/`.jsonl`/`.json`, `.arrows`), and a
    /// file with none of these is Parquet.
    #[default]
    Auto,
    Parquet,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Arrow IPC streams.
    Arrow,
    /// A Delta Lake table: its current snapshot.
    Delta,
}

/// Which columns queryd indexes (`index`; `list` takes `index_columns`): one type with the
/// manifest's record of a dataset created over the API.
pub use strata_shared::manifest::IndexPolicy;

/// Settings that may come from the environment (or flags); applied over the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EnvOverrides {
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "STRATA_WRITE_TOKEN", hide_env_values = true)]
    pub write_token: Option<String>,
    #[arg(long, env = "STRATA_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL", hide = true)]
    pub aws_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", hide = true)]
    pub aws_region: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide = true, hide_env_values = true)]
    pub aws_access_key_id: Option<String>,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub aws_secret_access_key: Option<String>,
    #[arg(long, env = "AWS_ALLOW_HTTP", hide = true)]
    pub aws_allow_http: Option<bool>,
}

impl Config {
    /// Reads the file (if any), applies the overrides and validates.
    pub fn load(path: Option<&Path>, env: &EnvOverrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let mut config = Self::parse(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source: Box::new(source),
                })?;
                config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                config
            }
            None => Config::default(),
        };
        if config.base_dir.as_os_str().is_empty() {
            config.base_dir = PathBuf::from(".");
        }
        config.apply(env);
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    fn apply(&mut self, env: &EnvOverrides) {
        // A setting in the file wins over the environment, except tokens: an operator sets
        // those in the environment precisely to keep them out of files.
        if env.admin_token.is_some() {
            self.auth.admin_token = env.admin_token.clone();
        }
        if env.write_token.is_some() {
            self.auth.write_token = env.write_token.clone();
        }
        if env.internal_token.is_some() {
            self.auth.internal_token = env.internal_token.clone();
        }
        let s3 = &mut self.store.s3;
        s3.endpoint = s3.endpoint.take().or_else(|| env.aws_endpoint.clone());
        s3.region = s3.region.take().or_else(|| env.aws_region.clone());
        s3.access_key_id = s3
            .access_key_id
            .take()
            .or_else(|| env.aws_access_key_id.clone());
        s3.secret_access_key = s3
            .secret_access_key
            .take()
            .or_else(|| env.aws_secret_access_key.clone());
        s3.allow_http = s3.allow_http.or(env.aws_allow_http);
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.compactord;
        if c.target_file_bytes == 0 || c.batch_rows == 0 {
            return Err(ConfigError::Invalid(
                "compactord.target_file_bytes and compactord.batch_rows must be above zero".into(),
            ));
        }
        if !c.max_delta_ratio.is_finite() || c.max_delta_ratio < 0.0 {
            return Err(ConfigError::Invalid(
                "compactord.max_delta_ratio must be a finite number >= 0".into(),
            ));
        }
        if self.storaged.import_memory_bytes < MIN_IMPORT_MEMORY {
            return Err(ConfigError::Invalid(format!(
                "storaged.import_memory_bytes must be at least {MIN_IMPORT_MEMORY} (1 MiB)"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &self.datasets {
            DatasetName::new(d.name.as_str()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if !seen.insert(d.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "dataset {:?} declared twice",
                    d.name
                )));
            }
            if d.index == IndexPolicy::List && d.index_columns.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "dataset {:?}: index = \"list\" needs index_columns",
                    d.name
                )));
            }
        }
        Ok(())
    }

    /// The queryd URLs storaged notifies of new versions: `storaged.notify_urls`, or queryd's
    /// own URL when that is not set.
    pub fn notify_urls(&self) -> Vec<String> {
        self.storaged
            .notify_urls
            .clone()
            .unwrap_or_else(|| vec![self.queryd.url()])
    }

    /// Resolves a relative `file` source of a dataset against `storaged.source_root`.
    pub fn resolve_source(&self, path: &str) -> PathBuf {
        match &self.storaged.source_root {
            Some(root) => self
                .resolve_path(&root.to_string_lossy())
                .join(Path::new(path)),
            None => self.resolve_path(path),
        }
    }

    /// Resolves a path from the config against [`Config::base_dir`].
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Duration settings: a human-readable string (`"30s"`, `"500ms"`, `"10m"`, `"1h 30m"`), or
/// an integer in the unit of the `*_ms` / `*_secs` key the setting replaced (accepted under
/// either name, so older configs keep working).
mod duration {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};

    /// Integers are milliseconds (the old `*_ms` keys).
    pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Setting(Duration::from_millis))
    }

    /// Integers are seconds (the old `*_secs` keys).
    pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Setting(Duration::from_secs))
    }

    struct Setting(fn(u64) -> Duration);

    impl Visitor<'_> for Setting {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as \"30s\", \"500ms\" or \"10m\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| E::custom(format!("duration {v:?}: {e}")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok((self.0)(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(self.0)
                .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting `strata.example.toml` documents, commented out or not, is one the config
    /// reads (unknown keys are refused), with a value of the right type: the example cannot
    /// drift from the code.
    #[test]
    fn the_example_config_documents_real_settings() {
        let example = include_str!("../../../strata.example.toml");
        let uncommented: String = example
            .lines()
            .map(|line| {
                let setting = line.strip_prefix("# ").filter(|rest| {
                    rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        })
                });
                format!("{}\n", setting.unwrap_or(line))
            })
            .collect();
        let config = Config::parse(&uncommented)
            .unwrap_or_else(|e| panic!("{e}\n--- the example, uncommented ---\n{uncommented}"));
        // Spot checks that the uncommenting reached every section.
        assert_eq!(
            config.store.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:8333")
        );
        assert_eq!(config.storaged.decode_budget_bytes, 1 << 30);
        assert_eq!(config.storaged.import_memory_bytes, 1 << 30);
        assert_eq!(config.queryd.delta_cache_bytes, 256 << 20);
        assert_eq!(config.queryd.instance.as_deref(), Some("queryd-1"));
        assert_eq!(config.queryd.request_timeout, Duration::from_secs(30));
        assert_eq!(config.datasets.len(), 1);
    }

    const FULL: &str = r#"
        [store]
        url = "s3://bucket/prefix"
        [store.s3]
        endpoint = "http://127.0.0.1:9000"
        [storaged]
        listen = "127.0.0.1:7101"
        url = "http://storaged:7101"
        max_delta_bytes = 1024
        notify_urls = ["http://q1:8080", "http://q2:8080"]
        [queryd]
        listen = "0.0.0.0:8080"
        [compactord]
        listen = "127.0.0.1:7102"
        target_file_bytes = 4096
        schedule = "0 */5 * * * *"
        check_interval = "0s"
        max_deltas = 8
        max_delta_ratio = 0.5
        max_delta_age = "1m"
        [auth]
        admin_token = "file-token"
        [[datasets]]
        name = "events"
        source = "data/events.parquet"
        format = "parquet"
        primary_key = ["id"]
        index = "list"
        index_columns = ["kind"]
        pin = true
        compact_schedule = "0 0 * * * *"
    "#;

    #[test]
    fn parses_the_documented_shape() {
        let c = Config::parse(FULL).unwrap();
        assert_eq!(c.store.url, "s3://bucket/prefix");
        assert_eq!(c.storaged.url(), "http://storaged:7101");
        assert_eq!(c.compactord.url(), "http://127.0.0.1:7102");
        assert_eq!(c.storaged.max_delta_bytes, 1024);
        assert_eq!(c.notify_urls(), vec!["http://q1:8080", "http://q2:8080"]);
        assert_eq!(c.datasets[0].primary_key, vec!["id"]);
        assert_eq!(c.datasets[0].index, IndexPolicy::List);
        assert!(c.datasets[0].pin);
        assert_eq!(c.compactord.target_file_bytes, 4096);
        assert_eq!(c.compactord.schedule.as_deref(), Some("0 */5 * * * *"));
        assert_eq!(
            (c.compactord.check_interval, c.compactord.max_deltas),
            (Duration::ZERO, 8)
        );
        assert_eq!(c.compactord.max_delta_ratio, 0.5);
        assert_eq!(c.compactord.max_delta_age, Duration::from_secs(60));
        assert_eq!(
            c.datasets[0].compact_schedule.as_deref(),
            Some("0 0 * * * *")
        );
    }

    #[test]
    fn durations_are_text_or_integers_in_the_old_keys_units() {
        let c = Config::parse(
            "[queryd]\nrequest_timeout = \"1m 30s\"\npoll_interval_ms = 250\n\
             [compactord]\ncheck_interval = \"500ms\"\nmax_delta_age_secs = 7\ngc_grace = \"2h\"\n",
        )
        .unwrap();
        assert_eq!(c.queryd.request_timeout, Duration::from_secs(90));
        assert_eq!(c.queryd.poll_interval, Duration::from_millis(250));
        assert_eq!(c.compactord.check_interval, Duration::from_millis(500));
        assert_eq!(c.compactord.max_delta_age, Duration::from_secs(7));
        assert_eq!(c.compactord.gc_grace, Duration::from_secs(7200));
        for bad in [
            "[queryd]\nrequest_timeout = \"soon\"\n",
            "[queryd]\nrequest_timeout_ms = -1\n",
            "[queryd]\nrequest_timeout = \"1s\"\nrequest_timeout_ms = 5\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn relative_sources_resolve_against_the_source_root() {
        let mut c = Config {
            base_dir: "/etc/strata".into(),
            ..Config::default()
        };
        assert_eq!(
            c.resolve_source("a/b.parquet"),
            PathBuf::from("/etc/strata/a/b.parquet")
        );
        assert_eq!(c.resolve_source("/x.parquet"), PathBuf::from("/x.parquet"));
        c.storaged.source_root = Some("data".into());
        assert_eq!(
            c.resolve_source("a/b.parquet"),
            PathBuf::from("/etc/strata/data/a/b.parquet")
        );
        c.storaged.source_root = Some("/srv".into());
        assert_eq!(
            c.resolve_source("a/*.parquet"),
            PathBuf::from("/srv/a/*.parquet")
        );
        assert_eq!(c.resolve_source("/x.parquet"), PathBuf::from("/x.parquet"));
    }

    #[test]
    fn import_memory_is_bytes_and_spill_dir_a_path() {
        let c = Config::parse(
            "[storaged]\nimport_memory_bytes = 33554432\nspill_dir = \"/var/tmp/strata\"\n",
        )
        .unwrap();
        assert_eq!(c.storaged.import_memory_bytes, 32 << 20);
        assert_eq!(
            c.storaged.spill_dir.as_deref(),
            Some(Path::new("/var/tmp/strata"))
        );
        c.validate().unwrap();
        let defaults = Config::default();
        assert_eq!(defaults.storaged.import_memory_bytes, 1 << 30);
        assert_eq!(defaults.storaged.spill_dir, None);
        let tiny = Config::parse("[storaged]\nimport_memory_bytes = 65536\n").unwrap();
        assert!(tiny.validate().is_err(), "below 1 MiB");
        for bad in [
            "[storaged]\nimport_memory_bytes = -1\n",
            "[storaged]\nimport_memory_bytes = \"1GiB\"\n",
            "[storaged]\nspill_dir = 3\n",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_env() {
        let env = EnvOverrides {
            admin_token: Some("env-token".into()),
            aws_endpoint: Some("http://env:1".into()),
            ..Default::default()
        };
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.storaged.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(c.queryd.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.compactord.listen.to_string(), "127.0.0.1:7002");
        assert_eq!(c.compactord.target_file_bytes, 16 << 20);
        assert_eq!(c.compactord.schedule, None);
        assert_eq!(c.compactord.check_interval, Duration::from_secs(10));
        assert_eq!(c.compactord.max_deltas, 64);
        assert_eq!(c.storaged.max_delta_bytes, 64 << 20);
        assert_eq!(c.notify_urls(), vec!["http://127.0.0.1:8080"]);
        assert_eq!(c.auth.admin_token.as_deref(), Some("env-token"));
        assert_eq!(c.store.s3.endpoint.as_deref(), Some("http://env:1"));
    }

    #[test]
    fn file_settings_beat_env_except_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, FULL).unwrap();
        let env = EnvOverrides {
            admin_token: Some("env-token".into()),
            aws_endpoint: Some("http://env:1".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&path), &env).unwrap();
        assert_eq!(c.auth.admin_token.as_deref(), Some("env-token"));
        assert_eq!(
            c.store.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(c.resolve_path("data/x"), dir.path().join("data/x"));
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(
            Config::parse("[store]\nurll = \"x\"").is_err(),
            "unknown keys are errors"
        );
        let dup = "[[datasets]]\nname='a'\nsource='x'\n[[datasets]]\nname='a'\nsource='y'";
        let mut c = Config::parse(dup).unwrap();
        c.base_dir = ".".into();
        assert!(c.validate().is_err());
        let bad = Config::parse("[[datasets]]\nname='a/b'\nsource='x'").unwrap();
        assert!(bad.validate().is_err());
        for bad in [
            "batch_rows = 0",
            "target_file_bytes = 0",
            "max_delta_ratio = -1.0",
        ] {
            let c = Config::parse(&format!("[compactord]\n{bad}")).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
    }
}
