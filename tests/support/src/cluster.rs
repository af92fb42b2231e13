//! [`Cluster`]: N real `strata` processes on loopback ports, each with its
//! own data directory, bootstrapped as one cluster, for tests that kill,
//! restart and add nodes.
//!
//! [`Cluster::start_in`] starts node `i` inside namespace `i` of a
//! [`Netns`] instead (`ip netns exec`, which execs: the child's pid is
//! strata's, so SIGKILL and SIGSTOP reach it), its API, Kafka and peer
//! listeners on the namespace's address `10.77.X.i`, and
//! [`Cluster::cut`]/[`Cluster::heal`] sever and restore its link. The
//! test's own clients, in the root namespace, reach the nodes at those
//! addresses; a server the nodes need (the bucket) must listen on the
//! bridge's address, [`Netns::bridge_addr`].

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::Netns;

/// How long a node may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The peer port of a node in a namespace: nothing else listens there.
const NAMESPACE_PEER_PORT: u16 = 7100;

/// A free loopback port (bound, then released for the node to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One node: its process (if running), its addresses and directory.
pub struct ClusterNode {
    pub id: u64,
    pub child: Option<Child>,
    /// HTTP and gRPC `host:port` (changes on every start).
    pub api_addr: String,
    pub kafka_addr: Option<String>,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    /// The address its listeners bind: `127.0.0.1`, or its namespace's.
    pub host: IpAddr,
    /// Its namespace in the cluster's [`Netns`] (1-based), if any.
    namespace: Option<usize>,
    /// Flags that place it in the cluster (`--bootstrap` or `--join`).
    cluster_args: Vec<String>,
    ready: Option<Receiver<(String, Option<String>)>>,
}

/// A cluster of `strata` processes, killed when dropped. The nodes log to
/// the test's stderr, each line prefixed `[n<id>]`, at `RUST_LOG=warn`, or
/// at `STRATA_TEST_LOG` when set (e.g. `STRATA_TEST_LOG=info,openraft=error`
/// to follow a failing test).
pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    pub nodes: Vec<ClusterNode>,
    /// Flags every node gets (object store, intervals, ...).
    common_args: Vec<String>,
    env: HashMap<String, String>,
    /// The namespaces the nodes run in ([`Cluster::start_in`]); dropped
    /// after the nodes are killed.
    netns: Option<Netns>,
}

impl Cluster {
    /// Starts nodes 1..=n of a new cluster under `root` and waits until each
    /// serves clients (which needs a quorum of the metadata group).
    pub fn start(
        bin: &Path,
        root: &Path,
        n: u64,
        common_args: &[&str],
        env: HashMap<String, String>,
    ) -> Cluster {
        Self::start_placed(bin, root, n, common_args, env, None)
    }

    /// As [`Cluster::start`], with nodes `1..=netns.len()`, node `i` inside
    /// namespace `i` listening on `netns.host(i)`. The cluster owns the
    /// namespaces: they go when it is dropped, after its nodes.
    pub fn start_in(
        bin: &Path,
        root: &Path,
        netns: Netns,
        common_args: &[&str],
        env: HashMap<String, String>,
    ) -> Cluster {
        let n = netns.len() as u64;
        Self::start_placed(bin, root, n, common_args, env, Some(netns))
    }

