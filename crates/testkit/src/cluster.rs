//! [`TestCluster`]: the one way tests start daemons.
//!
//! A builder picks how the daemons run ([`Mode`]: in this process on real sockets, as one
//! `strata <daemon>` process each, or as one `strata up`), on which store ([`Store`]: memory,
//! a local directory, SeaweedFS S3 or an object store the test built), which daemons (storaged,
//! any number of queryd, compactord) and their settings. Every daemon reads the same TOML
//! config the binaries read — the cluster writes the wiring (listen ports, tokens, which queryd
//! storaged notifies) and the test adds settings with [`TestClusterBuilder::toml`] (all
//! daemons) or [`TestClusterBuilder::queryd_toml`] (one queryd) — so a test switches modes
//! without rewriting its settings; in-process daemons also take a typed
//! [`TestClusterBuilder::configure`] edit. Accessors hand out URLs, tokens and typed clients;
//! [`TestCluster::kill`] and [`TestCluster::restart`] crash and revive a daemon.
//!
//! Threshold compaction is off (`[compactord] check_interval = "0s"`) unless a test turns it
//! on: it would move rows deltas wrote into the base mid-test, changing the storage order
//! tests model; tests compact on demand.
//!
//! Invariants: every daemon has answered `/health` before [`TestClusterBuilder::start`]
//! returns; dropping the cluster stops every daemon (processes get SIGKILL); a restarted
//! daemon comes back on its port with the config it had.
//!
//! In-process daemons run their library entry points (`serve_with_store`, `serve`) with one
//! exception: queryd serves its router with no background start-up work (no warm-up, no
//! polling), so a test sees exactly the cache state its own requests caused. queryd and
//! compactord reach objects through storaged's internal API when the cluster has a storaged,
//! as deployed; otherwise they read the store directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use strata_daemon::config::Config;
use strata_queryd_api::QuerydClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{ChildProcess, SeaweedFs, free_port, strata_bin, wait_http_ok};

/// The admin token every cluster's daemons accept.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The internal token the daemons of a cluster share.
pub const INTERNAL_TOKEN: &str = "test-internal-token";

/// How long a daemon may take to answer `/health` after starting.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How the daemons run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// In this process, each on its own socket (the default).
    #[default]
    InProcess,
    /// One `strata <daemon>` process per daemon: each can be killed and restarted alone.
    Processes,
    /// One `strata up` process running every daemon (one queryd), sharing one store.
    Up,
}

/// Where the objects live.
#[derive(Clone, Debug, Default)]
pub enum Store {
    /// `memory://` (in-process only: each process would have its own).
    #[default]
    Memory,
    /// `data/` in the cluster's directory.
    LocalDir,
    /// A SeaweedFS `weed mini` the cluster starts (and stops with it).
    SeaweedFs,
    /// A store the test built (in-process only): a gate, a fault-injecting store, a SeaweedFS
    /// behind a proxy.
    Object(Arc<dyn ObjectStore>),
}

/// One of the daemons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    Storaged,
    Queryd,
    Compactord,
}

impl Daemon {
    fn command(self) -> &'static str {
        match self {
            Daemon::Storaged => "storaged",
            Daemon::Queryd => "queryd",
            Daemon::Compactord => "compactord",
        }
    }
}

/// A typed edit of an in-process daemon's config.
type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// Builds a [`TestCluster`]; see the module docs.
pub struct TestClusterBuilder {
    mode: Mode,
    store: Store,
    storaged: bool,
    queryds: usize,
    compactord: bool,
    toml: toml::Table,
    queryd_toml: Vec<toml::Table>,
    configure: Option<Configure>,
    config: Option<Config>,
    storaged_at: Option<String>,
    envs: Vec<(String, String)>,
    args: Vec<String>,
    dir: Option<PathBuf>,
    log_level: String,
}

impl TestClusterBuilder {
    /// How the daemons run (default in-process).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The store (default memory).
    pub fn store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// A store the test built ([`Store::Object`]).
    pub fn object_store(self, store: Arc<dyn ObjectStore>) -> Self {
        self.store(Store::Object(store))
    }

