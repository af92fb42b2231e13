//! The NATS JetStream driver against real servers started the way the suite
//! starts them (`systems::start_nats`), one per test, on free loopback ports:
//!
//! * Debian's `nats-server` (2.9 on this machine): the memory class round
//!   trip, and the fsync class refused, since it cannot fsync every write;
//! * the release binary `bench/run` uses, named by `STRATA_BENCH_NATS_SERVER`
//!   (scripts/test.sh installs it): the round trip in both classes, the fsync
//!   one with `sync_interval: always`.
//!
//! A missing server skips its tests, except with CI=true, where it fails them.

#![cfg(feature = "nats")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use strata_bench::driver::{self, Driver, DriverError, Durability, System, Target, conformance};
use strata_bench::systems::{self, Server};

const DEBIAN: &str = "nats-server";
const RELEASE_VAR: &str = "STRATA_BENCH_NATS_SERVER";
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `program` and its `major.minor`, or `None` when it is not there (a skip,
/// or a failure on CI).
fn installed(program: &Path) -> anyhow::Result<Option<(PathBuf, (u64, u64))>> {
    let Ok(out) = Command::new(program).arg("--version").output() else {
        if on_ci() {
            bail!(
                "{} is not installed, and CI=true requires it",
                program.display()
            );
        }
        eprintln!("skipped: {} is not installed", program.display());
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
        (Some(Ok(major)), Some(Ok(minor))) => Ok(Some((program.to_path_buf(), (major, minor)))),
        _ => bail!("cannot read the version in {text:?}"),
    }
}

fn debian() -> anyhow::Result<Option<(PathBuf, (u64, u64))>> {
    installed(Path::new(DEBIAN))
}

fn release() -> anyhow::Result<Option<(PathBuf, (u64, u64))>> {
    match std::env::var_os(RELEASE_VAR) {
        Some(p) => installed(Path::new(&p)),
        None if on_ci() => bail!("{RELEASE_VAR} is not set, and CI=true requires it"),
        None => {
            eprintln!("skipped: {RELEASE_VAR} is not set");
            Ok(None)
        }
    }
}

/// Started in `dir` as the suite starts it for `class`.
fn start(
    program: &Path,
    dir: &Path,
    class: Durability,
) -> anyhow::Result<(Server, std::net::SocketAddr)> {
    systems::start_nats(program, dir, class).map_err(anyhow::Error::msg)
}

async fn open(address: String, durability: Durability) -> Result<Box<dyn Driver>, DriverError> {
    driver::open(&Target {
        system: System::Nats,
        address,
        durability,
    })
    .await
}

async fn round_trip(program: &Path, class: Durability) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, addr) = start(program, dir.path(), class)?;
    tokio::time::timeout(TEST_TIMEOUT, async {
        let driver = open(addr.to_string(), class).await?;
        conformance::round_trip(&*driver, "bench-t", 4, 20, 10)
            .await
            .map_err(anyhow::Error::msg)
    })
    .await
    .context("timed out")?
}

#[tokio::test(flavor = "multi_thread")]
async fn debian_server_round_trip_memory() -> anyhow::Result<()> {
    let Some((program, _)) = debian()? else {
        return Ok(());
    };
    round_trip(&program, Durability::Memory).await
}

#[tokio::test(flavor = "multi_thread")]
async fn release_server_round_trip_memory() -> anyhow::Result<()> {
    let Some((program, _)) = release()? else {
        return Ok(());
    };
    round_trip(&program, Durability::Memory).await
}

#[tokio::test(flavor = "multi_thread")]
async fn release_server_round_trip_fsync() -> anyhow::Result<()> {
    let Some((program, version)) = release()? else {
        return Ok(());
    };
    anyhow::ensure!(
        version >= (2, 10),
        "{RELEASE_VAR} names nats-server {version:?}; the fsync class needs 2.10 or later"
    );
    round_trip(&program, Durability::Fsync).await
}

/// Before 2.10 nats-server has no `sync_interval: always`: the suite cannot
/// start it for the fsync class, and the driver refuses the class on one
/// started with its defaults, so such a run can never be labelled fsync.
#[tokio::test(flavor = "multi_thread")]
async fn fsync_needs_2_10() -> anyhow::Result<()> {
    let Some((program, version)) = debian()? else {
        return Ok(());
    };
    if version >= (2, 10) {
        eprintln!("skipped: Debian's nats-server is {version:?}, which can fsync every write");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    match start(&program, dir.path(), Durability::Fsync) {
        Err(e) => anyhow::ensure!(
            e.to_string().contains("sync_interval"),
            "failed to start for another reason: {e}"
        ),
        Ok(_) => bail!("nats-server {version:?} started with sync_interval: always"),
    }
    let (_server, addr) = start(&program, dir.path(), Durability::Memory)?;
    let result = tokio::time::timeout(TEST_TIMEOUT, open(addr.to_string(), Durability::Fsync))
        .await
        .context("timed out")?;
    match result {
        Err(DriverError::Unsupported { message, .. }) => {
            anyhow::ensure!(
                message.contains("2.10"),
                "the reason names no version: {message}"
            );
            Ok(())
        }
        Err(e) => bail!("nats-server {version:?}: {e}"),
        Ok(_) => bail!("nats-server {version:?} accepted for the fsync class"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_a_connect_error() -> anyhow::Result<()> {
    let port = systems::free_port()?;
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
