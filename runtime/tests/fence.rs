//! Fencing in the netns rig (see `rig`): two real clusterd processes, every heartbeat
//! path cut while both run, and OpenIPMI's `ipmi_sim` as node1's BMC on the external
//! LAN (the board crate's rig, reached at 10.77.0.21:623 inside the rig's LAN namespace
//! through a UDP relay to its loopback port). node2 must power node1 off through the BMC
//! (RMCP+ chassis power off, then chassis status until off) before it takes the service
//! address; when the BMC cannot be reached it stays passive until the operator
//! confirms with `tandem fence confirm node1`.
//!
//! Runs as root (namespaces). Needs Debian packages iproute2, socat and openipmi.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod rig;

#[path = "../../board/tests/rig/mod.rs"]
mod bmc_rig;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rig::*;
use tandem_config::schema::{BmcConfig, FencingConfig, FencingPolicy};
use tandem_config::{ApplianceConfig, Ipv4, Millis};

const BMC1: &str = "10.77.0.21";
const BMC2: &str = "10.77.0.22";

/// Forwards RMCP+ datagrams between `BMC1:623` in the rig's LAN namespace and the
/// simulated BMC on loopback, while `open`.
struct Relay {
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Relay {
    fn start(rig: &Rig, bmc: SocketAddr) -> Relay {
        sh(&[
            "ip",
            "-n",
            &rig.lan,
            "addr",
            "add",
            &format!("{BMC1}/24"),
            "dev",
            "br0",
        ]);
        // A socket keeps the namespace it was made in.
        let outside = in_netns(&rig.lan, || {
            let s = UdpSocket::bind(format!("{BMC1}:623")).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        });
        let inside = UdpSocket::bind("127.0.0.1:0").unwrap();
        inside.connect(bmc).unwrap();
        inside
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let (open, stop) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut threads = Vec::new();
        {
            let (o, i, c, open, stop) = (
                outside.try_clone().unwrap(),
                inside.try_clone().unwrap(),
                Arc::clone(&client),
                Arc::clone(&open),
                Arc::clone(&stop),
            );
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((n, from)) = o.recv_from(&mut buf)
                        && open.load(Ordering::SeqCst)
                    {
                        *c.lock().unwrap() = Some(from);
                        let _ = i.send(&buf[..n]);
                    }
                }
            }));
        }
        {
            let (o, i, c, open, stop) = (
                outside,
                inside,
                client,
                Arc::clone(&open),
                Arc::clone(&stop),
            );
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = i.recv(&mut buf)
                        && open.load(Ordering::SeqCst)
                        && let Some(to) = *c.lock().unwrap()
                    {
                        let _ = o.send_to(&buf[..n], to);
                    }
                }
            }));
        }
        Relay {
            open,
            stop,
            threads,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The rig's configuration with fencing required: node1's BMC is the simulated one.
fn with_fencing(rig: &Rig, timeout: Millis) {
    let path = rig.dir.join("cluster.toml");
    let mut cfg = ApplianceConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let bmc = |a: &str| BmcConfig {
        address: Ipv4(a.parse().unwrap()),
        port: 623.try_into().unwrap(),
        user: bmc_rig::USER.parse().unwrap(),
        password: bmc_rig::PASSWORD.parse().unwrap(),
        cipher_suite: 3,
    };
    cfg.fencing = Some(FencingConfig {
        policy: FencingPolicy::Required,
        timeout,
        node1_delay: Millis::from_secs(3),
        node1: bmc(BMC1),
        node2: bmc(BMC2),
    });
    let text = cfg.to_toml();
    ApplianceConfig::from_toml(&text).expect("the rig's fencing configuration is valid");
    std::fs::write(path, text).unwrap();
}

/// The exit code of DRBD's fence-peer handler run against node `i`'s clusterd.
fn fence_peer_handler(rig: &Rig, i: usize) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(&rig.nodes[i].control)
        .args(["replication", "handler", "fence-peer"])
        .output()
        .unwrap()
        .status
        .code()
}

