//! The node's packet filter (R14): an nftables ruleset generated from the cluster
//! configuration, and the list of outbound connections the customer's firewall must
//! allow.
//!
//! [`ruleset`] and [`outbound`] are pure: the same configuration gives the same text.
//! clusterd applies it at start and when `access` changes (addresses and ports change
//! only when the node starts again, as the network does: [`Setup::effective`]).
//! [`apply`] puts a ruleset in effect with the real `nft`: it writes the file, checks it
//! (`nft -c -f`), and only then loads it (`nft -f`) in one transaction that replaces the
//! `inet tandem` table as a whole. A ruleset `nft` refuses changes nothing: the previous
//! one stays in effect.
//!
//! What the ruleset accepts on input (everything else is dropped):
//! - packets of established and related connections, and loopback;
//! - from the other node's crossover address on the crossover port: the heartbeat (UDP),
//!   configuration sync and the node facts (TCP, both on the heartbeat's port number) and
//!   DRBD (TCP, the replication port), and SSH (TCP 22; the other node's key may only
//!   run the rolling update's few commands, see [`crate::update::peer`]);
//! - from the other node's external address on the external port: the heartbeat (UDP),
//!   when the external path is enabled;
//! - from the recovery network and the configured admin networks (`access.admin-networks`):
//!   the web console (TCP 80, 443), SSH (TCP 22) and ICMP echo requests.
//!
//!
//! What it forwards (everything else is dropped): the VEs' traffic only — between the
//! external LAN and the VEs with addresses on it, between the VEs, and from the other
//! node's crossover address to the VEs on the crossover network (VE 1), with the
//! replies. Nothing crosses between the external LAN and the crossover network (a host
//! that routes the crossover subnet through the node gets nowhere), and no VE opens a
//! connection into the crossover network.
//!
//! What it does not do: filter outbound packets, or a VE's ports (a VE's services are
//! its own); IPv6 is dropped on input except loopback and established connections.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_config::schema::HeartbeatPath;
use tandem_config::{ApplianceConfig, Ipv4Net, NodeId};

/// The nftables table the node owns (family `inet`).
pub const TABLE: &str = "tandem";
/// SSH.
pub const SSH_PORT: u16 = 22;
/// The web console's HTTP port (redirects to HTTPS).
pub const HTTP_PORT: u16 = 80;
/// The web console's HTTPS port.
pub const HTTPS_PORT: u16 = 443;
/// Where the node keeps the ruleset in effect.
pub const DEFAULT_RULESET_PATH: &str = "/run/tandem/firewall.nft";

/// The node's interfaces as the ruleset names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    /// The external port (first network port).
    pub external: String,
    /// The crossover port (second network port).
    pub internal: String,
}

/// The networks allowed to reach the web console and SSH: the recovery network, then
/// the configured admin networks.
#[must_use]
pub fn admin_networks(cfg: &ApplianceConfig) -> Vec<Ipv4Net> {
    let mut v = vec![tandem_config::recovery::NETWORK];
    for n in &cfg.access.admin_networks {
        if !v.contains(n) {
            v.push(*n);
        }
    }
    v
}

fn net_text(n: Ipv4Net) -> String {
    if n.prefix() == 32 {
        n.network().to_string()
    } else {
        format!("{}/{}", n.network(), n.prefix())
    }
}