    /// Which daemons run: storaged, `queryds` queryd instances, compactord (default: all
    /// three, one queryd). [`Mode::Up`] always runs all three.
    pub fn daemons(mut self, storaged: bool, queryds: usize, compactord: bool) -> Self {
        (self.storaged, self.queryds, self.compactord) = (storaged, queryds, compactord);
        self
    }

    /// Adds settings to every daemon's config (TOML, merged table by table over the
    /// cluster's wiring: a test may override any of it, listen ports included).
    pub fn toml(mut self, text: &str) -> Self {
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("test cluster TOML does not parse: {e}\n{text}"));
        merge(&mut self.toml, table);
        self
    }

    /// Adds settings to queryd number `index`'s config only (after [`toml`](Self::toml)).
    pub fn queryd_toml(mut self, index: usize, text: &str) -> Self {
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("test cluster TOML does not parse: {e}\n{text}"));
        if self.queryd_toml.len() <= index {
            self.queryd_toml.resize_with(index + 1, toml::Table::new);
        }
        merge(&mut self.queryd_toml[index], table);
        self
    }

    /// A typed edit of each in-process daemon's parsed config (refused for processes, which
    /// read TOML only).
    pub fn configure(mut self, edit: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(edit));
        self
    }

    /// The settings of in-process daemons as a whole typed config (instead of
    /// [`toml`](Self::toml)'s): the cluster still sets the wiring over it — listen addresses,
    /// tokens, storaged's URL and, unless the config names them, the queryds storaged
    /// notifies.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// queryd and compactord reach the storaged at `url` (of another cluster) instead of one
    /// of their own.
    pub fn storaged_at(mut self, url: &str) -> Self {
        self.storaged_at = Some(url.to_owned());
        self
    }

    /// An environment variable for the daemon processes.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An argument after `strata <daemon> --config …` (`--demo` for `strata up`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// The directory for configs, logs and `data/` (default a fresh temp dir the cluster
    /// deletes). Relative paths in the config (dataset sources) resolve against it.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    /// `RUST_LOG` of the daemon processes (default `info`).
    pub fn log_level(mut self, level: &str) -> Self {
        level.clone_into(&mut self.log_level);
        self
    }

    /// Starts every daemon and waits until each answers `/health`.
    pub async fn start(self) -> anyhow::Result<TestCluster> {
        if self.mode != Mode::InProcess {
            if self.configure.is_some() || self.config.is_some() {
                bail!("configure() and config() set in-process configs; processes read toml()");
            }
            if matches!(self.store, Store::Memory | Store::Object(_)) {
                bail!("daemon processes cannot share a memory or test-built store");
            }
        }
        let (temp, dir) = match &self.dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir()?;
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        let seaweed = match self.store {
            Store::SeaweedFs => Some(SeaweedFs::start().await?),
            _ => None,
        };
        let (store_url, store) = open_store(&self.store, &dir, seaweed.as_ref())?;
        let mut envs = self.envs.clone();
        if let Some(seaweed) = &seaweed {
            envs.extend(seaweed.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
        }
        let (storaged, queryds, compactord) = match self.mode {
            Mode::Up => (true, 1, true),
            _ => (self.storaged, self.queryds, self.compactord),
        };
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let (storaged_port, compactord_port) = (free_port(), free_port());
        let queryd_ports: Vec<u16> = (0..queryds).map(|_| free_port()).collect();
        let notify: Vec<toml::Value> = queryd_ports.iter().map(|&p| url(p).into()).collect();
        let wiring = format!(
            "[store]\nurl = \"{store_url}\"\n\
             [storaged]\nlisten = \"127.0.0.1:{storaged_port}\"\n\
             [queryd]\nlisten = \"127.0.0.1:{}\"\n\
             [compactord]\nlisten = \"127.0.0.1:{compactord_port}\"\ncheck_interval = \"0s\"\n\
             [auth]\nadmin_token = \"{ADMIN_TOKEN}\"\ninternal_token = \"{INTERNAL_TOKEN}\"\n",
            queryd_ports.first().copied().unwrap_or_else(free_port)
        );
        let mut base: toml::Table = wiring.parse()?;
        // storaged tells every queryd of the cluster about new versions.
        if let Some(toml::Value::Table(section)) = base.get_mut("storaged") {
            section.insert("notify_urls".into(), toml::Value::Array(notify));
            if let Some(url) = &self.storaged_at {
                section.insert("url".into(), url.clone().into());
            }
        }
        merge(&mut base, self.toml.clone());

        let mut cluster = TestCluster {
            mode: self.mode,
            dir,
            envs,
            args: self.args.clone(),
            log_level: self.log_level.clone(),
            store,
            configure: self.configure,
            config: self.config,
            storaged_at: self.storaged_at.is_some(),
            storaged: None,
            queryds: Vec::new(),
            compactord: None,
            seaweed,
            _temp: temp,
        };
        if self.mode == Mode::Up {
            let mut node = Node::new("strata", Daemon::Queryd, base.clone());
            node.wait_for = vec![
                url(storaged_port),
                url(queryd_ports[0]),
                url(compactord_port),
            ];
            cluster.launch(&mut node).await?;
            cluster.storaged = Some(Node::alias("strata", Daemon::Storaged, &base));
            cluster.compactord = Some(Node::alias("strata", Daemon::Compactord, &base));
            cluster.queryds.push(node);
            return Ok(cluster);
        }
        if storaged {
            let mut node = Node::new("storaged", Daemon::Storaged, base.clone());
            cluster.launch(&mut node).await?;
            cluster.storaged = Some(node);
        }
        for (index, port) in queryd_ports.iter().enumerate() {
            let mut table = base.clone();
            let own = format!("[queryd]\nlisten = \"127.0.0.1:{port}\"\n").parse()?;
            merge(&mut table, own);
            if let Some(extra) = self.queryd_toml.get(index) {
                merge(&mut table, extra.clone());
            }
            let name = if queryds == 1 {
                "queryd".to_owned()
            } else {
                format!("queryd-{index}")
            };
            let mut node = Node::new(&name, Daemon::Queryd, table);
            cluster.launch(&mut node).await?;
            cluster.queryds.push(node);
        }
        if compactord {
            let mut node = Node::new("compactord", Daemon::Compactord, base);
            cluster.launch(&mut node).await?;
            cluster.compactord = Some(node);
        }
        Ok(cluster)
    }
}

