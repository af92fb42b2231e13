//! [`Netns`]: network namespaces a test creates to cut nodes off the network.
//!
//! One [`Netns`] is a bridge in the root namespace with the address
//! `10.77.X.254/24` and N namespaces, namespace `i` (1-based) holding
//! `lo` and an `eth0` with `10.77.X.i/24`, the far end of a veth pair whose
//! near end is a port of the bridge. Processes started inside (see
//! [`Netns::command`]) reach each other and the root namespace through the
//! bridge; the root namespace reaches them at their addresses.
//!
//! [`Netns::cut`] sets node `i`'s bridge port down: its packets go nowhere,
//! in either direction, and nothing tells its peers (no reset, no refused
//! connection), as when a cable is pulled; established connections hang and
//! new ones time out. [`Netns::heal`] sets it up again, and open connections
//! carry on where TCP's retransmissions pick them up.
//!
//! Names are `stn<pid>x<k>` followed by `b` (the bridge), `v<i>` (a veth)
//! or `n<i>` (a namespace): under the 15 characters of an interface name,
//! unique per process and per instance. Creating one first deletes what
//! processes that are gone left behind (a test killed before its `Drop`),
//! and picks a subnet `X` no address or route of the root namespace uses,
//! under a file lock so that parallel test processes pick different ones.
//! Dropping it deletes everything it made.
//!
//! This needs root (`CAP_NET_ADMIN`, and `CAP_SYS_ADMIN` for `ip netns`)
//! and iproute2's `ip` (`scripts/test.sh` installs it).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Every name this module gives starts with this.
const PREFIX: &str = "stn";
/// The first two octets of every subnet.
const NET: [u8; 2] = [10, 77];
/// The bridge's host part in each subnet.
const BRIDGE_HOST: u8 = 254;
/// At most this many namespaces per instance (`v<i>` keeps names short).
pub const MAX_NODES: usize = 9;

/// An `ip` command that failed: the command line and what it said.
#[derive(Debug, Clone)]
pub struct NetnsError {
    /// The command line, e.g. `/usr/sbin/ip netns add stn42x0n1`.
    pub command: String,
    /// Its exit status and stderr, or why it could not run.
    pub message: String,
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.message)
    }
}

impl std::error::Error for NetnsError {}

/// The `ip` program: where iproute2 puts it, else whatever `PATH` finds.
fn ip_program() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("ip")
}