fn cut_everything(rig: &Rig) {
    rig.cut_internal(true);
    rig.cut_external(0, true);
    rig.cut_serial(true);
}

fn position(ev: &[(String, String)], f: impl Fn(&(String, String)) -> bool) -> Option<usize> {
    ev.iter().position(f)
}

#[test]
fn all_paths_cut_the_survivor_powers_the_other_off_through_its_bmc_before_taking_over() {
    let bmc = bmc_rig::Rig::start();
    let mut rig = Rig::new();
    let _relay = Relay::start(&rig, bmc.lan);
    with_fencing(&rig, Millis::from_secs(10));
    rig.start_both();
    assert!(rig.has_vip(0));
    assert!(bmc.chassis_log().is_empty(), "{}", bmc.chassis_log());
    let cut = Instant::now();
    cut_everything(&rig);
    wait_until("node2 active", Duration::from_secs(20), || {
        rig.role(1) == "active"
    });
    let took = cut.elapsed();
    assert!(rig.has_vip(1));
    // The BMC was told to power off (the chassis program saw "set power 0").
    let log = bmc.chassis_log();
    assert!(
        log.lines().any(|l| l.starts_with("set power 0")),
        "chassis log: {log}"
    );
    // In node2's own order of events: the fence asked, the BMC's answer that the
    // chassis reads off, then (and only then) the takeover.
    let ev = rig.events(1);
    let asked = position(&ev, |e| {
        e.0 == "fence"
            && e.1
                .contains("powering it off through its BMC 10.77.0.21:623")
    })
    .expect("fence asked");
    let answer = position(&ev, |e| {
        e.0 == "fence" && e.1.contains("chassis status reads off")
    })
    .unwrap_or_else(|| panic!("no BMC answer in {ev:?}"));
    let fenced = position(&ev, |e| e.0 == "fenced").expect("fenced");
    let acquiring = position(&ev, |e| {
        e.0 == "role_changed" && e.1.starts_with("passive -> acquiring")
    })
    .unwrap_or_else(|| panic!("no takeover in {ev:?}"));
    assert!(
        asked < answer && answer < fenced && fenced < acquiring,
        "{ev:?}"
    );
    let st = rig.status(1);
    assert_eq!(st.fence.as_deref(), Some("powered off"));
    // DRBD's fence-peer handler on node2 now answers "peer fenced" (7).
    assert_eq!(fence_peer_handler(&rig, 1), Some(7));
    eprintln!("all paths cut -> node1 powered off via ipmi_sim -> node2 active in {took:?}");
}