/// The store URL the configs name, and the store in-process daemons share.
fn open_store(
    store: &Store,
    dir: &Path,
    seaweed: Option<&SeaweedFs>,
) -> anyhow::Result<(String, Option<Arc<dyn ObjectStore>>)> {
    Ok(match (store, seaweed) {
        (Store::Memory, _) => ("memory://".into(), Some(Arc::new(InMemory::new()))),
        (Store::Object(store), _) => ("memory://".into(), Some(store.clone())),
        (Store::LocalDir, _) => {
            let data = dir.join("data");
            std::fs::create_dir_all(&data)?;
            let store = LocalFileSystem::new_with_prefix(&data)?;
            (format!("file://{}", data.display()), Some(Arc::new(store)))
        }
        (Store::SeaweedFs, Some(seaweed)) => {
            let store = PrefixStore::new(seaweed.store()?, "cluster");
            (
                format!("s3://{}/cluster", seaweed.bucket),
                Some(Arc::new(store)),
            )
        }
        (Store::SeaweedFs, None) => bail!("SeaweedFS was not started"),
    })
}

/// Merges `from` into `into`, table by table (a value in `from` wins).
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(old)), toml::Value::Table(new)) => merge(old, new),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// One daemon: its config and, while it runs, its task or process.
struct Node {
    name: String,
    daemon: Daemon,
    config: toml::Table,
    /// The URLs that answer `/health` once it is up (its own; all three for `strata up`).
    wait_for: Vec<String>,
    running: Option<Running>,
    starts: u32,
    /// A daemon of the `strata up` process: no process of its own.
    alias: bool,
}

enum Running {
    Task {
        _stop: oneshot::Sender<()>,
        task: JoinHandle<anyhow::Result<()>>,
    },
    Process(ChildProcess),
}

