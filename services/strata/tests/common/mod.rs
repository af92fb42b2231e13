//! Starts the real `strata` binary on a loopback port for end-to-end tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_test_support::MotoServer;

pub const BIN: &str = env!("CARGO_BIN_EXE_strata");

/// A running `strata server`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The Kafka listener's address (`host:port`), unless started with `--kafka-listen off`.
    pub kafka_addr: Option<String>,
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts a server on an ephemeral port over `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// Starts a server on `listen` over `data_dir` and waits until it listens.
    /// The Kafka listener takes an ephemeral port too unless `extra` sets one.
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(listen, data_dir, extra, &[])
    }

    /// As [`Server::start_on`], with extra environment variables.
    pub fn start_with_env(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Server {
        let kafka_default: &[&str] = if extra.contains(&"--kafka-listen") {
            &[]
        } else {
            &["--kafka-listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(BIN)
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(kafka_default)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strata server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The Kafka line, if any, comes before the HTTP line.
            let mut kafka = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("strata kafka listening on ") {
                    kafka = Some(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("strata listening on http://") {
                    let _ = tx.send((addr.trim().to_string(), kafka.take()));
                }
            }
        });
        let (addr, kafka_addr) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "strata server on {listen} did not start (exit status {status:?}; its log is above)"
                );
            }
        };
        Server {
            child,
            addr,
            kafka_addr,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for a clean exit; returns the exit status success.
    pub fn terminate(mut self) -> bool {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to process `pid` (a child the test started).
pub fn sigterm(pid: u32) {
    // SAFETY: kill(2) with a pid of the test's own child; no memory involved.
    unsafe { libc_kill(pid as i32, 15) };
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Runs the CLI with `args` against `server`; returns (success, stdout, stderr).
pub fn cli(server: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .env("STRATA_SERVER", server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strata cli");
    if let Some(mut input) = child.stdin.take()
        && let Some(text) = stdin
    {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("cli output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a program run by [`run_bounded`] did.
pub struct BoundedOutput {
    /// The exit status; `None` when it was killed for running too long.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl BoundedOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Runs `cmd` in a process group of its own, capturing stdout and stderr. If it
/// is still running after `timeout`, the whole group (the program and anything
/// it started) is SIGKILLed and `status` is `None`; the group is also killed
/// once the program exits, so nothing it started outlives it.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> BoundedOutput {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let group = child.id() as i32;
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pipe(Box::new(child.stdout.take().expect("stdout")));
    let err = pipe(Box::new(child.stderr.take().expect("stderr")));
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => break None,
        }
    };
    // SAFETY: signalling the process group this function created.
    unsafe { libc_kill(-group, 9) };
    if status.is_none() {
        let _ = child.wait();
    }
    BoundedOutput {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// A moto S3 server with a bucket `strata`, for the tests that need a real
/// S3-compatible server; `None` (the test skips, saying so) only outside CI
/// when moto is not installed: with `CI=true` a missing moto fails the test.
pub fn moto() -> Option<MotoServer> {
    moto_on(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// As [`moto`], with the server listening on `host`.
pub fn moto_on(host: std::net::IpAddr) -> Option<MotoServer> {
    if !MotoServer::available() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "moto_server is missing (scripts/test.sh installs it)"
        );
        eprintln!("!!! SKIPPED: moto_server is not installed (scripts/test.sh installs it)");
        return None;
    }
    let mut moto = MotoServer::start_on(host);
    moto.create_bucket("strata");
    Some(moto)
}

/// Whether kcat runs; with `CI=true` a missing one fails the test,
/// elsewhere `skipped` is said loudly and `false` returned.
pub fn kcat(skipped: &str) -> bool {
    let ok = Command::new("kcat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    tool_present(ok, "kcat", skipped)
}

/// Whether Python's confluent-kafka (librdkafka) can be imported; with
/// `CI=true` a missing one fails the test, elsewhere `skipped` (what the
/// test leaves out without it) is said loudly and `false` returned.
pub fn confluent_kafka(skipped: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    tool_present(ok, "confluent-kafka", skipped)
}

/// `ok`, after failing the test with `CI=true` when `tool` is missing, or
/// saying loudly that `skipped` is left out elsewhere.
fn tool_present(ok: bool, tool: &str, skipped: &str) -> bool {
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "{tool} is missing (scripts/test.sh installs it)"
        );
        eprintln!("!!! SKIPPED {skipped}: {tool} is not installed (scripts/test.sh installs it)");
    }
    ok
}
