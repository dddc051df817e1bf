//! Takeover benchmark in the netns rig: SIGKILL of the active node → service address up
//! on the other node and its gratuitous ARP seen by the router (the LAN namespace's
//! neighbour entry switches to the new MAC). Compared in the same run against Linux-HA
//! heartbeat 3.0.6 (three paths, as configured here) and keepalived 2.2.7 (VRRPv3 on the
//! external LAN), at the fast profile: keepalive 200 ms, deadtime 1 s (keepalived: a
//! master-down interval of exactly 1 s, see [`KEEPALIVED_ADVERT_CS`]). The kill lands
//! after a random delay of up to one heartbeat (advert) interval, so runs sample every
//! phase of the cycle. Also memory (RSS and PSS, summed over each node's processes) and
//! idle CPU (scheduler run time over 10 s in every run, from
//! `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds).
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

/// Idle CPU sampling window, in every run.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// keepalived's advert interval in centiseconds (VRRPv3's unit) and the backup's
/// priority, chosen so that its master-down interval equals our deadtime of 1 s:
/// master-down = 3 × advert + skew, skew = (256 − priority) / 256 × advert
/// = 3 × 0.32 s + 32/256 × 0.32 s = 0.96 s + 0.04 s = 1.00 s. (It is the only exact
/// choice: advert × (1024 − priority) = 256 s·cs needs an advert between 0.25 and
/// 0.33 s and an integer priority below 255.) Both nodes get the same values.
const KEEPALIVED_ADVERT_CS: u64 = 32;
const KEEPALIVED_PRIORITY: u64 = 224;
const _: () = assert!(
    3 * KEEPALIVED_ADVERT_CS * 256 + (256 - KEEPALIVED_PRIORITY) * KEEPALIVED_ADVERT_CS
        == DEADTIME_MS / 10 * 256
);

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
                "{} --node {node} --config {} --control {} --serial-device {} --state-dir {} --service-if ext --service-addr {VIP}/24 2>{}",
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
            // Same priority on both nodes, so each has the 1 s master-down interval;
            // `nopreempt` keeps node1 master once it is (no failback, as ours).
            let conf = format!(
                "global_defs {{\n  router_id {node}\n  vrrp_version 3\n}}\n\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface ext\n  virtual_router_id 51\n  \
                 priority {KEEPALIVED_PRIORITY}\n  advert_int 0.{KEEPALIVED_ADVERT_CS:02}\n  nopreempt\n  \
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
    /// Pre-kill delay drawn for this run.
    delay: Duration,
    /// (RSS, PSS) in KiB of the active and the passive node.
    mem_kib: [(u64, u64); 2],
    /// Idle CPU of the active and the passive node, percent of one core.
    idle_cpu_pct: [f64; 2],
}

impl System {
    /// Interval of the heartbeat (or advert) cycle, the range of the pre-kill delay.
    fn interval(self) -> Duration {
        match self {
            System::Clusterd | System::Heartbeat => Duration::from_millis(KEEPALIVE_MS),
            System::Keepalived => Duration::from_millis(KEEPALIVED_ADVERT_CS * 10),
        }
    }
}

fn one_run(sys: System, jitter: &mut Jitter) -> Run {
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
    let c0 = [cpu_ns(&members[0]), cpu_ns(&members[1])];
    let t0 = Instant::now();
    thread::sleep(IDLE_WINDOW);
    let c1 = [cpu_ns(&members[0]), cpu_ns(&members[1])];
    let window_ns = t0.elapsed().as_nanos() as f64;
    let idle_cpu_pct = [0, 1].map(|k| (c1[k] - c0[k]) as f64 * 100.0 / window_ns);
    let mem_kib = [memory_kib(&members[0]), memory_kib(&members[1])];
    rig.lan_learn_vip();
    let mac2 = rig.mac(1);
    let delay = jitter.below(sys.interval());
    thread::sleep(delay);
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
        delay,
        mem_kib,
        idle_cpu_pct,
    }
}

