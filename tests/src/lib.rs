//! Cross-component end-to-end tests, and the harness that starts the real services they
//! run against as child processes on free loopback ports:
//!
//! - [`Tansu`]: a Kafka-protocol broker with sqlite storage (`tansu broker`), restartable on
//!   the same database so broker restarts can be tested;
//! - [`Moto`]: moto's server mode, which speaks the AWS KMS JSON API.
//!
//! [`pipeline::Pipeline`] starts the whole enclave worker on them as child processes;
//! [`inprocess`] runs host and enclave as tasks, with a plaintext baseline, for the
//! pipeline benchmark (`benches/pipeline.rs`).
//!
//! Each service lives in its own temporary directory and is killed when dropped. Nothing
//! here skips silently: a missing binary is an error that says how to install it
//! (`scripts/setup` installs both).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod browser;
pub mod inprocess;
pub mod model_server;
pub mod pipeline;

/// Environment variable naming the tansu binary (default: `tansu` on `PATH`).
pub const TANSU_BIN_ENV: &str = "ZENVELOPE_TANSU_BIN";
/// Environment variable naming the moto server binary (default: `moto_server` on `PATH`).
pub const MOTO_BIN_ENV: &str = "ZENVELOPE_MOTO_BIN";

/// A free TCP port on 127.0.0.1 (bound, then released; the caller binds it right away).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `addr`, or fails after `timeout`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the service exited with {status} before listening on {addr}");
        }
        if Instant::now() > deadline {
            bail!("nothing listened on {addr} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every line child services wrote to stdout and stderr, by service name, in order. Used
/// to wait for start-up lines and to prove that no plaintext canary was ever logged.
#[derive(Clone, Default)]
pub struct OutputLog(Arc<Mutex<Vec<(String, String)>>>);

impl OutputLog {
    /// Captures a child's stdout and stderr under `name` (until the pipes close).
    pub fn capture(&self, name: &str, child: &mut Child) {
        let pipes: Vec<Box<dyn std::io::Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        for pipe in pipes {
            let lines = self.0.clone();
            let name = name.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((name.clone(), line));
                }
            });
        }
    }

    /// Lines of `service` containing `needle`.
    pub fn count_for(&self, service: &str, needle: &str) -> usize {
        self.lines()
            .iter()
            .filter(|(s, l)| s == service && l.contains(needle))
            .count()
    }

    /// All output of `service`.
    pub fn text_for(&self, service: &str) -> String {
        self.lines()
            .iter()
            .filter(|(s, _)| s == service)
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything, prefixed by service name.
    pub fn text(&self) -> String {
        self.lines()
            .iter()
            .map(|(s, l)| format!("{s}: {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn lines(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn program(env: &str, default: &str, install_hint: &str) -> Result<PathBuf> {
    let name = std::env::var_os(env).unwrap_or_else(|| default.into());
    let path = PathBuf::from(&name);
    if path.components().count() > 1 {
        return Ok(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "`{}` is not on PATH (set {env} to its path); {install_hint}",
                path.display()
            )
        })
}

/// A tansu broker (Kafka protocol, sqlite storage) on a free loopback port.
pub struct Tansu {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    output: OutputLog,
}

impl Tansu {
    /// Starts a broker with a fresh sqlite database.
    pub fn start() -> Result<Self> {
        let bin = program(
            TANSU_BIN_ENV,
            "tansu",
            "run scripts/setup (cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql)",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("zenvelope-tansu-")
            .tempdir()?;
        let mut tansu = Self {
            bin,
            dir,
            port: free_port()?,
            child: None,
            output: OutputLog::default(),
        };
        tansu.spawn()?;
        Ok(tansu)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The sqlite database file.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("tansu.db")
    }

    fn spawn(&mut self) -> Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut child = Command::new(&self.bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // tansu reads the path of a sqlite URL as relative to its working directory.
            .arg("--storage-engine")
            .arg("sqlite://tansu.db")
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.output.capture("tansu", &mut child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let ready = wait_for_port(addr, Duration::from_secs(30), &mut child);
        self.child = Some(child);
        ready.with_context(|| format!("tansu did not start; its output:\n{}", self.output.text()))
    }

    /// Kills the broker (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait()?;
        }
        Ok(())
    }

    /// Kills the broker and starts it again on the same port and database.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// The broker's recent output (for failure messages).
    pub fn output(&self) -> String {
        self.output.text()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// moto's server (AWS APIs, KMS among them) on a free loopback port.
pub struct Moto {
    port: u16,
    child: Child,
    output: OutputLog,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT`.
    pub fn start() -> Result<Self> {
        let bin = program(
            MOTO_BIN_ENV,
            "moto_server",
            "run scripts/setup (pip install -r tests/services/requirements.txt)",
        )?;
        let port = free_port()?;
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let output = OutputLog::default();
        output.capture("moto", &mut child);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if let Err(e) = wait_for_port(addr, Duration::from_secs(30), &mut child) {
            let _ = child.kill();
            bail!("moto did not start: {e}; its output:\n{}", output.text());
        }
        Ok(Self {
            port,
            child,
            output,
        })
    }

    /// The endpoint URL for an AWS SDK endpoint override.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's recent output (for failure messages).
    pub fn output(&self) -> String {
        self.output.text()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a binary of this workspace (e.g. `enclave-host`), after `cargo build` of the
/// package that defines it (once per test process; a no-op when `cargo nextest run
/// --workspace` already built it, and never a stale binary when one test runs alone).
pub fn workspace_binary(package: &str, name: &str) -> Result<PathBuf> {
    // Built once per test process (cargo is a quick no-op when it is fresh), so a test
    // never runs a stale binary left over from an earlier build.
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let target = target_dir()?;
    let path = target.join("debug").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .current_dir(workspace_root())
            .status()
            .context("cannot run cargo build")?;
        if !status.success() {
            bail!("cargo build -p {package} --bin {name} failed");
        }
        built.push(name.to_owned());
    }
    Ok(path)
}

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        });
    }
    // Test binaries run from <target>/debug/deps/, bench binaries from <target>/release/deps/.
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "debug" || n == "release")
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("cannot find the cargo target directory from the test binary's path")
}
