//! A small network of namespaces for the packet filter and SSH tests: an external LAN
//! (a bridge in its own namespace, 192.0.2.0/24), node1 and node2 on it (`ext`, the
//! configuration's addresses 192.0.2.11 and .12) joined by a veth crossover (`xo`,
//! 192.168.255.1 and .2), an outsider host on the LAN (192.0.2.50) that routes the
//! crossover subnet through node1, and an admin host (192.0.2.70, in the admin network
//! 192.0.2.64/28). Everything it creates is removed when it drops; no packet leaves
//! its namespaces.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness shared by several targets: a failed unwrap is a failed run"
)]

use std::fs::File;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use tandem_config::ApplianceConfig;
use tandem_config::init::{InitOptions, new_cluster};

pub const NODE1_EXT: &str = "192.0.2.11";
pub const NODE2_EXT: &str = "192.0.2.12";
pub const NODE1_INT: &str = "192.168.255.1";
pub const NODE2_INT: &str = "192.168.255.2";
pub const OUTSIDER: &str = "192.0.2.50";
pub const ADMIN: &str = "192.0.2.70";
pub const ADMIN_NET: &str = "192.0.2.64/28";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn need_tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "this test needs {path}: install the Debian package {package} (cargo xtask test does)"
    );
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cluster configuration with the lab's addresses (the defaults of a new cluster)
/// and the admin network.
pub fn config() -> ApplianceConfig {
    let (mut cfg, _) = new_cluster(&InitOptions::default()).unwrap();
    cfg.access.admin_networks = vec![ADMIN_NET.parse().unwrap()];
    assert_eq!(cfg.network.node1.address.to_string(), NODE1_EXT);
    assert_eq!(cfg.network.node2.internal_address.to_string(), NODE2_INT);
    cfg
}

pub struct Lab {
    pub dir: PathBuf,
    pub lan: String,
    pub node1: String,
    pub node2: String,
    pub outsider: String,
    pub admin: String,
}

impl Lab {
    pub fn new(dir: &Path) -> Lab {
        need_tool("/usr/sbin/ip", "iproute2");
        let id = format!(
            "tfw{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            dir: dir.to_owned(),
            lan: format!("{id}lan"),
            node1: format!("{id}n1"),
            node2: format!("{id}n2"),
            outsider: format!("{id}out"),
            admin: format!("{id}adm"),
        };
        for ns in lab.all() {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let lan = &lab.lan;
        sh(&["ip", "-n", lan, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", lan, "link", "set", "br0", "up"]);
        for (i, (ns, addr, ifname)) in [
            (&lab.node1, NODE1_EXT, "ext"),
            (&lab.node2, NODE2_EXT, "ext"),
            (&lab.outsider, OUTSIDER, "eth0"),
            (&lab.admin, ADMIN, "eth0"),
        ]
        .into_iter()
        .enumerate()
        {
            let port = format!("p{i}");
            sh(&[
                "ip", "-n", lan, "link", "add", &port, "type", "veth", "peer", "name", ifname,
                "netns", ns,
            ]);
            sh(&["ip", "-n", lan, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", lan, "link", "set", &port, "up"]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        sh(&[
            "ip", "-n", &lab.node1, "link", "add", "xo", "type", "veth", "peer", "name", "xo",
            "netns", &lab.node2,
        ]);
        for (ns, addr) in [(&lab.node1, NODE1_INT), (&lab.node2, NODE2_INT)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "xo",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "xo", "up"]);
        }
        // The hosts of the issue: they route the crossover subnet through node1.
        for ns in [&lab.outsider, &lab.admin] {
            sh(&[
                "ip",
                "-n",
                ns,
                "route",
                "add",
                "192.168.255.0/24",
                "via",
                NODE1_EXT,
            ]);
        }
        lab
    }

    fn all(&self) -> [&String; 5] {
        [
            &self.lan,
            &self.node1,
            &self.node2,
            &self.outsider,
            &self.admin,
        ]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.all() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/run/netns").join(ns);
    thread::spawn(move || {
        let fd = File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Whether a TCP connection from namespace `ns` to `addr` is completed within a second
/// (a listener's backlog completes it without accept).
pub fn tcp_reaches(ns: &str, addr: &str, port: u16) -> bool {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    in_netns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
    })
}

/// Whether a datagram from namespace `ns` to `addr:port` reaches `receiver` within a
/// second.
pub fn udp_reaches(ns: &str, addr: &str, port: u16, receiver: &UdpSocket) -> bool {
    let token = format!("probe-{ns}-{}", SEQ.fetch_add(1, Ordering::SeqCst));
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let t = token.clone();
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(t.as_bytes(), to).unwrap();
    });
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 128];
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = receiver.recv_from(&mut buf)
            && buf[..n] == *token.as_bytes()
        {
            return true;
        }
    }
    false
}
