//! Takeover benchmark in the netns rig: SIGKILL of the active node → service address up
//! on the other node and its gratuitous ARP seen by the router (the LAN namespace's
//! neighbour entry switches to the new MAC). Compared in the same run against Linux-HA
//! heartbeat 3.0.6 (three paths, as configured here) and keepalived 2.2.7 (VRRPv3 on the
//! external LAN), at the fast profile: keepalive 200 ms, deadtime 1 s. Also RSS and
//! idle CPU of each.
//!
//! Run as root: `cargo bench -p tandem-runtime --bench takeover` (`TANDEM_BENCH_RUNS`
//! sets the runs per system, default 5). Needs Debian packages iproute2, socat,
//! heartbeat (with resource-agents) and keepalived.
//!
//! Each node's daemons run in their own PID namespace (plus UTS and mount namespaces
//! for heartbeat, which insists on `uname -n` and its own state directory); "SIGKILL of
//! the active" kills that namespace's init, so the kernel kills every process of the
//! node at once, as a power loss would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark driver: a failed unwrap is a failed run"
)]

#[path = "../tests/rig/mod.rs"]
mod rig;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rig::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Clusterd,
    Heartbeat,
    Keepalived,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Clusterd => "clusterd",
            System::Heartbeat => "heartbeat 3.0.6",
            System::Keepalived => "keepalived 2.2.7",
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

fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let f: Vec<String> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .map(String::from)
                .collect();
            Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?)
        })
        .sum()
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

fn start(rig: &Rig, sys: System, i: usize) -> NodeProc {
    let dir = rig.dir.join(format!("sys{}", i + 1));
    std::fs::create_dir_all(&dir).unwrap();
    let node = rig.nodes[i].name;
    match sys {
        System::Clusterd => {
            let script = format!(
                "{} --node {node} --config {} --control {} --serial-device {} --state-dir {} --service-if ext --service-addr {VIP}/24 --data-good 2>{}",
                env!("CARGO_BIN_EXE_clusterd"),
                rig.dir.join("cluster.toml").display(),
                rig.nodes[i].control.display(),
                rig.nodes[i].tty.display(),
                rig.nodes[i].state.display(),
                dir.join("clusterd.log").display(),
            );
            spawn_node(rig, i, &[], &format!("{script} & wait"))
        }
        System::Keepalived => {
            // Master-down interval of VRRPv3 is 3 × advert + skew: an advert of 330 ms
            // gives the same 1 s of silence as clusterd's and heartbeat's deadtime.
            let conf = format!(
                "global_defs {{\n  router_id {node}\n  vrrp_version 3\n}}\n\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface ext\n  virtual_router_id 51\n  \
                 priority {}\n  advert_int 0.33\n  nopreempt\n  \
                 virtual_ipaddress {{\n    {VIP}/24 dev ext\n  }}\n}}\n",
                if i == 0 { 150 } else { 100 }
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
            let hacf = format!(
                "logfile {}\nkeepalive 200ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\n\
                 udpport 694\nbaud 115200\nserial {}\nucast xo {}\nucast ext {}\n\
                 auto_failback off\nnode node1\nnode node2\ncrm no\n",
                dir.join("ha-log").display(),
                rig.nodes[i].tty.display(),
                rig.internal[peer],
                ext_ip(peer),
            );
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

struct Run {
    takeover: Duration,
    rss_kib: [u64; 2],
    idle_cpu_pct: [f64; 2],
}

fn one_run(sys: System, measure_idle: bool) -> Run {
    let rig = Rig::new();
    let n1 = start(&rig, sys, 0);
    // Let node1 become active alone first, as in a real cluster that has been up.
    wait_until(
        &format!("{} node1 active", sys.name()),
        Duration::from_secs(30),
        || rig.has_vip(0),
    );
    let n2 = start(&rig, sys, 1);
    thread::sleep(Duration::from_secs(3));
    assert!(
        rig.has_vip(0) && !rig.has_vip(1),
        "{}: node1 must stay active",
        sys.name()
    );
    let members = [ns_members(n1.init), ns_members(n2.init)];
    let mut idle_cpu_pct = [0.0; 2];
    if measure_idle {
        let t0 = [cpu_ticks(&members[0]), cpu_ticks(&members[1])];
        thread::sleep(Duration::from_secs(5));
        for k in 0..2 {
            let ticks = cpu_ticks(&members[k]) - t0[k];
            // 100 ticks per second; over 5 s, ticks / 5 is percent of one core.
            idle_cpu_pct[k] = ticks as f64 / 5.0;
        }
    }
    let rss = [rss_kib(&members[0]), rss_kib(&members[1])];
    rig.lan_learn_vip();
    let mac2 = rig.mac(1);
    let t = Instant::now();
    kill(n1.init);
    wait_until(
        &format!("{} takeover", sys.name()),
        Duration::from_secs(30),
        || rig.has_vip(1) && rig.lan_neigh_vip().contains(&mac2),
    );
    let takeover = t.elapsed();
    drop(n1);
    drop(n2);
    Run {
        takeover,
        rss_kib: rss,
        idle_cpu_pct,
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    need_tool("ip", "iproute2");
    need_tool("socat", "socat");
    need_tool("keepalived", "keepalived");
    assert!(
        Path::new("/usr/libexec/heartbeat/heartbeat").exists(),
        "install the Debian package heartbeat (apt-get install -y --no-install-recommends heartbeat)"
    );
    let runs: usize = std::env::var("TANDEM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut results = Vec::new();
    for sys in [System::Clusterd, System::Heartbeat, System::Keepalived] {
        let mut times = Vec::new();
        let mut first = None;
        for r in 0..runs {
            let run = one_run(sys, r == 0);
            eprintln!(
                "{:<18} run {r}: takeover {:.1} ms",
                sys.name(),
                ms(run.takeover)
            );
            times.push(run.takeover);
            first.get_or_insert(run);
        }
        let first = first.unwrap();
        let min = *times.iter().min().unwrap();
        let max = *times.iter().max().unwrap();
        let med = median(&mut times);
        results.push((sys, med, min, max, first.rss_kib, first.idle_cpu_pct));
    }
    println!(
        "takeover after SIGKILL of the active, keepalive 200 ms / deadtime 1 s, {runs} runs each"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>14} {:>14} {:>12} {:>12}",
        "system",
        "median ms",
        "min ms",
        "max ms",
        "RSS act KiB",
        "RSS pas KiB",
        "idle act %",
        "idle pas %"
    );
    for (sys, med, min, max, rss, cpu) in &results {
        println!(
            "{:<18} {:>10.1} {:>10.1} {:>10.1} {:>14} {:>14} {:>12.2} {:>12.2}",
            sys.name(),
            ms(*med),
            ms(*min),
            ms(*max),
            rss[0],
            rss[1],
            cpu[0],
            cpu[1]
        );
    }
    let ours = results[0].1;
    for (sys, med, _, _, rss, _) in &results[1..] {
        println!(
            "ratio {} / clusterd: takeover {:.2}x, RSS (active) {:.2}x",
            sys.name(),
            ms(*med) / ms(ours),
            rss[0] as f64 / results[0].4[0].max(1) as f64
        );
    }
    let bound = Duration::from_millis(DEADTIME_MS + KEEPALIVE_MS + 50);
    println!(
        "clusterd target takeover <= {:.0} ms: {}; RSS target <= 8192 KiB: {}",
        ms(bound),
        if ours <= bound { "met" } else { "MISSED" },
        if results[0].4[0] <= 8192 {
            "met"
        } else {
            "MISSED"
        }
    );
}
