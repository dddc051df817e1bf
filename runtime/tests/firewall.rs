//! The packet filter with the real `nft` in network namespaces (see `lab`): the ruleset
//! of `tandem firewall apply` in node1's namespace, listeners standing in for the
//! configuration sync, DRBD, the heartbeat and the web console, and probes from the
//! other node, an outsider on the external LAN and an admin host.
//!
//! Runs as root (namespaces). Needs Debian packages iproute2 and nftables.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

mod lab;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;

use lab::*;
use tandem_config::NodeId;
use tandem_runtime::firewall::{self, ApplyError, Interfaces};

const NFT: &str = "/usr/sbin/nft";

fn tandem(ns: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_tandem")])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn nft_list(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, NFT, "list", "ruleset"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Listeners {
    _tcp: Vec<TcpListener>,
    hb_internal: UdpSocket,
    hb_external: UdpSocket,
    _outsider: TcpListener,
}

fn listen(lab: &Lab, hb: u16, drbd: u16) -> Listeners {
    let (tcp, hb_internal, hb_external) = in_netns(&lab.node1, move || {
        let tcp = vec![
            TcpListener::bind((NODE1_INT, hb)).unwrap(),
            TcpListener::bind((NODE1_INT, drbd)).unwrap(),
            TcpListener::bind(("0.0.0.0", 443)).unwrap(),
            TcpListener::bind(("0.0.0.0", 22)).unwrap(),
            TcpListener::bind(("127.0.0.1", 8000)).unwrap(),
        ];
        (
            tcp,
            UdpSocket::bind((NODE1_INT, hb)).unwrap(),
            UdpSocket::bind((NODE1_EXT, hb)).unwrap(),
        )
    });
    let outsider = in_netns(&lab.outsider, || {
        TcpListener::bind((OUTSIDER, 8080)).unwrap()
    });
    Listeners {
        _tcp: tcp,
        hb_internal,
        hb_external,
        _outsider: outsider,
    }
}

/// Every flow of the ruleset: `(what, reached)`.
fn flows(lab: &Lab, l: &Listeners, hb: u16, drbd: u16) -> Vec<(&'static str, bool)> {
    vec![
        (
            "outsider -> crossover config sync",
            tcp_reaches(&lab.outsider, NODE1_INT, hb),
        ),
        (
            "outsider -> crossover drbd",
            tcp_reaches(&lab.outsider, NODE1_INT, drbd),
        ),
        (
            "outsider -> external web console",
            tcp_reaches(&lab.outsider, NODE1_EXT, 443),
        ),
        (
            "outsider -> external ssh",
            tcp_reaches(&lab.outsider, NODE1_EXT, 22),
        ),
        (
            "outsider -> external heartbeat",
            udp_reaches(&lab.outsider, NODE1_EXT, hb, &l.hb_external),
        ),
        (
            "peer -> crossover config sync",
            tcp_reaches(&lab.node2, NODE1_INT, hb),
        ),
        (
            "peer -> crossover drbd",
            tcp_reaches(&lab.node2, NODE1_INT, drbd),
        ),
        (
            "peer -> crossover heartbeat",
            udp_reaches(&lab.node2, NODE1_INT, hb, &l.hb_internal),
        ),
        (
            "peer -> external heartbeat",
            udp_reaches(&lab.node2, NODE1_EXT, hb, &l.hb_external),
        ),
        (
            "peer (external LAN) -> web console",
            tcp_reaches(&lab.node2, NODE1_EXT, 443),
        ),
        (
            "admin -> web console",
            tcp_reaches(&lab.admin, NODE1_EXT, 443),
        ),
        ("admin -> ssh", tcp_reaches(&lab.admin, NODE1_EXT, 22)),
        (
            "admin -> crossover drbd",
            tcp_reaches(&lab.admin, NODE1_INT, drbd),
        ),
        ("node1 loopback", tcp_reaches(&lab.node1, "127.0.0.1", 8000)),
        (
            "node1 -> outsider (replies come back)",
            tcp_reaches(&lab.node1, OUTSIDER, 8080),
        ),
    ]
}

const ALLOWED: &[&str] = &[
    "peer -> crossover config sync",
    "peer -> crossover drbd",
    "peer -> crossover heartbeat",
    "peer -> external heartbeat",
    "admin -> web console",
    "admin -> ssh",
    "node1 loopback",
    "node1 -> outsider (replies come back)",
];

fn check(got: &[(&str, bool)]) {
    let wrong: Vec<String> = got
        .iter()
        .filter(|(what, reached)| *reached != ALLOWED.contains(what))
        .map(|(what, reached)| format!("{what}: {}", if *reached { "reached" } else { "refused" }))
        .collect();
    assert!(wrong.is_empty(), "flows not as the ruleset says: {wrong:?}");
}