/// The nftables ruleset of node `node` for `cfg`: one file for `nft -f`, which replaces
/// the `inet tandem` table atomically (an empty table is declared first so that the
/// delete works on a node without one).
#[must_use]
pub fn ruleset(cfg: &ApplianceConfig, node: NodeId, ifs: &Interfaces) -> String {
    let peer = node.peer();
    let own_int = cfg.network.node(node).internal_address.addr();
    let peer_int = cfg.network.node(peer).internal_address.addr();
    let peer_ext = cfg.network.node(peer).address.addr();
    let hb = cfg.heartbeat.udp_port.get();
    let drbd = cfg.replication.port.get();
    let admin: Vec<String> = admin_networks(cfg).into_iter().map(net_text).collect();
    let (ext, int) = (&ifs.external, &ifs.internal);

    let mut s = String::new();
    let _ = writeln!(
        s,
        "# tandem {} firewall, configuration revision {} (generated; do not edit)",
        node.name(),
        cfg.cluster.revision
    );
    let _ = writeln!(s, "table inet {TABLE} {{}}");
    let _ = writeln!(s, "delete table inet {TABLE}");
    let _ = writeln!(s, "table inet {TABLE} {{");
    let _ = writeln!(s, "\tset admin {{");
    let _ = writeln!(s, "\t\ttype ipv4_addr");
    let _ = writeln!(s, "\t\tflags interval");
    let _ = writeln!(s, "\t\telements = {{ {} }}", admin.join(", "));
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s);
    let _ = writeln!(s, "\tchain input {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook input priority filter; policy drop;"
    );
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(s, "\t\tiif \"lo\" accept");
    let cross = format!("iifname \"{int}\" ip saddr {peer_int} ip daddr {own_int}");
    if cfg.heartbeat.is_enabled(HeartbeatPath::Internal) {
        let _ = writeln!(s, "\t\t{cross} udp dport {hb} accept comment \"heartbeat\"");
    }
    let _ = writeln!(
        s,
        "\t\t{cross} tcp dport {hb} accept comment \"configuration sync\""
    );
    let _ = writeln!(s, "\t\t{cross} tcp dport {drbd} accept comment \"drbd\"");
    let _ = writeln!(
        s,
        "\t\t{cross} tcp dport {SSH_PORT} accept comment \"ssh of the other node (rolling update)\""
    );
    // The other node's side of the connections this node opened, accepted by address
    // and port, not only as conntrack's "established": conntrack calls packets of a
    // fast connection it picked up in mid-stream (DRBD connects before clusterd
    // loads the ruleset, so the window scaling of its SYN was never seen) "invalid",
    // and dropping them stalled replication until DRBD gave up on the peer (42 s,
    // ko-count × timeout, in the QEMU rig).
    let _ = writeln!(
        s,
        "\t\t{cross} tcp sport {{ {hb}, {drbd} }} accept comment \"replies of configuration sync and drbd\""
    );
    let _ = writeln!(s, "\t\tct state invalid drop");
    if cfg.heartbeat.is_enabled(HeartbeatPath::External) {
        let _ = writeln!(
            s,
            "\t\tiifname \"{ext}\" ip saddr {peer_ext} udp dport {hb} accept comment \"heartbeat\""
        );
    }
    let _ = writeln!(
        s,
        "\t\tip saddr @admin tcp dport {{ {SSH_PORT}, {HTTP_PORT}, {HTTPS_PORT} }} accept comment \"ssh, web console\""
    );
    let _ = writeln!(
        s,
        "\t\tip saddr @admin icmp type echo-request accept comment \"ping\""
    );
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s);
    forward_chain(&mut s, cfg, node, ifs);
    let _ = writeln!(s, "}}");
    s
}

/// The node forwards only the VEs' traffic: between the external LAN and the VEs on
/// it, between the VEs, and from the other node to the VEs on the crossover network
/// (VE 1); replies of those. Nothing crosses between the external LAN and the
/// crossover network, and no VE opens a connection into the crossover network.
fn forward_chain(s: &mut String, cfg: &ApplianceConfig, node: NodeId, ifs: &Interfaces) {
    let (ext, int) = (&ifs.external, &ifs.internal);
    let xnet = net_text(cfg.network.internal_net(node));
    let peer_int = cfg.network.node(node.peer()).internal_address.addr();
    let ve = VE_LINKS;
    let _ = writeln!(s, "\tchain forward {{");
    let _ = writeln!(
        s,
        "\t\ttype filter hook forward priority filter; policy drop;"
    );
    let _ = writeln!(s, "\t\tct state established,related accept");
    let _ = writeln!(s, "\t\tct state invalid drop");
    let _ = writeln!(
        s,
        "\t\tiifname \"{ext}\" oifname \"{ve}\" ip daddr != {xnet} accept comment \"the external LAN to its VEs\""
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{ve}\" oifname \"{ext}\" ip saddr != {xnet} accept comment \"the VEs on the external LAN to it\""
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{int}\" ip saddr {peer_int} oifname \"{ve}\" ip daddr {xnet} accept comment \"the other node to the VEs on the crossover network\""
    );
    let _ = writeln!(
        s,
        "\t\tiifname \"{ve}\" oifname \"{ve}\" accept comment \"between the VEs\""
    );
    let _ = writeln!(s, "\t}}");
}

/// The node's ends of the VEs' veth pairs (`ve<ID>h`, [`crate::ve::net::link_names`]),
/// as an nftables interface name pattern.
pub const VE_LINKS: &str = "ve*";

