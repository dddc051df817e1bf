//! A VE's routed network in network namespaces: a "node" namespace with an uplink to
//! a "LAN" namespace, and a process in a namespace of its own standing in for the
//! VE. After `attach` the LAN reaches the VE's address through the node (proxy ARP,
//! the node's MAC), the VE reaches the LAN, and `detach` takes it all away.
//! Needs root (run by `cargo xtask test`).

#![allow(clippy::unwrap_used)]

mod rig;

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tandem_runtime::ve::net::{attach, detach, link_names};

struct Setup {
    node: String,
    lan: String,
    ve: Child,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.ve.kill();
        let _ = self.ve.wait();
        for ns in [&self.node, &self.lan] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

const VE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);

fn setup() -> Setup {
    rig::need_tool("ip", "iproute2");
    rig::need_tool("socat", "socat");
    rig::need_tool("nsenter", "util-linux");
    let id = std::process::id();
    let (node, lan) = (format!("tvn-node-{id}"), format!("tvn-lan-{id}"));
    rig::sh(&["ip", "netns", "add", &node]);
    rig::sh(&["ip", "netns", "add", &lan]);
    rig::sh(&[
        "ip", "-n", &node, "link", "add", "up0", "type", "veth", "peer", "name", "lan0", "netns",
        &lan,
    ]);
    rig::sh(&[
        "ip",
        "-n",
        &node,
        "addr",
        "add",
        "10.77.0.1/24",
        "dev",
        "up0",
    ]);
    rig::sh(&[
        "ip",
        "-n",
        &lan,
        "addr",
        "add",
        "10.77.0.9/24",
        "dev",
        "lan0",
    ]);
    for (ns, dev) in [(&node, "up0"), (&lan, "lan0"), (&node, "lo"), (&lan, "lo")] {
        rig::sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    // The stand-in VE: a process in a network namespace of its own, started from the
    // node's namespace (ip netns exec and unshare exec, so this is its pid).
    let ve = Command::new("ip")
        .args(["netns", "exec", &node, "unshare", "-n", "sleep", "120"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Let the exec chain reach its own namespace.
    rig::wait_until(
        "the VE process has its own namespace",
        Duration::from_secs(5),
        || {
            std::fs::read_link(format!("/proc/{}/ns/net", ve.id()))
                .ok()
                .zip(
                    std::fs::read_link(format!("/run/netns/{node}"))
                        .ok()
                        .or(Some("x".into())),
                )
                .is_some()
                && std::fs::read_to_string(format!("/proc/{}/comm", ve.id()))
                    .is_ok_and(|c| c.trim() == "sleep")
        },
    );
    Setup { node, lan, ve }
}

fn run_in(ns: &str, f: impl std::future::Future<Output = ()> + Send + 'static) {
    rig::in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    });
}

/// Asks a one-shot server in the VE for its greeting, from the LAN.
fn ask_from_lan(s: &Setup) -> Option<String> {
    let pid = s.ve.id().to_string();
    let mut server = Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-n",
            "socat",
            "-T5",
            "TCP-LISTEN:8080,reuseaddr",
            "SYSTEM:echo hello-from-ve",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &s.lan,
            "socat",
            "-T3",
            "-",
            &format!("TCP:{VE_ADDR}:8080,connect-timeout=3"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[test]
fn the_lan_reaches_the_ve_through_the_node_and_not_after_detach() {
    let s = setup();
    let pid = s.ve.id();
    run_in(&s.node, async move {
        attach(101, pid, &[VE_ADDR], "up0").await.unwrap();
    });
    assert_eq!(ask_from_lan(&s).as_deref(), Some("hello-from-ve"));
    // The LAN learned the VE's address at the node's MAC (gratuitous/proxy ARP).
    let node_mac = rig::sh_out(&["ip", "-n", &s.node, "-br", "link", "show", "up0"]);
    let neigh = rig::sh_out(&["ip", "-n", &s.lan, "neigh", "show", &VE_ADDR.to_string()]);
    let mac = node_mac.split_whitespace().nth(2).unwrap_or("?").to_owned();
    assert!(
        neigh.contains(&mac),
        "LAN neighbour {neigh:?}, node MAC {mac}"
    );
    // The VE reaches the LAN.
    let pid_s = pid.to_string();
    let mut lan_server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &s.lan,
            "socat",
            "-T5",
            "TCP-LISTEN:8081,reuseaddr",
            "SYSTEM:echo hello-from-lan",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid_s,
            "-n",
            "socat",
            "-T3",
            "-",
            "TCP:10.77.0.9:8081,connect-timeout=3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = lan_server.kill();
    let _ = lan_server.wait();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-from-lan"
    );

    // Attaching again (a VE restarted after a crash) replaces the stale pair.
    run_in(&s.node, async move {
        attach(101, pid, &[VE_ADDR], "up0").await.unwrap();
    });
    assert_eq!(ask_from_lan(&s).as_deref(), Some("hello-from-ve"));
    run_in(&s.node, async move {
        detach(101, &[VE_ADDR], "up0").await.unwrap();
        detach(101, &[VE_ADDR], "up0").await.unwrap();
    });
    let (host, _) = link_names(101);
    let links = rig::sh_out(&["ip", "-n", &s.node, "-br", "link"]);
    assert!(!links.contains(&host), "{links}");
    assert_eq!(ask_from_lan(&s), None, "the VE is unreachable after detach");
}
