//! The Redis driver against a real `redis-server`, one per test, on a free
//! loopback port: the round trip in both durability classes, the durability
//! checks, and `prepare` deleting nothing but the topic's partitions.

#![cfg(feature = "redis")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use strata_bench::driver::{self, Driver, DriverError, Durability, System, Target, conformance};

const PROGRAM: &str = "redis-server";
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

/// Whether the server binary is here; without it the test is skipped, unless
/// on CI, where a missing binary is a broken setup.
fn available() -> anyhow::Result<bool> {
    let found = Command::new(PROGRAM)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return Ok(true);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("{PROGRAM} is not installed, and CI=true requires it");
    }
    eprintln!("skipped: {PROGRAM} is not installed");
    Ok(false)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `redis-server` with persistence `args`, answering PING.
fn start(persistence: &[&str]) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let child = Command::new(PROGRAM)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(dir.path())
        .args(["--save", ""])
        .args(persistence)
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
        if pong(port) {
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

fn pong(port: u16) -> bool {
    let ask = || -> std::io::Result<bool> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf)?;
        Ok(&buf == b"+PONG\r\n")
    };
    ask().unwrap_or(false)
}

const FSYNC: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];
const MEMORY: &[&str] = &["--appendonly", "no"];

async fn open(server: &Server, durability: Durability) -> Result<Box<dyn Driver>, DriverError> {
    driver::open(&Target {
        system: System::Redis,
        address: server.address(),
        durability,
    })
    .await
}

async fn round_trip(persistence: &[&str], durability: Durability) -> anyhow::Result<()> {
    if !available()? {
        return Ok(());
    }
    let server = start(persistence)?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let driver = open(&server, durability).await?;
        conformance::round_trip(&*driver, "bench-t", 4, 20, 10)
            .await
            .map_err(anyhow::Error::msg)
    })
    .await
    .context("timed out")?
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_fsync() -> anyhow::Result<()> {
    round_trip(FSYNC, Durability::Fsync).await
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_memory() -> anyhow::Result<()> {
    round_trip(MEMORY, Durability::Memory).await
}

fn expect_unsupported(
    result: Result<Box<dyn Driver>, DriverError>,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Err(DriverError::Unsupported { message, .. }) => {
            eprintln!("{what}: refused as expected: {message}");
            Ok(())
        }
        Err(e) => bail!("{what}: expected Unsupported, got {e}"),
        Ok(_) => bail!("{what}: accepted"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn durability_must_match_the_server() -> anyhow::Result<()> {
    if !available()? {
        return Ok(());
    }
    let fsync = start(FSYNC)?;
    let memory = start(MEMORY)?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        expect_unsupported(
            open(&fsync, Durability::Memory).await,
            "memory class, appendfsync always",
        )?;
        expect_unsupported(
            open(&memory, Durability::Fsync).await,
            "fsync class, appendonly no",
        )?;
        anyhow::Ok(())
    })
    .await
    .context("timed out")?
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_a_connect_error() -> anyhow::Result<()> {
    let port = free_port()?;
    let target = Target {
        system: System::Redis,
        address: format!("127.0.0.1:{port}"),
        durability: Durability::Memory,
    };
    match tokio::time::timeout(TEST_TIMEOUT, driver::open(&target)).await? {
        Err(DriverError::Connect { .. }) => Ok(()),
        Err(e) => bail!("expected Connect, got {e}"),
        Ok(_) => bail!("connected to nothing"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prepare_deletes_only_the_topics_partitions() -> anyhow::Result<()> {
    if !available()? {
        return Ok(());
    }
    let server = start(MEMORY)?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let driver = open(&server, Durability::Memory).await?;
        let client = redis::Client::open(format!("redis://{}/", server.address()))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mine = ["t:0", "t:1", "t:12"];
        // Another topic named with this one's prefix, another topic, a
        // plain key: none of them this topic's.
        let others = ["t:x:0", "t:", "u:0", "t"];
        for k in mine.iter().chain(&others) {
            redis::cmd("XADD")
                .arg(k)
                .arg("*")
                .arg("v")
                .arg("x")
                .query_async::<()>(&mut conn)
                .await?;
        }
        driver.prepare("t", 2).await?;
        for k in mine {
            let n: u64 = redis::cmd("EXISTS").arg(k).query_async(&mut conn).await?;
            anyhow::ensure!(n == 0, "{k} survived prepare");
        }
        for k in others {
            let n: u64 = redis::cmd("EXISTS").arg(k).query_async(&mut conn).await?;
            anyhow::ensure!(n == 1, "prepare deleted {k}");
        }
        anyhow::Ok(())
    })
    .await
    .context("timed out")?
}
