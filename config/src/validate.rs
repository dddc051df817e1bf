//! Cross-field checks of a parsed configuration.
//!
//! Field-level checks happen while parsing (the newtypes); what is left here are the rules
//! that relate fields to each other. Every rule runs; all problems are returned together.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::recovery;
use crate::schema::{ApplianceConfig, HeartbeatPath};
use crate::types::{Ipv4Net, NodeId};

/// The most time servers a configuration names (chrony chooses among them).
pub const MAX_NTP_SERVERS: usize = 4;

/// One problem in a configuration, with the dotted path of the field it concerns
/// (`network.node2.address`). The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path of the field, `""` for the document as a whole.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

struct Checker {
    problems: Vec<ValidationError>,
}

impl Checker {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ValidationError::new(path, message));
    }
}

impl ApplianceConfig {
    /// Runs every cross-field rule and returns all problems, in a stable order.
    ///
    /// # Errors
    /// The list of problems, never empty.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        self.check_network(&mut c);
        self.check_heartbeat(&mut c);
        self.check_replication(&mut c);
        self.check_ves(&mut c);
        self.check_notification(&mut c);
        self.check_other(&mut c);
        self.check_access(&mut c);
        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(c.problems)
        }
    }

    fn check_network(&self, c: &mut Checker) {
        let n = &self.network;
        let ext1 = n.external_net(NodeId::Node1);
        let ext2 = n.external_net(NodeId::Node2);
        let int1 = n.internal_net(NodeId::Node1);
        let int2 = n.internal_net(NodeId::Node2);

        if n.node1.hostname == n.node2.hostname {
            c.fail(
                "network.node2.hostname",
                format!(
                    "{:?} is also node1's host name (expected two different names)",
                    n.node2.hostname.as_str()
                ),
            );
        }
        for id in NodeId::ALL {
            let node = n.node(id);
            let ext = n.external_net(id);
            if !usable_unicast(node.address.addr()) {
                c.fail(
                    format!("network.{id}.address"),
                    format!("{} is not a usable unicast address", node.address),
                );
            } else if !ext.is_host_address() {
                c.fail(
                    format!("network.{id}.address"),
                    format!(
                        "{} is the network or broadcast address of {}/{} (expected a host address)",
                        node.address,
                        ext.network(),
                        ext.prefix()
                    ),
                );
            }
            let int = n.internal_net(id);
            if !usable_unicast(node.internal_address.addr()) {
                c.fail(
                    format!("network.{id}.internal-address"),
                    format!("{} is not a usable unicast address", node.internal_address),
                );
            } else if !int.is_host_address() {
                c.fail(
                    format!("network.{id}.internal-address"),
                    format!(
                        "{} is the network or broadcast address of {}/{} (expected a host address)",
                        node.internal_address,
                        int.network(),
                        int.prefix()
                    ),
                );
            }
        }
        if n.node1.address == n.node2.address {
            c.fail(
                "network.node2.address",
                format!(
                    "{} is also node1's address (expected two different addresses)",
                    n.node2.address
                ),
            );
        } else if ext1.network() != ext2.network() {
            c.fail(
                "network.node2.address",
                format!(
                    "{} is not in node1's network {}/{} (both nodes must be in the same subnet)",
                    n.node2.address,
                    ext1.network(),
                    ext1.prefix()
                ),
            );
        }
        if n.node1.internal_address == n.node2.internal_address {
            c.fail(
                "network.node2.internal-address",
                format!(
                    "{} is also node1's internal address (expected two different addresses)",
                    n.node2.internal_address
                ),
            );
        } else if int1.network() != int2.network() {
            c.fail(
                "network.node2.internal-address",
                format!(
                    "{} is not in node1's internal network {}/{} (both nodes must be in the same subnet)",
                    n.node2.internal_address,
                    int1.network(),
                    int1.prefix()
                ),
            );
        }
        if ext1.overlaps(int1) {
            c.fail(
                "network.node1.internal-address",
                format!(
                    "internal network {}/{} overlaps the external network {}/{} (expected two distinct networks)",
                    int1.network(),
                    int1.prefix(),
                    ext1.network(),
                    ext1.prefix()
                ),
            );
        }
        let gw = n.gateway.addr();
        if !ext1.contains(gw) {
            c.fail(
                "network.gateway",
                format!(
                    "{} is not in the external network {}/{}",
                    n.gateway,
                    ext1.network(),
                    ext1.prefix()
                ),
            );
        } else if gw == n.node1.address.addr() || gw == n.node2.address.addr() {
            c.fail(
                "network.gateway",
                format!("{} is a node's own address", n.gateway),
            );
        }
        if n.ping_nodes.is_empty() {
            c.fail(
                "network.ping-nodes",
                "empty (expected at least one address)",
            );
        }
        for (i, p) in n.ping_nodes.iter().enumerate() {
            if p == &n.node1.address || p == &n.node2.address {
                c.fail(
                    format!("network.ping-nodes[{i}]"),
                    format!("{p} is a node's own address (expected a device outside the cluster)"),
                );
            }
            if n.ping_nodes[..i].contains(p) {
                c.fail(
                    format!("network.ping-nodes[{i}]"),
                    format!("{p} is listed twice"),
                );
            }
        }
        if n.dns_servers.is_empty() || n.dns_servers.len() > 2 {
            c.fail(
                "network.dns-servers",
                format!(
                    "{} servers given (expected one or two)",
                    n.dns_servers.len()
                ),
            );
        }
        if n.ntp_servers.len() > MAX_NTP_SERVERS {
            c.fail(
                "network.ntp-servers",
                format!(
                    "{} servers given (expected at most {MAX_NTP_SERVERS})",
                    n.ntp_servers.len()
                ),
            );
        }
        for (i, t) in n.ntp_servers.iter().enumerate() {
            if n.ntp_servers[..i].contains(t) {
                c.fail(
                    format!("network.ntp-servers[{i}]"),
                    format!("{t} is listed twice"),
                );
            }
        }
        if n.dns_search.len() > 6 {
            c.fail(
                "network.dns-search",
                format!("{} domains given (expected at most 6)", n.dns_search.len()),
            );
        }
        // The recovery network exists only while unconfigured, but the laptop may still be
        // plugged in while the node switches over: an overlap would route its traffic wrongly.
        let recovery_net = recovery::NETWORK;
        if n.internal_net(NodeId::Node1).overlaps(recovery_net) {
            c.fail(
                "network.node1.internal-address",
                format!("internal network overlaps the recovery network {recovery_net}"),
            );
        }
    }

    fn check_heartbeat(&self, c: &mut Checker) {
        let h = &self.heartbeat;
        if h.keepalive.as_millis() < 100 {
            c.fail(
                "heartbeat.keepalive",
                format!("{} is too short (expected at least 100ms)", h.keepalive),
            );
        }
        if h.warntime <= h.keepalive {
            c.fail(
                "heartbeat.warntime",
                format!(
                    "{} must be longer than keepalive ({})",
                    h.warntime, h.keepalive
                ),
            );
        }
        if h.deadtime.as_millis() <= 2 * h.keepalive.as_millis() {
            c.fail(
                "heartbeat.deadtime",
                format!(
                    "{} must be longer than 2 × keepalive ({})",
                    h.deadtime, h.keepalive
                ),
            );
        }
        if h.deadtime <= h.warntime {
            c.fail(
                "heartbeat.deadtime",
                format!(
                    "{} must be longer than warntime ({})",
                    h.deadtime, h.warntime
                ),
            );
        }
        if h.initdead < h.deadtime {
            c.fail(
                "heartbeat.initdead",
                format!("{} must be at least deadtime ({})", h.initdead, h.deadtime),
            );
        }
        if h.deadtime.as_millis() > 3_600_000 || h.initdead.as_millis() > 3_600_000 {
            c.fail("heartbeat", "deadtime and initdead must be at most 60m");
        }
        if let Some(r) = h.garp_refresh()
            && (r < crate::schema::MIN_GARP_REFRESH || r > crate::schema::MAX_GARP_REFRESH)
        {
            c.fail(
                "heartbeat.garp-refresh",
                format!(
                    "{r} is out of range (expected 0s for off, or {} to {})",
                    crate::schema::MIN_GARP_REFRESH,
                    crate::schema::MAX_GARP_REFRESH
                ),
            );
        }
        if h.enabled_paths().is_empty() {
            c.fail("heartbeat", "every path is disabled (expected at least one of serial, internal, external enabled)");
        } else if !h.is_enabled(HeartbeatPath::Internal) && !h.is_enabled(HeartbeatPath::External) {
            // The serial line cannot carry replication or management traffic; the heartbeat
            // alone over it would declare a healthy peer whose network is gone.
            c.fail(
                "heartbeat",
                "only the serial path is enabled (expected the internal or external path as well)",
            );
        }
        if h.udp_port == self.replication.port {
            c.fail(
                "heartbeat.udp-port",
                format!("{} is also the replication port", h.udp_port),
            );
        }
    }

    fn check_replication(&self, c: &mut Checker) {
        let r = &self.replication;
        if r.device == r.backing {
            c.fail(
                "replication.backing",
                format!("{} is the replicated device itself", r.backing),
            );
        }
        if r.shared_secret.expose().len() > 64 {
            c.fail(
                "replication.shared-secret",
                "is longer than 64 characters (DRBD's limit)",
            );
        }
        if r.shared_secret.expose().contains([' ', '"', '\\']) {
            c.fail(
                "replication.shared-secret",
                "contains a space, quote or backslash (expected none)",
            );
        }
    }

    fn check_ves(&self, c: &mut Checker) {
        let n = &self.network;
        let v1 = &self.ves.ve1;
        let int = n.internal_net(NodeId::Node1);
        if !int.contains(v1.address.addr()) {
            c.fail(
                "ves.ve1.address",
                format!(
                    "{} is not in the internal network {}/{}",
                    v1.address,
                    int.network(),
                    int.prefix()
                ),
            );
        } else if v1.address == n.node1.internal_address || v1.address == n.node2.internal_address {
            c.fail(
                "ves.ve1.address",
                format!("{} is a node's internal address", v1.address),
            );
        } else if !Ipv4Net::new(v1.address.addr(), int.prefix()).is_ok_and(Ipv4Net::is_host_address)
        {
            c.fail(
                "ves.ve1.address",
                format!("{} is not a host address", v1.address),
            );
        }
        if let Some(v) = &self.ves.ve101 {
            let ext = n.external_net(NodeId::Node1);
            if !ext.contains(v.address.addr()) {
                c.fail(
                    "ves.ve101.address",
                    format!(
                        "{} is not in the external network {}/{}",
                        v.address,
                        ext.network(),
                        ext.prefix()
                    ),
                );
            } else if [n.node1.address, n.node2.address, n.gateway].contains(&v.address) {
                c.fail(
                    "ves.ve101.address",
                    format!("{} is already a node's or the gateway's address", v.address),
                );
            }
            if v.hostname == n.node1.hostname || v.hostname == n.node2.hostname {
                c.fail(
                    "ves.ve101.hostname",
                    format!("{:?} is already a node's host name", v.hostname.as_str()),
                );
            }
            if v.dns_servers.len() > 2 {
                c.fail(
                    "ves.ve101.dns-servers",
                    format!(
                        "{} servers given (expected at most two)",
                        v.dns_servers.len()
                    ),
                );
            }
            if self.passwords.root_ve101.is_none() {
                c.fail(
                    "passwords.root-ve101",
                    "missing (expected a hash when ves.ve101 exists)",
                );
            }
        } else if self.passwords.root_ve101.is_some() {
            c.fail(
                "passwords.root-ve101",
                "is set but ves.ve101 does not exist",
            );
        }
    }

    fn check_notification(&self, c: &mut Checker) {
        let m = &self.notification;
        if m.copy_vendor && m.vendor_address.is_none() {
            c.fail(
                "notification.vendor-address",
                "missing (expected an address when copy-vendor is on)",
            );
        }
        let mut seen = HashMap::new();
        for (i, a) in m.addresses.iter().enumerate() {
            if let Some(first) = seen.insert(a.as_str(), i) {
                c.fail(
                    format!("notification.addresses[{i}]"),
                    format!("{a} is listed twice (first at [{first}])"),
                );
            }
        }
    }

    fn check_access(&self, c: &mut Checker) {
        let a = &self.access;
        if a.password_login {
            let missing: Vec<&str> = [
                (
                    "passwords.root-node1-crypt",
                    &self.passwords.root_node1_crypt,
                ),
                (
                    "passwords.root-node2-crypt",
                    &self.passwords.root_node2_crypt,
                ),
            ]
            .into_iter()
            .filter(|(_, h)| h.is_none())
            .map(|(k, _)| k)
            .collect();
            if !missing.is_empty() {
                c.fail(
                    "access.password-login",
                    format!(
                        "is on but {} {} missing (expected the SHA-512 crypt hash of each node's root password, from `tandem config hash-password --crypt`)",
                        missing.join(" and "),
                        if missing.len() == 1 { "is" } else { "are" }
                    ),
                );
            }
        }
        for (i, n) in a.admin_networks.iter().enumerate() {
            let path = format!("access.admin-networks[{i}]");
            if n.addr() != n.network() {
                c.fail(
                    &path,
                    format!(
                        "{n} has host bits set (expected the network address, {}/{})",
                        n.network(),
                        n.prefix()
                    ),
                );
            } else if n.prefix() == 0 {
                c.fail(
                    &path,
                    "0.0.0.0/0 would open the management services to every address (expected a network)",
                );
            }
            if a.admin_networks[..i].contains(n) {
                c.fail(&path, format!("{n} is listed twice"));
            }
        }
        for (i, k) in a.root_authorized_keys.iter().enumerate() {
            let key = k.as_str().split_whitespace().take(2).collect::<Vec<_>>();
            if a.root_authorized_keys[..i]
                .iter()
                .any(|o| o.as_str().split_whitespace().take(2).collect::<Vec<_>>() == key)
            {
                c.fail(
                    format!("access.root-authorized-keys[{i}]"),
                    "is listed twice",
                );
            }
        }
    }

    fn check_other(&self, c: &mut Checker) {
        let d = self.updates.trial_deadline();
        if d < crate::schema::MIN_TRIAL_DEADLINE || d > crate::schema::MAX_TRIAL_DEADLINE {
            c.fail(
                "updates.trial-deadline",
                format!(
                    "{d} is out of range (expected {} to {})",
                    crate::schema::MIN_TRIAL_DEADLINE,
                    crate::schema::MAX_TRIAL_DEADLINE
                ),
            );
        }
        if let Some(ca) = &self.updates.ca_certificate
            && (ca.len() > 65_536
                || !ca.contains("-----BEGIN CERTIFICATE-----")
                || !ca.contains("-----END CERTIFICATE-----"))
        {
            c.fail(
                "updates.ca-certificate",
                "is not a PEM certificate (expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----, at most 64 KiB)",
            );
        }
        let k = &self.keys;
        let ssh = [
            ("keys.ssh-host-node1", &k.ssh_host_node1),
            ("keys.ssh-host-node2", &k.ssh_host_node2),
            ("keys.cluster-ssh", &k.cluster_ssh),
            ("keys.support-ssh", &k.support_ssh),
        ];
        for (i, (path, key)) in ssh.iter().enumerate() {
            if let Some((other, _)) = ssh[..i]
                .iter()
                .find(|(_, k2)| k2.public_key() == key.public_key())
            {
                c.fail(
                    *path,
                    format!("is the same key as {other} (expected a distinct key)"),
                );
            }
        }
        if !crate::secrets::tls_key_matches_certificate(
            k.tls_certificate.as_str(),
            k.tls_key.expose(),
        ) {
            c.fail(
                "keys.tls-key",
                "does not match keys.tls-certificate (expected the private key of the certificate's public key)",
            );
        }
        if let Some(b) = &self.backup
            && !(1..=1000).contains(&b.keep)
        {
            c.fail(
                "backup.keep",
                format!(
                    "is {} (expected 1 to 1000 backups of each VE kept on the target)",
                    b.keep
                ),
            );
        }
        if let Some(b) = &self.backup {
            if !(1..=100).contains(&b.keep_local) {
                c.fail(
                    "backup.keep-local",
                    format!(
                        "is {} (expected 1 to 100 backups of each scheduled VE kept on the pair)",
                        b.keep_local
                    ),
                );
            }
            for (i, id) in b.ves.iter().enumerate() {
                if *id == 0 || *id > 999_999 {
                    c.fail(
                        format!("backup.ves[{i}]"),
                        format!("{id} is not a VE number (expected 1 to 999999)"),
                    );
                } else if b.ves[..i].contains(id) {
                    c.fail(
                        format!("backup.ves[{i}]"),
                        format!("VE {id} is listed twice"),
                    );
                }
            }
            if !b.ves.is_empty() && b.schedule.is_none() {
                c.fail(
                    "backup.ves",
                    "names the VEs of a schedule, but backup.schedule is not set (add e.g. schedule = \"02:30\", or remove ves)",
                );
            }
        }
        if let Some(s) = &self.support
            && !(1..=72).contains(&s.max_hours)
        {
            c.fail(
                "support.max-hours",
                format!(
                    "is {} (expected 1 to 72 hours after which a support tunnel closes by itself)",
                    s.max_hours
                ),
            );
        }
        if let Some(f) = &self.fencing {
            if f.timeout.as_millis() < 1000 || f.timeout.as_millis() > 300_000 {
                c.fail(
                    "fencing.timeout",
                    format!("{} is out of range (expected 1s to 5m)", f.timeout),
                );
            }
            if f.node1_delay.as_millis() > 600_000 {
                c.fail(
                    "fencing.node1-delay",
                    format!("{} is out of range (expected at most 10m)", f.node1_delay),
                );
            }
            if f.policy == crate::schema::FencingPolicy::Required
                && f.node1_delay.as_millis() < 1000
            {
                c.fail(
                    "fencing.node1-delay",
                    format!(
                        "{} is too short (expected at least 1s: when both nodes lose every path at once, node2's fence must land before node1's is sent)",
                        f.node1_delay
                    ),
                );
            }
            if f.node1.address == f.node2.address {
                c.fail(
                    "fencing.node2.address",
                    format!("{} is also node1's BMC address", f.node2.address),
                );
            }
            for id in NodeId::ALL {
                let b = f.bmc(id);
                if [self.network.node1.address, self.network.node2.address].contains(&b.address) {
                    c.fail(
                        format!("fencing.{id}.address"),
                        format!("{} is a node's own address (expected the BMC's)", b.address),
                    );
                }
                // The fencing client speaks suite 3 only: a configuration that names
                // another would be accepted and then fail when a fence is needed.
                if b.cipher_suite != 3 {
                    c.fail(
                        format!("fencing.{id}.cipher-suite"),
                        format!(
                            "{} is not supported: the BMC client speaks cipher suite 3 only (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)",
                            b.cipher_suite
                        ),
                    );
                }
            }
        }
    }
}

/// Not 0/8, loopback, multicast, broadcast or reserved.
fn usable_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified()
        || a.octets()[0] == 0
        || a.is_loopback()
        || a.is_multicast()
        || a.is_broadcast()
        || a.octets()[0] >= 240
        || a.is_link_local())
}