#[test]
fn a_fence_that_fails_keeps_the_survivor_passive_until_the_operator_confirms() {
    let bmc = bmc_rig::Rig::start();
    let mut rig = Rig::new();
    let relay = Relay::start(&rig, bmc.lan);
    with_fencing(&rig, Millis::from_secs(2));
    rig.start_both();
    // node1's BMC cannot be reached, then every path goes; node1 really dies.
    relay.open.store(false, Ordering::SeqCst);
    cut_everything(&rig);
    rig.kill(0);
    wait_until("fence failed", Duration::from_secs(20), || {
        rig.status(1)
            .waiting
            .is_some_and(|w| w.contains("could not be powered off: check it and confirm"))
    });
    let ev = rig.events(1);
    assert!(
        ev.iter().any(|e| e.0 == "fence_failed"
            && e.1
                .starts_with("node1 silent and could not be powered off: check it and confirm")),
        "{ev:?}"
    );
    // DRBD's fence-peer handler (as on a promotion): with fencing required it
    // waits while the fence has failed; it answers only once the operator has
    // confirmed the peer down.
    let mut handler = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(&rig.nodes[1].control)
        .args(["replication", "handler", "fence-peer"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It stays passive and does not take the address on its own.
    thread::sleep(Duration::from_secs(2));
    assert!(
        handler.try_wait().unwrap().is_none(),
        "the handler answered before the confirmation"
    );
    assert_eq!(rig.role(1), "passive");
    assert!(!rig.has_vip(1));
    assert!(bmc.chassis_log().is_empty());
    let tandem = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--control")
            .arg(&rig.nodes[1].control)
            .args(args)
            .output()
            .unwrap()
    };
    // The wrong name is refused and changes nothing.
    let out = tandem(&["fence", "confirm", "node2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("node2 is this node"),
        "{out:?}"
    );
    assert_eq!(rig.role(1), "passive");
    // The operator checked node1 is down and confirms.
    let out = tandem(&["fence", "confirm", "node1"]);
    assert!(out.status.success(), "{out:?}");
    let answered = handler.wait_with_output().unwrap();
    assert_eq!(answered.status.code(), Some(7), "{answered:?}");
    assert!(
        String::from_utf8_lossy(&answered.stderr).contains("confirmed that the peer is down"),
        "{answered:?}"
    );
    wait_until("node2 active", Duration::from_secs(10), || {
        rig.role(1) == "active" && rig.has_vip(1)
    });
    assert_eq!(
        rig.status(1).fence.as_deref(),
        Some("confirmed down by the operator")
    );
}

#[test]
fn the_active_announces_its_address_again_when_the_peer_is_heard_after_every_path_was_lost() {
    let bmc = bmc_rig::Rig::start();
    let mut rig = Rig::new();
    let relay = Relay::start(&rig, bmc.lan);
    with_fencing(&rig, Millis::from_secs(2));
    rig.start_both();
    // node1's BMC unreachable: node2 cannot fence it and stays passive.
    relay.open.store(false, Ordering::SeqCst);
    cut_everything(&rig);
    wait_until("fence failed", Duration::from_secs(20), || {
        rig.status(1).fence.is_some_and(|f| f.starts_with("failed"))
    });
    let mac1 = rig.mac(0);
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let lan = rig.lan.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let capture = thread::spawn(move || {
        in_netns(&lan, move || {
            capture_garp(vip.octets(), Duration::from_secs(7), ready_tx)
        })
    });
    ready.recv().unwrap();
    // Every path back: node1 hears node2 again and tells the routers once more.
    rig.cut_internal(false);
    rig.cut_external(0, false);
    rig.cut_serial(false);
    let seen = capture.join().unwrap();
    let node1 = announcements(&seen, &mac1);
    assert_eq!(node1.len(), 5, "{seen:?}");
    assert_eq!(rig.role(0), "active");
    assert_eq!(rig.role(1), "passive");
    assert!(rig.status(1).fence.is_none());
}

#[test]
fn a_clean_shutdown_of_the_active_hands_over_and_is_never_fenced() {
    let bmc = bmc_rig::Rig::start();
    let mut rig = Rig::new();
    let _relay = Relay::start(&rig, bmc.lan);
    with_fencing(&rig, Millis::from_secs(10));
    rig.start_both();
    // SIGTERM, as init sends it at shutdown.
    let pid = rustix::process::Pid::from_raw(i32::try_from(rig.pid(0)).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    wait_until("node2 active", Duration::from_secs(10), || {
        rig.role(1) == "active" && rig.has_vip(1)
    });
    // node1's clusterd ends once node2 holds the services.
    let mut child = rig.nodes[0].child.take().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node1 did not exit"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Well past deadtime: nobody was fenced.
    thread::sleep(Duration::from_secs(3));
    assert!(bmc.chassis_log().is_empty(), "{}", bmc.chassis_log());
    let ev = rig.events(1);
    assert!(!ev.iter().any(|e| e.0 == "fence"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| e.0 == "role_changed" && e.1.contains("peer handed the services over")),
        "{ev:?}"
    );
}