impl Drop for Running {
    fn drop(&mut self) {
        // The process kills itself on drop; a task stops with the runtime or here.
        if let Running::Task { task, .. } = self {
            task.abort();
        }
    }
}

impl Node {
    fn new(name: &str, daemon: Daemon, config: toml::Table) -> Self {
        let wait_for = vec![listen_url(&config, daemon)];
        Self {
            name: name.to_owned(),
            daemon,
            config,
            wait_for,
            running: None,
            starts: 0,
            alias: false,
        }
    }

    fn alias(name: &str, daemon: Daemon, config: &toml::Table) -> Self {
        Self {
            alias: true,
            ..Self::new(name, daemon, config.clone())
        }
    }

    fn url(&self) -> String {
        listen_url(&self.config, self.daemon)
    }
}

/// `http://` + the `listen` address of `daemon`'s section.
fn listen_url(config: &toml::Table, daemon: Daemon) -> String {
    let listen = config
        .get(daemon.command())
        .and_then(|s| s.get("listen"))
        .and_then(toml::Value::as_str)
        .unwrap_or_default();
    format!("http://{listen}")
}

/// Running daemons; see the module docs.
pub struct TestCluster {
    mode: Mode,
    dir: PathBuf,
    envs: Vec<(String, String)>,
    args: Vec<String>,
    log_level: String,
    store: Option<Arc<dyn ObjectStore>>,
    configure: Option<Configure>,
    config: Option<Config>,
    /// queryd and compactord reach another cluster's storaged.
    storaged_at: bool,
    storaged: Option<Node>,
    queryds: Vec<Node>,
    compactord: Option<Node>,
    seaweed: Option<SeaweedFs>,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("mode", &self.mode)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder {
            mode: Mode::InProcess,
            store: Store::Memory,
            storaged: true,
            queryds: 1,
            compactord: true,
            toml: toml::Table::new(),
            queryd_toml: Vec::new(),
            configure: None,
            config: None,
            storaged_at: None,
            envs: Vec::new(),
            args: Vec::new(),
            dir: None,
            log_level: "info".into(),
        }
    }

    /// The directory holding configs, logs and `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store the daemons use, opened directly (not through storaged); for processes on a
    /// local directory or SeaweedFS, the same objects they see.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store
            .clone()
            .unwrap_or_else(|| Arc::new(InMemory::new()))
    }

    /// The SeaweedFS the cluster started, if its store is [`Store::SeaweedFs`].
    pub fn seaweed(&self) -> Option<&SeaweedFs> {
        self.seaweed.as_ref()
    }

    pub fn admin_token(&self) -> &'static str {
        ADMIN_TOKEN
    }

    pub fn internal_token(&self) -> &'static str {
        INTERNAL_TOKEN
    }

    /// storaged's URL (panics if the cluster has none: a test bug).
    pub fn storaged_url(&self) -> String {
        self.node(Daemon::Storaged, 0).url()
    }

    /// compactord's URL (panics if the cluster has none).
    pub fn compactord_url(&self) -> String {
        self.node(Daemon::Compactord, 0).url()
    }

    /// The URL of queryd number `index` (panics if there is none).
    pub fn queryd_url(&self, index: usize) -> String {
        self.node(Daemon::Queryd, index).url()
    }

    /// How many queryd instances run.
    pub fn queryd_count(&self) -> usize {
        self.queryds.len()
    }

    /// A client of the first queryd, with the admin token.
    pub fn queryd(&self) -> QuerydClient {
        self.queryd_at(0)
    }

    /// A client of queryd number `index`, with the admin token.
    pub fn queryd_at(&self, index: usize) -> QuerydClient {
        QuerydClient::new(&self.queryd_url(index), Some(ADMIN_TOKEN))
    }

    /// storaged's catalog client, with the admin token.
    pub fn storaged(&self) -> strata_storaged_api::StoragedClient {
        strata_storaged_api::StoragedClient::new(&self.storaged_url(), Some(ADMIN_TOKEN))
    }

    /// storaged's internal object API as an object store.
    pub fn remote_store(&self) -> strata_storaged_api::RemoteStore {
        strata_storaged_api::RemoteStore::new(&self.storaged_url(), INTERNAL_TOKEN)
    }

    /// compactord's internal client.
    pub fn compactord(&self) -> strata_compactord_api::CompactordClient {
        strata_compactord_api::CompactordClient::new(&self.compactord_url(), INTERNAL_TOKEN)
    }

    /// The daemon process `name` (`storaged`, `queryd`, `queryd-1`, `compactord`, `strata`
    /// for `strata up`), if it runs as one.
    pub fn process(&mut self, name: &str) -> Option<&mut ChildProcess> {
        match &mut self.named_mut(name)?.running {
            Some(Running::Process(process)) => Some(process),
            _ => None,
        }
    }

    /// The log of daemon process `name` since its last start ("" in-process).
    pub fn log(&self, name: &str) -> String {
        self.storaged
            .iter()
            .chain(&self.queryds)
            .chain(&self.compactord)
            .find(|n| n.name == name && !n.alias)
            .and_then(|n| match &n.running {
                Some(Running::Process(process)) => Some(process.log()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Every log of the processes whose name starts with `prefix`, oldest first (a
    /// restarted daemon keeps one log per start).
    pub fn logs(&self, prefix: &str) -> String {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix) && n.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
                format!("--- {n}\n{text}")
            })
            .collect()
    }

    /// Stops daemon `name` at once: SIGKILL for a process, the task dropped in-process.
    pub fn kill(&mut self, name: &str) {
        if let Some(node) = self.named_mut(name) {
            if let Some(Running::Process(process)) = &mut node.running {
                process.kill();
            }
            node.running = None;
        }
    }

    /// Kills daemon `name` (if it runs) and starts it again on its port.
    pub async fn restart(&mut self, name: &str) -> anyhow::Result<()> {
        self.kill(name);
        let index = self
            .queryds
            .iter()
            .position(|n| n.name == name)
            .map(|i| (Daemon::Queryd, i))
            .or_else(|| {
                [
                    (Daemon::Storaged, &self.storaged),
                    (Daemon::Compactord, &self.compactord),
                ]
                .into_iter()
                .find(|(_, n)| n.as_ref().is_some_and(|n| n.name == name))
                .map(|(d, _)| (d, 0))
            })
            .with_context(|| format!("no daemon {name} in the cluster"))?;
        let mut node = match index {
            (Daemon::Queryd, i) => self.queryds.remove(i),
            (Daemon::Storaged, _) => self.storaged.take().context("no storaged")?,
            (Daemon::Compactord, _) => self.compactord.take().context("no compactord")?,
        };
        let launched = self.launch(&mut node).await;
        match index {
            (Daemon::Queryd, i) => self.queryds.insert(i, node),
            (Daemon::Storaged, _) => self.storaged = Some(node),
            (Daemon::Compactord, _) => self.compactord = Some(node),
        }
        launched
    }

    fn node(&self, daemon: Daemon, index: usize) -> &Node {
        let node = match daemon {
            Daemon::Storaged => self.storaged.as_ref(),
            Daemon::Queryd => self.queryds.get(index),
            Daemon::Compactord => self.compactord.as_ref(),
        };
        node.unwrap_or_else(|| panic!("the test cluster runs no {daemon:?} #{index}"))
    }

    fn named_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.storaged
            .iter_mut()
            .chain(self.queryds.iter_mut())
            .chain(self.compactord.iter_mut())
            .find(|n| n.name == name && !n.alias)
    }

    /// Starts `node` and waits for its `/health`.
    async fn launch(&self, node: &mut Node) -> anyhow::Result<()> {
        node.starts += 1;
        let running = match self.mode {
            Mode::InProcess => self.spawn_task(node).await?,
            Mode::Processes | Mode::Up => self.spawn_process(node)?,
        };
        node.running = Some(running);
        let Some(running) = &mut node.running else {
            unreachable!("just set")
        };
        for url in &node.wait_for {
            let health = format!("{url}/health");
            let waited = tokio::select! {
                waited = wait_http_ok(&health, START_TIMEOUT) => waited,
                failed = exited(running) => Err(failed),
            };
            if let Err(e) = waited {
                let log = match running {
                    Running::Process(p) => p.log(),
                    Running::Task { .. } => String::new(),
                };
                bail!("{} did not start: {e}\n{log}", node.name);
            }
        }
        Ok(())
    }

    fn spawn_process(&self, node: &Node) -> anyhow::Result<Running> {
        let config = self.dir.join(format!("{}.toml", node.name));
        std::fs::write(&config, toml::to_string(&node.config)?)?;
        let mut command = std::process::Command::new(strata_bin());
        let subcommand = if self.mode == Mode::Up {
            "up"
        } else {
            node.daemon.command()
        };
        command
            .arg(subcommand)
            .arg("--config")
            .arg(&config)
            .args(&self.args)
            .env("RUST_LOG", &self.log_level)
            .env_remove("STRATA_ADMIN_TOKEN")
            .env_remove("STRATA_INTERNAL_TOKEN")
            .current_dir(&self.dir);
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        // One log per start, in start order: the story of a crash test.
        let log = self
            .dir
            .join(format!("{}-{:03}.log", node.name, node.starts));
        Ok(Running::Process(ChildProcess::spawn(
            &node.name, command, &log,
        )?))
    }

    async fn spawn_task(&self, node: &Node) -> anyhow::Result<Running> {
        let wired = Config::parse(&toml::to_string(&node.config)?)?;
        let mut config = match &self.config {
            Some(given) => wire(given.clone(), wired),
            None => wired,
        };
        config.base_dir.clone_from(&self.dir);
        if let Some(edit) = &self.configure {
            edit(&mut config);
        }
        let listener = tokio::net::TcpListener::bind(listen_addr(&config, node.daemon)).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let store = self.store();
        let through_storaged =
            (self.storaged.is_some() || self.storaged_at) && node.daemon != Daemon::Storaged;
        let task = match node.daemon {
            Daemon::Storaged => tokio::spawn(async move {
                strata_storaged::serve_with_store(config, store, listener, shutdown).await?;
                Ok(())
            }),
            Daemon::Compactord => tokio::spawn(async move {
                if through_storaged {
                    strata_compactord::serve(config, listener, shutdown).await?;
                } else {
                    strata_compactord::serve_with_store(config, store, listener, shutdown).await?;
                }
                Ok(())
            }),
            Daemon::Queryd => {
                let store: Arc<dyn ObjectStore> = if through_storaged {
                    Arc::new(strata_storaged_api::RemoteStore::from_config(&config)?)
                } else {
                    store
                };
                let state = strata_queryd::app_state(&config, store)?;
                let router = strata_queryd::routes::router(state, &config);
                tokio::spawn(async move {
                    strata_daemon::serve::serve(listener, router, shutdown).await?;
                    Ok(())
                })
            }
        };
        Ok(Running::Task { _stop: stop, task })
    }
}

