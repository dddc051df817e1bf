//! Settings changes from the console's Network, Notification and Passwords pages
//! (R9.3, R9.5, R9.6), made on the root side.
//!
//! A change starts from the configuration the page showed (its revision travels with
//! the form, so a change made meanwhile elsewhere is not overwritten), sets the form's
//! fields, raises the revision and is checked by the configuration's own rules. Every
//! problem names its form field. The result goes to both nodes through
//! [`tandem_runtime::confsync::apply`]: the other node first, then this one.

use serde::{Deserialize, Serialize};
use tandem_config::{
    ApplianceConfig, DomainName, EmailAddress, HostPort, Hostname, Ipv4, Netmask, secrets,
};

/// The Network page's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkForm {
    /// node1's host name.
    pub node1_hostname: String,
    /// node1's external address.
    pub node1_address: String,
    /// node2's host name.
    pub node2_hostname: String,
    /// node2's external address.
    pub node2_address: String,
    /// Netmask of the external network.
    pub netmask: String,
    /// Default gateway.
    pub gateway: String,
    /// Ping nodes, separated by spaces or commas.
    pub ping_nodes: String,
    /// DNS search path, separated by spaces or commas.
    pub dns_search: String,
    /// First DNS server.
    pub dns_server1: String,
    /// Second DNS server (may be empty).
    pub dns_server2: String,
    /// Serial heartbeat on.
    pub serial_heartbeat: bool,
    /// External heartbeat on.
    pub external_heartbeat: bool,
}

/// The Notification page's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationForm {
    /// Recipients, one per line (or separated by commas or spaces).
    pub addresses: String,
    /// Relay host as `HOST[:PORT]`, empty for none.
    pub relay_host: String,
    /// Copy to the vendor's support.
    pub copy_vendor: bool,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingsChange {
    /// The Network page.
    Network(NetworkForm),
    /// The Notification page.
    Notification(NotificationForm),
    /// The management password (user `admin`), typed twice.
    AdminPassword {
        /// The new password.
        new: String,
        /// Typed again.
        confirm: String,
    },
}