    fn start_placed(
        bin: &Path,
        root: &Path,
        n: u64,
        common_args: &[&str],
        env: HashMap<String, String>,
        netns: Option<Netns>,
    ) -> Cluster {
        // (id, namespace, host, peer address)
        let placed: Vec<(u64, Option<usize>, IpAddr, String)> = (1..=n)
            .map(|id| match &netns {
                Some(netns) => {
                    let host = netns.host(id as usize);
                    let peer = format!("{host}:{NAMESPACE_PEER_PORT}");
                    (id, Some(id as usize), host, peer)
                }
                None => {
                    let host = Ipv4Addr::LOCALHOST.into();
                    (id, None, host, format!("{host}:{}", free_port()))
                }
            })
            .collect();
        let bootstrap = placed
            .iter()
            .map(|(id, _, _, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            bin: bin.to_path_buf(),
            root: root.to_path_buf(),
            nodes: Vec::new(),
            common_args: common_args.iter().map(|s| s.to_string()).collect(),
            env,
            netns,
        };
        for (id, namespace, host, peer_addr) in placed {
            let node = ClusterNode {
                id,
                child: None,
                api_addr: String::new(),
                kafka_addr: None,
                peer_addr,
                data_dir: root.join(format!("node{id}")),
                host,
                namespace,
                cluster_args: vec!["--bootstrap".into(), bootstrap.clone()],
                ready: None,
            };
            cluster.nodes.push(node);
        }
        // All at once: none serves before a quorum is up.
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Adds node `id` that joins through node `via`'s peer listener, with
    /// `roles`; waits until it serves. Loopback clusters only: a node on
    /// loopback could not reach nodes in namespaces.
    pub fn join(&mut self, id: u64, via: u64, roles: &str) -> usize {
        assert!(
            self.netns.is_none(),
            "Cluster::join: a cluster in namespaces has no namespace for node {id}"
        );
        let via = self.node(via).peer_addr.clone();
        self.nodes.push(ClusterNode {
            id,
            child: None,
            api_addr: String::new(),
            kafka_addr: None,
            peer_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.root.join(format!("node{id}")),
            host: Ipv4Addr::LOCALHOST.into(),
            namespace: None,
            cluster_args: vec!["--join".into(), via, "--roles".into(), roles.into()],
            ready: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i);
        self.wait_ready(i);
        i
    }

    pub fn node(&self, id: u64) -> &ClusterNode {
        self.nodes.iter().find(|n| n.id == id).expect("known node")
    }

    fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut command = match (node.namespace, &self.netns) {
            (Some(ns), Some(netns)) => netns.command(ns, &self.bin),
            _ => Command::new(&self.bin),
        };
        let any_port = format!("{}:0", node.host);
        let mut child = command
            .args(["server", "--listen", &any_port, "--kafka-listen", &any_port])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args([
                "--node-id",
                &node.id.to_string(),
                "--peer-listen",
                &node.peer_addr,
            ])
            .args(&node.cluster_args)
            .args(&self.common_args)
            .envs(&self.env)
            .env(
                "RUST_LOG",
                std::env::var("STRATA_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata server");
        // The nodes' logs interleave on the test's stderr: each line says
        // whose it is.
        let stderr = child.stderr.take().expect("stderr");
        let id = node.id;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[n{id}] {line}");
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
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
        node.child = Some(child);
        node.ready = Some(rx);
    }

    fn wait_ready(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let rx = node.ready.take().expect("a node being started");
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((api, kafka)) => {
                node.api_addr = api;
                node.kafka_addr = kafka;
            }
            Err(_) => panic!("node {} did not start (its log is above)", node.id),
        }
    }

    /// The namespaces the nodes run in, if started with [`Cluster::start_in`].
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Cuts node `id` off the network (see [`Netns::cut`]): it keeps
    /// running, but no packet reaches it or leaves it until
    /// [`Cluster::heal`]. Panics unless the cluster runs in namespaces.
    pub fn cut(&mut self, id: u64) {
        let (netns, ns) = self.namespace_of(id);
        if let Err(e) = netns.cut(ns) {
            panic!("cut node {id} off the network: {e}");
        }
    }

    /// Reconnects node `id` after [`Cluster::cut`].
    pub fn heal(&mut self, id: u64) {
        let (netns, ns) = self.namespace_of(id);
        if let Err(e) = netns.heal(ns) {
            panic!("reconnect node {id}: {e}");
        }
    }

    fn namespace_of(&self, id: u64) -> (&Netns, usize) {
        match (&self.netns, self.node(id).namespace) {
            (Some(netns), Some(ns)) => (netns, ns),
            _ => panic!("node {id} is not in a network namespace (Cluster::start_in)"),
        }
    }

    /// SIGKILLs node `id`.
    pub fn kill(&mut self, id: u64) {
        let i = self.index(id);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes node `id` (SIGSTOP): to everyone else it is gone, yet it
    /// holds its sockets, its leases lapse, and it wakes up believing in a
    /// world that moved on.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// Wakes node `id` after [`Cluster::pause`] (SIGCONT).
    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, signal: i32) {
        if let Some(child) = &self.node(id).child {
            // SAFETY: signalling a child process we own by its pid.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// SIGTERMs node `id` and waits for it to exit.
    pub fn terminate(&mut self, id: u64) {
        let i = self.index(id);
        if let Some(mut child) = self.nodes[i].child.take() {
            // SAFETY: signalling a child process we own by its pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// SIGTERMs node `id` and drops it from the cluster (after it was
    /// removed from the metadata group).
    pub fn forget(&mut self, id: u64) {
        self.terminate(id);
        let i = self.index(id);
        self.nodes.remove(i);
    }

    /// Restarts node `id` (after [`Cluster::kill`]) and waits until it serves.
    pub fn restart(&mut self, id: u64) {
        let i = self.index(id);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Restarts every stopped node at once and waits until all serve.
    pub fn restart_all(&mut self) {
        let stopped: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_none())
            .collect();
        for &i in &stopped {
            self.spawn(i);
        }
        for &i in &stopped {
            self.wait_ready(i);
        }
    }

    /// The ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The nodes are gone: nothing holds the namespaces any more.
        self.netns.take();
    }
}
