//! Takeover benchmark in the netns rig: SIGKILL of the active node → service address up
//! on the other node and its gratuitous ARP on the external LAN. Compared in the same
//! run against Linux-HA heartbeat 3.0.6 (three paths, as configured here) and
//! keepalived 2.2.7 (VRRPv3 on the external LAN), at the fast profile: keepalive 200 ms,
//! deadtime 1 s (keepalived: a master-down interval of exactly 1 s, see
//! [`KEEPALIVED_ADVERT_CS`]). clusterd runs in two profiles: its own (three paths,
//! keepalive 200 ms) and the equal-work one (the external path alone at keepalived's
//! advert interval), so that idle CPU and memory compare the
//! same traffic.
//!
//! Two times per run, both from one packet capture in the LAN namespace (a packet(7)
//! socket with kernel receive timestamps on the bridge ports), so no daemon's clock is
//! trusted:
//! - **reaction**: from the close of the detection window (the killed node's last
//!   heartbeat or advert on the external LAN + deadtime, or keepalived's master-down
//!   interval) to the survivor's first gratuitous ARP: what the daemon itself costs
//!   once the settings have let it decide;
//! - **takeover**: from the SIGKILL to that gratuitous ARP (detection window
//!   included; the kill lands after a random delay of up to one interval, so runs
//!   sample every phase of the cycle).
//!
//! Also memory (RSS and PSS, summed over each node's processes) and idle CPU (scheduler
//! run time over 10 s in the first runs, from `/proc/<pid>/task/<tid>/schedstat`).
//!
//! A second case, the **ping-node hand-over**: the active node loses its ping node
//! (an nftables rule in its namespace drops what it sends there) while the passive
//! still reaches it. Measured from the start of the command that adds the rule to the
//! passive's first gratuitous ARP in the same capture, against heartbeat 3.0.6 with
//! ipfail at the same settings (ping node dead after 1 s without a reply); the bound
//! is deadtime + 1 s, worst run. keepalived's nearest counterpart, a tracked ping
//! script lowering the priority, with preemption, runs too.
//!
//! Run as root: `cargo bench -p tandem-runtime --bench takeover`. `TANDEM_BENCH_RUNS`
//! sets the runs per system and case (default 20), `TANDEM_BENCH_IDLE_RUNS` the runs
//! that also sample idle CPU (default 5), `TANDEM_BENCH_SYSTEMS` a comma-separated
//! choice of `clusterd`, `clusterd-ext`, `heartbeat`, `keepalived` (default all),
//! `TANDEM_BENCH_CASES` one of `kill`, `ping` or both (default both; the ping case runs
//! `clusterd`, `heartbeat` and `keepalived` of the chosen systems). Needs Debian packages iproute2,
//! socat, nftables, heartbeat (with resource-agents) and keepalived.
//!
//! Each node's daemons run in their own PID namespace (plus UTS and mount namespaces
//! for heartbeat, which insists on `uname -n` and its own state directory); "SIGKILL of
//! the active" kills that namespace's init, so the kernel kills every process of the
//! node at once, as a power loss would. Runs go round the systems in turn, so that load
//! from elsewhere on the machine falls on all of them alike.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark driver: a failed unwrap is a failed run"
)]

#[path = "../tests/rig/mod.rs"]
mod rig;

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rig::*;
use tandem_config::{ApplianceConfig, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    /// clusterd's own profile: serial, crossover and external path, ping node.
    Clusterd,
    /// clusterd at keepalived's work: the external path alone at the advert interval.
    ClusterdExt,
    Heartbeat,
    Keepalived,
}

impl System {
    const ALL: [System; 4] = [
        System::Clusterd,
        System::ClusterdExt,
        System::Heartbeat,
        System::Keepalived,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Clusterd => "clusterd",
            System::ClusterdExt => "clusterd ext-only",
            System::Heartbeat => "heartbeat 3.0.6",
            System::Keepalived => "keepalived 2.2.7",
        }
    }

    fn key(self) -> &'static str {
        match self {
            System::Clusterd => "clusterd",
            System::ClusterdExt => "clusterd-ext",
            System::Heartbeat => "heartbeat",
            System::Keepalived => "keepalived",
        }
    }

    /// Interval of the heartbeat (or advert) cycle, the range of the pre-kill delay.
    fn interval(self) -> Duration {
        match self {
            System::Clusterd | System::Heartbeat => Duration::from_millis(KEEPALIVE_MS),
            System::ClusterdExt | System::Keepalived => {
                Duration::from_millis(KEEPALIVED_ADVERT_CS * 10)
            }
        }
    }
}

/// One node's daemons inside a PID namespace.
struct NodeProc {
    unshare: Child,
    init: u32,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        kill(self.init);
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

fn kill(pid: u32) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Processes in the same PID namespace as `init`, except the shell and sleep that
/// hold the namespace.
fn ns_members(init: u32) -> Vec<u32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != Some(ns.clone()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !matches!(comm.trim(), "sh" | "sleep") {
            out.push(pid);
        }
    }
    out
}