/// Runs `ip args...`; returns its stdout, or the command and its stderr.
fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let program = ip_program();
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsError {
            command: command.clone(),
            message: format!("cannot run it: {e}"),
        })?;
    if !out.status.success() {
        return Err(NetnsError {
            command,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pid in a name this module gave (`stn<pid>x...`), if it is one.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, rest) = rest.split_once('x')?;
    // `<k>b`, `<k>v<i>` or `<k>n<i>`.
    let k = rest
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .strip_suffix(['b', 'v', 'n'])?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether the process that gave `name` is gone (its leftovers may go).
fn stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Deletes interfaces and namespaces left by processes that are gone.
fn remove_stale() -> Result<(), NetnsError> {
    for line in ip(&["-o", "link", "show"])?.lines() {
        // `12: stn42x0v1@if11: <BROADCAST,...`
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if stale(name) {
            // Deleting one end of a veth deletes the other: it may be gone.
            if let Err(e) = ip(&["link", "del", name])
                && !e.message.contains("Cannot find device")
            {
                return Err(e);
            }
            eprintln!("netns: deleted {name}, left by a test process that is gone");
        }
    }
    for line in ip(&["netns", "list"])?.lines() {
        // `stn42x0n1 (id: 3)` or `stn42x0n1`
        let name = line.split_whitespace().next().unwrap_or_default();
        if stale(name) {
            ip(&["netns", "del", name])?;
            eprintln!("netns: deleted namespace {name}, left by a test process that is gone");
        }
    }
    Ok(())
}

/// A third octet no address or route of the root namespace uses yet,
/// starting from `start`.
fn free_subnet(start: u8) -> Result<u8, NetnsError> {
    let used = ip(&["-4", "-o", "addr", "show"])? + &ip(&["-4", "route", "show", "table", "all"])?;
    (0..=255u8)
        .map(|k| start.wrapping_add(k))
        .find(|x| !used.contains(&format!("{}.{}.{x}.", NET[0], NET[1])))
        .ok_or_else(|| NetnsError {
            command: "ip -4 addr show; ip -4 route show table all".into(),
            message: format!("every subnet {}.{}.X.0/24 is in use", NET[0], NET[1]),
        })
}

/// A bridge and N namespaces, deleted when dropped. See the module docs.
pub struct Netns {
    subnet: u8,
    bridge: String,
    /// Per node (index `i - 1`): its namespace and the near end of its veth.
    nodes: Vec<(String, String)>,
    /// What was made so far, for `Drop` (creation may fail half-way).
    made_bridge: bool,
    made_veths: Vec<String>,
    made_namespaces: Vec<String>,
}

impl Netns {
    /// Creates the bridge and `n` namespaces (1 ≤ n ≤ [`MAX_NODES`]). On
    /// error, whatever was made is deleted again and the error names the
    /// `ip` command that failed, with its stderr.
    pub fn create(n: usize) -> Result<Netns, NetnsError> {
        assert!(
            (1..=MAX_NODES).contains(&n),
            "1 to {MAX_NODES} namespaces, not {n}"
        );
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed) % 100;
        let pid = std::process::id();
        let base = format!("{PREFIX}{pid}x{k}");
        // Parallel test processes: one at a time removes leftovers and picks a subnet.
        let lock_path = std::env::temp_dir().join("strata-netns.lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| NetnsError {
            command: format!("create {}", lock_path.display()),
            message: e.to_string(),
        })?;
        lock.lock().map_err(|e| NetnsError {
            command: format!("lock {}", lock_path.display()),
            message: e.to_string(),
        })?;
        remove_stale()?;
        let subnet = free_subnet((pid.wrapping_mul(31).wrapping_add(k * 7) % 250) as u8)?;
        let mut netns = Netns {
            subnet,
            bridge: format!("{base}b"),
            nodes: (1..=n)
                .map(|i| (format!("{base}n{i}"), format!("{base}v{i}")))
                .collect(),
            made_bridge: false,
            made_veths: Vec::new(),
            made_namespaces: Vec::new(),
        };
        let bridge = netns.bridge.clone();
        let bridge_cidr = format!("{}/24", netns.bridge_addr());
        // Bridged packets skip iptables where br_netfilter is loaded: a
        // host's FORWARD policy must not decide whether nodes reach each other.
        ip(&[
            "link",
            "add",
            &bridge,
            "type",
            "bridge",
            "nf_call_iptables",
            "0",
        ])?;
        netns.made_bridge = true;
        ip(&["addr", "add", &bridge_cidr, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        // The subnet is taken once the bridge has its address.
        drop(lock);
        for i in 1..=n {
            let (ns, veth) = netns.nodes[i - 1].clone();
            let cidr = format!("{}/24", netns.host(i));
            ip(&["netns", "add", &ns])?;
            netns.made_namespaces.push(ns.clone());
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            netns.made_veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(netns)
    }

    /// How many namespaces.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none (never, once created).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The bridge's address (`10.77.X.254`): where processes inside the
    /// namespaces reach a server of the root namespace bound to it.
    pub fn bridge_addr(&self) -> IpAddr {
        Ipv4Addr::new(NET[0], NET[1], self.subnet, BRIDGE_HOST).into()
    }

    /// Namespace `i`'s address (`10.77.X.i`), for `i` in `1..=len()`.
    pub fn host(&self, i: usize) -> IpAddr {
        self.check(i);
        Ipv4Addr::new(NET[0], NET[1], self.subnet, i as u8).into()
    }

    /// Namespace `i`'s name.
    pub fn namespace(&self, i: usize) -> &str {
        self.check(i);
        &self.nodes[i - 1].0
    }

    /// A command that runs `program` inside namespace `i`. `ip netns exec`
    /// execs `program` (no fork), so the child's pid is the program's and
    /// signals sent to it reach the program.
    pub fn command(&self, i: usize, program: &Path) -> Command {
        let mut cmd = Command::new(ip_program());
        cmd.args(["netns", "exec", self.namespace(i)]).arg(program);
        cmd
    }

    /// Cuts namespace `i` off the network: its bridge port goes down.
    pub fn cut(&self, i: usize) -> Result<(), NetnsError> {
        self.check(i);
        ip(&["link", "set", &self.nodes[i - 1].1, "down"]).map(drop)
    }

    /// Undoes [`cut`](Self::cut): its bridge port comes up again.
    pub fn heal(&self, i: usize) -> Result<(), NetnsError> {
        self.check(i);
        ip(&["link", "set", &self.nodes[i - 1].1, "up"]).map(drop)
    }

    fn check(&self, i: usize) {
        assert!(
            (1..=self.nodes.len()).contains(&i),
            "namespace {i} of 1..={}",
            self.nodes.len()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Veths first: a namespace a process still holds would keep its end.
        let mut links: Vec<String> = self.made_veths.drain(..).collect();
        if self.made_bridge {
            links.push(self.bridge.clone());
        }
        for link in links {
            if let Err(e) = ip(&["link", "del", &link]) {
                eprintln!("warning: netns cleanup: {e}");
            }
        }
        for ns in self.made_namespaces.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("warning: netns cleanup: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    #[test]
    fn names_this_module_gives_are_recognised() {
        assert_eq!(owner_pid("stn42x0b"), Some(42));
        assert_eq!(owner_pid("stn42x13v2"), Some(42));
        assert_eq!(owner_pid("stn4194304x99n9"), Some(4_194_304));
        assert_eq!(owner_pid("stn42x0"), None);
        assert_eq!(owner_pid("stn42xb"), None);
        assert_eq!(owner_pid("stnabcx0b"), None);
        assert_eq!(owner_pid("eth0"), None);
        assert!("stn4194304x99v9".len() <= 15);
    }

    /// Namespace 1 serves TCP to the root namespace; a cut stops it, a
    /// heal brings it back; the drop removes everything.
    #[test]
    fn cut_and_heal_a_namespace() {
        let netns = match Netns::create(2) {
            Ok(netns) => netns,
            Err(e) => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "cannot create network namespaces (root needed): {e}"
                );
                eprintln!("!!! SKIPPED cut_and_heal_a_namespace: {e}");
                return;
            }
        };
        let names = (netns.bridge.clone(), netns.namespace(1).to_string());
        let addr = SocketAddr::new(netns.host(1), 7000);
        // A one-shot echo server inside namespace 1.
        let script = format!(
            "import socket\ns=socket.socket()\ns.bind(('{}',7000))\ns.listen()\n\
             for _ in range(2):\n  c,_=s.accept()\n  c.sendall(c.recv(5))\n  c.close()",
            netns.host(1)
        );
        let mut server = netns
            .command(1, Path::new("python3"))
            .args(["-c", &script])
            .spawn()
            .expect("python3 in namespace 1");
        let echo = || -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"hello")?;
            let mut back = vec![0u8; 5];
            s.read_exact(&mut back)?;
            Ok(back)
        };
        let mut first = Err(std::io::Error::other("not tried"));
        for _ in 0..50 {
            first = echo();
            if first.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(first.expect("echo before the cut"), b"hello");
        netns.cut(1).unwrap();
        let err = echo().expect_err("reached a cut namespace");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            "{err:?}"
        );
        netns.heal(1).unwrap();
        assert_eq!(echo().expect("echo after the heal"), b"hello");
        let _ = server.kill();
        let _ = server.wait();
        drop(netns);
        assert!(!ip(&["-o", "link", "show"]).unwrap().contains(&names.0));
        assert!(!ip(&["netns", "list"]).unwrap().contains(&names.1));
    }
}