fn median<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Summary {
    sys: System,
    med: Duration,
    min: Duration,
    max: Duration,
    /// Medians over the runs: RSS and PSS of active and passive, KiB.
    rss: [u64; 2],
    pss: [u64; 2],
    cpu: [f64; 2],
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
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| {
            u64::try_from(d.as_nanos() % u128::from(u64::MAX)).unwrap_or(1)
        })
        | 1;
    eprintln!("pre-kill delay seed {seed}");
    let mut jitter = Jitter(seed);
    let mut results = Vec::new();
    for sys in [System::Clusterd, System::Heartbeat, System::Keepalived] {
        let mut all = Vec::new();
        for r in 0..runs {
            let run = one_run(sys, &mut jitter);
            eprintln!(
                "{:<18} run {r}: delay {:.1} ms, takeover {:.1} ms, idle cpu {:.3}/{:.3} %, RSS {}/{} KiB, PSS {}/{} KiB",
                sys.name(),
                ms(run.delay),
                ms(run.takeover),
                run.idle_cpu_pct[0],
                run.idle_cpu_pct[1],
                run.mem_kib[0].0,
                run.mem_kib[1].0,
                run.mem_kib[0].1,
                run.mem_kib[1].1,
            );
            all.push(run);
        }
        let times: Vec<Duration> = all.iter().map(|r| r.takeover).collect();
        let per = |f: &dyn Fn(&Run) -> u64| median(&all.iter().map(f).collect::<Vec<_>>());
        let cpu = |k: usize| median(&all.iter().map(|r| r.idle_cpu_pct[k]).collect::<Vec<_>>());
        results.push(Summary {
            sys,
            med: median(&times),
            min: *times.iter().min().unwrap(),
            max: *times.iter().max().unwrap(),
            rss: [per(&|r| r.mem_kib[0].0), per(&|r| r.mem_kib[1].0)],
            pss: [per(&|r| r.mem_kib[0].1), per(&|r| r.mem_kib[1].1)],
            cpu: [cpu(0), cpu(1)],
        });
    }
    println!(
        "takeover after SIGKILL of the active (random delay up to one interval first), \
         keepalive 200 ms / deadtime 1 s (keepalived: advert 0.{KEEPALIVED_ADVERT_CS:02} s, \
         priority {KEEPALIVED_PRIORITY}, master-down 1 s), {runs} runs each; memory and idle CPU \
         over {} s are medians over the runs, summed over each node's processes",
        IDLE_WINDOW.as_secs()
    );
    println!(
        "{:<18} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "system",
        "median ms",
        "min ms",
        "max ms",
        "RSS act",
        "RSS pas",
        "PSS act",
        "PSS pas",
        "cpu act %",
        "cpu pas %"
    );
    for r in &results {
        println!(
            "{:<18} {:>9.1} {:>8.1} {:>8.1} {:>9} {:>9} {:>9} {:>9} {:>9.3} {:>9.3}",
            r.sys.name(),
            ms(r.med),
            ms(r.min),
            ms(r.max),
            r.rss[0],
            r.rss[1],
            r.pss[0],
            r.pss[1],
            r.cpu[0],
            r.cpu[1]
        );
    }
    println!("(memory in KiB; cpu in percent of one core)");
    let ours = &results[0];
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    for r in &results[1..] {
        println!(
            "ratio {} / clusterd: takeover {:.2}x; RSS {:.2}x / {:.2}x, PSS {:.2}x / {:.2}x, idle CPU {:.2}x / {:.2}x (active / passive)",
            r.sys.name(),
            ratio(ms(r.med), ms(ours.med)),
            ratio(r.rss[0] as f64, ours.rss[0] as f64),
            ratio(r.rss[1] as f64, ours.rss[1] as f64),
            ratio(r.pss[0] as f64, ours.pss[0] as f64),
            ratio(r.pss[1] as f64, ours.pss[1] as f64),
            ratio(r.cpu[0], ours.cpu[0]),
            ratio(r.cpu[1], ours.cpu[1]),
        );
    }
    let bound = Duration::from_millis(DEADTIME_MS + KEEPALIVE_MS + 50);
    let faster = results[1..].iter().all(|r| ours.med < r.med);
    println!(
        "clusterd target takeover <= {:.0} ms: {}; faster than both peers (median): {}; RSS target <= 8192 KiB: {}",
        ms(bound),
        if ours.max <= bound {
            "met in every run"
        } else if ours.med <= bound {
            "met by the median, MISSED in some runs"
        } else {
            "MISSED"
        },
        if faster { "yes" } else { "NO" },
        if ours.rss[0] <= 8192 && ours.rss[1] <= 8192 {
            "met"
        } else {
            "MISSED"
        }
    );
}