#[test]
fn forbidden_flows_are_dropped_allowed_ones_work_and_a_broken_ruleset_changes_nothing() {
    need_tool(NFT, "nftables");
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::new(work.path());
    let cfg = config();
    let hb = cfg.heartbeat.udp_port.get();
    let drbd = cfg.replication.port.get();
    let cfg_path = work.path().join("cluster.toml");
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();
    let l = listen(&lab, hb, drbd);

    // Without a filter every flow gets through: the outsider reaches the crossover
    // services through node1 (what the filter is for).
    let open = flows(&lab, &l, hb, drbd);
    assert!(open.iter().all(|(_, r)| *r), "{open:?}");

    // The ruleset `tandem firewall show` prints is the one applied.
    let file = work.path().join("firewall.nft");
    let src = [
        "--config",
        cfg_path.to_str().unwrap(),
        "--node",
        "node1",
        "--external-if",
        "ext",
        "--internal-if",
        "xo",
    ];
    let (ok, shown, err) = tandem(&lab.node1, &[&["firewall", "show"][..], &src].concat());
    assert!(ok, "{err}");
    let ifs = Interfaces {
        external: "ext".into(),
        internal: "xo".into(),
    };
    assert_eq!(shown, firewall::ruleset(&cfg, NodeId::Node1, &ifs));
    let t0 = std::time::Instant::now();
    let (ok, out, err) = tandem(
        &lab.node1,
        &[
            &["firewall", "apply", "--file", file.to_str().unwrap()][..],
            &src,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    eprintln!("applied in {:?}: {out}", t0.elapsed());
    assert!(out.contains("in effect"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shown);
    let loaded = nft_list(&lab.node1);
    assert!(loaded.contains("table inet tandem"), "{loaded}");
    check(&flows(&lab, &l, hb, drbd));

    // Applying again replaces the table (no duplicate rules).
    let (ok, _, err) = tandem(
        &lab.node1,
        &[
            &["firewall", "apply", "--file", file.to_str().unwrap()][..],
            &src,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert_eq!(nft_list(&lab.node1), loaded);

    // A broken ruleset (it would open everything, then fails) is refused by the check:
    // the previous ruleset stays loaded, its file unchanged, every flow as before.
    let broken = "table inet tandem {}\ndelete table inet tandem\n\
                  table inet tandem {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tip saddr 300.1.2.3 accept\n\t}\n}\n";
    let f2 = file.clone();
    let e = in_netns(&lab.node1, move || {
        firewall::apply(Path::new(NFT), broken, &f2).unwrap_err()
    });
    assert!(matches!(e, ApplyError::Refused { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("the previous ruleset stays in effect") && msg.contains("Error"),
        "{msg}"
    );
    eprintln!("refused: {msg}");
    assert_eq!(nft_list(&lab.node1), loaded);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), shown);
    check(&flows(&lab, &l, hb, drbd));

    // The same through the command line: a configuration that does not validate is
    // refused before nft runs, naming the field.
    let bad = cfg
        .to_toml()
        .replace("\"192.0.2.64/28\"", "\"192.0.2.64/40\"");
    let bad_path = work.path().join("bad.toml");
    std::fs::write(&bad_path, bad).unwrap();
    let (ok, _, err) = tandem(
        &lab.node1,
        &[
            "firewall",
            "apply",
            "--file",
            file.to_str().unwrap(),
            "--config",
            bad_path.to_str().unwrap(),
            "--node",
            "node1",
        ],
    );
    assert!(!ok);
    assert!(err.contains("access.admin-networks[0]"), "{err}");
    assert_eq!(nft_list(&lab.node1), loaded);

    // The outbound list of the same configuration.
    let (ok, out, err) = tandem(&lab.node1, &[&["firewall", "outbound"][..], &src].concat());
    assert!(ok, "{err}");
    assert!(out.contains("192.0.2.53") && out.contains("DNS"), "{out}");
    assert!(out.contains("ping node"), "{out}");
    assert!(out.contains("update server"), "{out}");
}

/// clusterd's events, `(kind, text)`.
fn events(sock: &Path) -> Vec<(String, String)> {
    tandem_api::Client::connect(sock)
        .ok()
        .and_then(|mut c| c.events(usize::MAX).ok())
        .map(|v| v.into_iter().map(|e| (e.kind, e.text)).collect())
        .unwrap_or_default()
}

fn wait_for(what: &str, log: &Path, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// clusterd in node1's namespace; killed by its PID when dropped (`ip netns exec`
/// execs clusterd).
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn clusterd_puts_the_ruleset_in_effect_at_start_and_with_each_change() {
    need_tool(NFT, "nftables");
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::new(work.path());
    let mut cfg = config();
    // No serial cable in the lab.
    cfg.heartbeat.serial.enabled = false;
    // The node's store with the committed configuration, as on an installed node.
    let store = work.path().join("store");
    let st = tandem_config::Store::open(&store).unwrap();
    st.stage(&cfg).unwrap();
    st.commit().unwrap();
    std::fs::write(store.join("node"), "node1").unwrap();
    let sock = work.path().join("control.sock");
    let file = work.path().join("firewall.nft");
    let ssh_dir = work.path().join("ssh");
    // Stands for the node's /etc/shadow.
    let shadow = work.path().join("shadow");
    std::fs::write(&shadow, "root:*:20000::::::\nsshd:!:20000::::::\n").unwrap();
    let log = work.path().join("clusterd.log");
    assert!(!nft_list(&lab.node1).contains("table inet tandem"));
    let _daemon = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &lab.node1, env!("CARGO_BIN_EXE_clusterd")])
            .args(["--node", "node1", "--config"])
            .arg(store.join("config.toml"))
            .arg("--store")
            .arg(&store)
            .args(["--firewall", "--external-if", "ext", "--internal-if", "xo"])
            .arg("--firewall-file")
            .arg(&file)
            .arg("--sshd-dir")
            .arg(&ssh_dir)
            .arg("--sshd-shadow")
            .arg(&shadow)
            .arg("--control")
            .arg(&sock)
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .args(["--board", "none"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the firewall event", &log, || {
        events(&sock).iter().any(|(k, _)| k == "firewall")
    });
    let ev = events(&sock);
    let (_, text) = ev.iter().find(|(k, _)| k == "firewall").unwrap();
    assert!(text.contains("in effect"), "{text}");
    let ifs = Interfaces {
        external: "ext".into(),
        internal: "xo".into(),
    };
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        firewall::ruleset(&cfg, NodeId::Node1, &ifs)
    );
    let loaded = nft_list(&lab.node1);
    assert!(loaded.contains("table inet tandem"), "{loaded}");
    // The outsider is kept off the crossover services by the ruleset clusterd loaded.
    let l = in_netns(&lab.node1, || TcpListener::bind((NODE1_INT, 7788)).unwrap());
    assert!(!tcp_reaches(&lab.outsider, NODE1_INT, 7788));
    assert!(tcp_reaches(&lab.node2, NODE1_INT, 7788));
    drop(l);

    // A configuration change (this node only: the other node is not running) with
    // another admin network, a key for root and password login: the ruleset, sshd's
    // files and root's line of the shadow file follow.
    let mut next = cfg.clone();
    next.cluster.revision += 1;
    next.access.admin_networks = vec!["198.51.100.0/24".parse().unwrap()];
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya ops@lab";
    next.access.root_authorized_keys = vec![key.parse().unwrap()];
    next.access.password_login = true;
    let next_path = work.path().join("next.toml");
    std::fs::write(&next_path, next.to_toml()).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node1, env!("CARGO_BIN_EXE_tandem")])
        .arg("--control")
        .arg(&sock)
        .arg("apply")
        .arg(&next_path)
        .arg("--this-node-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the new ruleset", &log, || {
        nft_list(&lab.node1).contains("198.51.100.0/24")
    });
    assert!(!nft_list(&lab.node1).contains("192.0.2.64/28"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        firewall::ruleset(&next, NodeId::Node1, &ifs)
    );
    wait_for("sshd's new files", &log, || {
        std::fs::read_to_string(ssh_dir.join("authorized_keys")).is_ok_and(|k| {
            k == tandem_runtime::sshd::files(&next, NodeId::Node1, &[], &ssh_dir).authorized_keys
                && k.starts_with(&format!("{key}\n"))
        })
    });
    let conf = std::fs::read_to_string(ssh_dir.join("sshd_config")).unwrap();
    assert!(
        conf.contains("AllowUsers root@192.168.100.0/24 root@198.51.100.0/24"),
        "{conf}"
    );
    assert!(conf.contains("\nPasswordAuthentication yes\n"), "{conf}");
    let crypt = next.passwords.root_node1_crypt.as_ref().unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&shadow)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("root:{crypt}:")), "{lines:?}");
    assert_eq!(lines[1], "sshd:!:20000::::::");
    let ev = events(&sock);
    assert_eq!(
        ev.iter().filter(|(k, _)| k == "firewall").count(),
        2,
        "{ev:?}"
    );
    assert!(ev.iter().any(|(k, _)| k == "ssh"), "{ev:?}");
}

