//! Two real clusterd processes in network namespaces (see `rig`): a veth "crossover",
//! a bridged "external" LAN whose namespace also plays the ping node and the router
//! that must learn the service address from gratuitous ARP, and a pty pair joined by
//! socat as the serial cable. Every link can be cut. Fast profile: keepalive 200 ms,
//! deadtime 1 s.
//!
//! Runs as root (namespaces, raw sockets). Needs Debian packages iproute2 and socat.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod rig;

use std::net::UdpSocket;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rig::*;
use tandem_api::{Client, StatusJson};

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
    // As if the router had learnt node2's MAC for the address during the split brain
    // (node2's own announcements went nowhere: its LAN port is down). The pause keeps
    // the kernel's ARP locktime from hiding node1's announcement below.
    let (mac1, mac2) = (rig.mac(0), rig.mac(1));
    sh(&[
        "ip",
        "-n",
        &rig.lan,
        "neigh",
        "replace",
        VIP,
        "lladdr",
        &mac2,
        "dev",
        "br0",
        "nud",
        "reachable",
    ]);
    thread::sleep(Duration::from_millis(1100));
    rig.cut_internal(false);
    rig.cut_external(1, false);
    rig.cut_serial(false);
    // Equal ping reach once node2 is back on the LAN: node1 stays by policy.
    rig.wait_roles("active", "passive", Duration::from_secs(6));
    // The survivor announces its addresses again once node2 has released them.
    wait_until("router back on node1's MAC", Duration::from_secs(3), || {
        rig.lan_neigh_vip().contains(&mac1)
    });
    assert!(event_kinds(&rig.events(0)).contains(&"announce"));
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
    // The active alone loses it, and only it: a blackhole route to the ping node in
    // node1's namespace. Its LAN port stays up, so the external heartbeat path keeps
    // delivering and the ping-node rule is what moves the services: hand over to node2.
    let blackhole = |op: &str| {
        sh(&[
            "ip",
            "-n",
            rig.ns(0),
            "route",
            op,
            "blackhole",
            &format!("{PING_NODE}/32"),
        ]);
    };
    blackhole("add");
    rig.wait_roles("passive", "active", Duration::from_secs(6));
    let ev = rig.events(0);
    assert!(
        ev.iter()
            .any(|(k, t)| k == "role_changed" && t.contains("ping node")),
        "{ev:?}"
    );
    assert!(rig.has_vip(1));
    assert!(!rig.has_vip(0));
    for i in 0..2 {
        let st = rig.status(i);
        assert!(
            st.paths.iter().all(|p| p.state == "up"),
            "node{}: every heartbeat path, the external one too, stayed up: {:?}",
            i + 1,
            st.paths
        );
        assert_eq!(st.ping_nodes[0].reachable, i == 1, "node{}", i + 1);
    }
    for i in 0..2 {
        let ev = rig.events(i);
        assert!(
            !ev.iter().any(|(k, _)| k == "path_down" || k == "peer_dead"),
            "node{}: {ev:?}",
            i + 1
        );
    }
    blackhole("del");
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
            your_generation: 0,
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
    let mut raw = std::os::unix::net::UnixStream::connect(&rig.nodes[1].control).unwrap();
    std::io::Write::write_all(
        &mut raw,
        b"{\"version\":2,\"request\":\"reboot-everything\"}\n",
    )
    .unwrap();
    let mut reply = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(raw), &mut reply).unwrap();
    let r: tandem_api::wire::ReplyLine = serde_json::from_str(&reply).unwrap();
    assert!(!r.reply.is_ok());
    assert!(
        r.reply
            .refusal()
            .unwrap()
            .to_string()
            .contains("unknown request"),
        "{reply}"
    );
    assert_eq!(rig.status(1).counters.bad_requests, 1);
}

