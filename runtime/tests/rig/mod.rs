//! The netns rig shared by the integration tests and the takeover benchmark: two node
//! namespaces joined by a veth "crossover", a bridged "external" LAN in a third
//! namespace that also plays the ping node and the router, and a pty pair joined by
//! socat as the serial cable. Everything it creates is removed when it drops.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness shared by several targets: a failed unwrap is a failed run"
)]

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tandem_api::{Client, StatusJson};
use tandem_config::init::{InitOptions, new_cluster};
use tandem_config::{ApplianceConfig, Ipv4, Millis, Netmask};

pub const KEEPALIVE_MS: u64 = 200;
pub const DEADTIME_MS: u64 = 1000;
pub const EXT_PREFIX: &str = "10.77.0";
pub const PING_NODE: &str = "10.77.0.254";
pub const VIP: &str = "10.77.0.100";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn need_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "netns rig needs `{tool}`: install the Debian package {package} (apt-get install -y --no-install-recommends {package})"
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

pub fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
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
pub fn config_text() -> String {
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

pub struct Node {
    pub ns: String,
    pub child: Option<Child>,
    pub control: PathBuf,
    pub tty: PathBuf,
    /// clusterd's state directory (the boot generation).
    pub state: PathBuf,
    pub name: &'static str,
    pub log: PathBuf,
}

pub struct Rig {
    pub dir: PathBuf,
    pub lan: String,
    pub nodes: [Node; 2],
    pub socat: Option<Child>,
    pub internal: [Ipv4Addr; 2],
}

impl Rig {
    pub fn new() -> Rig {
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
            state: dir.join(format!("{name}-state")),
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

    pub fn build(&mut self) {
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

    pub fn start(&mut self, i: usize) {
        let cfg = self.dir.join("cluster.toml");
        self.start_with_config(i, &cfg);
    }

    /// Node `i`'s configuration store (created with the rig's configuration by
    /// [`Rig::start_with_store`]).
    pub fn store(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}-store", self.nodes[i].name))
    }

    /// Starts node `i` as an installed node runs: the committed configuration of its
    /// store, and the store for configuration changes (`--store`). The store is made
    /// on the first start and kept across restarts.
    pub fn start_with_store(&mut self, i: usize) {
        let store = self.store(i);
        if !store.join("config.toml").exists() {
            let text = std::fs::read_to_string(self.dir.join("cluster.toml")).unwrap();
            let cfg = ApplianceConfig::from_toml(&text).unwrap();
            let st = tandem_config::Store::open(&store).unwrap();
            st.stage(&cfg).unwrap();
            st.commit().unwrap();
            std::fs::write(store.join("node"), self.nodes[i].name).unwrap();
        }
        let config = store.join("config.toml");
        self.spawn(i, &config, &[OsStr::new("--store"), store.as_os_str()]);
    }

    pub fn start_with_config(&mut self, i: usize, config: &Path) {
        self.spawn(i, config, &[]);
    }

    /// As [`Rig::start_with_config`], with more clusterd options.
    pub fn start_with_args(&mut self, i: usize, config: &Path, extra: &[&str]) {
        let extra: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
        self.spawn(i, config, &extra);
    }

    fn spawn(&mut self, i: usize, config: &Path, extra: &[&OsStr]) {
        let n = &mut self.nodes[i];
        let log = File::create(&n.log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &n.ns, env!("CARGO_BIN_EXE_clusterd")])
            .args(["--node", n.name, "--config"])
            .arg(config)
            .arg("--control")
            .arg(&n.control)
            .arg("--serial-device")
            .arg(&n.tty)
            .arg("--state-dir")
            .arg(&n.state)
            .args([
                "--service-if",
                "ext",
                "--service-addr",
                &format!("{VIP}/24"),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        let sock = n.control.clone();
        // Answering, not only accepting: a request right after this finds it ready.
        wait_until("control socket", Duration::from_secs(10), || {
            Client::connect(&sock)
                .and_then(|mut c| c.call(&tandem_api::Request::Status))
                .is_ok()
        });
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            // `ip netns exec` execs clusterd, so this PID is clusterd's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().unwrap().id()
    }

    pub fn status(&self, i: usize) -> StatusJson {
        let mut c = Client::connect(&self.nodes[i].control).unwrap();
        c.status().unwrap()
    }

    pub fn role(&self, i: usize) -> String {
        Client::connect(&self.nodes[i].control)
            .ok()
            .and_then(|mut c| c.status().ok())
            .map_or_else(|| "unreachable".into(), |s| s.role)
    }

    pub fn events(&self, i: usize) -> Vec<(String, String)> {
        let mut c = Client::connect(&self.nodes[i].control).unwrap();
        c.events(usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.text))
            .collect()
    }

    pub fn wait_roles(&self, r0: &str, r1: &str, limit: Duration) -> Duration {
        wait_until(&format!("roles {r0}/{r1}"), limit, || {
            self.role(0) == r0 && self.role(1) == r1
        })
    }

    pub fn start_both(&mut self) {
        self.start(0);
        self.start(1);
        self.wait_roles("active", "passive", Duration::from_secs(10));
        // All paths up on the passive side.
        wait_until("all paths up", Duration::from_secs(5), || {
            self.status(1).paths.iter().all(|p| p.state == "up")
                && self.status(0).paths.iter().all(|p| p.state == "up")
        });
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i].ns
    }

    pub fn cut_internal(&self, cut: bool) {
        let s = if cut { "down" } else { "up" };
        sh(&["ip", "-n", self.ns(0), "link", "set", "xo", s]);
        sh(&["ip", "-n", self.ns(1), "link", "set", "xo", s]);
    }

    pub fn cut_external(&self, node: usize, cut: bool) {
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

    pub fn cut_serial(&self, cut: bool) {
        let pid = i32::try_from(self.socat.as_ref().unwrap().id()).unwrap();
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let sig = if cut {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(pid, sig).unwrap();
    }

    pub fn has_vip(&self, i: usize) -> bool {
        sh_out(&["ip", "-n", self.ns(i), "-4", "addr", "show", "dev", "ext"]).contains(VIP)
    }

    pub fn mac(&self, i: usize) -> String {
        let out = sh_out(&["ip", "-n", self.ns(i), "link", "show", "dev", "ext"]);
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// The lan namespace's (the router's) neighbour entry for the service address.
    pub fn lan_neigh_vip(&self) -> String {
        sh_out(&["ip", "-n", &self.lan, "neigh", "show", VIP])
    }

    /// Makes the lan namespace resolve the service address, as a router would.
    pub fn lan_learn_vip(&self) {
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

    pub fn dump_logs(&self) {
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
    pub fn cut_serial_cont(&self) {
        if let Some(s) = &self.socat
            && let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(s.id()).unwrap_or(0))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
        }
    }
}

/// Gratuitous ARPs for `ip` seen on every interface of the calling thread's network
/// namespace for `dur` (packet(7) socket): when, and from which MAC.
pub fn capture_garp(
    ip: [u8; 4],
    dur: Duration,
    ready: std::sync::mpsc::Sender<()>,
) -> Vec<(Instant, String)> {
    use rustix::net::{AddressFamily, RecvFlags, SocketType, eth};
    let fd = rustix::net::socket(AddressFamily::PACKET, SocketType::RAW, Some(eth::ALL)).unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(50)),
    )
    .unwrap();
    ready.send(()).unwrap();
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < dur {
        let Ok((_, n, _)) = rustix::net::recvfrom(&fd, &mut buf[..], RecvFlags::empty()) else {
            continue;
        };
        let f = &buf[..n.min(buf.len())];
        // Ethernet + ARP request whose sender and target address are both `ip`.
        if f.len() < 14 + 28 || f[12..14] != [0x08, 0x06] || f[20..22] != [0, 1] {
            continue;
        }
        let arp = &f[14..];
        if arp[14..18] != ip || arp[24..28] != ip {
            continue;
        }
        let mac: Vec<String> = arp[8..14].iter().map(|b| format!("{b:02x}")).collect();
        out.push((Instant::now(), mac.join(":")));
    }
    out
}

/// The announcements among captured ARP frames from `mac`: a frame is seen once per
/// interface it crosses (bridge and ports), so frames within 100 ms count as one.
pub fn announcements(seen: &[(Instant, String)], mac: &str) -> Vec<Instant> {
    let mut out: Vec<Instant> = Vec::new();
    for (t, m) in seen {
        if m == mac
            && out
                .last()
                .is_none_or(|l| *t - *l > Duration::from_millis(100))
        {
            out.push(*t);
        }
    }
    out
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