/// A VE on node1 as the node makes one (`ve/net.rs`): a veth pair with the node's end
/// `ve101h`, the VE's address routed to it and answered for on the external LAN by a
/// proxy neighbour entry; forwarding on.
struct Ve {
    ns: String,
}

const VE_ADDR: &str = "192.0.2.101";

impl Ve {
    fn on_node1(lab: &Lab) -> Ve {
        let ve = Ve {
            ns: format!("{}ve", lab.node1),
        };
        let (n1, ns) = (lab.node1.as_str(), ve.ns.as_str());
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "-n", n1, "link", "add", "ve101h", "type", "veth", "peer", "name", "eth0",
            "netns", ns,
        ]);
        sh(&["ip", "-n", n1, "link", "set", "ve101h", "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{VE_ADDR}/32"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns, "route", "add", "default", "dev", "eth0"]);
        sh(&[
            "ip",
            "-n",
            n1,
            "route",
            "add",
            &format!("{VE_ADDR}/32"),
            "dev",
            "ve101h",
        ]);
        sh(&[
            "ip", "-n", n1, "neigh", "add", "proxy", VE_ADDR, "dev", "ext",
        ]);
        for (ns, key) in [
            (n1, "net.ipv4.ip_forward=1"),
            (n1, "net.ipv4.conf.ve101h.proxy_arp=1"),
            // Answered at once, as the node does (not up to 0.8 s later).
            (n1, "net.ipv4.neigh.ext.proxy_delay=0"),
            // node2 answers the outsider and the VE on the LAN, not on the crossover
            // their packets came in on: no strict reverse-path check.
            (lab.node2.as_str(), "net.ipv4.conf.all.rp_filter=0"),
            (lab.node2.as_str(), "net.ipv4.conf.xo.rp_filter=0"),
        ] {
            sh(&["ip", "netns", "exec", ns, "sysctl", "-q", "-w", key]);
        }
        ve
    }
}

