//! The systems a suite starts on loopback: Strata, NATS JetStream and Redis,
//! each in its own directory, each stopped (with its process group) when
//! dropped. Their settings are recorded for the report.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::driver::Durability;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A server process the suite started.
pub struct Server {
    pub name: String,
    child: Child,
    /// The command line, for the report.
    pub setup: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(
        name: &str,
        program: &str,
        args: &[String],
        env: &HashMap<String, String>,
        log: &Path,
    ) -> std::io::Result<Server> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("run {program}: {e}")))?;
        Ok(Server {
            name: name.to_string(),
            child,
            setup: format!("{program} {}", args.join(" ")),
        })
    }

    /// Waits until every address accepts connections, or the process exits.
    fn wait_listening(&mut self, addrs: &[SocketAddr], log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited with {status}: {}", self.name, tail(log)));
            }
            if addrs
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {addrs:?} within {START_TIMEOUT:?}: {}",
                    self.name,
                    tail(log)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The whole group: servers may have children.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A free loopback port (the kernel picks; another process may take it
/// before the server binds, which shows as a failed start).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Strata: one node, its API (HTTP and gRPC) and Kafka listener on loopback.
pub struct Strata {
    pub server: Server,
    pub api: SocketAddr,
    pub kafka: SocketAddr,
}

pub fn start_strata(
    bin: &Path,
    dir: &Path,
    extra: &[String],
    env: &HashMap<String, String>,
) -> Result<Strata, String> {
    let api = loopback(free_port().map_err(|e| e.to_string())?);
    let kafka = loopback(free_port().map_err(|e| e.to_string())?);
    let mut args = vec![
        "server".to_string(),
        "--listen".into(),
        api.to_string(),
        "--kafka-listen".into(),
        kafka.to_string(),
        "--data-dir".into(),
        dir.join("data").display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let log = dir.join("strata.log");
    let mut env = env.clone();
    env.entry("RUST_LOG".into())
        .or_insert_with(|| "warn".into());
    let mut server = Server::spawn("strata", &bin.display().to_string(), &args, &env, &log)
        .map_err(|e| e.to_string())?;
    server.wait_listening(&[api, kafka], &log)?;
    Ok(Strata { server, api, kafka })
}

/// NATS with JetStream, file storage under `dir`, in a durability class:
/// `memory` is the server's defaults (acknowledged once written to the OS,
/// fsynced every two minutes); `fsync` sets `sync_interval: always`, so every
/// write is fsynced before its acknowledgement (nats-server 2.10 and later;
/// an older one refuses the setting and does not start).
pub fn start_nats(
    program: &Path,
    dir: &Path,
    durability: Durability,
) -> Result<(Server, SocketAddr), String> {
    let addr = loopback(free_port().map_err(|e| e.to_string())?);
    let dir = dir.join(format!("nats-{}", durability.as_str()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let store = dir.join("jetstream");
    let sync = match durability {
        Durability::Fsync => "\n  sync_interval: always",
        Durability::Memory => "",
    };
    // The store path is quoted: NATS config strings are JSON-like.
    let config = format!(
        "listen: \"{addr}\"\njetstream {{\n  store_dir: {store:?}{sync}\n}}\n",
        store = store.display().to_string()
    );
    let config_path = dir.join("nats.conf");
    std::fs::write(&config_path, &config).map_err(|e| e.to_string())?;
    let args = vec!["-c".to_string(), config_path.display().to_string()];
    let log = dir.join("nats.log");
    let program = program.display().to_string();
    let mut server = Server::spawn("nats-server", &program, &args, &HashMap::new(), &log)
        .map_err(|e| e.to_string())?;
    server.setup = format!(
        "{program} -c nats.conf, with nats.conf: {}",
        config.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    server.wait_listening(&[addr], &log)?;
    Ok((server, addr))
}

/// Redis in a durability class: `fsync` appends to the AOF and fsyncs it
/// before replying (`appendfsync always`); `memory` is the default (no AOF,
/// no snapshots during the run).
pub fn start_redis(dir: &Path, durability: Durability) -> Result<(Server, SocketAddr), String> {
    let addr = loopback(free_port().map_err(|e| e.to_string())?);
    let data = dir.join(format!("redis-{}", durability.as_str()));
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let mut args = vec![
        "--bind".to_string(),
        "127.0.0.1".into(),
        "--port".into(),
        addr.port().to_string(),
        "--dir".into(),
        data.display().to_string(),
        "--save".into(),
        String::new(),
    ];
    match durability {
        Durability::Fsync => {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from))
        }
        Durability::Memory => args.extend(["--appendonly", "no"].map(String::from)),
    }
    let log = dir.join(format!("redis-{}.log", durability.as_str()));
    let mut server = Server::spawn(
        &format!("redis-server ({})", durability.as_str()),
        "redis-server",
        &args,
        &HashMap::new(),
        &log,
    )
    .map_err(|e| e.to_string())?;
    server.setup = server.setup.replace("--save  ", "--save \"\" ");
    server.wait_listening(&[addr], &log)?;
    Ok((server, addr))
}

/// What `program --version` (or `args`) prints first, for the report.
pub fn version_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// A directory for one suite run's servers.
pub fn work_dir(root: Option<&Path>) -> std::io::Result<PathBuf> {
    let base = root.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = base.join(format!("strata-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