/// RSS and PSS in KiB, summed over `pids` (`/proc/<pid>/smaps_rollup`). PSS charges
/// shared pages (libc, a binary run twice) to each sharer in part, so sums stay fair.
fn memory_kib(pids: &[u32]) -> (u64, u64) {
    let mut rss = 0;
    let mut pss = 0;
    for p in pids {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        let field = |name: &str| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        rss += field("Rss:");
        pss += field("Pss:");
    }
    (rss, pss)
}

/// Nanoseconds on a CPU so far, summed over every thread of `pids` (schedstat's first
/// field is exact, unlike utime/stime in 10 ms ticks).
fn cpu_ns(pids: &[u32]) -> u64 {
    let mut total = 0;
    for p in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
            total += ns;
        }
    }
    total
}

/// Idle CPU sampling window, in each of the first `TANDEM_BENCH_IDLE_RUNS` runs.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// keepalived's advert interval in centiseconds (VRRPv3's unit) and the backup's
/// priority, chosen so that its master-down interval equals our deadtime of 1 s:
/// master-down = 3 × advert + skew, skew = (256 − priority) / 256 × advert
/// = 3 × 0.32 s + 32/256 × 0.32 s = 0.96 s + 0.04 s = 1.00 s. (It is the only exact
/// choice: advert × (1024 − priority) = 256 s·cs needs an advert between 0.25 and
/// 0.33 s and an integer priority below 255.) Both nodes get the same values.
const KEEPALIVED_ADVERT_CS: u64 = 32;
const KEEPALIVED_PRIORITY: u64 = 224;
/// How much a keepalived node's priority drops while it reaches no ping node.
const KEEPALIVED_PING_WEIGHT: u64 = 50;
const _: () = assert!(
    3 * KEEPALIVED_ADVERT_CS * 256 + (256 - KEEPALIVED_PRIORITY) * KEEPALIVED_ADVERT_CS
        == DEADTIME_MS / 10 * 256
);

/// The detection window every system is set to: deadtime, or keepalived's
/// master-down interval (equal by the choice above).
const WINDOW: Duration = Duration::from_millis(DEADTIME_MS);

/// A small xorshift generator for the pre-kill delay; seeded from the clock, printed.
struct Jitter(u64);

impl Jitter {
    fn below(&mut self, bound: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let us = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(self.0 % us)
    }
}

/// Nanoseconds since the Unix epoch on CLOCK_REALTIME, the clock of the capture's
/// kernel timestamps.
fn realtime_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// What the capture looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A heartbeat (UDP to the heartbeat port) or a VRRP advert from node1's external
    /// address.
    Beat,
    /// A gratuitous ARP for the service address (request or reply, sender and target
    /// address equal), from this MAC.
    Garp([u8; 6]),
}

/// A packet capture in the LAN namespace: frames entering the bridge from either
/// node's port, stamped by the kernel on receipt (`SO_TIMESTAMPNS`, CLOCK_REALTIME).
struct Capture {
    seen: Arc<Mutex<Vec<(i128, Seen)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Capture {
    fn start(lan: &str, udp_port: u16) -> Capture {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let path = Path::new("/run/netns").join(lan);
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&ns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            let fd = packet_socket();
            let ports =
                ["p1", "p2"].map(|p| rustix::net::netdevice::name_to_index(&fd, p).unwrap());
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Some((n, ifindex, pkttype, at)) = recv_stamped(&fd, &mut buf) else {
                    continue;
                };
                // Frames entering the bridge from a node; the copies leaving on the
                // other port are the same frames.
                if pkttype == PACKET_OUTGOING || !ports.contains(&ifindex) {
                    continue;
                }
                if let Some(what) = classify(&buf[..n.min(buf.len())], udp_port) {
                    s.lock().unwrap().push((at, what));
                }
            }
        });
        ready.recv().unwrap();
        Capture {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<(i128, Seen)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const PACKET_OUTGOING: u8 = 4;

/// A packet(7) socket for every protocol, with kernel receive timestamps and a short
/// receive timeout (so the thread sees the stop flag).
fn packet_socket() -> OwnedFd {
    use rustix::net::{AddressFamily, SocketType, eth};
    let fd = rustix::net::socket(AddressFamily::PACKET, SocketType::RAW, Some(eth::ALL)).unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_millis(20)),
    )
    .unwrap();
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value points at a live c_int whose
    // size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
        )
    };
    assert_eq!(r, 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
    fd
}

