//! A configured node's own network, before clusterd starts: its host name,
//! its external address on the first port with the default route and DNS, its
//! crossover address on the second port, and `/etc/hosts` with both nodes.
//! The recovery address (192.168.100.101/102) leaves the first port: two
//! clusters on one LAN would otherwise answer for the same address.
//!
//! Init runs this (through `tandem node up`) at boot when a configuration is
//! committed, and right after an activation commits one. Every step is
//! idempotent, so a second run changes nothing.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use tandem_config::{ApplianceConfig, NodeId};

use crate::net::{self, NetlinkError};

/// The two ports a node uses, in slot order.
#[derive(Debug, Clone)]
pub struct Ports {
    /// First port: external LAN (and the recovery network before activation).
    pub external: String,
    /// Second port: the crossover cable to the other node.
    pub internal: String,
}

/// A step of bringing up the node's network failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// A netlink step.
    #[error("{what} on {nic}")]
    Net {
        /// What was being done.
        what: String,
        /// The interface.
        nic: String,
        /// The cause.
        #[source]
        source: NetlinkError,
    },
    /// A file or system call.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The recovery address of `node` on the first port (R2.3).
#[must_use]
pub fn recovery_address(node: NodeId) -> Ipv4Addr {
    match node {
        NodeId::Node1 => Ipv4Addr::new(192, 168, 100, 101),
        NodeId::Node2 => Ipv4Addr::new(192, 168, 100, 102),
    }
}

/// `/etc/resolv.conf` for the configured search path and servers.
#[must_use]
pub fn resolv_conf(cfg: &ApplianceConfig) -> String {
    let mut s = String::new();
    if !cfg.network.dns_search.is_empty() {
        let search: Vec<&str> = cfg.network.dns_search.iter().map(|d| d.as_str()).collect();
        let _ = writeln!(s, "search {}", search.join(" "));
    }
    for server in &cfg.network.dns_servers {
        let _ = writeln!(s, "nameserver {}", server.addr());
    }
    s
}

/// `/etc/hosts`: loopback and both nodes under their configured names.
#[must_use]
pub fn hosts(cfg: &ApplianceConfig) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n");
    for id in [NodeId::Node1, NodeId::Node2] {
        let n = cfg.network.node(id);
        let _ = writeln!(s, "{}\t{}", n.address.addr(), n.hostname.as_str());
    }
    s
}

async fn net_step<T>(
    what: &str,
    nic: &str,
    fut: impl std::future::Future<Output = Result<T, NetlinkError>>,
) -> Result<T, MemberError> {
    fut.await.map_err(|source| MemberError::Net {
        what: what.to_owned(),
        nic: nic.to_owned(),
        source,
    })
}

/// Brings up the node's own network as configured; `etc` is where
/// `resolv.conf` and `hosts` go (`/etc` on a node). Returns one line per
/// step for the console.
///
/// # Errors
/// The first step that failed, naming the interface.
pub async fn bring_up(
    cfg: &ApplianceConfig,
    node: NodeId,
    ports: &Ports,
    etc: &Path,
) -> Result<Vec<String>, MemberError> {
    let me = cfg.network.node(node);
    let mut done = Vec::new();
    rustix::system::sethostname(me.hostname.as_str().as_bytes()).map_err(|e| MemberError::Io {
        what: "setting the host name".into(),
        source: e.into(),
    })?;
    done.push(format!("host name {}", me.hostname.as_str()));

    let lo = net_step("looking up", "lo", net::link_info("lo")).await?;
    net_step("setting up", "lo", net::set_up(lo.index)).await?;

    let ext = &ports.external;
    let link = net_step("looking up", ext, net::link_info(ext)).await?;
    net_step(
        "removing the recovery address",
        ext,
        net::del_address(link.index, recovery_address(node), 24),
    )
    .await?;
    let external = cfg.network.external_net(node);
    net_step(
        "adding the external address",
        ext,
        net::add_address(link.index, external.addr(), external.prefix()),
    )
    .await?;
    net_step("setting up", ext, net::set_up(link.index)).await?;
    done.push(format!(
        "external {ext}: {}/{}",
        external.addr(),
        external.prefix()
    ));
    let gw = cfg.network.gateway.addr();
    net_step(
        &format!("setting the default route through {gw}"),
        ext,
        net::set_default_route(gw),
    )
    .await?;
    done.push(format!("default route via {gw}"));

    let int = &ports.internal;
    let link = net_step("looking up", int, net::link_info(int)).await?;
    let internal = cfg.network.internal_net(node);
    net_step(
        "adding the crossover address",
        int,
        net::add_address(link.index, internal.addr(), internal.prefix()),
    )
    .await?;
    net_step("setting up", int, net::set_up(link.index)).await?;
    done.push(format!(
        "crossover {int}: {}/{}",
        internal.addr(),
        internal.prefix()
    ));

    for (name, text) in [("resolv.conf", resolv_conf(cfg)), ("hosts", hosts(cfg))] {
        let path = etc.join(name);
        crate::write_atomic(&path, text.as_bytes(), 0o644).map_err(|source| MemberError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
    }
    done.push(format!(
        "DNS {}",
        cfg.network
            .dns_servers
            .iter()
            .map(|s| s.addr().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(done)
}

/// Where the web console of a member finds its certificate and key: the cluster's
/// own, from the configuration (R3.2), written by [`write_console_tls`].
pub const CONSOLE_TLS_DIR: &str = "/run/tandem/tls";

/// Writes the configuration's TLS certificate (`cert.pem`, 0644) and key (`key.pem`,
/// 0600) for the web console into `dir`, each replaced atomically.
///
/// # Errors
/// A file could not be written (the error names it); the previous one is then
/// unchanged.
pub fn write_console_tls(cfg: &ApplianceConfig, dir: &Path) -> std::io::Result<String> {
    let keys = &cfg.keys;
    for (name, text, mode) in [
        ("key.pem", keys.tls_key.expose(), 0o600),
        ("cert.pem", keys.tls_certificate.as_str(), 0o644),
    ] {
        let path = dir.join(name);
        crate::write_atomic(&path, text.as_bytes(), mode).map_err(|e| {
            std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
        })?;
    }
    Ok(format!("web console certificate in {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_gets_the_clusters_certificate_and_only_root_its_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let cfg = tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .expect("cluster")
            .0;
        let dir = tempfile::tempdir().expect("dir");
        write_console_tls(&cfg, dir.path()).expect("written");
        let mode = |f: &str| {
            std::fs::metadata(dir.path().join(f))
                .expect("file")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("key.pem"), mode("cert.pem")), (0o600, 0o644));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cert.pem")).expect("cert"),
            cfg.keys.tls_certificate.as_str()
        );
    }

    #[test]
    fn name_service_files_follow_the_configuration() {
        let (cfg, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
                .expect("a new cluster's configuration");
        let r = resolv_conf(&cfg);
        assert!(r.lines().any(|l| l.starts_with("nameserver ")), "{r}");
        let h = hosts(&cfg);
        assert!(h.contains(cfg.network.node1.hostname.as_str()), "{h}");
        assert!(
            h.contains(&cfg.network.node2.address.addr().to_string()),
            "{h}"
        );
    }
}