/// Gratuitous ARPs for `ip` seen in the calling thread's namespace for `dur`, with the
/// sender's MAC (lower-case, colon-separated) and when they were seen.
#[test]
fn released_node_stops_announcing_after_a_quick_switchover() {
    let mut rig = Rig::new();
    rig.start_both();
    rig.lan_learn_vip();
    let (mac1, mac2) = (rig.mac(0), rig.mac(1));
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let lan = rig.lan.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let capture = thread::spawn(move || {
        in_netns(&lan, move || {
            capture_garp(vip.octets(), Duration::from_secs(3), ready_tx)
        })
    });
    ready.recv().unwrap();
    let switchover = |i: usize| {
        let mut c = Client::connect(&rig.nodes[i].control).unwrap();
        let r = c.call(&tandem_api::Request::Switchover).unwrap();
        assert!(r.is_ok(), "{r:?}");
    };
    switchover(0);
    rig.wait_roles("passive", "active", Duration::from_secs(5));
    // Straight back, well inside node2's gap between announcements (1 s): node2
    // releases while its repeats are still pending.
    switchover(1);
    wait_until("address back on node1", Duration::from_secs(5), || {
        rig.has_vip(0) && rig.role(0) == "active"
    });
    // node1 acquires only after node2 released, so node2 is silent from here on.
    let released = Instant::now();
    let seen = capture.join().unwrap();
    assert!(
        seen.iter().any(|(_, m)| *m == mac2),
        "node2's own announcement not captured: {seen:?}"
    );
    let late: Vec<_> = seen
        .iter()
        .filter(|(t, m)| *m == mac2 && *t > released)
        .collect();
    assert!(late.is_empty(), "node2 announced after releasing: {late:?}");
    wait_until("router on node1's MAC", Duration::from_secs(2), || {
        rig.lan_neigh_vip().contains(&mac1)
    });
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
    // `tandem events --follow` on node2 streams the switchover as it happens.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(&rig.nodes[1].control)
        .args(["events", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (ltx, lrx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if ltx.send(line).is_err() {
                return;
            }
        }
    });
    // Asked on the active node.
    let out = tandem(0, &["switchover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = rig.wait_roles("passive", "active", Duration::from_secs(5));
    eprintln!("switchover node1 -> node2 in {took:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut streamed = false;
    while Instant::now() < deadline && !streamed {
        if let Ok(l) = lrx.recv_timeout(Duration::from_millis(100)) {
            streamed = l.contains("role_changed: passive -> acquiring");
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(streamed, "events --follow did not stream node2's takeover");
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

/// The boot generation survives a wall clock that steps back across a restart: node2's
/// last run (as its state directory says) had a generation an hour ahead of the clock
/// now. Restarted twice, it must still count up, or node1 would refuse every frame of
/// the new run as a replay of the old one.
#[test]
fn restart_with_the_clock_behind_the_last_generation_is_not_taken_for_a_replay() {
    let mut rig = Rig::new();
    rig.start_both();
    rig.kill(1);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let ahead = u64::try_from(wall.as_micros()).unwrap() + 3_600_000_000;
    let file = rig.nodes[1].state.join("generation");
    std::fs::write(&file, format!("{ahead}\n")).unwrap();
    for restart in 1..=2u64 {
        rig.start(1);
        rig.wait_roles("active", "passive", Duration::from_secs(6));
        let stored: u64 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(stored, ahead + restart);
        wait_until(
            "node1 accepts the restarted node2's frames",
            Duration::from_secs(3),
            || {
                let n = rig
                    .events(0)
                    .iter()
                    .filter(|(k, _)| k == "peer_restarted")
                    .count();
                u64::try_from(n).unwrap() == restart
            },
        );
        // Past the old run's deadtime: liveness now comes from the new run alone.
        thread::sleep(Duration::from_millis(DEADTIME_MS + KEEPALIVE_MS));
        let st = rig.status(0);
        assert!(st.peer.alive && st.paths.iter().all(|p| p.state == "up"));
        assert_eq!(rig.status(0).counters.replayed, 0);
        assert!(
            rig.events(1)
                .iter()
                .any(|(k, t)| k == "started" && t.contains(&format!("generation {stored}"))),
            "{:?}",
            rig.events(1)
        );
        rig.kill(1);
    }
}

#[test]
fn peer_with_another_configuration_is_reported_and_changes_no_role() {
    let mut rig = Rig::new();
    rig.start(0);
    rig.wait_roles("active", "unreachable", Duration::from_secs(6));
    // node2 runs a configuration that differs in one setting (a DNS search domain).
    let text = std::fs::read_to_string(rig.dir.join("cluster.toml")).unwrap();
    let mut cfg = tandem_config::ApplianceConfig::from_toml(&text).unwrap();
    cfg.network.dns_search = vec!["example.org".parse().unwrap()];
    let other = rig.dir.join("other.toml");
    std::fs::write(&other, cfg.to_toml()).unwrap();
    rig.start_with_config(1, &other);
    rig.wait_roles("active", "passive", Duration::from_secs(6));
    wait_until("mismatch reported on node1", Duration::from_secs(3), || {
        event_kinds(&rig.events(0)).contains(&"config_mismatch")
    });
    let st = rig.status(0);
    assert_eq!(st.peer.config_matches, Some(false));
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("different configuration")),
        "{:?}",
        st.warnings
    );
    assert!(st.counters.config_mismatch > 0);
    assert!(event_kinds(&rig.events(1)).contains(&"config_mismatch"));
    thread::sleep(Duration::from_millis(DEADTIME_MS));
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
}

/// `tandem apply` run on node `i` (in its namespace) with `args`: exit code, stdout,
/// stderr.
fn apply(rig: &Rig, i: usize, file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", rig.ns(i), env!("CARGO_BIN_EXE_tandem")])
        .arg("--control")
        .arg(&rig.nodes[i].control)
        .arg("apply")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn committed(rig: &Rig, i: usize) -> tandem_config::ApplianceConfig {
    tandem_config::Store::open(rig.store(i))
        .unwrap()
        .current()
        .unwrap()
        .unwrap()
}

/// The committed configuration of node `i` changed by `f`, with the next revision,
/// written to a file.
fn next_revision(
    rig: &Rig,
    i: usize,
    name: &str,
    f: impl FnOnce(&mut tandem_config::ApplianceConfig),
) -> std::path::PathBuf {
    let mut cfg = committed(rig, i);
    cfg.cluster.revision += 1;
    f(&mut cfg);
    let path = rig.dir.join(name);
    std::fs::write(&path, cfg.to_toml()).unwrap();
    path
}

#[test]
fn configuration_changes_reach_both_nodes_and_a_returning_node_catches_up() {
    let mut rig = Rig::new();
    rig.start_with_store(0);
    rig.start_with_store(1);
    rig.wait_roles("active", "passive", Duration::from_secs(10));
    let base = committed(&rig, 0).cluster.revision;

    // A change on node1 reaches node2 first, then node1; both put it in effect.
    let file = next_revision(&rig, 0, "notify.toml", |c| {
        c.notification.addresses = vec!["ops@example.com".parse().unwrap()];
        c.notification.relay_host = Some(format!("{PING_NODE}:2525").parse().unwrap());
    });
    let (code, out, err) = apply(&rig, 0, &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "revision {} in effect on both nodes (changed: notification)",
            base + 1
        )),
        "{out}"
    );
    for i in 0..2 {
        let c = committed(&rig, i);
        assert_eq!(c.cluster.revision, base + 1);
        assert_eq!(c.notification.addresses[0].to_string(), "ops@example.com");
    }
    let in_effect = format!("configuration revision {} in effect", base + 1);
    for i in 0..2 {
        wait_until("the change in effect", Duration::from_secs(5), || {
            rig.events(i)
                .iter()
                .any(|(k, t)| k == "config" && t.contains(&in_effect))
        });
    }
    wait_until("digests agree", Duration::from_secs(5), || {
        rig.status(0).peer.config_matches == Some(true)
            && rig.status(1).peer.config_matches == Some(true)
    });
    // The other node's facts come over the same link (the console's Home page).
    let f = Client::connect(&rig.nodes[0].control)
        .unwrap()
        .facts()
        .unwrap();
    assert_eq!(f.own.node, "node1");
    let peer = f.peer.expect("the other node's facts");
    assert_eq!((peer.node.as_str(), peer.revision), ("node2", base + 1));
    assert!(
        !peer.kernel.is_empty() && peer.version == f.own.version,
        "{peer:?}"
    );

    // A change of what only an activation may change is refused by node1 itself;
    // nothing changes anywhere.
    let bad = next_revision(&rig, 0, "port.toml", |c| {
        c.heartbeat.udp_port = 7001.try_into().unwrap();
    });
    let (code, _, err) = apply(&rig, 0, &bad, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("heartbeat.udp-port"), "{err}");
    assert!(err.contains("only a new configuration archive"), "{err}");
    // Garbage on the exchange port is refused and reported; nothing changes.
    let peer =
        std::net::SocketAddr::from((rig.internal[1], committed(&rig, 1).heartbeat.udp_port.get()));
    in_netns(rig.ns(0), move || {
        use std::io::Write as _;
        let mut s = std::net::TcpStream::connect(peer).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    });
    wait_until("garbage reported", Duration::from_secs(5), || {
        rig.events(1)
            .iter()
            .any(|(k, t)| k == "config" && t.contains("bad magic"))
    });
    for i in 0..2 {
        assert_eq!(committed(&rig, i).cluster.revision, base + 1);
    }

    // node2 is down: the change is refused as a whole unless made on node1 only.
    rig.kill(1);
    let file = next_revision(&rig, 0, "dns.toml", |c| {
        c.network.dns_search = vec!["example.org".parse().unwrap()];
    });
    let (code, _, err) = apply(&rig, 0, &file, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not answer") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(committed(&rig, 0).cluster.revision, base + 1);
    let (code, out, err) = apply(&rig, 0, &file, &["--this-node-only"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("this node only"), "{out}");
    assert!(
        out.contains("take effect when each node starts again"),
        "{out}"
    );
    assert_eq!(committed(&rig, 0).cluster.revision, base + 2);
    assert_eq!(committed(&rig, 1).cluster.revision, base + 1);

    // node2 comes back with the older revision and takes node1's.
    rig.start_with_store(1);
    wait_until("node2 catches up", Duration::from_secs(40), || {
        committed(&rig, 1).cluster.revision == base + 2
    });
    assert_eq!(committed(&rig, 1), committed(&rig, 0));
    wait_until("node1 reports it", Duration::from_secs(5), || {
        rig.events(0).iter().any(|(k, t)| {
            k == "config"
                && t.contains(&format!(
                    "the other node took this node's configuration revision {}",
                    base + 2
                ))
        })
    });
    wait_until("digests agree again", Duration::from_secs(5), || {
        rig.status(1).peer.config_matches == Some(true)
    });
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
}

#[test]
fn takeover_announces_the_service_address_five_times_a_second_apart() {
    let mut rig = Rig::new();
    rig.start_both();
    let mac2 = rig.mac(1);
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let lan = rig.lan.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let capture = thread::spawn(move || {
        in_netns(&lan, move || {
            capture_garp(vip.octets(), Duration::from_secs(7), ready_tx)
        })
    });
    ready.recv().unwrap();
    rig.kill(0);
    let seen = capture.join().unwrap();
    let node2 = announcements(&seen, &mac2);
    assert_eq!(node2.len(), 5, "{seen:?}");
    for w in node2.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(900) && gap <= Duration::from_millis(1500),
            "gap {gap:?} in {node2:?}"
        );
    }
}

/// The bursts among `announcements` (a burst: announcements less than 3 s apart):
/// when each began and how many it held.
fn bursts(announced: &[Instant]) -> Vec<(Instant, usize)> {
    let mut out: Vec<(Instant, usize)> = Vec::new();
    let mut last: Option<Instant> = None;
    for t in announced {
        match (last, out.last_mut()) {
            (Some(l), Some(b)) if *t - l < Duration::from_secs(3) => b.1 += 1,
            _ => out.push((*t, 1)),
        }
        last = Some(*t);
    }
    out
}

#[test]
fn garp_refresh_announces_periodically_while_active_only() {
    const REFRESH: Duration = Duration::from_secs(10);
    let mut rig = Rig::new();
    let mut cfg = tandem_config::ApplianceConfig::from_toml(&config_text()).unwrap();
    cfg.heartbeat.garp_refresh = Some(tandem_config::Millis::from_secs(10));
    let path = rig.dir.join("refresh.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
    let lan_ns = rig.lan.clone();
    let capture = |secs: u64| {
        let lan = lan_ns.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let h = thread::spawn(move || {
            in_netns(&lan, move || {
                capture_garp(vip.octets(), Duration::from_secs(secs), ready_tx)
            })
        });
        ready.recv().unwrap();
        h
    };
    let first = capture(30);
    rig.start_with_config(0, &path);
    rig.start_with_config(1, &path);
    rig.wait_roles("active", "passive", Duration::from_secs(10));
    let (mac1, mac2) = (rig.mac(0), rig.mac(1));
    let seen = first.join().unwrap();
    // The takeover's burst, then one burst per refresh interval, each of five ARPs a
    // second apart; nothing from the passive node.
    let b = bursts(&announcements(&seen, &mac1));
    assert!(b.len() >= 3, "{b:?} in {seen:?}");
    assert!(b.iter().take(3).all(|x| x.1 == 5), "{b:?}");
    for w in b.windows(2).take(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= REFRESH - Duration::from_millis(300)
                && gap <= REFRESH + Duration::from_millis(500),
            "refresh gap {gap:?} in {b:?}"
        );
    }
    assert!(announcements(&seen, &mac2).is_empty(), "{seen:?}");
    // After a switchover the refresh moves with the services: node1 is silent.
    let second = capture(13);
    let mut c = Client::connect(&rig.nodes[0].control).unwrap();
    let r = c.call(&tandem_api::Request::Switchover).unwrap();
    assert!(r.is_ok(), "{r:?}");
    rig.wait_roles("passive", "active", Duration::from_secs(5));
    let released = Instant::now();
    let seen = second.join().unwrap();
    let late: Vec<_> = seen
        .iter()
        .filter(|(t, m)| *m == mac1 && *t > released)
        .collect();
    assert!(late.is_empty(), "node1 announced after releasing: {late:?}");
    let b = bursts(&announcements(&seen, &mac2));
    assert_eq!(b.len(), 2, "{b:?} in {seen:?}");
    let gap = b[1].0 - b[0].0;
    assert!(
        gap >= REFRESH - Duration::from_millis(300) && gap <= REFRESH + Duration::from_millis(500),
        "refresh gap {gap:?} in {b:?}"
    );
}

#[test]
fn a_replication_split_brain_is_announced_until_resolved_and_survives_a_restart() {
    let mut rig = Rig::new();
    rig.start_with_store(0);
    rig.start_with_store(1);
    rig.wait_roles("active", "passive", Duration::from_secs(10));
    let socks = [rig.nodes[0].control.clone(), rig.nodes[1].control.clone()];
    let ask = |i: usize, r: tandem_api::Request| {
        let mut c = Client::connect(&socks[i]).unwrap();
        c.call(&r).unwrap()
    };
    // What DRBD's split-brain handler sends (as root).
    assert!(ask(1, tandem_api::Request::SplitBrainDetected).is_ok());
    let st = rig.status(1);
    assert!(st.split_brain);
    assert!(
        st.warnings
            .iter()
            .any(|w| w.starts_with("split brain of the replicated data")),
        "{:?}",
        st.warnings
    );
    assert!(
        rig.events(1)
            .iter()
            .any(|e| e.0 == "split_brain" && e.1.contains("nothing was discarded")),
        "{:?}",
        rig.events(1)
    );
    // A restart of clusterd still announces it.
    rig.kill(1);
    rig.start_with_store(1);
    assert!(rig.status(1).split_brain);
    // Resolution needs the cluster's name and a node name, and a data area.
    let refused = |r: tandem_api::Reply| r.refusal().map(ToString::to_string).unwrap_or_default();
    let r = ask(
        1,
        tandem_api::Request::ResolveSplitBrain {
            survivor: "node1".into(),
            confirm_name: "not-the-name".into(),
        },
    );
    assert!(refused(r).contains("is not the cluster's name"));
    let r = ask(
        1,
        tandem_api::Request::ResolveSplitBrain {
            survivor: "node3".into(),
            confirm_name: "x".into(),
        },
    );
    assert!(refused(r).contains("is not a node name"));
    let name = committed(&rig, 1).cluster.name.as_str().to_owned();
    let r = ask(
        1,
        tandem_api::Request::ResolveSplitBrain {
            survivor: "node1".into(),
            confirm_name: name,
        },
    );
    assert!(refused(r).contains("runs no replicated data area"));
    assert!(rig.status(1).split_brain);
}

/// clusterd's resident memory in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Datagrams sent to node2's LAN heartbeat port as fast as one thread can, for longer
/// than the deadtime: replays of node1's real frames, which node2 must check (MAC,
/// sequence) one by one. Its per-source input queue is full at once: the excess is
/// dropped and counted, memory does not grow with the flood, the crossover's and the
/// serial cable's heartbeats still get through (nothing fails over), the control API
/// keeps answering, and the drops are reported when they start and when they stopped.
#[test]
fn a_flood_of_lan_frames_is_dropped_and_counted_without_failover() {
    const FLOOD: Duration = Duration::from_secs(6);
    let mut rig = Rig::new();
    rig.start_both();
    let node2 = format!("{EXT_PREFIX}.2:694");
    let captured = in_netns(&rig.lan, || capture_udp("p1", 694, Duration::from_secs(1)));
    assert!(captured.len() >= 3, "captured {}", captured.len());
    let pid = rig.pid(1);
    let before = rig.status(1);
    assert_eq!(before.dropped, tandem_api::DroppedJson::default());
    let rss_before = rss_kib(pid);
    let lan = rig.lan.clone();
    let flood = thread::spawn(move || {
        in_netns(&lan, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < FLOOD {
                for f in &captured {
                    // A full socket buffer refuses now and then; the flood goes on.
                    if s.send_to(f, &node2).is_ok() {
                        sent += 1;
                    }
                }
            }
            sent
        })
    });
    let (mut rss_peak, mut slowest, mut polls) = (rss_before, Duration::ZERO, 0);
    while !flood.is_finished() {
        let t = Instant::now();
        let st = rig.status(1);
        slowest = slowest.max(t.elapsed());
        polls += 1;
        assert_eq!(st.role, "passive", "node2 during the flood: {st:?}");
        assert!(st.peer.alive, "node2 lost node1 during the flood: {st:?}");
        rss_peak = rss_peak.max(rss_kib(pid));
        thread::sleep(Duration::from_millis(200));
    }
    let sent = flood.join().unwrap();
    let after = rig.status(1);
    let d = after.dropped;
    eprintln!(
        "flood: {sent} datagrams in {FLOOD:?}; dropped {d:?}; accepted {} -> {}, replayed {} -> {}; \
         VmRSS {rss_before} KiB before, {rss_peak} KiB at most during; {polls} status requests, slowest {slowest:?}",
        before.counters.accepted,
        after.counters.accepted,
        before.counters.replayed,
        after.counters.replayed,
    );
    assert!(d.external > 0, "nothing dropped: {d:?} of {sent}");
    assert_eq!(
        (d.internal, d.serial),
        (0, 0),
        "the LAN flood crowded other paths out"
    );
    // The queue holds 32 datagrams of at most 2 KiB; allow the allocator its slack.
    assert!(
        rss_peak < rss_before + 8 * 1024,
        "memory grew with the flood: {rss_before} -> {rss_peak} KiB"
    );
    // Requests have their own queue: the flood slows them (the loop checks frames in
    // between, on a machine shared with builds) but never shuts them out.
    assert!(
        slowest < Duration::from_secs(3),
        "status took {slowest:?} during the flood"
    );
    // Node1's own heartbeats kept coming over the crossover and the serial cable.
    assert!(after.counters.accepted > before.counters.accepted);
    thread::sleep(Duration::from_millis(DEADTIME_MS));
    assert_eq!(
        (rig.role(0).as_str(), rig.role(1).as_str()),
        ("active", "passive")
    );
    // Only the start-up change (starting -> passive), and the peer never lost.
    let ev = rig.events(1);
    let kinds = event_kinds(&ev);
    assert_eq!(
        kinds.iter().filter(|k| **k == "role_changed").count(),
        1,
        "{ev:?}"
    );
    assert!(!kinds.contains(&"peer_dead"), "{ev:?}");
    assert!(!event_kinds(&rig.events(0)).contains(&"peer_dead"));
    // Reported once when dropping started, once when it has stopped (after five
    // quiet seconds).
    wait_until(
        "the end of the drops reported",
        Duration::from_secs(10),
        || {
            rig.events(1)
                .iter()
                .any(|(k, t)| k == "input_dropped" && t.contains("no longer full"))
        },
    );
    let reports: Vec<_> = rig
        .events(1)
        .into_iter()
        .filter(|(k, _)| k == "input_dropped")
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].1.contains("external"), "{reports:?}");
    assert_eq!(rig.status(1).dropped, d, "drops after the flood ended");
}