/// `given` with the cluster's wiring from `wired` (see [`TestClusterBuilder::config`]).
fn wire(mut given: Config, wired: Config) -> Config {
    given.store.url = wired.store.url;
    given.storaged.listen = wired.storaged.listen;
    given.storaged.url = wired.storaged.url;
    given.queryd.listen = wired.queryd.listen;
    given.compactord.listen = wired.compactord.listen;
    given.auth.admin_token = wired.auth.admin_token;
    given.auth.internal_token = wired.auth.internal_token;
    if given.storaged.notify_urls.is_none() {
        given.storaged.notify_urls = wired.storaged.notify_urls;
    }
    given
}

fn listen_addr(config: &Config, daemon: Daemon) -> std::net::SocketAddr {
    match daemon {
        Daemon::Storaged => config.storaged.listen,
        Daemon::Queryd => config.queryd.listen,
        Daemon::Compactord => config.compactord.listen,
    }
}

/// Resolves when the daemon stopped on its own, with why.
async fn exited(running: &mut Running) -> anyhow::Error {
    match running {
        Running::Task { task, .. } => match task.await {
            Ok(Ok(())) => anyhow::anyhow!("it stopped"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::anyhow!("it panicked: {e}"),
        },
        Running::Process(process) => loop {
            if let Some(status) = process.try_wait() {
                return anyhow::anyhow!("it exited with {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        },
    }
}
