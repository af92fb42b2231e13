//! Test-only helpers shared by Strata's crates.
//!
//! * [`MotoServer`]: a real S3-compatible server (moto, from PyPI:
//!   `tests/support/requirements.txt`, installed by `scripts/test.sh`) on a
//!   free loopback port (or another local address, [`MotoServer::start_on`]),
//!   with `stop`/`restart`/`pause`/`resume` for outage tests.
//! * [`Cluster`]: N real `strata` processes bootstrapped as one cluster,
//!   with kill (SIGKILL), terminate (SIGTERM), restart and join; on
//!   loopback, or each node in a network namespace of a [`Netns`]
//!   ([`Cluster::start_in`]), which can cut it off the network.
//! * [`Netns`]: a bridge and N network namespaces the test creates (root
//!   only), with `cut`/`heal` of one namespace's link.
//! * [`LatencyProxy`]: a loopback TCP proxy that delays every chunk by a
//!   configurable amount, to put latency in front of such a server.
//!
//! A test that needs moto calls [`MotoServer::available`] first: without moto
//! it returns `false` (the test prints that it is skipped and returns), except
//! with `CI=true`, where a missing moto is a failure.

mod cluster;
mod netns;
pub use cluster::{Cluster, ClusterNode, free_port};
pub use netns::{MAX_NODES, Netns, NetnsError};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`MotoServer::start`] and [`MotoServer::restart`] wait for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The command that runs moto's server, if it is installed.
fn moto_command() -> Option<&'static [&'static str]> {
    static FOUND: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // `python3 -m moto.server` is the module `scripts/test.sh` installs with
        // `python3 -m pip`; a `moto_server` on PATH may belong to another Python.
        let candidates: [&'static [&'static str]; 2] =
            [&["python3", "-m", "moto.server"], &["moto_server"]];
        candidates.into_iter().find(|cmd| {
            Command::new(cmd[0])
                .args(&cmd[1..])
                .arg("--help")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

const MISSING: &str = "moto's S3 server is not installed (neither `python3 -m moto.server` \
    nor `moto_server` runs): run scripts/test.sh, or \
    `python3 -m pip install -r tests/support/requirements.txt`";

/// A moto S3 server on `127.0.0.1` (or the address given to
/// [`start_on`](Self::start_on)), killed (with its process group) when dropped.
///
/// Moto keeps its state in memory: [`stop`](Self::stop) loses every object.
/// [`restart`](Self::restart) brings the server back on the same port and
/// creates again the buckets made with [`create_bucket`](Self::create_bucket),
/// empty.
pub struct MotoServer {
    host: IpAddr,
    port: u16,
    child: Option<Child>,
    buckets: Vec<String>,
    log: PathBuf,
}

impl MotoServer {
    /// Whether moto is installed. With `CI=true` a missing moto panics instead:
    /// there, a skipped test would hide a missing install step.
    pub fn available() -> bool {
        let found = moto_command().is_some();
        if !found && ci() {
            panic!("{MISSING} (CI=true: tests that need it fail rather than skip)");
        }
        found
    }

    /// Starts a server on a free loopback port and waits (at most 30 s) until it answers.
    /// Panics if moto is missing or does not start.
    pub fn start() -> MotoServer {
        Self::start_on(Ipv4Addr::LOCALHOST.into())
    }

    /// As [`start`](Self::start), listening on `host` only, a local address
    /// such as a [`Netns`]'s bridge address, which processes inside the
    /// namespaces reach (they cannot reach the root namespace's loopback).
    pub fn start_on(host: IpAddr) -> MotoServer {
        let mut last = String::new();
        for _ in 0..3 {
            // Free on loopback, so almost surely on `host` too; a clash is retried.
            let port = free_port();
            let mut server = MotoServer {
                host,
                port,
                child: None,
                buckets: Vec::new(),
                log: std::env::temp_dir()
                    .join(format!("strata-moto-{}-{port}.log", std::process::id())),
            };
            // Another process may take the port between our probe and moto's bind.
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("moto server did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let Some(cmd) = moto_command() else {
            panic!("{MISSING}");
        };
        let log = std::fs::File::create(&self.log).map_err(|e| format!("create log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut child = Command::new(cmd[0])
            .args(&cmd[1..])
            .args(["-H", &self.host.to_string(), "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("run {cmd:?}: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log_tail()));
            }
            if matches!(http(self.addr(), "GET", "/moto-api/"), Ok(200)) {
                break;
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                return Err(format!(
                    "no answer on {} within {START_TIMEOUT:?}: {}",
                    self.addr(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        for bucket in self.buckets.clone() {
            self.put_bucket(&bucket);
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// `http://HOST:PORT` (`HOST` is `127.0.0.1` unless started with
    /// [`start_on`](Self::start_on)).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The `AWS_*` variables a client needs to reach this server.
    pub fn env(&self) -> HashMap<String, String> {
        Self::env_for(&self.endpoint())
    }

    /// The `AWS_*` variables for a moto server reached at `endpoint` (for
    /// example through a [`LatencyProxy`]).
    pub fn env_for(endpoint: &str) -> HashMap<String, String> {
        [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Creates a bucket (again after each [`restart`](Self::restart)). S3 rules
    /// apply to `name`: 3 to 63 lowercase letters, digits, dots and hyphens.
    pub fn create_bucket(&mut self, name: &str) {
        self.put_bucket(name);
        if !self.buckets.iter().any(|b| b == name) {
            self.buckets.push(name.to_string());
        }
    }

    fn put_bucket(&self, name: &str) {
        match http_full(self.addr(), "PUT", &format!("/{name}")) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!(
                "create bucket {name} on {}: status {status}: {body:.500}",
                self.endpoint()
            ),
            Err(e) => panic!("create bucket {name} on {}: {e}", self.endpoint()),
        }
    }

    /// Kills the server: connections are refused until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs),
    /// with its buckets, empty.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("moto server restart: {e}"),
                // The port may linger for a moment after the kill.
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel
    /// but never answered, so calls time out. State is kept.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Undoes [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling the process group this server was started in.
            unsafe { libc::kill(-(child.id() as i32), signal) };
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// SIGKILLs the process group `child` leads (it was started with `process_group(0)`), and reaps it.
fn kill_group(child: &mut Child) {
    // SAFETY: signalling the process group we created for this child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.kill();
    let _ = child.wait();
}

/// A body-less HTTP/1.1 request; returns the status code.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<u16> {
    http_full(addr, method, path).map(|(status, _)| status)
}

/// A body-less HTTP/1.1 request; returns the status code and the response.
fn http_full(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    match text.split(' ').nth(1).and_then(|code| code.parse().ok()) {
        Some(status) => Ok((status, text)),
        None => Err(std::io::Error::other(format!("bad response: {text:.200}"))),
    }
}

/// A TCP proxy on loopback that forwards to `target`, holding every chunk it
/// reads, in each direction, for `delay` before writing it on. Chunks are
/// delayed, not serialized: throughput is kept, latency added (a request and
/// its response take at least two delays more). Each connection uses four
/// threads (a reader and a delayed writer per direction); at most
/// [`LatencyProxy::MAX_CONNECTIONS`] are served at once, more wait to be
/// accepted. Dropping the proxy closes every connection and stops it.
pub struct LatencyProxy {
    addr: SocketAddr,
    delay_nanos: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<HashMap<u64, [TcpStream; 2]>>>,
    accept: Option<JoinHandle<()>>,
}

impl LatencyProxy {
    /// Connections served at once.
    pub const MAX_CONNECTIONS: usize = 64;

    /// Starts a proxy on a free loopback port.
    pub fn start(target: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the latency proxy");
        let addr = listener.local_addr().expect("proxy address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let delay_nanos = Arc::new(AtomicU64::new(delay.as_nanos() as u64));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<HashMap<u64, [TcpStream; 2]>>> = Arc::default();
        let active = Arc::new(AtomicUsize::new(0));
        let (d, s, o) = (delay_nanos.clone(), stop.clone(), open.clone());
        let accept = std::thread::spawn(move || {
            let mut next_id = 0u64;
            while !s.load(Ordering::Relaxed) {
                if active.load(Ordering::Relaxed) >= Self::MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(_) => continue,
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue; // the client sees the connection closed
                };
                next_id += 1;
                let id = next_id;
                if let (Ok(c), Ok(sv)) = (client.try_clone(), server.try_clone()) {
                    o.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, [c, sv]);
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (d, o, active) = (d.clone(), o.clone(), active.clone());
                std::thread::spawn(move || {
                    let a = pipe(&client, &server, d.clone());
                    let b = pipe(&server, &client, d);
                    for handle in a.into_iter().chain(b) {
                        let _ = handle.join();
                    }
                    o.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    active.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        LatencyProxy {
            addr,
            delay_nanos,
            stop,
            open,
            accept: Some(accept),
        }
    }

    /// The proxy's address: connect here instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the proxy's address.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the delay of chunks read from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_nanos
            .store(delay.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for [a, b] in self.open.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies `from` to `to` through a delay line: a reader thread stamps each
/// chunk, a writer thread writes it once its delay has passed.
fn pipe(from: &TcpStream, to: &TcpStream, delay_nanos: Arc<AtomicU64>) -> Vec<JoinHandle<()>> {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return Vec::new();
    };
    // Bounded: a slow writer stops the reader, so memory stays bounded.
    let (tx, rx): (SyncSender<(Instant, Vec<u8>)>, Receiver<_>) = sync_channel(64);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
        // Dropping `tx` tells the writer the stream ended.
    });
    let writer = std::thread::spawn(move || {
        for (read_at, chunk) in rx {
            let due = read_at + Duration::from_nanos(delay_nanos.load(Ordering::Relaxed));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    vec![reader, writer]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_proxy_forwards_with_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let proxy = LatencyProxy::start(target, Duration::from_millis(100));
        let started = Instant::now();
        let mut c = TcpStream::connect(proxy.addr()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        let rtt = started.elapsed();
        assert!(rtt >= Duration::from_millis(200), "{rtt:?}");
        assert!(rtt < Duration::from_secs(5), "{rtt:?}");
        drop(proxy);
    }

    #[test]
    fn moto_starts_serves_and_restarts() {
        if !MotoServer::available() {
            eprintln!("SKIPPED moto_starts_serves_and_restarts: {MISSING}");
            return;
        }
        let mut moto = MotoServer::start();
        moto.create_bucket("bucket-one");
        assert_eq!(http(moto.addr(), "GET", "/bucket-one").unwrap(), 200);
        moto.stop();
        assert!(http(moto.addr(), "GET", "/bucket-one").is_err());
        moto.restart();
        assert_eq!(http(moto.addr(), "GET", "/bucket-one").unwrap(), 200);
        assert_eq!(moto.env()["AWS_ENDPOINT_URL"], moto.endpoint());
    }
}
