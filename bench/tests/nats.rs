//! The NATS JetStream driver against a real `nats-server -js`, one per test,
//! on a free loopback port: the round trip, and the fsync class refused on a
//! server that cannot fsync every write.

#![cfg(feature = "nats")]

use std::io::Read as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use strata_bench::driver::{self, Driver, DriverError, Durability, System, Target, conformance};

const PROGRAM: &str = "nats-server";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A running server, killed when dropped, with its directory.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// The installed server's `major.minor`, or `None` when it is not installed
/// (and the test is skipped, unless on CI, where that is a broken setup).
fn installed() -> anyhow::Result<Option<(u64, u64)>> {
    let Ok(out) = Command::new(PROGRAM).arg("--version").output() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("{PROGRAM} is not installed, and CI=true requires it");
        }
        eprintln!("skipped: {PROGRAM} is not installed");
        return Ok(None);
    };
    // "nats-server: v2.9.10"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split_whitespace()
        .last()
        .map(|v| v.trim_start_matches('v'))
        .unwrap_or_default();
    let mut parts = version.split('.').map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok(Some((major, minor))),
        _ => bail!("cannot read the version in {text:?}"),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `nats-server -js`, sending its INFO line to a new connection.
fn start() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(PROGRAM)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("jetstream"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("run {PROGRAM}"))?;
    let mut server = Server { child, port, dir };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("{PROGRAM} exited with {status}: {}", server.log());
        }
        if info(port) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!(
                "{PROGRAM} did not answer within {START_TIMEOUT:?}: {}",
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn info(port: u16) -> bool {
    let ask = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"INFO ")
    };
    ask().unwrap_or(false)
}

async fn open(server: &Server, durability: Durability) -> Result<Box<dyn Driver>, DriverError> {
    driver::open(&Target {
        system: System::Nats,
        address: server.address(),
        durability,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_memory() -> anyhow::Result<()> {
    if installed()?.is_none() {
        return Ok(());
    }
    let server = start()?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let driver = open(&server, Durability::Memory).await?;
        conformance::round_trip(&*driver, "bench-t", 4, 20, 10)
            .await
            .map_err(anyhow::Error::msg)
    })
    .await
    .context("timed out")?
}

#[tokio::test(flavor = "multi_thread")]
async fn fsync_needs_2_10() -> anyhow::Result<()> {
    let Some(version) = installed()? else {
        return Ok(());
    };
    let server = start()?;
    let result = tokio::time::timeout(TEST_TIMEOUT, open(&server, Durability::Fsync))
        .await
        .context("timed out")?;
    match (version >= (2, 10), result) {
        (false, Err(DriverError::Unsupported { message, .. })) => {
            eprintln!("refused as expected: {message}");
            anyhow::ensure!(
                message.contains("2.10"),
                "the reason names no version: {message}"
            );
            Ok(())
        }
        // 2.10 and later can fsync every write (`sync_interval: always`).
        (true, Ok(_)) => Ok(()),
        (_, Err(e)) => bail!("nats-server {version:?}: {e}"),
        (false, Ok(_)) => bail!("nats-server {version:?} accepted for the fsync class"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_a_connect_error() -> anyhow::Result<()> {
    let port = free_port()?;
    let target = Target {
        system: System::Nats,
        address: format!("127.0.0.1:{port}"),
        durability: Durability::Memory,
    };
    match tokio::time::timeout(TEST_TIMEOUT, driver::open(&target)).await? {
        Err(DriverError::Connect { .. }) => Ok(()),
        Err(e) => bail!("expected Connect, got {e}"),
        Ok(_) => bail!("connected to nothing"),
    }
}
