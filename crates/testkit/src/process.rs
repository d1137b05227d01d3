//! Child processes that die with the test: killed (SIGKILL) on drop, output kept in a log
//! file that is printed if the process is asked about after failing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, strata_bin, wait_http_ok};

#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    log: PathBuf,
    name: String,
}

impl ChildProcess {
    /// Starts `command` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
        Ok(Self {
            child,
            log: log.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL: the crash a test wants to survive.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.child.id());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `strata up` process on free ports with its own data directory.
#[derive(Debug)]
pub struct StrataProcess {
    pub process: ChildProcess,
    pub queryd: String,
    pub storaged: String,
    pub compactord: String,
    pub admin_token: String,
}

impl StrataProcess {
    /// Writes a config for `store_url` (plus `extra_toml`), starts `strata up --config` on
    /// free ports (plus `extra_args`), and waits until all three daemons answer `/health`.
    /// Threshold compaction is off (`check_interval_ms = 0`): it would move rows deltas wrote
    /// into the base mid-test, changing the storage order tests model; compact on demand.
    pub async fn up(
        dir: &Path,
        store_url: &str,
        extra_toml: &str,
        envs: &[(&str, &str)],
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let (q, s, c) = (free_port(), free_port(), free_port());
        let admin_token = "test-admin-token".to_owned();
        let config = format!(
            "[store]\nurl = \"{store_url}\"\n\
             [storaged]\nlisten = \"127.0.0.1:{s}\"\n\
             [queryd]\nlisten = \"127.0.0.1:{q}\"\n\
             [compactord]\nlisten = \"127.0.0.1:{c}\"\ncheck_interval_ms = 0\n\
             [auth]\nadmin_token = \"{admin_token}\"\n{extra_toml}"
        );
        let config_path = dir.join("strata.toml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(strata_bin());
        command
            .arg("up")
            .arg("--config")
            .arg(&config_path)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .env_remove("STRATA_ADMIN_TOKEN")
            .current_dir(dir);
        for (k, v) in envs {
            command.env(k, v);
        }
        let process = ChildProcess::spawn("strata up", command, &dir.join("strata.log"))?;
        let this = Self {
            process,
            queryd: format!("http://127.0.0.1:{q}"),
            storaged: format!("http://127.0.0.1:{s}"),
            compactord: format!("http://127.0.0.1:{c}"),
            admin_token,
        };
        for base in [&this.storaged, &this.queryd, &this.compactord] {
            if let Err(e) = wait_http_ok(&format!("{base}/health"), Duration::from_secs(60)).await {
                anyhow::bail!("{e}\n--- strata log ---\n{}", this.process.log());
            }
        }
        Ok(this)
    }
}
