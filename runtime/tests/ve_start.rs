//! The VEs of a takeover started with the real crun, as the chain's last step starts
//! them on a node: a small VE on the crossover network and a web VE on the LAN, each
//! with its routed network in a network namespace of the test's own, watched by the
//! supervisor. Each round takes the time until the step is done and until both VEs
//! answer HTTP on port 80 (from the node, and the web VE from a LAN client), the
//! time the release takes, and the crun commands each ran; the last line gives
//! the medians (`TANDEM_VE_START_ROUNDS` sets the rounds, 1 by default):
//!
//! ```text
//! TANDEM_VE_START_ROUNDS=9 cargo test -p tandem-runtime --test ve_start -- --nocapture
//! ```
//!
//! VEs that cannot start are each reported by their number, and the step leaves none
//! of its VEs running.
//!
//! Runs as root (crun). Needs Debian packages crun, busybox-static and iproute2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crun_rig;
mod rig;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crun_rig::CrunRig;
use tandem_core::ve_health::RestartPolicy;
use tandem_runtime::resources::Resource as _;
use tandem_runtime::ve::health::VeSupervisor;
use tandem_runtime::ve::manager::OnbootVes;

const SMALL: (u32, Ipv4Addr) = (1, Ipv4Addr::new(192, 168, 255, 11));
const WEB: (u32, Ipv4Addr) = (101, Ipv4Addr::new(10, 77, 0, 50));

/// Network namespaces standing in for the node and its LAN: the node's uplink `up0`
/// reaches a LAN client at 10.77.0.9 (a namespace of its own); its crossover `int0`
/// is a veth whose other end stays in the node's namespace.
struct NodeNs {
    node: String,
    lan: String,
}