/// One outbound connection the node makes, for the customer's firewall admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// `tcp`, `udp` or `icmp`.
    pub protocol: &'static str,
    /// Host name or address.
    pub destination: String,
    /// Port (none for ICMP).
    pub port: Option<u16>,
    /// What it is for.
    pub purpose: String,
}

/// The outbound connections `cfg` makes a node open (R14.1), in a stable order: DNS,
/// mail relay (or the recipients' MX), time servers, update server, support server, the BMCs (fencing), ping nodes.
#[must_use]
pub fn outbound(cfg: &ApplianceConfig) -> Vec<Outbound> {
    let mut v = Vec::new();
    for d in &cfg.network.dns_servers {
        for protocol in ["udp", "tcp"] {
            v.push(Outbound {
                protocol,
                destination: d.to_string(),
                port: Some(53),
                purpose: "DNS".into(),
            });
        }
    }
    if let Some(relay) = &cfg.notification.relay_host {
        v.push(Outbound {
            protocol: "tcp",
            destination: relay.host().to_owned(),
            port: Some(relay.port().unwrap_or(25)),
            purpose: "mail relay (SMTP)".into(),
        });
    } else if crate::mail::has_recipients(&cfg.notification) {
        v.push(Outbound {
            protocol: "tcp",
            destination: "the recipients' mail exchangers (MX)".into(),
            port: Some(tandem_notify::MX_PORT),
            purpose: "e-mail alerts, direct delivery (SMTP)".into(),
        });
    }
    for t in &cfg.network.ntp_servers {
        v.push(Outbound {
            protocol: "udp",
            destination: t.host().to_owned(),
            port: Some(t.port().unwrap_or(crate::chrony::NTP_PORT)),
            purpose: "time server (NTP)".into(),
        });
    }
    let (host, port) = url_host_port(cfg.updates.url.as_str());
    v.push(Outbound {
        protocol: "tcp",
        destination: host,
        port: Some(port),
        purpose: "update server".into(),
    });
    if let Some(sup) = &cfg.support {
        v.push(Outbound {
            protocol: "tcp",
            destination: sup.host.host().to_owned(),
            port: Some(sup.host.port().unwrap_or(22)),
            purpose: "support server (SSH)".into(),
        });
    }
    if let Some(f) = &cfg.fencing {
        for id in NodeId::ALL {
            let b = f.bmc(id);
            v.push(Outbound {
                protocol: "udp",
                destination: b.address.to_string(),
                port: Some(b.port.get()),
                purpose: format!("{id}'s BMC (IPMI RMCP+, fencing)"),
            });
        }
    }
    for p in &cfg.network.ping_nodes {
        v.push(Outbound {
            protocol: "icmp",
            destination: p.to_string(),
            port: None,
            purpose: "ping node (echo request)".into(),
        });
    }
    v
}

/// Host and port of an `http://` or `https://` URL (80 or 443 unless given).
fn url_host_port(url: &str) -> (String, u16) {
    let (rest, default) = match url.strip_prefix("https://") {
        Some(r) => (r, 443),
        None => (url.strip_prefix("http://").unwrap_or(url), 80),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(port) => (h.to_owned(), port),
            Err(_) => (authority.to_owned(), default),
        },
        None => (authority.to_owned(), default),
    }
}

/// The outbound list as a table for people (`tandem firewall outbound`).
#[must_use]
pub fn outbound_text(list: &[Outbound]) -> String {
    let mut s = String::from("PROTO DESTINATION                              PORT  PURPOSE\n");
    for o in list {
        let port = o.port.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let _ = writeln!(
            s,
            "{:<5} {:<40} {:<5} {}",
            o.protocol, o.destination, port, o.purpose
        );
    }
    s
}