/// A problem with one form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// The form field (`node1_address`, …), or the configuration path when no field
    /// of the form matches.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldProblem {
    fn new(field: &str, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Shortest management password.
pub const MIN_PASSWORD: usize = crate::admin::MIN_LEN;
/// Longest accepted password.
pub const MAX_PASSWORD: usize = 1024;

/// A new password typed twice, in the form fields `fields` (new, again): long
/// enough and the same both times.
///
/// # Errors
/// The problem, at its field.
pub fn new_password(new: &str, again: &str, fields: (&str, &str)) -> Result<(), FieldProblem> {
    if new.chars().count() < MIN_PASSWORD || new.len() > MAX_PASSWORD {
        return Err(FieldProblem::new(
            fields.0,
            format!("must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    if new != again {
        return Err(FieldProblem::new(fields.1, "differs from the new password"));
    }
    Ok(())
}

/// The configuration path each form field sets, for mapping the rules' problems back.
const FIELDS: &[(&str, &str)] = &[
    ("network.node1.hostname", "node1_hostname"),
    ("network.node1.address", "node1_address"),
    ("network.node2.hostname", "node2_hostname"),
    ("network.node2.address", "node2_address"),
    ("network.netmask", "netmask"),
    ("network.gateway", "gateway"),
    ("network.ping-nodes", "ping_nodes"),
    ("network.dns-search", "dns_search"),
    ("network.dns-servers", "dns_server1"),
    ("heartbeat", "serial_heartbeat"),
    ("notification.addresses", "addresses"),
    ("notification.relay-host", "relay_host"),
    ("notification", "copy_vendor"),
    ("passwords.admin", "new"),
];

fn field_of(path: &str) -> &str {
    FIELDS
        .iter()
        .find(|(p, _)| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        })
        .map_or(path, |(_, f)| f)
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
}

fn parse<T: std::str::FromStr<Err = String>>(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: &str,
) -> Option<T> {
    let v = value.trim();
    if v.is_empty() {
        problems.push(FieldProblem::new(field, "is empty"));
        return None;
    }
    v.parse()
        .map_err(|e| problems.push(FieldProblem::new(field, e)))
        .ok()
}

fn parse_list<T: std::str::FromStr<Err = String>>(
    problems: &mut Vec<FieldProblem>,
    field: &str,
    value: &str,
) -> Vec<T> {
    words(value)
        .filter_map(|w| parse(problems, field, w))
        .collect()
}

/// `cfg` with `change` made and the revision raised, or every problem by field.
/// `cfg` is what the page showed; nothing is written here.
///
/// # Errors
/// Every problem with the typed values or with the resulting configuration.
pub fn make(
    cfg: &ApplianceConfig,
    change: &SettingsChange,
) -> Result<ApplianceConfig, Vec<FieldProblem>> {
    let mut new = cfg.clone();
    let mut p = Vec::new();
    match change {
        SettingsChange::Network(f) => {
            let n = &mut new.network;
            if let Some(h) = parse::<Hostname>(&mut p, "node1_hostname", &f.node1_hostname) {
                n.node1.hostname = h;
            }
            if let Some(a) = parse::<Ipv4>(&mut p, "node1_address", &f.node1_address) {
                n.node1.address = a;
            }
            if let Some(h) = parse::<Hostname>(&mut p, "node2_hostname", &f.node2_hostname) {
                n.node2.hostname = h;
            }
            if let Some(a) = parse::<Ipv4>(&mut p, "node2_address", &f.node2_address) {
                n.node2.address = a;
            }
            if let Some(m) = parse::<Netmask>(&mut p, "netmask", &f.netmask) {
                n.netmask = m;
            }
            if let Some(g) = parse::<Ipv4>(&mut p, "gateway", &f.gateway) {
                n.gateway = g;
            }
            n.ping_nodes = parse_list(&mut p, "ping_nodes", &f.ping_nodes);
            n.dns_search = parse_list::<DomainName>(&mut p, "dns_search", &f.dns_search);
            let mut dns = Vec::new();
            if let Some(d) = parse::<Ipv4>(&mut p, "dns_server1", &f.dns_server1) {
                dns.push(d);
            }
            if !f.dns_server2.trim().is_empty()
                && let Some(d) = parse::<Ipv4>(&mut p, "dns_server2", &f.dns_server2)
            {
                dns.push(d);
            }
            n.dns_servers = dns;
            new.heartbeat.serial.enabled = f.serial_heartbeat;
            new.heartbeat.external.enabled = f.external_heartbeat;
        }
        SettingsChange::Notification(f) => {
            let n = &mut new.notification;
            n.addresses = parse_list::<EmailAddress>(&mut p, "addresses", &f.addresses);
            n.relay_host = if f.relay_host.trim().is_empty() {
                None
            } else {
                parse::<HostPort>(&mut p, "relay_host", &f.relay_host)
            };
            n.copy_vendor = f.copy_vendor;
        }
        SettingsChange::AdminPassword { new: pw, confirm } => {
            let hashed = new_password(pw, confirm, ("new", "confirm"))
                .and_then(|()| secrets::hash_password(pw).map_err(|e| FieldProblem::new("new", e)));
            match hashed {
                Ok(h) => new.passwords.admin = h,
                Err(e) => p.push(e),
            }
        }
    }
    if !p.is_empty() {
        return Err(p);
    }
    new.cluster.revision = cfg.cluster.revision + 1;
    new.validate().map_err(|problems| {
        problems
            .into_iter()
            .map(|v| FieldProblem::new(field_of(&v.path), v.message))
            .collect::<Vec<_>>()
    })?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ApplianceConfig {
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
    }

    fn network_form(c: &ApplianceConfig) -> NetworkForm {
        let n = &c.network;
        NetworkForm {
            node1_hostname: n.node1.hostname.to_string(),
            node1_address: n.node1.address.to_string(),
            node2_hostname: n.node2.hostname.to_string(),
            node2_address: n.node2.address.to_string(),
            netmask: n.netmask.to_string(),
            gateway: n.gateway.to_string(),
            ping_nodes: n
                .ping_nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            dns_search: "example.com, lab.example".into(),
            dns_server1: n.dns_servers[0].to_string(),
            dns_server2: String::new(),
            serial_heartbeat: true,
            external_heartbeat: false,
        }
    }

    #[test]
    fn a_network_change_raises_the_revision_and_keeps_the_rest() {
        let c = cfg();
        let new = make(&c, &SettingsChange::Network(network_form(&c))).unwrap();
        assert_eq!(new.cluster.revision, c.cluster.revision + 1);
        assert_eq!(new.network.dns_search.len(), 2);
        assert_eq!(new.network.dns_servers.len(), 1);
        assert!(!new.heartbeat.external.enabled);
        assert_eq!(new.keys, c.keys);
        assert_eq!(new.passwords, c.passwords);
        tandem_runtime::confsync::judge(&c, &new).unwrap();
    }

    #[test]
    fn every_bad_field_is_named() {
        let c = cfg();
        let mut f = network_form(&c);
        f.node2_address = "10.0.0.300".into();
        f.gateway = String::new();
        f.ping_nodes = "10.1.1.1 nonsense".into();
        let e = make(&c, &SettingsChange::Network(f)).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["node2_address", "gateway", "ping_nodes"], "{e:?}");
        assert!(e[0].message.contains("10.0.0.300"), "{e:?}");
    }

    #[test]
    fn the_rules_of_the_configuration_apply_and_name_the_field() {
        let c = cfg();
        let mut f = network_form(&c);
        // Same address for both nodes: a cross-field rule of the schema.
        f.node2_address.clone_from(&f.node1_address);
        f.serial_heartbeat = false;
        f.external_heartbeat = false;
        let e = make(&c, &SettingsChange::Network(f)).unwrap_err();
        assert!(e.iter().any(|p| p.field.starts_with("node")), "{e:?}");
    }

    #[test]
    fn notification_and_password_changes() {
        let c = cfg();
        let new = make(
            &c,
            &SettingsChange::Notification(NotificationForm {
                addresses: "ops@example.com\r\nnight@example.com".into(),
                relay_host: "mail.example.com:587".into(),
                copy_vendor: false,
            }),
        )
        .unwrap();
        assert_eq!(new.notification.addresses.len(), 2);
        assert_eq!(
            new.notification.relay_host.as_ref().unwrap().to_string(),
            "mail.example.com:587"
        );
        let e = make(
            &c,
            &SettingsChange::Notification(NotificationForm {
                addresses: "ops@".into(),
                relay_host: "a b".into(),
                copy_vendor: false,
            }),
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");

        let short = SettingsChange::AdminPassword {
            new: "short".into(),
            confirm: "short".into(),
        };
        assert_eq!(make(&c, &short).unwrap_err()[0].field, "new");
        let typo = SettingsChange::AdminPassword {
            new: "long enough 1".into(),
            confirm: "long enough 2".into(),
        };
        assert_eq!(make(&c, &typo).unwrap_err()[0].field, "confirm");
        let ok = SettingsChange::AdminPassword {
            new: "long enough 1".into(),
            confirm: "long enough 1".into(),
        };
        let new = make(&c, &ok).unwrap();
        assert!(secrets::verify_password(
            "long enough 1",
            &new.passwords.admin
        ));
    }
}