impl NodeNs {
    fn new() -> NodeNs {
        rig::need_tool("ip", "iproute2");
        let ns = NodeNs {
            node: format!("tvs-node-{}", std::process::id()),
            lan: format!("tvs-lan-{}", std::process::id()),
        };
        let (node, lan) = (ns.node.as_str(), ns.lan.as_str());
        rig::sh(&["ip", "netns", "add", node]);
        rig::sh(&["ip", "netns", "add", lan]);
        rig::sh(&[
            "ip", "-n", node, "link", "add", "up0", "type", "veth", "peer", "name", "lan0",
            "netns", lan,
        ]);
        rig::sh(&[
            "ip", "-n", node, "link", "add", "int0", "type", "veth", "peer", "name", "int0p",
        ]);
        for (ns, dev, addr) in [
            (node, "up0", "10.77.0.1/24"),
            (node, "int0", "192.168.255.1/24"),
            (lan, "lan0", "10.77.0.9/24"),
        ] {
            rig::sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        }
        for (ns, dev) in [
            (node, "up0"),
            (node, "int0"),
            (node, "int0p"),
            (node, "lo"),
            (lan, "lan0"),
            (lan, "lo"),
        ] {
            rig::sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        ns
    }
}

impl Drop for NodeNs {
    fn drop(&mut self) {
        for ns in [&self.node, &self.lan] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

fn policy() -> RestartPolicy {
    RestartPolicy {
        first_delay: Duration::from_secs(60),
        max_delay: Duration::from_secs(60),
        give_up_after: 1,
        window: Duration::from_secs(60),
        check_failures: 3,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether the web server at `addr` answers `GET /` with the built-in template's page.
fn answers(addr: Ipv4Addr) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&SocketAddr::from((addr, 80)), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut text = String::new();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok()
        && s.read_to_string(&mut text).is_ok()
        && text.contains("tandem VE")
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

#[test]
fn the_ves_of_a_takeover_start_and_answer() {
    let rounds: usize = std::env::var("TANDEM_VE_START_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let ns = NodeNs::new();
    let mut rig = CrunRig::new();
    rig.ves.layout.uplinks = vec![
        (Ipv4Addr::new(192, 168, 255, 0), 24, "int0".to_owned()),
        (Ipv4Addr::UNSPECIFIED, 0, "up0".to_owned()),
    ];
    for (id, ip) in [SMALL, WEB] {
        rig.create_at(id, "ONBOOT=\"yes\"\n", &[ip]);
    }
    let rig = std::sync::Arc::new(rig);
    let r = std::sync::Arc::clone(&rig);
    let lan = ns.lan.clone();
    rig::in_netns(&ns.node, move || {
        let rig = r;
        runtime().block_on(async {
            let sup = VeSupervisor::new(rig.ves.clone(), policy());
            sup.run(std::sync::Arc::new(|e| eprintln!("event {}: {}", e.kind, e.text)));
            let mut step = OnbootVes::new(rig.ves.clone(), 1, Duration::from_millis(10))
                .watched_by(sup.clone());
            let (mut done, mut answering, mut from_lan, mut released) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            // The first round shifts the private areas to the VEs' user IDs, which
            // a node did when the VEs first ran: not counted.
            for round in 0..=rounds {
                // A LAN client that does not know the web VE's address yet.
                rig::sh(&["ip", "-n", &lan, "neigh", "flush", "all"]);
                rig.take_crun_calls();
                let t = Instant::now();
                step.acquire().await.unwrap();
                let started = t.elapsed();
                let calls = rig.take_crun_calls();
                for (id, _) in [SMALL, WEB] {
                    assert!(rig.ves.is_running(id), "VE {id} does not run");
                }
                // Blocking connects, off the loop that watches the VEs.
                let lan_ns = lan.clone();
                let (up, lan_up) = tokio::task::spawn_blocking(move || {
                    let limit = Instant::now() + Duration::from_secs(10);
                    let mut waiting = vec![SMALL.1, WEB.1];
                    while !waiting.is_empty() && Instant::now() < limit {
                        waiting.retain(|a| !answers(*a));
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    assert!(waiting.is_empty(), "{waiting:?} do not answer");
                    let up = t.elapsed();
                    let lan_up = rig::in_netns(&lan_ns, move || {
                        while !answers(WEB.1) {
                            assert!(Instant::now() < limit, "the LAN does not reach the web VE");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        t.elapsed()
                    });
                    (up, lan_up)
                })
                .await
                .unwrap();
                println!(
                    "round {round}: step done in {} ms, both VEs answer the node after {} ms, the web VE the LAN after {} ms; {} crun commands: {}",
                    started.as_millis(),
                    up.as_millis(),
                    lan_up.as_millis(),
                    calls.len(),
                    calls.join(" ")
                );
                // One crun list for all, then create and start each.
                assert!(calls.len() <= 5, "{calls:?}");
                if round > 0 {
                    done.push(started);
                    answering.push(up);
                    from_lan.push(lan_up);
                } else {
                    // VEs running already (clusterd started again) are watched, not
                    // started again: one crun list says so.
                    rig.take_crun_calls();
                    step.acquire().await.unwrap();
                    assert_eq!(rig.take_crun_calls(), ["list"]);
                    for (id, _) in [SMALL, WEB] {
                        assert!(rig.ves.is_running(id), "VE {id} does not run");
                    }
                    rig.take_crun_calls();
                }
                rig.take_crun_calls();
                let t = Instant::now();
                step.release().await.unwrap();
                let gone = t.elapsed();
                let calls = rig.take_crun_calls();
                println!(
                    "round {round}: released in {} ms; {} crun commands: {}",
                    gone.as_millis(),
                    calls.len(),
                    calls.join(" ")
                );
                if round > 0 {
                    released.push(gone);
                }
            }
            println!(
                "median of {rounds}: step done in {} ms, both VEs answer the node after {} ms, the web VE the LAN after {} ms; released in {} ms",
                median(&done).as_millis(),
                median(&answering).as_millis(),
                median(&from_lan).as_millis(),
                median(&released).as_millis()
            );
        });
    });
}

#[test]
fn ves_that_cannot_start_are_each_named_and_none_is_left_running() {
    let rig = CrunRig::new();
    for id in [71, 72, 73] {
        rig.create(id, "ONBOOT=\"yes\"\n");
    }
    // VE 72 has lost its root filesystem, VE 73 its first program.
    std::fs::rename(rig.private(72), rig.dir.path().join("elsewhere")).unwrap();
    std::fs::remove_file(rig.private(73).join("sbin/init")).unwrap();
    runtime().block_on(async {
        let sup = VeSupervisor::new(rig.ves.clone(), policy());
        sup.run(std::sync::Arc::new(|e| {
            eprintln!("event {}: {}", e.kind, e.text)
        }));
        let mut step =
            OnbootVes::new(rig.ves.clone(), 1, Duration::from_millis(10)).watched_by(sup.clone());
        let e = step.acquire().await.unwrap_err();
        let text = tandem_runtime::error_chain(&e);
        assert!(
            text.contains("VE 72 did not start: finding the root filesystem"),
            "{text}"
        );
        assert!(text.contains("VE 73 did not start: crun"), "{text}");
        assert!(!text.contains("VE 71"), "{text}");
        for id in [71, 72, 73] {
            assert!(!rig.ves.is_running(id), "VE {id} runs");
            assert!(
                !rig.crun(&["state", &format!("ve{id}")]).status.success(),
                "crun still knows VE {id}"
            );
        }
        let states: Vec<(u32, String)> = sup.views().into_iter().map(|v| (v.id, v.state)).collect();
        assert_eq!(states, [(71, "stopped".to_owned())]);
    });
}