/// One frame into `buf`: its length, the interface index and packet type from the
/// link-layer address, and the kernel's receive time in ns since the epoch.
fn recv_stamped(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, u32, u8, i128)> {
    // SAFETY: sockaddr_ll and msghdr are plain C structs for which all-zero bytes are
    // a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut addr).cast();
    msg.msg_namelen = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).unwrap();
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to a live local buffer of the stated size
    // for the duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, 0) };
    let n = usize::try_from(n).ok()?;
    let mut at = None;
    // SAFETY: `msg` was filled by recvmsg; the CMSG_* helpers walk its control buffer
    // within msg_controllen, and a timestamp message's data is one timespec (read
    // unaligned, as the kernel gives no alignment guarantee for the payload).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec));
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    let ifindex = u32::try_from(addr.sll_ifindex).ok()?;
    Some((n, ifindex, addr.sll_pkttype, at?))
}

/// Sorts one Ethernet frame into what the capture looks for.
fn classify(f: &[u8], udp_port: u16) -> Option<Seen> {
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let node1: Ipv4Addr = ext_ip(0).parse().unwrap();
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let p = f.get(14..)?;
    match ethertype {
        0x0806 => {
            let arp = p.get(..28)?;
            let op = u16::from_be_bytes([arp[6], arp[7]]);
            let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
            let tpa = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
            ((op == 1 || op == 2) && spa == vip && tpa == vip)
                .then(|| Seen::Garp(arp[8..14].try_into().unwrap()))
        }
        0x0800 => {
            let ihl = usize::from(*p.first()? & 0x0f) * 4;
            let src = Ipv4Addr::new(*p.get(12)?, *p.get(13)?, *p.get(14)?, *p.get(15)?);
            if src != node1 {
                return None;
            }
            match *p.get(9)? {
                // VRRP
                112 => Some(Seen::Beat),
                // UDP to the heartbeat port
                17 => {
                    let dport = u16::from_be_bytes([*p.get(ihl + 2)?, *p.get(ihl + 3)?]);
                    (dport == udp_port).then_some(Seen::Beat)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn spawn_node(rig: &Rig, i: usize, extra_ns: &[&str], script: &str) -> NodeProc {
    let log = std::fs::File::create(rig.dir.join(format!("node{}-sys.log", i + 1))).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", rig.ns(i), "unshare", "--pid", "--fork"])
        .args(extra_ns)
        .args(["sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let unshare = cmd.spawn().unwrap();
    let upid = unshare.id();
    let mut init = 0;
    wait_until("pid namespace init", Duration::from_secs(5), || {
        init = children(upid).first().copied().unwrap_or(0);
        init != 0
    });
    NodeProc { unshare, init }
}

fn ext_ip(i: usize) -> String {
    format!("{EXT_PREFIX}.{}", i + 1)
}

/// The rig's configuration, or for the equal-work profile the same cluster with the
/// external path alone at keepalived's advert interval. (The ping node stays: the
/// configuration needs one; it costs one ICMP echo per interval that keepalived does
/// not send.)
fn cluster_config(sys: System) -> String {
    let text = config_text();
    if sys != System::ClusterdExt {
        return text;
    }
    let mut cfg = ApplianceConfig::from_toml(&text).unwrap();
    cfg.heartbeat.keepalive = Millis(KEEPALIVED_ADVERT_CS * 10);
    cfg.heartbeat.serial.enabled = false;
    cfg.heartbeat.internal.enabled = false;
    let text = cfg.to_toml();
    ApplianceConfig::from_toml(&text).expect("equal-work configuration is valid");
    text
}

/// Which failure a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// SIGKILL of the active node.
    Kill,
    /// The active node loses its ping node while the passive still reaches it.
    PingLoss,
}

impl Case {
    fn key(self) -> &'static str {
        match self {
            Case::Kill => "kill",
            Case::PingLoss => "ping",
        }
    }
}

/// Starts node1 and waits until it is active alone (as in a cluster that has
/// been up), then node2; after `settle` node1 must still be the active one.
fn start_pair(rig: &Rig, sys: System, case: Case, settle: Duration) -> [NodeProc; 2] {
    let n1 = start(rig, sys, 0, case);
    wait_until(
        &format!("{} node1 active", sys.name()),
        Duration::from_secs(30),
        || rig.has_vip(0),
    );
    let n2 = start(rig, sys, 1, case);
    thread::sleep(settle);
    assert!(
        rig.has_vip(0) && !rig.has_vip(1),
        "{}: node1 must stay active once node2 runs",
        sys.name()
    );
    [n1, n2]
}

fn start(rig: &Rig, sys: System, i: usize, case: Case) -> NodeProc {
    let dir = rig.dir.join(format!("sys{}", i + 1));
    std::fs::create_dir_all(&dir).unwrap();
    let node = rig.nodes[i].name;
    match sys {
        System::Clusterd | System::ClusterdExt => {
            let conf = rig.dir.join(format!("{}.toml", sys.key()));
            std::fs::write(&conf, cluster_config(sys)).unwrap();
            let script = format!(
                "{} --node {node} --config {} --control {} --serial-device {} --state-dir {} --service-if ext --service-addr {VIP}/24 2>{}",
                clusterd_bin(),
                conf.display(),
                rig.nodes[i].control.display(),
                rig.nodes[i].tty.display(),
                rig.nodes[i].state.display(),
                dir.join("clusterd.log").display(),
            );
            spawn_node(rig, i, &[], &format!("{script} & wait"))
        }
        System::Keepalived => {
            // Same priority on both nodes, so each has the 1 s master-down interval;
            // `nopreempt` keeps node1 master once it is (no failback, as ours).
            //
            // The ping node: keepalived's nearest counterpart of ipfail is a tracked
            // script that lowers the node's priority while it fails (every 1 s, the
            // shortest interval; a reply must come within 1 s), with preemption on, so
            // that the backup takes over from a master advertising less. Between equal
            // priorities nothing moves: no failback once the master reaches it again.
            let (script, track, preempt) = if case == Case::PingLoss {
                (
                    format!(
                        "vrrp_script ping_node {{\n  script \"/usr/bin/ping -n -q -c 1 -W 1 {PING_NODE}\"\n  \
                         interval 1\n  timeout 2\n  fall 1\n  rise 1\n  weight -{KEEPALIVED_PING_WEIGHT}\n}}\n"
                    ),
                    "  track_script {\n    ping_node\n  }\n",
                    "",
                )
            } else {
                (String::new(), "", "  nopreempt\n")
            };
            let conf = format!(
                "global_defs {{\n  router_id {node}\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}}\n\
                 {script}\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface ext\n  virtual_router_id 51\n  \
                 priority {KEEPALIVED_PRIORITY}\n  advert_int 0.{KEEPALIVED_ADVERT_CS:02}\n{preempt}{track}  \
                 virtual_ipaddress {{\n    {VIP}/24 dev ext\n  }}\n}}\n",
            );
            let cf = dir.join("keepalived.conf");
            std::fs::write(&cf, conf).unwrap();
            let script = format!(
                "keepalived --dont-fork --log-console --vrrp --use-file {} --pid {} --vrrp_pid {} & wait",
                cf.display(),
                dir.join("k.pid").display(),
                dir.join("kv.pid").display()
            );
            spawn_node(rig, i, &[], &script)
        }
        System::Heartbeat => {
            let (etc, lib, run) = (dir.join("etc"), dir.join("lib"), dir.join("run"));
            for (from, to) in [
                ("/etc/ha.d", &etc),
                ("/var/lib/heartbeat", &lib),
                ("/run/heartbeat", &run),
            ] {
                std::fs::create_dir_all(to).unwrap();
                sh(&["cp", "-a", &format!("{from}/."), &to.display().to_string()]);
            }
            let peer = 1 - i;
            let mut hacf = format!(
                "logfile {}\nkeepalive 200ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\n\
                 udpport 694\nbaud 115200\nserial {}\nucast xo {}\nucast ext {}\n\
                 auto_failback off\nnode node1\nnode node2\ncrm no\n",
                dir.join("ha-log").display(),
                rig.nodes[i].tty.display(),
                rig.internal[peer],
                ext_ip(peer),
            );
            if case == Case::PingLoss {
                // The ping node and ipfail, at clusterd's settings: a ping node is
                // dead after 1 s without a reply (clusterd: deadtime), pinged every
                // keepalive.
                hacf.push_str(&format!(
                    "ping {PING_NODE}\ndeadping 1\n\
                     respawn hacluster {IPFAIL}\napiauth ipfail gid=haclient uid=hacluster\n"
                ));
            }
            std::fs::write(etc.join("ha.cf"), hacf).unwrap();
            std::fs::write(
                etc.join("authkeys"),
                "auth 1\n1 sha1 benchmark-cluster-key\n",
            )
            .unwrap();
            sh(&["chmod", "600", &etc.join("authkeys").display().to_string()]);
            std::fs::write(
                etc.join("haresources"),
                format!("node1 IPaddr2::{VIP}/24/ext\n"),
            )
            .unwrap();
            let script = format!(
                "set -e; hostname {node}; mount --bind {} /etc/ha.d; mount --bind {} /var/lib/heartbeat; \
                 mount --bind {} /run/heartbeat; /usr/libexec/heartbeat/heartbeat; exec sleep 1000000",
                etc.display(),
                lib.display(),
                run.display()
            );
            spawn_node(rig, i, &["--uts", "--mount"], &script)
        }
    }
}

/// Heartbeat's ping-node failover helper (Debian's path).
const IPFAIL: &str = "/usr/libexec/heartbeat/ipfail";

/// The clusterd binary under test: `TANDEM_BENCH_CLUSTERD` (to compare a build of
/// another revision in the same run), else the one cargo built for this benchmark.
fn clusterd_bin() -> String {
    std::env::var("TANDEM_BENCH_CLUSTERD")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_clusterd").to_owned())
}

struct Run {
    /// Detection window closed → survivor's gratuitous ARP, ns (negative: before it).
    reaction_ns: i128,
    /// SIGKILL → survivor's gratuitous ARP, ns.
    takeover_ns: i128,
    /// Pre-kill delay drawn for this run.
    delay: Duration,
    /// (RSS, PSS) in KiB of the active and the passive node.
    mem_kib: [(u64, u64); 2],
    /// Idle CPU of the active and the passive node, percent of one core, when sampled.
    idle_cpu_pct: Option<[f64; 2]>,
}

fn one_run(sys: System, jitter: &mut Jitter, sample_idle: bool) -> Run {
    let rig = Rig::new();
    let udp_port = ApplianceConfig::from_toml(&config_text())
        .unwrap()
        .heartbeat
        .udp_port
        .get();
    let [n1, n2] = start_pair(&rig, sys, Case::Kill, Duration::from_secs(3));
    let members = [ns_members(n1.init), ns_members(n2.init)];
    let idle_cpu_pct = sample_idle.then(|| {
        let c0 = [cpu_ns(&members[0]), cpu_ns(&members[1])];
        let t0 = Instant::now();
        thread::sleep(IDLE_WINDOW);
        let c1 = [cpu_ns(&members[0]), cpu_ns(&members[1])];
        let window_ns = t0.elapsed().as_nanos() as f64;
        [0, 1].map(|k| (c1[k] - c0[k]) as f64 * 100.0 / window_ns)
    });
    let mem_kib = [memory_kib(&members[0]), memory_kib(&members[1])];
    rig.lan_learn_vip();
    let mac2 = rig.mac(1);
    let mac2b = mac_bytes(&mac2);
    let capture = Capture::start(&rig.lan, udp_port);
    // At least one full cycle on the wire before the kill.
    thread::sleep(sys.interval() + jitter.below(sys.interval()));
    let delay = jitter.below(sys.interval());
    thread::sleep(delay);
    let killed_at = realtime_ns();
    kill(n1.init);
    // Polls only the capture's list: no process is started while the survivor reacts.
    let mut garp = None;
    wait_until(
        &format!("{} gratuitous ARP of node2", sys.name()),
        Duration::from_secs(30),
        || {
            garp = capture
                .snapshot()
                .iter()
                .find(|(at, s)| *at > killed_at && *s == Seen::Garp(mac2b))
                .map(|(at, _)| *at);
            garp.is_some()
        },
    );
    let garp = garp.unwrap();
    let last_beat = capture
        .snapshot()
        .iter()
        .filter(|(at, s)| *at <= killed_at && *s == Seen::Beat)
        .map(|(at, _)| *at)
        .max()
        .expect("node1's heartbeats on the external LAN");
    drop(capture);
    wait_until(
        &format!("{} router learns node2's address", sys.name()),
        Duration::from_secs(10),
        || rig.has_vip(1) && rig.lan_neigh_vip().contains(&mac2),
    );
    drop(n1);
    drop(n2);
    let window = i128::try_from(WINDOW.as_nanos()).unwrap();
    Run {
        reaction_ns: garp - (last_beat + window),
        takeover_ns: garp - killed_at,
        delay,
        mem_kib,
        idle_cpu_pct,
    }
}

/// One ping-node hand-over run: the hand-over time, the time the cut command took
/// (ns), and whether the active node had given the address up by the end of the run.
/// `None` when no hand-over came within [`PING_LIMIT`].
struct PingRun {
    handover_ns: Option<i128>,
    cut_cmd_ns: i128,
    released: bool,
}

/// How long a ping-node run waits for the hand-over.
const PING_LIMIT: Duration = Duration::from_secs(30);

/// The active node (node1) loses its ping node: from then on the ping node drops what
/// node1 sends it (an nftables rule added in the LAN namespace in one command at the
/// measured instant), while node2 still reaches it. Measured from the start of that command (the
/// rule cannot be in effect earlier, so the times are upper bounds by at most the
/// command's own run time, which is reported) to node2's first gratuitous ARP for the
/// service address in the LAN capture (kernel receive timestamps, same clock).
fn ping_run(sys: System, jitter: &mut Jitter) -> PingRun {
    let rig = Rig::new();
    let udp_port = ApplianceConfig::from_toml(&config_text())
        .unwrap()
        .heartbeat
        .udp_port
        .get();
    // The table and chain exist before the run; the cut adds the one rule. The ping
    // node (the LAN namespace's own address) stops hearing node1, as when the link
    // between the switch and the router fails: node1 sees silence, not an error.
    sh(&[
        "ip",
        "netns",
        "exec",
        &rig.lan,
        "nft",
        "add table inet benchcut; add chain inet benchcut in { type filter hook input priority 0 ; policy accept ; }",
    ]);
    // After 5 s both nodes hear each other and have seen the ping node answer;
    // heartbeat has started ipfail (respawned once heartbeat is up).
    let [n1, n2] = start_pair(&rig, sys, Case::PingLoss, Duration::from_secs(5));
    rig.lan_learn_vip();
    let mac2b = mac_bytes(&rig.mac(1));
    let capture = Capture::start(&rig.lan, udp_port);
    // The cut lands anywhere in the ping cycle.
    thread::sleep(sys.interval() + jitter.below(sys.interval()));
    let cut_at = realtime_ns();
    sh(&[
        "ip",
        "netns",
        "exec",
        &rig.lan,
        "nft",
        &format!("add rule inet benchcut in ip saddr {} drop", ext_ip(0)),
    ]);
    let cut_cmd_ns = realtime_ns() - cut_at;
    let start = Instant::now();
    let mut garp = None;
    while start.elapsed() < PING_LIMIT && garp.is_none() {
        thread::sleep(Duration::from_millis(10));
        garp = capture
            .snapshot()
            .iter()
            .find(|(at, s)| *at > cut_at && *s == Seen::Garp(mac2b))
            .map(|(at, _)| *at);
    }
    drop(capture);
    let mut released = false;
    if garp.is_some() {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) && !released {
            released = !rig.has_vip(0) && rig.has_vip(1);
            thread::sleep(Duration::from_millis(20));
        }
    }
    drop(n1);
    drop(n2);
    PingRun {
        handover_ns: garp.map(|g| g - cut_at),
        cut_cmd_ns,
        released,
    }
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
}

/// Median, 95th percentile (nearest rank) and worst of `v`.
fn spread(v: &[i128]) -> [i128; 3] {
    let mut v = v.to_vec();
    v.sort_unstable();
    let n = v.len();
    let p95 = (n * 95).div_ceil(100).max(1) - 1;
    [v[n / 2], v[p95], v[n - 1]]
}

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn median_u(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

struct Summary {
    sys: System,
    reaction: [i128; 3],
    takeover: [i128; 3],
    /// Medians over the runs: RSS and PSS of active and passive, KiB.
    rss: [u64; 2],
    pss: [u64; 2],
    cpu: [f64; 2],
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The items of `all` named (by `key`) in the comma-separated list of variable
/// `var`; all of them when it is not set.
fn chosen<T: Copy>(var: &str, all: &[T], key: fn(T) -> &'static str) -> Vec<T> {
    let Ok(list) = std::env::var(var) else {
        return all.to_vec();
    };
    list.split(',')
        .map(|k| {
            *all.iter()
                .find(|t| key(**t) == k.trim())
                .unwrap_or_else(|| {
                    let known: Vec<_> = all.iter().map(|t| key(*t)).collect();
                    panic!(
                        "unknown {k:?} in {var} (expected one of {})",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    need_tool("ip", "iproute2");
    need_tool("socat", "socat");
    let systems = chosen("TANDEM_BENCH_SYSTEMS", &System::ALL, System::key);
    if systems.contains(&System::Keepalived) {
        need_tool("keepalived", "keepalived");
    }
    if systems.contains(&System::Heartbeat) {
        assert!(
            Path::new("/usr/libexec/heartbeat/heartbeat").exists(),
            "install the Debian package heartbeat (apt-get install -y --no-install-recommends heartbeat resource-agents)"
        );
    }
    let cases = chosen(
        "TANDEM_BENCH_CASES",
        &[Case::Kill, Case::PingLoss],
        Case::key,
    );
    if cases.contains(&Case::PingLoss) {
        need_tool("nft", "nftables");
        if systems.contains(&System::Heartbeat) {
            assert!(
                Path::new(IPFAIL).exists(),
                "heartbeat's ipfail is missing at {IPFAIL}"
            );
        }
    }
    let runs = env_usize("TANDEM_BENCH_RUNS", 20).max(1);
    let idle_runs = env_usize("TANDEM_BENCH_IDLE_RUNS", 5).clamp(1, runs);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
        })
        | 1;
    eprintln!("pre-kill delay seed {seed}");
    let mut jitter = Jitter(seed);
    let mut all: Vec<Vec<Run>> = systems.iter().map(|_| Vec::new()).collect();
    let kill_runs = if cases.contains(&Case::Kill) { runs } else { 0 };
    for r in 0..kill_runs {
        for (k, &sys) in systems.iter().enumerate() {
            let run = one_run(sys, &mut jitter, r < idle_runs);
            eprintln!(
                "{:<18} run {r}: delay {:.1} ms, reaction {:.2} ms, takeover {:.1} ms, idle cpu {}, RSS {}/{} KiB, PSS {}/{} KiB",
                sys.name(),
                run.delay.as_secs_f64() * 1000.0,
                ms(run.reaction_ns),
                ms(run.takeover_ns),
                run.idle_cpu_pct
                    .map_or("-".to_owned(), |c| format!("{:.3}/{:.3} %", c[0], c[1])),
                run.mem_kib[0].0,
                run.mem_kib[1].0,
                run.mem_kib[0].1,
                run.mem_kib[1].1,
            );
            all[k].push(run);
        }
    }
    // The ping-node hand-over: clusterd in its own profile, heartbeat with ipfail,
    // keepalived with a tracked ping script.
    let ping_systems: Vec<System> = if cases.contains(&Case::PingLoss) {
        systems
            .iter()
            .copied()
            .filter(|s| matches!(s, System::Clusterd | System::Heartbeat | System::Keepalived))
            .collect()
    } else {
        Vec::new()
    };
    let mut ping_all: Vec<Vec<PingRun>> = ping_systems.iter().map(|_| Vec::new()).collect();
    for r in 0..runs {
        for (k, &sys) in ping_systems.iter().enumerate() {
            let run = ping_run(sys, &mut jitter);
            eprintln!(
                "{:<18} ping-node run {r}: hand-over {}, cut command {:.1} ms, active released: {}",
                ping_name(sys),
                run.handover_ns
                    .map_or("NONE within 30 s".to_owned(), |h| format!(
                        "{:.1} ms",
                        ms(h)
                    )),
                ms(run.cut_cmd_ns),
                run.released,
            );
            ping_all[k].push(run);
        }
    }
    if kill_runs > 0 {
        summarise_kill(&systems, &all, runs, idle_runs);
    }
    if !ping_systems.is_empty() {
        report_ping(&ping_systems, &ping_all);
    }
}

fn ping_name(sys: System) -> &'static str {
    match sys {
        System::Heartbeat => "heartbeat+ipfail",
        System::Keepalived => "keepalived+script",
        s => s.name(),
    }
}

fn report_ping(systems: &[System], all: &[Vec<PingRun>]) {
    let bound = i128::try_from((WINDOW + Duration::from_secs(1)).as_nanos()).unwrap();
    println!(
        "Ping-node hand-over: the active node (node1) loses its ping node (the ping node \
         drops what node1 sends it: one nftables rule added in its namespace by one \
         command), the passive still reaches it; from the start of that command (the rule is not in effect earlier: \
         the times are upper bounds by at most the command's run time) to the passive's \
         first gratuitous ARP in the LAN capture. keepalive 200 ms, deadtime 1 s, ping \
         node dead after 1 s without a reply (heartbeat: deadping 1, ipfail; keepalived: \
         a ping script every 1 s with a 1 s reply wait lowering the priority by \
         {KEEPALIVED_PING_WEIGHT}, preemption on); bound deadtime + 1 s = {:.0} ms.",
        ms(bound)
    );
    println!(
        "{:<18} {:>5} {:>28} {:>10} {:>14} {:>18}",
        "system",
        "runs",
        "hand-over ms med/p95/worst",
        "no hand-over",
        "cut cmd ms med",
        "worst <= bound"
    );
    let mut spreads = Vec::new();
    for (&sys, runs) in systems.iter().zip(all) {
        let done: Vec<i128> = runs.iter().filter_map(|r| r.handover_ns).collect();
        let missing = runs.len() - done.len();
        let cut = median_u(
            &runs
                .iter()
                .map(|r| u64::try_from(r.cut_cmd_ns).unwrap_or(0))
                .collect::<Vec<_>>(),
        );
        let sp = (!done.is_empty()).then(|| spread(&done));
        let not_released = runs
            .iter()
            .filter(|r| r.handover_ns.is_some() && !r.released)
            .count();
        println!(
            "{:<18} {:>5} {:>28} {:>10} {:>14.1} {:>18}{}",
            ping_name(sys),
            runs.len(),
            sp.map_or("-".to_owned(), |v| format!(
                "{:.1} / {:.1} / {:.1}",
                ms(v[0]),
                ms(v[1]),
                ms(v[2])
            )),
            missing,
            cut as f64 / 1e6,
            match sp {
                Some(v) if missing == 0 && v[2] <= bound => "met",
                _ => "MISSED",
            },
            if not_released > 0 {
                format!(" ({not_released} runs: the active still held the address)")
            } else {
                String::new()
            }
        );
        spreads.push((sys, sp));
    }
    let find = |s: System| spreads.iter().find(|(k, _)| *k == s).and_then(|(_, v)| *v);
    for peer in [System::Heartbeat, System::Keepalived] {
        if let (Some(c), Some(h)) = (find(System::Clusterd), find(peer)) {
            println!(
                "ratio clusterd / {} (ping-node hand-over): {:.3}x median, {:.3}x p95, {:.3}x worst",
                ping_name(peer),
                ms(c[0]) / ms(h[0]),
                ms(c[1]) / ms(h[1]),
                ms(c[2]) / ms(h[2]),
            );
        }
    }
}

fn summarise_kill(systems: &[System], all: &[Vec<Run>], runs: usize, idle_runs: usize) {
    let results: Vec<Summary> = systems
        .iter()
        .zip(all)
        .map(|(&sys, runs)| {
            let per = |f: &dyn Fn(&Run) -> u64| median_u(&runs.iter().map(f).collect::<Vec<_>>());
            let cpu = |k: usize| {
                median_f(
                    &runs
                        .iter()
                        .filter_map(|r| r.idle_cpu_pct.map(|c| c[k]))
                        .collect::<Vec<_>>(),
                )
            };
            Summary {
                sys,
                reaction: spread(&runs.iter().map(|r| r.reaction_ns).collect::<Vec<_>>()),
                takeover: spread(&runs.iter().map(|r| r.takeover_ns).collect::<Vec<_>>()),
                rss: [per(&|r| r.mem_kib[0].0), per(&|r| r.mem_kib[1].0)],
                pss: [per(&|r| r.mem_kib[0].1), per(&|r| r.mem_kib[1].1)],
                cpu: [cpu(0), cpu(1)],
            }
        })
        .collect();
    report(&results, runs, idle_runs);
}

fn report(results: &[Summary], runs: usize, idle_runs: usize) {
    println!(
        "SIGKILL of the active node (after a random delay of up to one interval), detection \
         window 1 s: deadtime 1 s (clusterd keepalive 200 ms, ext-only 320 ms; heartbeat \
         keepalive 200 ms), keepalived advert 0.{KEEPALIVED_ADVERT_CS:02} s, priority \
         {KEEPALIVED_PRIORITY}, master-down 1 s; {runs} runs each. reaction = survivor's \
         gratuitous ARP − (killed node's last heartbeat/advert + 1 s), takeover = ARP − kill, \
         both timestamps from one capture on the LAN. Memory: medians over the runs; idle CPU: \
         medians over the first {idle_runs} runs, {} s each; both summed over each node's processes.",
        IDLE_WINDOW.as_secs()
    );
    println!(
        "{:<18} {:>26} {:>26} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "system",
        "reaction ms med/p95/worst",
        "takeover ms med/p95/worst",
        "RSS act",
        "RSS pas",
        "PSS act",
        "PSS pas",
        "cpu act %",
        "cpu pas %"
    );
    let three = |v: [i128; 3], prec: usize| {
        format!(
            "{:.p$} / {:.p$} / {:.p$}",
            ms(v[0]),
            ms(v[1]),
            ms(v[2]),
            p = prec
        )
    };
    for r in results {
        println!(
            "{:<18} {:>26} {:>26} {:>9} {:>9} {:>9} {:>9} {:>9.3} {:>9.3}",
            r.sys.name(),
            three(r.reaction, 2),
            three(r.takeover, 1),
            r.rss[0],
            r.rss[1],
            r.pss[0],
            r.pss[1],
            r.cpu[0],
            r.cpu[1]
        );
    }
    println!("(memory in KiB; cpu in percent of one core)");
    let ratio = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
    let find = |s: System| results.iter().find(|r| r.sys == s);
    for ours in [System::Clusterd, System::ClusterdExt]
        .into_iter()
        .filter_map(find)
    {
        for peer in [System::Heartbeat, System::Keepalived]
            .into_iter()
            .filter_map(find)
        {
            println!(
                "ratio {} / {}: reaction {:.3}x median, {:.3}x p95, {:.3}x worst; takeover {:.3}x median; RSS {:.2}x / {:.2}x, idle CPU {:.2}x / {:.2}x (active / passive)",
                ours.sys.name(),
                peer.sys.name(),
                ratio(ms(ours.reaction[0]), ms(peer.reaction[0])),
                ratio(ms(ours.reaction[1]), ms(peer.reaction[1])),
                ratio(ms(ours.reaction[2]), ms(peer.reaction[2])),
                ratio(ms(ours.takeover[0]), ms(peer.takeover[0])),
                ratio(ours.rss[0] as f64, peer.rss[0] as f64),
                ratio(ours.rss[1] as f64, peer.rss[1] as f64),
                ratio(ours.cpu[0], peer.cpu[0]),
                ratio(ours.cpu[1], peer.cpu[1]),
            );
        }
    }
    for ours in [System::Clusterd, System::ClusterdExt]
        .into_iter()
        .filter_map(find)
    {
        let below_keepalived = find(System::Keepalived).map_or("not measured", |k| {
            if ours.reaction[0] < k.reaction[0] && ours.reaction[2] < k.reaction[2] {
                "yes"
            } else {
                "NO"
            }
        });
        println!(
            "{}: reaction median <= 5 ms: {}; worst <= 20 ms: {}; below keepalived (median and worst): {}; RSS <= 8192 KiB: {}",
            ours.sys.name(),
            if ours.reaction[0] <= 5_000_000 {
                "met"
            } else {
                "MISSED"
            },
            if ours.reaction[2] <= 20_000_000 {
                "met"
            } else {
                "MISSED"
            },
            below_keepalived,
            if ours.rss[0] <= 8192 && ours.rss[1] <= 8192 {
                "met"
            } else {
                "MISSED"
            },
        );
    }
}