impl Drop for Ve {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn only_the_ves_traffic_is_forwarded_through_the_node() {
    need_tool(NFT, "nftables");
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::new(work.path());
    let ve = Ve::on_node1(&lab);
    let cfg = config();
    let drbd = cfg.replication.port.get();
    let _ve_web = in_netns(&ve.ns, || TcpListener::bind((VE_ADDR, 80)).unwrap());
    let _peer_drbd = in_netns(&lab.node2, move || {
        TcpListener::bind((NODE2_INT, drbd)).unwrap()
    });
    let _own_drbd = in_netns(&lab.node1, move || {
        TcpListener::bind((NODE1_INT, drbd)).unwrap()
    });
    let _outsider = in_netns(&lab.outsider, || {
        TcpListener::bind((OUTSIDER, 8080)).unwrap()
    });
    let flows = || {
        vec![
            (
                "outsider -> VE web",
                tcp_reaches(&lab.outsider, VE_ADDR, 80),
            ),
            ("admin -> VE web", tcp_reaches(&lab.admin, VE_ADDR, 80)),
            ("VE -> outsider", tcp_reaches(&ve.ns, OUTSIDER, 8080)),
            (
                "outsider -> the other node's drbd, routed through node1",
                tcp_reaches(&lab.outsider, NODE2_INT, drbd),
            ),
            (
                "VE -> the other node's drbd",
                tcp_reaches(&ve.ns, NODE2_INT, drbd),
            ),
            ("VE -> node1's drbd", tcp_reaches(&ve.ns, NODE1_INT, drbd)),
        ]
    };
    // Without the filter the node routes everything.
    let open = flows();
    assert!(open.iter().all(|(_, r)| *r), "{open:?}");

    let ifs = Interfaces {
        external: "ext".into(),
        internal: "xo".into(),
    };
    let text = firewall::ruleset(&cfg, NodeId::Node1, &ifs);
    let file = work.path().join("firewall.nft");
    in_netns(&lab.node1, move || {
        firewall::apply(Path::new(NFT), &text, &file).unwrap();
    });
    let got = flows();
    let allowed = ["outsider -> VE web", "admin -> VE web", "VE -> outsider"];
    let wrong: Vec<String> = got
        .iter()
        .filter(|(what, reached)| *reached != allowed.contains(what))
        .map(|(what, reached)| format!("{what}: {}", if *reached { "reached" } else { "refused" }))
        .collect();
    assert!(
        wrong.is_empty(),
        "forwarded flows not as the ruleset says: {wrong:?}"
    );
}