/// Why a ruleset was not put in effect. The previous ruleset stays in effect.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The file could not be written.
    #[error("cannot write the ruleset to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` could not be run.
    #[error("cannot run {program}")]
    Run {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft -c` refused the ruleset; nothing was changed.
    #[error("nft refused the ruleset {path} (the previous ruleset stays in effect): {message}")]
    Refused {
        /// The refused file (kept for inspection).
        path: PathBuf,
        /// What nft said.
        message: String,
    },
    /// The check passed but loading failed; nft's transaction left the previous ruleset.
    #[error(
        "nft could not load the ruleset {path} (the previous ruleset stays in effect): {message}"
    )]
    Load {
        /// The file.
        path: PathBuf,
        /// What nft said.
        message: String,
    },
}

/// Puts `ruleset` in effect with the `nft` program: writes `path` with a `.new` suffix,
/// checks it (`nft -c -f`), loads it (`nft -f`, one transaction) and only then renames it
/// to `path`, so that `path` always holds the ruleset in effect.
///
/// # Errors
/// The file cannot be written, `nft` cannot run, or `nft` refuses the ruleset; the
/// previous ruleset then stays in effect.
pub fn apply(nft: &Path, ruleset: &str, path: &Path) -> Result<(), ApplyError> {
    let new = path.with_extension("nft.new");
    crate::write_atomic(&new, ruleset.as_bytes(), 0o600).map_err(|source| ApplyError::Write {
        path: new.clone(),
        source,
    })?;
    let run = |args: &[&str]| {
        Command::new(nft)
            .args(args)
            .arg(&new)
            .output()
            .map_err(|source| ApplyError::Run {
                program: nft.to_owned(),
                source,
            })
    };
    let check = run(&["-c", "-f"])?;
    if !check.status.success() {
        return Err(ApplyError::Refused {
            path: new,
            message: nft_message(&check.stderr),
        });
    }
    let load = run(&["-f"])?;
    if !load.status.success() {
        return Err(ApplyError::Load {
            path: new,
            message: nft_message(&load.stderr),
        });
    }
    std::fs::rename(&new, path).map_err(|source| ApplyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// nft's error output on one line.
fn nft_message(stderr: &[u8]) -> String {
    let t = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = t
        .lines()
        .map(str::trim_end)
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    if lines.is_empty() {
        crate::last_line(&t)
    } else {
        lines.join("; ")
    }
}

/// How clusterd applies the ruleset: at start with the configuration it started with,
/// and again with every configuration change.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `nft` program.
    pub nft: PathBuf,
    /// Where the ruleset in effect is kept.
    pub path: PathBuf,
    /// This node.
    pub node: NodeId,
    /// The interfaces the rules name.
    pub interfaces: Interfaces,
    /// The configuration clusterd started with.
    pub initial: Box<ApplianceConfig>,
}

impl Setup {
    /// The configuration the ruleset follows after a change to `cfg`: the access
    /// settings (and revision) of `cfg`, the addresses and ports clusterd started
    /// with (network and heartbeat changes take effect when the node starts again,
    /// the filter with them).
    #[must_use]
    pub fn effective(&self, cfg: &ApplianceConfig) -> ApplianceConfig {
        let mut e = (*self.initial).clone();
        e.access = cfg.access.clone();
        e.cluster.revision = cfg.cluster.revision;
        e
    }

    /// Generates and applies the ruleset for `cfg`; on success a line for the event
    /// stream.
    ///
    /// # Errors
    /// As [`apply`]: the previous ruleset stays in effect.
    pub fn put_in_effect(&self, cfg: &ApplianceConfig) -> Result<String, ApplyError> {
        let text = ruleset(cfg, self.node, &self.interfaces);
        apply(&self.nft, &text, &self.path)?;
        Ok(format!(
            "firewall of configuration revision {} in effect (web console and SSH from {})",
            cfg.cluster.revision,
            admin_networks(cfg)
                .iter()
                .map(|n| net_text(*n))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The peer's address on the crossover network (for tests and messages).
#[must_use]
pub fn peer_internal(cfg: &ApplianceConfig, node: NodeId) -> Ipv4Addr {
    cfg.network.node(node.peer()).internal_address.addr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::init::{InitOptions, new_cluster};

    fn cfg() -> ApplianceConfig {
        static CFG: std::sync::OnceLock<ApplianceConfig> = std::sync::OnceLock::new();
        CFG.get_or_init(|| new_cluster(&InitOptions::default()).expect("new cluster").0)
            .clone()
    }

    fn ifs() -> Interfaces {
        Interfaces {
            external: "eth0".into(),
            internal: "eth1".into(),
        }
    }

    #[test]
    fn cluster_ports_only_from_the_peer_on_the_crossover() {
        let c = cfg();
        let r = ruleset(&c, NodeId::Node1, &ifs());
        let peer = c.network.node2.internal_address;
        let own = c.network.node1.internal_address;
        let cross = format!("iifname \"eth1\" ip saddr {peer} ip daddr {own}");
        assert!(r.contains(&format!("{cross} udp dport 694 accept")), "{r}");
        assert!(r.contains(&format!("{cross} tcp dport 694 accept")), "{r}");
        assert!(r.contains(&format!("{cross} tcp dport 7788 accept")), "{r}");
        assert!(r.contains(&format!("{cross} tcp dport 22 accept")), "{r}");
        assert!(
            r.contains(&format!("{cross} tcp sport {{ 694, 7788 }} accept")),
            "{r}"
        );
        // The cluster's own connections are accepted before conntrack's "invalid" is
        // dropped: it misjudges fast connections it picked up in mid-stream.
        let invalid = r.find("ct state invalid drop").expect("invalid dropped");
        for rule in ["tcp dport 7788", "tcp sport { 694, 7788 }", "tcp dport 694"] {
            assert!(r.find(rule).is_some_and(|i| i < invalid), "{rule}: {r}");
        }
        let peer_ext = c.network.node2.address;
        assert!(
            r.contains(&format!(
                "iifname \"eth0\" ip saddr {peer_ext} udp dport 694 accept"
            )),
            "{r}"
        );
        // Every rule that names a cluster port names the peer's address.
        for l in r
            .lines()
            .filter(|l| l.contains("694") || l.contains("7788"))
        {
            assert!(
                l.contains(&format!("ip saddr {peer} "))
                    || l.contains(&format!("ip saddr {peer_ext} ")),
                "{l}"
            );
        }
        assert!(r.contains("policy drop;"));
        assert!(r.contains("ct state established,related accept"));
        assert!(r.contains("iif \"lo\" accept"));
        // node2's ruleset is the mirror image.
        let r2 = ruleset(&c, NodeId::Node2, &ifs());
        assert!(r2.contains(&format!("ip saddr {own} ip daddr {peer} tcp dport 7788")));
    }

    #[test]
    fn admin_services_from_recovery_and_admin_networks_only() {
        let mut c = cfg();
        let r = ruleset(&c, NodeId::Node1, &ifs());
        assert!(r.contains("elements = { 192.168.100.0/24 }"), "{r}");
        c.access.admin_networks = vec![
            "192.0.2.0/24".parse().expect("net"),
            "198.51.100.7/32".parse().expect("net"),
        ];
        let r = ruleset(&c, NodeId::Node1, &ifs());
        assert!(
            r.contains("elements = { 192.168.100.0/24, 192.0.2.0/24, 198.51.100.7 }"),
            "{r}"
        );
        assert!(r.contains("ip saddr @admin tcp dport { 22, 80, 443 } accept"));
    }

    #[test]
    fn disabled_external_path_has_no_external_heartbeat_rule() {
        let mut c = cfg();
        c.heartbeat.external.enabled = false;
        let r = ruleset(&c, NodeId::Node1, &ifs());
        assert!(
            !r.contains(&format!("ip saddr {} udp", c.network.node2.address)),
            "{r}"
        );
    }

    #[test]
    fn only_the_ves_traffic_is_forwarded() {
        let c = cfg();
        let r = ruleset(&c, NodeId::Node1, &ifs());
        let fwd = &r[r.find("chain forward {").expect("a forward chain")..];
        let xnet = net_text(c.network.internal_net(NodeId::Node1));
        let peer = c.network.node2.internal_address;
        assert!(
            fwd.contains("hook forward priority filter; policy drop;"),
            "{fwd}"
        );
        let rules: Vec<&str> = fwd
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with('"') && l.contains(" accept comment"))
            .collect();
        assert_eq!(
            rules,
            [
                format!(
                    "iifname \"eth0\" oifname \"ve*\" ip daddr != {xnet} accept comment \"the external LAN to its VEs\""
                ),
                format!(
                    "iifname \"ve*\" oifname \"eth0\" ip saddr != {xnet} accept comment \"the VEs on the external LAN to it\""
                ),
                format!(
                    "iifname \"eth1\" ip saddr {peer} oifname \"ve*\" ip daddr {xnet} accept comment \"the other node to the VEs on the crossover network\""
                ),
                "iifname \"ve*\" oifname \"ve*\" accept comment \"between the VEs\"".to_owned(),
            ]
        );
        // Nothing from a VE into the crossover network, nothing between the two LANs.
        assert!(!fwd.contains("oifname \"eth1\""), "{fwd}");
        assert!(!fwd.contains("iifname \"eth0\" oifname \"eth1\""), "{fwd}");
        let (h, _) = crate::ve::net::link_names(101);
        assert!(h.starts_with(VE_LINKS.trim_end_matches('*')), "{h}");
    }

    #[test]
    fn ruleset_replaces_the_table_in_one_file() {
        let r = ruleset(&cfg(), NodeId::Node1, &ifs());
        let first: Vec<&str> = r.lines().skip(1).take(3).collect();
        assert_eq!(
            first,
            [
                "table inet tandem {}",
                "delete table inet tandem",
                "table inet tandem {"
            ]
        );
        assert_eq!(r, ruleset(&cfg(), NodeId::Node1, &ifs()), "deterministic");
    }

    #[test]
    fn outbound_list_follows_the_configuration() {
        let mut c = cfg();
        let text = outbound_text(&outbound(&c));
        for d in &c.network.dns_servers {
            assert!(text.contains(&format!("udp   {d:<40} 53    DNS")), "{text}");
            assert!(text.contains(&format!("tcp   {d:<40} 53    DNS")), "{text}");
        }
        for p in &c.network.ping_nodes {
            assert!(
                text.contains(&format!("icmp  {p:<40} -     ping node")),
                "{text}"
            );
        }
        assert!(!text.contains("mail relay"), "{text}");
        assert!(!text.contains("SMTP"), "nobody to mail: {text}");
        assert!(!text.contains("support"), "{text}");
        // Recipients without a relay: direct delivery to their MX on port 25.
        c.notification.addresses = vec!["ops@example.net".parse().expect("address")];
        let direct = outbound(&c);
        let mx = direct
            .iter()
            .find(|o| o.purpose.contains("direct delivery"))
            .expect("MX delivery listed");
        assert_eq!((mx.protocol, mx.port), ("tcp", Some(25)));
        c.notification.relay_host = Some("mail.example.net:2525".parse().expect("relay"));
        c.support = Some(tandem_config::schema::SupportConfig {
            host: "support.example.com".parse().expect("host"),
            user: "tandem".parse().expect("user"),
            host_key: None,
            max_hours: tandem_config::schema::DEFAULT_SUPPORT_HOURS,
        });
        c.updates.url = "https://updates.example.com:8443/tandem"
            .parse()
            .expect("url");
        let list = outbound(&c);
        let find = |p: &str| list.iter().find(|o| o.purpose.starts_with(p)).cloned();
        let m = find("mail relay").expect("relay listed");
        assert_eq!(
            (m.destination.as_str(), m.port),
            ("mail.example.net", Some(2525))
        );
        assert!(list.iter().all(|o| !o.purpose.contains("BMC")));
        let s = find("support").expect("support listed");
        assert_eq!(
            (s.destination.as_str(), s.port),
            ("support.example.com", Some(22))
        );
        let u = find("update").expect("update listed");
        assert_eq!(
            (u.destination.as_str(), u.port),
            ("updates.example.com", Some(8443))
        );
    }

    #[test]
    fn a_change_takes_new_access_at_once_and_new_addresses_at_the_next_start() {
        let c = cfg();
        let setup = Setup {
            nft: "/usr/sbin/nft".into(),
            path: "/run/tandem/firewall.nft".into(),
            node: NodeId::Node1,
            interfaces: ifs(),
            initial: Box::new(c.clone()),
        };
        let mut next = c.clone();
        next.cluster.revision += 1;
        next.network.node2.address = "192.0.2.99".parse().expect("address");
        next.access.admin_networks = vec!["198.51.100.0/24".parse().expect("net")];
        let r = ruleset(&setup.effective(&next), NodeId::Node1, &ifs());
        assert!(r.contains("198.51.100.0/24"), "{r}");
        assert!(r.contains("ip saddr 192.0.2.12 udp dport 694"), "{r}");
        assert!(!r.contains("192.0.2.99"), "{r}");
        assert!(r.contains(&format!("revision {}", next.cluster.revision)));
    }

    #[test]
    fn url_ports() {
        assert_eq!(
            url_host_port("http://u.example/x"),
            ("u.example".into(), 80)
        );
        assert_eq!(
            url_host_port("https://u.example"),
            ("u.example".into(), 443)
        );
        assert_eq!(
            url_host_port("http://10.1.1.1:8080/"),
            ("10.1.1.1".into(), 8080)
        );
    }
}
