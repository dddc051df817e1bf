//! Two real clusterd processes in network namespaces: a veth "crossover", a bridged
//! "external" LAN whose namespace also plays the ping node and the router that must
//! learn the service address from gratuitous ARP, and a pty pair joined by socat as the
//! serial cable. Every link can be cut. Fast profile: keepalive 200 ms, deadtime 1 s.
//!
//! Runs as root (namespaces, raw sockets). Needs Debian packages iproute2 and socat.
//! Every namespace and process a rig creates is removed when it drops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tandem_config::init::{InitOptions, new_cluster};
use tandem_config::{ApplianceConfig, Ipv4, Millis, Netmask};
use tandem_runtime::control::{Client, StatusJson};

const KEEPALIVE_MS: u64 = 200;
const DEADTIME_MS: u64 = 1000;
const EXT_PREFIX: &str = "10.77.0";
const PING_NODE: &str = "10.77.0.254";
const VIP: &str = "10.77.0.100";

static SEQ: AtomicU32 = AtomicU32::new(0);

fn need_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "netns rig needs `{tool}`: install the Debian package {package} (apt-get install -y --no-install-recommends {package})"
    );
}

fn sh(args: &[&str]) {
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

fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// One cluster config shared by all rigs (key generation is slow in debug builds).
fn config_text() -> String {
    static CFG: Mutex<Option<String>> = Mutex::new(None);
    let mut g = CFG.lock().unwrap();
    if let Some(c) = &*g {
        return c.clone();
    }
    let ip = |s: &str| Ipv4(s.parse().unwrap());
    let opts = InitOptions {
        addresses: [
            ip(&format!("{EXT_PREFIX}.1")),
            ip(&format!("{EXT_PREFIX}.2")),
        ],
        netmask: Netmask::from_prefix(24).unwrap(),
        gateway: ip(PING_NODE),
        ping_nodes: vec![ip(PING_NODE)],
        dns_servers: vec![ip(PING_NODE)],
        ..InitOptions::default()
    };
    let (mut cfg, _) = new_cluster(&opts).unwrap();
    cfg.heartbeat.keepalive = Millis(KEEPALIVE_MS);
    cfg.heartbeat.warntime = Millis(500);
    cfg.heartbeat.deadtime = Millis(DEADTIME_MS);
    cfg.heartbeat.initdead = Millis(2000);
    cfg.heartbeat.serial.baud = 115_200.try_into().unwrap();
    let text = cfg.to_toml();
    ApplianceConfig::from_toml(&text).expect("rig configuration is valid");
    *g = Some(text.clone());
    text
}

struct Node {
    ns: String,
    child: Option<Child>,
    control: PathBuf,
    tty: PathBuf,
    name: &'static str,
    log: PathBuf,
}

struct Rig {
    dir: PathBuf,
    lan: String,
    nodes: [Node; 2],
    socat: Option<Child>,
    internal: [Ipv4Addr; 2],
}

impl Rig {
    fn new() -> Rig {
        need_tool("ip", "iproute2");
        need_tool("socat", "socat");
        let id = format!(
            "tdm{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg_text = config_text();
        std::fs::write(dir.join("cluster.toml"), &cfg_text).unwrap();
        let cfg = ApplianceConfig::from_toml(&cfg_text).unwrap();
        let internal = [
            cfg.network.node1.internal_address.addr(),
            cfg.network.node2.internal_address.addr(),
        ];
        let node = |i: usize, name| Node {
            ns: format!("{id}n{i}"),
            child: None,
            control: dir.join(format!("{name}.sock")),
            tty: dir.join(format!("tty{i}")),
            name,
            log: dir.join(format!("{name}.log")),
        };
        let mut rig = Rig {
            lan: format!("{id}lan"),
            nodes: [node(1, "node1"), node(2, "node2")],
            dir,
            socat: None,
            internal,
        };
        rig.build();
        rig
    }

    fn build(&mut self) {
        let lan = self.lan.clone();
        let (n1, n2) = (self.nodes[0].ns.clone(), self.nodes[1].ns.clone());
        for ns in [&lan, &n1, &n2] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // External LAN: a bridge in the lan namespace, one port per node.
        sh(&["ip", "-n", &lan, "link", "add", "br0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &lan,
            "addr",
            "add",
            &format!("{PING_NODE}/24"),
            "dev",
            "br0",
        ]);
        sh(&["ip", "-n", &lan, "link", "set", "br0", "up"]);
        for (i, ns) in [&n1, &n2].into_iter().enumerate() {
            let port = format!("p{}", i + 1);
            sh(&[
                "ip", "-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", "ext",
                "netns", ns,
            ]);
            sh(&["ip", "-n", &lan, "link", "set", &port, "master", "br0"]);
            sh(&["ip", "-n", &lan, "link", "set", &port, "up"]);
            let a = format!("{EXT_PREFIX}.{}/24", i + 1);
            sh(&["ip", "-n", ns, "addr", "add", &a, "dev", "ext"]);
            sh(&["ip", "-n", ns, "link", "set", "ext", "up"]);
        }
        // Crossover.
        sh(&[
            "ip", "-n", &n1, "link", "add", "xo", "type", "veth", "peer", "name", "xo", "netns",
            &n2,
        ]);
        for (i, ns) in [&n1, &n2].into_iter().enumerate() {
            let a = format!("{}/24", self.internal[i]);
            sh(&["ip", "-n", ns, "addr", "add", &a, "dev", "xo"]);
            sh(&["ip", "-n", ns, "link", "set", "xo", "up"]);
        }
        // Serial cable: two ptys joined by socat (raw, no echo).
        let a = format!("PTY,link={},raw,echo=0", self.nodes[0].tty.display());
        let b = format!("PTY,link={},raw,echo=0", self.nodes[1].tty.display());
        let socat = Command::new("socat")
            .args([&a, &b])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.socat = Some(socat);
        let ttys = [self.nodes[0].tty.clone(), self.nodes[1].tty.clone()];
        wait_until("socat ptys", Duration::from_secs(5), || {
            ttys.iter().all(|t| t.exists())
        });
    }

    fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = File::create(&n.log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &n.ns, env!("CARGO_BIN_EXE_clusterd")])
            .args(["--node", n.name, "--config"])
            .arg(self.dir.join("cluster.toml"))
            .arg("--control")
            .arg(&n.control)
            .arg("--serial-device")
            .arg(&n.tty)
            .args([
                "--service-if",
                "ext",
                "--service-addr",
                &format!("{VIP}/24"),
                "--data-good",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        let sock = n.control.clone();
        wait_until("control socket", Duration::from_secs(10), || {
            Client::connect(&sock).is_ok()
        });
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // `ip netns exec` execs clusterd, so this PID is clusterd's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().unwrap().id()
    }

    fn status(&self, i: usize) -> StatusJson {
        let mut c = Client::connect(&self.nodes[i].control).unwrap();
        c.call("status", false).unwrap().status.unwrap()
    }

    fn role(&self, i: usize) -> String {
        Client::connect(&self.nodes[i].control)
            .ok()
            .and_then(|mut c| c.call("status", false).ok())
            .and_then(|r| r.status)
            .map_or_else(|| "unreachable".into(), |s| s.role)
    }

    fn events(&self, i: usize) -> Vec<(String, String)> {
        let mut c = Client::connect(&self.nodes[i].control).unwrap();
        let mut out = Vec::new();
        let mut r = c.call("events", false).unwrap();
        while let Some(e) = r.event {
            out.push((e.kind, e.text));
            r = c.read_response().unwrap();
        }
        out
    }

    fn wait_roles(&self, r0: &str, r1: &str, limit: Duration) -> Duration {
        wait_until(&format!("roles {r0}/{r1}"), limit, || {
            self.role(0) == r0 && self.role(1) == r1
        })
    }

    fn start_both(&mut self) {
        self.start(0);
        self.start(1);
        self.wait_roles("active", "passive", Duration::from_secs(10));
        // All paths up on the passive side.
        wait_until("all paths up", Duration::from_secs(5), || {
            self.status(1).paths.iter().all(|p| p.state == "up")
                && self.status(0).paths.iter().all(|p| p.state == "up")
        });
    }

    fn ns(&self, i: usize) -> &str {
        &self.nodes[i].ns
    }

    fn cut_internal(&self, cut: bool) {
        let s = if cut { "down" } else { "up" };
        sh(&["ip", "-n", self.ns(0), "link", "set", "xo", s]);
        sh(&["ip", "-n", self.ns(1), "link", "set", "xo", s]);
    }

    fn cut_external(&self, node: usize, cut: bool) {
        let s = if cut { "down" } else { "up" };
        sh(&[
            "ip",
            "-n",
            &self.lan,
            "link",
            "set",
            &format!("p{}", node + 1),
            s,
        ]);
    }

    fn cut_serial(&self, cut: bool) {
        let pid = i32::try_from(self.socat.as_ref().unwrap().id()).unwrap();
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let sig = if cut {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(pid, sig).unwrap();
    }

    fn has_vip(&self, i: usize) -> bool {
        sh_out(&["ip", "-n", self.ns(i), "-4", "addr", "show", "dev", "ext"]).contains(VIP)
    }

    fn mac(&self, i: usize) -> String {
        let out = sh_out(&["ip", "-n", self.ns(i), "link", "show", "dev", "ext"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// The lan namespace's (the router's) neighbour entry for the service address.
    fn lan_neigh_vip(&self) -> String {
        sh_out(&["ip", "-n", &self.lan, "neigh", "show", VIP])
    }

    /// Makes the lan namespace resolve the service address, as a router would.
    fn lan_learn_vip(&self) {
        in_netns(&self.lan, || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let _ = s.send_to(b"x", format!("{VIP}:9"));
        });
        wait_until(
            "router learns the service address",
            Duration::from_secs(5),
            || self.lan_neigh_vip().contains("lladdr"),
        );
    }

    fn dump_logs(&self) {
        for n in &self.nodes {
            if let Ok(l) = std::fs::read_to_string(&n.log) {
                eprintln!("---- {} ----\n{l}", n.name);
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if thread::panicking() {
            self.dump_logs();
        }
        for i in 0..2 {
            self.kill(i);
        }
        if let Some(mut s) = self.socat.take() {
            self.cut_serial_cont();
            let _ = s.kill();
            let _ = s.wait();
        }
        for ns in [&self.lan, &self.nodes[0].ns, &self.nodes[1].ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rig {
    fn cut_serial_cont(&self) {
        if let Some(s) = &self.socat
            && let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(s.id()).unwrap_or(0))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
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

fn event_kinds(ev: &[(String, String)]) -> Vec<&str> {
    ev.iter().map(|e| e.0.as_str()).collect()
}

#[test]
fn sigkill_of_active_moves_service_address_and_router_learns_it() {
    let mut rig = Rig::new();
    rig.start_both();
    wait_until("service address on node1", Duration::from_secs(3), || {
        rig.has_vip(0)
    });
    assert!(!rig.has_vip(1));
    rig.lan_learn_vip();
    let mac1 = rig.mac(0);
    let mac2 = rig.mac(1);
    assert!(rig.lan_neigh_vip().contains(&mac1));

    let t0 = Instant::now();
    rig.kill(0);
    wait_until(
        "node2 active with the address",
        Duration::from_secs(5),
        || rig.has_vip(1) && rig.role(1) == "active",
    );
    let up = t0.elapsed();
    wait_until("router sees node2's MAC", Duration::from_secs(5), || {
        rig.lan_neigh_vip().contains(&mac2)
    });
    let arp = t0.elapsed();
    eprintln!("takeover: address up after {up:?}, router updated after {arp:?}");
    // deadtime + one keepalive, plus slack for polling and a shared machine.
    let bound = Duration::from_millis(DEADTIME_MS + KEEPALIVE_MS + 600);
    assert!(arp <= bound, "takeover took {arp:?}, bound {bound:?}");
    let ev = rig.events(1);
    assert!(
        ev.iter()
            .any(|(k, t)| k == "role_changed" && t.contains("peer silent")),
        "{ev:?}"
    );
}

#[test]
fn each_single_path_cut_raises_event_without_failover() {
    let mut rig = Rig::new();
    rig.start_both();
    let cut = |r: &Rig, path: &str, c: bool| match path {
        "internal" => r.cut_internal(c),
        "external" => r.cut_external(1, c),
        _ => r.cut_serial(c),
    };
    for path in ["internal", "external", "serial"] {
        cut(&rig, path, true);
        wait_until(
            &format!("{path} down on node2"),
            Duration::from_secs(4),
            || {
                rig.status(1)
                    .paths
                    .iter()
                    .any(|p| p.path == path && p.state == "down")
            },
        );
        // Two more deadtimes: still no failover.
        thread::sleep(Duration::from_millis(2 * DEADTIME_MS));
        assert_eq!(
            (rig.role(0).as_str(), rig.role(1).as_str()),
            ("active", "passive")
        );
        let st = rig.status(1);
        assert!(
            st.warnings.iter().any(|w| w.contains(path)),
            "{:?}",
            st.warnings
        );
        cut(&rig, path, false);
        wait_until(&format!("{path} up again"), Duration::from_secs(4), || {
            rig.status(1).paths.iter().all(|p| p.state == "up")
        });
        let ev = rig.events(1);
        assert!(
            ev.iter()
                .any(|(k, t)| k == "path_down" && t.starts_with(path)),
            "{ev:?}"
        );
    }
    assert!(!event_kinds(&rig.events(1)).contains(&"peer_dead"));
    assert!(!event_kinds(&rig.events(0)).contains(&"peer_dead"));
}

#[test]
fn all_paths_cut_split_brain_is_detected_and_resolved() {
    let mut rig = Rig::new();
    rig.start_both();
    rig.cut_internal(true);
    rig.cut_external(1, true);
    rig.cut_serial(true);
    rig.wait_roles("active", "active", Duration::from_secs(4));
    rig.cut_internal(false);
    rig.cut_external(1, false);
    rig.cut_serial(false);
    // Equal ping reach once node2 is back on the LAN: node1 stays by policy.
    rig.wait_roles("active", "passive", Duration::from_secs(6));
    for i in 0..2 {
        let ev = rig.events(i);
        assert!(
            event_kinds(&ev).contains(&"split_brain"),
            "node{}: {ev:?}",
            i + 1
        );
    }
    wait_until("address only on node1", Duration::from_secs(3), || {
        rig.has_vip(0) && !rig.has_vip(1)
    });
}

#[test]
fn ping_node_rules() {
    let mut rig = Rig::new();
    rig.start_both();
    wait_until(
        "ping node reachable on both",
        Duration::from_secs(4),
        || (0..2).all(|i| rig.status(i).ping_nodes.iter().all(|p| p.reachable)),
    );
    // Both lose the ping node: nothing happens.
    sh(&[
        "ip",
        "-n",
        &rig.lan,
        "addr",
        "del",
        &format!("{PING_NODE}/24"),
        "dev",
        "br0",
    ]);
    wait_until("ping node lost on both", Duration::from_secs(4), || {
        (0..2).all(|i| rig.status(i).ping_nodes.iter().all(|p| !p.reachable))
    });
    thread::sleep(Duration::from_millis(2 * DEADTIME_MS));
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
    sh(&[
        "ip",
        "-n",
        &rig.lan,
        "addr",
        "add",
        &format!("{PING_NODE}/24"),
        "dev",
        "br0",
    ]);
    wait_until("ping node back", Duration::from_secs(4), || {
        (0..2).all(|i| rig.status(i).ping_nodes.iter().all(|p| p.reachable))
    });
    // The active alone loses it (its LAN port goes down): hand over to node2.
    rig.cut_external(0, true);
    rig.wait_roles("passive", "active", Duration::from_secs(6));
    let ev = rig.events(0);
    assert!(
        ev.iter()
            .any(|(k, t)| k == "role_changed" && t.contains("ping node")),
        "{ev:?}"
    );
    assert!(rig.has_vip(1));
    assert!(!rig.has_vip(0));
}

#[test]
fn forged_garbled_and_replayed_frames_are_counted_and_change_nothing() {
    let mut rig = Rig::new();
    rig.start_both();
    let node2 = format!("{EXT_PREFIX}.2:694");
    // Capture node1's real heartbeats on its LAN port for a second.
    let captured = in_netns(&rig.lan, || capture_udp("p1", 694, Duration::from_secs(1)));
    assert!(captured.len() >= 3, "captured {}", captured.len());
    let before = rig.status(1).counters;
    let key = tandem_proto::ClusterKey::new(b"not the cluster key").unwrap();
    let forged = tandem_proto::encode(
        &key,
        &tandem_proto::Frame {
            sender: tandem_proto::NodeId::Node1,
            path: tandem_proto::PathId::External,
            role: tandem_proto::Role::Passive,
            resources: tandem_proto::ResourceState::Stopped,
            data_good: true,
            want_switchover: false,
            handover: true,
            ping_total: 1,
            ping_reach: 0,
            generation: u64::MAX,
            sequence: 1,
            config_digest: [0; 32],
        },
    );
    let caps = captured.clone();
    in_netns(&rig.lan, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..20 {
            for f in &caps {
                s.send_to(f, &node2).unwrap();
            }
            s.send_to(&forged, &node2).unwrap();
            s.send_to(b"garbage that is not a frame", &node2).unwrap();
            s.send_to(&[0u8; 1400], &node2).unwrap();
            thread::sleep(Duration::from_millis(50));
        }
    });
    let after = rig.status(1).counters;
    assert!(
        after.replayed >= before.replayed + 20,
        "{before:?} {after:?}"
    );
    assert!(after.bad_mac >= before.bad_mac + 20, "{before:?} {after:?}");
    assert!(
        after.malformed >= before.malformed + 40,
        "{before:?} {after:?}"
    );
    thread::sleep(Duration::from_millis(DEADTIME_MS));
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
    // Only the start-up change (starting -> passive).
    let changes = rig
        .events(1)
        .iter()
        .filter(|(k, _)| k == "role_changed")
        .count();
    assert_eq!(changes, 1);
    // An unknown control request is refused clearly and counted.
    let mut c = Client::connect(&rig.nodes[1].control).unwrap();
    let r = c.call("reboot-everything", false).unwrap();
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("unknown request"));
    assert_eq!(rig.status(1).counters.bad_requests, 1);
}

/// Collects the UDP payloads to `port` seen on interface `ifname` (packet(7) socket).
fn capture_udp(ifname: &str, port: u16, dur: Duration) -> Vec<Vec<u8>> {
    use rustix::net::{AddressFamily, RecvFlags, SocketType, eth};
    // ETH_P_ALL: protocol-specific taps run after the bridge has taken forwarded frames.
    let fd = rustix::net::socket(AddressFamily::PACKET, SocketType::RAW, Some(eth::ALL)).unwrap();
    // The port must exist; capture is namespace-wide (unbound packet socket).
    rustix::net::netdevice::name_to_index(&fd, ifname).unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(100)),
    )
    .unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < dur {
        let Ok((_, n, addr)) = rustix::net::recvfrom(&fd, &mut buf[..], RecvFlags::empty()) else {
            continue;
        };
        // A bridged frame shows on both ports; duplicates only make more replays.
        let _ = addr;
        let f = &buf[..n.min(buf.len())];
        if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
            continue;
        }
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let udp = &f[14 + ihl..];
        if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
            continue;
        }
        // Frames from node1 only (towards node2).
        if f[14 + 12..14 + 16] != [10, 77, 0, 1] {
            continue;
        }
        out.push(udp[8..].to_vec());
    }
    out
}

#[test]
fn switchover_both_ways_moves_the_address() {
    let mut rig = Rig::new();
    rig.start_both();
    wait_until("address on node1", Duration::from_secs(3), || {
        rig.has_vip(0)
    });
    let tandem = |i: usize, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--control")
            .arg(&rig.nodes[i].control)
            .args(args)
            .output()
            .unwrap()
    };
    // Asked on the active node.
    let out = tandem(0, &["switchover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = rig.wait_roles("passive", "active", Duration::from_secs(5));
    eprintln!("switchover node1 -> node2 in {took:?}");
    assert!(rig.has_vip(1) && !rig.has_vip(0));
    // Asked on the passive node (node1 now).
    let out = tandem(0, &["switchover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = rig.wait_roles("active", "passive", Duration::from_secs(5));
    eprintln!("switchover node2 -> node1 in {took:?}");
    wait_until("address back on node1", Duration::from_secs(3), || {
        rig.has_vip(0) && !rig.has_vip(1)
    });
    // Human and JSON status from the CLI.
    let out = tandem(1, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node2 (passive)"), "{text}");
    assert!(text.contains("serial"), "{text}");
    let out = tandem(1, &["status", "--json"]);
    let s: StatusJson = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s.peer.role.as_deref(), Some("active"));
    // Order on node2: release happened before node1 acquired (node2's own log).
    let ev = rig.events(1);
    let texts: Vec<_> = ev
        .iter()
        .filter(|(k, _)| k == "role_changed")
        .map(|e| e.1.clone())
        .collect();
    assert!(
        texts.iter().any(|t| t.starts_with("active -> releasing")),
        "{texts:?}"
    );
}

#[test]
fn restart_of_passive_leaves_active_undisturbed_and_serial_eof_does_not_spin() {
    let mut rig = Rig::new();
    rig.start_both();
    let changes = |r: &Rig| {
        r.events(0)
            .iter()
            .filter(|(k, _)| k == "role_changed")
            .count()
    };
    let before = changes(&rig);
    rig.kill(1);
    thread::sleep(Duration::from_millis(300));
    rig.start(1);
    rig.wait_roles("active", "passive", Duration::from_secs(5));
    wait_until("node1 notices the restart", Duration::from_secs(3), || {
        event_kinds(&rig.events(0)).contains(&"peer_restarted")
    });
    assert_eq!(changes(&rig), before);

    // Kill the cable relay outright (hang-up on both ptys): readers must wait, not spin.
    let mut s = rig.socat.take().unwrap();
    s.kill().unwrap();
    s.wait().unwrap();
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        let f: Vec<&str> = after.split_whitespace().collect();
        // utime and stime (fields 14 and 15; 12 and 13 after the command name).
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let pids = [rig.pid(0), rig.pid(1)];
    let c0: Vec<u64> = pids.iter().map(|p| cpu(*p)).collect();
    thread::sleep(Duration::from_secs(3));
    let c1: Vec<u64> = pids.iter().map(|p| cpu(*p)).collect();
    for i in 0..2 {
        let ticks = c1[i] - c0[i];
        // 3 s at 100 ticks/s: a spinning reader would burn ~300 ticks.
        assert!(ticks < 60, "node{} used {ticks} ticks in 3 s", i + 1);
    }
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
    let rss_kib = |pid: u32| -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        st.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    eprintln!(
        "clusterd RSS (debug build): node1 {} KiB, node2 {} KiB; cpu ticks over 3 s: {:?}",
        rss_kib(pids[0]),
        rss_kib(pids[1]),
        c1.iter().zip(&c0).map(|(a, b)| a - b).collect::<Vec<_>>()
    );
}
