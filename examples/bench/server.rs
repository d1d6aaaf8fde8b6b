//! The processes under test: `twofold serve` as an operator would run it (its own process, default settings, logs
//! at `info` to a file) and the bare handler, each on a free loopback port, stopped when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::client::Connection;

/// The longest a server may take to answer its readiness check after starting (migrations included).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    pid_file: PathBuf,
}

/// Resident memory in kB, from `/proc/PID/status`: now (`VmRSS`) and the most ever (`VmHWM`).
pub struct Memory {
    pub resident_kb: u64,
    pub peak_kb: u64,
}

/// The programs built next to this one: `target/release/examples/bench` beside `bench_bare`, below `twofold`.
pub fn sibling(name: &str, levels_up: usize) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("the benchmark's folder")?;
    for _ in 0..levels_up {
        dir = dir.parent().context("the build folder")?;
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} is missing: build it first (bench/run does)", path.display());
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Server {
    /// `twofold serve` on `database_url`, with its key in `dir` and default settings; answers once `/readyz` does.
    pub async fn twofold(dir: &Path, name: &str, database_url: &str) -> anyhow::Result<Self> {
        Self::twofold_with(dir, name, database_url, &[]).await
    }

    /// As [`Server::twofold`], with these settings (`TWOFOLD_*` variables) besides.
    pub async fn twofold_with(
        dir: &Path,
        name: &str,
        database_url: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let mut command = Command::new(sibling("twofold", 1)?);
        command
            .arg("serve")
            .env("TWOFOLD_LISTEN", addr.to_string())
            .env("TWOFOLD_DATABASE_URL", database_url)
            .env("TWOFOLD_SECRET_KEY_FILE", key_file(dir))
            .env("TWOFOLD_PUBLIC_URL", format!("http://{addr}"))
            .envs(settings.iter().copied());
        Self::start(command, dir, name, addr, "/readyz").await
    }

    /// The bare axum handler, the floor of the session check.
    pub async fn bare(dir: &Path) -> anyhow::Result<Self> {
        let addr = free_port()?;
        let mut command = Command::new(sibling("bench_bare", 0)?);
        command.arg(addr.to_string());
        Self::start(command, dir, "bare", addr, "/auth/session").await
    }

    async fn start(
        mut command: Command,
        dir: &Path,
        name: &str,
        addr: SocketAddr,
        ready: &str,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("starting the server")?;
        // bench/run stops whatever is listed here if this program itself is killed before it can.
        let pid_file = dir.join(format!("{name}.pid"));
        std::fs::write(&pid_file, child.id().to_string())?;
        let mut server = Self {
            child,
            addr,
            log,
            pid_file,
        };
        server.wait_ready(ready).await.map_err(|error| server.failure(error))?;
        Ok(server)
    }

    async fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited during start-up ({status})");
            }
            if let Ok(mut connection) = Connection::open(self.addr).await {
                if connection.get(path, None).await.is_ok_and(|r| r.status == 200) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the server did not answer {path} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `error`, with the end of the server's log to explain it.
    pub fn failure(&self, error: anyhow::Error) -> anyhow::Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow!("{error:#}\nlast lines of {}:\n{}", self.log.display(), tail.join("\n"))
    }

    /// Fails if the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => Err(self.failure(anyhow!("the server exited ({status})"))),
            None => Ok(()),
        }
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| anyhow!("no {name} in /proc/{}/status", self.child.id()))
        };
        Ok(Memory {
            resident_kb: field("VmRSS:")?,
            peak_kb: field("VmHWM:")?,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

pub fn key_file(dir: &Path) -> PathBuf {
    dir.join("twofold.key")
}
